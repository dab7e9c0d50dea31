//! The reference HTTP server: an embedded archive served over the API of
//! [`osa::http`], with a worker in the same process.
//!
//! ```text
//! OSA_JWT_SECRET=$(openssl rand -hex 32) cargo run --example server --features http
//! ```
//!
//! Environment:
//! - `OSA_JWT_SECRET` (required, ≥ 32 bytes): the node secret of HS256 user tokens;
//! - `OSA_ARCHIVE` (default `./osa-archive`): the archive directory;
//! - `OSA_BIND` (default `127.0.0.1:8000`);
//! - `OSA_MACHINE_ISSUER`, `OSA_MACHINE_PUBLIC_KEY` (a PEM file) and
//!   `OSA_MACHINE_AUDIENCE`: an optional EdDSA issuer of machine tokens (CI systems).
//!
//! It prints an admin token for trying the API (`curl -H "Authorization: Bearer …"`),
//! logs the detail of internal errors to standard error, and stops gracefully on
//! Ctrl-C or SIGTERM: in-flight requests and the worker's step in flight finish first,
//! and open event streams end.
//! Over HTTP, record files are taken from the blob store under `uploads/`.

use osa::auth::{Authenticator, MachineIssuer, NodeIssuer, Role};
use osa::http::{ApiState, router};
use osa::local::LocalArchive;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn authenticator() -> osa::Result<Authenticator> {
    let secret = env("OSA_JWT_SECRET").ok_or_else(|| {
        osa::Error::invalid("OSA_JWT_SECRET", "set it to a secret of at least 32 bytes")
    })?;
    let auth = Authenticator::new(NodeIssuer::new("osa", "authenticated", secret.as_bytes())?);
    match (env("OSA_MACHINE_ISSUER"), env("OSA_MACHINE_PUBLIC_KEY")) {
        (Some(issuer), Some(key_path)) => {
            let pem = std::fs::read(&key_path).map_err(|e| {
                osa::Error::invalid("OSA_MACHINE_PUBLIC_KEY", format!("{key_path}: {e}"))
            })?;
            let audience = env("OSA_MACHINE_AUDIENCE").unwrap_or_else(|| "osa".into());
            auth.with_machine_issuer(MachineIssuer::ed25519_pem(issuer, &pem, vec![audience])?)
        }
        (None, None) => Ok(auth),
        _ => Err(osa::Error::invalid(
            "OSA_MACHINE_ISSUER",
            "set both OSA_MACHINE_ISSUER and OSA_MACHINE_PUBLIC_KEY, or neither",
        )),
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what service managers and container
/// runtimes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    println!("shutting down");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    let auth = authenticator()?;
    let root = env("OSA_ARCHIVE").unwrap_or_else(|| "osa-archive".into());
    let bind = env("OSA_BIND").unwrap_or_else(|| "127.0.0.1:8000".into());
    let archive = LocalArchive::open(&root).await?;
    println!("archive  {root}");
    // A deploy takes seconds: one still open after ten minutes was left by a process
    // that stopped mid-deploy, and is closed as failed.
    let abandoned = archive
        .deployer()
        .close_abandoned(std::time::Duration::from_secs(600))
        .await?;
    if abandoned > 0 {
        println!("closed {abandoned} deployment(s) an earlier process left open");
    }
    println!(
        "admin token (1 h): {}",
        auth.issue("admin", &[Role::Admin], 3600)?
    );

    let state = ApiState::from_local(&archive, auth);
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("serving  http://{bind}/api/v1 (OpenAPI at /api/v1/openapi.json)");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = archive.worker();
    let worker_task = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Open event streams end, so the shutdown does not wait for their clients.
            state.close_streams();
        })
        .await?;
    // The worker finishes the step in flight, then stops.
    let _ = stop.send(());
    worker_task.await??;
    Ok(())
}
