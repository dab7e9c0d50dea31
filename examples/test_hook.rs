//! Test hook for OSA runners: implements the hook contract with scripted behaviour.
//!
//! The Rust twin of `tests/hooks/test_hook.py` (same config keys, same actions, same
//! output); the runner conformance suite (`osa_core::testing::runner`) drives either.
//! Only std and serde_json, so it starts fast and has a tiny baseline memory footprint.
//!
//! ```text
//! cargo build --example test_hook
//! ```
//!
//! Config keys (`$OSA_IN/config.json`, all optional): `mode` (default action per
//! record, or the batch modes `reject_batch` and `big_output`), `sleep_seconds`,
//! `alloc_mb`, `exit_code`, `port`, `spawn_child` (a marker for a background child
//! that sleeps with the marker in its argv), `log_kb`, `big_output_mb`. A record's
//! metadata may override the action (`{"action": "reject"}`) and the parameters.
//!
//! An allocation failure in "alloc" aborts the process the way every Rust program does
//! ("memory allocation of N bytes failed", SIGABRT), which is what the process runner's
//! OOM classification has to recognise.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The files directory of a record, as `osa_core::contract::record_dir_name` maps it.
fn record_dir_name(id: &str) -> String {
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

/// Tries to create `path`; removes it again when that worked.
fn probe_write(path: &Path) -> String {
    match fs::write(path, b"probe\n") {
        Ok(()) => {
            let _ = fs::remove_file(path);
            "written".into()
        }
        Err(e) => format!("denied: {e}"),
    }
}

/// Appends JSON lines to the output files, flushing each line so outcomes written
/// before a crash survive.
struct Outputs {
    dir: PathBuf,
    files: BTreeMap<&'static str, File>,
}

impl Outputs {
    fn write(&mut self, name: &'static str, line: &Value) -> io::Result<()> {
        if !self.files.contains_key(name) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            self.files.insert(name, file);
        }
        let file = self.files.get_mut(name).expect("inserted above");
        file.write_all(format!("{line}\n").as_bytes())?;
        file.flush()
    }

    fn passed(&mut self, id: &str, label: &str, detail: Value) -> io::Result<()> {
        self.write(
            "features.jsonl",
            &json!({"id": id, "features": [{"label": label, "detail": detail}]}),
        )
    }
}

struct Hook {
    config: Map<String, Value>,
    env: BTreeMap<String, String>,
    out: Outputs,
}

impl Hook {
    fn env(&self, key: &str) -> PathBuf {
        PathBuf::from(self.env.get(key).cloned().unwrap_or_default())
    }

    /// A parameter from the record's metadata, else the config.
    fn param<'a>(&'a self, metadata: &'a Value, key: &str) -> Option<&'a Value> {
        metadata.get(key).or_else(|| self.config.get(key))
    }

