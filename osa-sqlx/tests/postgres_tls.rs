//! Postgres over TLS: a cluster that refuses plain TCP connections (made by
//! `scripts/pg-tls-setup.sh` with a self-signed certificate) is reached with
//! `sslmode=require`, and refuses `sslmode=disable`. `OSA_PG_TLS_URL` names such a
//! cluster; when it is unset the test runs the script, which creates or starts it.
//!
//! Also here: a backend built from the caller's own pool or connect options.

#![cfg(feature = "postgres")]

use std::str::FromStr;

use osa_core::HookRegistry;
use osa_sqlx::{PgBackend, PgConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The URL of the TLS-only cluster, with `sslmode=require`.
fn tls_url() -> String {
    if let Ok(url) = std::env::var("OSA_PG_TLS_URL") {
        return url;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-tls-setup.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("run scripts/pg-tls-setup.sh");
    assert!(
        out.status.success(),
        "scripts/pg-tls-setup.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("the script prints the URL last")
        .trim()
        .to_string()
}

fn with_sslmode(url: &str, mode: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    format!("{base}?sslmode={mode}")
}

fn fresh_config(url: String) -> PgConfig {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    PgConfig::new(url)
        .with_schemas(
            format!("tls_{}", &tag[..12]),
            format!("tls_{}_f", &tag[..12]),
        )
        .with_max_connections(2)
}

#[tokio::test]
async fn sslmode_require_connects_over_tls_and_plain_connections_are_refused() {
    let url = tls_url();
    let backend = PgBackend::connect(fresh_config(with_sslmode(&url, "require")))
        .await
        .expect("a TLS connection");
    backend.migrate().await.expect("migrate over TLS");
    assert!(backend.list_hooks().await.expect("list hooks").is_empty());
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(backend.pool())
        .await
        .expect("read pg_stat_ssl");
    assert!(ssl, "the session is encrypted");
    backend.drop_schemas().await.expect("drop");
    backend.close().await;

    let refused = PgBackend::connect(fresh_config(with_sslmode(&url, "disable")))
        .await
        .expect_err("the cluster refuses plain connections");
    let message = refused.to_string();
    assert!(
        message.contains("pg_hba.conf") || message.contains("SSL"),
        "{message}"
    );
}

#[tokio::test]
async fn a_backend_over_the_callers_options_or_pool() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let config = fresh_config(String::new());
    let options = PgConnectOptions::from_str(&url).expect("url");
    let backend = PgBackend::connect_with(options.clone(), config.clone())
        .await
        .expect("connect with options");
    backend.migrate().await.expect("migrate");
    backend
        .list_hooks()
        .await
        .expect("control tables are on the search_path");

    // A pool whose sessions do not put the control schema first is refused, naming
    // the setting.
    let plain = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .expect("pool");
    let err = PgBackend::from_pool(plain, config.clone())
        .await
        .expect_err("wrong search_path");
    assert!(err.to_string().contains("search_path"), "{err}");

    let pool = PgPoolOptions::new()
        .max_connections(3)
        .connect_with(options.options([("search_path", config.control_schema.as_str())]))
        .await
        .expect("pool");
    let over_pool = PgBackend::from_pool(pool, config).await.expect("from pool");
    assert_eq!(over_pool.config().max_connections, 3);
    over_pool.list_hooks().await.expect("list hooks");
    backend.drop_schemas().await.expect("drop");
    backend.close().await;
    over_pool.close().await;
}
