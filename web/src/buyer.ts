// The buyer's page: choose an event and a section, see its seat map refresh
// once a second, hold seats (named or best available) with a countdown, book,
// list and cancel bookings, register and sign in, and queue in the waiting
// room when the event has one. Only the public HTTP API is used.

import { api, ApiError, Booking, EventDetail, Hold, money, SeatStatus, splitSeat } from "./api";
import { byId, describeProblem, say, sayProblem, sayNothing } from "./ui";

/** How often an open map asks for its seats (docs/web.md: the cost). */
const MAP_REFRESH_MS = 1000;
const QUEUE_REFRESH_MS = 1000;

interface Account {
  token: string;
  customerId: string;
  email: string;
  expiresAt: string;
}

interface Admission {
  ticket: string;
  position: number;
  token?: string;
  expiresAt?: string;
}

const state = {
  account: loadAccount(),
  event: undefined as EventDetail | undefined,
  sectionId: "",
  statuses: new Map<string, SeatStatus>(),
  selected: new Set<string>(),
  hold: undefined as Hold | undefined,
  admissions: new Map<string, Admission>(), // by event id
  busy: false,
  mapTimer: 0,
  countdownTimer: 0,
  queueTimer: 0,
  mapGeneration: 0, // bumps when the section changes: late answers are dropped
  mapInFlight: false, // one seat request at a time per page
  mapAgain: false, // asked for while one was in flight: refresh at its end
};

const el = {
  authForm: byId<HTMLFormElement>("auth-form"),
  email: byId<HTMLInputElement>("email"),
  password: byId<HTMLInputElement>("password"),
  register: byId<HTMLButtonElement>("register"),
  signedIn: byId<HTMLDivElement>("signed-in"),
  who: byId<HTMLElement>("who"),
  signOut: byId<HTMLButtonElement>("sign-out"),
  event: byId<HTMLSelectElement>("event"),
  section: byId<HTMLSelectElement>("section"),
  sectionInfo: byId<HTMLParagraphElement>("section-info"),
  queue: byId<HTMLElement>("queue"),
  queueStatus: byId<HTMLParagraphElement>("queue-status"),
  queueJoin: byId<HTMLButtonElement>("queue-join"),
  map: byId<HTMLDivElement>("seatmap"),
  mapUpdated: byId<HTMLParagraphElement>("map-updated"),
  holdSelected: byId<HTMLButtonElement>("hold-selected"),
  bestCount: byId<HTMLInputElement>("best-count"),
  holdBest: byId<HTMLButtonElement>("hold-best"),
  holdPanel: byId<HTMLElement>("hold-panel"),
  holdSeats: byId<HTMLParagraphElement>("hold-seats"),
  countdown: byId<HTMLSpanElement>("countdown"),
  holdState: byId<HTMLParagraphElement>("hold-state"),
  book: byId<HTMLButtonElement>("book"),
  release: byId<HTMLButtonElement>("release"),
  bookingsEmpty: byId<HTMLParagraphElement>("bookings-empty"),
  bookingList: byId<HTMLUListElement>("booking-list"),
};

// -- account ------------------------------------------------------------------

function loadAccount(): Account | undefined {
  try {
    const raw = sessionStorage.getItem("rsv.account");
    if (!raw) return undefined;
    const account = JSON.parse(raw) as Account;
    return Date.parse(account.expiresAt) > Date.now() ? account : undefined;
  } catch {
    return undefined;
  }
}

function setAccount(account: Account | undefined): void {
  state.account = account;
  if (account) sessionStorage.setItem("rsv.account", JSON.stringify(account));
  else sessionStorage.removeItem("rsv.account");
  renderAccount();
  void refreshBookings();
  renderQueue();
}

function renderAccount(): void {
  const account = state.account;
  el.authForm.hidden = !!account;
  el.signedIn.hidden = !account;
  el.who.textContent = account?.email ?? "";
  updateActions();
}

function credentials(): { email: string; password: string } | undefined {
  const email = el.email.value.trim();
  const password = el.password.value;
  if (!email || !email.includes("@")) {
    say("Enter your email address.", "problem");
    el.email.focus();
    return undefined;
  }
  if (password.length < 8) {
    say("The password needs at least 8 characters.", "problem");
    el.password.focus();
    return undefined;
  }
  return { email, password };
}

