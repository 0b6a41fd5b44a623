//! Authentication in a real `serve` process: bearer tokens signed by the test against
//! an HS256 secret file, the refusal to serve open writes off loopback (before any
//! store is touched), the warning of `--auth none`, and no token or secret in the log.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use support::{PNG, Server, bin};

const SECRET: &str = "the test's HS256 secret, forty bytes long";

fn token(sub: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": sub, "exp": exp, "aud": "profiles"});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()).unwrap()).unwrap()
}

async fn put(base: &str, user: &str, token: Option<&str>) -> reqwest::Response {
    let form = reqwest::multipart::Form::new()
        .text("metadata", "{}")
        .part("image", reqwest::multipart::Part::bytes(PNG).file_name("a.png"));
    let mut request = reqwest::Client::new().put(format!("{base}/v1/profiles/{user}")).multipart(form);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_a_secret_file_lets_each_token_write_its_own_profile_and_logs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let log = dir.path().join("serve.log");
    let args = [
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--auth-hs256-secret-file".into(),
        secret.display().to_string(),
        "--auth-audience".into(),
        "profiles".into(),
    ];
    let server = Server::try_start_logging(&args, support::log_to(&log), "debug").unwrap();
    let ada = token("ada");

    let anonymous = put(&server.base, "ada", None).await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(put(&server.base, "bob", Some(&ada)).await.status(), 403);
    assert_eq!(put(&server.base, "ada", Some(&ada)).await.status(), 200);
    let forged = format!("{}x", &ada[..ada.len() - 1]);
    assert_eq!(put(&server.base, "ada", Some(&forged)).await.status(), 401);
    // Reads stay public.
    let read = reqwest::get(format!("{}/v1/profiles/ada", server.base)).await.unwrap();
    assert_eq!(read.status(), 200);

    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("writes and deletes need a bearer token"), "{log}");
    assert!(log.contains("refused a request's token"), "refusals are logged: {log}");
    let signature = ada.rsplit('.').next().unwrap();
    assert!(!log.contains(signature) && !log.contains("forty bytes"), "a token or the secret was logged:\n{log}");
}

#[test]
fn open_writes_off_loopback_are_refused_before_any_store_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Refused before binding: nothing listens on the public address.
    let out = bin()
        .args(["serve", "--listen", "0.0.0.0:0", "--admin-listen", "off", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to serve on 0.0.0.0:0 without authentication"), "{stderr}");
    assert!(stderr.contains("--auth none"), "the way out is named: {stderr}");
    assert!(!data.exists(), "the stores were touched");
}

#[test]
fn auth_none_is_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let args = ["--data-dir".into(), dir.path().join("data").display().to_string(), "--auth".into(), "none".into()];
    let server = Server::try_start(&args, support::log_to(&log)).unwrap();
    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("authentication is off (--auth none)"), "{log}");
}
