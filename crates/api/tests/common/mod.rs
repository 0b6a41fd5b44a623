//! Shared test harness: a real server on 127.0.0.1:0, tiny hand-built images, and
//! store wrappers that fail or stall on purpose.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use profilestore_api::{ApiConfig, ServeOptions, router, serve_with};
use profilestore_core::error::StoreError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::ProfileService;
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore, Record};
use profilestore_core::time::Clock;
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_testkit::hooked::{CallHook, StoreCall};
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
        Self::start_serving(config, timings, wrap, ServeOptions::default()).await
    }

    /// Like [`start_wrapped`](Self::start_wrapped), serving with `options`.
    pub async fn start_serving(
        config: ApiConfig,
        timings: Timings,
        wrap: impl FnOnce(Arc<dyn MetadataStore>, Arc<dyn BlobStore>) -> (Arc<dyn MetadataStore>, Arc<dyn BlobStore>),
        options: ServeOptions,
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
        let stop = async {
            let _ = rx.await;
        };
        let handle = tokio::spawn(serve_with(listener, app, stop, options));
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

/// [`png`] padded to exactly `size` bytes with an `IDAT` chunk of zeros: a chunk the
/// server keeps (padding after the last chunk would be cut off as trailing bytes, and
/// a private chunk removed as possible metadata). Its CRC is not checked.
pub fn padded_png(width: u32, height: u32, size: usize) -> Vec<u8> {
    let mut b = png(width, height);
    let data = size.checked_sub(b.len() + 12).expect("room for the padding chunk");
    b.extend_from_slice(&(data as u32).to_be_bytes());
    b.extend_from_slice(b"IDAT");
    b.resize(b.len() + data + 4, 0);
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

/// Fails every store call as unavailable, with a message that must never reach a
/// client.
pub struct Down;

pub const SECRET: &str = "db-secret-host.internal:5432";

#[async_trait::async_trait]
impl CallHook for Down {
    async fn before(&self, _: StoreCall) -> Result<(), StoreError> {
        Err(StoreError::unavailable(format!("connection to {SECRET} refused")))
    }
}

/// Sleeps `get_delay` before every blob read and `put_delay` before every blob
/// write; `reading` is notified whenever a read begins.
pub struct Slow {
    pub get_delay: Duration,
    pub put_delay: Duration,
    pub reading: Arc<tokio::sync::Notify>,
}

impl Slow {
    pub fn new(get_delay: Duration, put_delay: Duration) -> Self {
        Slow { get_delay, put_delay, reading: Arc::new(tokio::sync::Notify::new()) }
    }
}

#[async_trait::async_trait]
impl CallHook for Slow {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        match call {
            StoreCall::GetBlob => {
                self.reading.notify_one();
                tokio::time::sleep(self.get_delay).await;
            }
            StoreCall::PutBlob => tokio::time::sleep(self.put_delay).await,
            _ => {}
        }
        Ok(())
    }
}
