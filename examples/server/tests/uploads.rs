//! Record files over HTTP: `PUT /uploads/{name}` streams a file into the blob store
//! under the upload prefix within the size limit and answers its key, size and sha256;
//! a submission names the keys, and the hook gets the files. A client needs only the
//! server's URL and a token.

mod common;

use common::{Served, get, post, post_empty, put_bytes};
use osa::id::Digest;
use serde_json::json;

const LIMIT: usize = 2_000_000;

#[test]
fn files_uploaded_over_http_reach_the_hooks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("OSA_LIMITS__MAX_FILE_BYTES", LIMIT.to_string())];
    let mut served = Served::start(dir.path(), &[], &env);
    let admin = served.process.wait_for("admin token (1 h): ");
    let uploads = dir.path().join("osa-archive/blobs/uploads");
    let stored = || std::fs::read_dir(&uploads).map(|d| d.count()).unwrap_or(0);

    let refused = put_bytes(&served.url("/uploads/notes.txt"), None, b"x", false);
    assert_eq!(refused.status, 401, "{:?}", refused.body);

    let small = put_bytes(
        &served.url("/uploads/notes.txt"),
        Some(&admin),
        b"hello",
        false,
    );
    assert_eq!(small.status, 201, "{:?}", small.body);
    let key = small.body["key"].as_str().expect("key").to_string();
    assert!(
        key.starts_with("uploads/") && key.ends_with("/notes.txt"),
        "{key}"
    );
    assert_eq!(small.body["size"], 5);
    assert_eq!(small.body["sha256"], json!(Digest::of_bytes(b"hello")));

    // Up to the limit, in a chunked body of unknown length: streamed and hashed.
    let big: Vec<u8> = (0..LIMIT).map(|i| (i % 251) as u8).collect();
    let at_limit = put_bytes(&served.url("/uploads/big.txt"), Some(&admin), &big, true);
    assert_eq!(at_limit.status, 201, "{:?}", at_limit.body);
    assert_eq!(at_limit.body["size"], LIMIT);
    assert_eq!(at_limit.body["sha256"], json!(Digest::of_bytes(&big)));
    let again = put_bytes(
        &served.url("/uploads/notes.txt"),
        Some(&admin),
        b"other",
        false,
    );
    assert_ne!(
        again.body["key"],
        json!(key),
        "an upload never replaces another"
    );
    assert_eq!(stored(), 3);

    // Over the limit: refused by its declared length before any of the body is read,
    // or while streaming a body of unknown length; nothing kept. (Over a raw socket:
    // a client still writing when the server answers and closes would see its write
    // cut off instead of the answer.)
    let url = served.url("/uploads/over.txt");
    let declared = raw_put(&url, &admin, &format!("Content-Length: {}", LIMIT + 1), b"");
    let mut chunked = format!("{:x}\r\n", LIMIT + 1).into_bytes();
    chunked.extend(std::iter::repeat_n(1u8, LIMIT + 1));
    chunked.extend_from_slice(b"\r\n");
    let streamed = raw_put(&url, &admin, "Transfer-Encoding: chunked", &chunked);
    for (how, (status, body)) in [("declared", declared), ("streamed", streamed)] {
        assert_eq!(status, 413, "{how}: {body}");
        assert_eq!(body["code"], "too_large", "{how}");
    }
    for bad in ["%2E%2E", "a%2Fb", "%00"] {
        let answer = put_bytes(
            &served.url(&format!("/uploads/{bad}")),
            Some(&admin),
            b"x",
            false,
        );
        assert_eq!(answer.status, 422, "{bad}: {:?}", answer.body);
        assert_eq!(answer.body["field"], "name");
    }
    assert_eq!(stored(), 3, "refused uploads leave nothing");

    // A submission names the keys; the hook reads the files.
    let files_log = dir.path().join("files.log");
    let slug = common::deploy(
        &served,
        &admin,
        &common::convention(
            "Uploaded",
            &[("reader", json!({"name": "reader", "files_log": files_log}))],
        ),
    );
    let submitted = post(
        &served.url("/validations"),
        &admin,
        &json!({"convention": slug, "records": [{
            "id": "with-files",
            "metadata": {"title": "with files"},
            "files": [
                {"name": "notes.txt", "source": {"source": "object", "key": key}},
                {"name": "second.txt", "source": {"source": "object", "key": again.body["key"]}},
            ],
        }]}),
    );
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("id");
    let view = common::wait_for_run(&served.base, &admin, run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");
    let seen = std::fs::read_to_string(&files_log).expect("the hook logged its files");
    assert_eq!(seen, "notes.txt hello\nsecond.txt other\n");

    // The upload route is in the API's document.
    let doc = get(&served.url("/openapi.json"), None).body;
    assert!(
        doc["paths"]["/uploads/{name}"]["put"]["requestBody"].is_object(),
        "{doc}"
    );
}

