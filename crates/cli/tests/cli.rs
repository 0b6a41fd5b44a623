//! The real `profilestore` binary, driven as a user would drive it.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Daemon, PNG, Server, audit_json, bin, log_lines, log_to, wait_for};

fn run(args: &[&str], dir: &Path) -> Output {
    bin().args(args).arg("--data-dir").arg(dir).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn data_dir_args(dir: &Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.display().to_string()]
}

fn upload_form(metadata: &str) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("metadata", metadata.to_owned())
        .part("image", reqwest::multipart::Part::bytes(PNG.to_vec()).file_name("avatar.png"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_uploads_reads_deletes_cleans_and_audits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&data_dir_args(dir.path()));
    let http = reqwest::Client::new();
    let url = format!("{}/v1/profiles/alice", server.base);

    let bob = http.put(format!("{}/v1/profiles/bob", server.base)).multipart(upload_form("{}")).send().await.unwrap();
    assert_eq!(bob.status(), 200);
    let put = http.put(&url).multipart(upload_form(r#"{"name":"Alice"}"#)).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let stored: serde_json::Value = put.json().await.unwrap();
    assert_eq!(stored["metadata"]["name"], "Alice");
    assert_eq!(stored["content_type"], "image/png");

    let got: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["image_id"], stored["image_id"]);
    let image = http.get(format!("{url}/image")).send().await.unwrap();
    assert_eq!(image.headers()["content-type"], "image/png");
    assert_eq!(image.bytes().await.unwrap().as_ref(), PNG);

    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    assert!(server.terminate().success(), "graceful shutdown exits 0");

    let audit = run(&["audit", "--json"], dir.path());
    assert!(audit.status.success(), "{}", stderr(&audit));
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(report["records"], 1, "{report}");
    assert_eq!(report["images"], 2, "alice's image is an orphan now: {report}");

    let clean = run(&["clean", "--dry-run"], dir.path());
    assert!(clean.status.success(), "{}{}", stdout(&clean), stderr(&clean));
    assert!(stdout(&clean).contains("images listed"), "clean prints a summary: {}", stdout(&clean));

    // With every record gone the cleaner refuses to delete, and says why.
    let server = Server::start(&data_dir_args(dir.path()));
    let bob = format!("{}/v1/profiles/bob", server.base);
    assert_eq!(http.delete(&bob).send().await.unwrap().status(), 204);
    drop(server);
    let refused = run(&["clean"], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    assert!(stdout(&refused).contains("--allow-empty-database"), "{}", stdout(&refused));
}

#[test]
fn clean_and_audit_refuse_stores_that_were_never_initialised_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["clean", "audit"] {
        let out = run(&[cmd], dir.path());
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(stderr(&out).contains("init"), "{cmd} says what to do: {}", stderr(&out));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");
}

#[test]
fn stores_of_two_clusters_are_refused_with_a_message_naming_both() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(run(&["init"], a.path()).status.success());
    assert!(run(&["init"], b.path()).status.success());
    let out = bin()
        .args(["audit", "--database"])
        .arg(format!("sqlite://{}", a.path().join("profilestore.db").display()))
        .arg("--blobs")
        .arg(format!("file://{}", b.path().join("blobs").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("profilestore.db") && err.contains("blobs") && err.contains("not paired"), "{err}");
}

#[test]
fn unsafe_timings_are_refused_naming_the_setting_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["init", "--delete-delay", "10m"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("delete-delay") && err.contains(">= request-timeout"), "{err}");

    let allowed = run(&["init", "--delete-delay", "10m", "--allow-unsafe-timing"], dir.path());
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(stderr(&allowed).contains("UNSAFE"), "a loud warning: {}", stderr(&allowed));
}

#[test]
fn timings_other_than_the_clusters_are_refused_until_set_timings_changes_them() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["init", "--min-blob-age", "3h"], dir.path()).status.success());

    let out = run(&["audit", "--min-blob-age", "2h"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--min-blob-age 2h but the cluster stores 3h"), "{}", stderr(&out));
    assert!(run(&["audit"], dir.path()).status.success(), "no flags: the stored timings are used");

    let set = run(&["set-timings", "--min-blob-age", "2h"], dir.path());
    assert!(set.status.success(), "{}", stderr(&set));
    assert!(stdout(&set).contains("min-blob-age: 3h -> 2h"), "{}", stdout(&set));
    assert!(run(&["audit", "--min-blob-age", "2h"], dir.path()).status.success());
}

#[test]
fn settings_come_from_flags_then_environment_then_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("profilestore.toml");
    std::fs::write(&config, "min-blob-age = \"4h\"\nclock-skew = \"10m\"\n").unwrap();
    let data = dir.path().join("data");
    let out = bin()
        .args(["init", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--clock-skew")
        .arg("1m")
        .env("PROFILESTORE_MIN_BLOB_AGE", "3h")
        .env("PROFILESTORE_CLOCK_SKEW", "2m")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("min-blob-age 3h"), "environment beats the file: {text}");
    assert!(text.contains("clock-skew 1m"), "the flag beats the environment: {text}");

    std::fs::write(&config, "min-blob-ag = \"4h\"\n").unwrap();
    let bad = bin().args(["init", "--config"]).arg(&config).arg("--data-dir").arg(&data).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("min-blob-ag"), "{}", stderr(&bad));
}

