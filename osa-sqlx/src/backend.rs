//! [`SqlBackend`]: what differs between the Postgres and the SQLite backend, named in
//! one trait, so that the SQL, the row mapping and the logic of the storage ports are
//! written once over it (`registry`, `runs`, `jobs`, `features`, `deployments`).
//!
//! Both drivers accept `$N` placeholders, so the SQL text is shared; the trait carries
//! the clauses and statements that are spelled differently, how lists and UUIDs travel,
//! and how a backend reaches its pools. Postgres-only paths (binary `COPY`,
//! `LISTEN`/`NOTIFY`, staged features, the single-statement step commit) are methods
//! of [`PgBackend`](crate::PgBackend) and not part of it.

use std::collections::HashMap;
use std::sync::Mutex;

use osa_core::Result;
use osa_core::feature::FeatureSpec;
use osa_core::feature_store::FeatureBatch;
use osa_core::hook::HookRun;
use osa_core::id::HookName;
use sqlx::query::{Query, QueryAs};
use sqlx::{Database, Decode, Encode, FromRow, Pool, Transaction, Type};

use crate::feature_sql::Dialect;

/// A storage backend over one sqlx database: the differences the shared code needs.
pub(crate) trait SqlBackend: Send + Sync + 'static {
    /// The sqlx database.
    type DB: Database<QueryResult: RowsAffected>;

    /// Appended to a `SELECT` of a row the transaction goes on to change, to lock it
    /// (Postgres `FOR UPDATE`; empty on SQLite, whose `BEGIN IMMEDIATE` already holds
    /// the database's write lock).
    const ROW_LOCK: &'static str;

    /// A list of strings bound as one parameter (see [`in_text_list`](Self::in_text_list)).
    type TextList: for<'q> Bind<'q, Self::DB>;

    /// The condition matching a column against a list bound at `param` with
    /// [`text_list`](Self::text_list) (`= ANY($1)` or `IN (SELECT … json_each($1))`).
    fn in_text_list(param: &str) -> String;

    /// Binds a list of strings for [`in_text_list`](Self::in_text_list).
    fn text_list(items: Vec<String>) -> Self::TextList;

    /// The SQL expression of a fresh lease token (`gen_random_uuid()`, `randomblob(16)`).
    const NEW_LEASE_TOKEN: &'static str;

    /// Appended to the claim's inner select of due jobs (Postgres `FOR UPDATE SKIP
    /// LOCKED`, so concurrent claimers take distinct jobs; empty on SQLite, whose write
    /// lock serialises claimers).
    const CLAIM_SKIP_LOCKED: &'static str;

    /// The query, if any, that wakes idle workers after an enqueue: a `SELECT` over the
    /// common table expression `j` holding the inserted job's `kind`, returning one
    /// count (the wake-up is part of the enqueue's statement).
    const ENQUEUE_NOTIFY: Option<&'static str>;

    /// The statement, if any, taking a transaction-scoped lock on a feature table's
    /// name (`$1`) before creating it (Postgres: `CREATE TABLE IF NOT EXISTS` alone can
    /// still collide in the catalog when two transactions create the same table).
    const CREATE_TABLE_LOCK: Option<&'static str>;

    /// Records the verdicts of a run from a JSON object `{record_id: verdict}` (`$1`)
    /// for run `$2`.
    const INSERT_VERDICTS: &'static str;

    /// The records of run `$1` at submit positions `$2` (0-based, included) to `$3`
    /// (excluded), in order, each with its settled verdict or NULL: `(record_id,
    /// verdict)`. Reads only the record chunks (`validation_run_record_chunks`) the
    /// page overlaps.
    const RECORD_PAGE: &'static str;

    /// A record id that appears more than once in the record list of run `$1` (no row
    /// when none does).
    const REPEATED_RECORD: &'static str;

    /// How many records of run `$1` are still in play (no verdict yet), and whether
    /// any record errored (one row).
    const IN_PLAY: &'static str;

    /// How a stored list of record ids is read (a text array, a JSON list).
    type IdList: Column<Self::DB>;

    /// The ids of an [`IdList`](Self::IdList).
    fn id_list(list: Self::IdList) -> Vec<String>;

    /// How a UUID data column of a feature table is stored (native `UUID`; hyphenated
    /// text on SQLite, readable in the sqlite3 shell).
    type UuidColumn: for<'q> Bind<'q, Self::DB> + Column<Self::DB>;

    /// A UUID as its data column stores it.
    fn uuid_value(id: &uuid::Uuid) -> Self::UuidColumn;

    /// A UUID read from its data column.
    fn uuid_from_column(column: Self::UuidColumn) -> uuid::Uuid;

    /// Inserts a batch's rows into `table` inside the caller's transaction (binary
    /// `COPY` on Postgres, multi-row inserts on SQLite); returns the rows inserted.
    fn insert_rows(
        tx: &mut <Self::DB as Database>::Connection,
        table: &str,
        spec: &FeatureSpec,
        batch: &FeatureBatch,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Serialises replace-by-record of `targets` (qualified table, records) across
    /// transactions; the locks are held until the caller's transaction ends. None by
    /// default: a backend whose write transactions never overlap (SQLite's one writer
    /// with `BEGIN IMMEDIATE`) needs none.
    fn lock_replaced(
        _tx: &mut <Self::DB as Database>::Connection,
        _targets: &[(String, &[osa_core::id::RecordId])],
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Arguments built ahead (feature queries) for a query of any lifetime: both
    /// drivers' argument buffers are covariant in it, which generic code cannot see.
    fn query_arguments<'q>(
        args: <Self::DB as Database>::Arguments<'static>,
    ) -> <Self::DB as Database>::Arguments<'q>;

    /// The connections single-statement writes go through.
    fn writer(&self) -> &Pool<Self::DB>;

    /// The connections reads go through.
    fn read_pool(&self) -> &Pool<Self::DB>;

    /// Starts a write transaction.
    fn begin(&self) -> impl Future<Output = Result<Transaction<'static, Self::DB>>> + Send;

    /// A read transaction whose statements all see one snapshot.
    fn begin_snapshot(&self)
    -> impl Future<Output = Result<Transaction<'static, Self::DB>>> + Send;

    /// How the backend spells feature tables.
    fn dialect(&self) -> &Dialect;

    /// The feature contracts read so far (they never change once stored).
    fn contracts(&self) -> &Mutex<HashMap<HookName, FeatureSpec>>;
}

