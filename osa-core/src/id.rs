//! Validated identifiers.
//!
//! Every identifier that can reach SQL, a path or a URL is a newtype that validates on
//! construction (also when deserialised), so an invalid value cannot exist past the
//! boundary where it entered.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Names that may never be used for hooks or features: they would shadow routes
/// (`/features/runs`) or tables of the archive.
pub const RESERVED_NAMES: [&str; 3] = ["records", "datasets", "runs"];

/// System columns of every feature table. They start with an underscore, which no
/// [`ColumnName`] can, so every data column name (`id`, `record_id`, `run_id`,
/// `created_at` included) is free for hooks.
pub const SYSTEM_COLUMNS: [&str; 6] = [
    "_id",
    "_record_id",
    "_validation_run_id",
    "_run_id",
    "_row_index",
    "_created_at",
];

pub use crate::error::IdentifierError;

/// The directory name of a record's files: the id with every character outside
/// `[A-Za-z0-9._-]` replaced by `_`. The SDK applies the same mapping.
pub fn record_dir_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks `^[a-z][a-z0-9<extra>]{0,max-1}$` without a regex engine.
fn check_lower_ident(
    what: &'static str,
    value: &str,
    min: usize,
    max: usize,
    extra: char,
) -> Result<(), IdentifierError> {
    let rule =
        || format!("{min}–{max} characters of [a-z0-9{extra}], starting with a letter (a-z)");
    let len = value.len();
    let mut chars = value.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra);
    if !(min..=max).contains(&len) || !starts_with_letter || !rest_ok {
        return Err(IdentifierError::new(what, value, rule()));
    }
    Ok(())
}

