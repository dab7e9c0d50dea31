//! Record files over HTTP: `PUT /uploads/{name}` streams a file into the blob store
//! under the upload prefix within the size limit and answers its key, size and sha256;
//! a submission names the keys, and the hook gets the files. A client needs only the
//! server's URL and a token.

mod common;

use common::{Served, get, post, put_bytes};
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

    // Over the limit: refused by its declared length, or while streaming; nothing kept.
    let over: Vec<u8> = vec![1; LIMIT + 1];
    for chunked in [false, true] {
        let answer = put_bytes(
            &served.url("/uploads/over.txt"),
            Some(&admin),
            &over,
            chunked,
        );
        assert_eq!(answer.status, 413, "chunked {chunked}: {:?}", answer.body);
        assert_eq!(answer.body["code"], "too_large");
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
