//! A record write frozen between its deadline check and its commit, for longer than
//! `min_blob_age + clock_skew + delete_delay`, while real `clean --every` daemons run:
//! the hazard the store protocols exist for. On SQLite the cleaners' query waits on
//! the frozen writer's lock, so the blob survives and the record lands naming it; on
//! PostgreSQL the cleaners may delete the blob, and the commit is then refused. Either
//! way `audit` finds no dangling reference and no acknowledged profile is lost.
//!
//! The freeze is the test-only failpoint (the `failpoints` feature of
//! `profilestore-stores`, on only in test builds), driven through files.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use profilestore_testkit::failpoint::Failpoints;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{
    Daemon, PNG, audit_json, bin, fresh_database, log_lines, service_env, signal, start_cleaner, unique_suffix,
};

/// Compressed timings: a blob is collectable 3.5 s after its write started, and a
/// cycle waits 2 s between its query and its deletes.
const TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "2s", "--clock-skew", "500ms"];
/// How long the write stays frozen: past `min_blob_age + clock_skew + delete_delay`
/// (5.5 s) with room for several cleaner cycles after it.
const FREEZE: Duration = Duration::from_secs(9);

/// Cycle lines in which some image was old enough to be asked about.
fn cycles_that_asked(log: &Path) -> Vec<serde_json::Value> {
    log_lines(log)
        .into_iter()
        .filter(|j| j["fields"]["message"] == "cleaner cycle finished" || j["message"] == "cleaner cycle finished")
        .filter(|j| j["fields"]["old_enough"].as_u64().or(j["old_enough"].as_u64()).unwrap_or(0) > 0)
        .collect()
}

/// The image ids with an original in the blob directory (`shard/id/original`).
fn blob_ids(blob_dir: &Path) -> Vec<String> {
    let shards = std::fs::read_dir(blob_dir).into_iter().flatten().flatten();
    shards
        .flat_map(|shard| std::fs::read_dir(shard.path()).into_iter().flatten().flatten())
        .filter(|image| image.path().join("original").is_file())
        .filter_map(|image| image.file_name().to_str().map(str::to_owned))
        .collect()
}

async fn put(http: &reqwest::Client, base: &str, user: &str) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("metadata", format!(r#"{{"user":"{user}"}}"#))
        .part("image", reqwest::multipart::Part::bytes(PNG.to_vec()));
    http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await.expect("server answers")
}

/// Runs the scenario on the given stores; `blob_dir` is the local blob directory.
async fn frozen_commit_leaves_nothing_dangling(stores: Vec<String>, blob_dir: PathBuf, work: &Path) -> bool {
    let init = bin().arg("init").args(&stores).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    let failpoints = Failpoints::new(work);
    let server_log = work.join("serve.log");
    let mut server = failpoints
        .apply(&mut bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(&stores)
        .stdout(Stdio::piped())
        .stderr(File::create(&server_log).unwrap())
        .spawn()
        .expect("serve starts");
    let base = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut line).unwrap();
        line.trim().strip_prefix("profilestore listening on ").unwrap_or_else(|| panic!("serve: {line:?}")).to_owned()
    };
    let server = Daemon(server);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();

    // An acknowledged profile, which also keeps the cleaners' empty-database guard quiet.
    let kept = put(&http, &base, "kept").await;
    assert_eq!(kept.status(), 200, "the first write is acknowledged");

    let cleaner_logs: Vec<PathBuf> = (0..2).map(|n| work.join(format!("clean-{n}.log"))).collect();
    let _cleaners: Vec<Daemon> = cleaner_logs.iter().map(|log| start_cleaner(&stores, "200ms", log)).collect();

    // The next record write parks between its deadline check and its commit.
    let before: Vec<String> = blob_ids(&blob_dir);
    failpoints.arm_park_before_commit();
    let frozen = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            let answer = put(&http, &base, "frozen").await;
            (answer.status().as_u16(), answer.text().await.unwrap_or_default())
        }
    });
    failpoints.wait_parked(Duration::from_secs(20));
    let frozen_blob =
        blob_ids(&blob_dir).into_iter().find(|id| !before.contains(id)).expect("the frozen write put its blob");
    let (status, body) = frozen.await.unwrap();
    assert!(matches!(status, 503 | 504), "the frozen write answered {status} {body}");
    if status == 503 {
        assert!(body.contains("commit_unknown"), "a write abandoned at its commit says the outcome is unknown: {body}");
    }

    // The freeze: the scenario's length, not a synchronisation.
    let frozen_at = Instant::now();
    while frozen_at.elapsed() < FREEZE {
        std::thread::sleep(Duration::from_millis(100));
    }
    let blob_survived_freeze = blob_ids(&blob_dir).contains(&frozen_blob);
    let asked: usize = cleaner_logs.iter().map(|l| cycles_that_asked(l).len()).sum();
    assert!(asked > 0, "no cleaner cycle found the frozen write's blob old enough: the freeze tested nothing");

    failpoints.release();
    let finished = || std::fs::read_to_string(&server_log).unwrap_or_default();
    let released = Instant::now();
    while !finished().contains("failpoint: the parked commit finished") {
        assert!(
            released.elapsed() < Duration::from_secs(20),
            "the parked commit did not finish; server log:\n{}",
            finished()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let profile = http.get(format!("{base}/v1/profiles/frozen")).send().await.unwrap();
    let frozen_status = profile.status().as_u16();
    assert!(matches!(frozen_status, 200 | 404), "after the freeze a read answered {frozen_status}");
    let kept = http.get(format!("{base}/v1/profiles/kept")).send().await.unwrap();
    assert_eq!(kept.status(), 200, "the acknowledged profile is lost");

    signal(&server.0, "STOP"); // nothing else changes while the audit runs
    let (code, report) = audit_json(&stores);
    signal(&server.0, "CONT");
    assert_eq!(report["dangling_count"].as_u64(), Some(0), "dangling references: {report}");
    assert_eq!(code, Some(0), "audit: {report}");
    drop(server);
    eprintln!(
        "frozen write answered {status}; blob survived the freeze: {blob_survived_freeze}; \
         cleaner cycles that asked: {asked}; profile afterwards: {frozen_status}"
    );
    blob_survived_freeze
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_write_frozen_between_check_and_commit_keeps_its_blob() {
    let dir = tempfile::tempdir().unwrap();
    let stores = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    let blob_dir = dir.path().join("data").join("blobs");
    let survived = frozen_commit_leaves_nothing_dangling(stores, blob_dir, dir.path()).await;
    assert!(survived, "on SQLite the cleaners' query must wait for the frozen writer's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_write_frozen_between_check_and_commit_cannot_commit_late() {
    let Some(admin) = service_env("PROFILESTORE_TEST_POSTGRES_URL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let blob_dir = dir.path().join("blobs");
    let stores = vec![
        "--database".to_owned(),
        fresh_database(&admin, &format!("frozen_{}", unique_suffix())),
        "--blobs".to_owned(),
        format!("file://{}", blob_dir.display()),
    ];
    frozen_commit_leaves_nothing_dangling(stores, blob_dir, dir.path()).await;
}