/// With blobs in S3 (moto's server, a test server), a client can skip the server for
/// the bytes: `POST /uploads/{name}/presigned` answers a URL that puts the file into
/// the bucket; a submission names its key; the size limit still holds at submit.
#[test]
fn presigned_uploads_go_straight_to_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = common::unique("presigned");
    let (mut env, endpoint) = common::s3_env(&prefix);
    env.push(("OSA_LIMITS__MAX_FILE_BYTES", "1000".to_string()));
    let mut served = Served::start(dir.path(), &[], &env);
    let admin = served.process.wait_for("admin token (1 h): ");

    let anonymous = post_empty(&served.url("/uploads/notes.txt/presigned"), None);
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
    let presigned = post_empty(&served.url("/uploads/notes.txt/presigned"), Some(&admin));
    assert_eq!(presigned.status, 201, "{:?}", presigned.body);
    let key = presigned.body["key"].as_str().expect("key").to_string();
    assert!(
        key.starts_with("uploads/") && key.ends_with("/notes.txt"),
        "{key}"
    );
    assert_eq!(presigned.body["method"], "PUT");
    assert_eq!(presigned.body["max_bytes"], 1000);
    let url = presigned.body["url"].as_str().expect("url");
    assert!(url.starts_with(&endpoint), "{url} is not the store's");
    assert!(url.contains("X-Amz-Signature="), "{url}");

    // The bytes go to the store, with no token of the server's.
    let put = put_bytes(url, None, b"straight to the bucket", false);
    assert!(put.status == 200, "{:?}", put);
    assert!(
        common::bucket_keys(&endpoint, &prefix)
            .iter()
            .any(|k| k.ends_with(&key)),
        "{key} is not in the bucket"
    );
    // Another presigned key for a file over the limit: the store takes it, the
    // submission refuses it.
    let over = post_empty(&served.url("/uploads/big.txt/presigned"), Some(&admin));
    let over_key = over.body["key"].as_str().expect("key").to_string();
    let put = put_bytes(over.body["url"].as_str().unwrap(), None, &[7; 1001], false);
    assert_eq!(put.status, 200, "{put:?}");

    let files_log = dir.path().join("files.log");
    let slug = common::deploy(
        &served,
        &admin,
        &common::convention(
            "Presigned",
            &[("reader", json!({"name": "reader", "files_log": files_log}))],
        ),
    );
    let record = |key: &str| {
        json!({"convention": slug, "records": [{
            "id": "presigned",
            "metadata": {"title": "presigned"},
            "files": [{"name": "notes.txt", "source": {"source": "object", "key": key}}],
        }]})
    };
    let refused = post(&served.url("/validations"), &admin, &record(&over_key));
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert_eq!(refused.body["field"], "records[0].files[0].source.key");

    let submitted = post(&served.url("/validations"), &admin, &record(&key));
    assert_eq!(submitted.status, 202, "{:?}", submitted.body);
    let run = submitted.body["id"].as_str().expect("id");
    let view = common::wait_for_run(&served.base, &admin, run);
    assert_eq!(view["run"]["status"], "completed", "{view:?}");
    let seen = std::fs::read_to_string(&files_log).expect("the hook logged its files");
    assert_eq!(seen, "notes.txt straight to the bucket\n");
}

/// Without a blob store that signs URLs (a local directory), there is no presigned
/// upload: 404 naming the alternative.
#[test]
fn presigned_uploads_need_a_store_that_signs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = Served::start(dir.path(), &[], &[]);
    let admin = served.process.wait_for("admin token (1 h): ");
    let answer = post_empty(&served.url("/uploads/notes.txt/presigned"), Some(&admin));
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("PUT /uploads/{name}"),
        "{:?}",
        answer.body
    );
}

/// `PUT url` over a raw socket: the request head with `framing` (a `Content-Length`
/// or `Transfer-Encoding` header), then `body` as given (possibly less than declared,
/// or a chunked body without its last chunk); the status and the JSON body of the
/// answer.
fn raw_put(url: &str, token: &str, framing: &str, body: &[u8]) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = std::net::TcpStream::connect(host).expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("write the head");
    stream.write_all(body).expect("write the body");
    stream.flush().expect("flush");
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    // Until the head and a body of the declared length have arrived.
    loop {
        let n = stream.read(&mut buf).expect("read the answer");
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end].lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().expect("a length"))
            });
            if length.is_some_and(|length| answer.len() >= end + 4 + length) {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
