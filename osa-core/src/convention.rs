//! Conventions: a kind of record, its metadata schema, file rules, hooks and docs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::id::{ConventionSlug, HookName, SchemaId};

/// A registered convention. Deploys upsert it by slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Convention {
    /// Derived from the title ([`ConventionSlug::from_title`]).
    pub slug: ConventionSlug,
    /// Human title.
    pub title: String,
    /// Non-blank description.
    pub description: String,
    /// The metadata schema records of this convention follow.
    pub schema: SchemaSpec,
    /// Rules for the files of a record.
    pub file_requirements: FileRequirements,
    /// Hooks run on each record, in this order.
    pub hooks: Vec<HookName>,
    /// Documentation (passed the docs gate).
    pub docs: ConventionDocs,
    /// The ingester, stored as deployed (OSA does not run ingesters yet).
    pub ingester: Option<crate::ingester::IngesterDeploy>,
    /// First deploy.
    pub created_at: DateTime<Utc>,
    /// Latest deploy.
    pub updated_at: DateTime<Utc>,
}

/// Read access to registered conventions (deploys write them through
/// [`crate::deploy::DeploymentLog::apply_deploy`]).
#[async_trait::async_trait]
pub trait ConventionStore: Send + Sync {
    /// One convention by slug.
    async fn get_convention(&self, slug: &ConventionSlug) -> crate::Result<Option<Convention>>;

    /// Every convention, newest first.
    async fn list_conventions(&self) -> crate::Result<Vec<Convention>>;
}

/// A metadata schema: id, semver version and field definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    /// `__schema_id__` of the SDK's schema class.
    pub id: SchemaId,
    /// Semantic version (`MAJOR.MINOR.PATCH[-pre][+build]`).
    #[serde(deserialize_with = "deserialize_semver")]
    #[schemars(regex(pattern = r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"))]
    pub version: String,
    /// Metadata fields.
    #[serde(default)]
    pub fields: Vec<FieldDefinition>,
}

fn deserialize_semver<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if is_semver(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "schema version {v:?} is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)"
        )))
    }
}

/// `MAJOR.MINOR.PATCH[-pre][+build]` with numeric cores without leading zeros.
pub fn is_semver(v: &str) -> bool {
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let ident_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
        && pre.is_none_or(ident_ok)
        && build.is_none_or(ident_ok)
}

/// The type of a metadata field, as the published SDK emits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FieldType {
    /// Free text.
    Text,
    /// A number (integer-only through constraints).
    Number,
    /// A boolean.
    Boolean,
    /// A date or date-time.
    Date,
    /// An ontology term.
    Term,
    /// A URL.
    Url,
}

/// One field of a metadata schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDefinition {
    /// Field name.
    pub name: String,
    /// Field type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether records must carry it.
    pub required: bool,
    /// Always `exactly_one` in the published SDK.
    #[serde(default = "exactly_one")]
    pub cardinality: String,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Example values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<String>>,
    /// Type-specific constraints. An open object: the SDK copies arbitrary
    /// `json_schema_extra` keys (such as `unit`) into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<serde_json::Map<String, serde_json::Value>>,
}

fn exactly_one() -> String {
    "exactly_one".into()
}

/// Rules for the files attached to a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRequirements {
    /// Accepted extensions (`.cif`).
    pub accepted_types: Vec<String>,
    /// Minimum number of files.
    #[serde(default)]
    pub min_count: u32,
    /// Maximum number of files.
    pub max_count: u32,
    /// Maximum size of one file, in bytes.
    pub max_file_size: u64,
}

/// A worked example of how to use a convention's features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Example {
    /// A question a user might ask.
    pub question: String,
    /// A query answering it.
    pub query: String,
    /// How to read the answer.
    pub interpretation: String,
}

/// A convention's documentation, checked by [`ConventionDocs::gate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConventionDocs {
    /// What the convention is for (non-blank).
    pub purpose: String,
    /// Questions the convention answers.
    #[serde(default)]
    pub example_questions: Vec<String>,
    /// Worked examples (at least one).
    #[serde(default)]
    pub examples: Vec<Example>,
    /// When not to use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_not_to_use: Option<String>,
    /// Related conventions or links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub see_also: Option<Vec<String>>,
}

/// The minimum number of distinct questions across `example_questions` and examples.
pub const MIN_TRIGGER_QUESTIONS: usize = 3;

/// One shortcoming found by the docs gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocsGap(pub String);

