-- The plain-PostgreSQL way to hold seats, the other side of bench/run's
-- pgbench scenario: a row per seat with its status, a row per hold.
-- psql -v seats=N -f pgbench_setup.sql. Drops and refills its own two
-- tables only; the server's tables are not touched.
SET client_min_messages = warning;
DROP TABLE IF EXISTS pgbench_holds;
DROP TABLE IF EXISTS pgbench_seats;

CREATE TABLE pgbench_seats (
  seat    integer PRIMARY KEY,
  status  text NOT NULL DEFAULT 'free',
  hold_id bigint
);

CREATE TABLE pgbench_holds (
  id         bigserial PRIMARY KEY,
  seat       integer NOT NULL,
  customer   integer NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);

INSERT INTO pgbench_seats (seat) SELECT generate_series(1, :seats);
VACUUM ANALYZE pgbench_seats;
VACUUM ANALYZE pgbench_holds;
