//! [`Blobs`] on S3: the blob conformance suite against an S3-protocol test server
//! (moto's server, started by scripts/s3-setup.sh unless `OSA_S3_ENDPOINT` names one),
//! through `Blobs::from_url("s3://bucket/prefix", options)` as deployments configure it.

use osa_core::blob::Blobs;
use osa_core::testing::blobs::{S3_TEST_BUCKET, s3_test_options, s3_test_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_passes_the_blob_conformance_suite() {
    let endpoint = s3_test_server();
    let scratch = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "s3://{}/suite-{}",
        S3_TEST_BUCKET,
        uuid::Uuid::new_v4().simple()
    );
    let blobs = Blobs::from_url(&url, s3_test_options(&endpoint)).expect("an S3 store");
    osa_core::testing::blobs::conformance(&blobs, scratch.path()).await;

    // The prefix of the URL is where the keys went, in the server's bucket.
    let plain = Blobs::from_url(
        &format!("s3://{}", S3_TEST_BUCKET),
        s3_test_options(&endpoint),
    )
    .expect("store");
    let inside = url.rsplit('/').next().expect("prefix");
    let listed: Vec<_> = {
        use futures::TryStreamExt;
        plain
            .store()
            .list(Some(&object_store::path::Path::from(inside)))
            .try_collect()
            .await
            .expect("list")
    };
    assert!(
        !listed.is_empty(),
        "the suite's blobs are under {inside}/ in the bucket"
    );
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_unavailable() {
    let blobs = Blobs::from_url("s3://osa-test/x", s3_test_options("http://127.0.0.1:1"))
        .expect("building a store contacts nothing");
    let error = blobs
        .get(&object_store::path::Path::from("k"))
        .await
        .expect_err("nothing answers");
    assert_eq!(error.kind(), osa_core::ErrorKind::Unavailable, "{error}");
}