impl ConventionDocs {
    /// Every gap in these docs; empty when the gate passes.
    ///
    /// Rules: non-blank `purpose`; at least one example, each with non-blank question,
    /// query and interpretation; no blank entry in `example_questions`; at least
    /// [`MIN_TRIGGER_QUESTIONS`] distinct questions across `example_questions` and the
    /// examples.
    pub fn gaps(&self) -> Vec<DocsGap> {
        let mut gaps = Vec::new();
        if self.purpose.trim().is_empty() {
            gaps.push(DocsGap("purpose (must be non-empty)".into()));
        }
        if self.examples.is_empty() {
            gaps.push(DocsGap("examples (need ≥ 1 Example, got 0)".into()));
        }
        for (i, e) in self.examples.iter().enumerate() {
            for (name, value) in [
                ("question", &e.question),
                ("query", &e.query),
                ("interpretation", &e.interpretation),
            ] {
                if value.trim().is_empty() {
                    gaps.push(DocsGap(format!("examples[{i}].{name} (must be non-empty)")));
                }
            }
        }
        for (i, q) in self.example_questions.iter().enumerate() {
            if q.trim().is_empty() {
                gaps.push(DocsGap(format!(
                    "example_questions[{i}] (must be non-empty)"
                )));
            }
        }
        let distinct: BTreeSet<&str> = self
            .example_questions
            .iter()
            .map(String::as_str)
            .chain(self.examples.iter().map(|e| e.question.as_str()))
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .collect();
        if distinct.len() < MIN_TRIGGER_QUESTIONS {
            gaps.push(DocsGap(format!(
                "trigger questions (need ≥ {MIN_TRIGGER_QUESTIONS} distinct across example_questions + worked examples, got {})",
                distinct.len()
            )));
        }
        gaps
    }

    /// Passes when there are no gaps; otherwise an Invalid error on `docs` listing
    /// every gap.
    pub fn gate(&self, title: &str) -> crate::Result<()> {
        let gaps = self.gaps();
        if gaps.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = gaps.iter().map(|g| format!("    - {}", g.0)).collect();
        Err(crate::Error::invalid(
            "docs",
            format!(
                "convention \"{title}\" is missing required documentation:\n{}",
                lines.join("\n")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(q: &str) -> Example {
        Example {
            question: q.into(),
            query: "select 1".into(),
            interpretation: "one".into(),
        }
    }

    fn docs() -> ConventionDocs {
        ConventionDocs {
            purpose: "Protein structures".into(),
            example_questions: vec!["Which pockets are deep?".into(), "How many chains?".into()],
            examples: vec![example("What is the best resolution?")],
            when_not_to_use: None,
            see_also: None,
        }
    }

    #[test]
    fn gate_passes_with_three_distinct_questions() {
        assert!(docs().gaps().is_empty());
        assert!(docs().gate("Protein Structures").is_ok());
    }

    #[test]
    fn gate_names_every_gap() {
        let d = ConventionDocs {
            purpose: "  ".into(),
            example_questions: vec!["same".into(), " same ".into(), "".into()],
            examples: vec![],
            when_not_to_use: None,
            see_also: None,
        };
        let err = d.gate("Cells").unwrap_err().to_string();
        assert!(
            err.contains("convention \"Cells\" is missing required documentation"),
            "{err}"
        );
        assert!(err.contains("purpose (must be non-empty)"), "{err}");
        assert!(err.contains("examples (need ≥ 1 Example, got 0)"), "{err}");
        assert!(
            err.contains("example_questions[2] (must be non-empty)"),
            "{err}"
        );
        assert!(err.contains("got 1)"), "{err}");
    }

    #[test]
    fn questions_count_across_both_lists() {
        let mut d = docs();
        d.example_questions = vec!["What is the best resolution?".into()];
        // Duplicate of the example's question: 1 distinct.
        assert_eq!(d.gaps().len(), 1);
        d.examples.push(Example {
            question: "Q2".into(),
            query: "".into(),
            interpretation: "i".into(),
        });
        let gaps = d.gaps();
        assert!(
            gaps.iter()
                .any(|g| g.0 == "examples[1].query (must be non-empty)")
        );
    }

    #[test]
    fn semver_rules() {
        for ok in [
            "1.0.0",
            "0.1.0",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in ["1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0.0", "a.b.c", ""] {
            assert!(!is_semver(bad), "{bad}");
        }
    }
}
