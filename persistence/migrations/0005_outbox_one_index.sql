-- The relay reads each stream after its last delivered row by the primary
-- key (stream, seq), so the index by age is no longer read; it cost every
-- outbox INSERT a second index entry and every read a walk over the rows
-- delivered or deleted since the last vacuum.
DROP INDEX outbox_by_age;
