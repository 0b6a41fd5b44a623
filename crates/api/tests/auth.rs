//! Bearer tokens over HTTP, with real tokens signed by the test (`jsonwebtoken`) and
//! keys from `tests/fixtures` (made for the tests alone): who may write, delete and
//! read which profile, and every way a token can be wrong, each refused with its
//! status, code and challenge, and nothing stored.

// Tokens are checked against the process's wall clock (jsonwebtoken reads it), so the
// tests date theirs by it too.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::{TestServer, expect_error, form, png};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use profilestore_api::{ApiConfig, AuthPolicy, KeySource, TokenRules, TokenVerifier};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a shared secret of at least thirty-two bytes";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("fixtures/rsa-public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("fixtures/ec-private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("fixtures/ec-public.pem");
const OTHER_RSA_PRIVATE: &[u8] = include_bytes!("fixtures/other-rsa-private.pem");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn rules() -> TokenRules {
    TokenRules {
        issuer: Some("https://issuer.test".into()),
        audience: Some("profilestore".into()),
        leeway: Duration::from_secs(30),
        ..TokenRules::default()
    }
}

/// Claims for `sub` that meet [`rules`], valid for an hour; `extra` overrides.
fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "iss": "https://issuer.test", "aud": "profilestore", "exp": now() + 3600});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

fn hs256(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET).unwrap()).unwrap()
}

fn rs256(claims: &Value, private: &[u8], kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_rsa_pem(private).unwrap()).unwrap()
}

async fn server(source: KeySource, reads_need_token: bool) -> TestServer {
    let verifier = TokenVerifier::new(source, rules()).unwrap();
    TestServer::start(ApiConfig { auth: AuthPolicy::tokens(verifier, reads_need_token), ..ApiConfig::default() }).await
}

