//! Conditional and metadata-only changes over HTTP: the profile's `ETag`, `If-Match`
//! and `If-None-Match: *` on `PUT`, `PATCH` and `DELETE` (412, nothing changed), 304
//! on a read, and `PATCH` as a JSON Merge Patch that keeps the image.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TestServer, expect_error, form, png};
use profilestore_api::ApiConfig;
use profilestore_core::error::StoreError;
use profilestore_core::settings::Timings;
use profilestore_core::store::MetadataStore;
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};
use reqwest::Response;
use serde_json::{Value, json};
use tokio::sync::Barrier;

fn etag(response: &Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

async fn put_if(server: &TestServer, user: &str, metadata: &str, header: (&str, &str)) -> Response {
    let request = server.client.put(server.url(&format!("/v1/profiles/{user}")));
    request.header(header.0, header.1).multipart(form(metadata, png(2, 2), "image/png")).send().await.unwrap()
}

async fn patch(server: &TestServer, user: &str, body: &str, condition: Option<&str>) -> Response {
    let mut request = server
        .client
        .patch(server.url(&format!("/v1/profiles/{user}")))
        .header("content-type", "application/merge-patch+json")
        .body(body.to_owned());
    if let Some(tag) = condition {
        request = request.header("if-match", tag);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn if_none_match_star_creates_once_and_if_match_guards_each_version() {
    let server = TestServer::start(ApiConfig::default()).await;
    let created = put_if(&server, "ada", r#"{"v":1}"#, ("if-none-match", "*")).await;
    assert_eq!(created.status(), 200);
    let v1 = etag(&created);
    let again = put_if(&server, "ada", r#"{"v":9}"#, ("if-none-match", "*")).await;
    expect_error(again, 412, "precondition_failed").await;

    let read = server.get("/v1/profiles/ada").await;
    assert_eq!(etag(&read), v1, "a read answers the version the write answered");
    let not_modified = server.client.get(server.url("/v1/profiles/ada")).header("if-none-match", &v1).send().await;
    assert_eq!(not_modified.unwrap().status(), 304);

    // Two editors read v1; the first to write wins, the second is refused unseen.
    let first = put_if(&server, "ada", r#"{"v":2}"#, ("if-match", &v1)).await;
    assert_eq!(first.status(), 200);
    let v2 = etag(&first);
    assert_ne!(v1, v2);
    let second = put_if(&server, "ada", r#"{"v":3}"#, ("if-match", &v1)).await;
    expect_error(second, 412, "precondition_failed").await;
    let stored: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(stored["metadata"], json!({"v": 2}), "the refused write changed nothing");

    let stale_delete = server.client.delete(server.url("/v1/profiles/ada")).header("if-match", &v1).send().await;
    expect_error(stale_delete.unwrap(), 412, "precondition_failed").await;
    let weak = format!("W/{v2}");
    let weak_delete = server.client.delete(server.url("/v1/profiles/ada")).header("if-match", weak).send().await;
    expect_error(weak_delete.unwrap(), 412, "precondition_failed").await;
    let delete = server.client.delete(server.url("/v1/profiles/ada")).header("if-match", &v2).send().await;
    assert_eq!(delete.unwrap().status(), 204);
    let gone = server.client.delete(server.url("/v1/profiles/ada")).header("if-match", &v2).send().await;
    expect_error(gone.unwrap(), 404, "profile_not_found").await;
    let nothing_to_match = put_if(&server, "ada", "{}", ("if-match", "*")).await;
    expect_error(nothing_to_match, 412, "precondition_failed").await;
}

#[tokio::test]
async fn patch_merges_the_metadata_and_keeps_the_image() {
    let server = TestServer::start(ApiConfig::default()).await;
    let put = server.put("ada", form(r#"{"name":"Ada","bio":{"born":1815,"city":"London"}}"#, png(3, 2), "image/png"));
    let put = put.await;
    let v1 = etag(&put);
    let before: Value = put.json().await.unwrap();

    let patched = patch(&server, "ada", r#"{"bio":{"city":null},"title":"Countess"}"#, Some(&v1)).await;
    assert_eq!(patched.status(), 200);
    let v2 = etag(&patched);
    assert_ne!(v1, v2, "a metadata-only update is a new version");
    let after: Value = patched.json().await.unwrap();
    assert_eq!(after["metadata"], json!({"name": "Ada", "bio": {"born": 1815}, "title": "Countess"}));
    assert_eq!(after["image_id"], before["image_id"], "the image is kept");

    let read: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(read["metadata"], after["metadata"]);
    let image = server.get("/v1/profiles/ada/image").await.bytes().await.unwrap();
    assert_eq!(image, png(3, 2), "the image's bytes are the first write's");

    // The version read before the patch no longer matches.
    expect_error(patch(&server, "ada", r#"{"x":1}"#, Some(&v1)).await, 412, "precondition_failed").await;
    expect_error(patch(&server, "nobody", r#"{"x":1}"#, None).await, 404, "profile_not_found").await;
    expect_error(patch(&server, "ada", "[1]", None).await, 422, "metadata_not_object").await;
    expect_error(patch(&server, "ada", "{", None).await, 400, "invalid_metadata").await;
    let huge = format!(r#"{{"bio":"{}"}}"#, "x".repeat(70 * 1024));
    expect_error(patch(&server, "ada", &huge, None).await, 413, "metadata_too_large").await;
    let plain = server.client.patch(server.url("/v1/profiles/ada")).header("content-type", "text/plain").body("{}");
    expect_error(plain.send().await.unwrap(), 415, "unsupported_media_type").await;
    let read_again: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(read_again["metadata"], after["metadata"], "refused patches changed nothing");
}

#[tokio::test]
async fn conditions_that_cannot_be_honoured_are_refused_before_the_upload() {
    let server = TestServer::start(ApiConfig::default()).await;
    for (name, value) in [("if-none-match", "\"abc\""), ("if-match", "unquoted")] {
        let refused = put_if(&server, "ada", "{}", (name, value)).await;
        expect_error(refused, 400, "invalid_precondition").await;
    }
    let both = server
        .client
        .put(server.url("/v1/profiles/ada"))
        .header("if-match", "*")
        .header("if-none-match", "*")
        .multipart(form("{}", png(2, 2), "image/png"));
    expect_error(both.send().await.unwrap(), 412, "precondition_failed").await;
    assert!(server.record("ada").await.is_none(), "a refused condition stored nothing");
}

/// Holds the commits of the `n` updates (every commit after the first, the plain
/// write's) until all `n` have arrived, so that all `n` updates have read the same
/// version before any commits. The hold is on the commit, not the read: an in-memory
/// read never yields, so an update released from a hold on its read would read and
/// commit before the next one read.
struct CommitTogether {
    n: usize,
    commits: AtomicUsize,
    barrier: Barrier,
}

#[async_trait::async_trait]
impl CallHook for CommitTogether {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == StoreCall::CommitRecord && (1..=self.n).contains(&self.commits.fetch_add(1, Ordering::SeqCst)) {
            self.barrier.wait().await;
        }
        Ok(())
    }
}

/// Concurrent patches of one profile that all read the same version, each merging
/// its own member: the compare-and-set lets one commit and sends the others to read
/// again, so every patch answered 200 is in the final metadata (a blind commit loses
/// all but the last).
#[tokio::test]
async fn concurrent_patches_lose_no_update() {
    const N: usize = 4;
    let together = CommitTogether { n: N, commits: AtomicUsize::new(0), barrier: Barrier::new(N) };
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Hooked::new(m, together) as Arc<dyn MetadataStore>, b)
    })
    .await;
    server.put("ada", form("{}", png(2, 2), "image/png")).await;
    let patches = (0..N).map(|n| {
        let server = &server;
        async move { patch(server, "ada", &format!(r#"{{"m{n}":{n}}}"#), None).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(patches).await;
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    let landed: Vec<usize> = (0..N).filter(|&n| statuses[n] == 200).collect();
    assert!(landed.len() >= 2, "at least the first commit and one re-read land: {statuses:?}");
    let read: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    for n in &landed {
        assert_eq!(read["metadata"][format!("m{n}")], json!(n), "patch {n} answered 200 and was lost: {read}");
    }
}
