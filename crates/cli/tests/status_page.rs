//! The admin listener's status page in a real browser: headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`, which the test command
//! installs). The page renders its tables, and its form uploads an image through the
//! API and shows it back. With `PROFILESTORE_UPDATE_SCREENSHOT=1` the browser's
//! screenshot replaces `docs/status-page.png`.

// These tests drive real processes in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use support::{Daemon, PNG, Server, services_required};

/// The WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and a browser session on it.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Daemon,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` after saying why
    /// the test is skipped (panicking when the suite's tools are required).
    async fn start() -> Option<Browser> {
        let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium")) else {
            assert!(!services_required(), "chromium and chromedriver are required (scripts/test.sh installs them)");
            eprintln!("skipping: chromium and chromium-driver are not installed");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Its output goes nowhere: a closed pipe would kill it at its next line.
        let child = Command::new(driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Daemon(child);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // Waits for the driver to say it is ready.
        let started = Instant::now();
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(response) => response.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Running as root needs --no-sandbox; a fixed window makes the screenshot stable.
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,1100"]
        }}}});
        let answer: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}"));
        Some(Browser { http, session: format!("{base}/session/{session}"), _driver: driver })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() { request } else { request.json(&body) };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(answer["value"]["error"].is_null(), "{path}: {answer}");
        answer["value"].clone()
    }

    async fn element(&self, css: &str) -> String {
        let found = self.call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Types `text` into the form field `css`.
    async fn type_into(&self, css: &str, text: &str) {
        let field = self.element(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{field}/value"), json!({"text": text})).await;
    }

    /// Uploads the example PNG through the page's form (with `token` in its token
    /// field), and waits for the page to show an answer: its text, and the width of the
    /// image shown back (0 for none).
    async fn upload_through_form(&self, dir: &Path, token: Option<&str>) -> (String, u64) {
        let image = dir.join("avatar.png");
        std::fs::write(&image, PNG).unwrap();
        self.type_into("#image", &image.display().to_string()).await;
        if let Some(token) = token {
            self.type_into("#token", token).await;
        }
        let send = self.element("#send").await;
        self.call(reqwest::Method::POST, &format!("/element/{send}/click"), json!({})).await;
        let shown = "const i = document.getElementById('shown'); \
                     return [document.getElementById('result').textContent, i.complete ? i.naturalWidth : 0];";
        let started = Instant::now();
        loop {
            let seen = self.script(shown).await;
            let (text, width) = (seen[0].as_str().unwrap_or_default().to_owned(), seen[1].as_u64().unwrap_or(0));
            // Done when an image is shown, or a refusal is (no image comes with one).
            if width > 0 || (!text.is_empty() && !text.starts_with("stored image ")) {
                return (text, width);
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the page showed nothing: {text:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn script(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": []})).await
    }
}

fn which(program: &str) -> Option<String> {
    let out = Command::new("which").arg(program).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_renders_and_its_form_uploads_an_image_and_shows_it_back() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&["--data-dir".into(), dir.path().join("data").display().to_string()]);
    let admin = server.admin.clone().unwrap();

    browser.call(reqwest::Method::POST, "/url", json!({"url": format!("{admin}/")})).await;
    assert_eq!(browser.call(reqwest::Method::GET, "/title", Value::Null).await, "profilestore status");
    let table = browser.script("return document.getElementById('status').innerText").await;
    let table = table.as_str().unwrap();
    for expected in ["cluster id", "min-blob-age", "rule holds", "records", "blobs", "database clock"] {
        assert!(table.contains(expected), "{expected:?} missing from the page: {table}");
    }

    let (result, width) = browser.upload_through_form(dir.path(), None).await;
    assert!(width > 0, "the uploaded image was not shown back: {result:?}");
    assert!(result.starts_with("stored image "), "{result}");
    // The page's upload went through the API: the stored image is the file's bytes.
    let stored = reqwest::get(format!("{}/v1/profiles/status-page-demo/image", server.base)).await.unwrap();
    assert_eq!(stored.bytes().await.unwrap().as_ref(), PNG);

    let screenshot = browser.call(reqwest::Method::GET, "/screenshot", Value::Null).await;
    let png = base64::engine::general_purpose::STANDARD.decode(screenshot.as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if std::env::var_os("PROFILESTORE_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status-page.png"), &png).unwrap();
    }
    browser.call(reqwest::Method::DELETE, "", Value::Null).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_pages_form_sends_a_bearer_token_when_the_server_checks_tokens() {
    let Some(browser) = Browser::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a status page test secret of 32+ bytes").unwrap();
    let args = [
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--auth-hs256-secret-file".into(),
        secret.display().to_string(),
        "--auth-reads".into(),
    ];
    let server = Server::start(&args);
    let admin = server.admin.clone().unwrap();
    browser.call(reqwest::Method::POST, "/url", json!({"url": format!("{admin}/")})).await;
    let (refused, _) = browser.upload_through_form(dir.path(), None).await;
    assert!(refused.starts_with("unauthenticated"), "{refused}");

    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": "status-page-demo", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(b"a status page test secret of 32+ bytes").unwrap();
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    browser.call(reqwest::Method::POST, "/refresh", json!({})).await;
    let (stored, width) = browser.upload_through_form(dir.path(), Some(&token)).await;
    assert!(stored.starts_with("stored image "), "{stored}");
    assert!(width > 0, "the image, read with the token, was not shown back");
    browser.call(reqwest::Method::DELETE, "", Value::Null).await;
}
