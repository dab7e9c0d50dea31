//! The Postgres backend.
//!
//! Control tables live in one schema (default `osa`, first on the `search_path`),
//! feature tables in another (default `osa_features`). Release creation locks the
//! hook's row; job claims use `FOR UPDATE SKIP LOCKED`; feature rows are written with
//! binary `COPY`.

mod copy;
mod deployments;
mod features;
mod jobs;
mod registry;
mod runs;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use osa_core::feature::FeatureSpec;
use osa_core::id::HookName;
use osa_core::{Error, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};

use crate::error::{db, migrate};
use crate::feature_sql::{Dialect, quote};

/// Where and how to connect.
///
/// The URL takes libpq's parameters (`sslmode`, `sslrootcert`, `application_name`,
/// …); TLS is built in (rustls), so `sslmode=require` or `verify-full` reach managed
/// databases that refuse plain connections. Its `Debug` form never shows the
/// password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgConfig {
    /// Connection URL (`postgres://user@host:5432/db?sslmode=require`).
    pub url: String,
    /// Schema of the control tables.
    pub control_schema: String,
    /// Schema of the feature tables.
    pub features_schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long opening a connection may take before it fails (an unreachable server
    /// is reported after this).
    pub connect_timeout: std::time::Duration,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redacted_url(&self.url))
            .field("control_schema", &self.control_schema)
            .field("features_schema", &self.features_schema)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// `url` with its password, if any, replaced by `***` (for logs and errors). A URL
/// that does not parse is shown as `<unparsable URL>`: it may hold a password in a
/// place no parser finds.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable URL>".into();
    };
    // The authority ends at the first `/`, `?` or `#`; the user info at its last `@`.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let redacted = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    // A password can also be a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{redacted}{tail}")
}

impl PgConfig {
    /// The defaults for `url`: schemas `osa` and `osa_features`, 10 connections, 30 s to
    /// connect.
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            control_schema: "osa".into(),
            features_schema: "osa_features".into(),
            max_connections: 10,
            connect_timeout: std::time::Duration::from_secs(30),
        }
    }

    /// The same database with other schemas (tests use one pair per test).
    pub fn with_schemas(mut self, control: impl Into<String>, features: impl Into<String>) -> Self {
        self.control_schema = control.into();
        self.features_schema = features.into();
        self
    }

    /// The same database with a pool of `max` connections.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// The same database, giving up on a connection after `timeout`.
    pub fn with_connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Storage on Postgres.
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
    config: PgConfig,
    dialect: Dialect,
    /// Feature contracts never change once stored, so they are cached per process.
    contracts: Arc<Mutex<HashMap<HookName, FeatureSpec>>>,
    /// Wake-ups for idle workers when any process enqueues a job.
    jobs_signal: Arc<JobSignal>,
    /// Permits for transactions holding staged feature rows: at most half the pool,
    /// so that the commits running beside them always find connections.
    staging: Arc<tokio::sync::Semaphore>,
}

/// The channel every enqueue notifies (see `jobs`).
const JOBS_CHANNEL: &str = "osa_jobs";

/// Wakes the idle workers of this process when any process enqueues a job: one
/// `LISTEN` connection of its own (outside the pool) per backend, shared by its
/// clones, started by the first wait and stopped with the last clone.
#[derive(Debug, Default)]
pub(crate) struct JobSignal {
    notify: Arc<tokio::sync::Notify>,
    listener: std::sync::OnceLock<ListenerTask>,
}

/// The listening task; aborted (its connection closed) when dropped.
#[derive(Debug)]
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `wait_for_jobs` on Postgres: until a notification of an enqueue arrives, at most
/// `timeout`. The first call starts the listener (what is enqueued before it listens
/// is found by polling).
pub(crate) async fn wait_for_notify(backend: &PgBackend, timeout: std::time::Duration) {
    let signal = &backend.jobs_signal;
    signal.listener.get_or_init(|| backend.listen_for_jobs());
    let _ = tokio::time::timeout(timeout, signal.notify.notified()).await;
}

/// Schema names are spliced into SQL, so they follow the column-name rule.
fn check_schema(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "schema",
            format!("{name:?} must match ^[a-z][a-z0-9_]{{0,62}}$"),
        ))
    }
}

