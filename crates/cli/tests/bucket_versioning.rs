//! A real `serve` and a real `clean` on an S3 bucket with versioning on: both say at
//! start that deleted photos' bytes stay as noncurrent versions and that the erasure
//! bound does not hold without a lifecycle rule, and the server's `/metrics` shows the
//! state. Needs the `PROFILESTORE_TEST_S3_*` variables (scripts/test.sh starts Ceph's
//! RADOS Gateway); the test makes a bucket of its own, since versioning once turned on
//! can only be suspended.

mod support;

use profilestore_core::time::Clock;
use profilestore_runtime::SystemClock;
use profilestore_stores::S3Options;
use profilestore_stores::s3::BucketConfigClient;
use support::{S3Env, Server, bin, log_to, unique_suffix};

/// The line the check logs on a versioned bucket without a lifecycle rule.
const WARNING: &str = "blob bucket versioning is enabled: the cleaner's deletes only add delete markers";

/// A fresh bucket with versioning on, on the test server; its flags for `serve`.
async fn versioned_bucket(s3: &S3Env) -> Vec<String> {
    let bucket = format!("pv-cli-{}", unique_suffix());
    let options = S3Options {
        endpoint: Some(s3.endpoint.clone()),
        access_key_id: Some(s3.key.clone()),
        secret_access_key: Some(s3.secret.clone()),
        ..S3Options::default()
    };
    let client = BucketConfigClient::new(&bucket, &options).unwrap();
    let now = || SystemClock::new().now();
    client.create_bucket(now()).await.expect("create the test's bucket");
    client.set_versioning(true, now()).await.expect("turn versioning on");
    let s3 = S3Env { bucket, endpoint: s3.endpoint.clone(), key: s3.key.clone(), secret: s3.secret.clone() };
    s3.flags("photos")
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_and_clean_on_a_versioned_bucket_warn_that_the_erasure_bound_does_not_hold() {
    let Some(s3) = S3Env::from_env() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut stores = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    stores.extend(versioned_bucket(&s3).await);

    // The check runs before the server prints its address, so its line is in the log
    // once the address has been read.
    let log = dir.path().join("serve.log");
    let server = Server::try_start_logging(&stores, log_to(&log), "warn").unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(WARNING), "serve does not warn about the versioned bucket: {text}");
    assert!(text.contains("does NOT hold") && text.contains("NoncurrentVersionExpiration"), "{text}");
    let admin = server.admin.clone().expect("the admin listener is on");
    let scrape = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
    for (state, value) in [("enabled", 1), ("off", 0), ("unknown", 0)] {
        let series = format!("profilestore_blob_bucket_versioning{{state=\"{state}\"}} {value}");
        assert!(scrape.lines().any(|l| l == series), "no {series}: {scrape}");
    }
    assert!(server.terminate().success());

    // The cleaner, who does the deletes, says it too.
    let out = bin().arg("clean").args(&stores).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(WARNING), "clean does not warn about the versioned bucket: {stderr}");
}
