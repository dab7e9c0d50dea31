//! Conformance suite of [`Blobs`] over any object store: a local directory, memory,
//! and every cloud store a deployment uses (the S3 test runs it against an
//! S3-protocol test server). Each check uses keys under a prefix of its own, so a
//! shared bucket needs no cleaning between runs.

use bytes::Bytes;
use object_store::path::Path;

use crate::Error;
use crate::blob::{Blobs, Streamed};
use crate::id::Digest;

/// The bucket of the S3 test server.
pub const S3_TEST_BUCKET: &str = "osa-test";

/// The endpoint of the S3-protocol test server (moto's server): `OSA_S3_ENDPOINT`
/// when set, else the one `scripts/s3-setup.sh` starts (or finds running) with the
/// bucket [`S3_TEST_BUCKET`].
pub fn s3_test_server() -> String {
    if let Ok(endpoint) = std::env::var("OSA_S3_ENDPOINT")
        && !endpoint.is_empty()
    {
        return endpoint;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/s3-setup.sh");
    let output = std::process::Command::new("bash")
        .arg(script)
        .env("OSA_S3_BUCKET", S3_TEST_BUCKET)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/s3-setup.sh");
    assert!(output.status.success(), "scripts/s3-setup.sh failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("the script prints the endpoint")
        .trim()
        .to_string()
}

/// object_store options that reach the test server at `endpoint`.
pub fn s3_test_options(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_string()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
    ]
}

/// Runs every check on `blobs`; `scratch` is a local directory for files read out.
pub async fn conformance(blobs: &Blobs, scratch: &std::path::Path) {
    let prefix = format!("conformance-{}", uuid::Uuid::new_v4().simple());
    round_trip(blobs, &prefix).await;
    streams_large_blobs(blobs, &prefix, scratch).await;
    refuses_what_is_over_the_limit(blobs, &prefix, scratch).await;
    copies_and_deletes(blobs, &prefix).await;
}

fn key(prefix: &str, name: &str) -> Path {
    Path::from(format!("{prefix}/{name}"))
}

/// put, get, size, JSON; NotFound for what is absent.
pub async fn round_trip(blobs: &Blobs, prefix: &str) {
    let k = key(prefix, "small.txt");
    blobs.put(&k, "hello").await.expect("put");
    assert_eq!(blobs.get(&k).await.expect("get"), Bytes::from("hello"));
    assert_eq!(blobs.size(&k).await.expect("size"), 5);
    blobs.put(&k, "replaced").await.expect("put again");
    assert_eq!(blobs.get(&k).await.expect("get"), Bytes::from("replaced"));
    let j = key(prefix, "value.json");
    blobs
        .put_json(&j, &serde_json::json!({"a": [1, 2]}))
        .await
        .expect("put json");
    let value: serde_json::Value = blobs.get_json(&j).await.expect("get json");
    assert_eq!(value, serde_json::json!({"a": [1, 2]}));
    let absent = key(prefix, "absent");
    assert!(matches!(
        blobs.get(&absent).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        blobs.size(&absent).await,
        Err(Error::NotFound { .. })
    ));
}

/// A blob larger than one part of a multipart upload goes in by `put_stream` (size and
/// sha256 reported) and out by `get_to_file`, byte for byte.
pub async fn streams_large_blobs(blobs: &Blobs, prefix: &str, scratch: &std::path::Path) {
    // Larger than one part of a multipart upload (10 MiB by default).
    let data: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let k = key(prefix, "big.bin");
    let stored = blobs
        .put_stream(&k, &data[..], data.len() as u64)
        .await
        .expect("put_stream");
    assert_eq!(
        stored,
        Streamed::Stored {
            size: data.len() as u64,
            sha256: Digest::of_bytes(&data)
        }
    );
    assert_eq!(blobs.size(&k).await.expect("size"), data.len() as u64);
    let copy = scratch.join(format!("{prefix}-big.bin"));
    assert_eq!(
        blobs.get_to_file(&k, &copy).await.expect("get_to_file"),
        data.len() as u64
    );
    assert!(
        std::fs::read(&copy).expect("read copy") == data,
        "the copy is the blob"
    );
    let _ = std::fs::remove_file(&copy);
}

/// Over the limit nothing is stored, and reading it out is NotFound (no file made).
pub async fn refuses_what_is_over_the_limit(
    blobs: &Blobs,
    prefix: &str,
    scratch: &std::path::Path,
) {
    let data = vec![7u8; 1000];
    let over = key(prefix, "over.bin");
    let refused = blobs
        .put_stream(&over, &data[..], 999)
        .await
        .expect("put_stream");
    assert_eq!(refused, Streamed::TooLarge { read: 1000 });
    assert!(matches!(
        blobs.size(&over).await,
        Err(Error::NotFound { .. })
    ));
    let missing = scratch.join(format!("{prefix}-over.bin"));
    assert!(matches!(
        blobs.get_to_file(&over, &missing).await,
        Err(Error::NotFound { .. })
    ));
    // Exactly at the limit is fine.
    let at = key(prefix, "at.bin");
    let stored = blobs
        .put_stream(&at, &data[..], 1000)
        .await
        .expect("put_stream");
    assert!(matches!(stored, Streamed::Stored { size: 1000, .. }));
}

/// copy leaves an independent blob; delete removes it, and deleting again is fine.
pub async fn copies_and_deletes(blobs: &Blobs, prefix: &str) {
    let from = key(prefix, "from.txt");
    let to = key(prefix, "to.txt");
    blobs.put(&from, "one").await.expect("put");
    blobs.copy(&from, &to).await.expect("copy");
    blobs.put(&from, "two").await.expect("put");
    assert_eq!(blobs.get(&to).await.expect("get"), Bytes::from("one"));
    blobs.delete(&to).await.expect("delete");
    assert!(matches!(blobs.get(&to).await, Err(Error::NotFound { .. })));
    blobs.delete(&to).await.expect("delete again");
}
