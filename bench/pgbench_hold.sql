-- pgbench: one hold of one random seat per transaction, the way a user
-- could build holds on plain PostgreSQL (bench/run's pgbench scenario).
-- pgbench -D seats=N -D customers=M -f pgbench_hold.sql
--
-- One statement, so one round trip and one transaction: the UPDATE takes
-- the seat only if it is free, and the INSERT writes a hold only for a
-- seat the UPDATE took. A transaction that drew a taken seat commits and
-- inserts nothing, so holds made = rows added to pgbench_holds, which
-- bench/run counts before and after.
\set seat random(1, :seats)
\set customer random(1, :customers)
WITH taken AS (
  UPDATE pgbench_seats
     SET status = 'held', hold_id = nextval('pgbench_holds_id_seq')
   WHERE seat = :seat AND status = 'free'
  RETURNING seat, hold_id
)
INSERT INTO pgbench_holds (id, seat, customer, expires_at)
SELECT hold_id, seat, :customer, now() + interval '10 minutes' FROM taken;