/// The number of rows a statement changed (an inherent method of each driver's query
/// result).
pub(crate) trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

#[cfg(feature = "postgres")]
impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::postgres::PgQueryResult::rows_affected(self)
    }
}

#[cfg(feature = "sqlite")]
impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        sqlx::sqlite::SqliteQueryResult::rows_affected(self)
    }
}

/// A value a query on `DB` living for `'q` binds (bounds read `for<'q> T: Bind<'q, DB>`;
/// the lifetime is the query's, as SQLite encodes `&'q str` only into a query of `'q`).
pub(crate) trait Bind<'q, DB: Database>: 'q + Encode<'q, DB> + Type<DB> + Send {}

impl<'q, DB: Database, T: 'q + Encode<'q, DB> + Type<DB> + Send> Bind<'q, DB> for T {}

/// A value read from a column of `DB`.
pub(crate) trait Column<DB: Database>:
    for<'r> Decode<'r, DB> + Type<DB> + Send + Unpin
{
}

impl<DB: Database, T: for<'r> Decode<'r, DB> + Type<DB> + Send + Unpin> Column<DB> for T {}

/// A row (a `FromRow` struct or a tuple) read from `DB`.
pub(crate) trait Fetch<DB: Database>: for<'r> FromRow<'r, DB::Row> + Send + Unpin {}

impl<DB: Database, T: for<'r> FromRow<'r, DB::Row> + Send + Unpin> Fetch<DB> for T {}

/// A query that takes bound values (`Query` and `QueryAs`), so binding helpers serve
/// both.
pub(crate) trait Binds<'q, DB: Database>: Sized {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self;
}

impl<'q, DB: Database> Binds<'q, DB> for Query<'q, DB, DB::Arguments<'q>> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, DB: Database, O> Binds<'q, DB> for QueryAs<'q, DB, O, DB::Arguments<'q>> {
    fn bind_value<T: 'q + Encode<'q, DB> + Type<DB>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Binds the twelve columns of a hook run, in `hook_runs` column order, onto a query
/// (a count too large fails).
pub(crate) fn bind_hook_run<'q, DB, Q>(query: Q, run: &'q HookRun) -> Result<Q>
where
    DB: Database,
    Q: Binds<'q, DB>,
    uuid::Uuid: Bind<'q, DB>,
    &'q str: Bind<'q, DB>,
    Option<&'q str>: Bind<'q, DB>,
    String: Bind<'q, DB>,
    chrono::DateTime<chrono::Utc>: Bind<'q, DB>,
    f64: Bind<'q, DB>,
    i32: Bind<'q, DB>,
{
    use crate::rows::as_i32;
    Ok(query
        .bind_value(run.id.0)
        .bind_value(run.release_id.0)
        .bind_value(run.status.as_str())
        .bind_value(crate::truncate_micros(run.started_at))
        .bind_value(crate::truncate_micros(run.finished_at))
        .bind_value(run.duration_s)
        .bind_value(as_i32(run.oom_retries, "oom_retries")?)
        .bind_value(run.log_ref.as_deref())
        .bind_value(run.input_sha256.as_ref().map(|d| d.as_str()))
        .bind_value(as_i32(run.counts.passed, "counts.passed")?)
        .bind_value(as_i32(run.counts.rejected, "counts.rejected")?)
        .bind_value(as_i32(run.counts.errored, "counts.errored")?))
}
