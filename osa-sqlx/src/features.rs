//! `FeatureStore`, written once for both backends over [`SqlBackend`]. What differs
//! comes from the trait: the bulk insert (`insert_rows`: binary `COPY` on Postgres,
//! multi-row inserts on SQLite), the locks that serialise replace-by-record
//! (`lock_replaced`), how a UUID data column is stored (`uuid_value` / `UuidColumn`),
//! and the lock that serialises table creation.

use std::marker::PhantomData;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use osa_core::feature::{FeatureSpec, FeatureValue, ValueType};
use osa_core::feature_store::{FeatureBatch, FeaturePage, FeatureQuery, FeatureRow, Provenance};
use osa_core::hook::HookIdentity;
use osa_core::id::{HookName, HookRunId, RecordId, ValidationRunId};
use osa_core::validation::StagedReplace;
use osa_core::{Error, Result};
use sqlx::types::Json;
use sqlx::{Arguments, ColumnIndex, Database, Executor, IntoArguments, Row};
use uuid::Uuid;

use crate::backend::{Bind, Column, SqlBackend};
use crate::error::{corrupt, db};
use crate::feature_sql::{Dialect, FeatureArgs, SYSTEM_SELECT, bind_error};
use crate::reads::{self, TableAccess};

/// The feature store's statements for backend `B` (transaction-level functions, and
/// the bodies of `FeatureStore`).
pub(crate) struct Features<B>(PhantomData<B>);

impl<B, DB> Features<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
{
    /// Creates the hook's table and records its contract, inside the caller's
    /// transaction; idempotent; Conflict when the table or the registered identity
    /// has another contract; NotFound when the hook is not registered.
    pub(crate) async fn ensure_table_in(
        tx: &mut DB::Connection,
        dialect: &Dialect,
        identity: &HookIdentity,
    ) -> Result<()> {
        let lock: Option<&str> = B::CREATE_TABLE_LOCK;
        if let Some(lock) = lock {
            sqlx::query(lock)
                .bind(format!("osa_feature:{}", dialect.table(&identity.name)))
                .execute(&mut *tx)
                .await
                .map_err(db("locking a feature table"))?;
        }
        for (table, key) in [("feature_tables", "hook"), ("hooks", "name")] {
            let sql = format!("SELECT feature FROM {table} WHERE {key} = $1");
            let stored: Option<Json<FeatureSpec>> = sqlx::query_scalar(&sql)
                .bind(identity.name.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a feature contract"))?;
            match stored {
                Some(Json(feature)) => {
                    let stored = HookIdentity {
                        name: identity.name.clone(),
                        feature,
                    };
                    if let Some(conflict) = crate::rows::identity_conflict(&stored, identity) {
                        return Err(conflict);
                    }
                    if table == "feature_tables" {
                        return Ok(());
                    }
                }
                None if table == "hooks" => {
                    return Err(Error::not_found("hook", &identity.name));
                }
                None => {}
            }
        }
        for statement in dialect.create_table(&identity.name, &identity.feature) {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(db("creating a feature table"))?;
        }
        sqlx::query("INSERT INTO feature_tables (hook, feature, created_at) VALUES ($1, $2, $3)")
            .bind(identity.name.as_str())
            .bind(Json(&identity.feature))
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .map_err(db("recording a feature contract"))?;
        Ok(())
    }
}

impl<B, DB> Features<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    /// Replaces the listed records' rows inside the caller's transaction.
    pub(crate) async fn replace_rows_in(
        backend: &B,
        tx: &mut DB::Connection,
        batch: &FeatureBatch,
    ) -> Result<u64> {
        Self::replace_batches_in(backend, tx, std::slice::from_ref(batch), &[], &[]).await
    }

