//! The API document against a live server: `/openapi.json` is the committed
//! `docs/openapi.json`, and schemathesis (installed by the test command, named by
//! `PROFILESTORE_SCHEMATHESIS`) finds no answer the document does not admit: every
//! status, body and header of every operation, in positive and negative modes, with a
//! stateful phase that chains writes, reads and deletes. Shown first to catch a
//! document that omits an answer the server gives.
//!
//! `PROFILESTORE_SCHEMATHESIS_EXAMPLES` sets the examples per operation (default 100).

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::{PNG, Server, services_required};

/// The committed document.
const COMMITTED: &str = include_str!("../../../docs/openapi.json");

/// How schemathesis judges the answers (fixtures/schemathesis.toml says why).
fn config_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml")
}

/// The schemathesis executable, or `None` after saying why the test is skipped.
fn schemathesis() -> Option<PathBuf> {
    match std::env::var_os("PROFILESTORE_SCHEMATHESIS") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                !services_required(),
                "PROFILESTORE_SCHEMATHESIS must name schemathesis (scripts/test.sh installs it)"
            );
            eprintln!("skipping: PROFILESTORE_SCHEMATHESIS is not set (scripts/test.sh installs schemathesis)");
            None
        }
    }
}

/// Runs schemathesis with every check over `document` against the server at `base`,
/// in `workdir` (it writes its example database and reports there).
fn fuzz(program: &Path, document: &str, base: &str, workdir: &Path) -> Output {
    let examples = std::env::var("PROFILESTORE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    Command::new(program)
        .current_dir(workdir)
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(config_file())
        .args(["run", document, "--url", base, "--checks", "all", "--max-examples", &examples])
        .args(["--generation-database", "none", "--request-timeout", "30", "--no-color"])
        .output()
        .expect("schemathesis runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A `serve` on `stores` (with its log file) holding the document's example profile.
async fn seeded_server(stores: Vec<String>, log: &Path) -> Server {
    let server = Server::try_start_logging(&stores, support::log_to(log), "warn").unwrap();
    let document: Value = serde_json::from_str(COMMITTED).unwrap();
    // The document's example user exists, so the example phase reads a real profile.
    let user = document["paths"]["/v1/profiles/{user_id}"]["get"]["parameters"][0]["example"].as_str().unwrap();
    let form = reqwest::multipart::Form::new()
        .text("metadata", r#"{"name":"example"}"#)
        .part("image", reqwest::multipart::Part::bytes(PNG).file_name("a.png"));
    let url = format!("{}/v1/profiles/{user}", server.base);
    let put = reqwest::Client::new().put(url).multipart(form).send().await.unwrap();
    assert_eq!(put.status(), 200);
    server
}

/// Fuzzes `server` against the document it serves; fails on any finding, and on a
/// panic in its log (an answer missing from the error catalogue trips a debug
/// assertion).
async fn fuzz_clean(program: &Path, server: &Server, log: &Path, workdir: &Path) {
    let run = fuzz(program, &format!("{}/openapi.json", server.base), &server.base, workdir);
    let report = text(&run);
    assert!(run.status.success(), "schemathesis found answers the document does not admit:\n{report}");
    assert!(report.contains("No issues found"), "{report}");
    eprintln!(
        "{}",
        report.lines().filter(|l| l.contains("generated") || l.contains("Seed")).collect::<Vec<_>>().join("\n")
    );
    let healthz = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(healthz.status(), 200, "still serving");
    let log = std::fs::read_to_string(log).unwrap();
    assert!(!log.contains("panicked"), "the server panicked while fuzzed:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_server_answers_only_what_its_document_admits() {
    let Some(program) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let server = seeded_server(vec!["--data-dir".into(), dir.path().join("data").display().to_string()], &log).await;

    let served = reqwest::get(format!("{}/openapi.json", server.base)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "application/json");
    assert!(served.text().await.unwrap() == COMMITTED, "the served document is not docs/openapi.json");

    // The checker catches a document that omits an answer: without GET's 400, the
    // malformed user ids it sends are answered with an undocumented status.
    let mut tampered: Value = serde_json::from_str(COMMITTED).unwrap();
    let responses = tampered["paths"]["/v1/profiles/{user_id}"]["get"]["responses"].as_object_mut().unwrap();
    assert!(responses.remove("400").is_some());
    let tampered_path = dir.path().join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    let caught = fuzz(&program, tampered_path.to_str().unwrap(), &server.base, dir.path());
    let report = text(&caught);
    assert!(!caught.status.success(), "schemathesis passed a document missing an answer:\n{report}");
    assert!(report.contains("Undocumented status code"), "{report}");

    fuzz_clean(&program, &server, &log, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_on_postgres_and_s3_answers_only_what_its_document_admits() {
    let Some(program) = schemathesis() else { return };
    let Some(stores) = support::postgres_and_s3("openapi") else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let server = seeded_server(stores, &log).await;
    fuzz_clean(&program, &server, &log, dir.path()).await;
}
