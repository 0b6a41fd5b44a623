//! Store failures as clients see them: 503 for an unavailable store or a record that
//! keeps changing under a read, 504 for a request past its deadline, 500
//! `dangling_reference` for a record without its blob and 500 `internal` for one the
//! store cannot read; and graceful shutdown letting a request in flight finish.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Down, SECRET, Slow, TestServer, expect_error, form, png};
use profilestore_api::ApiConfig;
use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{IdSource, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::MetadataStore;
use profilestore_core::time::{Deadline, Timestamp};
use profilestore_runtime::UuidV7Ids;
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};
use serde_json::Value;

const SOME_IMAGE: &str = "/v1/images/01900000-0000-7000-8000-0000000000ab";

fn short_timeout() -> Timings {
    Timings { request_timeout: Duration::from_millis(200), ..Timings::default() }
}

#[tokio::test]
async fn an_unavailable_store_answers_503_with_retry_after_and_no_detail() {
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Hooked::new(m, Down), Hooked::new(b, Down))
    })
    .await;

    let responses = [
        server.put("ada", form("{}", png(1, 1), "image/png")).await,
        server.get("/v1/profiles/ada").await,
        server.get("/v1/profiles/ada/image").await,
        server.get(SOME_IMAGE).await,
        server.client.delete(server.url("/v1/profiles/ada")).send().await.unwrap(),
    ];
    for response in responses {
        assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
        let message = expect_error(response, 503, "store_unavailable").await;
        assert!(!message.contains(SECRET), "store detail leaked: {message}");
    }

    let ready = server.get("/readyz").await;
    let text = {
        assert_eq!(ready.status(), 503);
        ready.text().await.unwrap()
    };
    assert!(!text.contains(SECRET) && !text.contains("refused"), "readiness leaked detail: {text}");
    common::expect_error_body(&serde_json::from_str(&text).unwrap(), "not_ready");

    // Liveness does not depend on the stores.
    assert_eq!(server.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn a_rejected_upload_never_reaches_an_unavailable_store() {
    // Validation comes first: a bad upload is a 4xx even while the stores are down.
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Hooked::new(m, Down), Hooked::new(b, Down))
    })
    .await;
    let response = server.put("ada", form("[]", png(1, 1), "image/png")).await;
    expect_error(response, 422, "metadata_not_object").await;
}

#[tokio::test]
async fn a_read_stalled_past_its_deadline_answers_504() {
    let server = TestServer::start_wrapped(ApiConfig::default(), short_timeout(), |m, b| {
        (m, Hooked::new(b, Slow::new(Duration::from_secs(2), Duration::ZERO)))
    })
    .await;
    let written: Value = server.put("ada", form("{}", png(1, 1), "image/png")).await.json().await.unwrap();

    expect_error(server.get("/v1/profiles/ada").await, 504, "deadline_exceeded").await;
    expect_error(server.get("/v1/profiles/ada/image").await, 504, "deadline_exceeded").await;
    expect_error(server.get(written["image_url"].as_str().unwrap()).await, 504, "deadline_exceeded").await;
}

#[tokio::test]
async fn a_write_stalled_past_its_deadline_answers_504_and_commits_nothing() {
    let server = TestServer::start_wrapped(ApiConfig::default(), short_timeout(), |m, b| {
        (m, Hooked::new(b, Slow::new(Duration::ZERO, Duration::from_secs(2))))
    })
    .await;
    expect_error(server.put("ada", form("{}", png(1, 1), "image/png")).await, 504, "deadline_exceeded").await;
    assert_eq!(server.record("ada").await, None);
}

#[tokio::test]
async fn a_record_whose_blob_is_gone_answers_500_dangling_reference() {
    let server = TestServer::start(ApiConfig::default()).await;
    let written: Value = server.put("ada", form("{}", png(1, 1), "image/png")).await.json().await.unwrap();
    server.delete_blob(written["image_id"].as_str().unwrap()).await;

    let message = expect_error(server.get("/v1/profiles/ada").await, 500, "dangling_reference").await;
    assert!(message.contains("missing"), "{message}");
    expect_error(server.get("/v1/profiles/ada/image").await, 500, "dangling_reference").await;
    // By id it is simply absent: an image id alone makes no promise that it exists.
    expect_error(server.get(written["image_url"].as_str().unwrap()).await, 404, "image_not_found").await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let reading = Arc::new(tokio::sync::Notify::new());
    let notify = reading.clone();
    let mut server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), move |m, b| {
        (m, Hooked::new(b, Slow { reading: notify, ..Slow::new(Duration::from_millis(300), Duration::ZERO) }))
    })
    .await;
    let image = png(1, 1);
    assert_eq!(server.put("ada", form("{}", image.clone(), "image/png")).await.status(), 200);

    let client = server.client.clone();
    let url = server.url("/v1/profiles/ada/image");
    let in_flight = tokio::spawn(async move { client.get(url).send().await });
    reading.notified().await; // the request is inside the server, fetching the blob
    server.begin_shutdown();

    let response = in_flight.await.unwrap().expect("the request in flight is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), image);
    let handle = server.handle.take().unwrap();
    let served = tokio::time::timeout(Duration::from_secs(5), handle).await.expect("serve returns after shutdown");
    served.unwrap().expect("serve ends without error");
    assert!(reqwest::Client::new().get(server.url("/healthz")).send().await.is_err(), "no longer accepting");
}

/// Before every record read, a concurrent writer moves the record to a fresh image
/// whose blob never arrives: every read finds the blob of the record it just read gone.
struct EverChanging {
    metadata: Arc<dyn MetadataStore>,
}

#[async_trait::async_trait]
impl CallHook for EverChanging {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        if call == StoreCall::GetRecord
            && let Some(mut record) = self.metadata.get(&UserId::parse("ada").unwrap()).await?
        {
            record.image_id = UuidV7Ids.next_image_id();
            let clock = Arc::new(profilestore_runtime::SystemClock::new());
            let far = Deadline::new(clock, Timestamp::from_millis(i64::MAX), Duration::from_secs(1));
            self.metadata.put_before(&record, &far).await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_record_that_keeps_changing_under_a_read_answers_503_contended_with_retry_after() {
    let server = TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| {
        (Hooked::new(m.clone(), EverChanging { metadata: m }), b)
    })
    .await;
    let written = server.put("ada", form("{}", png(1, 1), "image/png")).await;
    assert_eq!(written.status(), 200);

    let response = server.get("/v1/profiles/ada").await;
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    let message = expect_error(response, 503, "contended").await;
    assert!(message.contains("changed repeatedly"), "{message}");
}

/// Every record read finds a row the store cannot decode.
struct Unreadable;

#[async_trait::async_trait]
impl CallHook for Unreadable {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        match call {
            StoreCall::GetRecord => {
                Err(StoreError::new(StoreErrorKind::Corrupt, format!("row of ada on {SECRET} is garbled")))
            }
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn an_unreadable_record_answers_500_internal_without_detail() {
    let server =
        TestServer::start_wrapped(ApiConfig::default(), Timings::default(), |m, b| (Hooked::new(m, Unreadable), b))
            .await;
    let message = expect_error(server.get("/v1/profiles/ada").await, 500, "internal").await;
    assert!(!message.contains(SECRET) && !message.contains("garbled"), "store detail leaked: {message}");
    // Other routes do not read records and still work.
    assert_eq!(server.put("ada", form("{}", png(1, 1), "image/png")).await.status(), 200);
}
