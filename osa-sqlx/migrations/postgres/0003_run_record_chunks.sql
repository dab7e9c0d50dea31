-- A run's record ids live in chunks of at most 10,000 ids, one row per chunk, keyed by
-- the submit position of the chunk's first id: a page of records reads only the chunks
-- it overlaps, and a submission appends chunks without rewriting the earlier ones.
CREATE TABLE validation_run_record_chunks (
    run_id     UUID NOT NULL REFERENCES validation_runs (id),
    start_pos  INTEGER NOT NULL CHECK (start_pos >= 0),
    id_count   INTEGER NOT NULL CHECK (id_count > 0),
    record_ids TEXT[] NOT NULL CHECK (cardinality(record_ids) = id_count),
    PRIMARY KEY (run_id, start_pos)
);

INSERT INTO validation_run_record_chunks (run_id, start_pos, id_count, record_ids)
SELECT r.run_id, ((t.ord - 1) / 10000) * 10000, count(*), array_agg(t.id ORDER BY t.ord)
FROM validation_run_records r
CROSS JOIN LATERAL unnest(r.record_ids) WITH ORDINALITY AS t(id, ord)
GROUP BY r.run_id, (t.ord - 1) / 10000;

DROP TABLE validation_run_records;
