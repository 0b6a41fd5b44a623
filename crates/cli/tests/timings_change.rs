//! `set-timings` reaches processes already running: a server started under the old
//! timings cannot commit under them (its next write answers 503 `timings_changed`,
//! and it adopts the stored timings), and a cleaner daemon reloads them instead of
//! cleaning under the old ones. Safety does not rest on a restart order.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::{Server, bin, fresh_database, service_env, tagged_png, unique_suffix, wait_for};

const TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "1s", "--clock-skew", "500ms"];

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

async fn put(http: &reqwest::Client, base: &str, tag: &str) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("image", reqwest::multipart::Part::bytes(tagged_png(tag)));
    let answer = http.put(format!("{base}/v1/profiles/ada")).multipart(form).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

async fn running_processes_adopt_changed_timings(stores: Vec<String>, logs: &Path) {
    let init = bin().arg("init").args(&stores).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    // A long clock-check interval: the server notices the change through its write.
    let server = Server::start(&[stores.clone(), vec!["--clock-check-interval".into(), "1h".into()]].concat());
    let cleaner_log = logs.join("clean.log");
    let _cleaner = Daemon(
        bin()
            .args(["clean", "--every", "100ms", "--log-format", "json"])
            .args(&stores)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&cleaner_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    assert_eq!(put(&http, &server.base, "before").await.0, 200);
    // The cleaner must be running under the old timings before they change.
    wait_for_line(&cleaner_log, "cleaner cycle finished");

    let set = bin().arg("set-timings").args(&stores).args(["--delete-delay", "2s"]).output().unwrap();
    assert!(set.status.success(), "set-timings: {}", String::from_utf8_lossy(&set.stderr));

    let (status, body) = put(&http, &server.base, "stale").await;
    assert_eq!(status, 503, "a write under the old timings: {body}");
    assert_eq!(body["error"]["code"], "timings_changed", "{body}");
    let (status, body) = put(&http, &server.base, "after").await;
    assert_eq!(status, 200, "the server adopted the stored timings: {body}");

    wait_for_line(&cleaner_log, "the cluster's timings changed: the cleaner runs under the stored ones");
}

/// Waits until `log` contains `line`, for at most 20 s.
fn wait_for_line(log: &Path, line: &str) {
    wait_for(line, Duration::from_secs(20), || std::fs::read_to_string(log).unwrap_or_default().contains(line));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_running_servers_and_cleaners_adopt_changed_timings() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    running_processes_adopt_changed_timings(stores, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_running_servers_and_cleaners_adopt_changed_timings() {
    let Some(admin) = service_env("PROFILESTORE_TEST_POSTGRES_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let stores = vec![
        "--database".to_owned(),
        fresh_database(&admin, &format!("timings_{}", unique_suffix())),
        "--blobs".to_owned(),
        format!("file://{}", dir.path().join("blobs").display()),
    ];
    running_processes_adopt_changed_timings(stores, dir.path()).await;
}
