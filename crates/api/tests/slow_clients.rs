//! Slow clients cannot hold a connection for long: a request head must arrive within
//! the head timeout, and an upload's body at the minimum average pace once its grace
//! is past (408 `request_timeout`, nothing stored); a client above the pace is served.
//! On tokio's paused clock: a waiting server lets virtual time jump to its next timer.

mod common;

use std::time::Duration;

use common::{TestServer, png};
use profilestore_api::ApiConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> ApiConfig {
    ApiConfig { min_upload_rate: 1024, ..ApiConfig::default() }
}

/// A multipart upload of a small PNG whose metadata is padded to `metadata_len` bytes.
fn upload(metadata_len: usize) -> Vec<u8> {
    let metadata = format!("{{\"pad\":\"{}\"}}", "x".repeat(metadata_len.saturating_sub(10)));
    let mut body = format!(
        "--b\r\ncontent-disposition: form-data; name=\"metadata\"\r\n\r\n{metadata}\r\n--b\r\n\
         content-disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&png(1, 1));
    body.extend_from_slice(b"\r\n--b--\r\n");
    let head = format!(
        "PUT /v1/profiles/ada HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: multipart/form-data; boundary=b\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body].concat()
}

/// What the server answers before it closes, and the virtual time it took; a server
/// that waits for the request's hour-long timeout instead fails the test.
async fn answer(stream: &mut TcpStream) -> (String, Duration) {
    #[allow(clippy::disallowed_methods)] // tokio's paused clock: virtual time.
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server waited more than a minute")
        .unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_request_head_that_does_not_arrive_in_time_loses_its_connection() {
    let server = TestServer::start(config()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"PUT /v1/profiles/ada HTTP/1.1\r\nhost: x\r\ncontent-ty").await.unwrap();
    // The rest of the head never comes: the server closes the connection.
    let (closed, after) = answer(&mut stream).await;
    assert!(!closed.contains("HTTP/1.1 200"), "{closed}");
    assert!(after <= Duration::from_secs(11), "closed after {after:?}");
    assert!(server.record("ada").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn an_upload_below_the_minimum_pace_is_refused_and_stores_nothing() {
    let server = TestServer::start(config()).await;
    let request = upload(40 * 1024);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // The head and 1 KiB of the body, then nothing: below 1 KiB/s once 10 s are past.
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    stream.write_all(&request[..head_end + 1024]).await.unwrap();
    let (answer, after) = answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(after <= Duration::from_secs(12), "refused after {after:?}: the pace, not the request timeout");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(server.record("ada").await.is_none() && server.blobs.keys().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_upload_above_the_minimum_pace_is_served_however_long_it_takes() {
    let server = TestServer::start(config()).await;
    let request = upload(40 * 1024);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // 2 KiB every virtual second: twice the minimum, about 20 s in all.
    for piece in request.chunks(2048) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (answer, _) = answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
