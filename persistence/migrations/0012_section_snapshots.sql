-- Per-section snapshots (issue 16, docs/architecture.md "Per-section
-- snapshots"): with `--pg-batch-encoding journal`, a section writes its
-- state (live holds and last hold, persistence/journal_codec.hpp) from
-- time to time, so that recovery reads the snapshots and the journal rows
-- after them instead of first projecting the journal into the tables.
--
-- Order. Every journal row takes a number from `journal_order` as it is
-- inserted, and a snapshot takes the next number as it is written, in the
-- same transaction as the section's writes before it (the writer ends a
-- batch after a section's snapshot). A section's rows are numbered in the
-- order it wrote them, across streams too: a section writes through one
-- connection at a time, whose transactions follow each other, and a new
-- owner loads it only after the former one can commit no more (the
-- cluster's fence; a restarted node ends the dead process's backends). So
-- a snapshot with `mark` m holds exactly the section's entries in rows
-- numbered below m.
CREATE SEQUENCE journal_order AS bigint;

-- Rows already in the journal are numbered in stream order: before this
-- migration every load of a section projected the journal first, so the
-- unprojected rows of one section are all in one stream.
ALTER TABLE journal ADD COLUMN id bigint;
UPDATE journal j SET id = o.n FROM (SELECT stream, seq, row_number() OVER
  (ORDER BY stream, seq) AS n FROM journal) o
  WHERE o.stream = j.stream AND o.seq = j.seq;
SELECT setval('journal_order', coalesce((SELECT max(id) FROM journal), 0) + 1,
  false);
ALTER TABLE journal ALTER COLUMN id SET DEFAULT nextval('journal_order');
ALTER TABLE journal ALTER COLUMN id SET NOT NULL;
ALTER SEQUENCE journal_order OWNED BY journal.id;
CREATE UNIQUE INDEX journal_by_id ON journal (id);

-- The sections whose seat changes a row holds. A row is deleted only when
-- every one of them has a snapshot numbered after it (besides being
-- projected, and relayed when it has records): recovery reads a section's
-- rows after its snapshot from here. Rows written before this migration
-- have none: every snapshot is numbered after them.
ALTER TABLE journal ADD COLUMN sections integer[] NOT NULL DEFAULT '{}';

CREATE TABLE section_snapshots (
  section_no integer PRIMARY KEY REFERENCES sections (section_no),
  mark       bigint NOT NULL,
  taken_at   timestamptz NOT NULL,
  holds      integer NOT NULL CHECK (holds >= 0),
  body       bytea NOT NULL
);
-- Written often, read at recovery: no compression (as for the journal).
ALTER TABLE section_snapshots ALTER COLUMN body SET STORAGE EXTERNAL;