#[test]
fn bad_flag_values_are_named() {
    let out = bin().args(["serve", "--request-timeout", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--request-timeout") && err.contains("expected a duration"), "{err}");
}

#[test]
fn check_model_passes_the_working_design_and_prints_the_shortest_trace_of_a_flaw() {
    let small = ["check-model", "--servers", "2", "--cleaners", "1", "--max-ops", "2", "--max-hours", "3"];
    let pass = bin().args(small).output().unwrap();
    assert!(pass.status.success(), "{}{}", stdout(&pass), stderr(&pass));
    assert!(stdout(&pass).contains("pass:") && stdout(&pass).contains("distinct states"), "{}", stdout(&pass));
    // The summary's counts do not depend on the threads; zero threads is refused.
    let summary =
        |out: &std::process::Output| stdout(out).lines().next().unwrap_or("").split(',').take(3).collect::<String>();
    let one = bin().args(small).args(["--threads", "1"]).output().unwrap();
    assert!(stdout(&one).contains("on 1 threads"), "{}", stdout(&one));
    assert_eq!(summary(&one), summary(&pass));
    let zero = bin().args(small).args(["--threads", "0"]).output().unwrap();
    assert_eq!(zero.status.code(), Some(2), "{}", stderr(&zero));

    let refused = bin().args(small).args(["--delete-delay", "0s"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "unsafe timings need --allow-unsafe-timing");
    assert!(stderr(&refused).contains("delete-delay"), "{}", stderr(&refused));

    let flaw = bin().args(small).args(["--allow-unsafe-timing", "--min-blob-age", "0s"]).output().unwrap();
    assert_eq!(flaw.status.code(), Some(1));
    let out = stdout(&flaw);
    assert!(out.contains("VIOLATION of no dangling reference"), "{out}");
    assert!(out.contains("cleaner 0") && out.contains("delete"), "the trace shows the cleaner's delete: {out}");

    let variant = bin().args(small).args(["--variant", "record-first"]).output().unwrap();
    assert_eq!(variant.status.code(), Some(1), "{}", stdout(&variant));

    let fractional = bin().args(small).args(["--request-timeout", "90m"]).output().unwrap();
    assert_eq!(fractional.status.code(), Some(2));
    assert!(stderr(&fractional).contains("whole number of hours"), "{}", stderr(&fractional));
}

#[test]
fn simulate_passes_the_working_design_and_prints_a_replayable_shrunk_failure_for_a_flaw() {
    let small = ["simulate", "--seeds", "3", "--seed", "10", "--ops", "300"];
    let pass = bin().args(small).output().unwrap();
    assert!(pass.status.success(), "{}{}", stdout(&pass), stderr(&pass));
    let out = stdout(&pass);
    assert!(out.contains("pass:") && out.contains("3 seeds run"), "{out}");
    assert!(out.contains("faults") && out.contains("checks") && out.contains("operations 900"), "{out}");
    assert!(out.contains("store protocol sqlite-locked") && out.contains("races reached: "), "{out}");
    assert!(out.contains("fault mix (seeds with each kind on)"), "{out}");
    assert!(!out.contains("updates:"), "no updates unless asked: {out}");

    let updating = bin().args(small).arg("--patches").output().unwrap();
    assert!(updating.status.success(), "{}{}", stdout(&updating), stderr(&updating));
    let out = stdout(&updating);
    let line = out.lines().find(|l| l.starts_with("updates: ")).unwrap_or_else(|| panic!("no updates line: {out}"));
    assert!(!line.starts_with("updates: 0 ok"), "{line}");

    let refused = bin().args(small).args(["--delete-delay", "0s"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "unsafe timings need --allow-unsafe-timing");
    assert!(stderr(&refused).contains("delete-delay"), "{}", stderr(&refused));

    let budget = ["simulate", "--seeds", "1000000", "--ops", "100", "--time-budget", "1s"];
    let budgeted = bin().args(budget).output().unwrap();
    assert!(budgeted.status.success(), "{}{}", stdout(&budgeted), stderr(&budgeted));
    assert!(stdout(&budgeted).contains("the time budget stopped the run early"), "{}", stdout(&budgeted));

    let flaw = ["simulate", "--seeds", "30", "--seed", "0", "--ops", "600", "--threads", "1"];
    let failed = bin().args(flaw).args(["--delete-delay", "0s", "--allow-unsafe-timing"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    let out = stdout(&failed);
    let broke = out.lines().find(|l| l.starts_with("FAILED: seed")).unwrap_or_else(|| panic!("no failure line: {out}"));
    assert!(broke.contains("no vanished blob"), "{broke}");
    assert!(out.contains("trace:") && out.contains("MISSING") && out.contains("delete blobs"), "{out}");

    // The printed command replays the very same failure.
    let replay = out.lines().find_map(|l| l.strip_prefix("replay: profilestore ")).expect("a replay command");
    let again = bin().args(replay.split(' ')).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", stdout(&again));
    let again_out = stdout(&again);
    assert!(again_out.lines().any(|l| l == broke), "the replay must break the same way:\n{broke}\n{again_out}");
}

/// Timings under which an orphan is collectable within seconds, and a cycle that
/// found one then waits an hour to delete it: long enough to watch its progress.
const WATCHABLE: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "2s", "--delete-delay", "1h", "--clock-skew", "500ms"];

#[tokio::test(flavor = "multi_thread")]
async fn clean_shows_its_counters_as_a_log_line_off_a_terminal_and_as_a_bar_on_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_args(dir.path());
    let init = run(&[&["init"][..], &WATCHABLE].concat(), dir.path());
    assert!(init.status.success(), "{}", stderr(&init));
    let server = Server::start(&data);
    let http = reqwest::Client::new();
    for user in ["alice", "bob"] {
        let url = format!("{}/v1/profiles/{user}", server.base);
        assert_eq!(http.put(url).multipart(upload_form("{}")).send().await.unwrap().status(), 200);
    }
    let alice = format!("{}/v1/profiles/alice", server.base);
    assert_eq!(http.delete(alice).send().await.unwrap().status(), 204);
    drop(server);
    wait_for("alice's image to be collectable", Duration::from_secs(30), || {
        audit_json(&data).1["orphans"]["collectable"] == 1
    });

    // Standard error is a file: one JSON line of counters every interval.
    let log = dir.path().join("clean.log");
    let clean = Daemon(
        bin()
            .args(["clean", "--log-format", "json", "--progress-interval", "100ms"])
            .args(&data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_to(&log))
            .spawn()
            .unwrap(),
    );
    // A line may be written mid-cycle, before both images are checked: wait for the
    // one after both were.
    let waiting = |j: &serde_json::Value| j["message"] == "clean progress" && j["waiting"] == 1 && j["checked"] == 2;
    wait_for("a progress line with both images checked and alice's waiting", Duration::from_secs(30), || {
        log_lines(&log).iter().any(waiting)
    });
    let lines = log_lines(&log);
    let line = lines.iter().find(|j| waiting(j)).unwrap();
    // Bob's image is referenced; the pairing marker and clock probe are listed too.
    assert_eq!((&line["kept"], &line["deleted"]), (&1.into(), &0.into()), "{line}");
    assert!(line["listed"].as_u64().unwrap() >= 2, "{line}");
    assert!(line["keys_per_second"].is_number(), "{line}");
    drop(clean);

    // On a terminal (a pseudo-terminal from util-linux's `script`) a bar shows them.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping the terminal half: util-linux's `script` is not installed");
        return;
    }
    let transcript = dir.path().join("terminal");
    let command = format!("{} clean --data-dir {}", env!("CARGO_BIN_EXE_profilestore"), dir.path().display());
    let mut script = Command::new("script");
    // The same environment as the binary's own, the developer's settings removed.
    for (key, value) in bin().get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    let _terminal = Daemon(
        script
            .args(["-qfc", &command])
            .arg(&transcript)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the bar to show alice's image waiting", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&transcript).unwrap_or_default();
        text.contains("keys listed") && text.contains("1 waiting · 0 deleted · 1 kept")
    });
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in ["serve", "clean", "audit", "report", "admin-listen"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
    }
    let bad = bin().args(["completions", "cmd.exe"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("cmd.exe"), "{}", stderr(&bad));

    let man = bin().arg("man").output().unwrap();
    assert!(man.status.success());
    let page = stdout(&man);
    assert!(page.contains(".TH profilestore 1"), "{page}");
    for command in ["serve", "clean", "report"] {
        assert!(page.contains(command), "the man page lacks {command}");
    }
}
