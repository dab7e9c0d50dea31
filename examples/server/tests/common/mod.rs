//! Helpers of the server's tests: the `osa-server` binary run as its users run it
//! (its own process, its own working directory) and a blocking HTTP client.

#![allow(dead_code)] // Each test binary uses a part.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod python;

pub const BINARY: &str = env!("CARGO_BIN_EXE_osa-server");
/// The saga's test hook (standard-library Python, behaviour set by its config).
pub const HOOK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/hooks/saga_hook.py"
);

/// `osa-server …` in `dir` with only the given `OSA_*` variables (the test's own
/// `OSA_*` environment is not passed on).
pub fn command(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("OSA_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// A running `osa-server serve` or `worker`; killed when dropped.
pub struct Process {
    pub child: Child,
    /// Lines printed on stdout so far come through here.
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Process {
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Process {
        let mut child = command(dir, args, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn osa-server");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (≤ 60 s) for a stdout line starting with `prefix`; returns the rest.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line[prefix.len()..].to_string();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(_) => panic!(
                    "osa-server printed no line starting with {prefix:?}; it printed {:?} (exit: {:?})",
                    self.seen,
                    self.child.try_wait()
                ),
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status (≤ 30 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) has no memory effects; the pid is our own unreaped child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "osa-server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A served API: its base URL (`http://127.0.0.1:PORT/api/v1`) and the process.
pub struct Served {
    pub process: Process,
    pub base: String,
}

impl Served {
    /// `osa-server serve --bind 127.0.0.1:0 [extra…]` in `dir`, once it serves.
    pub fn start(dir: &Path, extra: &[&str], env: &[(&str, String)]) -> Served {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut process = Process::spawn(dir, &args, env);
        let serving = process.wait_for("serving  ");
        let base = serving
            .split_whitespace()
            .next()
            .expect("an address")
            .to_string();
        Served { process, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// An HTTP answer: status and body as JSON (`Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

pub fn get(url: &str, token: Option<&str>) -> Answer {
    let mut request = agent().get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.call())
}

pub fn post(url: &str, token: &str, body: &Value) -> Answer {
    answer(
        agent()
            .post(url)
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body),
    )
}

/// `POST url` with no body, with a bearer token if given.
pub fn post_empty(url: &str, token: Option<&str>) -> Answer {
    let mut request = agent().post(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send_empty())
}

/// A deploy body: one process hook per `(name, config)` running [`HOOK`].
pub fn convention(title: &str, hooks: &[(&str, Value)]) -> Value {
    osa_core::testing::process_convention(title, hooks, &["python3", HOOK], 60)
}

/// Deploys `body` over HTTP (200 or 201); its slug.
pub fn deploy(served: &Served, token: &str, body: &Value) -> String {
    let deployed = post(&served.url("/conventions"), token, body);
    assert!(
        deployed.status == 200 || deployed.status == 201,
        "{:?}",
        deployed.body
    );
    deployed.body["slug"].as_str().expect("slug").to_string()
}

/// Records with these ids and no files.
pub fn records(ids: &[&str]) -> Value {
    Value::Array(
        ids.iter()
            .map(|id| json!({"id": id, "metadata": {"title": id}, "files": []}))
            .collect(),
    )
}

/// Polls `GET /validations/{id}` until the run is terminal (≤ 120 s); the view.
pub fn wait_for_run(served_base: &str, token: &str, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = get(&format!("{served_base}/validations/{run}"), Some(token));
        assert_eq!(view.status, 200, "{:?}", view.body);
        let status = view.body["run"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if ["completed", "failed", "cancelled"].contains(&status.as_str()) {
            return view.body;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end: {:?}",
            view.body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every file and directory under `dir`, relative.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)
            .expect("read dir")
            .map_while(Result::ok)
        {
            let path = entry.path();
            out.push(path.strip_prefix(dir).expect("inside").to_path_buf());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `GET url` with extra headers: status, response headers and body text.
pub fn get_text(url: &str, headers: &[(&str, &str)]) -> (u16, ureq::http::HeaderMap, String) {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, headers, text)
}

/// The server's origin (`http://127.0.0.1:PORT`) of an API base URL.
pub fn origin(base: &str) -> String {
    base.strip_suffix("/api/v1").unwrap_or(base).to_string()
}

/// The value of the Prometheus sample `series` (name with labels, as rendered) in
/// `text`, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `PUT url` with `body`; chunked (no Content-Length) when `chunked`.
pub fn put_bytes(url: &str, token: Option<&str>, body: &[u8], chunked: bool) -> Answer {
    let mut request = agent().put(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if chunked {
        let mut reader = std::io::Cursor::new(body.to_vec());
        answer(request.send(ureq::SendBody::from_reader(&mut reader)))
    } else {
        answer(request.send(body))
    }
}

/// `prefix_` and 12 random hex digits (schema names, bucket prefixes).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Drops a test's Postgres schemas when dropped.
pub struct Schemas(osa::sqlx_backends::PgConfig);

impl Drop for Schemas {
    fn drop(&mut self) {
        let config = self.0.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            if let Ok(backend) = osa::sqlx_backends::PgBackend::connect(config).await {
                let _ = backend.drop_schemas().await;
            }
        });
    }
}

/// The variables of an archive on the test Postgres (`DATABASE_URL`) in `schema`,
/// with the node secret `secret`; the schemas go when the guard does.
pub fn postgres_env(schema: &str, secret: &str) -> (Vec<(&'static str, String)>, Schemas) {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let cleanup = Schemas(
        osa::sqlx_backends::PgConfig::new(&url).with_schemas(schema, format!("{schema}_features")),
    );
    let env = vec![
        ("OSA_STORAGE__URL", url),
        ("OSA_STORAGE__SCHEMA", schema.to_string()),
        ("OSA_AUTH__SECRET", secret.to_string()),
    ];
    (env, cleanup)
}

/// The variables of blobs under `prefix` in the S3 test server's bucket (moto's
/// server, started by scripts/s3-setup.sh unless `OSA_S3_ENDPOINT` names one), and the
/// endpoint.
pub fn s3_env(prefix: &str) -> (Vec<(&'static str, String)>, String) {
    use osa_core::testing::blobs::{S3_TEST_BUCKET, s3_test_options, s3_test_server};

    let endpoint = s3_test_server();
    let mut env = vec![("OSA_BLOBS__URL", format!("s3://{S3_TEST_BUCKET}/{prefix}"))];
    for (option, value) in s3_test_options(&endpoint) {
        let name = match option {
            "aws_endpoint" => "OSA_BLOBS__OPTIONS__AWS_ENDPOINT",
            "aws_allow_http" => "OSA_BLOBS__OPTIONS__AWS_ALLOW_HTTP",
            "aws_access_key_id" => "OSA_BLOBS__OPTIONS__AWS_ACCESS_KEY_ID",
            "aws_secret_access_key" => "OSA_BLOBS__OPTIONS__AWS_SECRET_ACCESS_KEY",
            "aws_region" => "OSA_BLOBS__OPTIONS__AWS_REGION",
            other => panic!("no variable for the S3 option {other}"),
        };
        env.push((name, value));
    }
    (env, endpoint)
}

/// The keys under `prefix` in the S3 test server's bucket.
pub fn bucket_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    use osa_core::testing::blobs::{S3_TEST_BUCKET, s3_test_options};

    let bucket =
        osa::blob::Blobs::from_url(&format!("s3://{S3_TEST_BUCKET}"), s3_test_options(endpoint))
            .expect("bucket");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        bucket
            .store()
            .list(Some(&osa::object_store::path::Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("list the bucket")
    })
}

/// `osa-server token ARGS…` in `dir` with `env`: the token.
pub fn mint(dir: &Path, env: &[(&str, String)], args: &[&str]) -> String {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    let output = command(dir, &all, env).output().expect("run token");
    assert!(
        output.status.success(),
        "token {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}
