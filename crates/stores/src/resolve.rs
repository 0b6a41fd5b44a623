//! Store URLs: the one place a URL becomes a store.
//!
//! | URL | store |
//! |---|---|
//! | `sqlite://data/p.db`, `sqlite:///var/lib/p.db`, `sqlite:data/p.db` | [`SqliteMetadataStore`] |
//! | `file://./data/blobs`, `file:///var/lib/blobs` | [`LocalBlobStore`] |
//! | `memory://` | a fresh in-memory store from `profilestore_core::memory` (tests) |
//! | `postgres://user@host/db`, `postgresql://…` | `PostgresMetadataStore` (feature `postgres`) |
//! | `s3://bucket/prefix` | `S3BlobStore` (feature `s3`), reached as [`S3Options`] say |
//!
//! The `url` crate reads the scheme, and the whole URL of a database or a bucket.
//! Local paths are the exception: they are taken literally from the text (no
//! percent-decoding), and a path after `scheme://` is relative to the working directory
//! unless it starts with `/`: a URL has no relative form, and the `url` crate would read
//! `data` in `sqlite://data/p.db` as a host. Every store opened here is [`Measured`]. Adding a backend is one
//! `Scheme` variant and one match arm in each `open_*` function.

use std::sync::Arc;

use profilestore_core::memory::{MemoryBlobStore, MemoryMetadataStore};
use profilestore_core::store::{BlobStore, MetadataStore};
use profilestore_core::time::Clock;

use url::Url;

use crate::measured::Measured;

use crate::local::LocalBlobStore;
use crate::open::{OpenError, OpenMode, S3Options, redact_url};
use crate::sqlite::SqliteMetadataStore;

const METADATA_SCHEMES: &str = "sqlite://, postgres://, memory://";
const BLOB_SCHEMES: &str = "file://, s3://, memory://";

/// The backends a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Sqlite,
    File,
    Memory,
    Postgres,
    S3,
}

impl Scheme {
    /// The `backend` label of the store's figures.
    fn backend(self) -> &'static str {
        match self {
            Scheme::Sqlite => "sqlite",
            Scheme::File => "local",
            Scheme::Memory => "memory",
            Scheme::Postgres => "postgres",
            Scheme::S3 => "s3",
        }
    }

    fn from_name(name: &str) -> Option<Scheme> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sqlite" => Scheme::Sqlite,
            "file" => Scheme::File,
            "memory" => Scheme::Memory,
            "postgres" | "postgresql" => Scheme::Postgres,
            "s3" => Scheme::S3,
            _ => return None,
        })
    }
}

/// A storage URL: its scheme, the text after it, and the whole read as a URL.
struct Parsed<'a> {
    scheme: Scheme,
    /// The text after `scheme://` or `scheme:`, as given: local paths are read from it.
    rest: &'a str,
    /// The text read as a URL; an error for text a URL cannot hold, which only a local
    /// path may be (`sqlite://my data/p.db`).
    url: Result<Url, url::ParseError>,
    redacted: String,
}

impl Parsed<'_> {
    /// The URL, or why the text is none.
    fn url(&self) -> Result<&Url, OpenError> {
        self.url.as_ref().map_err(|e| OpenError::InvalidUrl { url: self.redacted.clone(), reason: e.to_string() })
    }
}

fn parse<'a>(text: &'a str, supported: &'static str) -> Result<Parsed<'a>, OpenError> {
    let redacted = redact_url(text);
    let url = Url::parse(text);
    // The `url` crate falls back to a relative reference exactly when the text does not
    // start with a scheme; any other error comes after a valid `scheme:`.
    let has_scheme = url != Err(url::ParseError::RelativeUrlWithoutBase);
    let Some((name, rest)) = text.split_once(':').filter(|_| has_scheme) else {
        return Err(OpenError::NoScheme { url: redacted, supported });
    };
    let name = url.as_ref().map_or_else(|_| name.to_ascii_lowercase(), |u| u.scheme().to_owned());
    let scheme = Scheme::from_name(&name).ok_or_else(|| OpenError::UnknownScheme {
        url: redacted.clone(),
        scheme: name.clone(),
        supported,
    })?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Ok(Parsed { scheme, rest, url, redacted })
}

