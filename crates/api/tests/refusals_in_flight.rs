//! Refusing uploads whose bodies are still arriving, over raw TCP: the client reads
//! the answer (the rest of the body is drained, within a bound) instead of a reset;
//! a refused `Expect: 100-continue` is answered before any body is sent; and uploads
//! beyond the budgets are refused at once with 503 `overloaded`, the budget coming
//! back when an upload ends.

mod common;

use std::time::Duration;

use common::{TestServer, png};
use profilestore_api::{ApiConfig, ClientLimits, UploadLimits};
use profilestore_testkit::raw_http::{multipart_body, put_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_IMAGE: u64 = 4096;

fn config(uploads: UploadLimits) -> ApiConfig {
    // Every upload here comes from 127.0.0.1: one client, which must not meet its own
    // limit before the budgets under test (tests/client_limits.rs tests that limit).
    let clients = ClientLimits { max_uploads_per_client: Some(uploads.max_concurrent + 1), ..ClientLimits::default() };
    ApiConfig { max_image_size: MAX_IMAGE, max_image_pixels: 1_000_000, uploads, clients, ..ApiConfig::default() }
}

/// A multipart body: an image part of `image` first, then 50 KiB of metadata.
fn image_first(image: &[u8]) -> Vec<u8> {
    let mut b = b"--b\r\ncontent-disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n".to_vec();
    b.extend_from_slice(image);
    b.extend_from_slice(b"\r\n--b\r\ncontent-disposition: form-data; name=\"metadata\"\r\n\r\n");
    b.extend_from_slice(format!("{{\"pad\":\"{}\"}}", "x".repeat(50 * 1024)).as_bytes());
    b.extend_from_slice(b"\r\n--b--\r\n");
    b
}

fn body(image: &[u8]) -> Vec<u8> {
    multipart_body("{}", image)
}

fn head(length: usize, extra: &str) -> String {
    put_head("ada", length, extra)
}

/// Sends `head` then `body` in pieces while reading, the way a client that does not
/// wait for an early answer does; returns what the server answered before closing,
/// and fails if a send failed (a reset).
async fn send_and_read(server: &TestServer, head: &str, body: &[u8]) -> String {
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        // A reset is what this test exists to rule out: it shows as an error here.
        reader.read_to_end(&mut answer).await.map(|_| String::from_utf8_lossy(&answer).into_owned())
    });
    writer.write_all(head.as_bytes()).await.unwrap();
    // curl and most HTTP libraries give up at a failed send and never read the answer:
    // every piece must go through.
    for piece in body.chunks(16 * 1024) {
        writer.write_all(piece).await.unwrap_or_else(|e| panic!("sending failed (ordinary clients stop here): {e}"));
    }
    let answer = tokio::time::timeout(Duration::from_secs(20), reading).await.unwrap().unwrap();
    answer.unwrap_or_else(|e| panic!("the connection failed instead of answering: {e}"))
}

#[tokio::test]
async fn an_oversized_body_is_answered_413_after_its_rest_is_drained() {
    let server = TestServer::start(config(UploadLimits::default())).await;
    for (case, image, code) in [
        // Declared over the body limit: refused before reading. Larger than the socket
        // buffers hold, so the client is still sending when the answer is ready.
        ("declared too large", vec![7u8; 24 << 20], "payload_too_large"),
        // Within the body limit, but the image part is over its own limit: refused after
        // MAX_IMAGE bytes of it.
        ("image too large", [png(1, 1), vec![0u8; 60 * 1024]].concat(), "image_too_large"),
        // Unrecognised bytes, in a first part followed by a large one: refused after the
        // first few.
        ("not an image", vec![0u8; 3000], "unsupported_image"),
    ] {
        let body = if case == "not an image" { image_first(&image) } else { body(&image) };
        // `connection: close`: the server closes once it has answered, ending the read.
        let answer = send_and_read(&server, &head(body.len(), "connection: close\r\n"), &body).await;
        assert!(answer.contains(&format!("\"code\":\"{code}\"")), "{case}: {answer}");
    }
    assert!(server.blobs.keys().is_empty());
}

#[tokio::test]
async fn a_refused_expect_100_continue_is_answered_before_any_body_is_sent() {
    let server = TestServer::start(config(UploadLimits::default())).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head(400 * 1024, "expect: 100-continue\r\n").as_bytes()).await.unwrap();
    // No body is sent; the answer must come anyway, and the connection close.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "the client was told to send: {answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn uploads_beyond_the_budget_are_refused_at_once_and_the_budget_comes_back() {
    let server = TestServer::start(config(UploadLimits { max_concurrent: 1, max_bytes_in_flight: 1 << 20 })).await;
    let whole = body(&png(1, 1));
    // The first upload stalls halfway through its body, holding the only slot.
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(head(whole.len(), "").as_bytes()).await.unwrap();
    stalled.write_all(&whole[..whole.len() / 2]).await.unwrap();

    // Until the server holds it, a second upload may still get in: wait for the refusal.
    let mut refused = None;
    for _ in 0..200 {
        let response = server.put("bob", common::form("{}", png(1, 1), "image/png")).await;
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        tokio::task::yield_now().await;
    }
    let refused = refused.expect("the second upload was never refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    common::expect_error(refused, 503, "overloaded").await;

    // The stalled upload finishes; its slot comes back.
    stalled.write_all(&whole[whole.len() / 2..]).await.unwrap();
    let mut answer = [0u8; 12];
    stalled.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let response = server.put("carol", common::form("{}", png(1, 1), "image/png")).await;
    assert_eq!(response.status(), 200);
}
