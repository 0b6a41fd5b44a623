//! The request log: one line per request with method, route template, client address,
//! status and duration, and no user id in it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{TestServer, form, png};
use profilestore_api::ApiConfig;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test] // current-thread runtime: the server's tasks run under this thread's subscriber
async fn each_request_logs_one_structured_line() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt().json().with_writer(captured.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start(ApiConfig::default()).await;
    assert_eq!(server.put("secret-user-7", form("{}", png(1, 1), "image/png")).await.status(), 200);
    assert_eq!(server.get("/v1/profiles/secret-user-7/image").await.status(), 200);
    assert_eq!(server.get("/nowhere").await.status(), 404);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["fields"]["message"] == "request answered")
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let seen: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            let f = &l["fields"];
            assert!(f["duration_ms"].is_u64(), "{l}");
            assert_eq!(f["client"], "127.0.0.1", "the client's address is logged: {l}");
            (
                f["method"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT".to_owned(), "/v1/profiles/{user_id}".to_owned(), 200),
            ("GET".to_owned(), "/v1/profiles/{user_id}/image".to_owned(), 200),
            ("GET".to_owned(), "/nowhere".to_owned(), 404),
        ]
    );
    assert!(!text.contains("secret-user-7"), "user ids stay out of the access log: {text}");
}
