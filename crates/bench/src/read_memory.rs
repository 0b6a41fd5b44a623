//! Memory per in-flight read: how much a server holds for each `GET` of a large image
//! while its client is slow, as a multiple of the image's size.
//!
//! A server in a process of its own (a `bench --child`) on the run's stores serves
//! `reads` clients that each send one request, read the answer's head and then stop
//! reading, with a small receive buffer, so the answer cannot finish and the server
//! holds whatever it holds per read. The memory per read is the rise of the process's
//! resident memory over its idle level, divided by the reads. The floor is
//! `GET /v1/images/{id}` (the image's bytes), the product `GET /v1/profiles/{user}`
//! (the JSON with the image in base64): the product should hold the image once plus
//! one encoded piece, not the whole base64 text or a second copy.
//!
//! The image must be much larger than what the kernel's socket buffers take (a few
//! MiB on loopback): a smaller one finishes into them and measures nothing held.

use std::time::Duration;

use futures::FutureExt;
use profilestore_core::settings::Timings;
use profilestore_stores::{OpenMode, S3Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::{self, ChildOutcome, ChildTask, SweepStores};
use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::fixture::{self, Stores};
use crate::load::{Interleaved, interleave};
use crate::stats::{Spread, ratio};

/// The receive buffer each slow client asks for: small, so the answer stalls early.
const CLIENT_RECEIVE_BUFFER: u32 = 16 * 1024;

/// The most a settling sample series lasts, and the gap between samples.
const SETTLE_LIMIT: Duration = Duration::from_secs(3);
const SAMPLE_GAP: Duration = Duration::from_millis(20);

/// What a child serving held reads is asked to do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HeldReads {
    /// The stores, already holding the profile.
    pub stores: SweepStores,
    /// The path every client asks for.
    pub path: String,
    /// How many clients hold a read open at once.
    pub reads: usize,
}

/// The scenario at one image size.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReadMemoryResult {
    /// The image's size in bytes.
    pub image_bytes: u64,
    /// Reads held at once in each run.
    pub reads: usize,
    /// Image GETs (floor) and profile GETs (product), each run in a fresh child.
    pub runs: Interleaved<ChildOutcome>,
    /// The profile GET's memory per held read over the image's size, run by run.
    pub product_per_image: Option<Spread>,
    /// The image GET's memory per held read over the image's size, run by run.
    pub floor_per_image: Option<Spread>,
}

/// The resident memory a run's outcome shows per held read, in bytes.
pub fn per_read_bytes(outcome: &ChildOutcome, reads: usize) -> Option<f64> {
    let (idle, held) = (outcome.rss_idle_bytes?, outcome.rss_held_bytes?);
    Some(held.saturating_sub(idle) as f64 / reads.max(1) as f64)
}

/// Seeds one profile with an image of the configured size, then measures both GETs,
/// alternating, each run in a fresh child process.
pub(crate) async fn run(config: &BenchConfig) -> Result<ReadMemoryResult, BenchError> {
    let (image_bytes, reads) = (config.in_flight_image_size, config.in_flight_reads);
    let stores = Stores::open(&config.stores, Timings::default()).await?;
    let user = fixture::users(1)[0].clone();
    eprintln!("bench: read-memory: {reads} held reads of a {image_bytes}-byte image");
    let record = stores.service().write(user.clone(), fixture::profile(fixture::image(image_bytes))).await?;
    let target = SweepStores { database: stores.urls.0.clone(), blobs: stores.urls.1.clone() };
    let held = |path: String| {
        let task = ChildTask::HeldReads(HeldReads { stores: target.clone(), path, reads });
        let (exe, s3) = (config.child_exe.clone(), config.stores.s3.clone());
        move |_| {
            let (task, exe, s3) = (task.clone(), exe.clone(), s3.clone());
            async move { child::run(exe.as_deref(), &task, &s3).await }.boxed()
        }
    };
    let runs =
        interleave(config.runs, held(format!("/v1/images/{}", record.image_id)), held(format!("/v1/profiles/{user}")))
            .await?;
    drop(stores);
    let per_image = |side: &[ChildOutcome]| {
        Spread::of(side.iter().filter_map(|o| per_read_bytes(o, reads)).map(|b| ratio(b, image_bytes as f64)))
    };
    Ok(ReadMemoryResult {
        image_bytes,
        reads,
        product_per_image: per_image(&runs.product),
        floor_per_image: per_image(&runs.floor),
        runs,
    })
}

