//! Incremental cleaning through the real binary on the embedded default: the queue of
//! replaced images, the stored horizon, and `--full-every`.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::{PNG, Server, audit_json, bin, wait_for};

/// Short timings: the listing horizon lags a cycle's start by 1 + 2 + 3 × 0.5 = 4.5 s.
const QUICK: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "2s", "--delete-delay", "1s", "--clock-skew", "500ms"];

fn run(args: &[&str], dir: &Path) -> Output {
    bin().args(args).arg("--data-dir").arg(dir).output().expect("binary runs")
}

fn clean_json(dir: &Path) -> serde_json::Value {
    let out = run(&["clean", "--full-every", "1d", "--json"], dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

async fn upload(http: &reqwest::Client, base: &str, user: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("image", reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("a.png"));
    let put = http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let body: serde_json::Value = put.json().await.unwrap();
    body["image_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_image_is_reclaimed_from_the_queue_and_later_cycles_list_only_since_the_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let init = run(&[&["init"][..], &QUICK].concat(), dir.path());
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let data = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
    let server = Server::start(&data);
    let http = reqwest::Client::new();
    let replaced = upload(&http, &server.base, "alice").await;
    let current = upload(&http, &server.base, "alice").await;
    upload(&http, &server.base, "bob").await;
    drop(server);

    let first = clean_json(dir.path());
    assert_eq!(first["outcome"]["kind"], "completed", "{first}");
    assert_eq!(first["sweep"], "full", "no horizon yet: the first cycle lists everything: {first}");
    assert_eq!(first["superseded_first_seen"], 1, "{first}");
    assert!(first["horizon_stored"].is_string(), "a completed cycle stores a horizon: {first}");

    let mut cycles = Vec::new();
    wait_for("the replaced image to be reclaimed from the queue", Duration::from_secs(60), || {
        let report = clean_json(dir.path());
        let done = report["superseded_deleted"] == 1;
        cycles.push(report);
        done
    });
    let mut stored = &first["horizon_stored"];
    for report in &cycles {
        assert_eq!(report["sweep"], "incremental", "within a day of the full sweep: {report}");
        assert_eq!(&report["listed_since"], stored, "each cycle lists since the last stored horizon: {report}");
        stored = &report["horizon_stored"];
    }

    let (code, audit) = audit_json(&data);
    assert_eq!(code, Some(0), "{audit}");
    assert_eq!(audit["superseded_queued"], 0, "{audit}");
    assert_eq!(audit["images"], 2, "alice's current image and bob's remain: {audit}");
    let replaced_path = dir.path().join("blobs").join(&replaced[replaced.len() - 2..]).join(&replaced).join("original");
    assert!(!replaced_path.exists(), "the replaced image's blob is gone");
    let current_path = dir.path().join("blobs").join(&current[current.len() - 2..]).join(&current).join("original");
    assert!(current_path.exists(), "the image alice's record names stays");
}

#[test]
fn a_bad_full_every_is_refused_naming_the_flag() {
    let out = bin().args(["clean", "--full-every", "daily"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--full-every"), "{}", String::from_utf8_lossy(&out.stderr));
}
