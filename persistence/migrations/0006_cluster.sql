-- Clustered nodes (docs/cluster.md). Every event belongs to one partition
-- (a stable hash of its id modulo the partition count); a node serves the
-- events of the partitions its Kafka consumer group assigned to it.
--
-- cluster_settings holds the partition count, written by the first node
-- started with --cluster and compared by every later one: a count that
-- changed would move events between partitions under running nodes.
CREATE TABLE cluster_settings (
  singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  partitions integer NOT NULL CHECK (partitions BETWEEN 1 AND 4096),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- One row per partition: its epoch, raised by every node that takes it
-- over, and where its owner answers (the advertised HOST:PORT). A write
-- commits only while the epoch it was made under is still the row's
-- (rsv_fence below), so a node that lost a partition cannot commit one more
-- write for it, however long it was frozen.
CREATE TABLE cluster_partitions (
  partition  integer PRIMARY KEY CHECK (partition >= 0),
  epoch      bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  owner      text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Section numbers are carried inside hold and booking ids and are the key of
-- every hold row: nodes that create events at the same time must not pick
-- the same one. A single node counts in memory; nodes of a cluster take
-- numbers from this sequence, which starts past every number in use.
CREATE SEQUENCE section_no_seq;
SELECT setval('section_no_seq', coalesce(max(section_no), 0) + 1, false)
FROM sections;

-- The fence, run first in every group-commit transaction of a clustered
-- node: it takes a FOR SHARE lock on each partition row the batch writes
-- under and fails with SQLSTATE RSV01 unless each still has the epoch the
-- batch was made under. FOR SHARE, not FOR KEY SHARE: the takeover's
-- UPDATE of the epoch conflicts with the former and not with the latter,
-- so a takeover waits for a batch that passed the fence to commit, and a
-- batch that comes after the takeover sees the new epoch.
CREATE FUNCTION rsv_fence(partitions integer[], epochs bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  current_epochs bigint[];
BEGIN
  SELECT array_agg(p.epoch ORDER BY w.ord) INTO current_epochs
  FROM unnest(partitions, epochs) WITH ORDINALITY AS w (partition, epoch, ord)
  JOIN (SELECT partition, epoch FROM cluster_partitions
        WHERE partition = ANY (partitions)
        ORDER BY partition FOR SHARE) p USING (partition);
  IF current_epochs IS DISTINCT FROM epochs THEN
    RAISE EXCEPTION 'fenced: partitions % were written under epochs % but '
      'are now at %', partitions, epochs, current_epochs
      USING ERRCODE = 'RSV01';
  END IF;
END
$$;

-- The same comparison without the lock and without failing: a test-only
-- switch (--cluster-unsafe-no-fencing) uses it to count the batches that
-- the fence would have refused, proof that they were attempted.
CREATE FUNCTION rsv_stale_epochs(partitions integer[], epochs bigint[])
RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT count(*) <> coalesce(array_length(partitions, 1), 0)
  FROM unnest(partitions, epochs) AS w (partition, epoch)
  JOIN cluster_partitions p USING (partition)
  WHERE p.epoch = w.epoch
$$;
