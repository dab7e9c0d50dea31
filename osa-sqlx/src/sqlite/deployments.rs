//! `DeploymentLog` and `ConventionStore` (the shared implementation in `crate::deployments`).

crate::deployments::deployments_for!(super::SqliteBackend, sqlx::SqliteConnection, lock = "");
