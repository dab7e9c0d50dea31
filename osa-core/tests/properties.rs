//! Property tests: identifier rules, slugs, limits and the output reader.

use std::fs;

use osa_core::contract::{
    ERRORS_FILE, FEATURES_FILE, OutputLimits, PROGRESS_FILE, REJECTIONS_FILE, RecordOutcome,
    read_outcomes,
};
use osa_core::feature::{Cardinality, FeatureSpec, JsonType};
use osa_core::id::{ColumnName, ConventionSlug, Digest, FeatureName, HookName, RecordId, SchemaId};
use osa_core::runtime::{Cpu, MemorySize};
use osa_core::testing::{column, every_type_identity};
use proptest::prelude::*;

const HOSTILE: &[&str] = &[
    "a\"; drop table x; --",
    "a'; delete from hooks; --",
    "robert'); DROP TABLE students;--",
    "a b",
    "a\0b",
    "a\nb",
    "../etc/passwd",
    "a/b",
    "Zoë",
    "名前",
    "a\u{200b}b",
    "ａｂｃ",
    "",
    "_",
    "1abc",
    "ABC",
    "a.b",
    "a$b",
    "a`b",
];

fn all_identifier_checks(s: &str) -> [bool; 5] {
    [
        HookName::new(s).is_ok(),
        FeatureName::new(s).is_ok(),
        ColumnName::new(s).is_ok(),
        ConventionSlug::new(s).is_ok(),
        SchemaId::new(s).is_ok(),
    ]
}

