//! Large uploads received into the spool on disk, over raw TCP: while a body trickles
//! in, its bytes are in a file, and neither in the memory budget nor among the uploads
//! read at once; the stored image is the upload's (metadata stripped); the file is
//! gone after success, after a refusal and after the client goes away; and a full
//! spool refuses with 503 `overloaded`.
//!
//! Conditions on the spool directory are waited for by polling it within a bound.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestServer, png};
use profilestore_api::{ApiConfig, ClientLimits, Spool, SpoolSettings, UploadLimits};
use profilestore_testkit::raw_http::{multipart_body, put_head};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_IMAGE: u64 = 1 << 20;
/// Uploads above this are spooled.
const SPOOL_ABOVE: u64 = 64 * 1024;
/// The size of the large images: more than half of [`MEMORY`], so that two held in
/// memory cannot both be admitted.
const LARGE: usize = 600 * 1024;
/// The memory budget of the tests that compare the spool with memory: room for one
/// large upload, not two.
const MEMORY: u64 = 1 << 20;

struct Setup {
    server: TestServer,
    spool_dir: PathBuf,
    _root: tempfile::TempDir,
}

/// A server with a spool of `disk` bytes (none when `disk` is `None`), a memory
/// budget of `memory` bytes and `slots` uploads read at once.
async fn start(disk: Option<u64>, memory: u64, slots: usize) -> Setup {
    let root = tempfile::tempdir().unwrap();
    let spool_dir = root.path().join("spool");
    let spool = disk
        .map(|max_bytes| Spool::open(SpoolSettings { dir: spool_dir.clone(), above: SPOOL_ABOVE, max_bytes }).unwrap());
    let config = ApiConfig {
        max_image_size: MAX_IMAGE,
        max_image_pixels: 1_000_000,
        uploads: UploadLimits { max_concurrent: slots, max_bytes_in_flight: memory },
        // Every upload here comes from 127.0.0.1: the per-client cap must not be what
        // refuses them (these tests are about the budgets).
        clients: ClientLimits { max_uploads_per_client: Some(slots + 1), ..ClientLimits::default() },
        spool,
        ..ApiConfig::default()
    };
    Setup { server: TestServer::start(config).await, spool_dir, _root: root }
}