macro_rules! string_identifier {
    ($(#[$meta:meta])* $name:ident, $what:literal, $pattern:literal, $validate:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What this identifier is called in error messages.
            pub const WHAT: &'static str = $what;
            /// The pattern a valid value matches (also published in JSON Schemas).
            pub const PATTERN: &'static str = $pattern;

            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, IdentifierError> {
                let value = value.into();
                let validate: fn(&str) -> Result<(), IdentifierError> = $validate;
                validate(&value)?;
                Ok($name(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The inner string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdentifierError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdentifierError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                $name::new(value)
            }
        }

        impl FromStr for $name {
            type Err = IdentifierError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                $name::new(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad` so that width and alignment flags work in tables.
                f.pad(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": concat!("A ", $what, ".")
                })
            }
        }
    };
}

fn validate_hook_like(what: &'static str, value: &str) -> Result<(), IdentifierError> {
    check_lower_ident(what, value, 1, 40, '_')?;
    if RESERVED_NAMES.contains(&value) {
        return Err(IdentifierError::new(
            what,
            value,
            format!("`{value}` is reserved (reserved: records, datasets, runs)"),
        ));
    }
    Ok(())
}

string_identifier!(
    /// A hook's name: `^[a-z][a-z0-9_]{0,39}$`, not one of [`RESERVED_NAMES`].
    ///
    /// It names the hook's feature table, so it stays short enough for derived SQL
    /// identifiers to fit in 63 bytes.
    HookName,
    "hook name",
    "^[a-z][a-z0-9_]{0,39}$",
    |v| validate_hook_like(HookName::WHAT, v)
);

string_identifier!(
    /// A feature's name (today always its hook's name); same rule as [`HookName`].
    FeatureName,
    "feature name",
    "^[a-z][a-z0-9_]{0,39}$",
    |v| validate_hook_like(FeatureName::WHAT, v)
);

string_identifier!(
    /// A feature column: `^[a-z][a-z0-9_]{0,62}$`. The leading letter keeps it out of
    /// the [`SYSTEM_COLUMNS`]' namespace.
    ColumnName,
    "column name",
    "^[a-z][a-z0-9_]{0,62}$",
    |v| check_lower_ident(ColumnName::WHAT, v, 1, 63, '_')
);

string_identifier!(
    /// A convention's slug: `^[a-z][a-z0-9-]{2,63}$`. See [`ConventionSlug::from_title`].
    ConventionSlug,
    "convention slug",
    "^[a-z][a-z0-9-]{2,63}$",
    |v| check_lower_ident(ConventionSlug::WHAT, v, 3, 64, '-')
);

string_identifier!(
    /// A metadata schema's id (`__schema_id__` in the Python SDK); same rule as a slug.
    SchemaId,
    "schema id",
    "^[a-z][a-z0-9-]{2,63}$",
    |v| check_lower_ident(SchemaId::WHAT, v, 3, 64, '-')
);

string_identifier!(
    /// A content digest: `sha256:` followed by 64 lowercase hex digits.
    Digest,
    "digest",
    "^sha256:[0-9a-f]{64}$",
    |v| {
        let ok = v
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok {
            Ok(())
        } else {
            Err(IdentifierError::new(
                Digest::WHAT,
                v,
                "expected `sha256:` followed by 64 lowercase hex digits",
            ))
        }
    }
);

string_identifier!(
    /// A record's id as the archive knows it (1–255 bytes, no control characters).
    ///
    /// Any printable id is allowed; where it becomes a directory name the contract maps
    /// it with [`record_dir_name`]. Ids whose directory name would be
    /// `.` or `..` are rejected here so that the mapping can never leave its parent.
    RecordId,
    "record id",
    "^[^\\x00-\\x1f\\x7f]{1,255}$",
    |v| {
        if v.is_empty() || v.len() > 255 {
            return Err(IdentifierError::new(RecordId::WHAT, v, "1–255 bytes"));
        }
        if v.chars().any(char::is_control) {
            return Err(IdentifierError::new(
                RecordId::WHAT,
                v,
                "control characters are not allowed",
            ));
        }
        let dir = record_dir_name(v);
        if dir == "." || dir == ".." {
            return Err(IdentifierError::new(
                RecordId::WHAT,
                v,
                "maps to the directory name `.` or `..`",
            ));
        }
        Ok(())
    }
);

string_identifier!(
    /// The name of one file of a record: 1–255 bytes, no `/`, no NUL, no control
    /// characters, not `.` or `..`. It is used as a path component as is.
    FileName,
    "file name",
    "^[^/\\x00-\\x1f\\x7f]{1,255}$",
    |v| {
        if v.is_empty() || v.len() > 255 {
            return Err(IdentifierError::new(FileName::WHAT, v, "1–255 bytes"));
        }
        if v == "." || v == ".." {
            return Err(IdentifierError::new(FileName::WHAT, v, "`.` and `..` are not file names"));
        }
        if v.contains('/') || v.chars().any(char::is_control) {
            return Err(IdentifierError::new(
                FileName::WHAT,
                v,
                "`/` and control characters are not allowed",
            ));
        }
        Ok(())
    }
);

impl ConventionSlug {
    /// Derives a slug from a convention title.
    ///
    /// Lowercase; every run of characters outside `[a-z0-9]` becomes one `-`; trim
    /// `-`; cut to 64 characters; trim `-` again; then validate. `"PDB Structures"`
    /// gives `pdb-structures`; `"3D structures"` is an error (a slug starts with a
    /// letter).
    pub fn from_title(title: &str) -> Result<Self, IdentifierError> {
        let lowered = title.to_lowercase();
        let mut slug = String::with_capacity(lowered.len());
        let mut pending_dash = false;
        for c in lowered.chars() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if pending_dash && !slug.is_empty() {
                    slug.push('-');
                }
                pending_dash = false;
                slug.push(c);
            } else {
                pending_dash = true;
            }
        }
        // Every char is ASCII here, so byte truncation is char truncation.
        slug.truncate(64);
        let trimmed = slug.trim_end_matches('-');
        ConventionSlug::new(trimmed).map_err(|e| {
            IdentifierError::new(
                "convention title",
                title,
                format!(
                    "it gives the slug {:?}, which breaks the slug rule: {}",
                    trimmed,
                    e.rule()
                ),
            )
        })
    }
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(bytes);
        Digest(format!("sha256:{}", hex::encode(hash)))
    }

    /// The digest a finished sha256 hasher holds (for data hashed as it streams).
    pub fn from_hasher(hasher: sha2::Sha256) -> Self {
        use sha2::Digest as _;
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex digits without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl HookName {
    /// The feature a hook produces has the hook's name.
    pub fn feature_name(&self) -> FeatureName {
        FeatureName(self.0.clone())
    }
}

macro_rules! uuid_identifier {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (v4) id.
            pub fn new_random() -> Self {
                $name(Uuid::new_v4())
            }

            /// The inner UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                $name(value)
            }
        }

        impl From<$name> for Uuid {
            fn from(value: $name) -> Uuid {
                value.0
            }
        }

        impl FromStr for $name {
            type Err = IdentifierError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(value)
                    .map($name)
                    .map_err(|_| IdentifierError::new(stringify!($name), value, "expected a UUID"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_identifier!(
    /// Identifies one immutable [`crate::hook::HookRelease`].
    ReleaseId
);
uuid_identifier!(
    /// Identifies one [`crate::hook::HookRun`]; deterministic, see [`HookRunId::for_step`].
    HookRunId
);
uuid_identifier!(
    /// Identifies one validation run (a saga).
    ValidationRunId
);
uuid_identifier!(
    /// Identifies one audited deployment.
    DeploymentId
);
uuid_identifier!(
    /// Identifies one job of the outbox queue.
    JobId
);

/// Namespace of the UUIDv5 hook-run ids (a fixed random UUID, never to change).
const HOOK_RUN_NAMESPACE: Uuid = Uuid::from_u128(0x6f1b_3c1e_92d4_4a57_b0c2_5d1e_8f37_a941);

impl HookRunId {
    /// The deterministic id of the hook run of step `step` (hook `hook`) in a run.
    ///
    /// Re-executing a step after a crash or a redelivery yields the same id, so the
    /// insert-once provenance row can never be duplicated.
    pub fn for_step(run: ValidationRunId, step: u32, hook: &HookName) -> Self {
        let name = format!("{}/{}/{}", run.0, step, hook.as_str());
        HookRunId(Uuid::new_v5(&HOOK_RUN_NAMESPACE, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_table() {
        let ok = [
            ("PDB Structures", "pdb-structures"),
            ("  Spaces   and   tabs  ", "spaces-and-tabs"),
            ("Punctuation! & symbols?", "punctuation-symbols"),
            ("UPPER_snake_case", "upper-snake-case"),
            ("trailing---hyphens---", "trailing-hyphens"),
            ("Mix3d 123 numbers", "mix3d-123-numbers"),
            ("Protein Structures", "protein-structures"),
            ("Zoë's café", "zo-s-caf"),
        ];
        for (title, slug) in ok {
            assert_eq!(
                ConventionSlug::from_title(title).unwrap().as_str(),
                slug,
                "{title}"
            );
        }
        assert_eq!(
            ConventionSlug::from_title(&"x".repeat(100))
                .unwrap()
                .as_str(),
            "x".repeat(64)
        );
        // Cut at 64 then trailing `-` trimmed.
        let title = format!("{} tail", "a".repeat(63));
        assert_eq!(
            ConventionSlug::from_title(&title).unwrap().as_str(),
            "a".repeat(63)
        );
        for bad in ["", "!!!", "ab", "3D structures", "42"] {
            let err = ConventionSlug::from_title(bad).unwrap_err();
            assert_eq!(err.what(), "convention title", "{bad}");
        }
    }

    #[test]
    fn reserved_names_are_refused_for_hooks_and_features() {
        for name in RESERVED_NAMES {
            let err = HookName::new(name).unwrap_err();
            assert!(err.rule().contains("reserved"), "{err}");
            assert!(FeatureName::new(name).is_err());
        }
        assert!(HookName::new("records_check").is_ok());
    }

    #[test]
    fn system_columns_cannot_be_data_columns_and_their_old_names_can() {
        for name in SYSTEM_COLUMNS {
            let err = ColumnName::new(name).unwrap_err();
            assert!(
                err.rule().contains("starting with a letter"),
                "{name}: {err}"
            );
        }
        for name in [
            "id",
            "record_id",
            "validation_run_id",
            "run_id",
            "row_index",
            "created_at",
        ] {
            assert_eq!(ColumnName::new(name).expect(name).as_str(), name);
        }
        assert!(ColumnName::new("record").is_ok());
        // SQL keywords are fine: every identifier is quoted.
        assert!(ColumnName::new("order").is_ok());
    }

    #[test]
    fn hook_name_bounds() {
        assert!(HookName::new("a").is_ok());
        assert!(HookName::new("a".repeat(40)).is_ok());
        assert!(HookName::new("a".repeat(41)).is_err());
        assert!(HookName::new("_a").is_err());
        assert!(HookName::new("A").is_err());
        assert!(HookName::new("a-b").is_err());
        assert!(ColumnName::new("a".repeat(63)).is_ok());
        assert!(ColumnName::new("a".repeat(64)).is_err());
    }

    #[test]
    fn digest_rules() {
        let hex = "ab".repeat(32);
        assert!(Digest::new(format!("sha256:{hex}")).is_ok());
        assert!(Digest::new(format!("sha256:{}", hex.to_uppercase())).is_err());
        assert!(Digest::new(format!("sha512:{hex}")).is_err());
        assert!(Digest::new(format!("sha256:{}", &hex[1..])).is_err());
        let d = Digest::of_bytes(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.hex().len(), 64);
    }

    #[test]
    fn record_ids() {
        assert!(RecordId::new("urn:osa:localhost:rec:abc@1").is_ok());
        assert!(RecordId::new("..").is_err());
        assert!(RecordId::new(".").is_err());
        // `/` maps to `_`, so this is a plain directory name.
        assert!(RecordId::new("../..").is_ok());
        assert!(RecordId::new("a\nb").is_err());
        assert!(RecordId::new("").is_err());
        assert!(RecordId::new("x".repeat(256)).is_err());
    }

    #[test]
    fn file_names() {
        assert!(FileName::new("structure.cif").is_ok());
        assert!(FileName::new(".hidden").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b", "a\nb"] {
            assert!(FileName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serde_validates() {
        let ok: HookName = serde_json::from_str("\"check_cif\"").unwrap();
        assert_eq!(ok, "check_cif");
        let err = serde_json::from_str::<HookName>("\"Bad\"").unwrap_err();
        assert!(err.to_string().contains("invalid hook name"), "{err}");
    }

    #[test]
    fn hook_run_ids_are_deterministic() {
        let run = ValidationRunId::new_random();
        let hook = HookName::new("check").unwrap();
        assert_eq!(
            HookRunId::for_step(run, 1, &hook),
            HookRunId::for_step(run, 1, &hook)
        );
        assert_ne!(
            HookRunId::for_step(run, 1, &hook),
            HookRunId::for_step(run, 2, &hook)
        );
        let other = HookName::new("check2").unwrap();
        assert_ne!(
            HookRunId::for_step(run, 1, &hook),
            HookRunId::for_step(run, 1, &other)
        );
    }
}
