//! `profilestore report` against real servers with injected faults: writes stalled at
//! the failpoint between their deadline check and their commit, and a server whose
//! clock is off under libfaketime. The report's counts and rates must match what was
//! injected.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use profilestore_testkit::failpoint::Failpoints;
use support::{Daemon, FakeClock, PNG, bin, log_to, wait_for};

const TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "2s", "--clock-skew", "500ms"];

/// Starts `serve` from `cmd` on the stores of `dir`; answers it with its API and
/// admin base URLs.
fn serve(cmd: &mut Command, dir: &Path) -> (Daemon, String, String) {
    let data = dir.join("data").display().to_string();
    let init = bin().args(["init", "--data-dir", &data]).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data, "--clock-check-interval", "200ms"])
        .stdout(Stdio::piped())
        .stderr(log_to(&dir.join("serve.log")))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut api, mut admin) = (String::new(), String::new());
    out.read_line(&mut api).unwrap();
    out.read_line(&mut admin).unwrap();
    let api = api.trim().strip_prefix("profilestore listening on ").unwrap_or_else(|| panic!("{api:?}")).to_owned();
    let admin = admin.trim().strip_prefix("profilestore admin on ").unwrap_or_else(|| panic!("{admin:?}")).to_owned();
    (Daemon(child), api, admin)
}

async fn put(http: &reqwest::Client, base: &str, user: &str) -> u16 {
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("image", reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("a.png"));
    http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await.unwrap().status().as_u16()
}

/// Saves a scrape of `admin` to `file`.
async fn save_scrape(admin: &str, file: &Path) {
    let text = reqwest::get(format!("{admin}/metrics")).await.unwrap().text().await.unwrap();
    std::fs::write(file, text).unwrap();
}

/// Runs `report --json` on `scrapes`.
fn report(scrapes: &[&str]) -> serde_json::Value {
    let out = bin().args(["report", "--json"]).args(scrapes).output().unwrap();
    assert!(out.status.success(), "report: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assumption<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["assumptions"].as_array().unwrap().iter().find(|a| a["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalls_at_the_failpoint_are_the_stall_assumptions_observed_rate() {
    let dir = tempfile::tempdir().unwrap();
    let failpoints = Failpoints::new(dir.path());
    let (_server, api, admin) = serve(failpoints.apply(&mut bin()), dir.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let before = dir.path().join("before.prom");
    save_scrape(&admin, &before).await;

    const HEALTHY: usize = 20;
    const STALLED: usize = 2;
    for n in 0..HEALTHY {
        assert_eq!(put(&http, &api, &format!("user-{n}")).await, 200);
        assert_eq!(http.get(format!("{api}/v1/profiles/user-{n}")).send().await.unwrap().status(), 200);
    }
    for n in 0..STALLED {
        failpoints.arm_park_before_commit();
        let write = tokio::spawn({
            let (http, api) = (http.clone(), api.clone());
            async move { put(&http, &api, &format!("stalled-{n}")).await }
        });
        failpoints.wait_parked(Duration::from_secs(20));
        // The request's second runs out while its commit is parked: the outcome is
        // unknown to the client.
        assert_eq!(write.await.unwrap(), 503);
        failpoints.release();
        // Once the write says it goes on, it no longer looks at the files.
        let log = dir.path().join("serve.log");
        wait_for("the released write going on", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.matches("the parked record write goes on to commit").count() > n
        });
        failpoints.reset();
    }
    let after = dir.path().join("after.prom");
    save_scrape(&admin, &after).await;

    let r = report(&[before.to_str().unwrap(), after.to_str().unwrap()]);
    assert_eq!(r["requests"], 2 * HEALTHY + STALLED, "the API requests between the scrapes: {r:#}");
    let stall = assumption(&r, "no server stalls past request-timeout");
    assert_eq!(stall["events"], STALLED, "{r:#}");
    let rate = stall["rate"].as_f64().unwrap();
    assert!((rate - STALLED as f64 / (2 * HEALTHY + STALLED) as f64).abs() < 1e-9, "{r:#}");
    let (lo, hi) = (stall["rate_interval"][0].as_f64().unwrap(), stall["rate_interval"][1].as_f64().unwrap());
    assert!(lo < rate && rate < hi, "{r:#}");
    assert_eq!(stall["insufficient_data"], false);
    let clocks = assumption(&r, "clocks within clock-skew");
    assert_eq!((&clocks["events"], &clocks["insufficient_data"]), (&0.into(), &true.into()), "{r:#}");

    // From the live endpoint too, and as text for people.
    let live = bin().args(["report", &format!("{admin}/metrics")]).output().unwrap();
    let text = String::from_utf8_lossy(&live.stdout);
    assert!(live.status.success(), "{}", String::from_utf8_lossy(&live.stderr));
    assert!(text.contains("insufficient data for more"), "{text}");
    assert!(text.contains("| no server stalls past request-timeout | 2 |"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_off_by_more_than_the_bound_shows_in_the_clock_assumption_and_the_largest_offset() {
    let dir = tempfile::tempdir().unwrap();
    let Some(clock) = FakeClock::new(dir.path(), "+10s") else { return };
    let (_server, api, admin) = serve(clock.apply(&mut bin()), dir.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    const REFUSED: usize = 3;
    for n in 0..REFUSED {
        assert_eq!(put(&http, &api, &format!("user-{n}")).await, 503, "the clock is 10 s off a 500 ms bound");
    }
    let scrape = dir.path().join("scrape.prom");
    save_scrape(&admin, &scrape).await;
    let r = report(&[scrape.to_str().unwrap()]);
    assert_eq!(r["requests"], REFUSED, "{r:#}");
    assert_eq!(assumption(&r, "clocks within clock-skew")["events"], REFUSED, "{r:#}");
    let worst = r["worst_clock_offset_seconds"].as_f64().unwrap();
    assert!((9.0..12.0).contains(&worst), "the blob store's clock is 10 s behind this one: {r:#}");
    assert_eq!(r["clock_skew_bound_seconds"], 0.5, "{r:#}");
}

#[test]
fn a_scrape_that_is_not_one_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("page.html");
    std::fs::write(&file, "<html>not metrics</html>\n").unwrap();
    let out = bin().args(["report"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a Prometheus scrape") && stderr.contains("page.html"), "{stderr}");
}
