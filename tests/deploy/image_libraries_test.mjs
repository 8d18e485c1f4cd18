// The container image's runtime stage installs every shared library the
// built binary links (label deploy). Reads the `apt-get install` line of
// deploy/Dockerfile's runtime stage, runs `ldd` on RSV_BINARY, maps each
// library to its Debian package with `dpkg -S`, and checks that
//   - the libraries the binary needs directly (readelf's NEEDED) belong to
//     packages named on that line, or to the base image (Essential or
//     Priority required, which debian:bookworm-slim has);
//   - every other library ldd resolves belongs to a named package, a
//     package those depend on (Depends/Pre-Depends, as installed here), or
//     the base image;
//   - no named package is a -dev package, and none is unknown to dpkg.
// Needs a Debian host with the build's libraries installed (scripts/test).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const binary = process.env.RSV_BINARY;
const dockerfile = process.env.RSV_DOCKERFILE ??
  join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'deploy', 'Dockerfile');
if (!binary) throw new Error('RSV_BINARY is not set');

const run = (cmd, args) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const failures = [];
const fail = (why) => failures.push(why);

// -- the runtime stage's packages -------------------------------------------------
const lines = readFileSync(dockerfile, 'utf8').split('\n');
const runtimeStart = lines.findIndex((l) => /^FROM\s+\S+\s+AS\s+runtime\b/i.test(l));
if (runtimeStart < 0) throw new Error(`${dockerfile}: no stage named runtime`);
const nextStage = lines.findIndex((l, i) => i > runtimeStart && /^FROM\s/i.test(l));
const stage = lines.slice(runtimeStart, nextStage < 0 ? undefined : nextStage).join('\n').replace(/\\\n/g, ' ');
const install = stage.match(/apt-get\s+install\s+([^&;]*)/);
if (!install) throw new Error(`${dockerfile}: no apt-get install in the runtime stage`);
const named = install[1].split(/\s+/).filter((w) => w && !w.startsWith('-'));
console.log(`runtime stage installs: ${named.join(' ')}`);

// -- installed packages and their dependencies ---------------------------------------
const installed = new Map(); // package -> { depends: [...], base: bool }
for (const row of run('dpkg-query', ['-W', '-f=${Package}\t${Status}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\n']).split('\n')) {
  if (!row) continue;
  const [name, status, essential, priority, depends] = row.split('\t');
  if (!status.endsWith(' installed')) continue;
  const deps = depends.split(',').flatMap((group) =>
    group.split('|').map((alt) => alt.trim().replace(/\s*\(.*\)/, '').replace(/:any$/, ''))).filter(Boolean);
  installed.set(name, { depends: deps, base: essential === 'yes' || priority === 'required' });
}
function closure(roots) {
  const seen = new Set();
  const todo = [...roots];
  while (todo.length) {
    const p = todo.pop();
    if (seen.has(p) || !installed.has(p)) continue;
    seen.add(p);
    todo.push(...installed.get(p).depends);
  }
  return seen;
}
for (const p of named) {
  if (p.endsWith('-dev')) fail(`${p}: a -dev package in the runtime stage`);
  if (!installed.has(p)) fail(`${p}: not an installed Debian package here (misspelt, or not what the build links)`);
}
const base = closure([...installed].filter(([, v]) => v.base).map(([k]) => k));
const fromNamed = closure(named.filter((p) => installed.has(p)));

// -- the binary's libraries ------------------------------------------------------------
const needed = new Set(
  [...run('readelf', ['-d', binary]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]));
const libraries = [];
for (const line of run('ldd', [binary]).split('\n')) {
  const m = line.match(/^\s*(\S+)\s+=>\s+(.*?)\s+\(0x/) ?? line.match(/^\s*(\/\S+)\s+\(0x/);
  if (line.includes('not found')) fail(`ldd: ${line.trim()}`);
  if (!m) continue;
  const [soname, path] = m.length === 3 ? [m[1], m[2]] : [m[1], m[1]];
  libraries.push({ soname, path });
}
// One `dpkg -S` for all libraries (each call reads the whole database): every
// spelling of each path, since merged /usr makes /lib/x and /usr/lib/x one file
// that dpkg knows under one of the two names.
const spellings = new Map(); // path -> candidates
for (const { path } of libraries) {
  const real = run('readlink', ['-f', path]).trim();
  const candidates = new Set([path, real]);
  for (const p of [path, real]) candidates.add(p.startsWith('/usr/') ? p.slice(4) : `/usr${p}`);
  spellings.set(path, [...candidates]);
}
let search;
try {
  search = run('dpkg', ['-S', ...new Set([...spellings.values()].flat())]);
} catch (e) {
  search = e.stdout ?? ''; // some spellings are unknown: expected
}
const owners = new Map(); // file -> package
for (const line of search.split('\n')) {
  const m = line.match(/^([^:,\s]+)(?::[^:\s]+)?: (\/.*)$/);
  if (m) owners.set(m[2], m[1]);
}
const owner = (path) => spellings.get(path).map((c) => owners.get(c)).find(Boolean);
for (const { soname, path } of libraries) {
  const pkg = owner(path);
  if (!pkg) {
    fail(`${soname} (${path}): no Debian package owns it`);
    continue;
  }
  const direct = needed.has(soname);
  let how;
  if (named.includes(pkg)) how = 'named';
  else if (base.has(pkg)) how = 'base image';
  else if (!direct && fromNamed.has(pkg)) how = 'dependency of a named package';
  if (how) console.log(`ok   ${soname.padEnd(36)} ${pkg.padEnd(28)} ${direct ? 'NEEDED, ' : ''}${how}`);
  else {
    console.log(`FAIL ${soname.padEnd(36)} ${pkg.padEnd(28)} ${direct ? 'NEEDED' : 'indirect'}`);
    fail(`${soname} from ${pkg} is ${direct ? 'needed by the binary' : 'linked'} but the runtime stage ` +
      `does not install ${pkg}${direct ? '' : ' or a package depending on it'}`);
  }
}
if (libraries.length < needed.size) fail(`ldd resolved ${libraries.length} libraries, fewer than the ${needed.size} NEEDED`);
if (failures.length) {
  console.error(failures.join('\n'));
  process.exit(1);
}
console.log(`${libraries.length} libraries, ${needed.size} needed directly: all installed by the runtime stage`);
