//! Per-client limits over real connections: a client holding its uploads at once is
//! refused another while a different client is admitted, whether clients are told
//! apart by a trusted proxy's `X-Forwarded-For` or not; a client cannot escape its
//! limit with a header of its own; and the request rate refuses with 429 and
//! `Retry-After`, then recovers (tokio's paused clock).

mod common;

use std::time::Duration;

use common::{TestServer, png};
use profilestore_api::{ApiConfig, ClientLimits, TrustedProxies};
use profilestore_testkit::raw_http::{multipart_body, put_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One upload at once per client, among eight; `X-Forwarded-For` believed from
/// `trusted`.
fn one_upload_each(trusted: &str) -> ApiConfig {
    let trusted_proxies: TrustedProxies = trusted.parse().unwrap();
    let clients = ClientLimits { trusted_proxies, max_uploads_per_client: Some(1), ..ClientLimits::default() };
    ApiConfig { clients, ..ApiConfig::default() }
}

/// An upload from the client `forwarded_for` names (through the proxy at 127.0.0.1)
/// that the server has admitted, stalled halfway through its body: it waits for
/// `100 Continue`, which the server sends only once the upload holds its slots.
struct Stalled {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl Stalled {
    async fn start(server: &TestServer, forwarded_for: &str) -> Stalled {
        let body = multipart_body("{}", &png(1, 1));
        let extra = format!("x-forwarded-for: {forwarded_for}\r\nexpect: 100-continue\r\n");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(put_head("stalled", body.len(), &extra).as_bytes()).await.unwrap();
        let mut continued = [0u8; 25];
        stream.read_exact(&mut continued).await.unwrap();
        assert_eq!(&continued, b"HTTP/1.1 100 Continue\r\n\r\n", "the stalled upload was not admitted");
        let half = body.len() / 2;
        stream.write_all(&body[..half]).await.unwrap();
        Stalled { stream, rest: body[half..].to_vec() }
    }

    /// Sends the rest of the body; the status the upload is answered with.
    async fn finish(mut self) -> String {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut status = [0u8; 12];
        self.stream.read_exact(&mut status).await.unwrap();
        String::from_utf8_lossy(&status).into_owned()
    }
}

/// `PUT /v1/profiles/{user}` with `X-Forwarded-For: forwarded_for`.
async fn put_from(server: &TestServer, user: &str, forwarded_for: &str) -> reqwest::Response {
    let form = common::form("{}", png(1, 1), "image/png");
    let url = server.url(&format!("/v1/profiles/{user}"));
    server.client.put(url).header("x-forwarded-for", forwarded_for).multipart(form).send().await.unwrap()
}

#[tokio::test]
async fn a_client_at_its_uploads_at_once_is_refused_while_another_client_is_admitted() {
    let server = TestServer::start(one_upload_each("127.0.0.1")).await;
    let stalled = Stalled::start(&server, "203.0.113.7").await;

    let refused = put_from(&server, "again", "203.0.113.7").await;
    assert_eq!(refused.headers()["retry-after"], "1");
    common::expect_error(refused, 429, "too_many_uploads").await;
    // The client's own left part is not believed: the proxy saw 203.0.113.7.
    let spoofed = put_from(&server, "spoofed", "198.51.100.9, 203.0.113.7").await;
    common::expect_error(spoofed, 429, "too_many_uploads").await;
    // Another client behind the same proxy has its own allowance.
    assert_eq!(put_from(&server, "other", "198.51.100.9").await.status(), 200);

    // The stalled upload finishes; its client's slot comes back.
    assert_eq!(stalled.finish().await, "HTTP/1.1 200");
    assert_eq!(put_from(&server, "again", "203.0.113.7").await.status(), 200);
    assert!(server.record("spoofed").await.is_none() && server.record("again").await.is_some());
}

/// With the proxies `trusted`, a client from 127.0.0.1 holding its one upload, that
/// claims another address in `X-Forwarded-For`, is refused all the same.
async fn claiming_another_address_is_refused(trusted: &str) -> (TestServer, Stalled) {
    let server = TestServer::start(one_upload_each(trusted)).await;
    let stalled = Stalled::start(&server, "203.0.113.7").await;
    let escaped = put_from(&server, "escaped", "198.51.100.9").await;
    common::expect_error(escaped, 429, "too_many_uploads").await;
    assert!(server.record("escaped").await.is_none());
    (server, stalled)
}

#[tokio::test]
async fn a_header_from_an_untrusted_peer_does_not_let_a_client_escape_its_limit() {
    // The proxies are elsewhere: 127.0.0.1 is a client, whatever it writes.
    claiming_another_address_is_refused("10.0.0.0/8").await;
}

#[tokio::test]
async fn without_trusted_proxies_clients_are_told_apart_by_their_peer_address() {
    let (server, _stalled) = claiming_another_address_is_refused("none").await;
    // Another loopback address is another peer (the server listens on 127.0.0.1).
    let other_peer = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let form = common::form("{}", png(1, 1), "image/png");
    let response = other_peer.put(server.url("/v1/profiles/other")).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), 200, "another peer has its own allowance");
}

/// A server allowing each client 1 request per second with a burst of 2, believing
/// `X-Forwarded-For` from 127.0.0.1.
async fn rated_server() -> TestServer {
    let clients = ClientLimits {
        trusted_proxies: "127.0.0.1".parse().unwrap(),
        max_requests_per_second: 1,
        request_burst: Some(2),
        ..ClientLimits::default()
    };
    TestServer::start(ApiConfig { clients, ..ApiConfig::default() }).await
}

async fn healthz_from(server: &TestServer, forwarded_for: &str) -> reqwest::Response {
    server.client.get(server.url("/healthz")).header("x-forwarded-for", forwarded_for).send().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_request_rate_refuses_with_retry_after_and_recovers() {
    let server = rated_server().await;
    for _ in 0..2 {
        assert_eq!(healthz_from(&server, "203.0.113.7").await.status(), 200);
    }
    let refused = healthz_from(&server, "203.0.113.7").await;
    assert_eq!(refused.headers()["retry-after"], "1");
    common::expect_error(refused, 429, "too_many_requests").await;
    assert_eq!(healthz_from(&server, "198.51.100.9").await.status(), 200, "another client has its own rate");

    // Virtual time: the second `Retry-After` named.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(healthz_from(&server, "203.0.113.7").await.status(), 200);
    assert_eq!(healthz_from(&server, "203.0.113.7").await.status(), 429, "one second earns one request");
}
