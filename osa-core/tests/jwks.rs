//! Machine issuers whose keys are a JWKS document at a URL, served by a real HTTP
//! server on 127.0.0.1 that counts its requests.
//!
//! The keys in `fixtures/jwks` are test-only key pairs made with `openssl genpkey`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use osa_core::Error;
use osa_core::auth::{Authenticator, JwksOptions, MachineIssuer, NodeIssuer, SignatureAlgorithm};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CI: &str = "https://ci.example.org";
const AUD: &str = "osa";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-node";

const RSA_1: &str = include_str!("fixtures/jwks/rsa-1.key.pem");
const RSA_1_PUBLIC: &str = include_str!("fixtures/jwks/rsa-1.pub.pem");
const RSA_2: &str = include_str!("fixtures/jwks/rsa-2.key.pem");
const EC_1: &str = include_str!("fixtures/jwks/ec-1.key.pem");

/// A public key of the fixtures as a JWK (`rsa-1`, `rsa-2`, `ec-1`, `ec-384`).
fn jwk(name: &str) -> Value {
    let keys: Value =
        serde_json::from_str(include_str!("fixtures/jwks/keys.json")).expect("keys.json");
    keys[name].clone()
}

fn jwks(keys: &[Value]) -> Vec<u8> {
    json!({ "keys": keys }).to_string().into_bytes()
}

/// What the server answers.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    cache_control: Option<String>,
    /// Whether to send `Content-Length` (else the body ends when the connection
    /// closes).
    content_length: bool,
    delay: Duration,
}

impl Answer {
    fn set(keys: &[Value]) -> Answer {
        Answer {
            status: 200,
            body: jwks(keys),
            cache_control: None,
            content_length: true,
            delay: Duration::ZERO,
        }
    }
}