/// The child's side: serves the stores on a loopback port, holds `reads` answers
/// open, and reports its resident memory idle and with them held.
pub(crate) async fn hold(task: &HeldReads, s3: &S3Options) -> Result<ChildOutcome, BenchError> {
    let stores =
        Stores::open_urls(&task.stores.database, &task.stores.blobs, s3, Timings::default(), OpenMode::Existing)
            .await?;
    let server = crate::scenarios::http::Server::start(stores.service()).await?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let rss_idle_bytes = settled_rss().await;
    let started = stores.clock.ticks();
    let mut clients = Vec::with_capacity(task.reads);
    for _ in 0..task.reads {
        clients.push(held_read(&address, &task.path).await?);
    }
    let rss_held_bytes = settled_rss().await;
    let seconds = stores.clock.ticks().saturating_sub(started).as_secs_f64();
    // The clients go first, so the server's answers fail and it can stop at once.
    drop(clients);
    drop(server);
    Ok(ChildOutcome { seconds, rss_idle_bytes, rss_held_bytes, ..ChildOutcome::default() })
}

/// A client that asked for `path` and read the answer's head (a 200), and reads no
/// more: its answer stays in flight on the server.
async fn held_read(address: &str, path: &str) -> Result<tokio::net::TcpStream, BenchError> {
    let failed = |what: &str| BenchError::io(format!("held read of {path}: {what}"));
    let socket = tokio::net::TcpSocket::new_v4().map_err(failed("cannot open a socket"))?;
    socket.set_recv_buffer_size(CLIENT_RECEIVE_BUFFER).map_err(failed("cannot size the receive buffer"))?;
    let address = address.parse().map_err(|e| BenchError::Http(format!("server address {address:?}: {e}")))?;
    let mut stream = socket.connect(address).await.map_err(failed("cannot connect"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(failed("cannot send the request"))?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.map_err(failed("cannot read the answer"))?;
        if n == 0 || head.len() > 64 * 1024 {
            return Err(BenchError::Http(format!("held read of {path}: no whole head in {} bytes", head.len())));
        }
        head.extend_from_slice(&buffer[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        let line = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
        return Err(BenchError::Http(format!("held read of {path}: answered {line:?}")));
    }
    Ok(stream)
}

/// This process's resident memory once it stops moving: sampled until two samples in
/// a row agree within 1 %, for at most [`SETTLE_LIMIT`]; the last sample.
async fn settled_rss() -> Option<u64> {
    let mut last = current_rss_bytes()?;
    let mut waited = Duration::ZERO;
    while waited < SETTLE_LIMIT {
        tokio::time::sleep(SAMPLE_GAP).await;
        waited += SAMPLE_GAP;
        let now = current_rss_bytes()?;
        if now.abs_diff(last) <= last / 100 {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

/// This process's resident memory now (`VmRSS`), where Linux reports it.
fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_read_is_the_rise_over_idle_shared_by_the_reads() {
        let outcome = ChildOutcome { rss_idle_bytes: Some(100), rss_held_bytes: Some(500), ..ChildOutcome::default() };
        assert_eq!(per_read_bytes(&outcome, 4), Some(100.0));
        let fell = ChildOutcome { rss_idle_bytes: Some(500), rss_held_bytes: Some(100), ..ChildOutcome::default() };
        assert_eq!(per_read_bytes(&fell, 4), Some(0.0), "a fall is no memory held, not a negative");
        assert_eq!(per_read_bytes(&ChildOutcome::default(), 4), None, "unmeasured");
        assert!(current_rss_bytes().is_some_and(|b| b > 0), "Linux reports VmRSS");
    }

    #[tokio::test]
    async fn a_settled_sample_is_taken() {
        assert!(settled_rss().await.is_some_and(|b| b > 0));
    }
}