    /// Replaces the listed records' rows of every batch inside the caller's
    /// transaction (a finalize plan publishes to several hooks at once): checks
    /// each batch against its stored contract and its run's existence before
    /// touching a table, then clears the records of all batches
    /// ([`clear_replaced_in`](Self::clear_replaced_in)) and inserts the rows.
    /// Returns the number of rows inserted.
    ///
    /// `staged`: batches this transaction has already written (see
    /// [`stage_batches_in`](Self::stage_batches_in)). A batch of the same hook
    /// run must carry exactly the staged rows of its records (else an
    /// invalid-input error, and the caller rolls back); its rows are kept.
    /// `replaced`: replaces this transaction has already cleared; a batch that
    /// is one of them is not cleared again.
    pub(crate) async fn replace_batches_in(
        backend: &B,
        tx: &mut DB::Connection,
        batches: &[FeatureBatch],
        staged: &[FeatureBatch],
        replaced: &[StagedReplace],
    ) -> Result<u64> {
        // Staged rows the plan does not publish would be committed with it.
        if let Some(orphan) = staged.iter().find(|s| {
            !batches
                .iter()
                .any(|b| b.hook == s.hook && b.run_id == s.run_id)
        }) {
            return Err(Error::invalid(
                "features",
                format!(
                    "rows staged for hook run {} are not in the plan",
                    orphan.run_id
                ),
            ));
        }
        let specs = Self::check_batches_in(backend, tx, batches).await?;
        let mut written = Vec::with_capacity(batches.len());
        for batch in batches {
            written.push(staged_match(staged, batch)?.is_some());
        }
        let targets: Vec<StagedReplace> = batches
            .iter()
            .filter(|b| !replaced.iter().any(|r| r.is_of(b)))
            .map(|b| StagedReplace {
                hook: b.hook.clone(),
                run_id: b.run_id,
                records: b.records.clone(),
            })
            .collect();
        Self::clear_replaced_in(backend, tx, &targets, staged).await?;
        let mut inserted = 0;
        for ((batch, spec), written) in batches.iter().zip(&specs).zip(written) {
            if written {
                inserted += batch.rows.len() as u64;
            } else if !batch.rows.is_empty() {
                let table = backend.dialect().table(&batch.hook);
                inserted += B::insert_rows(tx, &table, spec, batch).await?;
            }
        }
        Ok(inserted)
    }

    /// Takes the replace locks of every target in one statement
    /// (`lock_replaced`), then deletes what replacing it removes: the
    /// records' rows, except, for a hook run with rows in `staged`, its own
    /// rows of the target's records (its staged rows of other records go).
    /// Under the locks, inserting the rest afterwards leaves what deleting
    /// first and inserting after would have.
    pub(crate) async fn clear_replaced_in(
        backend: &B,
        tx: &mut DB::Connection,
        targets: &[StagedReplace],
        staged: &[FeatureBatch],
    ) -> Result<()> {
        let tables: Vec<(String, &[RecordId])> = targets
            .iter()
            .map(|t| (backend.dialect().table(&t.hook), t.records.as_slice()))
            .collect();
        B::lock_replaced(tx, &tables).await?;
        for (target, (table, _)) in targets.iter().zip(&tables) {
            let records: Vec<String> = target.records.iter().map(|r| r.to_string()).collect();
            let Some(written) = staged
                .iter()
                .find(|s| s.hook == target.hook && s.run_id == target.run_id)
            else {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE _record_id {}",
                    B::in_text_list("$1")
                ))
                .bind(B::text_list(records))
                .execute(&mut *tx)
                .await
                .map_err(db("deleting replaced feature rows"))?;
                continue;
            };
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE _record_id {} AND _run_id <> $2",
                B::in_text_list("$1")
            ))
            .bind(B::text_list(records))
            .bind(target.run_id.0)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting replaced feature rows"))?;
            let kept: std::collections::HashSet<&RecordId> = target.records.iter().collect();
            let dropped: Vec<String> = written
                .records
                .iter()
                .filter(|r| !kept.contains(r))
                .map(|r| r.to_string())
                .collect();
            if !dropped.is_empty() {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE _run_id = $2 AND _record_id {}",
                    B::in_text_list("$1")
                ))
                .bind(B::text_list(dropped))
                .bind(target.run_id.0)
                .execute(&mut *tx)
                .await
                .map_err(db("deleting staged feature rows"))?;
            }
        }
        Ok(())
    }

    /// Writes batches ahead of their replace, inside the caller's transaction:
    /// the same checks as [`replace_batches_in`](Self::replace_batches_in), then
    /// the rows, with no lock and no delete (both are the replace's, when the
    /// transaction publishes them).
    #[cfg(feature = "postgres")]
    pub(crate) async fn stage_batches_in(
        backend: &B,
        tx: &mut DB::Connection,
        batches: &[FeatureBatch],
    ) -> Result<u64> {
        let specs = Self::check_batches_in(backend, tx, batches).await?;
        let mut inserted = 0;
        for (batch, spec) in batches.iter().zip(&specs) {
            if !batch.rows.is_empty() {
                let table = backend.dialect().table(&batch.hook);
                inserted += B::insert_rows(tx, &table, spec, batch).await?;
            }
        }
        Ok(inserted)
    }

    /// Checks every batch against its stored contract, and that the hook runs
    /// exist; returns the contracts in batch order.
    async fn check_batches_in(
        backend: &B,
        tx: &mut DB::Connection,
        batches: &[FeatureBatch],
    ) -> Result<Vec<FeatureSpec>> {
        let mut specs = Vec::with_capacity(batches.len());
        for batch in batches {
            let spec = Self::contract_in(backend, tx, &batch.hook).await?;
            batch.check(&spec)?;
            specs.push(spec);
            let run_exists: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM hook_runs WHERE id = $1")
                    .bind(batch.run_id.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("checking a hook run"))?;
            if run_exists.is_none() {
                return Err(Error::invalid(
                    "run_id",
                    format!(
                        "hook run {} does not exist; record the run before its features",
                        batch.run_id
                    ),
                ));
            }
        }
        Ok(specs)
    }

    /// The hook's contract, read through the caller's transaction when not
    /// cached: a transaction that holds a pooled connection must not wait for a
    /// second one, or concurrent writers can exhaust the pool and stall.
    async fn contract_in(
        backend: &B,
        tx: &mut DB::Connection,
        hook: &HookName,
    ) -> Result<FeatureSpec> {
        if let Some(spec) = Self::cached_contract(backend, hook) {
            return Ok(spec);
        }
        let stored: Option<Json<FeatureSpec>> =
            sqlx::query_scalar("SELECT feature FROM feature_tables WHERE hook = $1")
                .bind(hook.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a feature contract"))?;
        Self::remember_contract(backend, hook, stored)
    }

    fn cached_contract(backend: &B, hook: &HookName) -> Option<FeatureSpec> {
        backend
            .contracts()
            .lock()
            .expect("contract cache poisoned")
            .get(hook)
            .cloned()
    }

    fn remember_contract(
        backend: &B,
        hook: &HookName,
        stored: Option<Json<FeatureSpec>>,
    ) -> Result<FeatureSpec> {
        let spec = stored
            .ok_or_else(|| Error::not_found("feature table", hook))?
            .0;
        // Contracts never change once stored, so caching them is always safe.
        backend
            .contracts()
            .lock()
            .expect("contract cache poisoned")
            .insert(hook.clone(), spec.clone());
        Ok(spec)
    }
}

