//! Counting the HTTP requests a store call sends. The S3 client retries transient
//! failures (a reset connection, a 5xx) inside one call, out of the caller's sight;
//! a blob put that needed a retry is worth seeing, because its first attempt may have
//! landed (the retry then answers "already exists" and the write fails).
//!
//! The client's connector wraps every HTTP request it sends; a call run inside
//! [`counting`] learns how many requests it took. The requests are sent from the
//! call's own task (the connector does not spawn), so a task-local counter sees them.

use std::cell::Cell;
use std::future::Future;

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

tokio::task_local! {
    static REQUESTS: Cell<u32>;
}

/// The S3 client's connector: reqwest's, with every request counted.
#[derive(Debug, Default)]
pub(super) struct CountingConnector(ReqwestConnector);

impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Counting(self.0.connect(options)?)))
    }
}

#[derive(Debug)]
struct Counting(HttpClient);

#[async_trait]
impl HttpService for Counting {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Outside `counting` there is nothing to count into.
        let _ = REQUESTS.try_with(|n| n.set(n.get() + 1));
        self.0.execute(request).await
    }
}

/// Runs `call`; returns its output and the HTTP requests it sent.
pub(super) async fn counting<F: Future>(call: F) -> (F::Output, u32) {
    REQUESTS
        .scope(Cell::new(0), async {
            let output = call.await;
            (output, REQUESTS.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use bytes::Bytes;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use profilestore_core::ids::BlobKey;
    use profilestore_core::store::BlobStore;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use crate::open::{OpenMode, S3Options};
    use crate::s3::S3BlobStore;

    /// A stand-in S3 endpoint on loopback: every GET is a missing key; the first
    /// `failing` PUTs are answered 503 (after reading them: they may have landed), the
    /// rest 200. Returns its address and the PUTs it received.
    async fn flaky_endpoint(failing: u32) -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let puts = Arc::new(AtomicU32::new(0));
        let seen = puts.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut socket = BufReader::new(socket);
                    loop {
                        let mut head = Vec::new();
                        let mut line = String::new();
                        while socket.read_line(&mut line).await.unwrap_or(0) > 2 {
                            head.push(std::mem::take(&mut line));
                        }
                        let Some(request_line) = head.first() else { return };
                        let length = head
                            .iter()
                            .find_map(|h| {
                                h.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        socket.read_exact(&mut body).await.unwrap();
                        let answer = if request_line.starts_with("PUT") {
                            let n = seen.fetch_add(1, Ordering::SeqCst);
                            if n < failing { "503 Service Unavailable" } else { "200 OK" }
                        } else {
                            "404 Not Found"
                        };
                        let payload =
                            if answer.starts_with("404") { "<Error><Code>NoSuchKey</Code></Error>" } else { "" };
                        let response = format!(
                            "HTTP/1.1 {answer}\r\nETag: \"e\"\r\nContent-Length: {}\r\n\r\n{payload}",
                            payload.len()
                        );
                        socket.get_mut().write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        (address, puts)
    }

    async fn store(endpoint: String) -> S3BlobStore {
        let options = S3Options { endpoint: Some(endpoint), skip_signature: true, ..S3Options::default() };
        S3BlobStore::open("bucket/p", "s3://bucket/p".into(), OpenMode::Existing, &options).await.unwrap()
    }

    fn key() -> BlobKey {
        BlobKey::original("0190a8b0-0000-7000-8000-000000000001".parse().unwrap())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_blob_put_the_client_retried_is_counted_once_per_retry() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let retries = r#"profilestore_blob_put_retries_total{backend="s3"}"#;

        let (endpoint, puts) = flaky_endpoint(0).await;
        store(endpoint).await.put_new(&key(), Bytes::from_static(b"png")).await.unwrap();
        assert_eq!(puts.load(Ordering::SeqCst), 1);
        assert!(!handle.render().contains(retries), "a put that needed no retry counted one");

        let (endpoint, puts) = flaky_endpoint(2).await;
        store(endpoint).await.put_new(&key(), Bytes::from_static(b"png")).await.unwrap();
        assert_eq!(puts.load(Ordering::SeqCst), 3, "two 503s, then stored");
        let scrape = handle.render();
        assert!(scrape.lines().any(|l| l == format!("{retries} 2")), "{scrape}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_outside_a_counted_call_are_not_counted_and_do_not_fail() {
        let (endpoint, _) = flaky_endpoint(0).await;
        let store = store(endpoint).await;
        let ((), requests) = super::counting(async {}).await;
        assert_eq!(requests, 0);
        let (found, requests) = super::counting(store.get(&key())).await;
        assert_eq!(found.unwrap(), None);
        assert_eq!(requests, 1);
        assert!(store.get(&key()).await.unwrap().is_none(), "uncounted requests still work");
    }
}
