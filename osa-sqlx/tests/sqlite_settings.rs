//! OSA's SQLite settings (WAL, busy timeout, foreign keys, …) are in force on every
//! connection, read back from the database rather than assumed from the options.

#![cfg(feature = "sqlite")]

use osa_sqlx::SqliteBackend;
use sqlx::SqlitePool;

async fn pragma_text(pool: &SqlitePool, name: &str) -> String {
    sqlx::query_scalar(&format!("PRAGMA {name}"))
        .fetch_one(pool)
        .await
        .expect("pragma")
}

async fn pragma_int(pool: &SqlitePool, name: &str) -> i64 {
    sqlx::query_scalar(&format!("PRAGMA {name}"))
        .fetch_one(pool)
        .await
        .expect("pragma")
}

#[tokio::test]
async fn wal_normal_sync_foreign_keys_and_busy_timeout_on_both_pools() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("osa.db"))
        .await
        .unwrap();
    backend.migrate().await.unwrap();
    for pool in [backend.write_pool(), backend.read_pool()] {
        assert_eq!(pragma_text(pool, "journal_mode").await, "wal");
        assert_eq!(pragma_int(pool, "synchronous").await, 1, "NORMAL");
        assert_eq!(pragma_int(pool, "foreign_keys").await, 1);
        assert_eq!(pragma_int(pool, "busy_timeout").await, 10_000);
    }
    // Writes are serialised through one connection.
    assert_eq!(backend.write_pool().options().get_max_connections(), 1);
}
