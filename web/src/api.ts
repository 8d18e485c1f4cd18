// The public HTTP API of ../shared/contract/http-api.md, as the pages use it.
// Every failure becomes an ApiError carrying the server's problem answer, or
// a made-up one (status 0) when the server could not be reached.

export interface Problem {
  status: number;
  code: string;
  title?: string;
  detail?: string;
  unavailable?: string[];
  unknown?: string[];
  booking_id?: string;
}

export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title ?? problem.code);
  }
  get status(): number {
    return this.problem.status;
  }
  get code(): string {
    return this.problem.code;
  }
}

export interface EventSummary {
  id: string;
  name: string;
  starts_at: string;
  seats_total: number;
  seats_free: number;
}

export interface SectionSummary {
  id: string;
  name: string;
  price_cents: number;
  seats_total: number;
  free: number;
  held: number;
  booked: number;
}

export interface EventDetail {
  id: string;
  name: string;
  starts_at: string;
  hold_ttl_seconds: number;
  max_seats_per_customer?: number | null;
  waiting_room?: { enabled: boolean; admit_per_second?: number };
  sections: SectionSummary[];
}

export type SeatStatus = "free" | "held" | "booked";

export interface SeatMap {
  event_id: string;
  section_id: string;
  seats: { id: string; status: SeatStatus }[];
}

export interface Hold {
  hold_id: string;
  event_id: string;
  section_id: string;
  seats: string[];
  status: "active" | "expired" | "released" | "booked";
  expires_at: string;
  total_cents: number;
}

export interface Booking {
  booking_id: string;
  hold_id: string;
  event_id: string;
  section_id: string;
  seats: string[];
  total_cents: number;
  status: "confirmed" | "cancelled";
  created_at: string;
}

export interface Session {
  token: string;
  customer_id: string;
  expires_at: string;
}

export interface QueueTicket {
  ticket: string;
  position: number;
  admitted?: boolean;
  admission_token?: string;
  expires_at?: string;
}

export interface EventStats {
  event_id: string;
  free: number;
  held: number;
  booked: number;
  revenue_cents: number;
}

export interface NewEvent {
  id?: string;
  name: string;
  starts_at: string;
  hold_ttl_seconds?: number;
  max_seats_per_customer?: number;
  sections: {
    id: string;
    name: string;
    price_cents: number;
    rows: { label: string; seats: number }[];
  }[];
}

export type ServiceState = "ok" | "down" | "disabled";

/** A clustered node's view of the partitions (`--cluster`); absent on a single node. */
export interface ClusterStatus {
  /** This node's advertised address. */
  node: string;
  partitions: number;
  /** Its consumer-group membership. */
  group: ServiceState;
  owned: number[];
  /** Partitions it is taking over; they answer 503 meanwhile. */
  loading: number[];
  events: string[];
  /** Owner address to its partitions, as PostgreSQL records them. */
  members: Record<string, number[]>;
  /** The epoch of each partition, indexed by partition. */
  epochs: number[];
}

export interface Health {
  status: "healthy" | "unhealthy";
  services: Record<string, ServiceState>;
  cluster?: ClusterStatus;
}

interface CallOptions {
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** One request; resolves with the parsed body (undefined for 204). */
export async function call<T>(
  method: "GET" | "POST" | "DELETE",
  path: string,
  options: CallOptions = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch {
    throw new ApiError({
      status: 0,
      code: "network",
      detail: "The server cannot be reached. Check your connection; the page retries by itself.",
    });
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!response.ok) {
    const problem =
      parsed && typeof parsed === "object" && "code" in parsed
        ? (parsed as Problem)
        : { status: response.status, code: `http_${response.status}`, detail: text.slice(0, 200) };
    problem.status = response.status;
    throw new ApiError(problem);
  }
  return parsed as T;
}

const enc = encodeURIComponent;

export const api = {
  register: (email: string, password: string) =>
    call<{ customer_id: string; email: string }>("POST", "/v1/customers", { body: { email, password } }),
  signIn: (email: string, password: string) =>
    call<Session>("POST", "/v1/sessions", { body: { email, password } }),
  events: () => call<{ events: EventSummary[] }>("GET", "/v1/events"),
  event: (id: string) => call<EventDetail>("GET", `/v1/events/${enc(id)}`),
  seats: (eventId: string, sectionId: string) =>
    call<SeatMap>("GET", `/v1/events/${enc(eventId)}/sections/${enc(sectionId)}/seats`),
  stats: (eventId: string, adminToken: string) =>
    call<EventStats>("GET", `/v1/events/${enc(eventId)}/stats`, { token: adminToken }),
  createEvent: (event: NewEvent, adminToken: string) =>
    call<EventDetail>("POST", "/v1/events", { body: event, token: adminToken }),
  hold: (
    token: string,
    request: { event_id: string; section_id: string; seats?: string[]; quantity?: number },
    admissionToken?: string,
  ) =>
    call<Hold>("POST", "/v1/holds", {
      token,
      body: request,
      headers: admissionToken ? { "X-Admission-Token": admissionToken } : {},
    }),
  getHold: (token: string, holdId: string) => call<Hold>("GET", `/v1/holds/${enc(holdId)}`, { token }),
  releaseHold: (token: string, holdId: string) => call<void>("DELETE", `/v1/holds/${enc(holdId)}`, { token }),
  book: (token: string, holdId: string) => call<Booking>("POST", "/v1/bookings", { token, body: { hold_id: holdId } }),
  bookings: (token: string) => call<{ bookings: Booking[] }>("GET", "/v1/bookings", { token }),
  cancelBooking: (token: string, bookingId: string) =>
    call<Booking>("DELETE", `/v1/bookings/${enc(bookingId)}`, { token }),
  joinQueue: (token: string, eventId: string) =>
    call<QueueTicket>("POST", `/v1/events/${enc(eventId)}/queue`, { token }),
  queueTicket: (token: string, ticket: string) => call<QueueTicket>("GET", `/v1/queue/${enc(ticket)}`, { token }),
  /** The node's health; a 503 (a service down) carries the same body, so both are read. */
  health: async (): Promise<Health> => {
    let response: Response;
    try {
      response = await fetch("/health", { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch {
      throw new ApiError({ status: 0, code: "network", detail: "/health cannot be read" });
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      body = undefined;
    }
    if ((response.ok || response.status === 503) && body && typeof body === "object" && "status" in body)
      return body as Health;
    throw new ApiError({ status: response.status, code: `http_${response.status}`, detail: "/health gave no answer" });
  },
  metrics: async (): Promise<string> => {
    try {
      const response = await fetch("/metrics", { cache: "no-store" });
      if (!response.ok) throw new Error(String(response.status));
      return await response.text();
    } catch {
      throw new ApiError({ status: 0, code: "network", detail: "/metrics cannot be read" });
    }
  },
};

/** Money is integer cents; the contract names no currency. */
export function money(cents: number): string {
  return (cents / 100).toFixed(2);
}

/** Row labels of a generated section: A..Z, then AA, AB, ... (at most 4 letters). */
export function rowLabel(index: number): string {
  let label = "";
  let n = index;
  do {
    label = String.fromCharCode(65 + (n % 26)) + label;
    n = Math.floor(n / 26) - 1;
  } while (n >= 0);
  return label;
}

/** Splits "AA-12" into its row label and seat number. */
export function splitSeat(id: string): { row: string; number: number } {
  const dash = id.lastIndexOf("-");
  return { row: id.slice(0, dash), number: Number(id.slice(dash + 1)) };
}
