//! `DeploymentLog` and `ConventionStore` (the shared implementation in `crate::deployments`).

crate::deployments::deployments_for!(super::PgBackend, sqlx::PgConnection, lock = " FOR UPDATE");
