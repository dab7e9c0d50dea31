//! OSA in five steps on the embedded default: a SQLite file, blobs in a local
//! directory, hooks run as local processes. Nothing to install but `python3`.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It deploys a convention with two stdlib-only Python hooks
//! (`examples/quickstart/hooks/`), validates the 50 sample records of
//! `examples/quickstart/records.jsonl`, and prints the progress of each step, the
//! verdicts, some feature rows and the full provenance of one row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use osa::feature_store::FeatureQuery;
use osa::id::{Digest, FileName, HookName, RecordId};
use osa::local::LocalArchive;
use osa::runtime::RuntimeConfig;
use osa::validation::{
    FileSource, InputFile, InputRecord, RunEventKind, SubmitValidation, ValidationService, Verdict,
};
use osa::{FeatureStore, HookRegistry};
use serde_json::{Value, json};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart");

fn hook(dir: &Path, name: &str, cardinality: &str, columns: Value) -> osa::Result<Value> {
    let script = dir.join("hooks").join(format!("{name}.py"));
    let code = std::fs::read(&script)
        .map_err(|e| osa::Error::invalid("hook", format!("{}: {e}", script.display())))?;
    Ok(json!({
        "name": name,
        "feature": {"kind": "table", "cardinality": cardinality, "columns": columns},
        "config": {},
        "limits": {"timeout_seconds": 60, "memory": "256m", "cpu": "0.5"},
        "release": {
            "command": ["python3", script],
            "digest": Digest::of_bytes(&code),
            "source_ref": "examples/quickstart"
        }
    }))
}

