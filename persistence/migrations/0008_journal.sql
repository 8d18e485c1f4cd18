-- The journal (issue 16, docs/architecture.md "Journal"): with
-- `--pg-batch-encoding journal`, a group commit writes its seat changes and
-- idempotency answers as one row here, in the codec of
-- persistence/journal_codec.hpp, instead of rows of holds, bookings and
-- idempotency_records. A projector applies the rows to those tables in
-- large batches and deletes them in the same transaction, so a change is
-- in the tables exactly when its journal row is gone. Every read of the
-- tables that must see acknowledged writes (recovery, a section's reload,
-- a partition's load) first projects what the journal holds.
--
-- A stream is one writer connection of one process: `<node>/<start>/<n>`,
-- never reused, so that two processes never number the same stream. Within
-- a stream `seq` is commit order; a section writes through one writer, so
-- its changes are in order too.
CREATE TABLE journal (
  stream     text NOT NULL,
  seq        bigint NOT NULL,
  created_at timestamptz NOT NULL,
  entries    integer NOT NULL CHECK (entries > 0),
  body       bytea NOT NULL,
  PRIMARY KEY (stream, seq)
);
-- A row is written once, read once and deleted: compressing it would cost
-- the writer CPU for nothing (as for the outbox, migration 0004).
ALTER TABLE journal ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE journal SET (toast_tuple_target = 8160);
