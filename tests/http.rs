//! The reference HTTP API over an embedded archive (SQLite file, local blobs, real hook
//! processes), driven through the full axum stack; and one SSE stream over real TCP.

#![cfg(all(feature = "http", feature = "sqlite"))]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use osa::auth::{Authenticator, MachineIssuer, NodeIssuer, Role};
use osa::http::{ApiState, router};
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
    state: ApiState,
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
    api_with(authenticator()).await
}

async fn api_with(auth: Authenticator) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let archive = LocalArchive::open(dir.path()).await.unwrap();
    let mut state = ApiState::from_local(&archive, auth);
    state.stream_poll = Duration::from_millis(20);
    Api {
        app: router(state.clone()),
        state,
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
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Reply {
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

    /// Deploys the convention `body` with an admin token (it must succeed); returns
    /// the token.
    async fn deployed_by_admin(&self, body: Value) -> String {
        let admin = self.auth.issue("root", &[Role::Admin], 60).unwrap();
        let created = self
            .call(Method::POST, "/conventions", Some(&admin), Some(body))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        admin
    }
}

fn convention(reject_prefix: &str) -> Value {
    convention_with(
        reject_prefix,
        json!({"command": ["python3", HOOK], "digest": Digest::of_bytes(reject_prefix.as_bytes()),
               "source_ref": "git:http"}),
    )
}

/// The same convention with an OCI release (stored, never run in these tests).
fn oci_convention(reject_prefix: &str) -> Value {
    convention_with(
        reject_prefix,
        json!({"image": "registry.example.org/osa/scorer:1", "digest": Digest::of_bytes(reject_prefix.as_bytes()),
               "source_ref": "git:http"}),
    )
}

fn convention_with(reject_prefix: &str, release: Value) -> Value {
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
            "release": release
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
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            assert!(
                operation["responses"]["default"].is_object(),
                "{method} {path} documents no error"
            );
            let success = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|status| status.starts_with('2'));
            assert!(success, "{method} {path} documents no success response");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = api
                .call(
                    method.clone(),
                    &concrete(path),
                    Some(&admin),
                    Some(json!({})),
                )
                .await;
            assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            if reply.status == StatusCode::NOT_FOUND {
                let message = reply.json()["message"].as_str().unwrap().to_string();
                assert!(!message.starts_with("route"), "{method} {path}: {message}");
            }
        }
    }
    // Every route of the API, each documented once.
    assert_eq!(operations, 26, "{:#}", doc["paths"]);
    let unknown = api.get("/nowhere", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["code"], "not_found");
    assert_eq!(api.get("/health", None).await.json()["status"], "ok");
    assert!(doc["components"]["schemas"]["DeployConvention"].is_object());
}

