//! Slow clients cannot hold a connection for long: a request head must arrive within
//! the head timeout, and an upload's body at the minimum average pace once its grace
//! is past (408 `request_timeout`, nothing stored); a client above the pace is served.
//! On tokio's paused clock: a waiting server lets virtual time jump to its next timer.

mod common;

use std::time::Duration;

use common::{TestServer, png};
use profilestore_api::{ApiConfig, ServeOptions};
use profilestore_core::settings::Timings;
use profilestore_testkit::raw_http::{multipart_body, put_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config() -> ApiConfig {
    ApiConfig { min_upload_rate: 1024, ..ApiConfig::default() }
}

/// A multipart upload of a small PNG whose metadata is padded to `metadata_len` bytes.
fn upload(metadata_len: usize) -> Vec<u8> {
    let metadata = format!("{{\"pad\":\"{}\"}}", "x".repeat(metadata_len.saturating_sub(10)));
    let body = multipart_body(&metadata, &png(1, 1));
    [put_head("ada", body.len(), "connection: close\r\n").into_bytes(), body].concat()
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

/// Stores a profile whose answer (the image in base64) is far larger than the socket
/// buffers, and sends a GET for it on a raw connection.
async fn big_answer_requested(server: &TestServer, image_size: usize) -> TcpStream {
    let image = common::padded_png(1, 1, image_size);
    let stored = server.put("ada", common::form("{}", image, "image/png")).await;
    assert_eq!(stored.status(), 200);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /v1/profiles/ada HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    stream
}

/// Reads `stream` a `piece` every `every` for `slowly`, then the rest at once; the
/// bytes read in all.
async fn read_slowly_then_all(stream: &mut TcpStream, piece: usize, every: Duration, slowly: Duration) -> usize {
    #[allow(clippy::disallowed_methods)] // tokio's paused clock: virtual time.
    let started = tokio::time::Instant::now();
    let mut received = 0;
    let mut piece = vec![0u8; piece];
    while started.elapsed() < slowly {
        // The client idles between pieces: that is the slow reader being modelled.
        tokio::time::sleep(every).await;
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received += n,
        }
    }
    // What the server sent before it gave up is still buffered: read it all.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    received + rest.len()
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_answer_is_dropped_after_the_send_timeout() {
    let server = TestServer::start(config()).await;
    let mut stream = big_answer_requested(&server, 9 << 20).await;
    // Reads nothing for longer than the send timeout. (The answer is 12 MiB in base64.)
    let received = read_slowly_then_all(&mut stream, 1, Duration::from_secs(61), Duration::from_secs(1)).await;
    assert!(received < 12 << 20, "the whole answer was sent ({received} bytes) to a client that stopped reading");
}

#[tokio::test(start_paused = true)]
async fn an_answer_read_too_slowly_is_cut_off_at_the_request_timeout() {
    let timings = profilestore_core::settings::Timings {
        request_timeout: Duration::from_secs(120),
        min_blob_age: Duration::from_secs(7200),
        ..Default::default()
    };
    let config = ApiConfig { max_image_size: 32 << 20, ..config() };
    let server = TestServer::start_wrapped(config, timings, |m, b| (m, b)).await;
    let mut stream = big_answer_requested(&server, 30 << 20).await;
    // 1 MiB every 10 s (well within the send timeout) for 5 minutes: 30 MiB of the 40
    // the answer has in base64, had it not been cut off after 2 minutes.
    let received = read_slowly_then_all(&mut stream, 1 << 20, Duration::from_secs(10), Duration::from_secs(300)).await;
    assert!(received < 30 << 20, "the whole answer was sent ({received} bytes) past the request timeout");
}

#[tokio::test(start_paused = true)]
async fn a_client_taking_its_answer_below_the_minimum_pace_is_dropped() {
    // A send timeout of an hour: on loopback the kernel's buffers are so large that a
    // slow reader leaves the server's writes waiting for minutes, which the send
    // timeout alone would cut; here only the pace may.
    let options = ServeOptions { send_timeout: Duration::from_secs(3600), ..ServeOptions::default() };
    let server = TestServer::start_serving(config(), Timings::default(), |m, b| (m, b), options).await;
    drop(big_answer_requested(&server, 9 << 20).await);
    // A small receive buffer, so that each piece read opens the window again and the
    // server sees steady (slow) progress: the send timeout never fires.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 << 10).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    stream.write_all(b"GET /v1/profiles/ada HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    // 16 KiB every 5 s: about 3 KiB/s, below the 8 KiB/s minimum; for 10 minutes (the
    // request timeout is an hour).
    let received = read_slowly_then_all(&mut stream, 16 << 10, Duration::from_secs(5), Duration::from_secs(600)).await;
    assert!(received < 12 << 20, "the whole answer was sent ({received} bytes) to a client below the minimum pace");
}
