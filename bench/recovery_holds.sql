-- Active holds written straight into the server's tables, in the form
-- persistence/pg_store.cpp (render) writes them (persistence/migrations/
-- 0001_initial.sql), for bench/run's recovery scenario:
--   psql -v event=ID -v holds=N -v per_row=P -v customers='{cus_a,cus_b}' \
--        -f recovery_holds.sql
-- The event must exist (bench/run creates it through the API, so its
-- events and sections rows are the server's own) and have no holds yet.
--
-- Hold k (from 0) is in the section at position k % S (S sections), in slot
-- k / S: slots are dense from 0 in every section, as the server numbers
-- them. Each hold has one seat, the section's seat index slot * spacing,
-- spread evenly over the section, so no seat is in two holds. Seat ids are
-- "<row label>-<number>", labels read from the section's rows; every row has
-- P seats (bench/run's events do). Times have milliseconds, as the server
-- writes them; a hold expires after the event's hold_ttl_seconds. Customers
-- are real ones (created through the API), taken in turn.
BEGIN;
WITH t AS (SELECT date_trunc('milliseconds', now()) AS at),
sec AS (
  SELECT section_no, position, rows,
         jsonb_array_length(rows) * :per_row AS seats
  FROM sections WHERE event_id = :'event'
),
n AS (SELECT count(*)::int AS sections FROM sec),
h AS (
  SELECT k, k % n.sections AS position, k / n.sections AS slot,
         ceil(:holds::numeric / n.sections)::int AS per_section
  FROM n, generate_series(0, :holds - 1) AS k
)
INSERT INTO holds (section_no, slot, customer_id, seats, status, created_at,
                   expires_at, updated_at)
SELECT sec.section_no, h.slot,
       c.ids[1 + h.k % cardinality(c.ids)],
       ARRAY[(sec.rows -> (i.idx / :per_row) ->> 'label') || '-' ||
             (i.idx % :per_row + 1)],
       'active', t.at, t.at + make_interval(secs => e.hold_ttl_seconds), t.at
FROM h
JOIN sec USING (position)
JOIN events e ON e.id = :'event'
CROSS JOIN t
CROSS JOIN (SELECT :'customers'::text[] AS ids) AS c
CROSS JOIN LATERAL (SELECT h.slot * (sec.seats / h.per_section) AS idx) AS i;
COMMIT;
