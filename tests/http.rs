//! The reference HTTP API over an embedded archive (SQLite file, local blobs, real hook
//! processes), driven through the full axum stack; and one SSE stream over real TCP.

#![cfg(all(feature = "http", feature = "sqlite"))]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use osa::auth::{Authenticator, MachineIssuer, NodeIssuer, Role};
use osa::http::{ApiState, ROUTES, router};
use osa::id::Digest;
use osa::local::LocalArchive;
use serde_json::{Value, json};
use tower::ServiceExt;

const HOOK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hooks/saga_hook.py");
const SECRET: &[u8] = b"a-node-secret-of-at-least-32-bytes!!";
const CI: &str = "https://ci.example.org";
// A test key pair, generated for these tests (`openssl genpkey -algorithm ed25519`).
const CI_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINHN1CnTI6nhF3Fwi+Luyk75XQ7EtM3lhFDc0d7zgQbG\n-----END PRIVATE KEY-----\n";
const CI_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAIxUVqkuH1/ufOQ9EM3jhvSygrnY4Yy+KnntwIRjU6GU=\n-----END PUBLIC KEY-----\n";

struct Api {
    app: axum::Router,
    archive: LocalArchive,
    auth: Authenticator,
    _dir: tempfile::TempDir,
}

fn authenticator() -> Authenticator {
    let node = NodeIssuer::new("osa-test", "authenticated", SECRET).unwrap();
    let ci = MachineIssuer::ed25519_pem(CI, CI_PUBLIC.as_bytes(), vec!["osa".into()]).unwrap();
    Authenticator::new(node).with_machine_issuer(ci).unwrap()
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let archive = LocalArchive::open(dir.path()).await.unwrap();
    let mut state = ApiState::from_local(&archive, authenticator());
    state.stream_poll = Duration::from_millis(20);
    Api {
        app: router(state),
        archive,
        auth: authenticator(),
        _dir: dir,
    }
}

/// A machine token from the CI issuer with these scopes.
fn machine(scopes: &str) -> String {
    let claims = json!({"iss": CI, "sub": "ci-bot", "aud": "osa",
                        "exp": chrono::Utc::now().timestamp() + 300, "scope": scopes});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(CI_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }
}

fn convention(reject_prefix: &str) -> Value {
    json!({
        "title": "Http Tests",
        "description": "A convention deployed over HTTP",
        "schema": {"id": "http-schema", "version": "1.0.0", "fields": []},
        "file_requirements": {"accepted_types": [".txt"], "max_count": 1, "max_file_size": 1024},
        "hooks": [{
            "name": "scorer",
            "feature": {"kind": "table", "cardinality": "one", "columns": [
                {"name": "hook", "json_type": "string", "required": true},
                {"name": "score", "json_type": "number", "required": true}
            ]},
            "config": {"name": "scorer", "reject_prefix": reject_prefix},
            "limits": {"timeout_seconds": 60, "memory": "512m", "cpu": "1"},
            "release": {"command": ["python3", HOOK], "digest": Digest::of_bytes(reject_prefix.as_bytes()),
                        "source_ref": "git:http"}
        }],
        "docs": {"purpose": "HTTP tests", "example_questions": ["a?", "b?"],
                 "examples": [{"question": "c?", "query": "score > 1", "interpretation": "long ids"}]}
    })
}

/// Fills `{param}` segments with a syntactically valid value.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{slug}" => "no-such-convention",
            "{name}" | "{hook}" => "no_such_hook",
            "{version}" | "{row}" => "1",
            "{id}" => "00000000-0000-4000-8000-000000000000",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let api = api().await;
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();
    let doc = api.get("/openapi.json", None).await.json();
    for route in ROUTES {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        assert!(
            doc["paths"][route.path][route.method.to_lowercase()].is_object(),
            "{} {} missing from the OpenAPI document",
            route.method,
            route.path
        );
        let reply = api
            .call(method, &concrete(route.path), Some(&admin), Some(json!({})))
            .await;
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            route.path
        );
        if reply.status == StatusCode::NOT_FOUND {
            let message = reply.json()["message"].as_str().unwrap().to_string();
            assert!(
                !message.starts_with("route"),
                "{} {}: {message}",
                route.method,
                route.path
            );
        }
    }
    let unknown = api.get("/nowhere", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["code"], "not_found");
    assert_eq!(api.get("/health", None).await.json()["status"], "ok");
    assert!(doc["components"]["schemas"]["DeployConvention"].is_object());
}

