//! `serve` over HTTPS in a real process (certificates from the api crate's test
//! fixtures), and the refusal to serve plain HTTP off loopback without a declared
//! proxy, before any store is touched.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;

use rustls::pki_types::ServerName;
use support::{Server, bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/tests/fixtures");

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = |name: &str| Path::new(FIXTURES).join(name).display().to_string();
    let args = [
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--tls-cert".into(),
        fixture("tls-a-cert.pem"),
        "--tls-key".into(),
        fixture("tls-a-key.pem"),
    ];
    let server = Server::start(&args);
    let addr = server.base.strip_prefix("https://").expect("the printed address is https");
    assert!(server.admin.as_deref().is_some_and(|a| a.starts_with("https://")), "{:?}", server.admin);

    let ca = std::fs::read(fixture("tls-a-ca.pem")).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = profilestore_testkit::tls::client_trusting(&ca).connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[test]
fn plain_http_off_loopback_is_refused_without_a_declared_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = bin()
        .args(["serve", "--listen", "0.0.0.0:0", "--admin-listen", "off", "--auth", "none", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve plain HTTP on 0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--behind-proxy"), "{stderr}");
    assert!(!data.exists(), "the stores were touched");
}
