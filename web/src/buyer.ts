// The buyer's page: choose an event and a section, see its seat map refresh
// once a second, hold seats (named or best available) with a countdown, book,
// list and cancel bookings, register and sign in, and queue in the waiting
// room when the event has one. Only the public HTTP API is used. What the
// page holds is in buyer_page.ts, the seat map in seat_map.ts.

import { api, ApiError, Booking, Hold, money } from "./api";
import { Account, el, plural, state, updateActions } from "./buyer_page";
import { chooseSection, moveFocus, paintSeat, refreshMap, seatButtons, toggleSeat } from "./seat_map";
import { describeProblem, say, sayProblem, sayNothing } from "./ui";

const QUEUE_REFRESH_MS = 1000;

// -- account ------------------------------------------------------------------

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

// -- holds and bookings -------------------------------------------------------

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
