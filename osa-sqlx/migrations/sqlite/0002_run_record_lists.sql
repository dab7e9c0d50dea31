-- A run's record ids live in one row, in submit order (a JSON array); `validation_records`
-- keeps only the settled verdicts that a hook gave (rejected, errored). A record without
-- a verdict row is pending while its run is in progress and accepted once the run
-- completed.
CREATE TABLE validation_run_records (
    run_id     BLOB PRIMARY KEY REFERENCES validation_runs (id),
    record_ids TEXT NOT NULL CHECK (json_valid(record_ids))
);

INSERT INTO validation_run_records (run_id, record_ids)
SELECT run_id, json_group_array(record_id ORDER BY position)
FROM validation_records
GROUP BY run_id;

DELETE FROM validation_records
WHERE json_extract(verdict, '$.verdict') IN ('pending', 'accepted');

ALTER TABLE validation_records DROP COLUMN position;
