//! Postgres and SQLite storage backends for OSA.
//!
//! The backends are not implemented yet; this crate only fixes the package layout and
//! its features (`sqlite`, `postgres`).