/// The staged batch of `batch`'s hook run, checked to hold exactly `batch`'s
/// rows for its records; `None` when that hook run was not staged.
fn staged_match<'a>(
    staged: &'a [FeatureBatch],
    batch: &FeatureBatch,
) -> Result<Option<&'a FeatureBatch>> {
    let Some(written) = staged
        .iter()
        .find(|s| s.hook == batch.hook && s.run_id == batch.run_id)
    else {
        return Ok(None);
    };
    let kept: std::collections::HashSet<&RecordId> = batch.records.iter().collect();
    let listed: std::collections::HashSet<&RecordId> = written.records.iter().collect();
    let same = written.validation_run_id == batch.validation_run_id
        && kept.iter().all(|r| listed.contains(r))
        && written
            .rows
            .iter()
            .filter(|row| kept.contains(&row.record_id))
            .eq(batch.rows.iter());
    if !same {
        return Err(Error::invalid(
            "features",
            format!(
                "the rows of hook run {} differ from the rows staged for it",
                batch.run_id
            ),
        ));
    }
    Ok(Some(written))
}

#[async_trait]
impl<B, DB> TableAccess for B
where
    B: SqlBackend<DB = DB> + osa_core::HookRegistry,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    type Args = FeatureArguments<B>;

    async fn contract(&self, hook: &HookName) -> Result<FeatureSpec> {
        if let Some(spec) = Features::<B>::cached_contract(self, hook) {
            return Ok(spec);
        }
        let stored: Option<Json<FeatureSpec>> =
            sqlx::query_scalar("SELECT feature FROM feature_tables WHERE hook = $1")
                .bind(hook.as_str())
                .fetch_optional(self.read_pool())
                .await
                .map_err(db("reading a feature contract"))?;
        Features::<B>::remember_contract(self, hook, stored)
    }

    async fn feature_hooks(&self) -> Result<Vec<HookName>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT hook FROM feature_tables ORDER BY hook")
                .fetch_all(self.read_pool())
                .await
                .map_err(db("listing feature tables"))?;
        names
            .into_iter()
            .map(|n| HookName::new(n).map_err(|e| corrupt("hook name", e)))
            .collect()
    }

    async fn select_rows(
        &self,
        hook: &HookName,
        spec: &FeatureSpec,
        condition: &str,
        args: Self::Args,
        limit: Option<u32>,
    ) -> Result<Vec<FeatureRow>> {
        let data = Dialect::data_columns(spec);
        let sql = format!(
            "SELECT {SYSTEM_SELECT}{}{} FROM {} WHERE {condition} ORDER BY _id{}",
            if data.is_empty() { "" } else { ", " },
            data.join(", "),
            self.dialect().table(hook),
            limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default(),
        );
        let rows = sqlx::query_with(&sql, B::query_arguments(args.0))
            .fetch_all(self.read_pool())
            .await
            .map_err(db("reading feature rows"))?;
        rows.iter()
            .map(|row| decode_row::<B, DB>(row, spec))
            .collect()
    }

    fn select_stream(
        &self,
        hook: &HookName,
        spec: &FeatureSpec,
        condition: &str,
        args: Self::Args,
    ) -> osa_core::feature_store::RowChunks {
        use futures::StreamExt;
        let data = Dialect::data_columns(spec);
        let sql = format!(
            "SELECT {SYSTEM_SELECT}{}{} FROM {} WHERE {condition} ORDER BY _id",
            if data.is_empty() { "" } else { ", " },
            data.join(", "),
            self.dialect().table(hook),
        );
        let pool = self.read_pool().clone();
        let spec = spec.clone();
        let (mut sender, chunks) = reads::ChunkSender::channel();
        tokio::spawn(async move {
            let mut rows = sqlx::query_with(&sql, B::query_arguments(args.0)).fetch(&pool);
            while let Some(row) = rows.next().await {
                let row = row
                    .map_err(db("reading feature rows"))
                    .and_then(|row| decode_row::<B, DB>(&row, &spec));
                if !sender.push(row).await {
                    return;
                }
            }
            sender.finish().await;
        });
        chunks
    }
}

