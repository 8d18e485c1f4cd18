// The buyer's page, the part its modules share: what the page holds (the
// signed-in account, the chosen event and section, the seats, the hold, the
// waiting-room admissions, the timers), its elements, and the buttons that
// depend on all of these. buyer.ts and seat_map.ts work on it.

import { EventDetail, Hold, SeatStatus } from "./api";
import { byId } from "./ui";

export interface Account {
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

export const state = {
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

export const el = {
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

export function currentSection() {
  return state.event?.sections.find((s) => s.id === state.sectionId);
}

/** Which of the hold and booking buttons can be used now. */
export function updateActions(): void {
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

export function duration(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  const rest = seconds % 60;
  if (minutes === 0) return `${rest} s`;
  return rest === 0 ? `${minutes} min` : `${minutes} min ${rest} s`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}
