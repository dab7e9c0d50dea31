//! `HookRegistry`, written once for both backends over [`SqlBackend`]: the SQL is
//! shared; the row-lock clause (Postgres locks the hook row; SQLite's `BEGIN IMMEDIATE`
//! already holds the database's write lock) and how a list of names is matched come
//! from the trait.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use osa_core::feature::FeatureSpec;
use osa_core::hook::{
    Hook, HookIdentity, HookRelease, HookRun, LiveChange, NewRelease, ReleaseOutcome,
};
use osa_core::id::{HookName, HookRunId, ReleaseId};
use osa_core::registry::IdentityOutcome;
use osa_core::{Error, Result};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Database, Executor, IntoArguments};
use uuid::Uuid;

use crate::backend::{Bind, Column, Fetch, RowsAffected, SqlBackend, bind_hook_run};
use crate::error::db;
use crate::rows::{
    HOOK_COLUMNS, HookRow, RELEASE_COLUMNS, RUN_COLUMNS, ReleaseRow, RunRow, as_i32,
    identity_conflict,
};

/// The registry's statements for backend `B` (transaction-level functions, and the
/// bodies of `HookRegistry`).
pub(crate) struct Registry<B>(PhantomData<B>);

enum ReleaseKey<'a> {
    Digest(&'a str),
    Version(i32),
}

