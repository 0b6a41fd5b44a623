//! [`BucketConfigClient`]: the bucket-level S3 requests `object_store` has no API for
//! (versioning, lifecycle, creating a bucket), SigV4-signed (module `sigv4`) and sent
//! with `reqwest`, both already in the tree through `object_store`.
//!
//! It is reached exactly as the blob store's client is: the same [`S3Options`], the
//! same endpoint and path-style addressing, the same explicit credentials (or
//! unsigned requests), and never the environment or a cloud metadata endpoint.

use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AwsCredential;
use profilestore_core::time::Timestamp;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{self, Endpoint};
use super::location::Location;
use super::sigv4::{self, Signer};
use crate::open::S3Options;

/// How long one bucket request may take, connecting included. These requests run at
/// start, and a server that hangs on them must not hold the start up for long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a bucket request failed. Messages name the request and the server's answer,
/// never a credential.
#[derive(Debug, thiserror::Error)]
pub enum BucketConfigError {
    /// The options or the bucket name cannot make a request (no credentials, a bad
    /// endpoint): refused before any network traffic.
    #[error("{0}")]
    Misconfigured(String),
    /// The request got no answer (connection refused, timed out, TLS failed).
    #[error("{doing}: no answer from the S3 server: {source}")]
    Unreachable {
        /// What was asked, e.g. "reading the bucket's versioning".
        doing: &'static str,
        /// What the HTTP client reported.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error (403 `AccessDenied`, 501 `NotImplemented`, …).
    #[error("{doing}: the S3 server answered {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// What was asked.
        doing: &'static str,
        /// The HTTP status.
        status: u16,
        /// S3's error code from the answer's body, when it had one.
        code: Option<String>,
        /// S3's message, or the start of the body.
        message: String,
    },
    /// The server answered 2xx with a body that is not the XML S3 sends.
    #[error("{doing}: the S3 server's answer is not what S3 sends: {reason}")]
    Malformed {
        /// What was asked.
        doing: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl BucketConfigError {
    /// S3's error code, when the server refused with one (`AccessDenied`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            BucketConfigError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A bucket's versioning state, as `GetBucketVersioning` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Versioning {
    /// Versioning was never turned on: a delete removes the object's bytes.
    Off,
    /// Versioning is on: a delete only adds a delete marker, every version stays.
    Enabled,
    /// Versioning was on and is suspended: versions made while it was on stay after a
    /// delete; objects written since are replaced or removed by a delete.
    Suspended,
}

impl Versioning {
    /// A short lower-case name: `off`, `enabled`, `suspended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Versioning::Off => "off",
            Versioning::Enabled => "enabled",
            Versioning::Suspended => "suspended",
        }
    }
}

/// One lifecycle rule, as far as expiring noncurrent versions goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleRule {
    /// The rule's `ID`, when it has one.
    pub id: Option<String>,
    /// Whether its `Status` is `Enabled`.
    pub enabled: bool,
    /// The key prefix it applies to (`Filter/Prefix`, `Filter/And/Prefix` or the old
    /// rule-level `Prefix`); empty for the whole bucket.
    pub prefix: String,
    /// Whether it also filters by tag or object size, which limits it to some objects.
    pub narrowed: bool,
    /// `NoncurrentVersionExpiration/NoncurrentDays`: days after a version becomes
    /// noncurrent until it is removed.
    pub noncurrent_days: Option<u32>,
    /// `NoncurrentVersionExpiration/NewerNoncurrentVersions`: that many newest
    /// noncurrent versions are kept whatever their age.
    pub newer_noncurrent_versions: Option<u32>,
}

impl LifecycleRule {
    /// The days after which this rule removes every noncurrent version of every key
    /// under `prefix/` (`prefix` without slashes at either end, empty for the bucket's
    /// root); `None` when it does not surely do so: disabled, without noncurrent
    /// expiration, keeping some noncurrent versions, filtered by tag or size, or
    /// limited to a narrower prefix.
    pub fn expires_noncurrent_under(&self, prefix: &str) -> Option<u32> {
        let keys = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        let keeps_some = self.newer_noncurrent_versions.is_some_and(|n| n > 0);
        let covers = self.enabled && !self.narrowed && !keeps_some && keys.starts_with(&self.prefix);
        self.noncurrent_days.filter(|_| covers)
    }
}

/// The bucket-level requests of one bucket, on the server the blob store's options
/// describe.
#[derive(Debug)]
pub struct BucketConfigClient {
    http: reqwest::Client,
    /// The bucket's own URL: `{endpoint}/{bucket}` or `https://{bucket}.s3.{region}.amazonaws.com/`.
    url: url::Url,
    region: String,
    /// `None` for unsigned requests (`skip_signature`).
    credential: Option<AwsCredential>,
}

