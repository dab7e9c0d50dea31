//! `HookRegistry` on Postgres (the shared implementation in `crate::registry`).

crate::registry::registry_for!(super::PgBackend, sqlx::PgConnection, lock = " FOR UPDATE");
