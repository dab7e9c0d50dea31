//! Streaming export of a hook's feature rows over HTTP (`GET
//! /features/{hook}/export`, CSV and JSON lines) from `osa-server` on Postgres, against
//! `psql`'s `\copy (SELECT …) TO STDOUT (FORMAT csv)` of the same rows and columns.
//!
//! ```text
//! cargo build --release -p osa-server
//! cargo bench --bench feature_export --features postgres
//! cargo bench --bench feature_export --features postgres -- 100000   # one size
//! ```
//!
//! The release binary must be in the same target directory (or named by
//! `OSA_SERVER_BIN`); `psql` must be on the `PATH`. The hook's table is created by a
//! real deploy over HTTP and one real 10-record run; the rest of the rows are added
//! with `INSERT … SELECT generate_series` pointing at that hook run, up to 100,000
//! and then 1,000,000 rows. At each size the three exports alternate for `ROUNDS`
//! rounds (medians); the client reads every byte and counts the lines. Before each
//! export the server's peak resident set is reset to its current one
//! (`/proc/PID/clear_refs`) and read (`VmRSS`); after it, `VmHWM` is that export's peak.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use osa::id::Digest;
use serde_json::{Value, json};

const ROUNDS: usize = 3;
const SIZES: [i64; 2] = [100_000, 1_000_000];
const SCHEMA: &str = "bench_export";
const HOOK: &str = r#"
import json, os
out = os.environ["OSA_OUT"]
with open(os.path.join(os.environ["OSA_IN"], "records.jsonl")) as src, open(os.path.join(out, "features.jsonl"), "w") as dst:
    for i, line in enumerate(src):
        rid = json.loads(line)["id"]
        dst.write(json.dumps({"id": rid, "features": [{"n": i, "label": "label-" + rid, "score": i * 0.5, "ok": i % 2 == 0}]}) + "\n")
"#;

fn convention(script: &Path) -> Value {
    json!({
        "title": "Export Bench",
        "description": "one hook with four columns",
        "schema": {"id": "bench-schema", "version": "1.0.0"},
        "file_requirements": {"accepted_types": [], "max_count": 0, "max_file_size": 0},
        "hooks": [{
            "name": "wide",
            "feature": {"kind": "table", "cardinality": "one", "columns": [
                {"name": "n", "json_type": "integer", "required": true},
                {"name": "label", "json_type": "string", "required": true},
                {"name": "score", "json_type": "number", "required": true},
                {"name": "ok", "json_type": "boolean", "required": true}
            ]},
            "release": {"command": ["python3", script], "digest": Digest::of_bytes(b"wide"), "source_ref": "bench"}
        }],
        "docs": {"purpose": "benchmark", "example_questions": ["a?", "b?"],
                 "examples": [{"question": "c?", "query": "q", "interpretation": "i"}]}
    })
}

/// `VmHWM` or `VmRSS` of `pid`, in MiB.
fn memory(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("a memory field");
    kib / 1024.0
}

/// Resets the peak resident set of `pid` to its current one.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// Reads all of `url`: (seconds, lines, bytes).
fn fetch(agent: &ureq::Agent, url: &str) -> (f64, u64, u64) {
    let start = Instant::now();
    let mut response = agent.get(url).call().expect("the server answers");
    assert_eq!(response.status().as_u16(), 200, "{url}");
    let mut reader = response.body_mut().as_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let n = reader.read(&mut buffer).expect("read the export");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    (start.elapsed().as_secs_f64(), lines, bytes)
}

