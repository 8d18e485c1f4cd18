// The operator's page: every event with live counts per section and its
// revenue, the node's holds/s and bookings/s, and a form that creates an
// event. Needs the admin token for stats and creation; reads are public.

import { api, ApiError, EventDetail, EventStats, money, NewEvent, rowLabel } from "./api";
import { byId, describeProblem, say, sayProblem } from "./ui";

const REFRESH_MS = 1000;
/** Events shown with their sections; each costs two requests a refresh. */
const DETAILED_EVENTS_MAX = 10;
const RATE_WINDOW_MS = 10_000;

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

async function refresh(): Promise<void> {
  window.clearTimeout(timer);
  if (document.hidden) return;
  try {
    await Promise.all([refreshRates(), refreshEvents()]);
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
