//! `HookRegistry` on Postgres.

use async_trait::async_trait;
use osa_core::feature::FeatureSpec;
use osa_core::hook::{
    Hook, HookIdentity, HookRelease, HookRun, LiveChange, NewRelease, ReleaseOutcome,
};
use osa_core::id::{HookName, HookRunId, ReleaseId};
use osa_core::registry::{HookRegistry, IdentityOutcome};
use osa_core::{Error, Result};
use sqlx::types::Json;
use uuid::Uuid;

use super::PgBackend;
use crate::error::db;
use crate::rows::{
    HOOK_COLUMNS, HookRow, RELEASE_COLUMNS, RUN_COLUMNS, ReleaseRow, RunRow, as_i32,
    identity_conflict,
};

impl PgBackend {
    async fn release_by(
        &self,
        condition: &str,
        hook: Option<&HookName>,
        key: ReleaseKey,
    ) -> Result<Option<HookRelease>> {
        let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE {condition}");
        let mut query = sqlx::query_as::<_, ReleaseRow>(&sql);
        if let Some(hook) = hook {
            query = query.bind(hook.as_str());
        }
        query = match key {
            ReleaseKey::Version(v) => query.bind(v),
            ReleaseKey::Id(id) => query.bind(id),
        };
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a release"))?
            .map(ReleaseRow::into_release)
            .transpose()
    }
}

enum ReleaseKey {
    Version(i32),
    Id(Uuid),
}

#[async_trait]
impl HookRegistry for PgBackend {
    async fn upsert_identity(&self, identity: &HookIdentity) -> Result<IdentityOutcome> {
        // Insert-or-nothing first, so concurrent first registrations cannot both miss
        // the row and collide on the primary key.
        let inserted = sqlx::query(
            "INSERT INTO hooks (name, feature, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(identity.name.as_str())
        .bind(Json(&identity.feature))
        .bind(crate::now())
        .execute(&self.pool)
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
                .fetch_one(&self.pool)
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

    async fn create_release(&self, release: &NewRelease) -> Result<ReleaseOutcome> {
        release.runtime.validate()?;
        let mut tx = self.begin().await?;
        // The row lock on the hook serialises release creation per hook: versions stay
        // gap-free and the `created` decision is made under the same lock as the insert.
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM hooks WHERE name = $1 FOR UPDATE")
                .bind(release.hook.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a hook"))?;
        if exists.is_none() {
            return Err(Error::not_found("hook", &release.hook));
        }
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 AND r.digest = $2"
        );
        let existing = sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(release.hook.as_str())
            .bind(release.runtime.digest().as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading a release"))?;
        if let Some(row) = existing {
            return Ok(ReleaseOutcome {
                release: row.into_release()?,
                created: false,
            });
        }
        let version: i32 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM hook_releases WHERE hook = $1",
        )
        .bind(release.hook.as_str())
        .fetch_one(&mut *tx)
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
        .bind(created.digest().as_str())
        .bind(Json(&created.runtime))
        .bind(&created.source_ref)
        .bind(&created.built_by)
        .bind(created.built_at)
        .execute(&mut *tx)
        .await
        .map_err(db("creating a release"))?;
        sqlx::query("UPDATE hooks SET live_release_id = $1 WHERE name = $2")
            .bind(created.id.0)
            .bind(created.hook.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("moving the live pointer"))?;
        tx.commit().await.map_err(db("creating a release"))?;
        Ok(ReleaseOutcome {
            release: created,
            created: true,
        })
    }

    async fn set_live(&self, hook: &HookName, version: u32) -> Result<LiveChange> {
        let mut tx = self.begin().await?;
        let live: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT live_release_id FROM hooks WHERE name = $1 FOR UPDATE")
                .bind(hook.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a hook"))?;
        let Some(previous_id) = live else {
            return Err(Error::not_found("hook", hook));
        };
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.hook = $1 AND r.version = $2"
        );
        let current = sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(hook.as_str())
            .bind(as_i32(version, "version")?)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("reading a release"))?
            .ok_or_else(|| Error::not_found("release", format!("{hook}@v{version}")))?
            .into_release()?;
        let sql = format!("SELECT {RELEASE_COLUMNS} FROM hook_releases r WHERE r.id = $1");
        let previous = match previous_id {
            Some(id) => sqlx::query_as::<_, ReleaseRow>(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("reading a release"))?
                .map(ReleaseRow::into_release)
                .transpose()?,
            None => None,
        };
        sqlx::query("UPDATE hooks SET live_release_id = $1 WHERE name = $2")
            .bind(current.id.0)
            .bind(hook.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db("moving the live pointer"))?;
        tx.commit().await.map_err(db("moving the live pointer"))?;
        Ok(LiveChange { previous, current })
    }

    async fn get_hook(&self, name: &HookName) -> Result<Option<Hook>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id WHERE h.name = $1"
        );
        sqlx::query_as::<_, HookRow>(&sql)
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a hook"))?
            .map(HookRow::into_hook)
            .transpose()
    }

    async fn list_hooks(&self) -> Result<Vec<Hook>> {
        let sql = format!(
            "SELECT {HOOK_COLUMNS} FROM hooks h LEFT JOIN hook_releases l ON l.id = h.live_release_id ORDER BY h.name"
        );
        sqlx::query_as::<_, HookRow>(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(db("listing hooks"))?
            .into_iter()
            .map(HookRow::into_hook)
            .collect()
    }

    async fn get_release(&self, hook: &HookName, version: u32) -> Result<Option<HookRelease>> {
        let version = as_i32(version, "version")?;
        self.release_by(
            "r.hook = $1 AND r.version = $2",
            Some(hook),
            ReleaseKey::Version(version),
        )
        .await
    }

    async fn get_release_by_id(&self, id: ReleaseId) -> Result<Option<HookRelease>> {
        self.release_by("r.id = $1", None, ReleaseKey::Id(id.0))
            .await
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
            .fetch_all(&self.pool)
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
             WHERE h.name = ANY($1)"
        );
        let names: Vec<&str> = hooks.iter().map(HookName::as_str).collect();
        let rows = sqlx::query_as::<_, ReleaseRow>(&sql)
            .bind(&names)
            .fetch_all(&self.pool)
            .await
            .map_err(db("resolving live releases"))?;
        let releases: Vec<HookRelease> = rows
            .into_iter()
            .map(ReleaseRow::into_release)
            .collect::<Result<_>>()?;
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
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a hook run"))?
            .map(RunRow::into_run)
            .transpose()
    }
}

/// Inserts a hook run once (first write wins); returns whether it was inserted.
pub(crate) async fn insert_run(tx: &mut sqlx::PgConnection, run: &HookRun) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO hook_runs (id, release_id, status, started_at, finished_at, duration_s, oom_retries, \
         log_ref, input_sha256, passed, rejected, errored) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(run.id.0)
    .bind(run.release_id.0)
    .bind(run.status.as_str())
    .bind(crate::truncate_micros(run.started_at))
    .bind(crate::truncate_micros(run.finished_at))
    .bind(run.duration_s)
    .bind(as_i32(run.oom_retries, "oom_retries")?)
    .bind(&run.log_ref)
    .bind(run.input_sha256.as_ref().map(|d| d.as_str()))
    .bind(as_i32(run.counts.passed, "counts.passed")?)
    .bind(as_i32(run.counts.rejected, "counts.rejected")?)
    .bind(as_i32(run.counts.errored, "counts.errored")?)
    .execute(tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
            Error::not_found("release", run.release_id)
        }
        _ => db("recording a hook run")(e),
    })?;
    Ok(result.rows_affected() == 1)
}
