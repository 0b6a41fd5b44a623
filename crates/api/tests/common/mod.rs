//! Shared test harness: a real server on 127.0.0.1:0, tiny hand-built images, and
//! store wrappers that fail or stall on purpose.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use profilestore_api::{ApiConfig, router, serve};
use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::ProfileService;
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, CommitOutcome, ListedBlob, MetadataStore, Pairing, Record};
use profilestore_core::time::{Clock, Timestamp};
use profilestore_runtime::{SystemClock, UuidV7Ids};
use reqwest::multipart::{Form, Part};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and what a test needs to look behind it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub metadata: Arc<MemoryMetadataStore>,
    pub blobs: Arc<MemoryBlobStore>,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// A server over fresh in-memory stores.
    pub async fn start(config: ApiConfig) -> TestServer {
        Self::start_wrapped(config, Timings::default(), |m, b| (m, b)).await
    }

    /// A server over fresh in-memory stores, as seen through `wrap` (which may put
    /// faulty wrappers around them), with `timings`.
    pub async fn start_wrapped(
        config: ApiConfig,
        timings: Timings,
        wrap: impl FnOnce(Arc<dyn MetadataStore>, Arc<dyn BlobStore>) -> (Arc<dyn MetadataStore>, Arc<dyn BlobStore>),
    ) -> TestServer {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let metadata = Arc::new(MemoryMetadataStore::new(clock.clone()));
        let blobs = Arc::new(MemoryBlobStore::new(clock.clone()));
        let (m, b) = wrap(metadata.clone(), blobs.clone());
        let service = ProfileService::new(m, b, clock, Arc::new(UuidV7Ids), timings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let app = router(service, config);
        let handle = tokio::spawn(serve(listener, app, async {
            let _ = rx.await;
        }));
        TestServer { addr, client: reqwest::Client::new(), metadata, blobs, shutdown: Some(tx), handle: Some(handle) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Asks the server to shut down gracefully.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// `PUT /v1/profiles/{user}` with the given form.
    pub async fn put(&self, user: &str, form: Form) -> reqwest::Response {
        self.client.put(self.url(&format!("/v1/profiles/{user}"))).multipart(form).send().await.expect("send PUT")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("send GET")
    }

    /// The stored record of `user`, read behind the API.
    pub async fn record(&self, user: &str) -> Option<Record> {
        self.metadata.get(&UserId::parse(user).unwrap()).await.unwrap()
    }

    /// Deletes the blob of `image_id` behind the API.
    pub async fn delete_blob(&self, image_id: &str) {
        let id: ImageId = image_id.parse().unwrap();
        self.blobs.delete_many(&[BlobKey::original(id)]).await.unwrap();
    }

    /// Sends `raw` as the whole request on a fresh connection and returns the status
    /// line's code, the header block and the body (read until the server closes).
    pub async fn raw(&self, raw: &[u8]) -> (u16, String, Vec<u8>) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(raw).await.expect("write request");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
            .await
            .expect("response within 10 s")
            .expect("read response");
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
        (status, head, response[split + 4..].to_vec())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A minimal PNG: signature and IHDR, all `imagesize` reads.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&[8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89]);
    b
}

/// A minimal GIF89a header.
pub fn gif(width: u16, height: u16) -> Vec<u8> {
    let mut b = b"GIF89a".to_vec();
    b.extend_from_slice(&width.to_le_bytes());
    b.extend_from_slice(&height.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, b';']);
    b
}

/// A minimal baseline JPEG: SOI, an SOF0 segment, EOI.
pub fn jpeg(width: u16, height: u16) -> Vec<u8> {
    let mut b = vec![0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08];
    b.extend_from_slice(&height.to_be_bytes());
    b.extend_from_slice(&width.to_be_bytes());
    b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xff, 0xd9]);
    b
}

/// A minimal extended WebP: RIFF header and a VP8X chunk.
pub fn webp(width: u32, height: u32) -> Vec<u8> {
    let mut b = b"RIFF\x16\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00".to_vec();
    b.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    b.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    b
}