    fn run_action(&mut self, action: &str, id: &str, metadata: &Value) -> io::Result<()> {
        match action {
            "pass" => self.out.passed(id, "pass", json!({"record": id})),
            "reject" => {
                let reason = metadata
                    .get("reason")
                    .cloned()
                    .unwrap_or_else(|| json!("rejected by the test hook"));
                self.out
                    .write("rejections.jsonl", &json!({"id": id, "reason": reason}))
            }
            "error" => {
                let error = metadata
                    .get("error")
                    .cloned()
                    .unwrap_or_else(|| json!("test hook error"));
                let retryable = metadata.get("retryable") == Some(&Value::Bool(true));
                self.out.write(
                    "errors.jsonl",
                    &json!({"id": id, "error": error, "retryable": retryable}),
                )
            }
            "alloc" => {
                let mb = self
                    .param(metadata, "alloc_mb")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                // Non-zero bytes: every page is written, so the memory is really used.
                let data = std::hint::black_box(vec![1u8; (mb as usize) << 20]);
                let last = data.last().copied().unwrap_or(0);
                drop(data);
                self.out
                    .passed(id, "alloc", json!({"alloc_mb": mb, "last": last}))
            }
            "exit" => {
                let code = self
                    .param(metadata, "exit_code")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                let _ = io::stdout().flush();
                std::process::exit(code as i32)
            }
            "sleep" => {
                let seconds = self
                    .param(metadata, "sleep_seconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(60.0);
                std::thread::sleep(Duration::from_secs_f64(seconds));
                self.out.passed(id, "sleep", json!({"record": id}))
            }
            "net" => {
                let port = self
                    .config
                    .get("port")
                    .and_then(Value::as_u64)
                    .unwrap_or(5432) as u16;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                let (result, error) = match TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                {
                    Ok(_) => ("connected", Value::Null),
                    Err(e) => ("blocked", json!(e.to_string())),
                };
                self.out.passed(
                    id,
                    "net",
                    json!({"net": result, "error": error, "port": port}),
                )
            }
            "write_outside" => {
                let tag = format!(".osa-write-probe-{}", std::process::id());
                let home = self.env("HOME");
                let detail = json!({
                    "in": probe_write(&self.env("OSA_IN").join(&tag)),
                    "files": probe_write(&self.env("OSA_FILES").join(&tag)),
                    "usr": probe_write(&Path::new("/usr").join(&tag)),
                    "home_parent": probe_write(&home.join("..").join(&tag)),
                    "out": probe_write(&self.env("OSA_OUT").join(&tag)),
                });
                self.out.passed(id, "write_outside", detail)
            }
            "files" => {
                let name = record_dir_name(id);
                let dir = self.env("OSA_FILES").join(&name);
                let mut listing = Map::new();
                match fs::read_dir(&dir) {
                    Ok(entries) => {
                        for entry in entries.flatten() {
                            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                            listing.insert(entry.file_name().to_string_lossy().into(), json!(size));
                        }
                    }
                    Err(e) => {
                        listing.insert("<error>".into(), json!(e.to_string()));
                    }
                }
                let write = probe_write(&dir.join(".osa-write-probe"));
                self.out.passed(
                    id,
                    "files",
                    json!({"dir": name, "files": listing, "write": write}),
                )
            }
            "env" => {
                let env = json!(self.env);
                self.out.passed(id, "env", json!({"env": env}))
            }
            other => self.out.write(
                "errors.jsonl",
                &json!({"id": id, "error": format!("unknown test action {other:?}"), "retryable": false}),
            ),
        }
    }
}

fn run() -> io::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let in_dir = PathBuf::from(env.get("OSA_IN").cloned().unwrap_or_default());
    let out_dir = PathBuf::from(env.get("OSA_OUT").cloned().unwrap_or_default());
    let config: Map<String, Value> = match fs::read(in_dir.join("config.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e),
    };
    let mode = config
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("pass")
        .to_string();

    let log_kb = config.get("log_kb").and_then(Value::as_u64).unwrap_or(0);
    if log_kb > 0 {
        let line = format!("{}\n", "x".repeat(1023));
        let block = line.repeat(log_kb as usize);
        io::stdout().write_all(format!("stdout-start\n{block}").as_bytes())?;
        io::stderr().write_all(format!("stderr-start\n{block}").as_bytes())?;
        io::stdout().flush()?;
    }

    if let Some(marker) = config.get("spawn_child").and_then(Value::as_str) {
        // Inherits stdout/stderr on purpose: the runner must not wait for it to close them.
        Command::new(std::env::current_exe()?)
            .args(["--sleeper", marker, "300"])
            .spawn()?;
    }

    let records: Vec<Value> = fs::read_to_string(in_dir.join("records.jsonl"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(io::Error::other))
        .collect::<io::Result<_>>()?;
    let mut hook = Hook {
        config,
        env,
        out: Outputs {
            dir: out_dir.clone(),
            files: BTreeMap::new(),
        },
    };

    match mode.as_str() {
        "reject_batch" => {
            let reason = hook
                .config
                .get("reason")
                .cloned()
                .unwrap_or_else(|| json!("batch rejected by the test hook"));
            return hook.out.write(
                "progress.jsonl",
                &json!({"step": "check", "status": "rejected", "message": reason}),
            );
        }
        "big_output" => {
            let size = hook
                .config
                .get("big_output_mb")
                .and_then(Value::as_u64)
                .unwrap_or(2)
                << 20;
            let id = records
                .first()
                .and_then(|r| r.get("id"))
                .cloned()
                .unwrap_or_else(|| json!("x"));
            let line = format!(
                "{}\n",
                json!({"id": id, "features": [{"label": "big", "detail": {"pad": "y".repeat(1 << 16)}}]})
            );
            let mut file = File::create(out_dir.join("features.jsonl"))?;
            let mut written = 0u64;
            while written < size {
                file.write_all(line.as_bytes())?;
                written += line.len() as u64;
            }
            return Ok(());
        }
        _ => {}
    }

    for record in &records {
        let id = record.get("id").and_then(Value::as_str).unwrap_or_default();
        let metadata = record.get("metadata").cloned().unwrap_or(Value::Null);
        let action = metadata
            .get("action")
            .and_then(Value::as_str)
            .unwrap_or(&mode)
            .to_string();
        hook.run_action(&action, id, &metadata)?;
    }
    hook.out.write(
        "progress.jsonl",
        &json!({"step": "done", "status": "completed"}),
    )
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--sleeper" {
        let seconds: f64 = args[3].parse().unwrap_or(300.0);
        std::thread::sleep(Duration::from_secs_f64(seconds));
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test_hook: {e}");
            ExitCode::from(2)
        }
    }
}
