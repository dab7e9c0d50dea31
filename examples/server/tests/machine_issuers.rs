//! Machine issuers over HTTP: a server configured with a `jwks_url` issuer fetches
//! the key set from a real HTTP server at start and accepts RS256 tokens signed with
//! its keys on `GET /api/v1/auth/me`; bad tokens get 401; an issuer that cannot be
//! reached at start does not stop the server.
//!
//! The keys are osa-core's test-only fixtures (`osa-core/tests/fixtures/jwks`).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Served, get};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../osa-core/tests/fixtures/jwks"
);
const CI: &str = "https://ci.example.org";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("a fixture")
}

/// Serves `{"keys": [rsa-1]}` at `/jwks` on a local port; counts the requests.
fn serve_key_set() -> (String, Arc<AtomicUsize>) {
    let keys: Value = serde_json::from_str(&fixture("keys.json")).expect("keys.json");
    let body = json!({"keys": [keys["rsa-1"]]}).to_string();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("address"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, requests)
}

fn config(jwks_url: &str) -> String {
    format!(
        "[[auth.machine_issuers]]\nissuer = \"{CI}\"\naudience = [\"osa\"]\n\
         jwks_url = \"{jwks_url}\"\nalgorithms = [\"RS256\"]\nscope_claim = \"scp\"\n"
    )
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey, aud: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims = json!({"iss": CI, "sub": "pipeline-7", "aud": aud, "exp": now + 300,
                        "scp": ["hooks:write", "runs:read"]});
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

fn rsa(name: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(fixture(name).as_bytes()).expect("RSA key")
}

#[test]
fn a_jwks_issuer_s_tokens_are_accepted_and_bad_ones_refused() {
    let (url, requests) = serve_key_set();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("osa.toml"), config(&url)).expect("config");
    let served = Served::start(dir.path(), &[], &[("OSA_CONFIG", "osa.toml".into())]);
    assert!(
        requests.load(Ordering::SeqCst) >= 1,
        "the key set is fetched at start"
    );

    let good = token(Algorithm::RS256, "rsa-1", &rsa("rsa-1.key.pem"), "osa");
    let me = get(&served.url("/auth/me"), Some(&good));
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["subject"], "https://ci.example.org#pipeline-7");
    assert_eq!(me.body["issuer"], CI);
    assert_eq!(me.body["scopes"], json!(["hooks:write", "runs:read"]));

    let public = fixture("rsa-1.pub.pem");
    let bad = [
        // Signed with another key under the set's kid.
        token(Algorithm::RS256, "rsa-1", &rsa("rsa-2.key.pem"), "osa"),
        // Another audience.
        token(
            Algorithm::RS256,
            "rsa-1",
            &rsa("rsa-1.key.pem"),
            "elsewhere",
        ),
        // HS256 with the public key as the secret.
        token(
            Algorithm::HS256,
            "rsa-1",
            &EncodingKey::from_secret(public.as_bytes()),
            "osa",
        ),
        // A kid the set does not have.
        token(Algorithm::RS256, "rsa-9", &rsa("rsa-1.key.pem"), "osa"),
    ];
    for token in bad {
        let me = get(&served.url("/auth/me"), Some(&token));
        assert_eq!(me.status, 401, "{:?}", me.body);
        // Where the published CLI's pre-flight reads the code.
        assert_eq!(me.body["detail"]["code"], "invalid_token", "{:?}", me.body);
    }
    let anonymous = get(&served.url("/auth/me"), None);
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    assert_eq!(anonymous.body["detail"]["code"], "missing_token");
}

#[test]
fn an_unreachable_key_set_at_start_is_not_a_configuration_error() {
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/jwks", listener.local_addr().expect("address"))
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("osa.toml"), config(&url)).expect("config");
    let mut served = Served::start(dir.path(), &[], &[("OSA_CONFIG", "osa.toml".into())]);
    let good = token(Algorithm::RS256, "rsa-1", &rsa("rsa-1.key.pem"), "osa");
    let me = get(&served.url("/auth/me"), Some(&good));
    assert_eq!(me.status, 401, "{:?}", me.body);
    // The node's own tokens still work.
    let admin = served.process.wait_for("admin token (1 h): ");
    assert_eq!(get(&served.url("/auth/me"), Some(&admin)).status, 200);
}
