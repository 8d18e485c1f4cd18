// The buyer's seat map: the chosen section's counts, its seats refreshed
// once a second, seats chosen by click or keyboard (arrow keys, Home, End).

import { api, money, SeatStatus, splitSeat } from "./api";
import { currentSection, duration, el, plural, state, updateActions } from "./buyer_page";
import { describeProblem, say } from "./ui";

/** How often an open map asks for its seats (docs/web.md: the cost). */
const MAP_REFRESH_MS = 1000;

export function chooseSection(sectionId: string): void {
  state.sectionId = sectionId;
  state.selected.clear();
  state.statuses.clear();
  state.mapGeneration++;
  el.map.replaceChildren();
  renderSectionInfo();
  void refreshMap();
}

function renderSectionInfo(): void {
  const section = currentSection();
  if (!section || !state.event) {
    el.sectionInfo.textContent = "";
    return;
  }
  let free = 0;
  let held = 0;
  let booked = 0;
  if (state.statuses.size > 0) {
    for (const status of state.statuses.values()) {
      if (status === "free") free++;
      else if (status === "held") held++;
      else booked++;
    }
  } else {
    ({ free, held, booked } = section);
  }
  const limit = state.event.max_seats_per_customer;
  el.sectionInfo.textContent =
    `${section.seats_total} seats: ${free} free, ${held} held, ${booked} booked. ` +
    `Price ${money(section.price_cents)} a seat. Holds last ${duration(state.event.hold_ttl_seconds)}` +
    (limit ? `; at most ${limit} seats per customer.` : ".");
}

function scheduleMapRefresh(): void {
  window.clearTimeout(state.mapTimer);
  state.mapTimer = window.setTimeout(() => void refreshMap(), MAP_REFRESH_MS);
}

/** Fetches the seats and redraws what changed; reschedules itself. */
export async function refreshMap(): Promise<void> {
  window.clearTimeout(state.mapTimer);
  const event = state.event;
  const sectionId = state.sectionId;
  if (!event || !sectionId) return;
  if (document.hidden) return; // visibilitychange restarts it
  if (state.mapInFlight) {
    state.mapAgain = true;
    return;
  }
  state.mapInFlight = true;
  state.mapAgain = false;
  const generation = state.mapGeneration;
  try {
    const map = await api.seats(event.id, sectionId);
    if (generation !== state.mapGeneration) return;
    drawMap(map.seats);
    el.mapUpdated.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    el.mapUpdated.classList.remove("stale");
  } catch (error) {
    if (generation !== state.mapGeneration) return;
    el.mapUpdated.textContent = `Not updated: ${describeProblem(error)}`;
    el.mapUpdated.classList.add("stale");
  } finally {
    state.mapInFlight = false;
    if (state.mapAgain || generation !== state.mapGeneration) void refreshMap();
    else scheduleMapRefresh();
  }
}

export function seatButtons(): HTMLButtonElement[] {
  return Array.from(el.map.querySelectorAll<HTMLButtonElement>("button.seat"));
}

function drawMap(seats: { id: string; status: SeatStatus }[]): void {
  const needsLayout = seats.length !== state.statuses.size || seats.some((s) => !state.statuses.has(s.id));
  if (needsLayout) layoutMap(seats.map((s) => s.id));
  state.statuses = new Map(seats.map((s) => [s.id, s.status]));
  const taken: string[] = [];
  for (const id of state.selected) {
    if (state.statuses.get(id) !== "free") {
      state.selected.delete(id);
      taken.push(id);
    }
  }
  if (taken.length > 0)
    say(`${plural(taken.length, "Seat")} ${taken.join(", ")} ${taken.length === 1 ? "was" : "were"} just taken by someone else and ${taken.length === 1 ? "is" : "are"} no longer selected.`, "problem");
  for (const button of seatButtons()) paintSeat(button);
  renderSectionInfo();
  updateActions();
}

/** Builds one row of buttons per row label, in the order the server lists them. */
function layoutMap(ids: string[]): void {
  const rows = new Map<string, string[]>();
  for (const id of ids) {
    const { row } = splitSeat(id);
    const list = rows.get(row);
    if (list) list.push(id);
    else rows.set(row, [id]);
  }
  const section = currentSection();
  el.map.setAttribute("aria-label", `Seats of ${section?.name ?? state.sectionId}`);
  el.map.removeAttribute("aria-labelledby");
  const fragment = document.createDocumentFragment();
  let first = true;
  for (const [row, seatIds] of rows) {
    const line = document.createElement("div");
    line.className = "seat-row";
    line.setAttribute("role", "group");
    line.setAttribute("aria-label", `Row ${row}`);
    const label = document.createElement("span");
    label.className = "row-label";
    label.textContent = row;
    label.setAttribute("aria-hidden", "true");
    line.append(label);
    for (const id of seatIds) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "seat";
      button.dataset.seat = id;
      button.textContent = String(splitSeat(id).number);
      button.tabIndex = first ? 0 : -1;
      first = false;
      line.append(button);
    }
    fragment.append(line);
  }
  el.map.replaceChildren(fragment);
}

function seatStatus(id: string): "free" | "selected" | "mine" | "held" | "booked" {
  const status = state.statuses.get(id) ?? "free";
  if (status === "held" && state.hold?.status === "active" && state.hold.seats.includes(id)) return "mine";
  if (status === "free" && state.selected.has(id)) return "selected";
  return status;
}

const spoken = {
  free: "free",
  selected: "free, selected",
  mine: "held by you",
  held: "held by another customer",
  booked: "booked",
};

export function paintSeat(button: HTMLButtonElement): void {
  const id = button.dataset.seat!;
  const status = seatStatus(id);
  if (button.dataset.status === status) return;
  button.dataset.status = status;
  button.className = `seat ${status}`;
  button.setAttribute("aria-label", `Seat ${id}, ${spoken[status]}`);
  button.setAttribute("aria-pressed", String(status === "selected"));
  button.setAttribute("aria-disabled", String(status !== "free" && status !== "selected"));
}

export function toggleSeat(button: HTMLButtonElement): void {
  const id = button.dataset.seat!;
  const status = state.statuses.get(id);
  if (status !== "free") {
    say(`Seat ${id} is ${spoken[seatStatus(id)]}: choose a free seat.`);
    return;
  }
  if (state.selected.has(id)) state.selected.delete(id);
  else if (state.selected.size >= 50) {
    say("A hold takes at most 50 seats.", "problem");
    return;
  } else state.selected.add(id);
  paintSeat(button);
  updateActions();
}

/** Arrow keys move within a row and between rows; Home/End to its ends. */
export function moveFocus(from: HTMLButtonElement, key: string): boolean {
  const row = from.parentElement!;
  const seats = Array.from(row.querySelectorAll<HTMLButtonElement>("button.seat"));
  const index = seats.indexOf(from);
  let target: HTMLButtonElement | undefined;
  if (key === "ArrowLeft") target = seats[index - 1];
  else if (key === "ArrowRight") target = seats[index + 1];
  else if (key === "Home") target = seats[0];
  else if (key === "End") target = seats[seats.length - 1];
  else if (key === "ArrowUp" || key === "ArrowDown") {
    const other = (key === "ArrowUp" ? row.previousElementSibling : row.nextElementSibling) as HTMLElement | null;
    const others = other ? Array.from(other.querySelectorAll<HTMLButtonElement>("button.seat")) : [];
    target = others[Math.min(index, others.length - 1)];
  } else return false;
  if (target) {
    from.tabIndex = -1;
    target.tabIndex = 0;
    target.focus();
  }
  return true;
}
