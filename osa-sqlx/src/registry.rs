//! `HookRegistry`, written once for both backends.
//!
//! Both drivers accept `$N` placeholders, so the SQL is shared; what differs is given
//! to [`registry_for!`]: the row-lock clause (Postgres locks the hook row; SQLite's
//! `BEGIN IMMEDIATE` already holds the database's write lock) and how a list of names
//! is matched (`text_list` / `TEXT_LIST` in the backend module).

/// Implements the registry's transaction-level functions and `HookRegistry` for a
/// backend type. Invoke inside the backend's `registry` module.
macro_rules! registry_for {
    ($backend:ty, $conn:ty, lock = $lock:literal) => {
        use async_trait::async_trait;
        use osa_core::feature::FeatureSpec;
        use osa_core::hook::{Hook, HookIdentity, HookRelease, HookRun, LiveChange, NewRelease, ReleaseOutcome};
        use osa_core::id::{HookName, HookRunId, ReleaseId};
        use osa_core::registry::{HookRegistry, IdentityOutcome};
        use osa_core::{Error, Result};
        use sqlx::types::Json;
        use uuid::Uuid;

        use crate::error::db;
        use crate::rows::{
            HOOK_COLUMNS, HookRow, RELEASE_COLUMNS, RUN_COLUMNS, ReleaseRow, RunRow, as_i32, identity_conflict,
        };

        /// Registers an identity or checks it equals the stored one. Inserting first
        /// makes concurrent first registrations safe: the loser's insert does nothing
        /// and it then reads the winner's row.
        pub(crate) async fn upsert_identity_in(conn: &mut $conn, identity: &HookIdentity) -> Result<IdentityOutcome> {
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
            let Json(feature): Json<FeatureSpec> = sqlx::query_scalar("SELECT feature FROM hooks WHERE name = $1")
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

        async fn release_row(conn: &mut $conn, condition: &str, hook: &str, key: ReleaseKey<'_>) -> Result<Option<HookRelease>> {
            let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 AND {condition}");
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

        enum ReleaseKey<'a> {
            Digest(&'a str),
            Version(i32),
        }

        /// Creates a release under a lock on the hook: the digest check, the version
        /// number and the insert happen while no other creation can interleave.
        pub(crate) async fn create_release_in(conn: &mut $conn, release: &NewRelease) -> Result<ReleaseOutcome> {
            release.runtime.validate()?;
            let exists: Option<String> = sqlx::query_scalar(concat!("SELECT name FROM hooks WHERE name = $1", $lock))
                .bind(release.hook.as_str())
                .fetch_optional(&mut *conn)
                .await
                .map_err(db("reading a hook"))?;
            if exists.is_none() {
                return Err(Error::not_found("hook", &release.hook));
            }
            let digest = release.runtime.digest().as_str();
            if let Some(existing) = release_row(conn, "r.digest = $2", release.hook.as_str(), ReleaseKey::Digest(digest)).await? {
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
                version: u32::try_from(version).map_err(|_| Error::internal("release version out of range"))?,
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
            .bind(&created.built_by)
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
        pub(crate) async fn set_live_in(conn: &mut $conn, hook: &HookName, version: u32) -> Result<LiveChange> {
            let live: Option<Option<Uuid>> =
                sqlx::query_scalar(concat!("SELECT live_release_id FROM hooks WHERE name = $1", $lock))
                    .bind(hook.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db("reading a hook"))?;
            let Some(previous_id) = live else {
                return Err(Error::not_found("hook", hook));
            };
            let version = as_i32(version, "version")?;
            let current = release_row(conn, "r.version = $2", hook.as_str(), ReleaseKey::Version(version))
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
        pub(crate) async fn insert_run(conn: &mut $conn, run: &HookRun) -> Result<bool> {
            // An unknown release is the foreign key's to find (no read beforehand).
            let query = sqlx::query(
                "INSERT INTO hook_runs (id, release_id, status, started_at, finished_at, duration_s, oom_retries, \
                 log_ref, input_sha256, passed, rejected, errored) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
            );
            let result = crate::registry::bind_hook_run!(query, run)
                .execute(&mut *conn)
                .await
                .map_err(crate::registry::hook_run_error(run, "recording a hook run"))?;
            Ok(result.rows_affected() == 1)
        }

        #[async_trait]
        impl HookRegistry for $backend {
            async fn upsert_identity(&self, identity: &HookIdentity) -> Result<IdentityOutcome> {
                let mut tx = self.begin().await?;
                let outcome = upsert_identity_in(&mut tx, identity).await?;
                tx.commit().await.map_err(db("registering a hook"))?;
                Ok(outcome)
            }

            async fn create_release(&self, release: &NewRelease) -> Result<ReleaseOutcome> {
                let mut tx = self.begin().await?;
                let outcome = create_release_in(&mut tx, release).await?;
                tx.commit().await.map_err(db("creating a release"))?;
                Ok(outcome)
            }

            async fn set_live(&self, hook: &HookName, version: u32) -> Result<LiveChange> {
                let mut tx = self.begin().await?;
                let change = set_live_in(&mut tx, hook, version).await?;
                tx.commit().await.map_err(db("moving the live pointer"))?;
                Ok(change)
            }

            async fn get_hook(&self, name: &HookName) -> Result<Option<Hook>> {
                let sql = format!(
                    "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id \
                     WHERE h.name = $1"
                );
                sqlx::query_as::<_, HookRow>(&sql)
                    .bind(name.as_str())
                    .fetch_optional(self.read_pool())
                    .await
                    .map_err(db("reading a hook"))?
                    .map(HookRow::into_hook)
                    .transpose()
            }

            async fn list_hooks(&self) -> Result<Vec<Hook>> {
                let sql = format!(
                    "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id \
                     ORDER BY h.name"
                );
                sqlx::query_as::<_, HookRow>(&sql)
                    .fetch_all(self.read_pool())
                    .await
                    .map_err(db("listing hooks"))?
                    .into_iter()
                    .map(HookRow::into_hook)
                    .collect()
            }

            async fn get_release(&self, hook: &HookName, version: u32) -> Result<Option<HookRelease>> {
                let mut conn = self.read_pool().acquire().await.map_err(db("reading a release"))?;
                let version = as_i32(version, "version")?;
                release_row(&mut conn, "r.version = $2", hook.as_str(), ReleaseKey::Version(version)).await
            }

            async fn get_release_by_id(&self, id: ReleaseId) -> Result<Option<HookRelease>> {
                let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.id = $1");
                sqlx::query_as::<_, ReleaseRow>(&sql)
                    .bind(id.0)
                    .fetch_optional(self.read_pool())
                    .await
                    .map_err(db("reading a release"))?
                    .map(ReleaseRow::into_release)
                    .transpose()
            }

            async fn list_releases(&self, hook: &HookName) -> Result<Vec<HookRelease>> {
                if self.get_hook(hook).await?.is_none() {
                    return Err(Error::not_found("hook", hook));
                }
                let sql = format!(
                    "SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 ORDER BY r.version DESC"
                );
                sqlx::query_as::<_, ReleaseRow>(&sql)
                    .bind(hook.as_str())
                    .fetch_all(self.read_pool())
                    .await
                    .map_err(db("listing releases"))?
                    .into_iter()
                    .map(ReleaseRow::into_release)
                    .collect()
            }

            async fn resolve_live(&self, hooks: &[HookName]) -> Result<Vec<HookRelease>> {
                if hooks.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT {RELEASE_COLUMNS} FROM hooks h JOIN hook_releases r ON r.id = h.live_release_id \
                     WHERE h.name {}",
                    super::in_text_list("$1")
                );
                let names: Vec<String> = hooks.iter().map(|h| h.to_string()).collect();
                let rows = sqlx::query_as::<_, ReleaseRow>(&sql)
                    .bind(super::text_list(names))
                    .fetch_all(self.read_pool())
                    .await
                    .map_err(db("resolving live releases"))?;
                let releases: Vec<HookRelease> =
                    rows.into_iter().map(ReleaseRow::into_release).collect::<Result<_>>()?;
                crate::rows::order_live(hooks, releases)
            }

            async fn record_run(&self, run: &HookRun) -> Result<bool> {
                let mut tx = self.begin().await?;
                let inserted = insert_run(&mut tx, run).await?;
                tx.commit().await.map_err(db("recording a hook run"))?;
                Ok(inserted)
            }

            async fn get_run(&self, id: HookRunId) -> Result<Option<HookRun>> {
                let sql = format!("SELECT {RUN_COLUMNS} FROM hook_runs WHERE id = $1");
                sqlx::query_as::<_, RunRow>(&sql)
                    .bind(id.0)
                    .fetch_optional(self.read_pool())
                    .await
                    .map_err(db("reading a hook run"))?
                    .map(RunRow::into_run)
                    .transpose()
            }
        }
    };
}

pub(crate) use registry_for;

/// Binds the twelve columns of a hook run, in `hook_runs` column order, onto a query
/// (inside a function returning `Result`: a count too large fails it).
macro_rules! bind_hook_run {
    ($query:expr, $run:expr) => {{
        let run: &osa_core::hook::HookRun = $run;
        $query
            .bind(run.id.0)
            .bind(run.release_id.0)
            .bind(run.status.as_str())
            .bind(crate::truncate_micros(run.started_at))
            .bind(crate::truncate_micros(run.finished_at))
            .bind(run.duration_s)
            .bind(crate::rows::as_i32(run.oom_retries, "oom_retries")?)
            .bind(&run.log_ref)
            .bind(run.input_sha256.as_ref().map(|d| d.as_str()))
            .bind(crate::rows::as_i32(run.counts.passed, "counts.passed")?)
            .bind(crate::rows::as_i32(run.counts.rejected, "counts.rejected")?)
            .bind(crate::rows::as_i32(run.counts.errored, "counts.errored")?)
    }};
}

pub(crate) use bind_hook_run;

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