impl BucketConfigClient {
    /// A client for `bucket` (the bucket alone, or `bucket/prefix` as after `s3://`)
    /// reached as `options` say. Refuses, before any network traffic, what the blob
    /// store's client refuses: a malformed bucket name, no explicit credentials, a
    /// malformed endpoint.
    pub fn new(bucket: &str, options: &S3Options) -> Result<BucketConfigClient, BucketConfigError> {
        let misconfigured = |e: &dyn std::fmt::Display| BucketConfigError::Misconfigured(e.to_string());
        let location = Location::parse(bucket).map_err(|e| misconfigured(&e))?;
        let (credential, skip_signature) = client::credential(options).map_err(|e| misconfigured(&e))?;
        let region = client::region(options).to_owned();
        let url = match client::endpoint(options).map_err(|e| misconfigured(&e))? {
            // Path-style, as the blob store addresses a self-hosted server. The bucket
            // name is `[a-z0-9.-]` only, so it needs no escaping in the path.
            Some(Endpoint { url, .. }) => format!("{}/{}", url.trim_end_matches('/'), location.bucket),
            None => format!("https://{}.s3.{region}.amazonaws.com/", location.bucket),
        };
        let url = url::Url::parse(&url).map_err(|e| misconfigured(&format!("S3 endpoint: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(client::CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| misconfigured(&format!("cannot build the HTTP client: {e}")))?;
        Ok(BucketConfigClient { http, url, region, credential: (!skip_signature).then_some(credential) })
    }

    /// The bucket's versioning state (`GET /{bucket}?versioning`), signed at `now`.
    pub async fn versioning(&self, now: Timestamp) -> Result<Versioning, BucketConfigError> {
        const DOING: &str = "reading the bucket's versioning";
        #[derive(Deserialize)]
        struct VersioningConfiguration {
            #[serde(rename = "Status")]
            status: Option<String>,
        }
        let body = self.send(Method::GET, "versioning", Bytes::new(), now, DOING).await?;
        let config: VersioningConfiguration = parse(&body, DOING)?;
        match config.status.as_deref().map(str::trim) {
            None | Some("") => Ok(Versioning::Off),
            Some("Enabled") => Ok(Versioning::Enabled),
            Some("Suspended") => Ok(Versioning::Suspended),
            Some(other) => Err(BucketConfigError::Malformed { doing: DOING, reason: format!("status {other:?}") }),
        }
    }

    /// The bucket's lifecycle rules (`GET /{bucket}?lifecycle`), signed at `now`;
    /// empty when it has none (`NoSuchLifecycleConfiguration`).
    pub async fn lifecycle(&self, now: Timestamp) -> Result<Vec<LifecycleRule>, BucketConfigError> {
        const DOING: &str = "reading the bucket's lifecycle rules";
        let body = match self.send(Method::GET, "lifecycle", Bytes::new(), now, DOING).await {
            Err(e) if e.code() == Some("NoSuchLifecycleConfiguration") => return Ok(Vec::new()),
            answer => answer?,
        };
        let config: xml::LifecycleConfiguration = parse(&body, DOING)?;
        Ok(config.rules.into_iter().map(xml::Rule::into_rule).collect())
    }

    /// Turns versioning on (`Enabled`) or suspends it (`PUT /{bucket}?versioning`).
    /// profilestore never calls this itself: it is for tests and set-up tools.
    pub async fn set_versioning(&self, enabled: bool, now: Timestamp) -> Result<(), BucketConfigError> {
        let status = if enabled { "Enabled" } else { "Suspended" };
        let body = format!(
            "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Status>{status}</Status></VersioningConfiguration>"
        );
        self.send(Method::PUT, "versioning", body.into(), now, "setting the bucket's versioning").await.map(drop)
    }

    /// Creates the bucket (`PUT /{bucket}`). profilestore never creates buckets on its
    /// own: this is for tests and set-up tools.
    pub async fn create_bucket(&self, now: Timestamp) -> Result<(), BucketConfigError> {
        // us-east-1 is the one region that takes no location constraint.
        let body = if self.region == client::DEFAULT_REGION {
            Bytes::new()
        } else {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
            .into()
        };
        self.send(Method::PUT, "", body, now, "creating the bucket").await.map(drop)
    }

    /// Sends one request to the bucket with `?{subresource}` (none when empty), signed
    /// at `now` unless requests are unsigned; the body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        subresource: &str,
        body: Bytes,
        now: Timestamp,
        doing: &'static str,
    ) -> Result<Bytes, BucketConfigError> {
        let mut url = self.url.clone();
        url.set_query((!subresource.is_empty()).then_some(subresource));
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(credential) = &self.credential {
            // Exactly the Host reqwest sends: the port only when it is not the scheme's.
            let host = match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (host, _) => host.unwrap_or_default().to_owned(),
            };
            let (amz_date, payload_sha256) = (sigv4::amz_date(now), sigv4::sha256_hex(&body));
            let mut headers = vec![("host", host.as_str()), ("x-amz-date", &amz_date)];
            headers.push(("x-amz-content-sha256", &payload_sha256));
            if let Some(token) = &credential.token {
                headers.push(("x-amz-security-token", token));
            }
            let query = if subresource.is_empty() { String::new() } else { format!("{subresource}=") };
            let signer = Signer { key_id: &credential.key_id, secret: &credential.secret_key, region: &self.region };
            let signed = sigv4::Request {
                method: method.as_str(),
                path: url.path(),
                query: &query,
                headers: &headers,
                payload_sha256: &payload_sha256,
            };
            let authorization = signer.authorization(&signed, &amz_date);
            // Host is set by reqwest from the URL, as signed above.
            for (name, value) in headers.iter().filter(|(name, _)| *name != "host") {
                request = request.header(*name, *value);
            }
            request = request.header("authorization", authorization);
        }
        let answer =
            request.body(body).send().await.map_err(|source| BucketConfigError::Unreachable { doing, source })?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(|source| BucketConfigError::Unreachable { doing, source })?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(refused(doing, status, &bytes))
    }
}

/// The error a non-2xx answer stands for, with S3's code and message from its body.
fn refused(doing: &'static str, status: StatusCode, body: &[u8]) -> BucketConfigError {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Error {
        code: Option<String>,
        message: Option<String>,
    }
    let error: Option<Error> = std::str::from_utf8(body).ok().and_then(|text| quick_xml::de::from_str(text).ok());
    let (code, message) = error.map_or((None, None), |e| (e.code, e.message));
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() { "(no body)".to_owned() } else { text.chars().take(200).collect() }
    });
    BucketConfigError::Refused { doing, status: status.as_u16(), code, message }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], doing: &'static str) -> Result<T, BucketConfigError> {
    let malformed = |reason: String| BucketConfigError::Malformed { doing, reason };
    let text = std::str::from_utf8(body).map_err(|e| malformed(e.to_string()))?;
    quick_xml::de::from_str(text).map_err(|e| malformed(e.to_string()))
}