impl<B, DB> Registry<B>
where
    B: SqlBackend<DB = DB>,
    DB: Database<QueryResult: RowsAffected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Bind<'q, DB>,
    for<'q> String: Bind<'q, DB>,
    for<'q> i32: Bind<'q, DB>,
    for<'q> f64: Bind<'q, DB>,
    for<'q> Uuid: Bind<'q, DB>,
    for<'q> DateTime<Utc>: Bind<'q, DB>,
    for<'q> Json<&'q FeatureSpec>: Bind<'q, DB>,
    for<'q> Json<&'q osa_core::runtime::RuntimeConfig>: Bind<'q, DB>,
    for<'q> Option<&'q str>: Bind<'q, DB>,
    usize: ColumnIndex<DB::Row>,
    Json<FeatureSpec>: Column<DB>,
    String: Column<DB>,
    Uuid: Column<DB>,
    i32: Column<DB>,
    HookRow: Fetch<DB>,
    ReleaseRow: Fetch<DB>,
    RunRow: Fetch<DB>,
{
    /// Registers an identity or checks it equals the stored one. Inserting first
    /// makes concurrent first registrations safe: the loser's insert does nothing
    /// and it then reads the winner's row.
    pub(crate) async fn upsert_identity_in(
        conn: &mut DB::Connection,
        identity: &HookIdentity,
    ) -> Result<IdentityOutcome> {
        let inserted = sqlx::query(
            "INSERT INTO hooks (name, feature, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(identity.name.as_str())
        .bind(Json(&identity.feature))
        .bind(crate::now())
        .execute(&mut *conn)
        .await
        .map_err(db("registering a hook"))?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(IdentityOutcome { created: true });
        }
        let Json(feature): Json<FeatureSpec> =
            sqlx::query_scalar("SELECT feature FROM hooks WHERE name = $1")
                .bind(identity.name.as_str())
                .fetch_one(&mut *conn)
                .await
                .map_err(db("reading a hook"))?;
        let stored = HookIdentity {
            name: identity.name.clone(),
            feature,
        };
        match identity_conflict(&stored, identity) {
            Some(conflict) => Err(conflict),
            None => Ok(IdentityOutcome { created: false }),
        }
    }

    async fn release_row(
        conn: &mut DB::Connection,
        condition: &str,
        hook: &str,
        key: ReleaseKey<'_>,
    ) -> Result<Option<HookRelease>> {
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 AND {condition}"
        );
        let query = sqlx::query_as::<_, ReleaseRow>(&sql).bind(hook);
        let query = match key {
            ReleaseKey::Digest(d) => query.bind(d),
            ReleaseKey::Version(v) => query.bind(v),
        };
        query
            .fetch_optional(&mut *conn)
            .await
            .map_err(db("reading a release"))?
            .map(ReleaseRow::into_release)
            .transpose()
    }

    /// Creates a release under a lock on the hook: the digest check, the version
    /// number and the insert happen while no other creation can interleave.
    pub(crate) async fn create_release_in(
        conn: &mut DB::Connection,
        release: &NewRelease,
    ) -> Result<ReleaseOutcome> {
        release.runtime.validate()?;
        let exists: Option<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM hooks WHERE name = $1{}",
            B::ROW_LOCK
        ))
        .bind(release.hook.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a hook"))?;
        if exists.is_none() {
            return Err(Error::not_found("hook", &release.hook));
        }
        let digest = release.runtime.digest().as_str();
        if let Some(existing) = Self::release_row(
            conn,
            "r.digest = $2",
            release.hook.as_str(),
            ReleaseKey::Digest(digest),
        )
        .await?
        {
            return Ok(ReleaseOutcome {
                release: existing,
                created: false,
            });
        }
        let version: i32 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(version), 0) + 1 AS INTEGER) FROM hook_releases WHERE hook = $1")
            .bind(release.hook.as_str())
            .fetch_one(&mut *conn)
            .await
            .map_err(db("numbering a release"))?;
        let created = HookRelease {
            id: ReleaseId::new_random(),
            hook: release.hook.clone(),
            version: u32::try_from(version)
                .map_err(|_| Error::internal("release version out of range"))?,
            runtime: release.runtime.clone(),
            source_ref: release.source_ref.clone(),
            built_by: release.built_by.clone(),
            built_at: crate::now(),
        };
        sqlx::query(
            "INSERT INTO hook_releases (id, hook, version, digest, runtime, source_ref, built_by, built_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(created.id.0)
        .bind(created.hook.as_str())
        .bind(version)
        .bind(digest)
        .bind(Json(&created.runtime))
        .bind(&created.source_ref)
        .bind(created.built_by.as_deref())
        .bind(created.built_at)
        .execute(&mut *conn)
        .await
        .map_err(db("creating a release"))?;
        sqlx::query("UPDATE hooks SET live_release_id = $1 WHERE name = $2")
            .bind(created.id.0)
            .bind(created.hook.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db("moving the live pointer"))?;
        Ok(ReleaseOutcome {
            release: created,
            created: true,
        })
    }

    /// Points live at `version`, under a lock on the hook.
    pub(crate) async fn set_live_in(
        conn: &mut DB::Connection,
        hook: &HookName,
        version: u32,
    ) -> Result<LiveChange> {
        let live: Option<Option<Uuid>> = sqlx::query_scalar(&format!(
            "SELECT live_release_id FROM hooks WHERE name = $1{}",
            B::ROW_LOCK
        ))
        .bind(hook.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db("reading a hook"))?;
        let Some(previous_id) = live else {
            return Err(Error::not_found("hook", hook));
        };
        let version = as_i32(version, "version")?;
        let current = Self::release_row(
            conn,
            "r.version = $2",
            hook.as_str(),
            ReleaseKey::Version(version),
        )
        .await?
        .ok_or_else(|| Error::not_found("release", format!("{hook}@v{version}")))?;
        let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.id = $1");
        let previous = match previous_id {
            Some(id) => sqlx::query_as::<_, ReleaseRow>(&sql)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a release"))?
                .map(ReleaseRow::into_release)
                .transpose()?,
            None => None,
        };
        sqlx::query("UPDATE hooks SET live_release_id = $1 WHERE name = $2")
            .bind(current.id.0)
            .bind(hook.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db("moving the live pointer"))?;
        Ok(LiveChange { previous, current })
    }

    /// Inserts a hook run once (first write wins); returns whether it was inserted.
    pub(crate) async fn insert_run(conn: &mut DB::Connection, run: &HookRun) -> Result<bool> {
        // An unknown release is the foreign key's to find (no read beforehand).
        let query = sqlx::query(
            "INSERT INTO hook_runs (id, release_id, status, started_at, finished_at, duration_s, oom_retries, \
             log_ref, input_sha256, passed, rejected, errored) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
        );
        let result = bind_hook_run(query, run)?
            .execute(&mut *conn)
            .await
            .map_err(hook_run_error(run, "recording a hook run"))?;
        Ok(result.rows_affected() == 1)
    }

    pub(crate) async fn upsert_identity(
        backend: &B,
        identity: &HookIdentity,
    ) -> Result<IdentityOutcome> {
        let mut tx = backend.begin().await?;
        let outcome = Self::upsert_identity_in(&mut tx, identity).await?;
        tx.commit().await.map_err(db("registering a hook"))?;
        Ok(outcome)
    }

    pub(crate) async fn create_release(
        backend: &B,
        release: &NewRelease,
    ) -> Result<ReleaseOutcome> {
        let mut tx = backend.begin().await?;
        let outcome = Self::create_release_in(&mut tx, release).await?;
        tx.commit().await.map_err(db("creating a release"))?;
        Ok(outcome)
    }

    pub(crate) async fn set_live(backend: &B, hook: &HookName, version: u32) -> Result<LiveChange> {
        let mut tx = backend.begin().await?;
        let change = Self::set_live_in(&mut tx, hook, version).await?;
        tx.commit().await.map_err(db("moving the live pointer"))?;
        Ok(change)
    }

    pub(crate) async fn get_hook(backend: &B, name: &HookName) -> Result<Option<Hook>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id \
             WHERE h.name = $1"
        );
        sqlx::query_as::<_, HookRow>(&sql)
            .bind(name.as_str())
            .fetch_optional(backend.read_pool())
            .await
            .map_err(db("reading a hook"))?
            .map(HookRow::into_hook)
            .transpose()
    }

    pub(crate) async fn list_hooks(backend: &B) -> Result<Vec<Hook>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id \
             ORDER BY h.name"
        );
        sqlx::query_as::<_, HookRow>(&sql)
            .fetch_all(backend.read_pool())
            .await
            .map_err(db("listing hooks"))?
            .into_iter()
            .map(HookRow::into_hook)
            .collect()
    }

    pub(crate) async fn get_release(
        backend: &B,
        hook: &HookName,
        version: u32,
    ) -> Result<Option<HookRelease>> {
        let mut conn = backend
            .read_pool()
            .acquire()
            .await
            .map_err(db("reading a release"))?;
        let version = as_i32(version, "version")?;
        Self::release_row(
            &mut conn,
            "r.version = $2",
            hook.as_str(),
            ReleaseKey::Version(version),
        )
        .await
    }

    pub(crate) async fn get_release_by_id(
        backend: &B,
        id: ReleaseId,
    ) -> Result<Option<HookRelease>> {
        let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.id = $1");
        sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(id.0)
            .fetch_optional(backend.read_pool())
            .await
            .map_err(db("reading a release"))?
            .map(ReleaseRow::into_release)
            .transpose()
    }

    pub(crate) async fn list_releases(backend: &B, hook: &HookName) -> Result<Vec<HookRelease>> {
        if Self::get_hook(backend, hook).await?.is_none() {
            return Err(Error::not_found("hook", hook));
        }
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 ORDER BY r.version DESC"
        );
        sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(hook.as_str())
            .fetch_all(backend.read_pool())
            .await
            .map_err(db("listing releases"))?
            .into_iter()
            .map(ReleaseRow::into_release)
            .collect()
    }

    pub(crate) async fn resolve_live(backend: &B, hooks: &[HookName]) -> Result<Vec<HookRelease>> {
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM hooks h JOIN hook_releases r ON r.id = h.live_release_id \
             WHERE h.name {}",
            B::in_text_list("$1")
        );
        let names: Vec<String> = hooks.iter().map(|h| h.to_string()).collect();
        let rows = sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(B::text_list(names))
            .fetch_all(backend.read_pool())
            .await
            .map_err(db("resolving live releases"))?;
        let releases: Vec<HookRelease> = rows
            .into_iter()
            .map(ReleaseRow::into_release)
            .collect::<Result<_>>()?;
        crate::rows::order_live(hooks, releases)
    }

    pub(crate) async fn record_run(backend: &B, run: &HookRun) -> Result<bool> {
        let mut tx = backend.begin().await?;
        let inserted = Self::insert_run(&mut tx, run).await?;
        tx.commit().await.map_err(db("recording a hook run"))?;
        Ok(inserted)
    }

    pub(crate) async fn get_run(backend: &B, id: HookRunId) -> Result<Option<HookRun>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM hook_runs WHERE id = $1");
        sqlx::query_as::<_, RunRow>(&sql)
            .bind(id.0)
            .fetch_optional(backend.read_pool())
            .await
            .map_err(db("reading a hook run"))?
            .map(RunRow::into_run)
            .transpose()
    }
}

/// The error of a statement that records `run`: the release's foreign key finds an
/// unknown release (NotFound, no read beforehand); the rest as [`db`](crate::error::db).
pub(crate) fn hook_run_error(
    run: &osa_core::hook::HookRun,
    context: &'static str,
) -> impl FnOnce(sqlx::Error) -> osa_core::Error + use<> {
    let release = run.release_id;
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            osa_core::Error::not_found("release", release)
        }
        _ => crate::error::db(context)(e),
    }
}
