// The operator's page: every event with live counts per section and its
// revenue, the node's holds/s and bookings/s, on a clustered node its
// partitions and the cluster's members, and a form that creates an event.
// Needs the admin token for stats and creation; reads are public.

import { api, ApiError, ClusterStatus, EventDetail, EventStats, money, NewEvent, rowLabel } from "./api";
import { byId, describeProblem, say, sayProblem } from "./ui";

const REFRESH_MS = 1000;
/** Events shown with their sections; each costs two requests a refresh. */
const DETAILED_EVENTS_MAX = 10;
const RATE_WINDOW_MS = 10_000;
/** Owner colours in style.css (.owner-0 ...); more members reuse them in turn. */
const OWNER_COLOURS = 8;

const el = {
  tokenForm: byId<HTMLFormElement>("token-form"),
  token: byId<HTMLInputElement>("admin-token"),
  forget: byId<HTMLButtonElement>("forget-token"),
  holdsRate: byId<HTMLElement>("holds-rate"),
  bookingsRate: byId<HTMLElement>("bookings-rate"),
  expiriesRate: byId<HTMLElement>("expiries-rate"),
  revenueTotal: byId<HTMLElement>("revenue-total"),
  eventsUpdated: byId<HTMLParagraphElement>("events-updated"),
  eventList: byId<HTMLDivElement>("event-list"),
  cluster: byId<HTMLElement>("cluster"),
  clusterNode: byId<HTMLElement>("cluster-node"),
  clusterGroup: byId<HTMLElement>("cluster-group"),
  clusterOwned: byId<HTMLElement>("cluster-owned"),
  clusterLoading: byId<HTMLElement>("cluster-loading"),
  clusterEvents: byId<HTMLParagraphElement>("cluster-events"),
  clusterMembers: byId<HTMLTableElement>("cluster-members").tBodies[0],
  partitionLegend: byId<HTMLUListElement>("partition-legend"),
  partitionMap: byId<HTMLOListElement>("partition-map"),
  clusterUpdated: byId<HTMLParagraphElement>("cluster-updated"),
  form: byId<HTMLFormElement>("event-form"),
  name: byId<HTMLInputElement>("new-name"),
  id: byId<HTMLInputElement>("new-id"),
  starts: byId<HTMLInputElement>("new-starts"),
  ttl: byId<HTMLInputElement>("new-ttl"),
  limit: byId<HTMLInputElement>("new-limit"),
  sectionRows: byId<HTMLDivElement>("section-rows"),
  addSection: byId<HTMLButtonElement>("add-section"),
  summary: byId<HTMLParagraphElement>("new-summary"),
  create: byId<HTMLButtonElement>("create-event"),
};

let adminToken = sessionStorage.getItem("rsv.admin") ?? "";
let tokenRefused = false;
let timer = 0;
const samples: { at: number; counters: Map<string, number> }[] = [];

// -- the token ----------------------------------------------------------------

el.token.value = adminToken;
el.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  adminToken = el.token.value.trim();
  tokenRefused = false;
  sessionStorage.setItem("rsv.admin", adminToken);
  say(adminToken ? "Using this admin token." : "No admin token: revenue and event creation are unavailable.");
  void refresh();
});
el.forget.addEventListener("click", () => {
  adminToken = "";
  el.token.value = "";
  sessionStorage.removeItem("rsv.admin");
  say("The admin token is forgotten.");
  void refresh();
});

// -- live figures -------------------------------------------------------------

/** The unlabelled counters of a Prometheus text exposition. */
function parseCounters(text: string): Map<string, number> {
  const counters = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^(rsv_[a-z_]+_total) ([0-9.e+-]+)$/.exec(line.trim());
    if (match) counters.set(match[1], Number(match[2]));
  }
  return counters;
}

function rate(name: string): string {
  if (samples.length < 2) return "–";
  const first = samples[0];
  const last = samples[samples.length - 1];
  const seconds = (last.at - first.at) / 1000;
  const delta = (last.counters.get(name) ?? 0) - (first.counters.get(name) ?? 0);
  if (seconds <= 0) return "–";
  return (Math.max(0, delta) / seconds).toFixed(1);
}

async function refreshRates(): Promise<void> {
  try {
    const counters = parseCounters(await api.metrics());
    const now = Date.now();
    samples.push({ at: now, counters });
    while (samples.length > 2 && now - samples[0].at > RATE_WINDOW_MS) samples.shift();
    el.holdsRate.textContent = rate("rsv_holds_created_total");
    el.bookingsRate.textContent = rate("rsv_bookings_confirmed_total");
    el.expiriesRate.textContent = rate("rsv_holds_expired_total");
  } catch (error) {
    el.holdsRate.textContent = el.bookingsRate.textContent = el.expiriesRate.textContent = "?";
    el.eventsUpdated.textContent = describeProblem(error);
  }
}