async function signIn(register: boolean): Promise<void> {
  const given = credentials();
  if (!given || state.busy) return;
  state.busy = true;
  try {
    if (register) await api.register(given.email, given.password);
    const session = await api.signIn(given.email, given.password);
    el.password.value = "";
    setAccount({
      token: session.token,
      customerId: session.customer_id,
      email: given.email,
      expiresAt: session.expires_at,
    });
    say(register ? `Welcome! You are registered and signed in as ${given.email}.` : `Signed in as ${given.email}.`);
  } catch (error) {
    if (error instanceof ApiError && error.code === "email_taken")
      say("That email is already registered: sign in instead.", "problem");
    else if (error instanceof ApiError && error.code === "invalid_credentials")
      say("Wrong email or password.", "problem");
    else sayProblem(error);
  } finally {
    state.busy = false;
  }
}

/** A 401 on a customer call: the session ended. */
function sessionEnded(error: unknown): boolean {
  if (error instanceof ApiError && error.status === 401 && state.account) {
    setAccount(undefined);
    say("Your session has ended: please sign in again.", "problem");
    return true;
  }
  return false;
}

// -- events and sections ------------------------------------------------------

async function loadEvents(): Promise<void> {
  try {
    const { events } = await api.events();
    el.event.replaceChildren();
    if (events.length === 0) {
      el.event.append(new Option("No events yet", ""));
      el.event.disabled = true;
      return;
    }
    el.event.disabled = false;
    const wanted = new URLSearchParams(location.search).get("event");
    for (const event of events) {
      const when = new Date(event.starts_at).toLocaleString();
      el.event.append(new Option(`${event.name} · ${when} · ${event.seats_free} free`, event.id));
    }
    if (wanted && events.some((e) => e.id === wanted)) el.event.value = wanted;
    await chooseEvent(el.event.value);
  } catch (error) {
    sayProblem(error);
  }
}

async function chooseEvent(eventId: string): Promise<void> {
  if (!eventId) return;
  try {
    const event = await api.event(eventId);
    state.event = event;
    el.section.replaceChildren();
    for (const section of event.sections)
      el.section.append(new Option(`${section.name} · ${money(section.price_cents)} a seat`, section.id));
    const wanted = new URLSearchParams(location.search).get("section");
    if (wanted && event.sections.some((s) => s.id === wanted)) el.section.value = wanted;
    renderQueue();
    chooseSection(el.section.value);
  } catch (error) {
    sayProblem(error);
  }
}

function currentSection() {
  return state.event?.sections.find((s) => s.id === state.sectionId);
}

