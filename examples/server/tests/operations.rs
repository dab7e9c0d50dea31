//! Operations around the API: `/metrics` in Prometheus format from the server and
//! from a worker (with `worker.metrics_bind`), the queue's jobs by state, liveness and
//! readiness, request ids.

mod common;

use common::{Process, Served, get_text, post, sample};
use serde_json::json;

#[test]
fn metrics_show_jobs_steps_and_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = Served::start(dir.path(), &["--no-worker"], &[]);
    let admin = served.process.wait_for("admin token (1 h): ");
    let origin = common::origin(&served.base);

    let (status, _, text) = get_text(&format!("{origin}/livez"), &[]);
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    let (status, _, _) = get_text(&format!("{origin}/readyz"), &[]);
    assert_eq!(status, 200);

    // A request id is made for each request, or the caller's is kept.
    let (_, headers, _) = get_text(&served.url("/health"), &[]);
    let made = headers
        .get("x-request-id")
        .expect("a request id")
        .to_str()
        .expect("text");
    assert_eq!(made.len(), 36, "a uuid: {made}");
    let (_, headers, _) = get_text(&served.url("/health"), &[("x-request-id", "trace-me-42")]);
    assert_eq!(headers.get("x-request-id").expect("kept"), "trace-me-42");

    let slug = common::deploy(
        &served,
        &admin,
        &common::convention("Measured", &[("first", json!({"name": "first"}))]),
    );
    let submitted = post(
        &served.url("/validations"),
        &admin,
        &json!({"convention": slug, "records": common::records(&["a", "bb"])}),
    );
    assert_eq!(submitted.status, 202);
    let run = submitted.body["id"].as_str().expect("id").to_string();

    // No worker yet: the step job waits in the queue, and the server's metrics say so.
    let (status, headers, text) = get_text(&format!("{origin}/metrics"), &[]);
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(
        sample(&text, r#"osa_jobs{kind="validation.step",state="ready"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "osa_runs_submitted_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"osa_http_requests_total{method="POST",route="/api/v1/validations",status="202"}"#
        ),
        Some(1.0),
        "{text}"
    );
    // Routes are labelled by template, not by path.
    let _ = get_text(&served.url(&format!("/validations/{run}")), &[]);
    let (_, _, text) = get_text(&format!("{origin}/metrics"), &[]);
    assert_eq!(
        sample(
            &text,
            r#"osa_http_requests_total{method="GET",route="/api/v1/validations/{id}",status="401"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(&run), "no series per run id");

    // A worker runs the job and reports its own metrics.
    let mut worker = Process::spawn(
        dir.path(),
        &["worker"],
        &[("OSA_WORKER__METRICS_BIND", "127.0.0.1:0".into())],
    );
    let worker_metrics = worker.wait_for("metrics  ");
    let view = common::wait_for_run(&served.base, &admin, &run);
    assert_eq!(view["run"]["status"], "completed");
    let (_, _, text) = get_text(worker_metrics.trim(), &[]);
    assert_eq!(
        sample(
            &text,
            r#"osa_steps_committed_total{hook="first",status="passed"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"osa_step_duration_seconds_count{hook="first"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, r#"osa_hook_duration_seconds_sum{hook="first"}"#).is_some_and(|s| s > 0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"osa_runs_finished_total{status="completed"}"#),
        Some(1.0),
        "{text}"
    );
    // The queue is empty now: no job gauge is left behind.
    let (_, _, text) = get_text(&format!("{origin}/metrics"), &[]);
    assert!(!text.contains("osa_jobs{"), "{text}");
}
