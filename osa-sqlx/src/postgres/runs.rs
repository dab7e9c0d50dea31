//! `ValidationRunStore` (the shared implementation in `crate::runs`).

crate::runs::runs_for!(super::PgBackend, sqlx::PgConnection, lock = " FOR UPDATE");
