//! Building the `object_store` S3 client from [`S3Options`], and nothing else: no
//! environment variables, no config files, no cloud metadata endpoints.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential, S3ConditionalPut};
use object_store::{BackoffConfig, ClientOptions, RetryConfig, StaticCredentialProvider};
use profilestore_core::error::{StoreError, StoreErrorKind};

use crate::open::S3Options;

/// The region requests are signed for when none is set (what AWS and most
/// S3-compatible servers expect by default).
pub(super) const DEFAULT_REGION: &str = "us-east-1";

/// How long establishing a connection may take before the attempt counts as failed.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take, from connecting to the end of the response body.
/// Images are at most tens of MiB, sent in one PUT.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Retries for transient failures (connection refused or reset, 5xx, throttling): a
/// few, with short backoff, so an unreachable server is reported within seconds; the
/// callers (request deadlines, the cleaner's start-over loop) decide about retrying
/// longer.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(10),
    }
}

/// The text of the refusal when neither credentials nor unsigned requests are set.
pub(super) const NO_CREDENTIALS: &str = "no S3 credentials are set: set AWS_ACCESS_KEY_ID and \
     AWS_SECRET_ACCESS_KEY (or --s3-access-key-id and --s3-secret-access-key), or send unsigned requests \
     with --s3-skip-signature; profilestore never asks a cloud metadata endpoint for credentials";

fn misconfigured(message: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Misconfigured, message)
}

/// The credential requests are signed with, and whether signing is skipped; refuses
/// every combination that is not explicit.
pub(super) fn credential(options: &S3Options) -> Result<(AwsCredential, bool), StoreError> {
    let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let (key_id, secret, token) =
        (set(&options.access_key_id), set(&options.secret_access_key), set(&options.session_token));
    match (key_id, secret) {
        (Some(_), Some(_)) if options.skip_signature => Err(misconfigured(
            "both S3 credentials and --s3-skip-signature are set: use one or the other (unset \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or drop --s3-skip-signature)",
        )),
        (Some(key_id), Some(secret_key)) => Ok((AwsCredential { key_id, secret_key, token }, false)),
        (Some(_), None) => Err(misconfigured(
            "an S3 access key id is set but no secret access key: set AWS_SECRET_ACCESS_KEY or --s3-secret-access-key",
        )),
        (None, Some(_)) => Err(misconfigured(
            "an S3 secret access key is set but no access key id: set AWS_ACCESS_KEY_ID or --s3-access-key-id",
        )),
        (None, None) if token.is_some() => Err(misconfigured(
            "an S3 session token is set without an access key id and secret access key: set all three",
        )),
        (None, None) if options.skip_signature => {
            // Never used to sign (skip_signature), but handing the builder a credential
            // of our own keeps it from constructing its instance-metadata provider.
            Ok((AwsCredential { key_id: String::new(), secret_key: String::new(), token: None }, true))
        }
        (None, None) => Err(misconfigured(NO_CREDENTIALS)),
    }
}

/// The region requests are signed for: the one set, or [`DEFAULT_REGION`].
pub(super) fn region(options: &S3Options) -> &str {
    options.region.as_deref().filter(|r| !r.is_empty()).unwrap_or(DEFAULT_REGION)
}

/// A self-hosted server's base URL, as set.
pub(super) struct Endpoint<'a> {
    /// The URL, `http://` or `https://`.
    pub url: &'a str,
    /// Whether it is plain `http://` (allowed only because it was set explicitly).
    pub plain_http: bool,
}

/// The endpoint `options` set, `None` for AWS itself; refuses one that is not an
/// `http://` or `https://` URL.
pub(super) fn endpoint(options: &S3Options) -> Result<Option<Endpoint<'_>>, StoreError> {
    let Some(url) = options.endpoint.as_deref().filter(|e| !e.is_empty()) else { return Ok(None) };
    let plain_http = url.starts_with("http://");
    if !plain_http && !url.starts_with("https://") {
        return Err(misconfigured(format!("S3 endpoint {url:?} must start with http:// or https://")));
    }
    Ok(Some(Endpoint { url, plain_http }))
}

/// Builds the client for `bucket` as `options` say. Fails, before any network traffic,
/// when the options are not explicit about credentials or name a malformed endpoint.
pub(super) fn build(bucket: &str, options: &S3Options) -> Result<AmazonS3, StoreError> {
    let (credential, skip_signature) = credential(options)?;
    let region = region(options);
    // `new`, not `from_env`: every setting comes from `options`, so nothing in the
    // environment (AWS_* variables, profiles) changes where or how we connect.
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        // Always our own provider: the builder then never falls back to web identity,
        // container or instance-metadata credentials (off-machine requests).
        .with_credentials(Arc::new(StaticCredentialProvider::new(credential)))
        .with_skip_signature(skip_signature)
        // `If-None-Match: *` on create-only puts (object_store's default, made explicit
        // because never overwriting depends on it).
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(retry_config())
        // Counts each call's requests, so a blob put's retries can be reported.
        .with_http_connector(super::attempts::CountingConnector::default());
    let mut client_options = ClientOptions::new().with_connect_timeout(CONNECT_TIMEOUT).with_timeout(REQUEST_TIMEOUT);
    match endpoint(options)? {
        Some(Endpoint { url, plain_http }) => {
            // Self-hosted servers rarely have a DNS name per bucket: address the bucket
            // in the path (`{endpoint}/{bucket}/{key}`).
            builder = builder.with_endpoint(url).with_virtual_hosted_style_request(false);
            client_options = client_options.with_allow_http(plain_http);
        }
        // AWS itself: `https://{bucket}.s3.{region}.amazonaws.com`, the addressing AWS
        // recommends (path-style is deprecated there).
        None => builder = builder.with_virtual_hosted_style_request(true),
    }
    builder
        .with_client_options(client_options)
        .build()
        .map_err(|e| misconfigured(format!("cannot configure the S3 client: {e}")))
}