async function refreshEvents(): Promise<void> {
  const { events } = await api.events();
  const shown = events.slice(0, DETAILED_EVENTS_MAX);
  const details = await Promise.all(
    shown.map(async (summary) => {
      const detail = await api.event(summary.id);
      let stats: EventStats | undefined;
      if (adminToken && !tokenRefused) {
        try {
          stats = await api.stats(summary.id, adminToken);
        } catch (error) {
          if (error instanceof ApiError && error.status === 401) {
            tokenRefused = true;
            say("The server refused this admin token: revenue is hidden and events cannot be created.", "problem");
          } else throw error;
        }
      }
      return { detail, stats };
    }),
  );
  renderEvents(details, events.length);
  const revenue = details.reduce((sum, d) => sum + (d.stats?.revenue_cents ?? 0), 0);
  el.revenueTotal.textContent = adminToken && !tokenRefused ? money(revenue) : "admin token needed";
  el.eventsUpdated.textContent =
    `Updated ${new Date().toLocaleTimeString()}.` +
    (events.length > shown.length ? ` Showing ${shown.length} of ${events.length} events.` : "");
}

function cell(tag: "td" | "th", text: string, numeric = false): HTMLTableCellElement {
  const c = document.createElement(tag);
  c.textContent = text;
  if (numeric) c.className = "num";
  if (tag === "th") c.scope = "col";
  return c;
}

function renderEvents(details: { detail: EventDetail; stats?: EventStats }[], total: number): void {
  if (total === 0) {
    const empty = document.createElement("p");
    empty.textContent = "No events yet: create one below.";
    el.eventList.replaceChildren(empty);
    return;
  }
  el.eventList.replaceChildren(
    ...details.map(({ detail, stats }) => {
      const box = document.createElement("article");
      box.className = "event-card";
      box.dataset.event = detail.id;
      const title = document.createElement("h3");
      title.textContent = `${detail.name} (${detail.id})`;
      const meta = document.createElement("p");
      meta.className = "muted";
      meta.textContent =
        `Starts ${new Date(detail.starts_at).toLocaleString()} · holds last ${detail.hold_ttl_seconds} s` +
        (detail.max_seats_per_customer ? ` · at most ${detail.max_seats_per_customer} seats per customer` : "") +
        (detail.waiting_room?.enabled ? " · waiting room on" : "");
      const revenue = document.createElement("p");
      revenue.className = "revenue";
      revenue.textContent = stats ? `Revenue ${money(stats.revenue_cents)}` : "Revenue: admin token needed";
      const table = document.createElement("table");
      const caption = document.createElement("caption");
      caption.textContent = `Seats of ${detail.name} by section`;
      const head = document.createElement("tr");
      for (const [label, numeric] of [
        ["Section", false],
        ["Price", true],
        ["Seats", true],
        ["Free", true],
        ["Held", true],
        ["Booked", true],
        ["Sold", false],
      ] as const)
        head.append(cell("th", label, numeric));
      const thead = document.createElement("thead");
      thead.append(head);
      const tbody = document.createElement("tbody");
      for (const section of detail.sections) {
        const row = document.createElement("tr");
        row.dataset.section = section.id;
        const name = cell("th", section.name);
        name.scope = "row";
        row.append(
          name,
          cell("td", money(section.price_cents), true),
          cell("td", String(section.seats_total), true),
          cell("td", String(section.free), true),
          cell("td", String(section.held), true),
          cell("td", String(section.booked), true),
        );
        const bar = document.createElement("td");
        const meter = document.createElement("meter");
        meter.min = 0;
        meter.max = section.seats_total;
        meter.value = section.booked;
        meter.setAttribute("aria-label", `${section.booked} of ${section.seats_total} booked`);
        bar.append(meter);
        row.append(bar);
        tbody.append(row);
      }
      table.append(caption, thead, tbody);
      const scroller = document.createElement("div");
      scroller.className = "table-scroll";
      scroller.append(table);
      box.append(title, meta, revenue, scroller);
      return box;
    }),
  );
}

// -- the cluster ----------------------------------------------------------------

/** Sorted partitions as ranges: [0, 3, 5, 6, 7] is "0, 3, 5-7". */
function compactRanges(partitions: number[]): string {
  const sorted = [...new Set(partitions)].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    ranges.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(", ") || "none";
}

/** Only a node started with --cluster has the panel; a single node's page stays as it was. */
async function refreshCluster(): Promise<void> {
  try {
    const { cluster } = await api.health();
    el.cluster.hidden = !cluster;
    if (cluster) renderCluster(cluster);
  } catch (error) {
    // A panel already shown keeps its last figures and says they are old.
    el.clusterUpdated.textContent = `Not updated: ${describeProblem(error)}`;
  }
}

