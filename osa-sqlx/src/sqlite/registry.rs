//! `HookRegistry` on SQLite (the shared implementation in `crate::registry`).

crate::registry::registry_for!(super::SqliteBackend, sqlx::SqliteConnection, lock = "");