async fn put(server: &TestServer, user: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = server.client.put(server.url(&format!("/v1/profiles/{user}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.multipart(form(r#"{"n": 1}"#, png(1, 1), "image/png")).send().await.unwrap()
}

/// Asserts a 401 with `code` and its challenge, and that nothing was stored.
async fn refused(server: &TestServer, case: &str, token: Option<&str>, code: &str) {
    let response = put(server, "ada", token).await;
    assert_eq!(response.status(), 401, "{case}");
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    expect_error(response, 401, code).await;
    let challenge = challenge.unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer "), "{case}: {challenge}");
    assert_eq!(challenge.contains(r#"error="invalid_token""#), code == "invalid_token", "{case}: {challenge}");
    assert!(server.blobs.keys().is_empty(), "{case}: a blob was stored");
    assert!(server.record("ada").await.is_none(), "{case}: a record was stored");
}

#[tokio::test]
async fn a_token_writes_and_deletes_its_own_profile_only_and_the_admin_scope_any() {
    let server = server(KeySource::HmacSecret(SECRET.to_vec()), false).await;
    let ada = hs256(&claims("ada", json!({})));
    assert_eq!(put(&server, "ada", Some(&ada)).await.status(), 200);

    let bob = hs256(&claims("bob", json!({})));
    expect_error(put(&server, "ada", Some(&bob)).await, 403, "forbidden").await;
    let deleted = server.client.delete(server.url("/v1/profiles/ada")).bearer_auth(&bob).send().await.unwrap();
    expect_error(deleted, 403, "forbidden").await;
    assert!(server.record("ada").await.is_some(), "another user's token changed nothing");

    for admin in [
        json!({"scope": "openid profiles:admin"}),
        json!({"scp": ["profiles:admin"]}),
        json!({"scp": "profiles:admin offline"}),
        json!({"scope": ["profiles:admin"]}),
    ] {
        let token = hs256(&claims("operator", admin));
        assert_eq!(put(&server, "ada", Some(&token)).await.status(), 200);
    }
    let near_miss = hs256(&claims("operator", json!({"scope": "profiles:admin2 profiles"})));
    expect_error(put(&server, "ada", Some(&near_miss)).await, 403, "forbidden").await;

    // Reads are public by default.
    assert_eq!(server.get("/v1/profiles/ada").await.status(), 200);
    let deleted = server.client.delete(server.url("/v1/profiles/ada")).bearer_auth(&ada).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
}

#[tokio::test]
async fn every_wrong_token_is_refused_and_stores_nothing() {
    let server = server(KeySource::HmacSecret(SECRET.to_vec()), false).await;
    refused(&server, "no token", None, "unauthenticated").await;
    let good = hs256(&claims("ada", json!({})));
    let cases = [
        ("expired", hs256(&claims("ada", json!({"exp": now() - 120})))),
        ("not yet valid", hs256(&claims("ada", json!({"nbf": now() + 120})))),
        ("wrong issuer", hs256(&claims("ada", json!({"iss": "https://elsewhere.test"})))),
        ("no issuer", hs256(&json!({"sub": "ada", "aud": "profilestore", "exp": now() + 60}))),
        ("wrong audience", hs256(&claims("ada", json!({"aud": "another-service"})))),
        ("no audience", hs256(&json!({"sub": "ada", "iss": "https://issuer.test", "exp": now() + 60}))),
        ("no expiry", hs256(&json!({"sub": "ada", "iss": "https://issuer.test", "aud": "profilestore"}))),
        ("signed with another secret", {
            let key = EncodingKey::from_secret(b"another secret of at least thirty-two bytes!").unwrap();
            encode(&Header::new(Algorithm::HS256), &claims("ada", json!({})), &key).unwrap()
        }),
        ("RS256 against an HS256 key", rs256(&claims("ada", json!({})), RSA_PRIVATE, None)),
        ("alg none", unsigned(&claims("ada", json!({})))),
        ("tampered payload", tamper(&good, &claims("admin", json!({"scope": "profiles:admin"})))),
        ("truncated", good[..good.len() - 5].to_owned()),
        ("not a JWT", "hello".to_owned()),
    ];
    for (case, token) in &cases {
        refused(&server, case, Some(token), "invalid_token").await;
    }
    // A token just past `exp` is still inside the leeway.
    let within_leeway = hs256(&claims("ada", json!({"exp": now() - 5})));
    assert_eq!(put(&server, "ada", Some(&within_leeway)).await.status(), 200);

    let basic = server.client.put(server.url("/v1/profiles/bob")).header("authorization", "Basic YWRhOnB3");
    let response = basic.multipart(form("{}", png(1, 1), "image/png")).send().await.unwrap();
    expect_error(response, 401, "invalid_token").await;
}

#[tokio::test]
async fn an_rs256_key_refuses_an_hs256_token_signed_with_the_public_key_as_its_secret() {
    let server = server(KeySource::PublicKeyPem(RSA_PUBLIC.to_vec()), false).await;
    assert_eq!(put(&server, "ada", Some(&rs256(&claims("ada", json!({})), RSA_PRIVATE, None))).await.status(), 200);
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("bob", json!({})),
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
    )
    .unwrap();
    let response = put(&server, "bob", Some(&confused)).await;
    expect_error(response, 401, "invalid_token").await;
    let other_key = rs256(&claims("bob", json!({})), OTHER_RSA_PRIVATE, None);
    expect_error(put(&server, "bob", Some(&other_key)).await, 401, "invalid_token").await;
    assert!(server.record("bob").await.is_none());
}

#[tokio::test]
async fn an_es256_key_verifies_es256_tokens_only() {
    let server = server(KeySource::PublicKeyPem(EC_PUBLIC.to_vec()), false).await;
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let es256 = encode(&Header::new(Algorithm::ES256), &claims("ada", json!({})), &key).unwrap();
    assert_eq!(put(&server, "ada", Some(&es256)).await.status(), 200);
    let rs = rs256(&claims("ada", json!({})), RSA_PRIVATE, None);
    expect_error(put(&server, "ada", Some(&rs)).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_jwks_key_is_chosen_by_kid_and_an_unknown_kid_is_refused() {
    let mut jwk = Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let server = server(KeySource::Jwks(set), false).await;
    assert_eq!(
        put(&server, "ada", Some(&rs256(&claims("ada", json!({})), RSA_PRIVATE, Some("k1")))).await.status(),
        200
    );
    for kid in [Some("k2"), None] {
        let token = rs256(&claims("bob", json!({})), RSA_PRIVATE, kid);
        expect_error(put(&server, "bob", Some(&token)).await, 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn reads_can_be_made_to_need_a_token() {
    let server = server(KeySource::HmacSecret(SECRET.to_vec()), true).await;
    let ada = hs256(&claims("ada", json!({})));
    let stored: Value = put(&server, "ada", Some(&ada)).await.json().await.unwrap();
    let image_url = stored["image_url"].as_str().unwrap().to_owned();
    for path in ["/v1/profiles/ada", "/v1/profiles/ada/image", image_url.as_str()] {
        expect_error(server.get(path).await, 401, "unauthenticated").await;
        let bob = hs256(&claims("bob", json!({})));
        let read = server.client.get(server.url(path)).bearer_auth(bob).send().await.unwrap();
        assert_eq!(read.status(), 200, "{path}: any valid token reads");
        let cache = read.headers().get("cache-control").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        assert!(!cache.contains("public"), "{path}: a shared cache may keep what needs a token: {cache}");
    }
    assert_eq!(server.get("/healthz").await.status(), 200, "probes stay open");
}

#[tokio::test]
async fn without_a_configured_audience_a_token_minted_for_another_is_refused() {
    let rules = TokenRules { audience: None, ..rules() };
    let verifier = TokenVerifier::new(KeySource::HmacSecret(SECRET.to_vec()), rules).unwrap();
    let config = ApiConfig { auth: AuthPolicy::tokens(verifier, false), ..ApiConfig::default() };
    let server = TestServer::start(config).await;
    let no_audience = hs256(&json!({"sub": "ada", "iss": "https://issuer.test", "exp": now() + 60}));
    assert_eq!(put(&server, "ada", Some(&no_audience)).await.status(), 200);
    let for_another = hs256(&claims("ada", json!({"aud": "another-service"})));
    expect_error(put(&server, "ada", Some(&for_another)).await, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_jwks_with_encryption_keys_and_keys_without_alg_keeps_its_signing_keys() {
    let signing = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let mut good = Jwk::from_encoding_key(&signing, Algorithm::RS256).unwrap();
    good.common.key_id = Some("sig".into());
    let mut encryption = good.clone();
    encryption.common.key_id = Some("enc".into());
    encryption.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Encryption);
    let mut no_alg = good.clone();
    no_alg.common.key_id = Some("bare".into());
    no_alg.common.key_algorithm = None;
    let set = serde_json::to_string(&JwkSet { keys: vec![encryption, no_alg, good] }).unwrap();
    let server = server(KeySource::Jwks(set), false).await;
    assert_eq!(
        put(&server, "ada", Some(&rs256(&claims("ada", json!({})), RSA_PRIVATE, Some("sig")))).await.status(),
        200
    );
    let via_encryption_key = rs256(&claims("ada", json!({})), RSA_PRIVATE, Some("enc"));
    expect_error(put(&server, "ada", Some(&via_encryption_key)).await, 401, "invalid_token").await;
}

#[test]
fn unusable_keys_are_refused_when_configured() {
    assert!(TokenVerifier::new(KeySource::HmacSecret(b"short".to_vec()), rules()).is_err());
    assert!(TokenVerifier::new(KeySource::PublicKeyPem(b"not a key".to_vec()), rules()).is_err());
    assert!(TokenVerifier::new(KeySource::PublicKeyPem(RSA_PRIVATE.to_vec()), rules()).is_err(), "a private key");
    assert!(TokenVerifier::new(KeySource::Jwks(r#"{"keys": []}"#.into()), rules()).is_err());
    assert!(TokenVerifier::new(KeySource::Jwks("{".into()), rules()).is_err());
    for scope in ["", "profiles admin"] {
        let rules = TokenRules { admin_scope: scope.into(), ..rules() };
        assert!(TokenVerifier::new(KeySource::HmacSecret(SECRET.to_vec()), rules).is_err(), "admin scope {scope:?}");
    }
}

/// `claims` as a token with `alg: none` and no signature.
fn unsigned(claims: &Value) -> String {
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

/// `token` with its payload replaced by `claims`, its signature kept.
fn tamper(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}