/// A form with a `metadata` part and an `image` part declared as `declared_type`.
pub fn form(metadata: &str, image: Vec<u8>, declared_type: &str) -> Form {
    Form::new().part("metadata", metadata_part(metadata)).part("image", image_part(image, declared_type))
}

pub fn metadata_part(metadata: &str) -> Part {
    Part::text(metadata.to_owned()).mime_str("application/json").unwrap()
}

pub fn image_part(image: Vec<u8>, declared_type: &str) -> Part {
    Part::bytes(image).file_name("upload.bin").mime_str(declared_type).unwrap()
}

/// Asserts the body is `{"error": {"code": <code>, "message": <non-empty string>}}`
/// and nothing else, and returns the message.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "status for expected {code}");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(content_type, "application/json", "error content type for {code}");
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    expect_error_body(&body, code)
}

pub fn expect_error_body(body: &serde_json::Value, code: &str) -> String {
    let obj = body.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 1, "only `error` at the top: {body}");
    let error = obj["error"].as_object().expect("`error` is an object");
    assert_eq!(error.len(), 2, "exactly code and message: {body}");
    assert_eq!(error["code"], code, "{body}");
    let message = error["message"].as_str().expect("message is a string");
    assert!(!message.is_empty());
    message.to_owned()
}

/// A metadata store whose every call fails as unavailable, with a message that must
/// never reach a client.
pub struct DownMetadata;

/// A blob store whose every call fails as unavailable.
pub struct DownBlobs;

pub const SECRET: &str = "db-secret-host.internal:5432";

fn down() -> StoreError {
    StoreError::unavailable(format!("connection to {SECRET} refused"))
}

#[async_trait::async_trait]
impl MetadataStore for DownMetadata {
    async fn get(&self, _: &UserId) -> Result<Option<Record>, StoreError> {
        Err(down())
    }
    async fn put_before(&self, _: &Record, _: Timestamp, _: Duration) -> Result<CommitOutcome, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &UserId) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn referenced(&self, _: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        Err(down())
    }
    async fn count_records(&self) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn records_after(&self, _: Option<&UserId>, _: usize) -> Result<Vec<Record>, StoreError> {
        Err(down())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(down())
    }
    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        Err(down())
    }
    async fn create_pairing(&self, _: &Pairing) -> Result<Pairing, StoreError> {
        Err(down())
    }
    async fn update_timings(&self, _: uuid::Uuid, _: &Timings) -> Result<(), StoreError> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl BlobStore for DownBlobs {
    async fn put_new(&self, _: &BlobKey, _: Bytes) -> Result<(), StoreError> {
        Err(down())
    }
    async fn get(&self, _: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        Err(down())
    }
    async fn exists(&self, _: &BlobKey) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn delete_many(&self, _: &[BlobKey]) -> Result<(), StoreError> {
        Err(down())
    }
    fn list(&self, _: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        Box::pin(futures::stream::once(async { Err(down()) }))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(down())
    }
    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        Err(down())
    }
    async fn create_marker(&self, _: Bytes) -> Result<(), StoreError> {
        Err(down())
    }
}

/// A blob store that answers like `inner` but first sleeps `get_delay` on every read
/// and `put_delay` on every write; `reading` is notified whenever a read begins.
pub struct SlowBlobs {
    pub inner: Arc<dyn BlobStore>,
    pub get_delay: Duration,
    pub put_delay: Duration,
    pub reading: Arc<tokio::sync::Notify>,
}

impl SlowBlobs {
    pub fn new(inner: Arc<dyn BlobStore>, get_delay: Duration, put_delay: Duration) -> Self {
        SlowBlobs { inner, get_delay, put_delay, reading: Arc::new(tokio::sync::Notify::new()) }
    }
}

#[async_trait::async_trait]
impl BlobStore for SlowBlobs {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        tokio::time::sleep(self.put_delay).await;
        self.inner.put_new(key, bytes).await
    }
    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        self.reading.notify_one();
        tokio::time::sleep(self.get_delay).await;
        self.inner.get(key).await
    }
    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        self.inner.list(page_size)
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        self.inner.read_marker().await
    }
    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.inner.create_marker(contents).await
    }
}
