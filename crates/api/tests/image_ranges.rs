//! Image reads with `Range` and `HEAD`: one byte range answered 206 with its
//! `Content-Range`, a range past the end 416 (JSON, with the length), a stale
//! `If-Range` the whole image, and `HEAD` the headers without the bytes.

mod common;

use common::{TestServer, expect_error, form, png};
use profilestore_api::ApiConfig;

async fn stored_image(server: &TestServer) -> (String, Vec<u8>) {
    let image = png(3, 2);
    let stored: serde_json::Value =
        server.put("ada", form("{}", image.clone(), "image/png")).await.json().await.unwrap();
    (stored["image_url"].as_str().unwrap().to_owned(), image)
}

#[tokio::test]
async fn one_byte_range_is_served_206_and_a_range_past_the_end_416() {
    let server = TestServer::start(ApiConfig::default()).await;
    let (url, image) = stored_image(&server).await;
    let len = image.len();
    for path in [url.as_str(), "/v1/profiles/ada/image"] {
        let get = |range: &str| server.client.get(server.url(path)).header("range", range.to_owned()).send();
        let first = get("bytes=0-7").await.unwrap();
        assert_eq!(first.status(), 206, "{path}");
        assert_eq!(first.headers()["content-range"], format!("bytes 0-7/{len}").as_str());
        assert_eq!(first.headers()["content-type"], "image/png");
        assert_eq!(first.bytes().await.unwrap(), &image[..8]);

        let tail = get("bytes=-4").await.unwrap();
        assert_eq!(tail.status(), 206);
        assert_eq!(tail.bytes().await.unwrap(), &image[len - 4..]);

        let past = get(&format!("bytes={len}-")).await.unwrap();
        assert_eq!(past.headers()["content-range"], format!("bytes */{len}").as_str());
        expect_error(past, 416, "range_not_satisfiable").await;

        let several = get("bytes=0-1,4-5").await.unwrap();
        assert_eq!(several.status(), 200, "several ranges: the whole image");
        assert_eq!(several.headers()["accept-ranges"], "bytes");
        assert_eq!(several.bytes().await.unwrap(), image);

        let stale = server.client.get(server.url(path)).header("range", "bytes=0-1").header("if-range", "\"old\"");
        let stale = stale.send().await.unwrap();
        assert_eq!(stale.status(), 200, "a stale If-Range: the whole image");
    }
}

#[tokio::test]
async fn head_answers_the_headers_without_the_bytes() {
    let server = TestServer::start(ApiConfig::default()).await;
    let (url, image) = stored_image(&server).await;
    let head = server.client.head(server.url(&url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], image.len().to_string().as_str());
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert!(head.headers().contains_key("etag"));
    assert!(head.bytes().await.unwrap().is_empty());
}
