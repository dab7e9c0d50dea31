-- Control tables of OSA (SQLite). Timestamps are RFC 3339 text in UTC, UUIDs are
-- 16-byte blobs, JSON is text. Feature tables are created by the feature store as
-- osa_feature__<hook>.

CREATE TABLE hooks (
    name            TEXT PRIMARY KEY,
    feature         TEXT NOT NULL CHECK (json_valid(feature)),
    live_release_id BLOB REFERENCES hook_releases (id) DEFERRABLE INITIALLY DEFERRED,
    created_at      TEXT NOT NULL
);

CREATE TABLE hook_releases (
    id         BLOB PRIMARY KEY,
    hook       TEXT NOT NULL REFERENCES hooks (name),
    version    INTEGER NOT NULL CHECK (version >= 1),
    digest     TEXT NOT NULL,
    runtime    TEXT NOT NULL CHECK (json_valid(runtime)),
    source_ref TEXT NOT NULL,
    built_by   TEXT,
    built_at   TEXT NOT NULL,
    UNIQUE (hook, version),
    UNIQUE (hook, digest)
);

CREATE TABLE hook_runs (
    id           BLOB PRIMARY KEY,
    release_id   BLOB NOT NULL REFERENCES hook_releases (id),
    status       TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'error')),
    started_at   TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    duration_s   REAL NOT NULL,
    oom_retries  INTEGER NOT NULL,
    log_ref      TEXT,
    input_sha256 TEXT,
    passed       INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    errored      INTEGER NOT NULL
);

CREATE TABLE feature_tables (
    hook       TEXT PRIMARY KEY REFERENCES hooks (name),
    feature    TEXT NOT NULL CHECK (json_valid(feature)),
    created_at TEXT NOT NULL
);

CREATE TABLE conventions (
    slug              TEXT PRIMARY KEY,
    title             TEXT NOT NULL,
    description       TEXT NOT NULL,
    schema            TEXT NOT NULL,
    file_requirements TEXT NOT NULL,
    hooks             TEXT NOT NULL,
    ingester          TEXT,
    docs              TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

CREATE TABLE jobs (
    id           BLOB PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ready', 'running', 'dead')),
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       TEXT NOT NULL,
    locked_until TEXT,
    lease_token  BLOB,
    last_error   TEXT,
    dedupe_key   TEXT,
    created_at   TEXT NOT NULL
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'ready';
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE validation_runs (
    id           BLOB PRIMARY KEY,
    convention   TEXT NOT NULL,
    status       TEXT NOT NULL,
    current_step INTEGER NOT NULL,
    steps        TEXT NOT NULL,
    record_count INTEGER NOT NULL,
    inputs_ref   TEXT NOT NULL,
    failure      TEXT,
    event_seq    INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE validation_steps (
    run_id      BLOB NOT NULL REFERENCES validation_runs (id),
    step        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    hook_run_id BLOB NOT NULL REFERENCES hook_runs (id),
    passed      INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    errored     INTEGER NOT NULL,
    outputs_ref TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE validation_records (
    run_id    BLOB NOT NULL REFERENCES validation_runs (id),
    position  INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    verdict   TEXT NOT NULL,
    PRIMARY KEY (run_id, record_id)
);

CREATE TABLE validation_events (
    run_id BLOB NOT NULL REFERENCES validation_runs (id),
    seq    INTEGER NOT NULL,
    at     TEXT NOT NULL,
    event  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE deployments (
    id             BLOB PRIMARY KEY,
    kind           TEXT NOT NULL,
    target         TEXT NOT NULL,
    principal      TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_size   INTEGER NOT NULL,
    payload_ref    TEXT NOT NULL,
    status         TEXT NOT NULL,
    error          TEXT,
    rollback_of    BLOB,
    event_count    INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX deployments_created ON deployments (created_at DESC, id DESC);

CREATE TABLE deployment_events (
    deployment_id BLOB NOT NULL REFERENCES deployments (id),
    seq           INTEGER NOT NULL,
    at            TEXT NOT NULL,
    message       TEXT NOT NULL,
    data          TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
