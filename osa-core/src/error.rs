//! The error type of `osa-core` and of every port.
//!
//! Each variant carries enough context to say what was wrong. Callers branch on
//! [`Error::kind`] (the HTTP layer maps it to a status code) and on
//! [`Error::retry_class`] (the saga decides whether a job is retried).

use std::fmt;

use std::path::PathBuf;

/// Result alias used across OSA.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed error source kept for diagnostics.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Normalised category of an [`Error`], stable across backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The addressed object does not exist.
    NotFound,
    /// The request contradicts stored state (a changed contract, a duplicate).
    Conflict,
    /// The input is malformed or breaks a rule.
    Invalid,
    /// No valid credentials were presented.
    Unauthenticated,
    /// The caller is known but lacks a scope or role.
    Forbidden,
    /// A dependency (database, object store, container engine) is unreachable or busy.
    Unavailable,
    /// A bug or an unexpected state.
    Internal,
}

impl ErrorKind {
    /// The lower-case name used in logs and in the HTTP error body's `code` (where
    /// [`Error::code`] refines `unauthenticated` and `forbidden`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether repeating the same operation can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Repeating the operation unchanged fails the same way.
    Permanent,
    /// The operation may succeed later (lost connection, lock timeout, busy engine).
    Transient,
}

/// The error of every OSA operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The addressed object does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of object (`hook`, `release`, `validation run`, ...).
        what: &'static str,
        /// The identifier that was looked up.
        id: String,
    },

    /// The request contradicts stored state.
    #[error("{what} `{id}` conflicts with stored state: {detail}")]
    Conflict {
        /// The kind of object.
        what: &'static str,
        /// Its identifier.
        id: String,
        /// What differs and what to do about it.
        detail: String,
    },

    /// The input breaks a rule; `field` is the path of the offending value.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Path of the offending value (`hooks[0].name`, `title`, `limits.memory`).
        field: String,
        /// What was wrong and what is expected.
        message: String,
    },

    /// A validated identifier was malformed.
    #[error(transparent)]
    Identifier(#[from] IdentifierError),

    /// A hook broke the batch contract, or a batch could not be prepared.
    #[error(transparent)]
    Contract(#[from] ContractError),

    /// Credentials were presented but are not valid: a malformed token, a bad
    /// signature, an unknown issuer, a wrong audience, a token not yet valid. (A
    /// missing token is [`Error::MissingCredentials`], an expired one
    /// [`Error::TokenExpired`].)
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// Why the credentials were refused.
        reason: String,
    },

    /// No credentials were presented (no `Authorization` header, or no bearer token
    /// in it) where they are needed.
    #[error("unauthenticated: {reason}")]
    MissingCredentials {
        /// What was missing and what the request needs.
        reason: String,
    },

    /// The token is well-formed and signed, but its `exp` (plus the leeway) has
    /// passed.
    #[error("unauthenticated: {reason}")]
    TokenExpired {
        /// What expired.
        reason: String,
    },

    /// The caller lacks a scope or role.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// The scope or role that was missing.
        reason: String,
    },

    /// A dependency is unreachable or busy; retrying may help.
    #[error("{what} unavailable: {detail}")]
    Unavailable {
        /// The dependency (`database`, `object store`, `container engine`).
        what: &'static str,
        /// What happened.
        detail: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// A bug or an unexpected state.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// The text of this error for whoever made the request: its own message when it
    /// is about the request, a generic one for a fault of the server or of a service
    /// it depends on (that detail belongs in the server's log, not with the caller).
    pub fn public_message(&self) -> String {
        match self.kind() {
            ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Invalid
            | ErrorKind::Unauthenticated
            | ErrorKind::Forbidden => self.to_string(),
            ErrorKind::Unavailable => {
                "a service this server depends on is unavailable; try again later".into()
            }
            ErrorKind::Internal => "internal error; the server log has the details".into(),
        }
    }

    /// The normalised category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Invalid { .. } | Error::Identifier(_) => ErrorKind::Invalid,
            Error::Contract(e) => e.kind(),
            Error::Unauthenticated { .. }
            | Error::MissingCredentials { .. }
            | Error::TokenExpired { .. } => ErrorKind::Unauthenticated,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// The machine-readable code of this error, the HTTP error body's `code`: the
    /// kind's name ([`ErrorKind::as_str`]), except for refused callers, whose codes
    /// are those the published server and CLI use: `missing_token`
    /// ([`Error::MissingCredentials`]), `token_expired` ([`Error::TokenExpired`]),
    /// `invalid_token` (every other [`ErrorKind::Unauthenticated`]) and
    /// `access_denied` ([`ErrorKind::Forbidden`]).
    pub fn code(&self) -> &'static str {
        match self {
            Error::MissingCredentials { .. } => "missing_token",
            Error::TokenExpired { .. } => "token_expired",
            _ => match self.kind() {
                ErrorKind::Unauthenticated => "invalid_token",
                ErrorKind::Forbidden => "access_denied",
                kind => kind.as_str(),
            },
        }
    }

    /// Whether the operation may succeed when repeated unchanged.
    pub fn retry_class(&self) -> RetryClass {
        match self.kind() {
            ErrorKind::Unavailable => RetryClass::Transient,
            _ => match self {
                Error::Contract(e) => e.retry_class(),
                _ => RetryClass::Permanent,
            },
        }
    }

    /// Whether this error is [`RetryClass::Transient`].
    pub fn is_transient(&self) -> bool {
        self.retry_class() == RetryClass::Transient
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: &'static str, id: impl fmt::Display) -> Self {
        Error::NotFound {
            what,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(what: &'static str, id: impl fmt::Display, detail: impl Into<String>) -> Self {
        Error::Conflict {
            what,
            id: id.to_string(),
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Internal`] without a source.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// The path of the offending field, when the error is about one input value.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::Identifier(e) => Some(e.what()),
            _ => None,
        }
    }
}

/// A rejected identifier: what kind it was, the offending input and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {rule}")]
pub struct IdentifierError {
    what: &'static str,
    value: String,
    rule: String,
}

impl IdentifierError {
    pub(crate) fn new(what: &'static str, value: &str, rule: impl Into<String>) -> Self {
        // Long hostile inputs are cut so that error messages stay readable.
        let mut shown: String = value.chars().take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        IdentifierError {
            what,
            value: shown,
            rule: rule.into(),
        }
    }

    /// The kind of identifier (`hook name`, `column name`, ...).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The offending input (cut to 80 characters).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The rule that was broken.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

/// A batch that cannot be prepared, or outputs that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// An output file is larger than [`OutputLimits::max_file_bytes`](crate::contract::OutputLimits::max_file_bytes).
    #[error(
        "{file} is {size} bytes, over the limit of {limit} bytes; the hook must write less output per batch"
    )]
    OutputTooLarge {
        /// The output file.
        file: &'static str,
        /// Its size (or a lower bound).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A line is longer than [`OutputLimits::max_line_bytes`](crate::contract::OutputLimits::max_line_bytes).
    #[error("{file} line {line} is longer than {limit} bytes")]
    LineTooLong {
        /// The output file.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line that cannot be attributed to a record (not JSON, not an object, no id).
    #[error("{file} line {line} is malformed: {detail}")]
    MalformedLine {
        /// The output file.
        file: &'static str,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// An output is a symlink, a directory, a FIFO or a device.
    #[error("{file} is not a regular file (symlinks, FIFOs and devices are refused)")]
    NotARegularFile {
        /// The output file.
        file: &'static str,
    },
    /// Two record ids of one batch map to the same files directory.
    #[error(
        "record ids {first:?} and {second:?} both map to the files directory `{dir}`; ids of one batch must differ after the mapping"
    )]
    DirNameCollision {
        /// First id.
        first: String,
        /// Second id.
        second: String,
        /// The shared directory name.
        dir: String,
    },
    /// The same record id appears twice in one batch.
    #[error("record id {0:?} appears twice in the batch")]
    DuplicateRecord(String),
    /// A record's file is larger than [`BatchLimits::max_file_bytes`](crate::contract::BatchLimits::max_file_bytes).
    #[error("file `{name}` of record {record:?} is {size} bytes, over the limit of {limit} bytes")]
    InputFileTooLarge {
        /// The record.
        record: String,
        /// The file name.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A record's file appears twice.
    #[error("record {record:?} lists the file `{name}` twice")]
    DuplicateFile {
        /// The record.
        record: String,
        /// The file name.
        name: String,
    },
    /// A batch with more records than [`BatchLimits::max_records`](crate::contract::BatchLimits::max_records).
    #[error("a batch holds at most {limit} records, got {count}")]
    TooManyRecords {
        /// Records given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A record's metadata is not a JSON object.
    #[error("metadata of record {record:?} must be a JSON object")]
    MetadataNotObject {
        /// The record.
        record: String,
    },
    /// Reading or writing the batch directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was attempted (`reading`, `copying`).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl ContractError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ContractError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Input errors are Invalid; I/O errors are Unavailable; a hook's broken output
    /// is Invalid (the hook, not the engine, is at fault).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContractError::Io { .. } => ErrorKind::Unavailable,
            _ => ErrorKind::Invalid,
        }
    }

    /// Only I/O errors may go away on a retry.
    pub fn retry_class(&self) -> RetryClass {
        match self {
            ContractError::Io { .. } => RetryClass::Transient,
            _ => RetryClass::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_keep_server_detail_out() {
        let invalid = Error::invalid("hooks[0].name", "not a valid name");
        assert_eq!(invalid.public_message(), invalid.to_string());
        let internal = Error::internal("relation \"osa.hooks\" does not exist");
        assert!(!internal.public_message().contains("osa.hooks"));
        let unavailable = Error::Unavailable {
            what: "database",
            detail: "connection to 10.0.0.7:5432 refused".into(),
            source: None,
        };
        assert!(!unavailable.public_message().contains("10.0.0.7"));
        assert!(unavailable.public_message().contains("unavailable"));
    }

    #[test]
    fn kinds_and_retry_classes() {
        assert_eq!(Error::not_found("hook", "x").kind(), ErrorKind::NotFound);
        assert_eq!(
            Error::conflict("hook", "x", "changed").kind(),
            ErrorKind::Conflict
        );
        let unavailable = Error::Unavailable {
            what: "database",
            detail: "connection refused".into(),
            source: None,
        };
        assert_eq!(unavailable.retry_class(), RetryClass::Transient);
        assert!(unavailable.is_transient());
        assert_eq!(
            Error::invalid("title", "blank").retry_class(),
            RetryClass::Permanent
        );
        assert_eq!(
            Error::not_found("hook", "abc").to_string(),
            "hook `abc` not found"
        );
    }

    #[test]
    fn refused_callers_have_the_published_codes() {
        let reason = || "r".to_string();
        let cases = [
            (
                Error::MissingCredentials { reason: reason() },
                "missing_token",
            ),
            (Error::TokenExpired { reason: reason() }, "token_expired"),
            (Error::Unauthenticated { reason: reason() }, "invalid_token"),
            (Error::Forbidden { reason: reason() }, "access_denied"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
            assert!(error.to_string().ends_with(": r"), "{error}");
        }
        // Their kinds stay what they were.
        assert_eq!(
            Error::TokenExpired { reason: reason() }.kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            Error::MissingCredentials { reason: reason() }.kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(Error::not_found("hook", "x").code(), "not_found");
        assert_eq!(Error::invalid("title", "blank").code(), "invalid");
    }
}
