-- The initial schema: what an operator reads with psql, and what recovery
-- loads. Seats are stored by id (`A-12`) so that the tables read as the API
-- does. A seat's state follows from the holds and bookings that own it; the
-- view seat_state shows it seat by seat.

CREATE TABLE events (
  id                     text PRIMARY KEY,
  name                   text NOT NULL,
  starts_at              timestamptz NOT NULL,
  hold_ttl_seconds       integer NOT NULL CHECK (hold_ttl_seconds BETWEEN 30 AND 7200),
  max_seats_per_customer integer CHECK (max_seats_per_customer > 0),
  waiting_room           jsonb,
  created_at             timestamptz NOT NULL DEFAULT now()
);

-- section_no is the node-wide number carried inside hold and booking ids.
CREATE TABLE sections (
  section_no  integer PRIMARY KEY,
  event_id    text NOT NULL REFERENCES events (id),
  id          text NOT NULL,
  position    integer NOT NULL,
  name        text NOT NULL,
  price_cents bigint NOT NULL CHECK (price_cents >= 0),
  rows        jsonb NOT NULL, -- [{"label": "A", "seats": 30}, ...]
  UNIQUE (event_id, id),
  UNIQUE (event_id, position)
);

CREATE TABLE customers (
  id            text PRIMARY KEY,
  email         text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL
);

-- A hold is identified by (section_no, slot), as its id `hld_<section>_<slot>`.
CREATE TABLE holds (
  section_no  integer NOT NULL REFERENCES sections (section_no),
  slot        integer NOT NULL,
  customer_id text NOT NULL,
  seats       text[] NOT NULL,
  status      text NOT NULL CHECK (status IN ('active', 'expired', 'released', 'booked')),
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (section_no, slot)
);
CREATE INDEX holds_active_by_section ON holds (section_no) WHERE status = 'active';
CREATE INDEX holds_by_customer ON holds (customer_id);

-- A booking shares its hold's (section_no, slot): `bkg_<section>_<slot>`.
CREATE TABLE bookings (
  section_no   integer NOT NULL,
  slot         integer NOT NULL,
  customer_id  text NOT NULL,
  status       text NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
  total_cents  bigint NOT NULL CHECK (total_cents >= 0),
  created_at   timestamptz NOT NULL,
  cancelled_at timestamptz,
  PRIMARY KEY (section_no, slot),
  FOREIGN KEY (section_no, slot) REFERENCES holds (section_no, slot)
);
CREATE INDEX bookings_by_customer ON bookings (customer_id, created_at DESC);

-- Answers to requests with an Idempotency-Key, kept at least 24 hours.
CREATE TABLE idempotency_records (
  customer_id text NOT NULL,
  key         text NOT NULL,
  fingerprint text NOT NULL,
  status      integer NOT NULL,
  body        text NOT NULL,
  location    text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_records_by_age ON idempotency_records (created_at);

-- Every seat that is not free, with who holds or booked it.
CREATE VIEW seat_state AS
SELECT s.event_id,
       s.id AS section_id,
       seat.id AS seat_id,
       CASE WHEN h.status = 'booked' THEN 'booked' ELSE 'held' END AS status,
       h.customer_id,
       h.section_no,
       h.slot
FROM holds h
JOIN sections s USING (section_no)
LEFT JOIN bookings b USING (section_no, slot)
CROSS JOIN LATERAL unnest(h.seats) AS seat (id)
WHERE h.status = 'active'
   OR (h.status = 'booked' AND b.status = 'confirmed');
