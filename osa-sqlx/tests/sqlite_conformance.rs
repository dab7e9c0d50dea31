//! The storage conformance suite on real SQLite files, one file per test. SQLite
//! offers no `FeatureStaging` (one writer: a write transaction held open while a hook
//! runs would stall every other write), and declares it.

#![cfg(feature = "sqlite")]

use osa_sqlx::SqliteBackend;
use tempfile::TempDir;

async fn fresh() -> (SqliteBackend, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .expect("open");
    backend.migrate().await.expect("migrate");
    (backend, dir)
}

osa_core::storage_conformance!(fresh(), without: [feature_staging]);
