//! A real `serve` under hostile load: hundreds of clients that dribble their headers
//! or their bodies, concurrent 10 MiB uploads, bodies over the limit and bodies cut
//! short, all at once. Its resident memory stays under a stated bound, healthy readers
//! are served throughout and healthy writers get through (retrying on 503 as told),
//! and every profile stored before is still there, image and all.
//!
//! Uploads over 1 MiB are received into the spool on disk (the default), so the slow
//! 10 MiB bodies hold neither memory nor a place among the uploads read at once, and
//! the spool is empty once the attack is over.
//!
//! `PROFILESTORE_HOSTILE_SECONDS` sets how long the attack lasts (default 12);
//! `PROFILESTORE_HOSTILE_SERVE_ARGS` adds `serve` flags (space-separated), e.g.
//! `--max-spool-size 0` to measure the same attack without the spool.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use profilestore_testkit::raw_http::{multipart_body, put_head};
use support::{Server, tagged_png};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bytes the uploads being read may hold together (`--max-upload-memory`).
const UPLOAD_BUDGET: u64 = 64 << 20;
/// The stated bound on the server's resident memory under this load: the upload budget,
/// plus a body limit per slow connection's buffers, plus the process's own ~100 MiB.
const RSS_BOUND: u64 = UPLOAD_BUDGET + (160 << 20);
const SLOW_HEADERS: usize = 200;
const SLOW_BODIES: usize = 100;
const BIG_UPLOADERS: usize = 16;

fn multipart(image: &[u8]) -> Vec<u8> {
    multipart_body("{}", image)
}

