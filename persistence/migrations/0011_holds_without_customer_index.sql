-- holds_by_customer served no read: the node answers a customer's holds
-- from section memory, and its reads of holds in PostgreSQL go by
-- (section_no, slot) (the primary key, holds_live). A customer's bookings
-- have their own index (bookings_by_customer). Every inserted hold paid for
-- it: measured on 200,000 holds in statements of 2,000, three pairs
-- alternating, 5.2-5.5 µs a hold with it and 3.8-3.9 µs without (issue 16:
-- what PostgreSQL spends per durable hold). An operator who looks up a
-- customer's holds by hand scans the table, or builds the index back
-- (CREATE INDEX CONCURRENTLY) on a replica.
DROP INDEX IF EXISTS holds_by_customer;
