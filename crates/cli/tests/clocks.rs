//! Clocks are measured, not trusted: real processes run on a wall clock shifted by
//! libfaketime. A cleaner hours ahead refuses to delete and says why; a server whose
//! clock is off refuses writes (503 `clock_out_of_bounds`, `readyz` 503 naming the
//! clock) and resumes by itself once the clocks agree; within the bound, nothing is
//! lost. Each test first checks that the fake clock reached the process.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::fs::File;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::{FakeClock, audit_json, bin, fresh_database, log_clock_ahead_secs, service_env, unique_suffix};

const TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "1s", "--clock-skew", "500ms"];

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn serve(stores: &[String], clock: Option<&FakeClock>, log: &Path) -> Serve {
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--clock-check-interval", "200ms"])
        .args(stores)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(File::create(log).unwrap());
    if let Some(clock) = clock {
        clock.apply(&mut cmd);
    }
    let mut child = cmd.spawn().expect("serve starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base =
        line.trim().strip_prefix("profilestore listening on ").unwrap_or_else(|| panic!("serve: {line:?}")).to_owned();
    Serve { child, base }
}

fn init(stores: &[String]) {
    let init = bin().arg("init").args(stores).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
}

async fn put(http: &reqwest::Client, base: &str, user: &str, tag: &str) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new()
        .text("metadata", format!(r#"{{"tag":"{tag}"}}"#))
        .part("image", reqwest::multipart::Part::bytes(support::tagged_png(tag)));
    let answer = http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

/// Waits until `ready` answers true, checking every 50 ms, for at most `limit`.
async fn eventually(what: &str, limit: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_clock_reached(log: &Path, ahead_secs: f64) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let seen = log_clock_ahead_secs(&text).unwrap_or_else(|| panic!("no JSON log line to read the clock from: {text}"));
    assert!(
        (seen - ahead_secs).abs() < 60.0,
        "the fake clock did not reach the process: {seen} s ahead, not {ahead_secs}"
    );
}

/// A server whose wall clock is an hour ahead refuses writes and says which clock
/// disagrees; when its clock comes back, it writes again without a restart.
async fn a_server_out_of_step_refuses_writes_until_its_clock_is_back(stores: Vec<String>, dir: &Path, disagrees: &str) {
    init(&stores);
    let Some(clock) = FakeClock::new(dir, "+1h") else { return };
    let log = dir.join("serve.log");
    let server = serve(&stores, Some(&clock), &log);
    assert_clock_reached(&log, 3600.0);
    let http = reqwest::Client::new();

    let (status, body) = put(&http, &server.base, "ada", "ahead").await;
    assert_eq!(status, 503, "a write with the clock an hour ahead: {body}");
    assert_eq!(body["error"]["code"], "clock_out_of_bounds", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("the {disagrees} clock is")) && message.contains("behind"), "{message}");
    let ready = http.get(format!("{}/readyz", server.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert!(ready["error"]["message"].as_str().unwrap_or_default().contains(disagrees), "{ready}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("clock check: not writing or cleaning until the clocks agree"), "{logged}");

    clock.set("+0.1");
    eventually("readyz once the clocks agree", Duration::from_secs(10), async || {
        http.get(format!("{}/readyz", server.base)).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (status, body) = put(&http, &server.base, "ada", "back").await;
    assert_eq!(status, 200, "a write once the clocks agree: {body}");
    let read = http.get(format!("{}/v1/profiles/ada", server.base)).send().await.unwrap();
    assert_eq!(read.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_server_ahead_of_the_blob_stores_clock_refuses_writes_and_resumes() {
    // On SQLite the database's clock is the server's own (libfaketime moves both):
    // only the blob store's file times can show the offset.
    let dir = tempfile::tempdir().unwrap();
    let stores = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    a_server_out_of_step_refuses_writes_until_its_clock_is_back(stores, dir.path(), "blob store").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_server_ahead_of_the_databases_clock_refuses_writes_and_resumes() {
    let Some(admin) = service_env("PROFILESTORE_TEST_POSTGRES_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let stores = vec![
        "--database".to_owned(),
        fresh_database(&admin, &format!("clocks_{}", unique_suffix())),
        "--blobs".to_owned(),
        format!("file://{}", dir.path().join("blobs").display()),
    ];
    a_server_out_of_step_refuses_writes_until_its_clock_is_back(stores, dir.path(), "database").await;
}

fn clean_once(stores: &[String], clock: &FakeClock, log: &Path) -> (Option<i32>, serde_json::Value) {
    let mut cmd = bin();
    cmd.args(["clean", "--json", "--log-format", "json"]).args(stores).env("RUST_LOG", "info");
    clock.apply(&mut cmd);
    let out = cmd.output().unwrap();
    std::fs::write(log, &out.stderr).unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("clean printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleaner_hours_ahead_refuses_to_delete_and_within_the_bound_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    init(&stores);
    let Some(clock) = FakeClock::new(dir.path(), "+3h") else { return };
    let server = serve(&stores, None, &dir.path().join("serve.log"));
    let http = reqwest::Client::new();
    // Two writes of one user: the first image becomes an orphan.
    let (status, first) = put(&http, &server.base, "ada", "first").await;
    assert_eq!(status, 200, "{first}");
    let (status, kept) = put(&http, &server.base, "ada", "kept").await;
    assert_eq!(status, 200, "{kept}");
    let orphan = first["image_id"].as_str().unwrap().to_owned();
    let orphan_path = |id: &str| {
        let shard = &id[id.len() - 2..];
        dir.path().join("data").join("blobs").join(shard).join(id).join("original")
    };
    assert!(orphan_path(&orphan).exists());

    // Three hours ahead, every blob looks old enough: the cleaner must refuse.
    let log = dir.path().join("clean-ahead.log");
    let (code, report) = clean_once(&stores, &clock, &log);
    assert_clock_reached(&log, 3.0 * 3600.0);
    assert_eq!(code, Some(1), "a refused cycle exits 1: {report}");
    let reason = report.to_string();
    assert!(reason.contains("blob store clock") && reason.contains("behind"), "the refusal names the clock: {report}");
    assert!(orphan_path(&orphan).exists(), "a cleaner hours ahead deleted a blob");

    // Within the bound (300 ms ahead of a 500 ms skew) the cleaner does its work once
    // the orphan is truly old enough, and nothing referenced is lost.
    clock.set("+0.3");
    let old_enough = Instant::now() + Duration::from_secs(4);
    eventually("the orphan to be old enough", Duration::from_secs(10), async || Instant::now() >= old_enough).await;
    let log = dir.path().join("clean-within.log");
    let (code, report) = clean_once(&stores, &clock, &log);
    assert_clock_reached(&log, 0.3);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["deleted"].as_u64(), Some(1), "the orphan is reclaimed: {report}");
    assert!(!orphan_path(&orphan).exists());
    let (code, audit) = audit_json(&stores);
    assert_eq!((code, audit["dangling_count"].as_u64()), (Some(0), Some(0)), "{audit}");
    let read = http.get(format!("{}/v1/profiles/ada", server.base)).send().await.unwrap();
    assert_eq!(read.status(), 200);
}
