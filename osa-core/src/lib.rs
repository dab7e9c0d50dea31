//! OSA core: the domain model, the hook contract, the ports, and the pure policies of
//! the OSA engine. No SQL and no Python live here; storage backends (`osa-sqlx`) and
//! runners implement the ports ([`HookRegistry`], [`FeatureStore`], [`HookRunner`],
//! [`JobQueue`], [`ValidationRunStore`], [`DeploymentLog`], [`ConventionStore`]);
//! [`Storage`] is the six storage ports on one type.
//!
//! Every identifier is a validated newtype, every payload rejects unknown keys, and
//! every hook output is validated against the hook's contract before storage sees it:
//!
//! ```
//! use osa_core::deploy::{DeployConvention, parse_payload};
//! use osa_core::id::ConventionSlug;
//!
//! let body = br#"{
//!   "title": "Protein Structures",
//!   "description": "Structures from the PDB",
//!   "schema": {"id": "pdb-structure", "version": "1.0.0", "fields": []},
//!   "file_requirements": {"accepted_types": [".cif"], "max_count": 5, "max_file_size": 1048576},
//!   "hooks": [{
//!     "name": "find_pockets",
//!     "feature": {"kind": "table", "cardinality": "many", "columns": [
//!       {"name": "score", "json_type": "number", "required": true}
//!     ]},
//!     "config": {},
//!     "limits": {"timeout_seconds": 300, "memory": "512m", "cpu": "0.5"},
//!     "release": {"image": "osa-hooks/find_pockets:latest",
//!                 "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
//!                 "source_ref": "git:abc1234"}
//!   }],
//!   "docs": {"purpose": "Find binding pockets",
//!            "example_questions": ["Which pockets are deepest?", "How many pockets per chain?"],
//!            "examples": [{"question": "Which structures have a pocket over 0.9?",
//!                          "query": "score > 0.9", "interpretation": "likely druggable"}]}
//! }"#;
//! let payload: DeployConvention = parse_payload(body)?;
//! let plan = payload.plan(Some("ci-bot"))?;
//! assert_eq!(plan.slug, ConventionSlug::new("protein-structures")?);
//! assert_eq!(plan.releases[0].runtime.limits().memory.to_string(), "512m");
//!
//! // One unknown key anywhere is refused with its path.
//! let bad = String::from_utf8_lossy(body).replace("\"required\": true", "\"required\": true, \"colour\": 1");
//! let err = parse_payload::<DeployConvention>(bad.as_bytes()).unwrap_err();
//! assert_eq!(err.field(), Some("hooks[0].feature.columns[0].colour"));
//! assert!(err.to_string().contains("unknown field `colour`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod auth;
pub mod blob;
pub mod contract;
pub mod convention;
pub mod deploy;
pub mod error;
pub mod feature;
pub mod feature_store;
pub mod hook;
pub mod id;
pub mod ingester;
pub mod jobs;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod policy;
pub mod registry;
pub mod runner;
pub mod runtime;
pub mod saga;
pub mod storage;
pub mod telemetry;
pub mod validation;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The object store crate OSA's blobs go through, re-exported so users build stores
/// (or name its types) without pinning its version themselves.
pub use object_store;

pub use convention::ConventionStore;
pub use deploy::DeploymentLog;
pub use error::{Error, ErrorKind, Result, RetryClass};
pub use feature_store::FeatureStore;
pub use jobs::JobQueue;
pub use registry::HookRegistry;
pub use runner::HookRunner;
pub use storage::Storage;
pub use validation::{ValidationRunStore, ValidationService};