/// What follows `s3://`, once the `url` crate has read it and no credentials or port
/// are in it; the bucket and prefix rules are the S3 backend's.
#[cfg(feature = "s3")]
fn s3_location(parsed: &Parsed<'_>) -> Result<String, OpenError> {
    let url = parsed.url()?;
    let invalid = |reason: &str| OpenError::InvalidUrl { url: parsed.redacted.clone(), reason: reason.to_owned() };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials do not belong in an s3:// URL: give them as settings (--s3-access-key-id, AWS_ACCESS_KEY_ID, …)",
        ));
    }
    if url.port().is_some() {
        return Err(invalid("a port belongs to the endpoint (--s3-endpoint), not to the bucket"));
    }
    let mut location = format!("{}{}", url.host_str().unwrap_or_default(), url.path());
    // Passed on for the backend to refuse with its reason.
    for (mark, part) in [('?', url.query()), ('#', url.fragment())] {
        if let Some(part) = part {
            location.push(mark);
            location.push_str(part);
        }
    }
    Ok(location)
}

/// What follows `s3://` in a blob store URL (`bucket/prefix`), as the S3 backend is
/// given it; `None` for every other URL, and for one that opening would refuse.
#[cfg(feature = "s3")]
pub fn s3_bucket_and_prefix(url: &str) -> Option<String> {
    let parsed = parse(url, BLOB_SCHEMES).ok().filter(|parsed| parsed.scheme == Scheme::S3)?;
    s3_location(&parsed).ok()
}

/// The file-system path of a `sqlite:` or `file:` URL.
fn local_path<'a>(parsed: &Parsed<'a>) -> Result<&'a str, OpenError> {
    let invalid = |reason: &str| OpenError::InvalidUrl { url: parsed.redacted.clone(), reason: reason.to_owned() };
    if parsed.rest.contains(['?', '#']) {
        return Err(invalid("query strings and fragments are not supported in a local path"));
    }
    // `file://localhost/var/x` is RFC 8089's spelling of `/var/x`.
    let path = parsed.rest.strip_prefix("localhost/").map_or(parsed.rest, |_| &parsed.rest["localhost".len()..]);
    if path.is_empty() {
        return Err(invalid("the path is empty"));
    }
    Ok(path)
}

#[cfg(not(all(feature = "postgres", feature = "s3")))]
fn not_compiled(parsed: &Parsed<'_>, backend: &'static str) -> OpenError {
    OpenError::NotCompiled { url: parsed.redacted.clone(), backend }
}

fn wrong_kind(parsed: &Parsed<'_>, found: &'static str, expected: &'static str, supported: &'static str) -> OpenError {
    OpenError::WrongKind { url: parsed.redacted.clone(), found, expected, supported }
}

