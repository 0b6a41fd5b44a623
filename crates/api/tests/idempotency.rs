//! `Idempotency-Key` on `PUT`: a retry answers the first write's result instead of
//! writing twice, whether the first answer was lost (503 `commit_unknown`), the
//! profile moved on since, or both attempts reach their commits at once; a key reused
//! for another request is refused.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{TestServer, expect_error, form, png};
use profilestore_api::ApiConfig;
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{
    CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, MetadataStore, Pairing, Precondition, Record,
};
use profilestore_core::time::Deadline;
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};
use reqwest::Response;
use serde_json::Value;
use tokio::sync::Barrier;

async fn put_keyed(server: &TestServer, key: &str, metadata: &str, image: Vec<u8>) -> Response {
    let request = server.client.put(server.url("/v1/profiles/ada")).header("idempotency-key", key);
    request.multipart(form(metadata, image, "image/png")).send().await.unwrap()
}

#[tokio::test]
async fn a_retry_answers_the_first_write_whatever_happened_since() {
    let server = TestServer::start(ApiConfig::default()).await;
    let first = put_keyed(&server, "k1", r#"{"v":1}"#, png(2, 2)).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let retry = put_keyed(&server, "k1", r#"{"v":1}"#, png(2, 2)).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry, first, "the retry answers the first write's body");
    assert_eq!(server.blobs.keys().len(), 1, "the retry stored no second image");

    let replaced = server.put("ada", form(r#"{"v":2}"#, png(3, 3), "image/png")).await;
    let replaced: Value = replaced.json().await.unwrap();
    let late_retry: Value = put_keyed(&server, "k1", r#"{"v":1}"#, png(2, 2)).await.json().await.unwrap();
    assert_eq!(late_retry["image_id"], first["image_id"], "a late retry still answers the first write");
    let now: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(now["image_id"], replaced["image_id"], "a late retry did not write over the replacement");

    let reused = put_keyed(&server, "k1", r#"{"v":3}"#, png(2, 2)).await;
    expect_error(reused, 422, "idempotency_key_reused").await;
    let other_image = put_keyed(&server, "k1", r#"{"v":1}"#, png(4, 4)).await;
    expect_error(other_image, 422, "idempotency_key_reused").await;
    let bad = server.client.put(server.url("/v1/profiles/ada")).header("idempotency-key", "has space");
    expect_error(
        bad.multipart(form("{}", png(2, 2), "image/png")).send().await.unwrap(),
        400,
        "invalid_idempotency_key",
    )
    .await;
    let unchanged: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(unchanged["image_id"], replaced["image_id"], "refused requests changed nothing");
}

/// Commits the first keyed write, then answers it as if the answer was lost on the
/// way (`CommitUnknown`), as a dropped connection to the database would.
struct LosesFirstAnswer {
    inner: Arc<dyn MetadataStore>,
    lost: AtomicBool,
}

#[async_trait::async_trait]
impl MetadataStore for LosesFirstAnswer {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        self.inner.get(user).await
    }
    async fn put_if_before(&self, r: &Record, p: &Precondition, d: &Deadline) -> Result<CommitOutcome, StoreError> {
        self.inner.put_if_before(r, p, d).await
    }
    async fn put_keyed_before(
        &self,
        r: &Record,
        p: &Precondition,
        key: &IdempotencyKey,
        d: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        let outcome = self.inner.put_keyed_before(r, p, key, d).await?;
        if !self.lost.swap(true, Ordering::SeqCst) {
            return Err(StoreError::new(StoreErrorKind::CommitUnknown, "the answer to COMMIT was lost"));
        }
        Ok(outcome)
    }
    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        self.inner.keyed_record(user, key).await
    }
    async fn delete_if_before(&self, u: &UserId, p: &Precondition, d: &Deadline) -> Result<DeleteOutcome, StoreError> {
        self.inner.delete_if_before(u, p, d).await
    }
    async fn names_image(&self, image_id: &ImageId) -> Result<bool, StoreError> {
        self.inner.names_image(image_id).await
    }
    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        self.inner.referenced(ids).await
    }
    async fn count_records(&self) -> Result<u64, StoreError> {
        self.inner.count_records().await
    }
    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.inner.records_after(after, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        self.inner.read_pairing().await
    }
    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        self.inner.create_pairing(pairing).await
    }
    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        self.inner.update_timings(cluster_id, timings).await
    }
}

#[tokio::test]
async fn a_retry_after_a_lost_answer_gets_the_write_that_landed() {
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Arc::new(LosesFirstAnswer { inner: m, lost: AtomicBool::new(false) }) as Arc<dyn MetadataStore>, b)
    })
    .await;
    let lost = put_keyed(&server, "k", r#"{"v":1}"#, png(2, 2)).await;
    expect_error(lost, 503, "commit_unknown").await;
    let landed = server.record("ada").await.expect("the first attempt's record landed");

    let retry = put_keyed(&server, "k", r#"{"v":1}"#, png(2, 2)).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["image_id"], landed.image_id.to_string(), "the retry answers the write that landed");
    assert_eq!(server.record("ada").await, Some(landed), "the retry wrote nothing");
    assert_eq!(server.blobs.keys().len(), 1, "nor stored a second image");
}

/// Holds both attempts' commits until both have arrived: both looked for the key
/// before either committed, so only the commit's own check can keep one from writing.
struct CommitsTogether {
    commits: AtomicUsize,
    barrier: Barrier,
}

#[async_trait::async_trait]
impl CallHook for CommitsTogether {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == StoreCall::CommitRecord && self.commits.fetch_add(1, Ordering::SeqCst) < 2 {
            self.barrier.wait().await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn two_attempts_with_one_key_at_once_write_once() {
    let together = CommitsTogether { commits: AtomicUsize::new(0), barrier: Barrier::new(2) };
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Hooked::new(m, together) as Arc<dyn MetadataStore>, b)
    })
    .await;
    let (a, b) = tokio::join!(
        put_keyed(&server, "same", r#"{"v":1}"#, png(2, 2)),
        put_keyed(&server, "same", r#"{"v":1}"#, png(2, 2))
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let replayed = [&a, &b].iter().filter(|r| r.headers().contains_key("idempotent-replayed")).count();
    assert_eq!(replayed, 1, "exactly one attempt repeats the other's write");
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["image_id"], b["image_id"], "both attempts answer the one write that landed");
    let stored = server.record("ada").await.unwrap();
    assert_eq!(a["image_id"], stored.image_id.to_string());
}
