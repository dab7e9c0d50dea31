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
            sqlx::Error::Database(db) => db.code().as_deref().is_some_and(transient_code),
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
            // Which constraint is the server's business: callers see what collided.
            tracing::info!(context, detail = %detail, "unique violation");
            Error::conflict(
                "row",
                context,
                "another write with the same key came first; read it and try again",
            )
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

/// Whether a database error code means "try again": on Postgres (five-character
/// SQLSTATEs) a serialization failure, deadlock, lock timeout or shutdown; on SQLite
/// (numeric result codes, shorter) any busy or locked code, extended ones included
/// (their low byte is the primary code: 261 busy recovery, 517 busy snapshot, 773 busy
/// timeout, 262 locked shared cache, ...).
fn transient_code(code: &str) -> bool {
    const SQLITE_BUSY: u32 = 5;
    const SQLITE_LOCKED: u32 = 6;
    match code {
        "40001" | "40P01" | "55P03" | "57P01" | "57P03" => true,
        sqlite if sqlite.len() < 5 => sqlite
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
        _ => false,
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod unique_tests {
    use osa_core::ErrorKind;

    use super::db;

    /// A unique violation is a Conflict whose public text names what collided, not the
    /// server's constraint.
    #[tokio::test]
    async fn unique_violations_keep_the_constraint_out() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE secret_table (k TEXT PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let insert = || sqlx::query("INSERT INTO secret_table (k) VALUES ('a')").execute(&pool);
        insert().await.unwrap();
        let error = db("creating a thing")(insert().await.unwrap_err());
        assert_eq!(error.kind(), ErrorKind::Conflict);
        let public = error.public_message();
        assert!(public.contains("creating a thing"), "{public}");
        assert!(!public.contains("secret_table"), "{public}");
        assert!(!public.to_lowercase().contains("unique"), "{public}");
    }
}

#[cfg(test)]
mod tests {
    use super::transient_code;

    #[test]
    fn busy_locked_and_retryable_codes_are_transient() {
        for code in [
            "40001", "40P01", "55P03", "57P01", "57P03", "5", "6", "261", "262", "517", "773",
        ] {
            assert!(transient_code(code), "{code}");
        }
        // Constraint violations (SQLite 19, 1555, 2067; Postgres 23505), syntax, and
        // Postgres codes whose digits happen to end in a busy byte stay permanent.
        for code in [
            "19", "1555", "2067", "1", "23505", "42601", "00005", "40000",
        ] {
            assert!(!transient_code(code), "{code}");
        }
    }
}