/// Binds one typed feature value.
pub(crate) fn add_value<B, DB>(
    args: &mut DB::Arguments<'static>,
    value: &FeatureValue,
) -> Result<()>
where
    B: SqlBackend<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    let added = match value {
        FeatureValue::Null => args.add(Option::<String>::None),
        FeatureValue::Text(s) => args.add(s.clone()),
        FeatureValue::Timestamp(t) => args.add(crate::truncate_micros(*t)),
        FeatureValue::Date(d) => args.add(*d),
        FeatureValue::Uuid(u) => args.add(B::uuid_value(u)),
        FeatureValue::Float(f) => args.add(*f),
        FeatureValue::Integer(i) => args.add(*i),
        FeatureValue::Boolean(b) => args.add(*b),
        FeatureValue::Json(v) => args.add(Json(v.clone())),
    };
    added.map_err(bind_error)
}

fn decode_row<B, DB>(row: &DB::Row, spec: &FeatureSpec) -> Result<FeatureRow>
where
    B: SqlBackend<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    let get_err = |e: sqlx::Error| corrupt("feature row", e);
    let mut values = Vec::with_capacity(spec.stored_columns().len());
    for (i, column) in spec.stored_columns().iter().enumerate() {
        let index = 6 + i;
        let value = match column.value_type() {
            ValueType::Text => row
                .try_get::<Option<String>, _>(index)
                .map(|v| v.map(FeatureValue::Text)),
            ValueType::Timestamp => row
                .try_get::<Option<DateTime<Utc>>, _>(index)
                .map(|v| v.map(FeatureValue::Timestamp)),
            ValueType::Date => row
                .try_get::<Option<NaiveDate>, _>(index)
                .map(|v| v.map(FeatureValue::Date)),
            ValueType::Uuid => row
                .try_get::<Option<B::UuidColumn>, _>(index)
                .map(|v| v.map(|u| FeatureValue::Uuid(B::uuid_from_column(u)))),
            ValueType::Float => row
                .try_get::<Option<f64>, _>(index)
                .map(|v| v.map(FeatureValue::Float)),
            ValueType::Integer => row
                .try_get::<Option<i64>, _>(index)
                .map(|v| v.map(FeatureValue::Integer)),
            ValueType::Boolean => row
                .try_get::<Option<bool>, _>(index)
                .map(|v| v.map(FeatureValue::Boolean)),
            ValueType::Json => row
                .try_get::<Option<Json<serde_json::Value>>, _>(index)
                .map(|v| v.map(|j| FeatureValue::Json(j.0))),
        }
        .map_err(get_err)?;
        values.push(value.unwrap_or(FeatureValue::Null));
    }
    let row_index: i32 = row.try_get("_row_index").map_err(get_err)?;
    Ok(FeatureRow {
        id: row.try_get("_id").map_err(get_err)?,
        record_id: RecordId::new(row.try_get::<String, _>("_record_id").map_err(get_err)?)
            .map_err(|e| corrupt("record id", e))?,
        validation_run_id: row
            .try_get::<Option<Uuid>, _>("_validation_run_id")
            .map_err(get_err)?
            .map(ValidationRunId),
        run_id: HookRunId(row.try_get("_run_id").map_err(get_err)?),
        row_index: u32::try_from(row_index).map_err(|e| corrupt("row index", e))?,
        created_at: row.try_get("_created_at").map_err(get_err)?,
        values,
    })
}