#[tokio::test]
async fn deploys_need_a_scope_and_are_audited() {
    let api = api().await;
    let body = convention("bad-");

    let anonymous = api
        .call(Method::POST, "/conventions", None, Some(body.clone()))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(anonymous.json()["code"], "unauthenticated");

    let forged = api
        .call(
            Method::POST,
            "/conventions",
            Some("not.a.token"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let curator = api.auth.issue("carol", &[Role::Curator], 60).unwrap();
    let denied = api
        .call(
            Method::POST,
            "/conventions",
            Some(&curator),
            Some(body.clone()),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.json()["code"], "forbidden");

    let hooks_only = machine("hooks:write");
    let denied = api
        .call(
            Method::POST,
            "/conventions",
            Some(&hooks_only),
            Some(body.clone()),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let writer = machine("conventions:write deployments:read");
    let first = api
        .call(
            Method::POST,
            "/conventions",
            Some(&writer),
            Some(body.clone()),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    let first = first.json();
    assert_eq!(first["convention"]["slug"], "http-tests");
    assert_eq!(first["releases"][0]["created"], true);
    assert_eq!(
        first["deployment"]["principal"],
        "https://ci.example.org#ci-bot"
    );

    let again = api
        .call(
            Method::POST,
            "/conventions",
            Some(&writer),
            Some(body.clone()),
        )
        .await
        .json();
    assert_eq!(again["releases"][0]["created"], false);
    assert_eq!(
        again["deployment"]["payload_sha256"],
        first["deployment"]["payload_sha256"]
    );

    // Unknown fields are refused with their path; nothing is applied.
    let mut smuggled = body.clone();
    smuggled["hooks"][0]["release"]["principal"] = json!("root");
    let refused = api
        .call(Method::POST, "/conventions", Some(&writer), Some(smuggled))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json()["field"], "hooks[0].release.principal");

    // The audit trail, over the API.
    let list = api
        .get("/deployments?target=http-tests", Some(&writer))
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let statuses: Vec<Value> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("succeeded"), json!("succeeded")]);
    let page = api
        .get("/deployments?target=http-tests&limit=1", Some(&writer))
        .await
        .json();
    let newest = page[0]["id"].as_str().unwrap();
    let next = api
        .get(
            &format!("/deployments?target=http-tests&limit=1&before={newest}"),
            Some(&writer),
        )
        .await
        .json();
    assert_eq!(next[0]["id"], first["deployment"]["id"]);
    let failed = api
        .get("/deployments?status=failed", Some(&writer))
        .await
        .json();
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let bad_query = api.get("/deployments?colour=red", Some(&writer)).await;
    assert_eq!(bad_query.status, StatusCode::UNPROCESSABLE_ENTITY);

    let id = first["deployment"]["id"].as_str().unwrap();
    let one = api
        .get(&format!("/deployments/{id}"), Some(&writer))
        .await
        .json();
    assert_eq!(one["id"], id);
    let events = api
        .get(&format!("/deployments/{id}/events"), Some(&writer))
        .await;
    assert_eq!(events.headers[header::CONTENT_TYPE], "text/event-stream");
    let text = events.text();
    let messages: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        messages,
        ["received", "applying", "release created", "succeeded"]
    );
    assert_eq!(
        api.get("/deployments/not-a-uuid", Some(&writer))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        api.get("/deployments", Some(&hooks_only)).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn releases_and_live_pointer() {
    let api = api().await;
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();
    let created = api
        .call(
            Method::POST,
            "/conventions",
            Some(&admin),
            Some(convention("bad-")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);

    let hooks = machine("hooks:write");
    let release = json!({"command": ["python3", HOOK], "digest": Digest::of_bytes(b"v2"),
                         "config": {"name": "scorer"}, "source_ref": "git:v2"});
    let new = api
        .call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&hooks),
            Some(release.clone()),
        )
        .await;
    assert_eq!(new.status, StatusCode::CREATED, "{}", new.text());
    assert_eq!(new.json()["release"]["version"], 2);
    let same = api
        .call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&hooks),
            Some(release),
        )
        .await;
    assert_eq!(same.status, StatusCode::OK);
    assert_eq!(same.json()["created"], false);

    let back = api
        .call(
            Method::PUT,
            "/hooks/scorer/live",
            Some(&hooks),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.text());
    assert_eq!(back.json()["current"]["version"], 1);
    assert_eq!(back.json()["previous"]["version"], 2);
    let hooks_list = api.get("/hooks", None).await.json();
    assert_eq!(hooks_list[0]["live"]["version"], 1);

    assert_eq!(
        api.get("/hooks/scorer/releases", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get("/hooks/scorer/releases/2", None).await.json()["source_ref"],
        "git:v2"
    );
    assert_eq!(
        api.get("/hooks/scorer/releases/9", None).await.status,
        StatusCode::NOT_FOUND
    );
    let bad = api.get("/hooks/scorer/releases/latest", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["field"], "version");
    let hostile = api.get("/hooks/Robert');DROP%20TABLE/releases", None).await;
    assert_eq!(hostile.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(hostile.json()["field"], "name");
    let unknown = api
        .call(
            Method::PUT,
            "/hooks/scorer/live",
            Some(&hooks),
            Some(json!({"version": 7})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn validations_features_and_provenance() {
    let api = api().await;
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();
    api.call(
        Method::POST,
        "/conventions",
        Some(&admin),
        Some(convention("bad-")),
    )
    .await;
    let submitter = machine("validations:write");
    let reader = machine("runs:read");

    // Local paths are refused over HTTP.
    let local = json!({"convention": "http-tests", "records": [{"id": "a", "metadata": {},
        "files": [{"name": "x.txt", "source": {"source": "local", "path": "/etc/passwd"}}]}]});
    let refused = api
        .call(Method::POST, "/validations", Some(&submitter), Some(local))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.json()["field"], "records[0].files[0].source");

    let records: Vec<Value> = ["ok-1", "bad-1", "ok-333"]
        .iter()
        .map(|id| json!({"id": id, "metadata": {"n": 1}}))
        .collect();
    let body = json!({"convention": "http-tests", "records": records});
    assert_eq!(
        api.call(
            Method::POST,
            "/validations",
            Some(&reader),
            Some(body.clone())
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let submitted = api
        .call(Method::POST, "/validations", Some(&submitter), Some(body))
        .await;
    assert_eq!(
        submitted.status,
        StatusCode::ACCEPTED,
        "{}",
        submitted.text()
    );
    let run: osa::id::ValidationRunId = submitted.json()["id"].as_str().unwrap().parse().unwrap();

    // A worker in this process runs it.
    let view = api
        .archive
        .wait(run, |_| Ok(()), std::future::pending())
        .await
        .unwrap();
    assert_eq!(view.run.status, osa::validation::RunStatus::Completed);

    let got = api
        .get(&format!("/validations/{run}"), Some(&reader))
        .await
        .json();
    assert_eq!(got["run"]["status"], "completed");
    assert_eq!(
        api.get(&format!("/validations/{run}"), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let events = api
        .get(&format!("/validations/{run}/events"), Some(&reader))
        .await
        .text();
    let kinds: Vec<String> = events
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("submitted"));
    assert_eq!(kinds.last().map(String::as_str), Some("finished"));

    // Features: public, filtered, paged, JSON or CSV.
    let page = api.get("/features/scorer", None).await.json();
    let ids: Vec<&str> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ok-1", "ok-333"]);
    assert_eq!(
        page["rows"][1]["values"],
        json!({"hook": "scorer", "score": 6.0})
    );
    let filtered = api.get("/features/scorer?gte.score=5", None).await.json();
    assert_eq!(filtered["rows"].as_array().unwrap().len(), 1);
    let by_record = api
        .get("/features/scorer?record_id=ok-1", None)
        .await
        .json();
    assert_eq!(by_record["rows"][0]["values"]["score"], 4.0);
    let first_page = api.get("/features/scorer?limit=1", None).await.json();
    let after = first_page["next_after"].as_i64().unwrap();
    let second = api
        .get(&format!("/features/scorer?limit=1&after={after}"), None)
        .await
        .json();
    assert_eq!(second["rows"][0]["record_id"], "ok-333");
    let csv = api.get("/features/scorer?format=csv", None).await;
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let lines: Vec<String> = csv.text().lines().map(str::to_string).collect();
    assert_eq!(lines[0], "id,record_id,run_id,row_index,hook,score");
    assert!(
        lines[1].ends_with(",scorer,4.0") || lines[1].ends_with(",scorer,4"),
        "{}",
        lines[1]
    );
    for (query, field) in [
        ("gte.score=high", "gte.score"),
        ("eq.colour=red", "eq.colour"),
        ("like.score=1", "like.score"),
        ("limit=0", "limit"),
        ("format=xml", "format"),
        ("colour=red", "colour"),
    ] {
        let reply = api.get(&format!("/features/scorer?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(reply.json()["field"], field, "{query}");
    }
    assert_eq!(
        api.get("/features/no_such_hook", None).await.status,
        StatusCode::NOT_FOUND
    );

    // Provenance, without the raw log locator.
    let row = page["rows"][0]["id"].as_i64().unwrap();
    let prov = api
        .get(&format!("/features/scorer/{row}/provenance"), None)
        .await
        .json();
    assert_eq!(prov["row"]["record_id"], "ok-1");
    assert_eq!(prov["release"]["version"], 1);
    assert!(prov["run"].get("log_ref").is_none());
    assert!(prov["run"]["has_logs"].is_boolean());

    // Hook runs and logs need runs:read.
    let hook_run = prov["run"]["id"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/hooks/runs/{hook_run}"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let curator = api.auth.issue("carol", &[Role::Curator], 60).unwrap();
    assert_eq!(
        api.get(&format!("/hooks/runs/{hook_run}"), Some(&curator))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let shown = api
        .get(&format!("/hooks/runs/{hook_run}"), Some(&reader))
        .await
        .json();
    assert_eq!(shown["id"], hook_run);
    assert_eq!(shown["counts"]["rejected"], 1);
    assert!(shown.get("log_ref").is_none());
}

/// The deployment event stream over a real socket: SSE framing and the end of stream.
#[tokio::test]
async fn event_stream_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = api().await;
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();
    let created = api
        .call(
            Method::POST,
            "/conventions",
            Some(&admin),
            Some(convention("bad-")),
        )
        .await
        .json();
    let id = created["deployment"]["id"].as_str().unwrap().to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, api.app.clone()).into_future());
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/deployments/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        socket.read_to_string(&mut response),
    )
    .await
    .expect("the stream ends once the deployment is over")
    .unwrap();
    server.abort();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("content-type: text/event-stream"),
        "{response}"
    );
    assert!(response.contains("\"message\":\"succeeded\""), "{response}");
}