function chooseSection(sectionId: string): void {
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

// -- the seat map ---------------------------------------------------------------

function scheduleMapRefresh(): void {
  window.clearTimeout(state.mapTimer);
  state.mapTimer = window.setTimeout(() => void refreshMap(), MAP_REFRESH_MS);
}

/** Fetches the seats and redraws what changed; reschedules itself. */
async function refreshMap(): Promise<void> {
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

function seatButtons(): HTMLButtonElement[] {
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

function paintSeat(button: HTMLButtonElement): void {
  const id = button.dataset.seat!;
  const status = seatStatus(id);
  if (button.dataset.status === status) return;
  button.dataset.status = status;
  button.className = `seat ${status}`;
  button.setAttribute("aria-label", `Seat ${id}, ${spoken[status]}`);
  button.setAttribute("aria-pressed", String(status === "selected"));
  button.setAttribute("aria-disabled", String(status !== "free" && status !== "selected"));
}

function toggleSeat(button: HTMLButtonElement): void {
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
function moveFocus(from: HTMLButtonElement, key: string): boolean {
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

// -- holds and bookings -------------------------------------------------------

function updateActions(): void {
  const signedIn = !!state.account;
  const active = state.hold?.status === "active";
  el.holdSelected.disabled = state.busy || state.selected.size === 0;
  el.holdSelected.textContent =
    state.selected.size > 0 ? `Hold ${plural(state.selected.size, "selected seat")}` : "Hold selected seats";
  el.holdBest.disabled = state.busy || !state.sectionId;
  el.book.disabled = state.busy || !active;
  el.release.disabled = state.busy || !active;
  el.holdSelected.title = signedIn ? "" : "Sign in first";
}

async function hold(request: { seats?: string[]; quantity?: number }): Promise<void> {
  const event = state.event;
  if (!event || !state.sectionId || state.busy) return;
  if (!state.account) {
    say("Sign in or register first to hold seats.", "problem");
    el.email.focus();
    return;
  }
  if (state.hold?.status === "active") {
    say("Book or release your current hold first.", "problem");
    el.book.focus();
    return;
  }
  state.busy = true;
  updateActions();
  sayNothing();
  try {
    const admission = state.admissions.get(event.id);
    const held = await api.hold(
      state.account.token,
      { event_id: event.id, section_id: state.sectionId, ...request },
      admission?.token,
    );
    state.selected.clear();
    showHold(held);
    say(`Held ${held.seats.join(", ")} for you: book before the time runs out.`);
    el.book.focus();
  } catch (error) {
    if (sessionEnded(error)) return;
    if (error instanceof ApiError && error.code === "seats_unavailable") {
      const gone = error.problem.unavailable ?? request.seats ?? [];
      for (const id of gone) {
        state.selected.delete(id);
        state.statuses.set(id, "held");
      }
      for (const button of seatButtons()) paintSeat(button);
      say(
        `Sorry, ${plural(gone.length, "seat")} ${gone.join(", ")} ${gone.length === 1 ? "was" : "were"} taken by someone else a moment ago. ` +
          `Nothing was held; the map is being refreshed, choose other seats.`,
        "problem",
      );
    } else if (error instanceof ApiError && error.code === "insufficient_seats") {
      say(`There are not ${request.quantity} free seats left in this section.`, "problem");
    } else if (error instanceof ApiError && error.code === "admission_required") {
      el.queue.hidden = false;
      say("This event has a waiting room: join it, and hold seats once you are admitted.", "problem");
      el.queueJoin.focus();
    } else sayProblem(error);
  } finally {
    state.busy = false;
    updateActions();
    void refreshMap();
  }
}

function showHold(held: Hold): void {
  state.hold = held;
  sessionStorage.setItem("rsv.hold", JSON.stringify(held));
  el.holdPanel.hidden = false;
  el.holdSeats.textContent = `${plural(held.seats.length, "seat")} in ${sectionName(held.section_id)}: ${held.seats.join(", ")} · total ${money(held.total_cents)}`;
  el.holdState.textContent = "";
  window.clearInterval(state.countdownTimer);
  tick();
  if (held.status === "active") state.countdownTimer = window.setInterval(tick, 250);
  for (const button of seatButtons()) paintSeat(button);
  updateActions();
}

function sectionName(sectionId: string): string {
  return state.event?.sections.find((s) => s.id === sectionId)?.name ?? sectionId;
}

/** Redraws the countdown; at zero the hold is over and its seats are free. */
function tick(): void {
  const held = state.hold;
  if (!held) return;
  if (held.status !== "active") {
    window.clearInterval(state.countdownTimer);
    el.countdown.textContent = "0:00";
    return;
  }
  const left = Math.max(0, Math.ceil((Date.parse(held.expires_at) - Date.now()) / 1000));
  el.countdown.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  el.countdown.classList.toggle("urgent", left <= 30);
  if (left === 0) {
    window.clearInterval(state.countdownTimer);
    endHold("expired");
    el.holdState.textContent = `Your hold expired: ${held.seats.join(", ")} are free again for anyone.`;
    say("Your hold expired and its seats were released.", "problem");
    void confirmExpiry(held);
  }
}

function endHold(status: Hold["status"]): void {
  if (!state.hold) return;
  state.hold = { ...state.hold, status };
  sessionStorage.removeItem("rsv.hold");
  for (const button of seatButtons()) paintSeat(button);
  updateActions();
  void refreshMap();
}

/** The server expires a hold within a second of expires_at: show what it says. */
async function confirmExpiry(held: Hold): Promise<void> {
  if (!state.account) return;
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    try {
      const now = await api.getHold(state.account.token, held.hold_id);
      if (now.status !== "active") {
        if (state.hold?.hold_id === held.hold_id && now.status === "booked") state.hold = now;
        void refreshMap();
        return;
      }
    } catch {
      return;
    }
    await new Promise((resolve) => window.setTimeout(resolve, 500));
  }
}

async function book(): Promise<void> {
  const held = state.hold;
  if (!held || held.status !== "active" || !state.account || state.busy) return;
  state.busy = true;
  updateActions();
  try {
    const booking = await api.book(state.account.token, held.hold_id);
    window.clearInterval(state.countdownTimer);
    endHold("booked");
    el.holdPanel.hidden = true;
    say(`Booked ${booking.seats.join(", ")} · total ${money(booking.total_cents)}. Booking ${booking.booking_id}.`);
    await refreshBookings();
  } catch (error) {
    if (sessionEnded(error)) return;
    if (error instanceof ApiError && error.code === "hold_expired") {
      window.clearInterval(state.countdownTimer);
      endHold("expired");
      el.holdState.textContent = "This hold expired or was released before it could be booked.";
      say("Too late: the hold expired before the booking. Hold the seats again if they are still free.", "problem");
    } else if (error instanceof ApiError && error.code === "hold_booked") {
      endHold("booked");
      el.holdPanel.hidden = true;
      say("These seats are already booked for you.");
      await refreshBookings();
    } else sayProblem(error);
  } finally {
    state.busy = false;
    updateActions();
  }
}

async function release(): Promise<void> {
  const held = state.hold;
  if (!held || !state.account || state.busy) return;
  state.busy = true;
  updateActions();
  try {
    await api.releaseHold(state.account.token, held.hold_id);
    window.clearInterval(state.countdownTimer);
    endHold("released");
    el.holdPanel.hidden = true;
    say(`Released ${held.seats.join(", ")}.`);
  } catch (error) {
    if (!sessionEnded(error)) sayProblem(error);
  } finally {
    state.busy = false;
    updateActions();
  }
}

async function refreshBookings(): Promise<void> {
  if (!state.account) {
    el.bookingList.replaceChildren();
    el.bookingsEmpty.hidden = false;
    el.bookingsEmpty.textContent = "Sign in to see your bookings.";
    return;
  }
  try {
    const { bookings } = await api.bookings(state.account.token);
    renderBookings(bookings);
  } catch (error) {
    if (!sessionEnded(error)) sayProblem(error);
  }
}

function renderBookings(bookings: Booking[]): void {
  el.bookingsEmpty.hidden = bookings.length > 0;
  el.bookingsEmpty.textContent = "No bookings yet.";
  el.bookingList.replaceChildren(
    ...bookings.map((booking) => {
      const item = document.createElement("li");
      item.className = `booking ${booking.status}`;
      item.dataset.booking = booking.booking_id;
      const text = document.createElement("span");
      const when = new Date(booking.created_at).toLocaleString();
      text.textContent =
        `${booking.event_id} · ${booking.section_id} · ${booking.seats.join(", ")} · ` +
        `${money(booking.total_cents)} · ${booking.status} · ${when}`;
      item.append(text);
      if (booking.status === "confirmed") {
        const cancel = document.createElement("button");
        cancel.type = "button";
        cancel.className = "secondary";
        cancel.textContent = "Cancel";
        cancel.setAttribute("aria-label", `Cancel the booking of ${booking.seats.join(", ")}`);
        cancel.addEventListener("click", () => void cancelBooking(booking));
        item.append(cancel);
      }
      return item;
    }),
  );
}

async function cancelBooking(booking: Booking): Promise<void> {
  if (!state.account) return;
  if (!window.confirm(`Cancel the booking of ${booking.seats.join(", ")}?`)) return;
  try {
    await api.cancelBooking(state.account.token, booking.booking_id);
    say(`Cancelled the booking of ${booking.seats.join(", ")}; the seats are free again.`);
    await refreshBookings();
    void refreshMap();
  } catch (error) {
    if (!sessionEnded(error)) sayProblem(error);
  }
}

// -- the waiting room ---------------------------------------------------------

function renderQueue(): void {
  const event = state.event;
  const enabled = !!event?.waiting_room?.enabled;
  const admission = event ? state.admissions.get(event.id) : undefined;
  el.queue.hidden = !enabled && !admission;
  if (el.queue.hidden) return;
  if (!state.account) {
    el.queueStatus.textContent = "This event has a waiting room. Sign in to join it.";
    el.queueJoin.hidden = true;
    return;
  }
  if (!admission) {
    el.queueStatus.textContent = "This event has a waiting room: join it to get your turn to hold seats.";
    el.queueJoin.hidden = false;
    return;
  }
  el.queueJoin.hidden = true;
  if (admission.token)
    el.queueStatus.textContent = `You are in: hold seats before ${new Date(admission.expiresAt ?? "").toLocaleTimeString()}.`;
  else el.queueStatus.textContent = `You are number ${admission.position} in the queue. This page updates by itself.`;
}

async function joinQueue(): Promise<void> {
  const event = state.event;
  if (!event || !state.account) return;
  try {
    const ticket = await api.joinQueue(state.account.token, event.id);
    state.admissions.set(event.id, { ticket: ticket.ticket, position: ticket.position });
    renderQueue();
    void pollQueue(event.id);
  } catch (error) {
    if (sessionEnded(error)) return;
    if (error instanceof ApiError && (error.status === 404 || error.status === 501)) {
      el.queueStatus.textContent =
        `This server has no waiting room for this event (it answered ${error.status}: ${error.message}). ` +
        "You can hold seats directly.";
      el.queueJoin.hidden = true;
    } else sayProblem(error);
  }
}

async function pollQueue(eventId: string): Promise<void> {
  window.clearTimeout(state.queueTimer);
  const admission = state.admissions.get(eventId);
  if (!admission || admission.token || !state.account) return;
  try {
    const ticket = await api.queueTicket(state.account.token, admission.ticket);
    admission.position = ticket.position;
    if (ticket.admitted && ticket.admission_token) {
      admission.token = ticket.admission_token;
      admission.expiresAt = ticket.expires_at;
      say("Your turn: you can hold seats now.");
    }
    renderQueue();
  } catch (error) {
    if (sessionEnded(error)) return;
    if (error instanceof ApiError && (error.status === 404 || error.status === 501)) {
      state.admissions.delete(eventId);
      el.queueStatus.textContent = `The waiting room does not know this ticket any more (${error.status}). Join again.`;
      el.queueJoin.hidden = false;
      return;
    }
    el.queueStatus.textContent = `Position not updated: ${describeProblem(error)}`;
  }
  if (!admission.token) state.queueTimer = window.setTimeout(() => void pollQueue(eventId), QUEUE_REFRESH_MS);
}

// -- wiring -------------------------------------------------------------------

function duration(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  if (minutes === 0) return `${rest} s`;
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

el.authForm.addEventListener("submit", (e) => {
  e.preventDefault();
  void signIn(false);
});
el.register.addEventListener("click", () => void signIn(true));
el.signOut.addEventListener("click", () => {
  setAccount(undefined);
  say("Signed out.");
});
el.event.addEventListener("change", () => void chooseEvent(el.event.value));
el.section.addEventListener("change", () => chooseSection(el.section.value));
el.map.addEventListener("click", (e) => {
  const button = (e.target as HTMLElement).closest<HTMLButtonElement>("button.seat");
  if (button) toggleSeat(button);
});
el.map.addEventListener("keydown", (e) => {
  const button = (e.target as HTMLElement).closest<HTMLButtonElement>("button.seat");
  if (button && moveFocus(button, e.key)) e.preventDefault();
});
el.holdSelected.addEventListener("click", () => void hold({ seats: Array.from(state.selected) }));
el.holdBest.addEventListener("click", () => {
  const quantity = Number(el.bestCount.value);
  if (!Number.isInteger(quantity) || quantity < 1 || quantity > 50) {
    say("Ask for 1 to 50 seats.", "problem");
    el.bestCount.focus();
    return;
  }
  void hold({ quantity });
});
el.book.addEventListener("click", () => void book());
el.release.addEventListener("click", () => void release());
el.queueJoin.addEventListener("click", () => void joinQueue());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refreshMap();
});

renderAccount();
void refreshBookings();
void loadEvents().then(() => {
  // A hold made before a reload of this page: show it again while it lasts.
  const saved = sessionStorage.getItem("rsv.hold");
  if (!saved || !state.account) return;
  const held = JSON.parse(saved) as Hold;
  if (Date.parse(held.expires_at) > Date.now()) showHold(held);
  else sessionStorage.removeItem("rsv.hold");
});
