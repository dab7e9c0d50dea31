//! Mapping database errors to OSA errors with a normalised kind.

use osa_core::Error;

/// The error type of this crate: a database error with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A query failed.
    #[error("{context}: {source}")]
    Query {
        /// What was being done.
        context: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// Migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Converts a database error into an [`Error`]: connection and lock problems are
/// Unavailable (transient), unique violations Conflict, the rest Internal.
pub(crate) fn db(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| {
        let transient = match &source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => {
                // Postgres: serialization failure, deadlock, lock timeout, admin
                // shutdown. SQLite: busy or locked.
                matches!(
                    db.code().as_deref(),
                    Some("40001" | "40P01" | "55P03" | "57P01" | "57P03" | "5" | "6" | "517")
                )
            }
            _ => false,
        };
        let is_unique = matches!(&source, sqlx::Error::Database(db) if db.is_unique_violation());
        let detail = source.to_string();
        let wrapped = StorageError::Query { context, source };
        if transient {
            Error::Unavailable {
                what: "database",
                detail,
                source: Some(Box::new(wrapped)),
            }
        } else if is_unique {
            Error::conflict("row", context, detail)
        } else {
            Error::Internal {
                message: format!("{context}: {detail}"),
                source: Some(Box::new(wrapped)),
            }
        }
    }
}

/// Converts a migration error.
pub(crate) fn migrate(e: sqlx::migrate::MigrateError) -> Error {
    Error::Internal {
        message: format!("migrating the database: {e}"),
        source: Some(Box::new(StorageError::Migrate(e))),
    }
}

/// A JSON column that no longer matches the type it was written from.
pub(crate) fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("stored {what} does not decode: {e}"))
}