#[test]
fn hostile_strings_are_rejected_by_every_identifier() {
    for s in HOSTILE {
        assert_eq!(all_identifier_checks(s), [false; 5], "{s:?}");
        assert!(Digest::new(*s).is_err());
    }
    let long = "a".repeat(65);
    assert_eq!(all_identifier_checks(&long), [false; 5]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_hook_names_are_accepted(name in "[a-z][a-z0-9_]{0,39}") {
        prop_assume!(!["records", "datasets", "runs"].contains(&name.as_str()));
        prop_assert!(HookName::new(name.clone()).is_ok());
        prop_assert!(FeatureName::new(name).is_ok());
    }

    #[test]
    fn valid_column_names_are_accepted(name in "[a-z][a-z0-9_]{0,62}") {
        prop_assume!(!osa_core::id::SYSTEM_COLUMNS.contains(&name.as_str()));
        prop_assert!(ColumnName::new(name).is_ok());
    }

    #[test]
    fn valid_slugs_are_accepted(slug in "[a-z][a-z0-9-]{2,63}") {
        prop_assert!(ConventionSlug::new(slug.clone()).is_ok());
        prop_assert!(SchemaId::new(slug).is_ok());
    }

    /// A valid name with one character replaced by a forbidden one is rejected.
    #[test]
    fn one_bad_character_is_rejected(
        name in "[a-z][a-z0-9_]{2,30}",
        pos in any::<prop::sample::Index>(),
        bad in prop_oneof![
            Just('-'), Just('"'), Just(';'), Just(' '), Just('A'), Just('é'), Just('\0'), Just('/'), Just('.'),
            any::<char>().prop_filter("outside the rule", |c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        ],
    ) {
        let mut chars: Vec<char> = name.chars().collect();
        let i = pos.index(chars.len());
        chars[i] = bad;
        let s: String = chars.into_iter().collect();
        prop_assert!(HookName::new(s.clone()).is_err(), "{s:?}");
        prop_assert!(ColumnName::new(s).is_err());
    }

    #[test]
    fn overlong_names_are_rejected(name in "[a-z][a-z0-9_]{63,100}") {
        prop_assert!(HookName::new(name.clone()).is_err());
        prop_assert!(ColumnName::new(name).is_err());
    }

    #[test]
    fn identifiers_never_panic(s in any::<String>()) {
        let _ = all_identifier_checks(&s);
        let _ = Digest::new(s.clone());
        let _ = RecordId::new(s);
    }

    /// `from_title` always yields a valid slug or a clear error, and is idempotent.
    #[test]
    fn slug_from_title(title in any::<String>()) {
        match ConventionSlug::from_title(&title) {
            Ok(slug) => {
                prop_assert!(ConventionSlug::new(slug.as_str()).is_ok());
                prop_assert_eq!(ConventionSlug::from_title(slug.as_str()).unwrap(), slug);
            }
            Err(e) => {
                prop_assert_eq!(e.what(), "convention title");
                prop_assert!(e.rule().contains("slug"));
            }
        }
    }

    #[test]
    fn slug_from_wordy_title(title in "[A-Za-z][A-Za-z0-9 _!&.-]{2,120}") {
        let slug = ConventionSlug::from_title(&title);
        // A title starting with a letter and holding 3+ alphanumerics always works.
        let alnum = title.chars().filter(char::is_ascii_alphanumeric).count();
        if alnum >= 3 {
            let slug = slug.unwrap();
            prop_assert!(slug.as_str().len() <= 64);
            prop_assert!(!slug.as_str().ends_with('-'));
        }
    }

    #[test]
    fn memory_round_trips(bytes in 1u64..=(1u64 << 40)) {
        let m = MemorySize::from_bytes(bytes).unwrap();
        let text = m.to_string();
        prop_assert_eq!(text.parse::<MemorySize>().unwrap(), m);
        if let Some(d) = m.doubled() {
            prop_assert_eq!(d.bytes(), bytes * 2);
            prop_assert_eq!(d.to_string().parse::<MemorySize>().unwrap(), d);
        }
    }

    #[test]
    fn memory_strings_parse_and_canonicalise(
        int in 1u64..1000,
        frac in proptest::option::of("[0-9]{1,3}"),
        unit in prop_oneof![Just("k"), Just("m"), Just("g"), Just("K"), Just("M"), Just("G"), Just("mi"), Just("Gi")],
    ) {
        let text = match &frac { Some(f) => format!("{int}.{f}{unit}"), None => format!("{int}{unit}") };
        let m: MemorySize = text.parse().unwrap();
        let canonical = m.to_string();
        prop_assert_eq!(canonical.parse::<MemorySize>().unwrap(), m);
        prop_assert_eq!(canonical.parse::<MemorySize>().unwrap().to_string(), canonical);
    }

    #[test]
    fn memory_parse_never_panics(s in any::<String>()) {
        let _ = s.parse::<MemorySize>();
        let _ = s.parse::<Cpu>();
    }

    #[test]
    fn cpu_round_trips(millis in 1u32..=1_024_000) {
        let cpu = Cpu::from_millis(millis).unwrap();
        prop_assert_eq!(cpu.to_string().parse::<Cpu>().unwrap(), cpu);
        prop_assert_eq!(format!("{millis}m").parse::<Cpu>().unwrap(), cpu);
    }
}

fn spec() -> FeatureSpec {
    FeatureSpec::table(
        Cardinality::One,
        vec![
            column("score", JsonType::Number, None, true),
            column("seen_at", JsonType::String, Some("date-time"), false),
        ],
    )
    .unwrap()
}

fn batch() -> Vec<RecordId> {
    ["a", "b", "c"]
        .iter()
        .map(|s| RecordId::new(*s).unwrap())
        .collect()
}

/// Lines that look like outputs, mixed with junk, to reach deep into the reader.
fn line_strategy() -> impl Strategy<Value = String> {
    let id = prop_oneof![Just("a"), Just("b"), Just("c"), Just("zz")];
    let value = prop_oneof![
        Just("1".to_string()),
        Just("\"high\"".to_string()),
        Just("null".to_string()),
        Just("[1]".to_string()),
        Just("{}".to_string()),
        Just("\"2024-01-01T00:00:00Z\"".to_string()),
        "[ -~]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    prop_oneof![
        (id.clone(), value.clone(), value.clone()).prop_map(|(id, a, b)| format!(
            "{{\"id\": \"{id}\", \"features\": [{{\"score\": {a}, \"seen_at\": {b}}}]}}"
        )),
        (id.clone(), value.clone())
            .prop_map(|(id, v)| format!("{{\"id\": \"{id}\", \"reason\": {v}}}")),
        (id.clone(), value.clone()).prop_map(|(id, v)| format!(
            "{{\"id\": \"{id}\", \"error\": {v}, \"retryable\": {v}}}"
        )),
        (id, value.clone()).prop_map(|(id, v)| format!("{{\"id\": \"{id}\", \"features\": {v}}}")),
        value
            .clone()
            .prop_map(|v| format!("{{\"status\": {v}, \"message\": {v}}}")),
        "[ -~]{0,40}",
    ]
}

fn check_reader(files: [Vec<u8>; 4]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [FEATURES_FILE, REJECTIONS_FILE, ERRORS_FILE, PROGRESS_FILE]
        .iter()
        .zip(files)
    {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut limits = OutputLimits::default();
    limits.max_line_bytes = 256;
    match read_outcomes(dir.path(), &batch(), &spec(), &limits) {
        Ok(outcome) => {
            // Every record of the batch is accounted for exactly once.
            let finished = outcome.finish();
            prop_assert_eq!(finished.outcomes.len(), 3);
            for outcome in finished.outcomes.values() {
                if let RecordOutcome::Passed { rows } = outcome {
                    prop_assert!(rows.len() <= 1, "cardinality one is enforced");
                }
            }
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reader_never_panics_on_bytes(
        files in proptest::array::uniform4(proptest::collection::vec(any::<u8>(), 0..600)),
    ) {
        check_reader(files)?;
    }

    #[test]
    fn reader_never_panics_on_near_valid_lines(
        files in proptest::array::uniform4(proptest::collection::vec(line_strategy(), 0..8)),
        trailing_newline in any::<bool>(),
    ) {
        let files = files.map(|lines| {
            let mut body = lines.join("\n");
            if trailing_newline { body.push('\n'); }
            body.into_bytes()
        });
        check_reader(files)?;
    }

    #[test]
    fn coercion_never_panics(value in any::<String>()) {
        let identity = every_type_identity("probe");
        if let Ok(serde_json::Value::Object(row)) = serde_json::from_str::<serde_json::Value>(&value) {
            let _ = identity.feature.coerce_row(&row);
        }
    }
}