/// A PNG of `size` bytes whose `tEXt` chunk (a comment) the server removes, and the
/// bytes it stores: the same without that chunk.
fn commented_png(size: usize) -> (Vec<u8>, Vec<u8>) {
    let comment = b"Comment\0taken at home";
    let mut text = (comment.len() as u32).to_be_bytes().to_vec();
    text.extend_from_slice(b"tEXt");
    text.extend_from_slice(comment);
    text.extend_from_slice(&[0; 4]); // CRCs are not checked
    let stored = common::padded_png(1, 1, size - text.len());
    let header = png(1, 1).len();
    let sent = [&stored[..header], &text, &stored[header..]].concat();
    (sent, stored)
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The bytes the files in `dir` hold together.
fn spooled_bytes(dir: &Path) -> u64 {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Waits until `holds` is true of `dir`, polling for at most 10 s.
async fn until(dir: &Path, what: &str, holds: impl Fn(&Path) -> bool) {
    for _ in 0..1000 {
        if holds(dir) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the spool never held {what} (it holds {} files)", files(dir));
}

async fn until_files(dir: &Path, n: usize) {
    until(dir, &format!("{n} files"), |dir| files(dir) == n).await;
}

/// Sends the head of `user`'s upload of `body` and its first `sent` bytes.
async fn begin(server: &TestServer, user: &str, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(put_head(user, body.len(), "connection: close\r\n").as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    stream
}

/// Sends the rest of `body` after its first `sent` bytes and returns the answer's
/// status line and body.
async fn finish(mut stream: TcpStream, body: &[u8], sent: usize) -> String {
    stream.write_all(&body[sent..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn stored_image(server: &TestServer, user: &str) -> Vec<u8> {
    let response = server.get(&format!("/v1/profiles/{user}/image")).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn two_slow_large_uploads_are_both_admitted_when_spooled_and_stored_as_sent_less_their_metadata() {
    // One upload read at once, and memory for one large upload.
    let Setup { server, spool_dir, _root } = start(Some(4 << 20), MEMORY, 1).await;
    let (sent, stored) = commented_png(LARGE);
    let body = multipart_body("{}", &sent);
    let half = body.len() / 2;
    let first = begin(&server, "ada", &body, half).await;
    until_files(&spool_dir, 1).await;
    // Half of the first is in, and it holds neither the one place nor its size in
    // memory: a second large upload gets in beside it (held in memory, it would be
    // refused, as below).
    let second = begin(&server, "bob", &body, half).await;
    until_files(&spool_dir, 2).await;
    for (user, stream) in [("bob", second), ("ada", first)] {
        let answer = finish(stream, &body, half).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{user}: {answer}");
        assert_eq!(stored_image(&server, user).await, stored, "{user}'s stored image");
    }
    assert_eq!(files(&spool_dir), 0, "each file is removed once its image is read back");
}

#[tokio::test]
async fn without_the_spool_a_slow_large_upload_holds_the_memory_budget_and_a_second_is_refused() {
    let Setup { server, _root, .. } = start(None, MEMORY, 8).await;
    let (sent, stored) = commented_png(LARGE);
    let body = multipart_body("{}", &sent);
    let half = body.len() / 2;
    let first = begin(&server, "ada", &body, half).await;
    // Until the server holds the first, a second may still get in: wait for the refusal.
    let mut refused = false;
    for n in 0..200 {
        let response = server.put(&format!("bob{n}"), common::form("{}", sent.clone(), "image/png")).await;
        if response.status() == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a second large upload was never refused while the first held the budget");
    let answer = finish(first, &body, half).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(stored_image(&server, "ada").await, stored);
}

#[tokio::test]
async fn the_spool_file_is_removed_after_a_refusal_and_when_the_client_goes_away() {
    let Setup { server, spool_dir, _root } = start(Some(4 << 20), 4 << 20, 8).await;
    let (sent, _) = commented_png(LARGE);

    // The client goes away mid-body.
    let gone = begin(&server, "ada", &multipart_body("{}", &sent), LARGE / 2).await;
    until_files(&spool_dir, 1).await;
    drop(gone);
    until_files(&spool_dir, 0).await;

    // Refused while arriving: not an image (after its first bytes), or too large.
    let not_an_image = vec![0u8; LARGE];
    let too_large = common::padded_png(1, 1, MAX_IMAGE as usize + 1);
    // Refused once read back: a chunk runs past the end, so its metadata cannot be found.
    let broken = sent[..sent.len() - 100].to_vec();
    for (image, status, code) in
        [(not_an_image, 415, "unsupported_image"), (too_large, 413, "image_too_large"), (broken, 422, "invalid_image")]
    {
        let response = server.put("ada", common::form("{}", image, "image/png")).await;
        common::expect_error(response, status, code).await;
        assert_eq!(files(&spool_dir), 0, "{code}: the file outlived its refusal");
    }
    assert!(server.record("ada").await.is_none(), "a refused upload was stored");
}

#[tokio::test]
async fn a_full_spool_refuses_with_503_and_its_share_comes_back_with_the_file() {
    // Room on disk for one large upload, and memory for several.
    let Setup { server, spool_dir, _root } = start(Some(MAX_IMAGE), 8 << 20, 8).await;
    let (sent, _) = commented_png(LARGE);
    let body = multipart_body("{}", &sent);
    // The first is all in but its last KiB: its file takes most of the disk budget
    // (shares are taken as bytes arrive, not at the declared length).
    let most = body.len() - 1024;
    let first = begin(&server, "ada", &body, most).await;
    until(&spool_dir, "most of the first upload", |dir| spooled_bytes(dir) >= LARGE as u64 - 2048).await;

    let refused = server.put("bob", common::form("{}", sent.clone(), "image/png")).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    common::expect_error(refused, 503, "overloaded").await;

    let answer = finish(first, &body, most).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let response = server.put("bob", common::form("{}", sent, "image/png")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(files(&spool_dir), 0);
}
