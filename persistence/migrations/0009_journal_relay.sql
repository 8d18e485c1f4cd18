-- The journal is the outbox (issue 16, docs/events.md "How it works"): with
-- `--pg-batch-encoding journal` and Kafka on, a group commit no longer
-- writes an outbox row besides its journal row. The relay reads the journal
-- rows themselves and renders their Kafka records, so a change is written
-- once. A journal row now lives until it is both projected into the tables
-- and, when it carries records, relayed to Kafka.
--
-- `records`: how many Kafka records the row holds (its seat changes and
-- events), written by the writer; 0 when its node runs without Kafka, or
-- when the row holds nothing a consumer hears about. A row with 0 waits for
-- no relay: the projector deletes it as it projects it. Rows written before
-- this migration have 0: their records are in the outbox, as then.
ALTER TABLE journal ADD COLUMN records integer NOT NULL DEFAULT 0
  CHECK (records >= 0);

-- How far each reader got in each stream: the projector ('projector': rows
-- up to `seq` are in the tables) and the relay ('relay': rows up to `seq`
-- are in Kafka). Advancing a cursor costs one row per stream and step
-- instead of an update per journal row. A row is deleted once the readers
-- it waits for have both passed it: by the projector's step (rows that
-- need no relay, or that the relay passed) or by the relay's trim (rows
-- the projector passed). Steps and trims exclude each other (the
-- projection's advisory lock), so whichever comes second sees the other's
-- cursor. The projector forgets the cursors of streams without rows: a
-- stream's numbers only grow, so a missing cursor (0) reads the same rows
-- as the forgotten one. It forgets only cursors that did not move for an
-- hour: one that just moved may belong to rows committed after the
-- snapshot of the statement that forgets.
CREATE TABLE journal_cursors (
  reader     text NOT NULL CHECK (reader IN ('projector', 'relay')),
  stream     text NOT NULL,
  seq        bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (reader, stream)
);
