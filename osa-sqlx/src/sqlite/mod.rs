//! The SQLite backend: the embedded default.
//!
//! One file, WAL journal, `synchronous = NORMAL`, a busy timeout and foreign keys on.
//! Writes go through one connection and start with `BEGIN IMMEDIATE`, so a
//! transaction that reads before it writes never fails to upgrade its lock; reads use
//! a separate pool and run concurrently with the writer (WAL).

mod deployments;
mod features;
mod jobs;
mod registry;
mod runs;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osa_core::Result;
use osa_core::feature::FeatureSpec;
use osa_core::id::HookName;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::error::{db, migrate};
use crate::feature_sql::Dialect;

/// Storage on one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    writer: SqlitePool,
    reader: SqlitePool,
    dialect: Dialect,
    /// Feature contracts never change once stored, so they are cached per process.
    contracts: Arc<Mutex<HashMap<HookName, FeatureSpec>>>,
}

/// How long a writer waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl SqliteBackend {
    /// Opens (creating if needed) the database file at `path` with OSA's settings.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        Self::open_with(options, 4).await
    }

    /// Opens with explicit connection options and `readers` read connections.
    pub async fn open_with(options: SqliteConnectOptions, readers: u32) -> Result<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db("opening the SQLite database"))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(db("opening the SQLite database for reading"))?;
        Ok(SqliteBackend {
            writer,
            reader,
            dialect: Dialect::Sqlite,
            contracts: Arc::default(),
        })
    }

    /// Applies the control-table migrations (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(migrate)?;
        self.rename_legacy_system_columns().await?;
        self.add_open_row_columns().await
    }

    /// Tables of hooks that declared no columns, made before their rows were kept
    /// whole, get the JSON column that holds them (one write transaction).
    async fn add_open_row_columns(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let specs: Vec<(String, sqlx::types::Json<FeatureSpec>)> = sqlx::query_as(
            "SELECT f.hook, f.feature FROM feature_tables f \
             WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info('osa_feature__' || f.hook) p \
                               WHERE p.name = 'row')",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing feature tables"))?;
        for (hook, spec) in specs.into_iter().filter(|(_, s)| s.is_open()) {
            let hook = HookName::new(hook).map_err(|e| crate::error::corrupt("hook name", e))?;
            sqlx::query(&Dialect::Sqlite.add_open_row_column(&hook, &spec))
                .execute(&mut *tx)
                .await
                .map_err(db("adding the row column"))?;
        }
        tx.commit().await.map_err(db("adding the row column"))
    }

    /// Feature tables made before the system columns moved to the underscore
    /// namespace get them renamed, in one write transaction. A table that has
    /// `_record_id` is done, whatever data columns it has (`record_id` may be one).
    async fn rename_legacy_system_columns(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT m.name FROM sqlite_master m \
             WHERE m.type = 'table' AND substr(m.name, 1, 13) = 'osa_feature__' \
             AND EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name = 'record_id') \
             AND NOT EXISTS (SELECT 1 FROM pragma_table_info(m.name) p WHERE p.name = '_record_id')",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db("listing feature tables"))?;
        for table in tables {
            let table = crate::feature_sql::quote(&table);
            for statement in crate::feature_sql::rename_legacy_system_columns(&table) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("renaming system columns"))?;
            }
        }
        tx.commit().await.map_err(db("renaming system columns"))
    }

    /// The pool that serialises writes (for tests and benchmarks that compare against
    /// raw SQL).
    pub fn write_pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Starts a write transaction holding the database's write lock from the start.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db("starting a write transaction"))
    }

    /// A read transaction whose statements all see one snapshot (WAL: the snapshot is
    /// taken at its first read).
    pub(crate) async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>> {
        self.reader
            .begin()
            .await
            .map_err(db("starting a read transaction"))
    }

    /// The pool reads go through.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

impl crate::backend::SqlBackend for SqliteBackend {
    type DB = Sqlite;

    const ROW_LOCK: &'static str = "";
    const NEW_LEASE_TOKEN: &'static str = "randomblob(16)";
    const CLAIM_SKIP_LOCKED: &'static str = "";
    const CREATE_TABLE_LOCK: Option<&'static str> = None;
    const ENQUEUE_NOTIFY: Option<&'static str> = None;

    type TextList = sqlx::types::Json<Vec<String>>;

    /// `IN (...)` over a list bound as one JSON array parameter.
    fn in_text_list(param: &str) -> String {
        format!("IN (SELECT value FROM json_each({param}))")
    }

    fn text_list(items: Vec<String>) -> sqlx::types::Json<Vec<String>> {
        sqlx::types::Json(items)
    }

    const INSERT_VERDICTS: &'static str = "INSERT INTO validation_records (run_id, record_id, verdict) \
         SELECT $2, j.key, j.value FROM json_each($1) j";

    const RECORD_PAGE: &'static str = "SELECT j.value, v.verdict \
         FROM validation_run_record_chunks c, json_each(c.record_ids) j \
         LEFT JOIN validation_records v ON v.run_id = $1 AND v.record_id = j.value \
         WHERE c.run_id = $1 \
         AND c.start_pos >= (SELECT max(start_pos) FROM validation_run_record_chunks \
                             WHERE run_id = $1 AND start_pos <= $2) \
         AND c.start_pos < $3 \
         AND c.start_pos + j.key >= $2 AND c.start_pos + j.key < $3 \
         ORDER BY c.start_pos, j.key";

    const REPEATED_RECORD: &'static str = "SELECT j.value \
         FROM validation_run_record_chunks c, json_each(c.record_ids) j \
         WHERE c.run_id = $1 GROUP BY j.value HAVING count(*) > 1 LIMIT 1";

    const IN_PLAY: &'static str = "SELECT \
         (SELECT count(*) \
          FROM validation_run_record_chunks c, json_each(c.record_ids) j \
          WHERE c.run_id = $1 \
          AND NOT EXISTS (SELECT 1 FROM validation_records v WHERE v.run_id = $1 AND v.record_id = j.value)), \
         EXISTS (SELECT 1 FROM validation_records v WHERE v.run_id = $1 \
                 AND json_extract(v.verdict, '$.verdict') = 'errored')";

    /// A JSON list.
    type IdList = sqlx::types::Json<Vec<String>>;

    fn id_list(list: sqlx::types::Json<Vec<String>>) -> Vec<String> {
        list.0
    }
    /// Hyphenated text.
    type UuidColumn = uuid::fmt::Hyphenated;

    fn uuid_value(id: &uuid::Uuid) -> uuid::fmt::Hyphenated {
        id.hyphenated()
    }

    fn uuid_from_column(column: uuid::fmt::Hyphenated) -> uuid::Uuid {
        column.into_uuid()
    }

    async fn insert_rows(
        tx: &mut sqlx::SqliteConnection,
        table: &str,
        spec: &FeatureSpec,
        batch: &osa_core::feature_store::FeatureBatch,
    ) -> Result<u64> {
        features::insert_rows(tx, table, spec, batch).await
    }

    fn query_arguments<'q>(
        args: sqlx::sqlite::SqliteArguments<'static>,
    ) -> sqlx::sqlite::SqliteArguments<'q> {
        args
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        SqliteBackend::begin(self).await
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>> {
        SqliteBackend::begin_snapshot(self).await
    }

    fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    fn contracts(&self) -> &Mutex<HashMap<HookName, FeatureSpec>> {
        &self.contracts
    }
}
