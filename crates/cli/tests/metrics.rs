//! The figures of real processes: `serve`'s `/metrics` on its admin listener (never on
//! the API's), the request id, and the cleaner daemon's `/metrics`.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{Daemon, PNG, Server, bin, log_lines, log_to, wait_for};

fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn form(metadata: &str, image: &'static [u8]) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("metadata", metadata.to_owned())
        .part("image", reqwest::multipart::Part::bytes(image).file_name("a.png"))
}

async fn scrape(admin: &str) -> String {
    let response = reqwest::get(format!("{admin}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

/// The value of the sample `name{labels}` (labels exactly as rendered), if present.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_counts_requests_bytes_latency_store_calls_and_clocks_on_its_admin_listener_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut args = data_dir_args(&dir.path().join("data"));
    args.extend(["--log-format".into(), "json".into()]);
    let server = Server::try_start_logging(&args, log_to(&log), "info").unwrap();
    let admin = server.admin.clone().expect("an admin listener by default");
    let http = reqwest::Client::new();
    let profile = format!("{}/v1/profiles/alice", server.base);

    let put = http.put(&profile).multipart(form("{}", PNG)).header("x-request-id", "put-alice-1").send().await.unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.headers()["x-request-id"], "put-alice-1", "a well-formed id is answered back");
    let got = http.get(&profile).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let got_len = got.bytes().await.unwrap().len();
    let refused = http.put(&profile).multipart(form("{}", b"not an image")).send().await.unwrap();
    assert_eq!(refused.status(), 415);
    let unknown = http.get(format!("{}/no/such/route", server.base)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let metrics_on_api = http.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(metrics_on_api.status(), 404, "the API listener exposes only the API");

    let text = scrape(&admin).await;
    let route = r#"route="/v1/profiles/{user_id}""#;
    let requests = |method: &str, status: &str| {
        sample(&text, &format!(r#"profilestore_http_requests_total{{{route},method="{method}",status="{status}"}}"#))
    };
    assert_eq!(requests("PUT", "200"), Some(1.0), "{text}");
    assert_eq!(requests("GET", "200"), Some(1.0), "{text}");
    assert_eq!(requests("PUT", "415"), Some(1.0), "{text}");
    // The unknown route, and `/metrics` asked of the API.
    let unmatched = r#"profilestore_http_requests_total{route="unmatched",method="GET",status="404"}"#;
    assert_eq!(sample(&text, unmatched), Some(2.0), "{text}");
    // Bytes: both uploads came in; at least the profile answer went out.
    let bytes_in = sample(&text, &format!("profilestore_http_request_body_bytes_total{{{route}}}")).unwrap();
    assert!(bytes_in > PNG.len() as f64, "{bytes_in}");
    let bytes_out = sample(&text, &format!("profilestore_http_response_body_bytes_total{{{route}}}")).unwrap();
    assert!(bytes_out >= got_len as f64, "{bytes_out} < {got_len}");
    // Latency as a histogram with explicit buckets, never a summary.
    assert!(!text.contains("quantile="), "no summaries: {text}");
    let bucket = format!(r#"profilestore_http_request_duration_seconds_bucket{{{route},method="PUT",le="+Inf"}}"#);
    assert_eq!(sample(&text, &bucket), Some(2.0), "{text}");
    assert!(text.contains(r#"le="0.005""#), "{text}");
    // The write path, the stores by backend and operation, the clocks.
    assert_eq!(sample(&text, r#"profilestore_writes_total{outcome="committed"}"#), Some(1.0), "{text}");
    let commits = r#"profilestore_store_call_duration_seconds_count{store="database",backend="sqlite",op="put"}"#;
    assert_eq!(sample(&text, commits), Some(1.0), "{text}");
    let puts = r#"profilestore_store_call_duration_seconds_count{store="blobs",backend="local",op="put"}"#;
    assert_eq!(sample(&text, puts), Some(1.0), "{text}");
    for clock in ["database", "blob_store"] {
        let offset = sample(&text, &format!(r#"profilestore_clock_offset_seconds{{clock="{clock}"}}"#));
        assert!(offset.is_some_and(|o| o.abs() < 1.0), "{clock}: {text}");
        let error = sample(&text, &format!(r#"profilestore_clock_offset_error_seconds{{clock="{clock}"}}"#));
        assert!(error.is_some(), "{clock}: {text}");
    }
    assert_eq!(sample(&text, "profilestore_clock_skew_bound_seconds"), Some(300.0), "{text}");
    assert!(text.contains("# HELP profilestore_writes_total"), "every figure explains itself: {text}");
    let names = [
        profilestore_core::metrics::NAMES,
        profilestore_stores::measured::NAMES,
        profilestore_api::metrics::NAMES,
        profilestore_cleaner::metrics::NAMES,
    ]
    .concat();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap();
        assert!(names.contains(&name), "{name} is exported but not among the documented names");
    }

    // Every log line of a request names its id.
    drop(server);
    let lines = log_lines(&log);
    let answered = lines
        .iter()
        .find(|j| j["message"] == "request answered" && j["span"]["request_id"] == "put-alice-1")
        .unwrap_or_else(|| panic!("no request line names put-alice-1: {lines:?}"));
    assert_eq!(answered["status"], 200, "{answered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_listener_turned_off_serves_nothing_and_prints_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = data_dir_args(&dir.path().join("data"));
    args.extend(["--admin-listen".into(), "off".into()]);
    let server = Server::start(&args);
    assert_eq!(server.admin, None);
    let health = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(health.status(), 200, "the API is served");
}

/// Timings under which an orphan is collectable, and deleted, within seconds.
const QUICK: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "2s", "--delete-delay", "1s", "--clock-skew", "500ms"];

#[tokio::test(flavor = "multi_thread")]
async fn the_cleaner_daemon_counts_its_cycles_and_keys_on_its_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_args(dir.path());
    let init = bin().arg("init").args(&data).args(QUICK).output().unwrap();
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    // Two profiles written, one deleted: its image is queued for the cleaner (the
    // other keeps the database from looking wiped, which would stop the cleaner).
    let server = Server::start(&data);
    let http = reqwest::Client::new();
    let bob = format!("{}/v1/profiles/bob", server.base);
    assert_eq!(http.put(&bob).multipart(form("{}", PNG)).send().await.unwrap().status(), 200);
    let profile = format!("{}/v1/profiles/alice", server.base);
    assert_eq!(http.put(&profile).multipart(form("{}", PNG)).send().await.unwrap().status(), 200);
    assert_eq!(http.delete(&profile).send().await.unwrap().status(), 204);
    drop(server);

    let log = dir.path().join("clean.log");
    let mut child = bin()
        .args(["clean", "--every", "300ms", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
        .args(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log_to(&log))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let cleaner = Daemon(child);
    let admin = line.trim().strip_prefix("profilestore cleaner metrics on ").unwrap_or_else(|| panic!("{line:?}"));
    let admin = admin.to_owned();

    let deleted = r#"profilestore_cleaner_keys_total{stage="deleted"}"#;
    let rt = tokio::runtime::Handle::current();
    let referenced = r#"profilestore_cleaner_kept_total{reason="referenced"}"#;
    wait_for("the queued image deleted and bob's kept, as the figures say", Duration::from_secs(60), || {
        let text = std::thread::scope(|s| s.spawn(|| rt.block_on(scrape(&admin))).join().unwrap());
        sample(&text, deleted) == Some(1.0) && sample(&text, referenced).is_some_and(|n| n >= 1.0)
    });
    let text = scrape(&admin).await;
    let completed = sample(&text, r#"profilestore_cleaner_cycles_total{outcome="completed",sweep="full"}"#);
    assert!(completed.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(sample(&text, r#"profilestore_cleaner_keys_total{stage="superseded_deleted"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, "profilestore_cleaner_superseded_queue_depth"), Some(0.0), "{text}");
    let since = sample(&text, "profilestore_cleaner_seconds_since_last_completed_cycle").unwrap();
    assert!((0.0..30.0).contains(&since), "{since}: {text}");
    assert!(text.contains(r#"profilestore_cleaner_cycle_duration_seconds_bucket{sweep="full",le="0.1"}"#), "{text}");
    assert!(cleaner.terminate().success());
    assert!(log_lines(&log).iter().any(|j| j["message"] == "serving /metrics"));
}
