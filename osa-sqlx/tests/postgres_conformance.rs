//! The storage conformance suite on the real Postgres server, one pair of fresh
//! schemas per test so tests run in parallel. `DATABASE_URL` overrides the default
//! `postgres://postgres@127.0.0.1:5432/test`.

#![cfg(feature = "postgres")]

use osa_sqlx::{PgBackend, PgConfig};

/// Drops the test's schemas when the test ends (also on failure).
struct DropSchemas(PgBackend);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let backend = self.0.clone();
        // The test's runtime is shutting down; clean up on a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let _ = backend.drop_schemas().await;
                backend.close().await;
            });
        })
        .join();
    }
}

async fn fresh() -> (PgBackend, DropSchemas) {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let config = PgConfig::new(url).with_schemas(
        format!("t_{}", &tag[..12]),
        format!("t_{}_features", &tag[..12]),
    );
    let backend = PgBackend::connect(config.with_max_connections(8))
        .await
        .expect("Postgres must be reachable (scripts/test.sh checks it); set DATABASE_URL to point elsewhere");
    backend.migrate().await.expect("migrate");
    let guard = DropSchemas(backend.clone());
    (backend, guard)
}

osa_core::storage_conformance!(fresh());
