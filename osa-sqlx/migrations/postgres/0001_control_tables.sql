-- Control tables of OSA. Feature tables are created by the feature store (dynamic DDL)
-- in their own schema.

CREATE TABLE hooks (
    name            TEXT PRIMARY KEY,
    feature         JSONB NOT NULL,
    live_release_id UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE hook_releases (
    id         UUID PRIMARY KEY,
    hook       TEXT NOT NULL REFERENCES hooks (name),
    version    INTEGER NOT NULL CHECK (version >= 1),
    digest     TEXT NOT NULL,
    runtime    JSONB NOT NULL,
    source_ref TEXT NOT NULL,
    built_by   TEXT,
    built_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (hook, version),
    UNIQUE (hook, digest)
);

-- Deferrable so a release and the pointer to it can be written in either order
-- inside one transaction.
ALTER TABLE hooks ADD CONSTRAINT hooks_live_release_fk
    FOREIGN KEY (live_release_id) REFERENCES hook_releases (id) DEFERRABLE INITIALLY DEFERRED;

CREATE TABLE hook_runs (
    id           UUID PRIMARY KEY,
    release_id   UUID NOT NULL REFERENCES hook_releases (id),
    status       TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'error')),
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ NOT NULL,
    duration_s   DOUBLE PRECISION NOT NULL,
    oom_retries  INTEGER NOT NULL,
    log_ref      TEXT,
    input_sha256 TEXT,
    passed       INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    errored      INTEGER NOT NULL
);

CREATE TABLE feature_tables (
    hook       TEXT PRIMARY KEY REFERENCES hooks (name),
    feature    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE conventions (
    slug              TEXT PRIMARY KEY,
    title             TEXT NOT NULL,
    description       TEXT NOT NULL,
    schema            JSONB NOT NULL,
    file_requirements JSONB NOT NULL,
    hooks             JSONB NOT NULL,
    ingester          JSONB,
    docs              JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE jobs (
    id           UUID PRIMARY KEY,
    kind         TEXT NOT NULL,
    payload      JSONB NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ready', 'running', 'dead')),
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       TIMESTAMPTZ NOT NULL,
    locked_until TIMESTAMPTZ,
    lease_token  UUID,
    last_error   TEXT,
    dedupe_key   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE status = 'ready';
CREATE INDEX jobs_leased ON jobs (locked_until) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;

CREATE TABLE validation_runs (
    id           UUID PRIMARY KEY,
    convention   TEXT NOT NULL,
    status       TEXT NOT NULL,
    current_step INTEGER NOT NULL,
    steps        JSONB NOT NULL,
    record_count INTEGER NOT NULL,
    inputs_ref   TEXT NOT NULL,
    failure      TEXT,
    event_seq    BIGINT NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE validation_steps (
    run_id      UUID NOT NULL REFERENCES validation_runs (id),
    step        INTEGER NOT NULL,
    status      TEXT NOT NULL,
    hook_run_id UUID NOT NULL REFERENCES hook_runs (id),
    passed      INTEGER NOT NULL,
    rejected    INTEGER NOT NULL,
    errored     INTEGER NOT NULL,
    outputs_ref TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE validation_records (
    run_id    UUID NOT NULL REFERENCES validation_runs (id),
    position  INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    verdict   JSONB NOT NULL,
    PRIMARY KEY (run_id, record_id)
);

CREATE TABLE validation_events (
    run_id UUID NOT NULL REFERENCES validation_runs (id),
    seq    BIGINT NOT NULL,
    at     TIMESTAMPTZ NOT NULL,
    event  JSONB NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE deployments (
    id             UUID PRIMARY KEY,
    kind           TEXT NOT NULL,
    target         TEXT NOT NULL,
    principal      TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    payload_size   BIGINT NOT NULL,
    payload_ref    TEXT NOT NULL,
    status         TEXT NOT NULL,
    error          TEXT,
    rollback_of    UUID,
    event_count    BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX deployments_created ON deployments (created_at DESC, id DESC);

CREATE TABLE deployment_events (
    deployment_id UUID NOT NULL REFERENCES deployments (id),
    seq           BIGINT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    message       TEXT NOT NULL,
    data          JSONB NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
