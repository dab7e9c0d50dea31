-- A run's record ids live in one row, in submit order; `validation_records` keeps only
-- the settled verdicts that a hook gave (rejected, errored). A record without a verdict
-- row is pending while its run is in progress and accepted once the run completed.
CREATE TABLE validation_run_records (
    run_id     UUID PRIMARY KEY REFERENCES validation_runs (id),
    record_ids TEXT[] NOT NULL
);

INSERT INTO validation_run_records (run_id, record_ids)
SELECT run_id, array_agg(record_id ORDER BY position)
FROM validation_records
GROUP BY run_id;

DELETE FROM validation_records WHERE verdict->>'verdict' IN ('pending', 'accepted');

ALTER TABLE validation_records DROP COLUMN position;