/// The arguments of a feature query on backend `B`.
pub(crate) struct FeatureArguments<B: SqlBackend>(<B::DB as Database>::Arguments<'static>);

impl<B: SqlBackend> Default for FeatureArguments<B> {
    fn default() -> Self {
        FeatureArguments(Default::default())
    }
}

impl<B, DB> FeatureArgs for FeatureArguments<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    fn push_value(&mut self, value: &FeatureValue) -> Result<()> {
        add_value::<B, DB>(&mut self.0, value)
    }

    fn push_text(&mut self, text: &str) -> Result<()> {
        self.0.add(text.to_string()).map_err(bind_error)
    }

    fn push_uuid(&mut self, id: Uuid) -> Result<()> {
        self.0.add(id).map_err(bind_error)
    }

    fn push_i64(&mut self, n: i64) -> Result<()> {
        self.0.add(n).map_err(bind_error)
    }

    fn placeholder(&self) -> String {
        format!("${}", self.0.len())
    }
}

impl<B, DB> Features<B>
where
    B: SqlBackend<DB = DB> + osa_core::HookRegistry,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> Option<String>: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> NaiveDate: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> i64: Bind<'q, DB>,
    for<'q> bool: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> Json<serde_json::Value>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    i64: Column<DB>,
    f64: Column<DB>,
    bool: Column<DB>,
    DateTime<Utc>: Column<DB>,
    NaiveDate: Column<DB>,
    Json<serde_json::Value>: Column<DB>,
{
    pub(crate) async fn ensure_table(backend: &B, identity: &HookIdentity) -> Result<()> {
        let mut tx = backend.begin().await?;
        Self::ensure_table_in(&mut tx, backend.dialect(), identity).await?;
        tx.commit().await.map_err(db("creating a feature table"))
    }

    pub(crate) async fn replace_rows(backend: &B, batch: &FeatureBatch) -> Result<u64> {
        let mut tx = backend.begin().await?;
        let inserted = Self::replace_rows_in(backend, &mut tx, batch).await?;
        tx.commit().await.map_err(db("replacing feature rows"))?;
        Ok(inserted)
    }

    pub(crate) async fn rows(
        backend: &B,
        hook: &HookName,
        query: &FeatureQuery,
    ) -> Result<FeaturePage> {
        reads::page(backend, hook, query).await
    }

    pub(crate) async fn stream_rows(
        backend: &B,
        hook: &HookName,
        query: &FeatureQuery,
    ) -> Result<osa_core::feature_store::RowChunks> {
        reads::stream(backend, hook, query).await
    }

    pub(crate) async fn record_features(
        backend: &B,
        record: &RecordId,
    ) -> Result<Vec<(HookName, Vec<FeatureRow>)>> {
        reads::record_features(backend, record).await
    }

    pub(crate) async fn provenance(
        backend: &B,
        hook: &HookName,
        row_id: i64,
    ) -> Result<Option<Provenance>> {
        reads::provenance(backend, hook, row_id).await
    }
}
