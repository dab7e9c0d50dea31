//! Checks a deploy payload the way the engine will, without deploying it.
//!
//! ```text
//! cargo run --example check_deploy -- examples/payloads/protein-structures.json
//! ```
//!
//! Prints the convention slug, each hook's contract and release, or the first error
//! with the path of the offending value.

use std::process::ExitCode;

use osa::deploy::{DeployConvention, parse_payload};
use osa::runtime::RuntimeConfig;

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/payloads/protein-structures.json".into());
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = parse_payload::<DeployConvention>(&bytes).and_then(|p| p.plan(Some("check_deploy")));
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let payload = &plan.payload;
    println!("convention  {} ({})", plan.slug, payload.title);
    println!(
        "schema      {}@{} with {} fields",
        payload.schema.id,
        payload.schema.version,
        payload.schema.fields.len()
    );
    println!("docs gate   passed");
    for (hook, release) in payload.hooks.iter().zip(&plan.releases) {
        let columns: Vec<String> = hook
            .feature
            .columns()
            .iter()
            .map(|c| {
                format!(
                    "{}:{}{}",
                    c.name,
                    c.json_type.as_str(),
                    if c.required { "" } else { "?" }
                )
            })
            .collect();
        let runs = match &release.runtime {
            RuntimeConfig::Oci { .. } => release.runtime.pinned_image().unwrap_or_default(),
            RuntimeConfig::Process { command, .. } => command.join(" "),
            _ => release.runtime.type_name().to_string(),
        };
        let limits = release.runtime.limits();
        println!(
            "hook        {} [{:?}] ({})\n            runs {runs}\n            limits {}s, {}, {} cpu",
            hook.name,
            hook.feature.cardinality(),
            if columns.is_empty() {
                "no columns".to_string()
            } else {
                columns.join(", ")
            },
            limits.timeout_seconds,
            limits.memory,
            limits.cpu,
        );
    }
    let digest = osa::id::Digest::of_bytes(&payload.canonical_bytes());
    println!("payload     {digest}");
    ExitCode::SUCCESS
}