fn head(user: &str, length: usize) -> String {
    put_head(user, length, "connection: close\r\n")
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

async fn put(http: &reqwest::Client, base: &str, user: &str, image: Vec<u8>) -> reqwest::Result<reqwest::Response> {
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("image", reqwest::multipart::Part::bytes(image).file_name("a.png"));
    http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_under_hostile_load_keeps_its_memory_bounded_serves_the_healthy_and_loses_nothing() {
    let seconds: u64 = std::env::var("PROFILESTORE_HOSTILE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--max-upload-memory",
        &format!("{UPLOAD_BUDGET}"),
        "--max-concurrent-uploads",
        "16",
        // Attackers and the healthy client all connect from 127.0.0.1, one client to
        // the per-client limits: lifted above every attacker at once (spooled bodies
        // take no upload slot while they arrive), so that the global budgets are what
        // is tested.
        "--max-uploads-per-client",
        "10000",
        "--header-timeout",
        "3s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::env::var("PROFILESTORE_HOSTILE_SERVE_ARGS").unwrap_or_default().split_whitespace().map(String::from))
    .collect();
    let server = Server::start(&args);
    let base = server.base.clone();
    let addr = base.trim_start_matches("http://").to_owned();
    let pid = server.child.id();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    // Profiles stored before the attack, which must all survive it.
    let mut kept = Vec::new();
    for n in 0..10 {
        let user = format!("kept{n}");
        let stored: serde_json::Value =
            put(&http, &base, &user, tagged_png(&user)).await.unwrap().json().await.unwrap();
        kept.push((user, stored["image_id"].as_str().unwrap().to_owned()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut attackers = Vec::new();
    // Clients that send half a head and wait.
    for _ in 0..SLOW_HEADERS {
        let addr = addr.clone();
        attackers.push(tokio::spawn(async move {
            if let Ok(mut s) = TcpStream::connect(&addr).await {
                let _ = s.write_all(b"PUT /v1/profiles/x HTTP/1.1\r\nhost: x\r\ncontent-").await;
                let mut sink = Vec::new();
                let _ = tokio::time::timeout_at(until.into(), s.read_to_end(&mut sink)).await;
            }
        }));
    }
    // Clients that announce a 10 MiB upload and send a byte a second.
    for n in 0..SLOW_BODIES {
        let addr = addr.clone();
        attackers.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else { return };
            if s.write_all(head(&format!("slow{n}"), 10 << 20).as_bytes()).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while Instant::now() < until {
                tick.tick().await;
                if s.write_all(b"-").await.is_err() {
                    return;
                }
            }
        }));
    }
    // Full 10 MiB uploads, over and over; bodies over the limit; bodies cut short.
    let big_stored = Arc::new(AtomicU64::new(0));
    for n in 0..BIG_UPLOADERS {
        let (http, base, stop, big_stored) = (http.clone(), base.clone(), stop.clone(), big_stored.clone());
        attackers.push(tokio::spawn(async move {
            let mut image = tagged_png(&format!("big{n}"));
            image.resize((10 << 20) - 64, 0);
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = put(&http, &base, &format!("big{n}"), image.clone()).await
                    && r.status() == 200
                {
                    big_stored.fetch_add(1, Ordering::Relaxed);
                }
                let over = multipart(&vec![0u8; 11 << 20]);
                if let Ok(mut s) = TcpStream::connect(base.trim_start_matches("http://")).await {
                    let _ = s.write_all(head("over", over.len()).as_bytes()).await;
                    let _ = s.write_all(&over).await;
                    let mut answer = Vec::new();
                    let _ = s.read_to_end(&mut answer).await;
                }
                let cut = multipart(&tagged_png("cut"));
                if let Ok(mut s) = TcpStream::connect(base.trim_start_matches("http://")).await {
                    let _ = s.write_all(head("cut", cut.len() + 100_000).as_bytes()).await;
                    let _ = s.write_all(&cut[..cut.len() / 2]).await;
                }
            }
        }));
    }

    // The healthy: readers must always be served; writers must get through.
    let mut peak = 0;
    let (mut reads, mut writes, mut refused_writes) = (0u64, 0u64, 0u64);
    while Instant::now() < until {
        peak = peak.max(resident_bytes(pid));
        let (user, image_id) = &kept[reads as usize % kept.len()];
        let read =
            http.get(format!("{base}/v1/profiles/{user}")).send().await.expect("a healthy read was not answered");
        assert_eq!(read.status(), 200, "a healthy read was refused under load");
        let read: serde_json::Value = read.json().await.unwrap();
        assert_eq!(read["image_id"], image_id.as_str());
        reads += 1;
        let response = put(&http, &base, "healthy", tagged_png(&format!("healthy{writes}"))).await.unwrap();
        match response.status().as_u16() {
            200 => writes += 1,
            503 => refused_writes += 1,
            other => panic!("a healthy write was answered {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    peak = peak.max(resident_bytes(pid));
    // Once the attack ends, a healthy writer that retries gets through.
    let mut through = writes > 0;
    for _ in 0..100 {
        if through {
            break;
        }
        let response = put(&http, &base, "healthy", tagged_png("after")).await.unwrap();
        through = response.status() == 200;
        if !through {
            tokio::time::sleep(Duration::from_secs(1)).await; // Retry-After: 1
        }
    }
    assert!(through, "no healthy write got through");
    for task in attackers {
        task.abort();
    }
    eprintln!(
        "peak RSS {} MiB (bound {} MiB); healthy reads {reads}, writes {writes} ({refused_writes} refused 503); \
         10 MiB uploads stored {}",
        peak >> 20,
        RSS_BOUND >> 20,
        big_stored.load(Ordering::Relaxed)
    );
    assert!(peak > 0, "could not read the server's resident memory");
    assert!(peak < RSS_BOUND, "resident memory reached {} MiB, over the bound of {} MiB", peak >> 20, RSS_BOUND >> 20);

    for (user, image_id) in &kept {
        let read: serde_json::Value =
            http.get(format!("{base}/v1/profiles/{user}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(read["image_id"], image_id.as_str(), "{user}'s profile changed");
    }
    // Nothing refused was stored.
    for user in ["over", "cut", "slow0", "slow99"] {
        let absent = http.get(format!("{base}/v1/profiles/{user}")).send().await.unwrap();
        assert_eq!(absent.status(), 404, "a refused upload stored {user}");
    }
    assert!(server.terminate().success());
    // Every spooled upload (stored, refused, too slow, cut short) removed its file.
    let spool = dir.path().join("data").join("spool");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "files were left in the spool {}", spool.display());
    let (code, report) = support::audit_json(&["--data-dir".into(), dir.path().join("data").display().to_string()]);
    assert_eq!(code, Some(0), "the audit found a dangling reference: {report}");
}