/// `psql -c "\copy (SELECT …) TO STDOUT (FORMAT csv)"` into a pipe the bench reads
/// and counts like an export: (seconds, lines, bytes).
fn psql(select: &str) -> (f64, u64, u64) {
    let start = Instant::now();
    let mut child = Command::new("psql")
        .args([
            common::database_url().as_str(),
            "-X",
            "-q",
            "-c",
            &format!("\\copy ({select}) TO STDOUT (FORMAT csv)"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run psql");
    let mut out = child.stdout.take().unwrap();
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let n = out.read(&mut buffer).expect("read psql");
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    assert!(child.wait().unwrap().success(), "psql failed");
    (start.elapsed().as_secs_f64(), lines, bytes)
}

/// One way to read the rows.
enum Export {
    /// `psql \copy … TO STDOUT (FORMAT csv)`.
    Psql,
    /// `GET` of this export URL.
    Http(String),
    /// `FeatureStore::rows` pages of 1,000 in the bench's process, as the export reads
    /// them; with `json`, each row also serialized as the JSON-lines export writes it.
    Pages { json: bool },
    /// `FeatureStore::stream_rows` in the bench's process, as the export reads the rows;
    /// with `json`, each row also serialized as the JSON-lines export writes it.
    Stream { json: bool },
}

/// Every row through `FeatureStore::stream_rows`: (seconds, rows, bytes written).
async fn streamed(backend: &osa_sqlx::PgBackend, json: bool) -> (f64, u64, u64) {
    use futures::TryStreamExt;
    use osa::feature_store::{FeatureQuery, FeatureStore};
    let hook = osa::id::HookName::new("wide").unwrap();
    let columns = osa::registry::HookRegistry::get_hook(backend, &hook)
        .await
        .unwrap()
        .unwrap()
        .identity
        .feature
        .columns()
        .to_vec();
    let start = Instant::now();
    let mut chunks = backend
        .stream_rows(&hook, &FeatureQuery::default())
        .await
        .unwrap();
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut out = Vec::new();
    while let Some(chunk) = chunks.try_next().await.unwrap() {
        rows += chunk.len() as u64;
        if json {
            out.clear();
            for row in &chunk {
                serde_json::to_writer(&mut out, &row.keyed(&columns)).unwrap();
                out.push(b'\n');
            }
            bytes += out.len() as u64;
        }
    }
    (start.elapsed().as_secs_f64(), rows, bytes)
}

/// Every row through `FeatureStore::rows` pages: (seconds, rows, bytes written).
async fn pages(backend: &osa_sqlx::PgBackend, json: bool) -> (f64, u64, u64) {
    use osa::feature_store::{FeatureQuery, FeatureStore};
    let hook = osa::id::HookName::new("wide").unwrap();
    let columns = osa::registry::HookRegistry::get_hook(backend, &hook)
        .await
        .unwrap()
        .unwrap()
        .identity
        .feature
        .columns()
        .to_vec();
    let start = Instant::now();
    let mut query = FeatureQuery {
        limit: 1000,
        ..FeatureQuery::default()
    };
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut out = Vec::new();
    loop {
        let page = backend.rows(&hook, &query).await.unwrap();
        rows += page.rows.len() as u64;
        if json {
            out.clear();
            for row in &page.rows {
                serde_json::to_writer(&mut out, &row.keyed(&columns)).unwrap();
                out.push(b'\n');
            }
            bytes += out.len() as u64;
        }
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => return (start.elapsed().as_secs_f64(), rows, bytes),
        }
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let filters: Vec<i64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("wide.py");
    std::fs::write(&script, HOOK).unwrap();

    let url = common::database_url();
    let backend = osa_sqlx::PgBackend::connect(
        osa_sqlx::PgConfig::new(&url).with_schemas(SCHEMA, format!("{SCHEMA}_features")),
    )
    .await
    .unwrap();
    backend.drop_schemas().await.unwrap();
    let env = common::postgres_env(SCHEMA);
    let (server, base) = {
        let dir = dir.path().to_path_buf();
        let env = env.clone();
        tokio::task::spawn_blocking(move || common::serve(&dir, &[], &env))
            .await
            .unwrap()
    };
    let pid = server.pid();
    let token = common::admin_token(dir.path(), &env);
    let agent = common::agent();

    // A real deploy and a real run create the table and the hook run.
    let (agent2, base2, token2) = (agent.clone(), base.clone(), token.clone());
    tokio::task::spawn_blocking(move || {
        let slug = common::deploy(&agent2, &base2, &token2, &convention(&script));
        let records: Vec<Value> = (0..10)
            .map(|i| json!({"id": format!("real-{i}"), "metadata": {}, "files": []}))
            .collect();
        let (status, reply) = common::call(
            &agent2,
            &format!("{base2}/validations"),
            &token2,
            Some(&json!({"convention": slug, "records": records})),
        );
        assert_eq!(status, 202, "{reply}");
        let id = reply["id"].as_str().unwrap().to_string();
        loop {
            let (_, view) =
                common::call(&agent2, &format!("{base2}/validations/{id}"), &token2, None);
            match view["run"]["status"].as_str() {
                Some("completed") => break,
                Some("failed" | "cancelled") => panic!("{view}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    })
    .await
    .unwrap();

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let table = format!("\"{SCHEMA}_features\".\"wide\"");
    let (run_id, validation_run_id): (uuid::Uuid, Option<uuid::Uuid>) = sqlx::query_as(&format!(
        "SELECT _run_id, _validation_run_id FROM {table} LIMIT 1"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    let select = format!(
        "SELECT _id, _record_id, _run_id, _row_index, n, label, score, ok FROM {table} ORDER BY _id"
    );

    println!(
        "server VmHWM {:.1} MiB after start-up and the real run",
        memory(pid, "VmHWM")
    );
    println!(
        "| rows | export | seconds | rows/s | ratio to psql | MiB sent | VmRSS before (MiB) | VmHWM after (MiB) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        if !filters.is_empty() && !filters.contains(&size) {
            continue;
        }
        let have: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        if have < size {
            sqlx::query(&format!(
                "INSERT INTO {table} (_record_id, _validation_run_id, _run_id, _row_index, n, label, score, ok) \
                 SELECT 'gen-' || g, $1, $2, 0, g, 'label-gen-' || g, g * 0.5, g % 2 = 0 \
                 FROM generate_series($3::bigint, $4::bigint) g"
            ))
            .bind(validation_run_id)
            .bind(run_id)
            .bind(have + 1)
            .bind(size)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(&format!("VACUUM ANALYZE {table}"))
                .execute(&pool)
                .await
                .unwrap();
        }
        let load = common::load_average();
        let exports = [
            ("psql \\copy CSV", Export::Psql),
            (
                "HTTP CSV",
                Export::Http(format!("{base}/features/wide/export?format=csv")),
            ),
            (
                "HTTP JSON lines",
                Export::Http(format!("{base}/features/wide/export?format=json")),
            ),
            (
                "keyset pages read in the bench (no HTTP)",
                Export::Pages { json: false },
            ),
            (
                "stream_rows read in the bench (no HTTP)",
                Export::Stream { json: false },
            ),
            (
                "stream_rows read and written as JSON lines (no HTTP)",
                Export::Stream { json: true },
            ),
        ];
        // Per export: times, bytes, the largest VmRSS before and VmHWM after it.
        let mut results: Vec<(Vec<f64>, u64, f64, f64)> =
            exports.iter().map(|_| (Vec::new(), 0, 0.0, 0.0)).collect();
        for _ in 0..ROUNDS {
            for (i, (label, export)) in exports.iter().enumerate() {
                // The peak from here on is this export's.
                reset_peak(pid);
                let before = memory(pid, "VmRSS");
                let (seconds, lines, bytes) = match export {
                    Export::Psql => {
                        let select = select.clone();
                        tokio::task::spawn_blocking(move || psql(&select))
                            .await
                            .unwrap()
                    }
                    Export::Http(url) => {
                        let (agent, url) = (agent.clone(), url.clone());
                        tokio::task::spawn_blocking(move || fetch(&agent, &url))
                            .await
                            .unwrap()
                    }
                    Export::Pages { json } => pages(&backend, *json).await,
                    Export::Stream { json } => streamed(&backend, *json).await,
                };
                let after = memory(pid, "VmHWM");
                let header = matches!(export, Export::Http(url) if url.ends_with("csv"));
                assert_eq!(lines, size as u64 + u64::from(header), "{label}");
                let entry = &mut results[i];
                entry.0.push(seconds);
                entry.1 = bytes;
                entry.2 = entry.2.max(before);
                entry.3 = entry.3.max(after);
            }
        }
        let baseline = size as f64 / common::median(&mut results[0].0.clone());
        for ((label, export), (mut times, bytes, before, after)) in exports.iter().zip(results) {
            let seconds = common::median(&mut times);
            let rate = size as f64 / seconds;
            let memory = if matches!(export, Export::Http(_)) {
                format!("{before:.1} | {after:.1}")
            } else {
                "– | –".into()
            };
            println!(
                "| {size} | {label} | {seconds:.2} | {rate:.0} | {:.2} | {:.1} | {memory} |",
                rate / baseline,
                bytes as f64 / (1 << 20) as f64,
            );
        }
        println!(
            "(load average {load} before this size, {} after)",
            common::load_average()
        );
    }
    drop(server);
    backend.drop_schemas().await.unwrap();
}