fn short(id: impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

#[tokio::main]
async fn main() -> osa::Result<()> {
    let dir = PathBuf::from(DIR);
    let temp = tempfile::Builder::new()
        .prefix("osa-quickstart-")
        .tempdir()
        .map_err(|e| osa::Error::internal(e.to_string()))?;
    let root = temp.path();
    println!("OSA quickstart: embedded engine (SQLite + local blobs + process runner)");
    println!("archive in {}\n", root.display());

    let archive = LocalArchive::open(root).await?;
    let (engine, storage) = (archive.engine(), archive.storage());

    // 1. Deploy a convention with two hooks.
    let payload = json!({
        "title": "Protein Structures",
        "description": "Macromolecular structures with per-chain measurements",
        "schema": {"id": "pdb-structure", "version": "1.0.0", "fields": [
            {"name": "pdb_id", "type": "text", "required": true},
            {"name": "resolution", "type": "number", "required": true, "constraints": {"type": "number", "unit": "Å"}}
        ]},
        "file_requirements": {"accepted_types": [".cif"], "max_count": 1, "max_file_size": 10485760},
        "hooks": [
            hook(&dir, "check_resolution", "one", json!([]))?,
            hook(&dir, "measure_chains", "many", json!([
                {"name": "chain", "json_type": "string", "required": true},
                {"name": "residues", "json_type": "integer", "required": true},
                {"name": "mean_b", "json_type": "number", "required": true, "unit": "Å²"}
            ]))?
        ],
        "docs": {
            "purpose": "Compare chains of experimentally determined structures",
            "example_questions": ["Which chains are longest?", "Which structures are most ordered?"],
            "examples": [{"question": "Which chains have a mean B-factor under 30?",
                          "query": "mean_b < 30", "interpretation": "well-ordered chains"}]
        }
    });
    let body = serde_json::to_vec(&payload).map_err(|e| osa::Error::internal(e.to_string()))?;
    let deployed = archive.deployer().deploy(&body, "quickstart").await?;
    let convention = &deployed.applied.convention;
    println!(
        "1. deploy \"{}\" -> convention `{}`",
        convention.title, convention.slug
    );
    for outcome in &deployed.applied.releases {
        let release = &outcome.release;
        let runs = match &release.runtime {
            RuntimeConfig::Process { command, .. } => command.join(" "),
            other => other.type_name().to_string(),
        };
        println!(
            "   hook {:<17} v{}  {}",
            release.hook,
            release.version,
            runs.replace(DIR, "examples/quickstart")
        );
    }
    let d = &deployed.deployment;
    println!(
        "   audit: deployment {} {} by {} (payload {}…, {} bytes)\n",
        short(d.id),
        format!("{:?}", d.status).to_lowercase(),
        d.principal,
        &d.payload_sha256.as_str()[..15],
        d.payload_size
    );

    // 2. Validate the sample records; their structures become record files.
    let files = root.join("incoming");
    let mut records = Vec::new();
    for line in std::fs::read_to_string(dir.join("records.jsonl"))
        .map_err(|e| osa::Error::internal(e.to_string()))?
        .lines()
    {
        let sample: Value =
            serde_json::from_str(line).map_err(|e| osa::Error::internal(e.to_string()))?;
        let id = RecordId::new(sample["id"].as_str().unwrap_or_default())?;
        let path = files
            .join(osa::contract::record_dir_name(id.as_str()))
            .join("structure.cif");
        std::fs::create_dir_all(path.parent().expect("a parent"))
            .map_err(|e| osa::Error::internal(e.to_string()))?;
        std::fs::write(&path, sample["structure"].as_str().unwrap_or_default())
            .map_err(|e| osa::Error::internal(e.to_string()))?;
        records.push(InputRecord {
            id,
            metadata: sample["metadata"].clone(),
            files: vec![InputFile {
                name: FileName::new("structure.cif")?,
                source: FileSource::Local { path },
            }],
        });
    }
    let count = records.len();
    let run = engine
        .submit(SubmitValidation {
            convention: convention.slug.clone(),
            records,
        })
        .await?;
    println!("2. validate {count} records -> run {}", short(run));
    let view = archive
        .wait(
            run,
            |event| {
                match &event.kind {
                    RunEventKind::StepFinished {
                        step,
                        hook,
                        status,
                        counts,
                    } => println!(
                        "   step {step} {hook:<17} {:<7} {} passed, {} rejected, {} errored",
                        format!("{status:?}").to_lowercase(),
                        counts.passed,
                        counts.rejected,
                        counts.errored
                    ),
                    RunEventKind::Finished {
                        status, accepted, ..
                    } => println!(
                        "   run {}: {accepted} of {count} records accepted\n",
                        format!("{status:?}").to_lowercase()
                    ),
                    _ => {}
                }
                Ok(())
            },
            std::future::pending(),
        )
        .await?;

    // 3. Verdicts.
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    println!("3. verdicts");
    for verdict in &view.verdicts {
        match &verdict.verdict {
            Verdict::Rejected { hook, reason, .. }
                if tally.get("rejected").copied().unwrap_or(0) < 4 =>
            {
                println!("   {:<10} rejected by {hook}: {reason}", verdict.record_id);
            }
            Verdict::Errored { hook, error, .. } => {
                println!("   {:<10} errored in {hook}: {error}", verdict.record_id);
            }
            _ => {}
        }
        let label = verdict.verdict.name();
        *tally.entry(label).or_default() += 1;
    }
    println!("   totals: {tally:?}\n");

    // 4. Feature rows.
    let measure = HookName::new("measure_chains")?;
    let page = storage
        .rows(
            &measure,
            &FeatureQuery {
                limit: 5,
                ..FeatureQuery::default()
            },
        )
        .await?;
    println!(
        "4. features of `measure_chains` (first {} rows)",
        page.rows.len()
    );
    println!(
        "   {:>4}  {:<10} {:<6} {:>8} {:>7}",
        "row", "record", "chain", "residues", "mean_b"
    );
    for row in &page.rows {
        let values: Vec<String> = row.values.iter().map(|v| v.to_string()).collect();
        println!(
            "   {:>4}  {:<10} {:<6} {:>8} {:>7}",
            row.id, row.record_id, values[0], values[1], values[2]
        );
    }

    // 5. Provenance of one row.
    let row = page
        .rows
        .first()
        .ok_or_else(|| osa::Error::internal("no feature rows"))?;
    let provenance = engine.provenance(&measure, row.id).await?;
    let (hook_run, release) = (&provenance.run, &provenance.release);
    println!("\n5. provenance of row {} of `measure_chains`", row.id);
    println!("   record       {}", provenance.row.record_id);
    println!(
        "   validation   run {}",
        provenance
            .row
            .validation_run_id
            .map(short)
            .unwrap_or_default()
    );
    println!(
        "   hook run     {} {}, {:.2} s, oom_retries {}, log {}",
        short(hook_run.id),
        hook_run.status.as_str(),
        hook_run.duration_s,
        hook_run.oom_retries,
        hook_run.log_ref.as_deref().unwrap_or("none (passed)")
    );
    println!(
        "   input        {}",
        hook_run
            .input_sha256
            .as_ref()
            .map(|d| d.as_str())
            .unwrap_or("-")
    );
    println!(
        "   release      {} v{} ({})",
        release.hook,
        release.version,
        short(release.id)
    );
    println!("   digest       {}", release.digest());
    if let RuntimeConfig::Process {
        command,
        config,
        limits,
        ..
    } = &release.runtime
    {
        println!(
            "   command      {}",
            command.join(" ").replace(DIR, "examples/quickstart")
        );
        println!("   config       {}", Value::Object(config.clone()));
        println!(
            "   limits       {} s, {}, {} cpu",
            limits.timeout_seconds, limits.memory, limits.cpu
        );
    }
    println!("   source_ref   {}", release.source_ref);
    println!(
        "   built        by {} at {}",
        release.built_by.as_deref().unwrap_or("-"),
        release.built_at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let live = storage
        .get_hook(&measure)
        .await?
        .and_then(|h| h.live)
        .map(|r| r.version);
    println!("   live now     v{}", live.unwrap_or_default());
    Ok(())
}