/// The lifecycle configuration's XML, as far as it matters here; other elements
/// (transitions, current-version expiration, …) are ignored.
mod xml {
    use serde::Deserialize;
    use serde::de::IgnoredAny;

    use super::LifecycleRule;

    #[derive(Deserialize)]
    pub struct LifecycleConfiguration {
        #[serde(rename = "Rule", default)]
        pub rules: Vec<Rule>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct Rule {
        #[serde(rename = "ID")]
        id: Option<String>,
        status: Option<String>,
        /// The old, filterless form.
        prefix: Option<String>,
        filter: Option<Filter>,
        noncurrent_version_expiration: Option<NoncurrentVersionExpiration>,
    }

    /// A filter, or the `And` inside one: the same elements, tags repeated in `And`.
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Filter {
        prefix: Option<String>,
        #[serde(rename = "Tag", default)]
        tags: Vec<IgnoredAny>,
        object_size_greater_than: Option<IgnoredAny>,
        object_size_less_than: Option<IgnoredAny>,
        and: Option<Box<Filter>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct NoncurrentVersionExpiration {
        noncurrent_days: Option<u32>,
        newer_noncurrent_versions: Option<u32>,
    }

    impl Filter {
        fn prefix(&self) -> Option<&str> {
            self.prefix.as_deref().or_else(|| self.and.as_ref().and_then(|and| and.prefix()))
        }

        fn narrowed(&self) -> bool {
            !self.tags.is_empty()
                || self.object_size_greater_than.is_some()
                || self.object_size_less_than.is_some()
                || self.and.as_ref().is_some_and(|and| and.narrowed())
        }
    }

    impl Rule {
        pub fn into_rule(self) -> LifecycleRule {
            let filter = self.filter.unwrap_or_default();
            let expiration = self.noncurrent_version_expiration;
            LifecycleRule {
                enabled: self.status.as_deref().map(str::trim) == Some("Enabled"),
                prefix: filter.prefix().or(self.prefix.as_deref()).unwrap_or_default().to_owned(),
                narrowed: filter.narrowed(),
                noncurrent_days: expiration.as_ref().and_then(|e| e.noncurrent_days),
                newer_noncurrent_versions: expiration.as_ref().and_then(|e| e.newer_noncurrent_versions),
                id: self.id,
            }
        }
    }
}

#[cfg(test)]
#[path = "bucket_config_tests.rs"]
mod tests;
