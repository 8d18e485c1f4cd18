-- The transactional outbox (docs/events.md): the Kafka records of every
-- committed change, written in the transaction of the change, so that a
-- change is in Kafka eventually exactly when it is in these tables.
--
-- One row per committed batch, not per change: a batch of a hundred holds
-- costs PostgreSQL one more row and one more index entry, not a hundred.
-- `payload` holds the batch's records, one JSON value per line, as they are
-- produced (a line is the record's value; its key and id are inside it).
--
-- A stream is one writer connection of one node (`<node id>/<writer>`). A
-- writer commits its batches one after another and numbers them, so within
-- a stream `seq` is commit order; a section always writes through one
-- writer, so its records are in order too. The relay deletes a row once
-- Kafka has acknowledged every record in it.
CREATE TABLE outbox (
  stream     text NOT NULL,
  seq        bigint NOT NULL,
  created_at timestamptz NOT NULL,
  records    integer NOT NULL CHECK (records > 0),
  payload    text NOT NULL,
  PRIMARY KEY (stream, seq)
);
CREATE INDEX outbox_by_age ON outbox (created_at, stream, seq);