/// A JWKS endpoint on a local port.
struct JwksServer {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(answer: Answer) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let answer = answer.clone();
            let requests = requests.clone();
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let answer = answer.clone();
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        // The request head (a GET has no body).
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        assert!(
                            head.starts_with(b"GET /jwks HTTP/1.1\r\n"),
                            "a GET of /jwks"
                        );
                        requests.fetch_add(1, Ordering::SeqCst);
                        let answer = answer.lock().expect("answer").clone();
                        tokio::time::sleep(answer.delay).await;
                        let mut response = format!(
                            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nConnection: close\r\n",
                            answer.status
                        );
                        if answer.content_length {
                            response
                                .push_str(&format!("Content-Length: {}\r\n", answer.body.len()));
                        }
                        if let Some(cache_control) = &answer.cache_control {
                            response.push_str(&format!("Cache-Control: {cache_control}\r\n"));
                        }
                        response.push_str("\r\n");
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.write_all(&answer.body).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        });
        JwksServer {
            addr,
            answer,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().expect("answer") = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops accepting connections: the port refuses from now on.
    async fn stop(&self) {
        self.task.abort();
        while !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Options with a short rate-limit window and short freshness, for tests that wait.
fn quick() -> JwksOptions {
    let mut options = JwksOptions::default();
    options.min_refresh_interval = Duration::from_millis(200);
    options.min_ttl = Duration::from_millis(200);
    options.default_ttl = Duration::from_millis(200);
    options
}

fn authenticator(
    url: &str,
    algorithms: &[SignatureAlgorithm],
    options: JwksOptions,
) -> Authenticator {
    let issuer = MachineIssuer::jwks(CI, url, vec![AUD.into()])
        .expect("issuer")
        .with_algorithms(algorithms.iter().copied())
        .expect("algorithms")
        .with_jwks_options(options)
        .expect("options");
    let node = NodeIssuer::new("osa-node", "authenticated", SECRET).expect("node");
    Authenticator::new(node)
        .with_machine_issuer(issuer)
        .expect("authenticator")
}

fn claims() -> Value {
    json!({"iss": CI, "sub": "pipeline-7", "aud": AUD,
           "exp": chrono::Utc::now().timestamp() + 300, "scope": "hooks:write"})
}

fn token_with(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA key")
}

fn ec(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC key")
}

fn rs256(kid: &str) -> String {
    token_with(Algorithm::RS256, Some(kid), &rsa(RSA_1), &claims())
}

fn refused(result: osa_core::Result<osa_core::auth::Principal>) -> String {
    match result {
        Err(Error::Unauthenticated { reason }) => reason,
        other => panic!("expected Unauthenticated, got {other:?}"),
    }
}

use SignatureAlgorithm::{ES256, RS256};

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_keys_of_the_set() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1"), jwk("ec-1")])).await;
    let auth = authenticator(&server.url(), &[RS256, ES256], JwksOptions::default());
    let rsa_token = rs256("rsa-1");
    // Nothing is fetched by verify: before a fetch, the set is unknown.
    let reason = refused(auth.verify(&rsa_token));
    assert!(reason.contains("not been fetched"), "{reason}");
    assert_eq!(server.requests(), 0);

    let p = auth.authenticate(&rsa_token).await.expect("RS256 accepted");
    assert_eq!(p.subject, "https://ci.example.org#pipeline-7");
    assert_eq!(p.scopes, [osa_core::auth::Scope::HooksWrite].into());
    let ec_token = token_with(Algorithm::ES256, Some("ec-1"), &ec(EC_1), &claims());
    auth.authenticate(&ec_token).await.expect("ES256 accepted");
    // Now cached, verify accepts both too.
    auth.verify(&rsa_token).expect("cached RS256");
    auth.verify(&ec_token).expect("cached ES256");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_new_kid_is_fetched_once_and_accepted() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let mut options = JwksOptions::default();
    options.min_refresh_interval = Duration::ZERO;
    let auth = authenticator(&server.url(), &[RS256], options);
    auth.authenticate(&rs256("rsa-1")).await.expect("rsa-1");
    assert_eq!(server.requests(), 1);

    // The issuer rotates to rsa-2.
    server.answer(Answer::set(&[jwk("rsa-1"), jwk("rsa-2")]));
    let rotated = token_with(Algorithm::RS256, Some("rsa-2"), &rsa(RSA_2), &claims());
    let reason = refused(auth.verify(&rotated));
    assert!(reason.contains("no key \"rsa-2\""), "{reason}");
    auth.authenticate(&rotated)
        .await
        .expect("rsa-2 after one fetch");
    assert_eq!(server.requests(), 2);
    auth.authenticate(&rotated).await.expect("rsa-2 cached");
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("rsa-1 still there");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn unknown_kids_within_the_rate_limit_window_fetch_once() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    for kid in ["random-1", "random-2", "random-1"] {
        let reason = refused(auth.authenticate(&rs256(kid)).await);
        assert!(reason.contains(&format!("no key {kid:?}")), "{reason}");
    }
    assert_eq!(server.requests(), 1, "one fetch in 30 s, whatever the kids");
    auth.authenticate(&rs256("rsa-1")).await.expect("known kid");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn the_rate_limit_window_ends() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let mut options = JwksOptions::default();
    options.min_refresh_interval = Duration::from_secs(1);
    let auth = authenticator(&server.url(), &[RS256], options);
    refused(auth.authenticate(&rs256("rsa-2")).await);
    refused(auth.authenticate(&rs256("rsa-2")).await);
    assert_eq!(server.requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(auth.authenticate(&rs256("rsa-2")).await);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn concurrent_authentications_share_one_fetch() {
    let mut answer = Answer::set(&[jwk("rsa-1")]);
    answer.delay = Duration::from_millis(300);
    let server = JwksServer::start(answer).await;
    // No rate limit: the callers share the fetch in flight, not a window.
    let mut options = JwksOptions::default();
    options.min_refresh_interval = Duration::ZERO;
    let auth = Arc::new(authenticator(&server.url(), &[RS256], options));
    let token = rs256("rsa-1");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let auth = auth.clone();
            let token = token.clone();
            tokio::spawn(async move { auth.authenticate(&token).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("accepted");
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_fetch_given_up_midway_does_not_hold_back_the_next() {
    let mut answer = Answer::set(&[jwk("rsa-1")]);
    answer.delay = Duration::from_secs(5);
    let server = JwksServer::start(answer.clone()).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    // A caller that goes away while the issuer is slow (a client that disconnects).
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        auth.authenticate(&rs256("rsa-1")),
    )
    .await;
    assert!(gave_up.is_err(), "the first call was still waiting");
    answer.delay = Duration::ZERO;
    server.answer(answer);
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("the next caller fetches");
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn expired_misaddressed_and_forged_tokens_are_refused() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("a good token");

    let mut expired = claims();
    expired["exp"] = json!(chrono::Utc::now().timestamp() - 3600);
    match auth
        .authenticate(&token_with(
            Algorithm::RS256,
            Some("rsa-1"),
            &rsa(RSA_1),
            &expired,
        ))
        .await
    {
        Err(Error::TokenExpired { reason }) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("expected TokenExpired, got {other:?}"),
    }

    let mut elsewhere = claims();
    elsewhere["aud"] = json!("another-service");
    let reason = refused(
        auth.authenticate(&token_with(
            Algorithm::RS256,
            Some("rsa-1"),
            &rsa(RSA_1),
            &elsewhere,
        ))
        .await,
    );
    assert!(reason.to_lowercase().contains("audience"), "{reason}");

    let mut stranger = claims();
    stranger["iss"] = json!("https://other-ci.example.org");
    let reason = refused(
        auth.authenticate(&token_with(
            Algorithm::RS256,
            Some("rsa-1"),
            &rsa(RSA_1),
            &stranger,
        ))
        .await,
    );
    assert!(reason.contains("unknown issuer"), "{reason}");

    // Signed with rsa-2's private key, naming rsa-1.
    let forged = token_with(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_2), &claims());
    let reason = refused(auth.authenticate(&forged).await);
    assert!(reason.to_lowercase().contains("signature"), "{reason}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let mut rsa_hs = jwk("rsa-1");
    rsa_hs["kid"] = json!("rsa-unpinned");
    rsa_hs.as_object_mut().expect("object").remove("alg");
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1"), jwk("ec-1"), rsa_hs])).await;
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };

    // Pinned to ES256: an RS256 token with a key of the set is refused.
    let es_only = authenticator(&server.url(), &[ES256], JwksOptions::default());
    es_only
        .authenticate(&token_with(
            Algorithm::ES256,
            Some("ec-1"),
            &ec(EC_1),
            &claims(),
        ))
        .await
        .expect("ES256");
    let reason = refused(es_only.authenticate(&rs256("rsa-1")).await);
    assert!(
        reason.contains("accepts tokens signed with ES256, not \"RS256\""),
        "{reason}"
    );

    let both = authenticator(
        &server.url(),
        &[RS256, ES256, SignatureAlgorithm::PS256],
        JwksOptions::default(),
    );
    both.authenticate(&rs256("rsa-1")).await.expect("RS256");
    // HS256 with the RSA public key (PEM) as the HMAC secret.
    for secret in [
        RSA_1_PUBLIC.as_bytes(),
        jwk("rsa-1")["n"].as_str().expect("n").as_bytes(),
    ] {
        let confused = token_with(
            Algorithm::HS256,
            Some("rsa-1"),
            &EncodingKey::from_secret(secret),
            &claims(),
        );
        let reason = refused(both.authenticate(&confused).await);
        assert!(reason.contains("not \"HS256\""), "{reason}");
    }
    // ES256 naming the RSA key: the algorithm does not fit its type.
    let misfit = token_with(Algorithm::ES256, Some("rsa-1"), &ec(EC_1), &claims());
    let reason = refused(both.authenticate(&misfit).await);
    assert!(reason.contains("does not fit key \"rsa-1\""), "{reason}");
    // PS256 is pinned and fits RSA, but rsa-1's JWK says RS256.
    let other_alg = token_with(Algorithm::PS256, Some("rsa-1"), &rsa(RSA_1), &claims());
    let reason = refused(both.authenticate(&other_alg).await);
    assert!(
        reason.contains("key \"rsa-1\" is for RS256, the token says PS256"),
        "{reason}"
    );
    // The same key without `alg` in its JWK verifies PS256.
    both.authenticate(&token_with(
        Algorithm::PS256,
        Some("rsa-unpinned"),
        &rsa(RSA_1),
        &claims(),
    ))
    .await
    .expect("PS256 with a key without alg");
    // Unsigned.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})),
        b64(claims())
    );
    refused(both.authenticate(&none).await);
    assert_eq!(server.requests(), 2, "each authenticator fetched once");
}

#[tokio::test]
async fn tokens_that_cannot_verify_fetch_nothing() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let hs256 = token_with(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(RSA_1_PUBLIC.as_bytes()),
        &claims(),
    );
    let none = format!("{}.{}.", b64(json!({"alg": "none"})), b64(claims()));
    let es256 = token_with(Algorithm::ES256, Some("ec-1"), &ec(EC_1), &claims());
    let mut stranger = claims();
    stranger["iss"] = json!("https://other-ci.example.org");
    let unknown_issuer = token_with(Algorithm::RS256, Some("rsa-1"), &rsa(RSA_1), &stranger);
    for token in [hs256, none, es256, unknown_issuer, "a.b.c".to_string()] {
        refused(auth.authenticate(&token).await);
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_down_issuer_without_a_cached_set_is_named() {
    // A port that refuses connections.
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        format!("http://{}/jwks", listener.local_addr().expect("address"))
    };
    let auth = authenticator(&url, &[RS256], JwksOptions::default());
    let reason = refused(auth.authenticate(&rs256("rsa-1")).await);
    assert!(
        reason.contains("no key set of issuer \"https://ci.example.org\" could be fetched"),
        "{reason}"
    );
    assert!(
        reason.to_lowercase().contains("connect"),
        "the cause: {reason}"
    );
    // Within the window, the last failure is the answer, without a new attempt.
    let again = refused(auth.authenticate(&rs256("rsa-1")).await);
    assert!(again.contains("could be fetched"), "{again}");
    let warm_up = auth.refresh_keys().await.expect_err("no set");
    assert_eq!(warm_up.kind(), osa_core::ErrorKind::Unavailable);
    assert!(
        warm_up.to_string().contains("https://ci.example.org"),
        "{warm_up}"
    );

    // An issuer answering with an error status.
    let mut answer = Answer::set(&[]);
    answer.status = 503;
    let server = JwksServer::start(answer).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    let reason = refused(auth.authenticate(&rs256("rsa-1")).await);
    assert!(reason.contains("HTTP 503"), "{reason}");
    // Not a key set at all.
    let server = JwksServer::start(Answer {
        body: b"<html>hello</html>".to_vec(),
        ..Answer::set(&[])
    })
    .await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    let reason = refused(auth.authenticate(&rs256("rsa-1")).await);
    assert!(reason.contains("not a JWKS document"), "{reason}");
}

#[tokio::test]
async fn cached_keys_outlive_the_issuer() {
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1")])).await;
    let auth = authenticator(&server.url(), &[RS256], quick());
    auth.refresh_keys().await.expect("warm-up fetch");
    assert_eq!(server.requests(), 1);
    server.stop().await;
    // Expired cache and rate-limit window: authenticate tries the issuer, fails, and
    // keeps the cached set.
    tokio::time::sleep(Duration::from_millis(250)).await;
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("cached key");
    auth.verify(&rs256("rsa-1")).expect("cached key, sync");
    auth.refresh_keys().await.expect("a set is cached");
    // A kid the cache lacks is refused for what it is.
    let reason = refused(auth.authenticate(&rs256("rsa-9")).await);
    assert!(reason.contains("no key \"rsa-9\""), "{reason}");
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn cache_control_sets_the_freshness() {
    let mut answer = Answer::set(&[jwk("rsa-1")]);
    answer.cache_control = Some("public, max-age=0".into());
    let server = JwksServer::start(answer.clone()).await;
    let mut options = quick();
    options.min_refresh_interval = Duration::ZERO;
    options.default_ttl = Duration::from_secs(3600);
    let auth = authenticator(&server.url(), &[RS256], options);
    auth.authenticate(&rs256("rsa-1")).await.expect("first");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // max-age=0, bounded to min_ttl (200 ms): stale, fetched again.
    auth.authenticate(&rs256("rsa-1")).await.expect("second");
    assert_eq!(server.requests(), 2);
    answer.cache_control = Some("max-age=3600".into());
    server.answer(answer);
    tokio::time::sleep(Duration::from_millis(250)).await;
    auth.authenticate(&rs256("rsa-1")).await.expect("third");
    assert_eq!(server.requests(), 3);
    tokio::time::sleep(Duration::from_millis(250)).await;
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("fresh for an hour");
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn oversized_sets_are_refused() {
    // A valid document padded past 1 MiB, with and without Content-Length.
    let mut body = jwks(&[jwk("rsa-1")]);
    body.splice(1..1, std::iter::repeat_n(b' ', 1024 * 1024));
    for content_length in [true, false] {
        let server = JwksServer::start(Answer {
            body: body.clone(),
            content_length,
            ..Answer::set(&[])
        })
        .await;
        let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
        let reason = refused(auth.authenticate(&rs256("rsa-1")).await);
        assert!(reason.contains("larger than 1048576 bytes"), "{reason}");
    }
    // Just under the limit, it is accepted.
    let mut body = jwks(&[jwk("rsa-1")]);
    let room = 1024 * 1024 - body.len();
    body.splice(1..1, std::iter::repeat_n(b' ', room));
    let server = JwksServer::start(Answer {
        body,
        content_length: false,
        ..Answer::set(&[])
    })
    .await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    auth.authenticate(&rs256("rsa-1"))
        .await
        .expect("1 MiB exactly");
}

#[tokio::test]
async fn unusable_keys_are_skipped() {
    let mut encryption = jwk("rsa-2");
    encryption["kid"] = json!("enc");
    encryption["use"] = json!("enc");
    encryption["alg"] = json!("RSA-OAEP");
    let mut no_kid = jwk("rsa-1");
    no_kid.as_object_mut().expect("object").remove("kid");
    let keys = [
        encryption,
        json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA"}),
        json!({"kty": "quantum", "kid": "q", "qubits": 7}),
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
        json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"}),
        json!("not even an object"),
        no_kid,
    ];
    let server = JwksServer::start(Answer::set(&keys)).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    // The one usable key verifies a token without kid.
    let no_kid_token = token_with(Algorithm::RS256, None, &rsa(RSA_1), &claims());
    auth.authenticate(&no_kid_token)
        .await
        .expect("the one usable key");
    // The encryption key was skipped.
    let enc = token_with(Algorithm::RS256, Some("enc"), &rsa(RSA_2), &claims());
    let reason = refused(auth.authenticate(&enc).await);
    assert!(reason.contains("no key \"enc\""), "{reason}");
    let hmac = token_with(
        Algorithm::HS256,
        Some("hmac"),
        &EncodingKey::from_secret(b"secret"),
        &claims(),
    );
    refused(auth.authenticate(&hmac).await);

    // With two usable keys, a token without kid names none of them.
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1"), jwk("rsa-2")])).await;
    let auth = authenticator(&server.url(), &[RS256], JwksOptions::default());
    let reason = refused(auth.authenticate(&no_kid_token).await);
    assert!(reason.contains("2 usable keys"), "{reason}");
    // But usable means for the pinned algorithms: an ES256-pinned issuer has one.
    let server = JwksServer::start(Answer::set(&[jwk("rsa-1"), jwk("ec-1")])).await;
    let auth = authenticator(&server.url(), &[ES256], JwksOptions::default());
    auth.authenticate(&token_with(Algorithm::ES256, None, &ec(EC_1), &claims()))
        .await
        .expect("the one ES256 key");
}

#[test]
fn jwks_issuers_check_their_configuration() {
    let issuer = |url: &str| MachineIssuer::jwks(CI, url, vec![AUD.into()]);
    for url in [
        "file:///etc/keys.json",
        "ftp://ci.example.org/keys",
        "ci.example.org/keys",
    ] {
        let error = issuer(url).expect_err(url);
        assert_eq!(error.kind(), osa_core::ErrorKind::Invalid, "{url}");
    }
    let ok = issuer("https://ci.example.org/.well-known/jwks").expect("https");
    assert_eq!(ok.algorithms(), [RS256]);
    assert_eq!(ok.key_kind(), None);
    assert_eq!(
        ok.jwks_url(),
        Some("https://ci.example.org/.well-known/jwks")
    );
    assert!(MachineIssuer::jwks(CI, "https://ci.example.org/jwks", vec![]).is_err());
    assert!(ok.clone().with_algorithms([]).is_err());
    let mut options = JwksOptions::default();
    options.min_ttl = Duration::from_secs(7200);
    options.max_ttl = Duration::from_secs(3600);
    assert!(ok.with_jwks_options(options).is_err());
    let static_key =
        MachineIssuer::rsa_pem(CI, RSA_1_PUBLIC.as_bytes(), vec![AUD.into()]).expect("rsa");
    assert!(
        static_key
            .with_jwks_options(JwksOptions::default())
            .is_err()
    );
}
