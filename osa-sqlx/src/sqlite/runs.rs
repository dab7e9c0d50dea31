//! `ValidationRunStore` (the shared implementation in `crate::runs`).

crate::runs::runs_for!(super::SqliteBackend, sqlx::SqliteConnection, lock = "");
