-- An outbox row is written once, read once and deleted: compressing its
-- payload (PostgreSQL tries once a row passes about 2 kB, which a batch of
-- a dozen records does) costs the writer CPU for nothing. Rows up to a page
-- stay inline and uncompressed; only very large batches are toasted.
ALTER TABLE outbox SET (toast_tuple_target = 8160);
