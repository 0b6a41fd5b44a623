//! The happy paths of the API against a real server: writes, reads, image serving,
//! replacement, deletion, probes, routing errors.

mod common;

use base64::Engine as _;
use common::{TestServer, expect_error, form, gif, jpeg, png, webp};
use profilestore_api::ApiConfig;
use serde_json::{Value, json};

const META: &str = r#"{"name": "Ada", "tags": ["x", 1]}"#;

async fn put_ok(server: &TestServer, user: &str, metadata: &str, image: Vec<u8>, declared: &str) -> Value {
    let response = server.put(user, form(metadata, image, declared)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_written_profile_reads_back_with_its_image() {
    let server = TestServer::start(ApiConfig::default()).await;
    let image = png(3, 2);
    let written = put_ok(&server, "ada", META, image.clone(), "image/png").await;

    let obj = written.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["content_type", "image_id", "image_sha256", "image_size", "image_url", "metadata", "updated_at", "user_id"]
    );
    assert_eq!(written["user_id"], "ada");
    assert_eq!(written["metadata"], json!({"name": "Ada", "tags": ["x", 1]}), "metadata is an object, not a string");
    assert_eq!(written["content_type"], "image/png");
    assert_eq!(written["image_size"], image.len());
    let image_id = written["image_id"].as_str().unwrap();
    assert_eq!(written["image_url"], format!("/v1/images/{image_id}"));
    let updated_at = written["updated_at"].as_str().unwrap();
    assert!(updated_at.ends_with('Z') && updated_at.contains('T') && updated_at.len() == 24, "{updated_at}");

    let response = server.get("/v1/profiles/ada").await;
    assert_eq!(response.status(), 200);
    let read: Value = response.json().await.unwrap();
    let decoded = base64::engine::general_purpose::STANDARD.decode(read["image"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, image);
    let mut without_image = read.clone();
    without_image.as_object_mut().unwrap().remove("image");
    assert_eq!(without_image, written, "a read answers exactly what the write stored");

    // The record keeps the client's metadata text as sent.
    assert_eq!(server.record("ada").await.unwrap().metadata, META);
}

#[tokio::test]
async fn the_profile_image_is_served_with_its_exact_bytes_and_headers() {
    let server = TestServer::start(ApiConfig::default()).await;
    let image = png(1, 1);
    let written = put_ok(&server, "ada", META, image.clone(), "image/png").await;
    let image_id = written["image_id"].as_str().unwrap();
    let etag = format!("\"{image_id}\"");

    let response = server.get("/v1/profiles/ada/image").await;
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'");
    assert_eq!(h["cache-control"], "no-cache");
    assert_eq!(response.bytes().await.unwrap(), image);

    let response =
        server.client.get(server.url("/v1/profiles/ada/image")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag.as_str());
    assert!(response.bytes().await.unwrap().is_empty());

    let stale = server
        .client
        .get(server.url("/v1/profiles/ada/image"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.bytes().await.unwrap(), image);
}

#[tokio::test]
async fn images_by_id_are_cacheable_for_a_bounded_time() {
    let server = TestServer::start(ApiConfig::default()).await;
    let image = gif(4, 4);
    let written = put_ok(&server, "ada", META, image.clone(), "image/gif").await;
    let url = written["image_url"].as_str().unwrap();
    let etag = format!("\"{}\"", written["image_id"].as_str().unwrap());

    let response = server.get(url).await;
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    assert_eq!(h["content-type"], "image/gif");
    assert_eq!(h["etag"], etag.as_str());
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["content-security-policy"], "default-src 'none'");
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(response.bytes().await.unwrap(), image);

    let weak = format!("W/{etag}");
    let response = server.client.get(server.url(url)).header("if-none-match", weak).send().await.unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");

    let absent = "01900000-0000-7000-8000-0000000000ab";
    expect_error(server.get(&format!("/v1/images/{absent}")).await, 404, "image_not_found").await;
    for malformed in ["not-a-uuid", "01900000-0000-4000-8000-0000000000ab", "01900000-0000-7000-8000-0000000000AB"] {
        expect_error(server.get(&format!("/v1/images/{malformed}")).await, 400, "invalid_image_id").await;
    }
}

#[tokio::test]
async fn a_replaced_profile_gets_a_new_image_id_and_url() {
    let server = TestServer::start(ApiConfig::default()).await;
    let first = put_ok(&server, "ada", META, png(1, 1), "image/png").await;
    let second_image = webp(2, 3);
    let second = put_ok(&server, "ada", r#"{"v": 2}"#, second_image.clone(), "image/webp").await;

    assert_ne!(first["image_id"], second["image_id"]);
    assert_ne!(first["image_url"], second["image_url"]);
    assert_eq!(second["content_type"], "image/webp");

    let read: Value = server.get("/v1/profiles/ada").await.json().await.unwrap();
    assert_eq!(read["image_id"], second["image_id"]);
    assert_eq!(read["metadata"], json!({"v": 2}));
    let current = server.get("/v1/profiles/ada/image").await;
    assert_eq!(current.headers()["etag"], format!("\"{}\"", second["image_id"].as_str().unwrap()).as_str());
    assert_eq!(current.bytes().await.unwrap(), second_image);

    // The old URL is not served once no profile shows its image, although the bytes
    // stay until the cleaner reclaims them.
    let old = server.get(first["image_url"].as_str().unwrap()).await;
    expect_error(old, 404, "image_not_found").await;
    assert_eq!(server.blobs.keys().len(), 2, "both blobs are still stored");

    // Nor is the current one once the profile is deleted.
    let deleted = server.client.delete(server.url("/v1/profiles/ada")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    expect_error(server.get(second["image_url"].as_str().unwrap()).await, 404, "image_not_found").await;
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_not_the_declaration() {
    let server = TestServer::start(ApiConfig::default()).await;
    let image = jpeg(5, 7);
    let written = put_ok(&server, "ada", META, image.clone(), "image/png").await;
    assert_eq!(written["content_type"], "image/jpeg");

    let response = server.get("/v1/profiles/ada/image").await;
    assert_eq!(response.headers()["content-type"], "image/jpeg");
    assert_eq!(response.bytes().await.unwrap(), image);
    let response = server.get(written["image_url"].as_str().unwrap()).await;
    assert_eq!(response.headers()["content-type"], "image/jpeg");

    let gif_written = put_ok(&server, "bob", "{}", gif(1, 1), "application/octet-stream").await;
    assert_eq!(gif_written["content_type"], "image/gif");
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let server = TestServer::start(ApiConfig::default()).await;
    put_ok(&server, "ada", META, png(1, 1), "image/png").await;

    let response = server.client.delete(server.url("/v1/profiles/ada")).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.bytes().await.unwrap().is_empty());

    expect_error(server.get("/v1/profiles/ada").await, 404, "profile_not_found").await;
    expect_error(server.get("/v1/profiles/ada/image").await, 404, "profile_not_found").await;
    let again = server.client.delete(server.url("/v1/profiles/ada")).send().await.unwrap();
    expect_error(again, 404, "profile_not_found").await;
}

#[tokio::test]
async fn invalid_user_ids_are_refused_on_every_route() {
    let server = TestServer::start(ApiConfig::default()).await;
    let long = "a".repeat(129);
    for bad in ["bad!id", "a%20b", "a%2Fb", "%C3%BC", "%FF", long.as_str()] {
        let path = format!("/v1/profiles/{bad}");
        expect_error(server.get(&path).await, 400, "invalid_user_id").await;
        expect_error(server.get(&format!("{path}/image")).await, 400, "invalid_user_id").await;
        expect_error(server.client.delete(server.url(&path)).send().await.unwrap(), 400, "invalid_user_id").await;
        expect_error(server.put(bad, form(META, png(1, 1), "image/png")).await, 400, "invalid_user_id").await;
    }
    assert!(server.blobs.keys().is_empty(), "nothing stored for an invalid user id");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let server = TestServer::start(ApiConfig::default()).await;
    expect_error(server.get("/nope").await, 404, "not_found").await;
    expect_error(server.get("/v1/profiles").await, 404, "not_found").await;
    expect_error(server.get("/v1/profiles/ada/image/extra").await, 404, "not_found").await;

    let post = server.client.post(server.url("/v1/profiles/ada")).send().await.unwrap();
    let allow = post.headers().get("allow").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    for method in ["GET", "PUT", "DELETE"] {
        assert!(allow.contains(method), "Allow lists {method}: {allow}");
    }
    expect_error(post, 405, "method_not_allowed").await;
    let put_image = server.client.put(server.url("/v1/profiles/ada/image")).send().await.unwrap();
    expect_error(put_image, 405, "method_not_allowed").await;
    let delete_health = server.client.delete(server.url("/healthz")).send().await.unwrap();
    expect_error(delete_health, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn probes_answer_without_profiles() {
    let server = TestServer::start(ApiConfig::default()).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"status": "ready"}));
}