/// `GET /validations/{id}` lists the run with the verdicts of its first `limit`
/// records and the cursor of the rest; `GET /validations/{id}/records` pages through
/// them; bad queries are 422 naming the parameter, an unknown run 404.
#[tokio::test]
async fn validation_verdicts_are_read_a_page_at_a_time() {
    let api = api().await;
    api.deployed_by_admin(convention("bad-")).await;
    let submitter = machine("validations:write");
    let reader = machine("runs:read");
    let ids = ["ok-1", "bad-1", "ok-22", "ok-333", "bad-22"];
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "metadata": {"n": 1}}))
        .collect();
    let submitted = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(json!({"convention": "http-tests", "records": records})),
        )
        .await;
    assert_eq!(
        submitted.status,
        StatusCode::ACCEPTED,
        "{}",
        submitted.text()
    );
    let run: osa::id::ValidationRunId = submitted.json()["id"].as_str().unwrap().parse().unwrap();
    let view = api
        .archive
        .wait(run, |_| Ok(()), std::future::pending())
        .await
        .unwrap();
    let full = serde_json::to_value(&view).unwrap();
    let verdicts = full["verdicts"].as_array().unwrap().clone();
    assert_eq!(verdicts.len(), 5);

    // A run within the default limit: today's fields, every verdict, no next.
    let whole = api.get(&format!("/validations/{run}"), Some(&reader)).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text());
    let whole = whole.json();
    assert_eq!(whole["run"], full["run"]);
    assert_eq!(whole["steps"], full["steps"]);
    assert_eq!(whole["verdicts"], full["verdicts"]);
    assert_eq!(whole["next"], Value::Null);
    assert_eq!(
        whole["counts"],
        json!({"pending": 0, "accepted": 3, "rejected": 2, "errored": 0})
    );
    let first = api
        .get(&format!("/validations/{run}?limit=2"), Some(&reader))
        .await
        .json();
    assert_eq!(first["verdicts"], json!(verdicts[..2]));
    assert_eq!(first["next"], 2);
    assert_eq!(first["counts"], whole["counts"]);

    // Pages of 2 from the first record: [0, 1], [2, 3], [4].
    let mut from = json!(0);
    let mut pages = Vec::new();
    while let Some(at) = from.as_u64() {
        let page = api
            .get(
                &format!("/validations/{run}/records?from={at}&limit=2"),
                Some(&reader),
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let page = page.json();
        from = page["next"].clone();
        pages.push((at, page));
        assert!(pages.len() <= 3, "{pages:?}");
    }
    let shape: Vec<(u64, usize, Value)> = pages
        .iter()
        .map(|(at, p)| {
            (
                *at,
                p["records"].as_array().unwrap().len(),
                p["next"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [(0, 2, json!(2)), (2, 2, json!(4)), (4, 1, Value::Null)]
    );
    let paged: Vec<Value> = pages
        .iter()
        .flat_map(|(_, p)| p["records"].as_array().unwrap().clone())
        .collect();
    assert_eq!(paged, verdicts);
    assert_eq!(paged[1]["record_id"], "bad-1");
    assert_eq!(paged[1]["verdict"]["verdict"], "rejected");
    // Without a query: from the first record, 1,000 at most.
    let all = api
        .get(&format!("/validations/{run}/records"), Some(&reader))
        .await
        .json();
    assert_eq!(all, json!({"records": verdicts, "next": null}));

    // Bad queries name the parameter.
    for (path, field) in [
        (format!("/validations/{run}?limit=0"), "limit"),
        (format!("/validations/{run}?limit=10001"), "limit"),
        (format!("/validations/{run}?limit=many"), "query"),
        (format!("/validations/{run}?from=2"), "query"),
        (format!("/validations/{run}/records?limit=0"), "limit"),
        (format!("/validations/{run}/records?limit=10001"), "limit"),
        (format!("/validations/{run}/records?from=-1"), "query"),
        (format!("/validations/{run}/records?after=2"), "query"),
    ] {
        let reply = api.get(&path, Some(&reader)).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(reply.json()["field"], field, "{path}: {}", reply.text());
    }
    let ok = api
        .get(
            &format!("/validations/{run}/records?limit=10000"),
            Some(&reader),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    // An unknown run is 404; the pages need runs:read.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for path in [
        format!("/validations/{unknown}"),
        format!("/validations/{unknown}/records?from=0&limit=2"),
    ] {
        let reply = api.get(&path, Some(&reader)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.json()["code"], "not_found", "{path}");
    }
    assert_eq!(
        api.get(&format!("/validations/{run}/records"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get(
            &format!("/validations/{run}/records"),
            Some(&machine("validations:write"))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn deploys_need_a_scope_and_are_audited() {
    let api = api().await;
    let body = oci_convention("bad-");

    let anonymous = api
        .call(Method::POST, "/conventions", None, Some(body.clone()))
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(anonymous.json()["code"], "missing_token");

    let forged = api
        .call(
            Method::POST,
            "/conventions",
            Some("not.a.token"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert_eq!(forged.json()["code"], "invalid_token");

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
    assert_eq!(denied.json()["code"], "access_denied");

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
    // The published server's `ConventionCreated` fields, which `osa deploy` reads.
    assert_eq!(first["slug"], "http-tests");
    assert_eq!(first["title"], "Http Tests");
    assert_eq!(first["description"], "A convention deployed over HTTP");
    assert_eq!(
        first["schema_id"],
        json!({"id": "http-schema", "version": "1.0.0"})
    );
    assert_eq!(first["hooks"], json!(["scorer"]));
    assert!(first["created_at"].is_string());
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
    api.deployed_by_admin(convention("bad-")).await;

    let hooks = machine("hooks:write");
    let release = json!({"image": "registry.example.org/osa/scorer:2", "digest": Digest::of_bytes(b"v2"),
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
    assert_eq!(new.json()["version"], 2);
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
    assert_eq!(hooks_list["items"][0]["live_release"]["version"], 1);

    assert_eq!(
        api.get("/hooks/scorer/releases", None).await.json()["releases"]
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
    assert_eq!(
        api.get("/hooks/no_such_hook/releases/1", None).await.json()["message"],
        "hook `no_such_hook` not found"
    );
}

/// The deployed convention with a second hook, `aligner`, declared after `scorer`
/// (so that the order by name differs from the order of declaration); OCI releases.
fn two_hook_convention() -> Value {
    let mut body = oci_convention("bad-");
    let mut aligner = body["hooks"][0].clone();
    aligner["name"] = json!("aligner");
    aligner["config"]["name"] = json!("aligner");
    aligner["release"]["digest"] = json!(Digest::of_bytes(b"aligner v1"));
    aligner["release"]["source_ref"] = json!("git:aligner");
    body["hooks"].as_array_mut().unwrap().push(aligner);
    body
}

/// The field names of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// Asserts that `value` has at least `fields` (extra fields are allowed).
fn assert_has_fields(value: &Value, fields: &[&str]) {
    let have = keys(value);
    for field in fields {
        assert!(have.iter().any(|h| h == field), "no `{field}` in {value}");
    }
}

/// `GET /hooks` is the published server's `HookList`: `{items: [{name, feature,
/// live_release: {version, digest, source_ref, built_at} | null}]}`, ordered by name.
#[tokio::test]
async fn the_hook_list_has_the_published_shape() {
    use osa::HookRegistry;
    let api = api().await;
    api.deployed_by_admin(two_hook_convention()).await;
    // A hook without any release yet.
    let draft: osa::hook::HookIdentity = serde_json::from_value(json!({
        "name": "draft",
        "feature": {"kind": "table", "cardinality": "one", "columns": [
            {"name": "score", "json_type": "number", "required": true}]}
    }))
    .unwrap();
    api.archive.storage().upsert_identity(&draft).await.unwrap();

    let list = api.get("/hooks", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    assert!(list.is_object(), "{list}");
    let items = list["items"].as_array().expect("items");
    let names: Vec<&str> = items.iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["aligner", "draft", "scorer"]);
    for item in items {
        assert_has_fields(item, &["name", "feature", "live_release"]);
        assert_eq!(item["feature"]["cardinality"], "one", "{item}");
        assert!(item["feature"]["columns"].is_array(), "{item}");
    }
    assert_eq!(items[1]["live_release"], Value::Null);
    let scorer = &items[2]["live_release"];
    assert_has_fields(scorer, &["version", "digest", "source_ref", "built_at"]);
    assert_eq!(scorer["version"], 1);
    assert_eq!(scorer["digest"], json!(Digest::of_bytes(b"bad-")));
    assert_eq!(scorer["source_ref"], "git:http");
    let built_at = scorer["built_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(built_at).unwrap_or_else(|e| panic!("{built_at}: {e}"));
    assert_eq!(items[0]["live_release"]["source_ref"], "git:aligner");
    // The live release of the list is the one the release list calls live.
    let releases = api.get("/hooks/scorer/releases", None).await.json();
    assert_eq!(releases["releases"][0]["built_at"], scorer["built_at"]);

    // A hook without releases: an empty list, no live version.
    let empty = api.get("/hooks/draft/releases", None).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.text());
    assert_eq!(
        empty.json(),
        json!({"hook_name": "draft", "live_version": null, "releases": []})
    );
}

/// `GET /hooks/{name}/releases` is the published `ReleaseList` (version descending);
/// `POST /hooks/{name}/releases` answers `ReleaseCreated` (201 new and live, 200 for
/// a known digest, `live` saying whether the pointer is on it); `PUT
/// /hooks/{name}/live` answers `{hook_name, live_version, live_release_id}`.
#[tokio::test]
async fn release_routes_have_the_published_shapes() {
    let api = api().await;
    api.deployed_by_admin(oci_convention("bad-")).await;
    let hooks = machine("hooks:write");
    let body = |n: u32| {
        json!({"image": format!("registry.example.org/osa/scorer:{n}"),
               "digest": Digest::of_bytes(format!("v{n}").as_bytes()),
               "source_ref": format!("git:v{n}")})
    };
    let post = |n: u32| {
        api.call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&hooks),
            Some(body(n)),
        )
    };

    // A fresh mint: 201, the published fields, live.
    let minted = post(2).await;
    assert_eq!(minted.status, StatusCode::CREATED, "{}", minted.text());
    let minted = minted.json();
    assert_has_fields(
        &minted,
        &[
            "hook_name",
            "version",
            "id",
            "digest",
            "source_ref",
            "built_at",
            "live",
        ],
    );
    assert_eq!(minted["hook_name"], "scorer");
    assert_eq!(minted["version"], 2);
    assert_eq!(minted["digest"], json!(Digest::of_bytes(b"v2")));
    assert_eq!(minted["source_ref"], "git:v2");
    assert_eq!(minted["live"], true);
    assert_eq!(minted["created"], true);
    let stored = api.get("/hooks/scorer/releases/2", None).await.json();
    assert_eq!(minted["id"], stored["id"]);
    assert_eq!(minted["built_at"], stored["built_at"]);
    let third = post(3).await.json();
    assert_eq!(
        (third["version"].clone(), third["live"].clone()),
        (json!(3), json!(true))
    );

    // The same digest again: 200, the existing release, still live.
    let again = post(3).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let again = again.json();
    assert_eq!(again["created"], false);
    assert_eq!(again["live"], true);
    assert_eq!(again["version"], 3);
    assert_eq!(again["id"], third["id"]);
    assert_eq!(again["built_at"], third["built_at"]);
    // An older digest again: 200, not live (the pointer is on version 3).
    let older = post(2).await;
    assert_eq!(older.status, StatusCode::OK, "{}", older.text());
    let older = older.json();
    assert_eq!(older["version"], 2);
    assert_eq!(older["live"], false, "{older}");

    // The list: version descending, with the live version.
    let list = api.get("/hooks/scorer/releases", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    assert_eq!(list["hook_name"], "scorer");
    assert_eq!(list["live_version"], 3);
    let releases = list["releases"].as_array().expect("releases");
    let versions: Vec<u64> = releases
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    for release in releases {
        assert_has_fields(
            release,
            &[
                "version",
                "digest",
                "image",
                "source_ref",
                "built_by",
                "built_at",
            ],
        );
    }
    let v2 = &releases[1];
    assert_eq!(v2["image"], "registry.example.org/osa/scorer:2");
    assert_eq!(v2["digest"], json!(Digest::of_bytes(b"v2")));
    assert_eq!(v2["source_ref"], "git:v2");
    assert_eq!(v2["built_by"], "https://ci.example.org#ci-bot");
    assert_eq!(v2["built_at"], minted["built_at"]);
    assert_eq!(releases[2]["built_by"], "root");
    // One release reads the same.
    assert_eq!(&api.get("/hooks/scorer/releases/2", None).await.json(), v2);

    // Moving the pointer: the published fields beside the releases moved between.
    let moved = api
        .call(
            Method::PUT,
            "/hooks/scorer/live",
            Some(&hooks),
            Some(json!({"version": 2})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text());
    let moved = moved.json();
    assert_eq!(moved["hook_name"], "scorer");
    assert_eq!(moved["live_version"], 2);
    assert_eq!(moved["live_release_id"], minted["id"]);
    assert_eq!(moved["current"]["version"], 2);
    assert_eq!(moved["previous"]["version"], 3);
    assert_eq!(moved["deployment"]["kind"], "live");
    assert_eq!(
        api.get("/hooks/scorer/releases", None).await.json()["live_version"],
        2
    );
    // Now version 2's digest is the live one, version 3's is not.
    assert_eq!(post(2).await.json()["live"], true);
    assert_eq!(post(3).await.json()["live"], false);
    let listed = api.get("/hooks", None).await.json();
    assert_eq!(listed["items"][0]["live_release"]["version"], 2);
    assert_eq!(listed["items"][0]["live_release"]["id"], minted["id"]);

    let unknown = api.get("/hooks/no_such_hook/releases", None).await;
    assert_json_error(&unknown, StatusCode::NOT_FOUND, "not_found");
}

/// A node token of the test authenticator with these claims over the defaults.
fn node_token_with(claims: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut all = json!({"iss": "osa-test", "sub": "alice", "aud": "authenticated",
                         "iat": now, "exp": now + 300, "roles": ["admin"]});
    for (key, value) in claims.as_object().unwrap() {
        all[key] = value.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// Refused callers get the codes the published CLI keys on, at the top level and
/// under `detail` (where `osa deploy`'s pre-flight reads them): 401 `missing_token`,
/// `invalid_token`, `token_expired` with `WWW-Authenticate: Bearer`, 403
/// `access_denied`. Other errors have no `detail`.
#[tokio::test]
async fn refused_callers_get_the_published_codes() {
    let api = api().await;
    api.deployed_by_admin(oci_convention("bad-")).await;
    let refused = |reply: &Reply, status: StatusCode, code: &str| {
        let body = assert_json_error(reply, status, code);
        assert_eq!(body["detail"]["code"], code, "{body}");
        assert_eq!(body["detail"]["message"], body["message"], "{body}");
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(reply.headers[header::WWW_AUTHENTICATE], "Bearer", "{code}");
        }
    };
    let with_header = |path: &str, value: &str| {
        Request::get(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    // Far beyond the leeway.
    let expired_node = node_token_with(json!({"exp": now - 3600, "iat": now - 7200}));
    let expired_machine = {
        let claims = json!({"iss": CI, "sub": "ci-bot", "aud": "osa", "exp": now - 3600,
                            "scope": "hooks:write"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_pem(CI_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"iss": "osa-test", "sub": "alice", "aud": "authenticated",
                "iat": now, "exp": now + 300, "roles": ["admin"]}),
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-of-at-least-32-bytes!"),
    )
    .unwrap();
    let elsewhere = node_token_with(json!({"aud": "another-service"}));
    // A good one, as a control: the same claims are accepted when they are valid.
    assert_eq!(
        api.get("/auth/me", Some(&node_token_with(json!({}))))
            .await
            .status,
        StatusCode::OK
    );

    for path in ["/auth/me", "/deployments"] {
        refused(
            &api.get(path, None).await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        );
        refused(
            &api.send(with_header(path, "Basic YWxpY2U6c2VjcmV0")).await,
            StatusCode::UNAUTHORIZED,
            "missing_token",
        );
        for (what, token) in [
            ("garbage", "not.a.token"),
            ("not a JWS", "garbage"),
            ("another secret", other_secret.as_str()),
            ("another audience", elsewhere.as_str()),
        ] {
            let reply = api.get(path, Some(token)).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}: {what}");
            refused(&reply, StatusCode::UNAUTHORIZED, "invalid_token");
        }
        for token in [&expired_node, &expired_machine] {
            refused(
                &api.get(path, Some(token)).await,
                StatusCode::UNAUTHORIZED,
                "token_expired",
            );
        }
    }
    // Write routes, refused before their body is read.
    let release = json!({"image": "registry.example.org/osa/scorer:2",
                         "digest": Digest::of_bytes(b"v2"), "source_ref": "git:v2"});
    for (method, path) in [
        (Method::POST, "/hooks/scorer/releases"),
        (Method::PUT, "/hooks/scorer/live"),
    ] {
        let anonymous = api
            .call(method.clone(), path, None, Some(release.clone()))
            .await;
        refused(&anonymous, StatusCode::UNAUTHORIZED, "missing_token");
        let expired = api
            .call(
                method.clone(),
                path,
                Some(&expired_machine),
                Some(release.clone()),
            )
            .await;
        refused(&expired, StatusCode::UNAUTHORIZED, "token_expired");
        // Known, but without `hooks:write`.
        let reader = machine("runs:read deployments:read");
        let denied = api
            .call(method.clone(), path, Some(&reader), Some(release.clone()))
            .await;
        refused(&denied, StatusCode::FORBIDDEN, "access_denied");
        assert!(!denied.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    // A node token without the role a route needs.
    let curator = api.auth.issue("carol", &[Role::Curator], 60).unwrap();
    refused(
        &api.get("/deployments", Some(&curator)).await,
        StatusCode::FORBIDDEN,
        "access_denied",
    );
    // Nothing was created by the refused calls.
    assert_eq!(
        api.get("/hooks/scorer/releases", None).await.json()["releases"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Errors that are not about the caller keep their plain shape.
    let missing = api.get("/hooks/no_such_hook/releases", None).await.json();
    assert_eq!(missing["code"], "not_found");
    assert!(missing.get("detail").is_none(), "{missing}");
}

#[tokio::test]
async fn process_releases_need_the_admin_role() {
    let api = api().await;
    let deployer = machine("conventions:write hooks:write");

    // A convention whose hook runs a local command: the scope is not enough.
    let refused = api
        .call(
            Method::POST,
            "/conventions",
            Some(&deployer),
            Some(convention("bad-")),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    let error = refused.json();
    assert_eq!(error["code"], "access_denied");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("admin role") && message.contains("`command`"),
        "{message}"
    );
    // Nothing was applied.
    assert_eq!(api.get("/hooks", None).await.json(), json!({"items": []}));
    let curator = api.auth.issue("carol", &[Role::Curator], 60).unwrap();
    let mut ingester = oci_convention("bad-");
    ingester["ingester"] = json!({"name": "feed", "release": {"command": ["sh", "-c", "id"],
        "digest": Digest::of_bytes(b"feed"), "source_ref": "git:feed"}});
    assert_eq!(
        api.call(
            Method::POST,
            "/conventions",
            Some(&deployer),
            Some(ingester)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call(
            Method::POST,
            "/conventions",
            Some(&curator),
            Some(convention("bad-"))
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    // OCI releases need only the scope.
    let created = api
        .call(
            Method::POST,
            "/conventions",
            Some(&deployer),
            Some(oci_convention("bad-")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());

    let command = json!({"command": ["sh", "-c", "cat /proc/$PPID/environ"],
                         "digest": Digest::of_bytes(b"evil"), "source_ref": "git:evil"});
    let refused = api
        .call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&deployer),
            Some(command.clone()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(
        refused.json()["message"]
            .as_str()
            .unwrap()
            .contains("admin role")
    );
    let image = json!({"image": "registry.example.org/osa/scorer:2",
                       "digest": Digest::of_bytes(b"v2"), "source_ref": "git:v2"});
    let oci = api
        .call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&deployer),
            Some(image),
        )
        .await;
    assert_eq!(oci.status, StatusCode::CREATED, "{}", oci.text());
    assert_eq!(oci.json()["release"]["version"], 2);

    // An admin may.
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();
    let own = api
        .call(
            Method::POST,
            "/hooks/scorer/releases",
            Some(&admin),
            Some(command),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED, "{}", own.text());
    assert_eq!(own.json()["release"]["version"], 3);
}

#[tokio::test]
async fn validations_features_and_provenance() {
    let api = api().await;
    api.deployed_by_admin(convention("bad-")).await;
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
    assert_eq!(lines[0], "_id,_record_id,_run_id,_row_index,hook,score");
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
    // Values keyed by column, as in `/features`.
    assert_eq!(prov["row"]["values"], page["rows"][0]["values"]);
    assert_eq!(
        prov["row"]["values"],
        json!({"hook": "scorer", "score": 4.0})
    );
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

/// A `POST /validations` body with one record holding one file.
fn one_file(key: &str) -> Value {
    json!({"convention": "http-tests", "records": [{"id": "ok-1", "metadata": {},
        "files": [{"name": "x.txt", "source": {"source": "object", "key": key}}]}]})
}

#[tokio::test]
async fn validation_files_come_from_the_upload_prefix() {
    let api = api().await;
    api.deployed_by_admin(convention("bad-")).await;
    let submitter = machine("validations:write");
    let blobs = api.archive.engine().blobs().clone();

    // Another run's blobs, or anything outside the upload prefix, are refused.
    let other = osa::id::ValidationRunId::new_random();
    let theirs = format!("runs/{other}/inputs.json");
    blobs
        .put(&theirs.as_str().into(), "[]".as_bytes().to_vec())
        .await
        .unwrap();
    for key in [
        theirs.as_str(),
        "uploads/../runs/x/inputs.json",
        "uploads/./x.txt",
        "uploads//x.txt",
        "uploads/",
        "/uploads/x.txt",
        "deployments/x/payload.json",
    ] {
        let reply = api
            .call(
                Method::POST,
                "/validations",
                Some(&submitter),
                Some(one_file(key)),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{key}");
        assert_eq!(
            reply.json()["field"],
            "records[0].files[0].source.key",
            "{key}"
        );
    }
    let missing = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(one_file("uploads/missing.txt")),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.json()["field"], "records[0].files[0].source.key");

    blobs
        .put(&"uploads/x.txt".into(), "ok".as_bytes().to_vec())
        .await
        .unwrap();
    let accepted = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(one_file("uploads/x.txt")),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());

    // The file size limit holds for object-store files too, and the prefix is set
    // per server.
    let mut config = osa::saga::EngineConfig::new(api._dir.path().join("work-small"));
    config.batch_limits.max_file_bytes = 8;
    let engine = osa::saga::Engine::new(
        api.archive.storage().clone(),
        std::sync::Arc::new(osa::runner::ProcessRunner::new()),
        blobs.clone(),
        config,
    );
    let state = ApiState::new(
        engine,
        api.archive.deployer().clone(),
        api.archive.storage().clone(),
        authenticator(),
    )
    .with_upload_prefix("incoming/public")
    .unwrap();
    assert_eq!(state.upload_prefix(), "incoming/public/");
    let small = Api {
        app: router(state.clone()),
        state,
        archive: api.archive.clone(),
        auth: authenticator(),
        _dir: tempfile::tempdir().unwrap(),
    };
    blobs
        .put(&"incoming/public/big.txt".into(), vec![b'x'; 100])
        .await
        .unwrap();
    let big = small
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(one_file("incoming/public/big.txt")),
        )
        .await;
    assert_eq!(
        big.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        big.text()
    );
    let error = big.json();
    assert_eq!(error["field"], "records[0].files[0].source.key");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{error}"
    );
    let elsewhere = small
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(one_file("uploads/x.txt")),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNPROCESSABLE_ENTITY);
    blobs
        .put(
            &"incoming/public/small.txt".into(),
            "ok".as_bytes().to_vec(),
        )
        .await
        .unwrap();
    let fits = small
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(one_file("incoming/public/small.txt")),
        )
        .await;
    assert_eq!(fits.status, StatusCode::ACCEPTED, "{}", fits.text());
    for bad in ["", "/", "a/../b", "a//b", "a/%b"] {
        assert!(
            ApiState::from_local(&api.archive, authenticator())
                .with_upload_prefix(bad)
                .is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn unknown_fields_in_records_are_refused() {
    let api = api().await;
    api.deployed_by_admin(convention("bad-")).await;
    api.archive
        .engine()
        .blobs()
        .put(&"uploads/x.txt".into(), "ok".as_bytes().to_vec())
        .await
        .unwrap();
    let submitter = machine("validations:write");
    let file = json!({"name": "x.txt", "source": {"source": "object", "key": "uploads/x.txt"}});
    let cases = [
        (
            json!({"id": "a", "metadata": {}, "filez": [file.clone()]}),
            "records[0].filez",
        ),
        (
            json!({"id": "a", "metadata": {}, "files": [{"name": "x.txt", "size": 2,
                "source": {"source": "object", "key": "uploads/x.txt"}}]}),
            "records[0].files[0].size",
        ),
        (
            json!({"id": "a", "metadata": {}, "files": [{"name": "x.txt",
                "source": {"source": "object", "key": "uploads/x.txt", "path": "/etc/passwd"}}]}),
            "records[0].files[0].source",
        ),
    ];
    for (record, field) in cases {
        let reply = api
            .call(
                Method::POST,
                "/validations",
                Some(&submitter),
                Some(json!({"convention": "http-tests", "records": [record]})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let error = reply.json();
        assert!(
            error["field"].as_str().unwrap().starts_with(field),
            "{field}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("unknown field"),
            "{error}"
        );
    }
    let fine = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(json!({"convention": "http-tests", "records": [
                {"id": "a", "metadata": {}, "files": [file]}]})),
        )
        .await;
    assert_eq!(fine.status, StatusCode::ACCEPTED, "{}", fine.text());

    // Two ids that map to one files directory: 422 naming both.
    let sharing = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(json!({"convention": "http-tests", "records": [
                {"id": "d:1", "metadata": {}, "files": []},
                {"id": "d_1", "metadata": {}, "files": []}]})),
        )
        .await;
    let error = assert_json_error(&sharing, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(error["field"], "records[1].id");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(r#""d:1" and "d_1""#), "{message}");
}

fn assert_json_error(reply: &Reply, status: StatusCode, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/json",
        "{}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn every_error_is_json() {
    let api = api().await;
    let admin = api.auth.issue("root", &[Role::Admin], 60).unwrap();

    let bad_utf8 = api.get("/conventions/%FF", None).await;
    let body = assert_json_error(&bad_utf8, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["field"], "slug");
    let bad_utf8 = api.get("/features/scorer/%C3%28/provenance", None).await;
    let body = assert_json_error(&bad_utf8, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["field"], "row");

    for (method, path) in [
        (Method::DELETE, "/conventions"),
        (Method::POST, "/health"),
        (Method::PATCH, "/hooks/scorer/live"),
    ] {
        let reply = api.call(method.clone(), path, Some(&admin), None).await;
        assert_json_error(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert!(reply.headers.contains_key(header::ALLOW), "{method} {path}");
    }

    for uri in [
        "/",
        "/api",
        "/api/v2/health",
        "/elsewhere/x",
        "/api/v1/nowhere",
    ] {
        let reply = api
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert_json_error(&reply, StatusCode::NOT_FOUND, "not_found");
    }

    let too_big = vec![b' '; osa::http::MAX_BODY_BYTES + 1];
    let reply = api
        .send(
            Request::post("/api/v1/validations")
                .header(header::AUTHORIZATION, format!("Bearer {admin}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(too_big))
                .unwrap(),
        )
        .await;
    assert_json_error(&reply, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
}

#[tokio::test]
async fn tokens_are_checked_before_the_body_is_read() {
    let api = api().await;
    let big = vec![b' '; 17 * 1024 * 1024];
    let anonymous = api
        .send(
            Request::post("/api/v1/validations")
                .body(Body::from(big.clone()))
                .unwrap(),
        )
        .await;
    assert_json_error(&anonymous, StatusCode::UNAUTHORIZED, "missing_token");
    assert_eq!(anonymous.headers[header::WWW_AUTHENTICATE], "Bearer");
    let reader = machine("runs:read");
    let forbidden = api
        .send(
            Request::post("/api/v1/conventions")
                .header(header::AUTHORIZATION, format!("Bearer {reader}"))
                .body(Body::from(big))
                .unwrap(),
        )
        .await;
    assert_json_error(&forbidden, StatusCode::FORBIDDEN, "access_denied");

    // A body that never ends: refused without waiting for it.
    for path in ["/validations", "/conventions", "/hooks/scorer/releases"] {
        let endless = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            api.send(
                Request::post(format!("/api/v1{path}"))
                    .body(Body::from_stream(endless))
                    .unwrap(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} waited for the body"));
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = api().await;
    let reader = machine("deployments:read");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = api
            .send(
                Request::get("/api/v1/deployments")
                    .header(header::AUTHORIZATION, format!("{scheme} {reader}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.text());
    }
    for header_value in [format!("Basic {reader}"), "Bearer".into(), "Bearer ".into()] {
        let reply = api
            .send(
                Request::get("/api/v1/deployments")
                    .header(header::AUTHORIZATION, header_value.clone())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{header_value}");
        // No bearer token in the header: the same code as no header at all.
        assert_eq!(reply.json()["code"], "missing_token", "{header_value}");
    }
}

#[tokio::test]
async fn feature_filters_are_bounded() {
    let api = api().await;
    api.deployed_by_admin(oci_convention("bad-")).await;
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("gte.score={i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    for n in [33, 1000] {
        let reply = api
            .get(&format!("/features/scorer?{}", many(n)), None)
            .await;
        let body = assert_json_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(body["field"], "filters", "{n}");
        assert!(body["message"].as_str().unwrap().contains("32"), "{body}");
    }
    let twice = api
        .get("/features/scorer?eq.score=1&eq.score=2", None)
        .await;
    let body = assert_json_error(&twice, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["field"], "eq.score");
    let range = api
        .get("/features/scorer?gte.score=1&lte.score=5&null.hook=", None)
        .await;
    assert_eq!(range.status, StatusCode::OK, "{}", range.text());
    for value in ["true", "false"] {
        let reply = api
            .get(&format!("/features/scorer?null.hook={value}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{value}: {}", reply.text());
    }
    let unclear = api.get("/features/scorer?null.hook=maybe", None).await;
    let body = assert_json_error(&unclear, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    assert_eq!(body["field"], "null.hook");
    // A bad hook name is reported under the path parameter's own name.
    for path in ["/features/Not-A-Hook", "/features/Not-A-Hook/1/provenance"] {
        let reply = api.get(path, None).await;
        let body = assert_json_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(body["field"], "hook", "{path}");
    }
}

/// Every page of `GET /features/scorer?{query}` (1,000 rows each) as JSON rows, and
/// as CSV lines after one header line.
async fn all_pages(api: &Api, query: &str) -> (Vec<Value>, Vec<String>) {
    let mut rows = Vec::new();
    let mut csv = Vec::new();
    let mut after = String::new();
    loop {
        let path = format!("/features/scorer?limit=1000{after}&{query}");
        let page = api.get(&path, None).await.json();
        let text = api.get(&format!("{path}&format=csv"), None).await.text();
        let mut lines = text.lines().map(str::to_string);
        let header = lines.next().unwrap();
        if csv.is_empty() {
            csv.push(header);
        }
        csv.extend(lines);
        rows.extend(page["rows"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = format!("&after={next}"),
            None => return (rows, csv),
        }
    }
}

#[tokio::test]
async fn feature_exports_stream_every_row() {
    let api = api().await;
    api.deployed_by_admin(convention("bad-")).await;
    let submitter = machine("validations:write");
    // 1,250 rows (more than a page); scores are id lengths: 3, 4, 5 or 6.
    let mut ids: Vec<String> = (0..1250).map(|i| format!("r-{i}")).collect();
    ids.push("bad-1".into());
    let records: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "metadata": {}}))
        .collect();
    let submitted = api
        .call(
            Method::POST,
            "/validations",
            Some(&submitter),
            Some(json!({"convention": "http-tests", "records": records})),
        )
        .await;
    assert_eq!(
        submitted.status,
        StatusCode::ACCEPTED,
        "{}",
        submitted.text()
    );
    let run: osa::id::ValidationRunId = submitted.json()["id"].as_str().unwrap().parse().unwrap();
    let view = api
        .archive
        .wait(run, |_| Ok(()), std::future::pending())
        .await
        .unwrap();
    assert_eq!(view.run.status, osa::validation::RunStatus::Completed);

    let hook_run = view.steps[0].hook_run_id.unwrap();
    for (query, expected) in [
        (String::new(), 1250),
        ("gte.score=6".to_string(), 250),
        ("record_id=r-7".to_string(), 1),
        (format!("run_id={hook_run}"), 1250),
        ("lte.score=4&null.hook=false".to_string(), 100),
        ("run_id=00000000-0000-4000-8000-000000000000".to_string(), 0),
    ] {
        let (rows, csv) = all_pages(&api, &query).await;
        assert_eq!(rows.len(), expected, "{query}");

        let json = api
            .get(&format!("/features/scorer/export?{query}"), None)
            .await;
        assert_eq!(json.status, StatusCode::OK, "{query}: {}", json.text());
        assert_eq!(json.headers[header::CONTENT_TYPE], "application/x-ndjson");
        let text = json.text();
        assert!(text.is_empty() || text.ends_with('\n'), "{query}");
        let exported: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(exported, rows, "{query}");
        let explicit = api
            .get(
                &format!("/features/scorer/export?format=json&{query}"),
                None,
            )
            .await;
        assert_eq!(explicit.body, json.body, "{query}");

        let exported = api
            .get(&format!("/features/scorer/export?format=csv&{query}"), None)
            .await;
        assert_eq!(exported.status, StatusCode::OK, "{query}");
        assert_eq!(
            exported.headers[header::CONTENT_TYPE],
            "text/csv; charset=utf-8"
        );
        let mut expected_csv = csv.join("\r\n");
        expected_csv.push_str("\r\n");
        assert_eq!(exported.text(), expected_csv, "{query}");
    }

    // The same errors as a page; the export has no page size.
    assert_eq!(
        api.get("/features/no_such_hook/export", None).await.status,
        StatusCode::NOT_FOUND
    );
    for (query, field) in [
        ("format=xml", "format"),
        ("limit=10", "limit"),
        ("gte.score=high", "gte.score"),
        ("colour=red", "colour"),
        ("format=csv&format=json", "format"),
    ] {
        let reply = api
            .get(&format!("/features/scorer/export?{query}"), None)
            .await;
        let body = assert_json_error(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(body["field"], field, "{query}");
    }
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_refs_resolve() {
    let api = api().await;
    let doc = api.get("/openapi.json", None).await.json();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 10, "{found:?}");
    for target in &found {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not local"));
        assert!(
            pointer.starts_with("/components/schemas/"),
            "{target} is outside the components"
        );
        assert!(doc.pointer(pointer).is_some(), "{target} dangles");
    }
    let text = doc.to_string();
    assert!(!text.contains("\"$defs\""), "standalone definitions remain");
    assert!(!text.contains("\"$schema\""));
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "DeployConvention",
        "ReleaseRequest",
        "SetLiveRequest",
        "Error",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    let names = |path: &str, method: &str| -> Vec<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let features = names("/features/{hook}", "get");
    for name in ["record_id", "run_id", "after", "limit", "format", "filters"] {
        assert!(features.iter().any(|n| n == name), "{name}: {features:?}");
    }
    let run = names("/validations/{id}", "get");
    assert_eq!(run, ["limit"]);
    let records = names("/validations/{id}/records", "get");
    assert_eq!(records, ["from", "limit"]);
    let ok = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].clone()
    };
    assert_eq!(
        ok("/validations/{id}"),
        "#/components/schemas/ValidationRunSummary"
    );
    assert_eq!(
        ok("/validations/{id}/records"),
        "#/components/schemas/RecordPage"
    );
    for name in ["ValidationRunSummary", "RecordPage", "VerdictCounts"] {
        assert!(schemas.contains_key(name), "{name}");
    }
    // The hooks' routes name the published server's shapes.
    assert_eq!(ok("/hooks"), "#/components/schemas/HookList");
    assert_eq!(
        ok("/hooks/{name}/releases"),
        "#/components/schemas/ReleaseList"
    );
    assert_eq!(
        ok("/hooks/{name}/releases/{version}"),
        "#/components/schemas/ReleaseView"
    );
    let answer = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
            ["$ref"]
            .clone()
    };
    for status in ["200", "201"] {
        assert_eq!(
            answer("/hooks/{name}/releases", "post", status),
            "#/components/schemas/ReleaseCreated",
            "{status}"
        );
    }
    assert_eq!(
        answer("/hooks/{name}/live", "put", "200"),
        "#/components/schemas/LiveMoved"
    );
    // Each names the published fields.
    let properties = |name: &str| -> Vec<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no properties"))
            .keys()
            .cloned()
            .collect()
    };
    for (name, fields) in [
        ("HookList", &["items"][..]),
        ("HookView", &["name", "feature", "live_release"]),
        (
            "LiveRelease",
            &["version", "digest", "source_ref", "built_at"],
        ),
        ("ReleaseList", &["hook_name", "live_version", "releases"]),
        (
            "ReleaseView",
            &[
                "version",
                "digest",
                "image",
                "source_ref",
                "built_by",
                "built_at",
            ],
        ),
        (
            "ReleaseCreated",
            &[
                "hook_name",
                "version",
                "id",
                "digest",
                "source_ref",
                "built_at",
                "live",
            ],
        ),
        (
            "LiveMoved",
            &["hook_name", "live_version", "live_release_id"],
        ),
        ("Error", &["code", "message", "field", "detail"]),
    ] {
        let have = properties(name);
        for field in fields {
            assert!(have.iter().any(|h| h == field), "{name}.{field}: {have:?}");
        }
    }
    // Fields that are null rather than absent are required.
    for (name, field) in [
        ("HookView", "live_release"),
        ("ReleaseList", "live_version"),
        ("ReleaseView", "image"),
        ("ReleaseCreated", "live"),
    ] {
        let required = schemas[name]["required"].as_array().unwrap();
        assert!(required.contains(&json!(field)), "{name}.{field}");
    }
    let deployments = names("/deployments", "get");
    for name in ["target", "status", "since", "until", "before", "limit"] {
        assert!(
            deployments.iter().any(|n| n == name),
            "{name}: {deployments:?}"
        );
    }
}

#[tokio::test]
async fn hook_logs_hide_their_locator() {
    use osa::HookRegistry;
    use osa::hook::{HookRun, HookRunStatus, OutcomeCounts};
    let api = api().await;
    api.deployed_by_admin(oci_convention("bad-")).await;
    let release: osa::id::ReleaseId = api.get("/hooks/scorer/releases/1", None).await.json()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let run = |log_ref: &str| HookRun {
        id: osa::id::HookRunId::new_random(),
        release_id: release,
        status: HookRunStatus::Error,
        started_at: chrono::Utc::now(),
        finished_at: chrono::Utc::now(),
        duration_s: 0.0,
        oom_retries: 0,
        log_ref: Some(log_ref.to_string()),
        input_sha256: None,
        counts: OutcomeCounts::default(),
    };
    let reader = machine("runs:read");
    let storage = api.archive.storage();

    let validation = osa::id::ValidationRunId::new_random();
    let present = format!("runs/{validation}/steps/0/hook.log");
    api.archive
        .engine()
        .blobs()
        .put(&present.as_str().into(), "line 1\n".as_bytes().to_vec())
        .await
        .unwrap();
    let logged = run(&present);
    storage.record_run(&logged).await.unwrap();
    let reply = api
        .get(&format!("/hooks/runs/{}/logs", logged.id), Some(&reader))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "line 1\n");

    let gone = run(&format!("runs/{validation}/steps/1/hook.log"));
    storage.record_run(&gone).await.unwrap();
    let reply = api
        .get(&format!("/hooks/runs/{}/logs", gone.id), Some(&reader))
        .await;
    let body = assert_json_error(&reply, StatusCode::NOT_FOUND, "not_found");
    let message = body["message"].as_str().unwrap();
    assert!(!message.contains("runs/"), "{message}");
    assert!(message.contains(&gone.id.to_string()), "{message}");

    let malformed = run("../../../etc/passwd");
    storage.record_run(&malformed).await.unwrap();
    let reply = api
        .get(&format!("/hooks/runs/{}/logs", malformed.id), Some(&reader))
        .await;
    let body = assert_json_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    assert!(!reply.text().contains("passwd"), "{body}");
    assert!(body.get("field").is_none(), "{body}");
}

/// `GET /auth/me`, the published SDK's pre-flight of `osa deploy`: the caller as the
/// server sees it; 401 without a valid token.
#[tokio::test]
async fn auth_me_describes_the_caller() {
    let api = api().await;
    let anonymous = api.get("/auth/me", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.json()["detail"]["code"], "missing_token");
    let garbage = api.get("/auth/me", Some("not-a-token")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.json()["detail"]["code"], "invalid_token");

    let admin = api.auth.issue("alice", &[Role::Admin], 60).unwrap();
    let me = api.get("/auth/me", Some(&admin)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    let me = me.json();
    assert_eq!(me["subject"], "alice");
    assert_eq!(me["external_id"], "alice");
    assert_eq!(me["roles"], json!(["admin"]));
    assert_eq!(me["scopes"], json!([]));

    let bot = api
        .get("/auth/me", Some(&machine("hooks:write runs:read")))
        .await
        .json();
    assert_eq!(bot["subject"], "https://ci.example.org#ci-bot");
    assert_eq!(bot["issuer"], CI);
    assert_eq!(bot["roles"], json!([]));
    assert_eq!(bot["scopes"], json!(["hooks:write", "runs:read"]));
}

/// A graceful shutdown waits for open connections; an event stream of a run that never
/// ends (no worker here) would keep it waiting forever. `close_streams` ends it.
#[tokio::test]
async fn closing_streams_lets_a_graceful_shutdown_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = api().await;
    let (run, admin) = api.pending_run().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = api.state.clone();
    let server = tokio::spawn(
        axum::serve(listener, api.app.clone())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                state.close_streams();
            })
            .into_future(),
    );
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/validations/{run}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    // The stream is open and stays open: the run is pending.
    let mut head = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut head))
        .await
        .expect("the stream starts")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&head[..n])
    );
    let mut rest = String::new();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), socket.read_to_string(&mut rest))
            .await
            .is_err(),
        "the stream of a pending run stays open: {rest}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the shutdown finishes once streams are closed")
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_string(&mut rest))
        .await
        .expect("the stream ended")
        .unwrap();

    // A stream opened after the close ends at once, after its replay.
    let events = api
        .get(&format!("/validations/{run}/events"), Some(&admin))
        .await;
    assert_eq!(events.status, StatusCode::OK);
}

impl Api {
    /// A run that stays pending (no worker runs here); returns its id and an admin token.
    async fn pending_run(&self) -> (String, String) {
        let admin = self.deployed_by_admin(convention("bad-")).await;
        let body = json!({"convention": "http-tests", "records": [{"id": "r1", "metadata": {}}]});
        let submitted = self
            .call(Method::POST, "/validations", Some(&admin), Some(body))
            .await;
        assert_eq!(
            submitted.status,
            StatusCode::ACCEPTED,
            "{}",
            submitted.text()
        );
        (submitted.json()["id"].as_str().unwrap().to_string(), admin)
    }
}

/// A token is checked when a stream opens; the stream must not outlive it. A stream of
/// a run that never ends, opened with a token accepted for two more seconds (`exp`
/// plus the leeway, none here), ends then with a `token_expired` error event.
#[tokio::test]
async fn event_streams_end_when_their_token_expires() {
    // No leeway, so the token stops being accepted at its `exp`.
    let mut auth = authenticator();
    auth.leeway_s = 0;
    let api = api_with(auth).await;
    let (run, _) = api.pending_run().await;
    let short = api.auth.issue("reader", &[Role::Admin], 2).unwrap();
    let events = tokio::time::timeout(
        Duration::from_secs(30),
        api.get(&format!("/validations/{run}/events"), Some(&short)),
    )
    .await
    .expect("the stream ends when its token expires");
    assert_eq!(events.status, StatusCode::OK);
    let text = events.text();
    assert!(
        text.contains("\"submitted\""),
        "the replay came first: {text}"
    );
    let last = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .last()
        .expect("events");
    assert!(last.contains("event: error"), "{text}");
    let data: Value = serde_json::from_str(
        last.lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("the error event has data"),
    )
    .unwrap();
    assert_eq!(data["code"], "token_expired", "{text}");
    assert_eq!(data["detail"]["code"], "token_expired", "{text}");
}

/// Open event streams are bounded: one more is answered 503 (JSON), and a place frees
/// up when a stream is dropped.
#[tokio::test]
async fn open_event_streams_are_bounded() {
    let api = api().await;
    let (run, admin) = api.pending_run().await;
    let app = router(api.state.clone().with_max_streams(1));
    let open = || {
        let request = Request::builder()
            .uri(format!("/api/v1/validations/{run}/events"))
            .header(header::AUTHORIZATION, format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request)
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = open().await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(second.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("1 event streams"),
        "{body}"
    );
    // "Unlimited" is as many as a semaphore holds, not a panic.
    let _ = router(api.state.clone().with_max_streams(usize::MAX));
    // Other routes are not affected.
    let view = api.get(&format!("/validations/{run}"), Some(&admin)).await;
    assert_eq!(view.status, StatusCode::OK);
    drop(first);
    let third = open().await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
}

/// `POST /validations/{id}/cancel` needs `validations:write`; it cancels a run in
/// progress once, says so, and answers an unknown run with 404.
#[tokio::test]
async fn validations_can_be_cancelled() {
    let api = api().await;
    let (run, admin) = api.pending_run().await;
    let path = format!("/validations/{run}/cancel");
    let anonymous = api.call(Method::POST, &path, None, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let reader = api
        .call(Method::POST, &path, Some(&machine("runs:read")), None)
        .await;
    assert_eq!(reader.status, StatusCode::FORBIDDEN, "{}", reader.text());

    let writer = machine("validations:write");
    let first = api.call(Method::POST, &path, Some(&writer), None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(
        first.json(),
        json!({"id": run, "cancelled": true, "status": "cancelled"})
    );
    let view = api.get(&format!("/validations/{run}"), Some(&admin)).await;
    assert_eq!(view.json()["run"]["status"], "cancelled");
    let again = api.call(Method::POST, &path, Some(&writer), None).await;
    assert_eq!(
        again.json(),
        json!({"id": run, "cancelled": false, "status": "cancelled"})
    );
    let unknown = api
        .call(
            Method::POST,
            "/validations/00000000-0000-4000-8000-000000000000/cancel",
            Some(&writer),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["code"], "not_found");
}

/// A host application mounts the API beside its own routes and keeps its own 404:
/// OSA answers under its prefix (its JSON 404 for unknown paths there), the host
/// everywhere else.
#[tokio::test]
async fn the_api_mounts_in_a_host_application() {
    let api = api().await;
    let host = axum::Router::new()
        .route("/", axum::routing::get(|| async { "portal" }))
        .merge(osa::http::router_at("/archive/api", api.state.clone()))
        .fallback(|| async { (StatusCode::NOT_FOUND, "host: not here") });
    let send = |path: &str| {
        let host = host.clone();
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        async move {
            let response = host.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(send("/").await, (StatusCode::OK, "portal".to_string()));
    let (status, body) = send("/archive/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ok"
    );
    assert_eq!(
        send("/elsewhere").await,
        (StatusCode::NOT_FOUND, "host: not here".to_string())
    );
    assert_eq!(
        send("/api/v1/health").await.1,
        "host: not here",
        "nothing is served at the default prefix"
    );
    let (status, body) = send("/archive/api/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "not_found"
    );
}

/// A JWKS issuer's key set is fetched when a token first needs it: the API
/// authenticates with `Authenticator::authenticate`, not only with cached keys. The set
/// is served by a local HTTP server; the keys are osa-core's test-only fixtures.
#[cfg(feature = "jwks")]
#[tokio::test]
async fn a_jwks_issuer_s_set_is_fetched_on_first_use() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const JWKS_FIXTURES: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/osa-core/tests/fixtures/jwks");
    let fixture = |name: &str| std::fs::read_to_string(format!("{JWKS_FIXTURES}/{name}")).unwrap();
    let keys: Value = serde_json::from_str(&fixture("keys.json")).unwrap();
    let body = json!({"keys": [keys["rsa-1"]]}).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    let fetches = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = fetches.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = vec![0u8; 4096];
            let _ = stream.read(&mut head).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    const ISSUER: &str = "https://ci.example.org";
    let node = NodeIssuer::new("osa-test", "authenticated", SECRET).unwrap();
    let issuer = MachineIssuer::jwks(ISSUER, &url, vec!["osa".into()]).unwrap();
    let api = api_with(
        Authenticator::new(node)
            .with_machine_issuer(issuer)
            .unwrap(),
    )
    .await;

    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = json!({"iss": ISSUER, "sub": "pipeline", "aud": "osa",
                        "exp": chrono::Utc::now().timestamp() + 300, "scope": "runs:read"});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(fixture("rsa-1.key.pem").as_bytes()).unwrap();
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();

    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "nothing is fetched before a token needs it"
    );
    let me = api.get("/auth/me", Some(&token)).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&me.body)
    );
    assert_eq!(me.json()["subject"], "https://ci.example.org#pipeline");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Cached from then on.
    assert_eq!(
        api.get("/auth/me", Some(&token)).await.status,
        StatusCode::OK
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

/// A host application resolves callers its own way: a `PrincipalResolver` in place of
/// bearer tokens, with the scope gates applied to whatever it returns.
#[tokio::test]
async fn a_host_resolves_its_own_callers() {
    use osa::auth::{Principal, Scope};

    struct Gateway;

    #[async_trait::async_trait]
    impl osa::http::PrincipalResolver for Gateway {
        async fn resolve(
            &self,
            parts: &axum::http::request::Parts,
        ) -> osa::Result<Option<Principal>> {
            let Some(user) = parts.headers.get("x-user") else {
                return Ok(None);
            };
            let user = user.to_str().unwrap_or_default();
            if user == "mallory" {
                return Err(osa::Error::Unauthenticated {
                    reason: "banned".into(),
                });
            }
            Ok(Some(Principal {
                subject: format!("gateway#{user}"),
                issuer: "gateway".into(),
                roles: Default::default(),
                scopes: [Scope::RunsRead].into(),
                expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
            }))
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let archive = LocalArchive::open(dir.path()).await.unwrap();
    let state = ApiState::from_local(&archive, authenticator()).with_principal_resolver(Gateway);
    let app = router(state);
    let call = |user: Option<&'static str>, method: Method, path: &'static str| {
        let app = app.clone();
        async move {
            let mut request = Request::builder()
                .method(method)
                .uri(format!("/api/v1{path}"));
            if let Some(user) = user {
                request = request.header("x-user", user);
            }
            let response = app
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, me) = call(Some("alice"), Method::GET, "/auth/me").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["subject"], "gateway#alice");
    assert_eq!(me["scopes"], json!(["runs:read"]));
    // Its scopes gate as a token's would.
    let (status, _) = call(Some("alice"), Method::POST, "/validations").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(None, Method::GET, "/auth/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, refused) = call(Some("mallory"), Method::GET, "/auth/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        refused["message"].as_str().unwrap().contains("banned"),
        "{refused}"
    );
    // A bearer token means nothing to it.
    let token = authenticator().issue("root", &[Role::Admin], 60).unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/auth/me")
                .header("authorization", format!("Bearer {token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