function renderCluster(cluster: ClusterStatus): void {
  const members = Object.keys(cluster.members).sort();
  const colour = new Map(members.map((address, i) => [address, `owner-${i % OWNER_COLOURS}`]));
  renderClusterSummary(cluster);
  renderMembers(cluster, members, colour);
  renderPartitionLegend(cluster, members, colour);
  renderPartitionMap(cluster, colour);
  el.clusterUpdated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

function renderClusterSummary(cluster: ClusterStatus): void {
  el.clusterNode.textContent = cluster.node;
  el.clusterGroup.textContent = cluster.group;
  el.clusterGroup.className = cluster.group === "down" ? "bad" : "";
  el.clusterOwned.textContent = `${cluster.owned.length} of ${cluster.partitions}`;
  el.clusterLoading.textContent = String(cluster.loading.length);
  const events = cluster.events.length ? [...cluster.events].sort().join(", ") : "none yet";
  el.clusterEvents.textContent =
    `Serves events: ${events}.` +
    (cluster.loading.length
      ? ` Taking over ${compactRanges(cluster.loading)}: their requests answer 503 until loaded.`
      : "");
}

function renderMembers(cluster: ClusterStatus, members: string[], colour: Map<string, string>): void {
  el.clusterMembers.replaceChildren(
    ...members.map((address) => {
      const row = document.createElement("tr");
      row.dataset.member = address;
      const name = cell("th", "");
      name.scope = "row";
      name.append(swatch(colour.get(address)!), ` ${address}${address === cluster.node ? " (this node)" : ""}`);
      const partitions = cluster.members[address];
      row.append(name, cell("td", String(partitions.length), true), cell("td", compactRanges(partitions)));
      return row;
    }),
  );
}

function swatch(className: string): HTMLSpanElement {
  const box = document.createElement("span");
  box.className = `swatch ${className}`;
  box.setAttribute("aria-hidden", "true");
  return box;
}

function renderPartitionLegend(cluster: ClusterStatus, members: string[], colour: Map<string, string>): void {
  const item = (className: string, text: string) => {
    const li = document.createElement("li");
    li.append(swatch(className), text);
    return li;
  };
  const items = members.map((address) =>
    item(colour.get(address)!, address === cluster.node ? `${address} (this node)` : address),
  );
  if (cluster.loading.length) items.push(item("loading", "taking over here"));
  const loading = new Set(cluster.loading);
  if (ownerOf(cluster).some((owner, p) => owner === undefined && !loading.has(p)))
    items.push(item("unowned", "no owner"));
  el.partitionLegend.replaceChildren(...items);
}

/** The owner of each partition by the members' record; undefined where none claims it. */
function ownerOf(cluster: ClusterStatus): (string | undefined)[] {
  const owners: (string | undefined)[] = Array.from({ length: cluster.partitions }, () => undefined);
  for (const [address, partitions] of Object.entries(cluster.members))
    for (const p of partitions) if (p >= 0 && p < cluster.partitions) owners[p] = address;
  return owners;
}

function renderPartitionMap(cluster: ClusterStatus, colour: Map<string, string>): void {
  const loading = new Set(cluster.loading);
  el.partitionMap.replaceChildren(
    ...ownerOf(cluster).map((owner, p) => {
      const box = document.createElement("li");
      box.dataset.partition = String(p);
      const epoch = cluster.epochs[p];
      const state = loading.has(p) ? "loading" : owner ? colour.get(owner)! : "unowned";
      box.className = `partition ${state}`;
      const number = document.createElement("span");
      number.textContent = String(p);
      const small = document.createElement("small");
      small.textContent = epoch === undefined ? "" : `e${epoch}`;
      box.append(number, small);
      box.title =
        `Partition ${p}: ${owner ?? "no owner"}` +
        (loading.has(p) ? ", being taken over by this node" : "") +
        (epoch === undefined ? "" : `, epoch ${epoch}`);
      box.setAttribute("aria-label", box.title);
      return box;
    }),
  );
}

async function refresh(): Promise<void> {
  window.clearTimeout(timer);
  if (document.hidden) return;
  try {
    await Promise.all([refreshRates(), refreshEvents(), refreshCluster()]);
  } catch (error) {
    el.eventsUpdated.textContent = `Not updated: ${describeProblem(error)}`;
  } finally {
    timer = window.setTimeout(() => void refresh(), REFRESH_MS);
  }
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refresh();
});

// -- the new event form -------------------------------------------------------

let sectionCount = 0;