impl PgBackend {
    /// Connects a pool whose sessions use the control schema.
    pub async fn connect(config: PgConfig) -> Result<Self> {
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| Error::invalid("url", format!("{}: {e}", redacted_url(&config.url))))?;
        Self::connect_with(options, config).await
    }

    /// Connects with options the caller built (credentials from a secret store, TLS
    /// certificates, …). `config`'s schemas and pool size apply; its `url` is not
    /// used.
    pub async fn connect_with(options: PgConnectOptions, config: PgConfig) -> Result<Self> {
        check_schema(&config.control_schema)?;
        check_schema(&config.features_schema)?;
        let options = options.options([("search_path", config.control_schema.as_str())]);
        // One connection first: a pool that cannot connect reports only that it timed
        // out, this reports why (refused, authentication, TLS, …).
        use sqlx::Connection as _;
        match tokio::time::timeout(
            config.connect_timeout,
            sqlx::PgConnection::connect_with(&options),
        )
        .await
        {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(e)) => return Err(db("connecting to Postgres")(e)),
            Err(_) => {
                return Err(Error::Unavailable {
                    what: "database",
                    detail: format!(
                        "connecting to Postgres: no connection within {:?}",
                        config.connect_timeout
                    ),
                    source: None,
                });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.connect_timeout)
            .connect_with(options)
            .await
            .map_err(db("connecting to Postgres"))?;
        Ok(Self::over(pool, config))
    }

    /// A backend over the caller's pool, whose connections must have the control
    /// schema first on their `search_path` (build it with
    /// `PgConnectOptions::options([("search_path", "osa")])`); checked here.
    /// `config`'s schemas apply; its `url` and pool size are not used.
    pub async fn from_pool(pool: PgPool, config: PgConfig) -> Result<Self> {
        check_schema(&config.control_schema)?;
        check_schema(&config.features_schema)?;
        let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
            .fetch_one(&pool)
            .await
            .map_err(db("reading the pool's search_path"))?;
        let first = path
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if first != config.control_schema {
            return Err(Error::invalid(
                "search_path",
                format!(
                    "the pool's connections have search_path {path:?}; it must start with \
                     the control schema {:?}",
                    config.control_schema
                ),
            ));
        }
        let config = PgConfig {
            max_connections: pool.options().get_max_connections(),
            ..config
        };
        Ok(Self::over(pool, config))
    }

    fn over(pool: PgPool, config: PgConfig) -> Self {
        let stagings = (config.max_connections / 2) as usize;
        PgBackend {
            pool,
            dialect: Dialect::Postgres {
                control_schema: config.control_schema.clone(),
                features_schema: config.features_schema.clone(),
            },
            config,
            contracts: Arc::default(),
            jobs_signal: Arc::default(),
            staging: Arc::new(tokio::sync::Semaphore::new(stagings)),
        }
    }

    /// Starts the task that listens for enqueues and wakes this backend's waiters (it
    /// keeps trying when it cannot connect; polling covers the gap).
    fn listen_for_jobs(&self) -> ListenerTask {
        // A pool of its own, of one connection, with the options of the backend's
        // pool (TLS, credentials): a listener holds its connection for good.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let notify = self.jobs_signal.notify.clone();
        ListenerTask(tokio::spawn(async move {
            loop {
                let listener = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(JOBS_CHANNEL).await?;
                    Ok::<_, sqlx::Error>(listener)
                };
                match listener.await {
                    Ok(mut listener) => {
                        // `recv` reconnects by itself after a lost connection (what
                        // was sent meanwhile is lost: polling covers it).
                        loop {
                            match listener.recv().await {
                                Ok(_) => {
                                    // Wakes the waiters, and leaves one wake-up for a
                                    // worker that is between a claim and its next wait.
                                    notify.notify_waiters();
                                    notify.notify_one();
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "listening for enqueued jobs failed; retrying");
                                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for enqueued jobs; workers poll meanwhile");
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                }
            }
        }))
    }

    /// Creates both schemas and applies the control-table migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        for schema in [&self.config.control_schema, &self.config.features_schema] {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote(schema)))
                .execute(&self.pool)
                .await
                .map_err(db("creating a schema"))?;
        }
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(migrate)?;
        self.rename_legacy_system_columns().await?;
        self.add_open_row_columns().await
    }

    /// Tables of hooks that declared no columns, made before their rows were kept
    /// whole, get the JSON column that holds them.
    async fn add_open_row_columns(&self) -> Result<()> {
        // Only tables without the column: altering takes a lock worth not taking at
        // every start.
        let specs: Vec<(String, sqlx::types::Json<FeatureSpec>)> = sqlx::query_as(
            "SELECT f.hook, f.feature FROM feature_tables f \
             WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns c \
                               WHERE c.table_schema = $1 AND c.table_name = f.hook \
                               AND c.column_name = 'row')",
        )
        .bind(&self.config.features_schema)
        .fetch_all(&self.pool)
        .await
        .map_err(db("listing feature tables"))?;
        for (hook, spec) in specs.into_iter().filter(|(_, s)| s.is_open()) {
            let hook = HookName::new(hook).map_err(|e| crate::error::corrupt("hook name", e))?;
            sqlx::query(&self.dialect.add_open_row_column(&hook, &spec))
                .execute(&self.pool)
                .await
                .map_err(db("adding the row column"))?;
        }
        Ok(())
    }

    /// Feature tables made before the system columns moved to the underscore
    /// namespace get them renamed, all in one transaction that holds an advisory lock
    /// (two servers migrating at once rename each table once). A table that has
    /// `_record_id` is done, whatever data columns it has (`record_id` may be one).
    async fn rename_legacy_system_columns(&self) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(db("renaming system columns"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('osa.feature_system_columns'))")
            .execute(&mut *tx)
            .await
            .map_err(db("renaming system columns"))?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT c.table_name::text FROM information_schema.columns c \
             WHERE c.table_schema = $1 AND c.column_name = 'record_id' \
             AND NOT EXISTS (SELECT 1 FROM information_schema.columns d \
                             WHERE d.table_schema = c.table_schema \
                             AND d.table_name = c.table_name AND d.column_name = '_record_id')",
        )
        .bind(&self.config.features_schema)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing feature tables"))?;
        for table in tables {
            let table = format!("{}.{}", quote(&self.config.features_schema), quote(&table));
            for statement in crate::feature_sql::rename_legacy_system_columns(&table) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("renaming system columns"))?;
            }
        }
        tx.commit().await.map_err(db("renaming system columns"))
    }

    /// Drops both schemas and everything in them (tests and benchmarks).
    pub async fn drop_schemas(&self) -> Result<()> {
        for schema in [&self.config.features_schema, &self.config.control_schema] {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(schema)))
                .execute(&self.pool)
                .await
                .map_err(db("dropping a schema"))?;
        }
        Ok(())
    }

    /// The connection pool (for benchmarks that compare against raw SQL).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PgConfig {
        &self.config
    }

    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(db("starting a transaction"))
    }

    /// A transaction for feature rows staged ahead of a finalize, when a staging
    /// permit is free. The permits (half the pool) bound the connections staged
    /// transactions hold, so the commits running beside them always find one, and a
    /// staging that waits for a connection waits only for such a commit.
    pub(crate) async fn begin_staging(&self) -> Result<Option<crate::Staging<Postgres>>> {
        let Ok(permit) = self.staging.clone().try_acquire_owned() else {
            return Ok(None);
        };
        let tx = self.begin().await?;
        Ok(Some(crate::Staging {
            tx,
            _permit: permit,
        }))
    }

    /// A read-only transaction whose statements all see one snapshot.
    pub(crate) async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db("starting a read transaction"))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl crate::backend::SqlBackend for PgBackend {
    type DB = Postgres;

    const ROW_LOCK: &'static str = " FOR UPDATE";
    const NEW_LEASE_TOKEN: &'static str = "gen_random_uuid()";
    const CLAIM_SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const CREATE_TABLE_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtext($1))");
    const ENQUEUE_NOTIFY: Option<&'static str> =
        Some("SELECT count(*) FROM j, pg_notify('osa_jobs', j.kind)");

    type TextList = Vec<String>;

    /// `= ANY(...)` over a list bound as one array parameter.
    fn in_text_list(param: &str) -> String {
        format!("= ANY({param})")
    }

    fn text_list(items: Vec<String>) -> Vec<String> {
        items
    }

    const INSERT_VERDICTS: &'static str = "INSERT INTO validation_records (run_id, record_id, verdict) \
         SELECT $2, j.key, j.value FROM jsonb_each($1) j";

    const RECORD_PAGE: &'static str = "SELECT t.id, v.verdict \
         FROM validation_run_record_chunks c \
         CROSS JOIN LATERAL unnest(c.record_ids) WITH ORDINALITY AS t(id, ord) \
         LEFT JOIN validation_records v ON v.run_id = $1 AND v.record_id = t.id \
         WHERE c.run_id = $1 \
         AND c.start_pos >= (SELECT max(start_pos) FROM validation_run_record_chunks \
                             WHERE run_id = $1 AND start_pos <= $2) \
         AND c.start_pos < $3 \
         AND c.start_pos + t.ord - 1 >= $2 AND c.start_pos + t.ord - 1 < $3 \
         ORDER BY c.start_pos, t.ord";

    const REPEATED_RECORD: &'static str = "SELECT t.id FROM validation_run_record_chunks c \
         CROSS JOIN LATERAL unnest(c.record_ids) AS t(id) \
         WHERE c.run_id = $1 GROUP BY t.id HAVING count(*) > 1 LIMIT 1";

    const IN_PLAY: &'static str = "SELECT \
         (SELECT count(*) \
          FROM validation_run_record_chunks c CROSS JOIN LATERAL unnest(c.record_ids) AS t(id) \
          WHERE c.run_id = $1 \
          AND NOT EXISTS (SELECT 1 FROM validation_records v WHERE v.run_id = $1 AND v.record_id = t.id)), \
         EXISTS (SELECT 1 FROM validation_records v WHERE v.run_id = $1 AND v.verdict->>'verdict' = 'errored')";

    /// A text array.
    type IdList = Vec<String>;

    fn id_list(list: Vec<String>) -> Vec<String> {
        list
    }

    /// Native `UUID`.
    type UuidColumn = uuid::Uuid;

    fn uuid_value(id: &uuid::Uuid) -> uuid::Uuid {
        *id
    }

    fn uuid_from_column(column: uuid::Uuid) -> uuid::Uuid {
        column
    }

    async fn insert_rows(
        tx: &mut sqlx::PgConnection,
        table: &str,
        spec: &FeatureSpec,
        batch: &osa_core::feature_store::FeatureBatch,
    ) -> Result<u64> {
        features::insert_rows(tx, table, spec, batch).await
    }

    async fn lock_replaced(
        tx: &mut sqlx::PgConnection,
        targets: &[(String, &[osa_core::id::RecordId])],
    ) -> Result<()> {
        features::lock_replaced(tx, targets).await
    }

    fn query_arguments<'q>(
        args: sqlx::postgres::PgArguments,
    ) -> <Postgres as sqlx::Database>::Arguments<'q> {
        args
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        PgBackend::begin(self).await
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>> {
        PgBackend::begin_snapshot(self).await
    }

    fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    fn contracts(&self) -> &Mutex<HashMap<HookName, FeatureSpec>> {
        &self.contracts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        for (url, shown) in [
            (
                "postgres://osa:s3cr%40t@db.example:5432/osa?sslmode=require",
                "postgres://osa:***@db.example:5432/osa?sslmode=require",
            ),
            ("postgres://a:b:c@h/db", "postgres://a:***@h/db"),
            ("postgres://p@ss:w@rd@h/db", "postgres://p@ss:***@h/db"),
            ("postgres://user@h/db", "postgres://user@h/db"),
            (
                "postgres://h/db?user=u&password=pw",
                "postgres://h/db?user=u&password=***",
            ),
            ("postgresql://h", "postgresql://h"),
            ("host=h password=pw", "<unparsable URL>"),
        ] {
            assert_eq!(redacted_url(url), shown, "{url}");
        }
        let debug = format!("{:?}", PgConfig::new("postgres://osa:hunter22@h/db"));
        assert!(!debug.contains("hunter22"), "{debug}");
        assert!(debug.contains("osa:***@h/db"), "{debug}");
    }
}
