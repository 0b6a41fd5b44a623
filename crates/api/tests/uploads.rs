//! Refused uploads: each answers its status and code in the JSON error shape, and
//! stores nothing (no new blob, the previous record untouched).

mod common;

use common::{TestServer, expect_error, expect_error_body, form, image_part, metadata_part, png};
use profilestore_api::ApiConfig;
use profilestore_core::settings::Timings;
use reqwest::multipart::{Form, Part};
use std::time::Duration;

const MAX_IMAGE: u64 = 4096;

fn config() -> ApiConfig {
    ApiConfig { max_image_size: MAX_IMAGE, max_image_pixels: 1_000_000, ..ApiConfig::default() }
}

/// A server where `ada` already has a profile, so that a refused upload can be seen to
/// leave both stores as they were.
struct Fixture {
    server: TestServer,
    keys: Vec<String>,
    record: profilestore_core::store::Record,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = TestServer::start(config()).await;
        let response = server.put("ada", form(r#"{"v": 1}"#, png(1, 1), "image/png")).await;
        assert_eq!(response.status(), 200);
        let keys = server.blobs.keys();
        assert_eq!(keys.len(), 1);
        let record = server.record("ada").await.unwrap();
        Fixture { server, keys, record }
    }

    /// Asserts the stores are exactly as after the first write.
    async fn assert_unchanged(&self, case: &str) {
        assert_eq!(self.server.blobs.keys(), self.keys, "{case}: a blob was stored");
        assert_eq!(self.server.record("ada").await.as_ref(), Some(&self.record), "{case}: the record changed");
    }

    async fn refused(&self, case: &str, form: Form, status: u16, code: &str) {
        let response = self.server.put("ada", form).await;
        let message = expect_error(response, status, code).await;
        assert!(!message.is_empty(), "{case}");
        self.assert_unchanged(case).await;
    }

    /// Sends a raw body with the given content type.
    async fn refused_raw(&self, case: &str, content_type: &str, body: Vec<u8>, status: u16, code: &str) {
        let response = self
            .server
            .client
            .put(self.server.url("/v1/profiles/ada"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(response, status, code).await;
        self.assert_unchanged(case).await;
    }
}

#[tokio::test]
async fn missing_duplicate_and_unknown_parts_are_refused() {
    let f = Fixture::new().await;
    let meta = || metadata_part(r#"{"v": 2}"#);
    let img = || image_part(png(1, 1), "image/png");

    f.refused("no metadata", Form::new().part("image", img()), 400, "missing_part").await;
    f.refused("no image", Form::new().part("metadata", meta()), 400, "missing_part").await;
    // A multipart body needs at least one part (RFC 2046): zero parts is malformed.
    f.refused("empty form", Form::new(), 400, "malformed_multipart").await;
    let twice_meta = Form::new().part("metadata", meta()).part("metadata", meta()).part("image", img());
    f.refused("metadata twice", twice_meta, 400, "duplicate_part").await;
    let twice_image = Form::new().part("metadata", meta()).part("image", img()).part("image", img());
    f.refused("image twice", twice_image, 400, "duplicate_part").await;
    let extra = Form::new().part("metadata", meta()).part("image", img()).part("avatar", img());
    f.refused("unknown part", extra, 400, "unknown_part").await;
    let first_unknown = Form::new().part("x", Part::text("y")).part("metadata", meta()).part("image", img());
    f.refused("unknown part first", first_unknown, 400, "unknown_part").await;
}

#[tokio::test]
async fn metadata_must_be_a_json_object_of_at_most_64_kib() {
    let f = Fixture::new().await;
    for (case, text) in [("not json", "{nope"), ("empty", ""), ("trailing", "{} x")] {
        f.refused(case, form(text, png(1, 1), "image/png"), 400, "invalid_metadata").await;
    }
    for (case, text) in [("array", "[1, 2]"), ("string", "\"s\""), ("number", "7"), ("null", "null")] {
        f.refused(case, form(text, png(1, 1), "image/png"), 422, "metadata_not_object").await;
    }
    let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(64 * 1024));
    f.refused("metadata too large", form(&big, png(1, 1), "image/png"), 413, "metadata_too_large").await;

    // Exactly 64 KiB is accepted.
    let exact = format!(r#"{{"pad": "{}"}}"#, "x".repeat(64 * 1024 - 11));
    assert_eq!(exact.len(), 64 * 1024);
    assert_eq!(f.server.put("bob", form(&exact, png(1, 1), "image/png")).await.status(), 200);
}

#[tokio::test]
async fn images_are_recognised_by_content_and_limited_by_size_and_pixels() {
    let f = Fixture::new().await;
    let meta = r#"{"v": 2}"#;
    let html = b"<html><script>alert(1)</script></html>".to_vec();
    f.refused("html declared png", form(meta, html, "image/png"), 415, "unsupported_image").await;
    f.refused("empty image", form(meta, Vec::new(), "image/png"), 415, "unsupported_image").await;
    f.refused("short garbage", form(meta, b"abc".to_vec(), "image/png"), 415, "unsupported_image").await;
    let bmp =
        b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00".to_vec();
    f.refused("bmp", form(meta, bmp, "image/bmp"), 415, "unsupported_image").await;

    f.refused("truncated png", form(meta, png(1, 1)[..14].to_vec(), "image/png"), 422, "invalid_image").await;
    f.refused("zero-width png", form(meta, png(0, 5), "image/png"), 422, "invalid_image").await;
    f.refused("too many pixels", form(meta, png(1001, 1000), "image/png"), 422, "image_too_many_pixels").await;
    f.refused("huge header", form(meta, png(u32::MAX, u32::MAX), "image/png"), 422, "image_too_many_pixels").await;

    let mut padded = png(10, 10);
    padded.resize(MAX_IMAGE as usize + 1, 0);
    f.refused("one byte too large", form(meta, padded, "image/png"), 413, "image_too_large").await;
    let exact = common::padded_png(10, 10, MAX_IMAGE as usize);
    assert_eq!(
        f.server.put("bob", form(meta, exact, "image/png")).await.status(),
        200,
        "exactly the limit is accepted"
    );
    assert_eq!(
        f.server.put("cy", form(meta, png(1000, 1000), "image/png")).await.status(),
        200,
        "exactly the pixel limit"
    );
}

#[tokio::test]
async fn the_request_must_be_well_formed_multipart() {
    let f = Fixture::new().await;
    let body = br#"{"v": 2}"#.to_vec();
    f.refused_raw("json body", "application/json", body.clone(), 415, "unsupported_media_type").await;
    f.refused_raw("image body", "image/png", png(1, 1), 415, "unsupported_media_type").await;
    f.refused_raw("no boundary", "multipart/form-data", body.clone(), 400, "malformed_multipart").await;
    f.refused_raw("garbage", "multipart/form-data; boundary=XyZ", body, 400, "malformed_multipart").await;
    let truncated = b"--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\x89PNG".to_vec();
    f.refused_raw("truncated", "multipart/form-data; boundary=XyZ", truncated, 400, "malformed_multipart").await;

    let response = f.server.client.put(f.server.url("/v1/profiles/ada")).send().await.unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
    f.assert_unchanged("no body").await;
}

#[tokio::test]
async fn a_body_over_the_overall_limit_is_refused_with_json() {
    let f = Fixture::new().await;
    // Limit: image + 64 KiB metadata + 16 KiB framing.
    let limit = MAX_IMAGE + 64 * 1024 + 16 * 1024;

    // Declared too large: refused from the headers, before the body is read (the body
    // is then drained, so the client reads the answer).
    let mut request = format!(
        "PUT /v1/profiles/ada HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {}\r\n\r\n",
        limit + 1
    )
    .into_bytes();
    request.resize(request.len() + limit as usize + 1, b'x');
    let (status, _, body) = f.server.raw(&request).await;
    assert_eq!(status, 413);
    expect_error_body(&serde_json::from_slice(&body).unwrap(), "payload_too_large");
    f.assert_unchanged("declared too large").await;

    // Chunked, no length: refused by the body limit while streaming, still as JSON.
    // The excess is a preamble before the first boundary, which no part limit sees.
    let mut multipart = vec![b'p'; limit as usize + 1];
    multipart
        .extend_from_slice(b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}\r\n--XyZ--\r\n");
    let mut request = b"PUT /v1/profiles/ada HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
        Content-Type: multipart/form-data; boundary=XyZ\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for chunk in multipart.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, head, body) = f.server.raw(&request).await;
    assert_eq!(status, 413, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    expect_error_body(&serde_json::from_slice(&body).unwrap(), "payload_too_large");
    f.assert_unchanged("streamed too large").await;
}

#[tokio::test]
async fn an_upload_that_does_not_arrive_within_the_request_timeout_is_refused_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timings = Timings { request_timeout: Duration::from_millis(300), ..Timings::default() };
    let server = TestServer::start_wrapped(ApiConfig::default(), timings, |m, b| (m, b)).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Headers and the start of a body that is never finished.
    let head = "PUT /v1/profiles/slow HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\
                Content-Length: 100000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("the server answers without waiting for the rest of the body")
        .unwrap();
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(server.record("slow").await.is_none());
    assert!(server.blobs.keys().is_empty(), "nothing stored");
}