/// Opens the metadata store `url` names. `clock` is the "database clock" of stores that
/// have none of their own (`memory://`); real databases use their own clock.
pub async fn open_metadata(
    url: &str,
    mode: OpenMode,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn MetadataStore>, OpenError> {
    let parsed = parse(url, METADATA_SCHEMES)?;
    let store: Arc<dyn MetadataStore> = match parsed.scheme {
        Scheme::Sqlite => Arc::new(SqliteMetadataStore::open(local_path(&parsed)?, mode).await?),
        Scheme::Memory => Arc::new(MemoryMetadataStore::new(clock)),
        Scheme::Postgres => open_postgres(&parsed, url, mode).await?,
        Scheme::File | Scheme::S3 => return Err(wrong_kind(&parsed, "blob", "metadata", METADATA_SCHEMES)),
    };
    Ok(Measured::new(store, "database", parsed.scheme.backend()))
}

/// Opens the blob store `url` names. `clock` stamps creation times in stores that have
/// no clock of their own (`memory://`); real stores use their own clock.
pub async fn open_blobs(
    url: &str,
    mode: OpenMode,
    clock: Arc<dyn Clock>,
    s3: &S3Options,
) -> Result<Arc<dyn BlobStore>, OpenError> {
    let parsed = parse(url, BLOB_SCHEMES)?;
    let store: Arc<dyn BlobStore> = match parsed.scheme {
        Scheme::File => Arc::new(LocalBlobStore::open(local_path(&parsed)?, mode).await?),
        Scheme::Memory => Arc::new(MemoryBlobStore::new(clock)),
        Scheme::S3 => open_s3(&parsed, mode, s3).await?,
        Scheme::Sqlite | Scheme::Postgres => return Err(wrong_kind(&parsed, "metadata", "blob", BLOB_SCHEMES)),
    };
    Ok(Measured::new(store, "blobs", parsed.scheme.backend()))
}

#[cfg(feature = "postgres")]
async fn open_postgres(parsed: &Parsed<'_>, url: &str, mode: OpenMode) -> Result<Arc<dyn MetadataStore>, OpenError> {
    // Refused here, naming what is wrong, rather than by the driver.
    parsed.url()?;
    crate::postgres::open(url, parsed.redacted.clone(), mode).await
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(parsed: &Parsed<'_>, _url: &str, _mode: OpenMode) -> Result<Arc<dyn MetadataStore>, OpenError> {
    Err(not_compiled(parsed, "postgres"))
}

#[cfg(feature = "s3")]
async fn open_s3(parsed: &Parsed<'_>, mode: OpenMode, options: &S3Options) -> Result<Arc<dyn BlobStore>, OpenError> {
    crate::s3::open(&s3_location(parsed)?, parsed.redacted.clone(), mode, options).await
}

#[cfg(not(feature = "s3"))]
async fn open_s3(parsed: &Parsed<'_>, _mode: OpenMode, _options: &S3Options) -> Result<Arc<dyn BlobStore>, OpenError> {
    Err(not_compiled(parsed, "s3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(url: &str) -> Result<String, OpenError> {
        let parsed = parse(url, BLOB_SCHEMES)?;
        local_path(&parsed).map(str::to_owned)
    }

    #[test]
    fn local_urls_name_relative_and_absolute_paths() {
        assert_eq!(path_of("sqlite://data/p.db").unwrap(), "data/p.db");
        assert_eq!(path_of("sqlite:data/p.db").unwrap(), "data/p.db");
        assert_eq!(path_of("sqlite:///var/lib/p.db").unwrap(), "/var/lib/p.db");
        assert_eq!(path_of("SQLite://p.db").unwrap(), "p.db");
        assert_eq!(path_of("file://./data/blobs").unwrap(), "./data/blobs");
        assert_eq!(path_of("file:///var/lib/blobs").unwrap(), "/var/lib/blobs");
        assert_eq!(path_of("file://localhost/var/lib/blobs").unwrap(), "/var/lib/blobs");
    }

    #[test]
    fn malformed_local_urls_are_refused() {
        assert!(matches!(path_of("file://"), Err(OpenError::InvalidUrl { .. })));
        assert!(matches!(path_of("sqlite://p.db?mode=ro"), Err(OpenError::InvalidUrl { .. })));
        assert!(matches!(path_of("data/p.db"), Err(OpenError::NoScheme { .. })));
        assert!(matches!(path_of("./x:y"), Err(OpenError::NoScheme { .. })));
        assert!(matches!(path_of("redis://h"), Err(OpenError::UnknownScheme { .. })));
        assert!(matches!(path_of(""), Err(OpenError::NoScheme { .. })));
        assert!(matches!(path_of(":x"), Err(OpenError::NoScheme { .. })));
    }

    #[test]
    fn local_paths_a_url_cannot_hold_are_still_taken_literally() {
        assert_eq!(path_of("sqlite://my data/p.db").unwrap(), "my data/p.db");
        assert_eq!(path_of("file:///var/lib/my blobs").unwrap(), "/var/lib/my blobs");
        assert_eq!(path_of("file://Data/Blobs").unwrap(), "Data/Blobs", "no host lower-casing");
        assert_eq!(path_of("sqlite://data/p%20q.db").unwrap(), "data/p%20q.db", "no percent-decoding");
        assert_eq!(path_of("FILE:///x").unwrap(), "/x");
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_urls_are_read_by_the_url_crate_and_refuse_credentials_and_ports() {
        let location = |text: &str| parse(text, BLOB_SCHEMES).and_then(|p| s3_location(&p));
        assert_eq!(location("s3://avatars/profiles").unwrap(), "avatars/profiles");
        assert_eq!(location("s3://avatars").unwrap(), "avatars");
        assert_eq!(location("S3://avatars/p/").unwrap(), "avatars/p/");
        assert_eq!(location("s3://b/p?region=eu").unwrap(), "b/p?region=eu", "left for the backend to refuse");
        let err = location("s3://AKIA:hunter2@avatars/p").unwrap_err().to_string();
        assert!(err.contains("credentials") && !err.contains("hunter2") && !err.contains("AKIA"), "{err}");
        assert!(location("s3://avatars:9000/p").unwrap_err().to_string().contains("--s3-endpoint"));
        assert!(matches!(location("s3://bad bucket/p"), Err(OpenError::InvalidUrl { .. })));
    }

    #[test]
    fn a_database_url_must_be_a_url() {
        let parsed = parse("postgres://u:pw@[::1/db", METADATA_SCHEMES).unwrap();
        let err = parsed.url().unwrap_err().to_string();
        assert!(err.contains("invalid storage URL") && !err.contains("pw"), "{err}");
        assert!(parse("postgres://u:pw@[::1]:5432/db", METADATA_SCHEMES).unwrap().url().is_ok());
    }
}
