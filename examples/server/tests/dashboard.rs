//! The archive's web page (`GET /dashboard`) in a real browser: headless Chromium
//! (scripts/browser-setup.sh installs it when missing) loads the page served by
//! `osa-server`, runs its script against the API and the test reads the DOM it built:
//! the deployed convention and its hooks with their live releases, the audit log only
//! with a token, and markup in a title shown as text.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Served, get_text};
use serde_json::json;

fn chromium() -> PathBuf {
    let output = Command::new("bash")
        .arg(Path::new(common::python::ROOT).join("scripts/browser-setup.sh"))
        .output()
        .expect("run scripts/browser-setup.sh");
    assert!(
        output.status.success(),
        "scripts/browser-setup.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8(output.stdout).expect("utf-8");
    PathBuf::from(path.lines().last().expect("the browser's path").trim())
}

/// The DOM of `url` once its scripts ran (virtual time lets the page's fetches finish).
fn rendered(browser: &Path, profile: &Path, url: &str) -> String {
    let output = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 DOM")
}

#[test]
fn the_dashboard_shows_the_archive_in_a_browser() {
    let browser = chromium();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = Served::start(dir.path(), &[], &[]);
    let admin = served.process.wait_for("admin token (1 h): ");
    common::deploy(
        &served,
        &admin,
        &common::convention(
            "Page <b>Tests</b>",
            &[
                ("first", json!({"name": "first"})),
                ("second", json!({"name": "second"})),
            ],
        ),
    );
    let page = format!("{}/dashboard", common::origin(&served.base));

    let (status, headers, html) = get_text(&page, &[]);
    assert_eq!(status, 200);
    assert!(html.contains(r#"<meta name="osa-api" content="/api/v1">"#));
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let with_token = rendered(
        &browser,
        &dir.path().join("profile-1"),
        &format!("{page}#token={admin}"),
    );
    assert!(with_token.contains("server ok"), "{with_token}");
    assert!(
        with_token.contains(r#"<td class="mono">page-b-tests-b</td>"#),
        "{with_token}"
    );
    // The title's markup is text on the page, not elements.
    assert!(
        with_token.contains("<td>Page &lt;b&gt;Tests&lt;/b&gt;</td>"),
        "{with_token}"
    );
    assert!(!with_token.contains("<b>Tests</b>"), "{with_token}");
    assert!(
        with_token.contains("<td>first, second</td>"),
        "{with_token}"
    );
    for hook in ["first", "second"] {
        assert!(
            with_token.contains(&format!(r#"<td class="mono">{hook}</td>"#)),
            "{hook}: {with_token}"
        );
    }
    assert!(with_token.contains("<td>v1</td>"), "{with_token}");
    // The audit log: the deploy, by the admin token's subject.
    assert!(with_token.contains("<td>convention</td>"), "{with_token}");
    assert!(with_token.contains("<td>admin</td>"), "{with_token}");
    assert!(!with_token.contains("needs a token"), "{with_token}");

    let without = rendered(&browser, &dir.path().join("profile-2"), &page);
    assert!(without.contains("page-b-tests-b"), "{without}");
    assert!(
        without.contains("needs a token with deployments:read"),
        "{without}"
    );
    assert!(!without.contains("<td>admin</td>"), "{without}");
}
