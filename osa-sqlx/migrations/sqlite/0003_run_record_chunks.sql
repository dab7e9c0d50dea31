-- A run's record ids live in chunks of at most 10,000 ids (JSON arrays), one row per
-- chunk, keyed by the submit position of the chunk's first id: a page of records parses
-- only the chunks it overlaps, and a submission appends chunks without rewriting the
-- earlier ones.
CREATE TABLE validation_run_record_chunks (
    run_id     BLOB NOT NULL REFERENCES validation_runs (id),
    start_pos  INTEGER NOT NULL CHECK (start_pos >= 0),
    id_count   INTEGER NOT NULL CHECK (id_count > 0),
    record_ids TEXT NOT NULL CHECK (json_valid(record_ids) AND json_array_length(record_ids) = id_count),
    PRIMARY KEY (run_id, start_pos)
);

INSERT INTO validation_run_record_chunks (run_id, start_pos, id_count, record_ids)
SELECT r.run_id, (j.key / 10000) * 10000, count(*), json_group_array(j.value ORDER BY j.key)
FROM validation_run_records r, json_each(r.record_ids) j
GROUP BY r.run_id, j.key / 10000;

DROP TABLE validation_run_records;