function addSectionRow(values = { id: "", name: "", price: "50.00", rows: "10", seats: "20" }): void {
  const n = sectionCount++;
  const row = document.createElement("div");
  row.className = "section-row";
  row.dataset.sectionRow = String(n);
  const fields: [string, string, string, Partial<HTMLInputElement>][] = [
    ["id", "Section id", values.id, { pattern: "[a-z0-9][a-z0-9\\-]{0,63}", required: true }],
    ["name", "Name", values.name, { required: true }],
    ["price", "Price a seat", values.price, { inputMode: "decimal", required: true }],
    ["rows", "Rows", values.rows, { type: "number", min: "1", max: "1000", required: true }],
    ["seats", "Seats a row", values.seats, { type: "number", min: "1", max: "1000", required: true }],
  ];
  for (const [key, label, value, attributes] of fields) {
    const wrap = document.createElement("div");
    wrap.className = "field";
    const input = document.createElement("input");
    input.id = `section-${n}-${key}`;
    input.name = key;
    Object.assign(input, attributes);
    input.value = value;
    input.addEventListener("input", summarise);
    const text = document.createElement("label");
    text.htmlFor = input.id;
    text.textContent = label;
    wrap.append(text, input);
    row.append(wrap);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary";
  remove.textContent = "Remove";
  remove.setAttribute("aria-label", `Remove section ${n + 1}`);
  remove.addEventListener("click", () => {
    if (el.sectionRows.children.length > 1) row.remove();
    summarise();
  });
  row.append(remove);
  el.sectionRows.append(row);
  summarise();
}

function readSections(): NewEvent["sections"] {
  return Array.from(el.sectionRows.querySelectorAll<HTMLDivElement>(".section-row")).map((row) => {
    const value = (name: string) => row.querySelector<HTMLInputElement>(`input[name=${name}]`)!.value.trim();
    const rows = Number(value("rows"));
    const seats = Number(value("seats"));
    return {
      id: value("id"),
      name: value("name") || value("id"),
      price_cents: Math.round(Number(value("price").replace(",", ".")) * 100),
      rows: Array.from({ length: Number.isInteger(rows) && rows > 0 && rows <= 1000 ? rows : 0 }, (_, i) => ({
        label: rowLabel(i),
        seats,
      })),
    };
  });
}

function summarise(): void {
  const sections = readSections();
  const seats = sections.reduce((sum, s) => sum + s.rows.reduce((n, r) => n + (r.seats || 0), 0), 0);
  el.summary.textContent = `${sections.length} section${sections.length === 1 ? "" : "s"}, ${seats.toLocaleString()} seats; rows are labelled A, B, C, …`;
}

el.addSection.addEventListener("click", () => {
  addSectionRow({ id: "", name: "", price: "50.00", rows: "10", seats: "20" });
  el.sectionRows.querySelector<HTMLInputElement>(".section-row:last-child input")?.focus();
});

el.form.addEventListener("submit", (e) => {
  e.preventDefault();
  void createEvent();
});

async function createEvent(): Promise<void> {
  if (!adminToken) {
    say("Enter the admin token first.", "problem");
    el.token.focus();
    return;
  }
  const name = el.name.value.trim();
  if (!name) {
    say("The event needs a name.", "problem");
    el.name.focus();
    return;
  }
  const starts = new Date(el.starts.value);
  if (!el.starts.value || Number.isNaN(starts.getTime())) {
    say("Choose when the event starts.", "problem");
    el.starts.focus();
    return;
  }
  const event: NewEvent = {
    name,
    starts_at: starts.toISOString().replace(/\.\d{3}Z$/, "Z"),
    sections: readSections(),
  };
  if (el.id.value.trim()) event.id = el.id.value.trim();
  if (el.ttl.value) event.hold_ttl_seconds = Number(el.ttl.value);
  if (el.limit.value) event.max_seats_per_customer = Number(el.limit.value);
  el.create.disabled = true;
  try {
    const created = await api.createEvent(event, adminToken);
    const seats = created.sections.reduce((n, s) => n + s.seats_total, 0);
    say(`Created ${created.name} (${created.id}) with ${seats} seats.`);
    el.form.reset();
    el.sectionRows.replaceChildren();
    addSectionRow({ id: "floor", name: "Floor", price: "50.00", rows: "10", seats: "20" });
    void refresh();
  } catch (error) {
    if (error instanceof ApiError && error.code === "event_exists")
      say(`An event with the id ${event.id} exists already: choose another id.`, "problem");
    else sayProblem(error);
  } finally {
    el.create.disabled = false;
  }
}

addSectionRow({ id: "floor", name: "Floor", price: "50.00", rows: "10", seats: "20" });
void refresh();
