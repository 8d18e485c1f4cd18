#!/usr/bin/env python3
"""Issue 18's bounds on the code outside tests/, held by the suite so that
they stay true: no source file over 600 lines, no function over 80.

Functions are measured by universal-ctags (its end line) in C++ and Python,
and in TypeScript, which that ctags gives no end for, from a top-level
`function` line to the first `}` that closes at column 0 (the pages' and
the CDK app's style). Tests, fixtures and generated files are outside the
bounds. Prints every file and function over its bound and exits 1, or the
longest of each and exits 0.

Usage: structure_test.py SOURCE_DIR [CTAGS]  (CTAGS: ctags-universal)
"""
import os
import re
import subprocess
import sys
from pathlib import Path

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
SOURCE_SUFFIXES = (".cpp", ".hpp", ".cpp.in", ".py", ".ts", ".mjs", ".lua",
                   ".sh", ".sql")
SCRIPT_DIRS = ("scripts/", "bench/", "deploy/", ".ci/", "fuzz/")
TS_FUNCTION = re.compile(r"^(export )?(async )?function\s+(\w+)")


def tracked_files(root):
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-z"],
                         check=True, capture_output=True).stdout
    return [name for name in out.decode().split("\0") if name]


def is_source(root, name):
    if name.startswith("tests/") or "/fixtures/" in name:
        return False
    if name.endswith(SOURCE_SUFFIXES):
        return True
    # Extensionless scripts (scripts/run, bench/run, ...): a shebang.
    if name.startswith(SCRIPT_DIRS) and "." not in os.path.basename(name):
        with open(root / name, "rb") as f:
            return f.read(2) == b"#!"
    return False


def line_count(path):
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def ctags_functions(root, ctags, names):
    """(lines, "file:line name") of every C++ and Python function."""
    if not names:
        return []
    out = subprocess.run(
        [ctags, "-L", "-", "--fields=+ne", "--kinds-C++=f",
         "--kinds-Python=fm", "--langmap=C++:+.in", "-x",
         "--_xformat=%{end}\t%{line}\t%{input}\t%{name}"],
        cwd=root, input="\n".join(names).encode(), check=True,
        capture_output=True).stdout.decode()
    found = []
    for row in out.splitlines():
        end, line, name, symbol = row.split("\t")
        if end and line:
            found.append((int(end) - int(line) + 1, f"{name}:{line} {symbol}"))
    return found


def typescript_functions(root, name):
    found = []
    start = None
    symbol = ""
    with open(root / name, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            match = TS_FUNCTION.match(text)
            if start is None and match:
                start, symbol = number, match.group(3)
                if text.rstrip().endswith("}"):  # on one line
                    found.append((1, f"{name}:{number} {symbol}"))
                    start = None
            elif start is not None and text.rstrip() == "}":
                found.append((number - start + 1, f"{name}:{start} {symbol}"))
                start = None
    return found


def main():
    root = Path(sys.argv[1]).resolve()
    ctags = sys.argv[2] if len(sys.argv) > 2 else "ctags-universal"
    sources = [n for n in tracked_files(root) if is_source(root, n)]
    if len(sources) < 100:
        print(f"structure: only {len(sources)} source files under {root}: "
              "not the project's checkout?")
        return 1

    files = sorted(((line_count(root / n), n) for n in sources), reverse=True)
    native = [n for n in sources if n.endswith((".cpp", ".hpp", ".cpp.in", ".py"))]
    functions = ctags_functions(root, ctags, native)
    for n in sources:
        if n.endswith(".ts"):
            functions += typescript_functions(root, n)
    functions.sort(reverse=True)
    if not any(".cpp:" in where for _, where in functions):
        print("structure: ctags found no C++ function: is universal-ctags installed?")
        return 1

    long_files = [(n, f) for n, f in files if n > MAX_FILE_LINES]
    long_functions = [(n, f) for n, f in functions if n > MAX_FUNCTION_LINES]
    for lines, name in long_files:
        print(f"structure: {name} has {lines} lines (at most {MAX_FILE_LINES} outside tests)")
    for lines, where in long_functions:
        print(f"structure: {where} is {lines} lines long (at most {MAX_FUNCTION_LINES} outside tests)")
    if long_files or long_functions:
        print("structure: split what is named (issue 18, docs/architecture.md)")
        return 1
    print(f"structure: {len(files)} source files, the longest {files[0][1]} "
          f"({files[0][0]} lines); {len(functions)} functions, the longest "
          f"{functions[0][1]} ({functions[0][0]} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
