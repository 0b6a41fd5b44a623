//! HTTPS on the API's own accept loop: a client that trusts the served certificate is
//! answered; a renewed certificate written over the files is served to the next
//! connection without a restart; a renewal that does not load keeps the previous one.
//! Certificates: `tests/fixtures/tls-{a,b}-*` (made for the tests alone).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use profilestore_api::{ApiConfig, ServeOptions, TlsFiles, router, serve_with};
use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::service::ProfileService;
use profilestore_core::settings::Timings;
use profilestore_runtime::{SystemClock, UuidV7Ids};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
}

/// `GET /healthz` over TLS, trusting the CA in `ca_pem`: the status line, or the failure.
async fn healthz(addr: std::net::SocketAddr, ca_pem: &[u8]) -> Result<String, String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls =
        profilestore_testkit::tls::client_trusting(ca_pem).connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn https_is_served_and_a_renewed_certificate_is_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, fixture("tls-a-cert.pem")).unwrap();
    std::fs::write(&key, fixture("tls-a-key.pem")).unwrap();
    let files = TlsFiles::load(&cert, &key, Duration::ZERO).unwrap();

    let clock = Arc::new(SystemClock::new());
    let metadata = Arc::new(MemoryMetadataStore::new(clock.clone()));
    let blobs = Arc::new(MemoryBlobStore::new(clock.clone()));
    let service = ProfileService::new(metadata, blobs, clock, Arc::new(UuidV7Ids), Timings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServeOptions { tls: Some(files), ..ServeOptions::default() };
    let app = router(service, ApiConfig::default());
    tokio::spawn(serve_with(listener, app, std::future::pending(), options));

    assert_eq!(healthz(addr, &fixture("tls-a-ca.pem")).await.unwrap(), "HTTP/1.1 200 OK");
    assert!(healthz(addr, &fixture("tls-b-ca.pem")).await.is_err(), "a client trusting another CA");

    // The renewal: new files written over the old ones.
    std::fs::write(&cert, fixture("tls-b-cert.pem")).unwrap();
    std::fs::write(&key, fixture("tls-b-key.pem")).unwrap();
    assert_eq!(healthz(addr, &fixture("tls-b-ca.pem")).await.unwrap(), "HTTP/1.1 200 OK");
    assert!(healthz(addr, &fixture("tls-a-ca.pem")).await.is_err(), "the old certificate is still served");

    // A renewal that does not load (a key that is not one) keeps the last good one.
    std::fs::write(&key, b"not a key").unwrap();
    assert_eq!(healthz(addr, &fixture("tls-b-ca.pem")).await.unwrap(), "HTTP/1.1 200 OK");
}

#[test]
fn files_that_do_not_load_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, fixture("tls-a-cert.pem")).unwrap();
    std::fs::write(&key, fixture("tls-b-key.pem")).unwrap();
    let mismatched = TlsFiles::load(&cert, &key, Duration::ZERO).expect_err("a key of another certificate");
    assert!(mismatched.to_string().contains("not usable together"), "{mismatched}");
    let missing = TlsFiles::load(&dir.path().join("absent.pem"), &key, Duration::ZERO).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
}
