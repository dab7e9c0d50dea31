//! What the benches share: the no-op hook and its three-hook convention; for those
//! that drive `osa-server`, the release binary beside the bench's own executable,
//! processes that are stopped when dropped, a blocking HTTP client, a deploy over
//! HTTP, and the Postgres URL.

#![allow(dead_code)] // Each bench uses a part.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use osa::id::Digest;
use serde_json::{Value, json};

/// A hook that gives every record one row `{"n": 1}` and exits: what the benches
/// time around.
pub const NOOP_HOOK: &str = r#"
import json, os
out = os.environ["OSA_OUT"]
with open(os.path.join(os.environ["OSA_IN"], "records.jsonl")) as src, open(os.path.join(out, "features.jsonl"), "w") as dst:
    for line in src:
        dst.write(json.dumps({"id": json.loads(line)["id"], "features": [{"n": 1}]}) + "\n")
"#;

/// A convention titled `title` of three hooks (`noop_a`, `noop_b`, `noop_c`) that run
/// `python3 script`, with these file requirements.
pub fn noop_convention(title: &str, script: &Path, file_requirements: Value) -> Value {
    noop_convention_of(
        title,
        script,
        file_requirements,
        &["noop_a", "noop_b", "noop_c"],
    )
}

/// [`noop_convention`] with the hooks named `hooks`.
pub fn noop_convention_of(
    title: &str,
    script: &Path,
    file_requirements: Value,
    hooks: &[&str],
) -> Value {
    let hooks: Vec<_> = hooks
        .iter()
        .map(|name| {
            json!({
                "name": name,
                "feature": {"kind": "table", "cardinality": "one", "columns": [
                    {"name": "n", "json_type": "integer", "required": true}
                ]},
                "release": {"command": ["python3", script], "digest": Digest::of_bytes(name.as_bytes()), "source_ref": "bench"}
            })
        })
        .collect();
    json!({
        "title": title,
        "description": "no-op hooks",
        "schema": {"id": "bench-schema", "version": "1.0.0"},
        "file_requirements": file_requirements,
        "hooks": hooks,
        "docs": {"purpose": "benchmark", "example_questions": ["a?", "b?"],
                 "examples": [{"question": "c?", "query": "q", "interpretation": "i"}]}
    })
}

/// No files.
pub fn no_files() -> Value {
    json!({"accepted_types": [], "max_count": 0, "max_file_size": 0})
}

/// The test Postgres (`DATABASE_URL`, else the local one).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The release `osa-server` of this target directory (`OSA_SERVER_BIN` wins); it
/// must have been built with `cargo build --release -p osa-server`.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OSA_SERVER_BIN") {
        return path.into();
    }
    // target/release/deps/<bench> → target/release/osa-server
    let exe = std::env::current_exe().expect("the bench's path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release")
        .join("osa-server");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p osa-server` first (with the same CARGO_TARGET_DIR)",
        binary.display()
    );
    binary
}

/// `osa-server ARGS…` in `dir` with only `env` of the `OSA_*` variables.
pub fn command(dir: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut command = Command::new(server_binary());
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("OSA_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.env("OSA_LOG__FILTER", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A running `osa-server serve` or `worker`; SIGTERMed (then killed) when dropped.
pub struct Process {
    pub child: Child,
}

impl Process {
    /// Starts `osa-server ARGS…` and waits (≤ 60 s) for a stdout line starting with
    /// `ready`; returns the process and the rest of that line.
    pub fn spawn(
        dir: &Path,
        args: &[&str],
        env: &[(String, String)],
        ready: &str,
    ) -> (Process, String) {
        let mut child = command(dir, args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn osa-server");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // Drains stdout to the end, also once nobody listens.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        let process = Process { child };
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("osa-server {args:?} printed no {ready:?} line"));
            if let Some(rest) = line.strip_prefix(ready) {
                return (process, rest.trim().to_string());
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `osa-server serve --bind 127.0.0.1:0 [extra…]`; the process and its API base URL.
pub fn serve(dir: &Path, extra: &[&str], env: &[(String, String)]) -> (Process, String) {
    let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let (process, rest) = Process::spawn(dir, &args, env, "serving  ");
    let base = rest
        .split_whitespace()
        .next()
        .expect("an address")
        .to_string();
    (process, base)
}

/// An admin token minted by `osa-server token`.
pub fn admin_token(dir: &Path, env: &[(String, String)]) -> String {
    let output = command(dir, &["token", "--role", "admin", "--ttl", "2h"], env)
        .output()
        .expect("run osa-server token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// The variables of an archive on Postgres in `schema` (feature tables in
/// `<schema>_features`).
pub fn postgres_env(schema: &str) -> Vec<(String, String)> {
    vec![
        ("OSA_STORAGE__URL".into(), database_url()),
        ("OSA_STORAGE__SCHEMA".into(), schema.into()),
        (
            "OSA_AUTH__SECRET".into(),
            "a-bench-node-secret-of-at-least-32-bytes".into(),
        ),
    ]
}

/// A blocking HTTP client without timeouts on bodies (exports run for seconds).
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// `method url` with a bearer token and an optional JSON body: status and JSON body.
pub fn call(agent: &ureq::Agent, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let response = match body {
        Some(body) => agent
            .post(url)
            .header("Authorization", &auth)
            .send_json(body),
        None => agent.get(url).header("Authorization", &auth).call(),
    };
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Deploys `body` over HTTP (200 or 201); the convention's slug.
pub fn deploy(agent: &ureq::Agent, base: &str, token: &str, body: &Value) -> String {
    let (status, reply) = call(agent, &format!("{base}/conventions"), token, Some(body));
    assert!(status == 200 || status == 201, "deploy: {status} {reply}");
    reply["slug"].as_str().expect("slug").to_string()
}

/// The load averages of the last 1, 5 and 15 minutes.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
