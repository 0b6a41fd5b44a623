//! How a store is opened, and why opening one can fail.

use profilestore_core::error::StoreError;

/// Whether opening a store may create or change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// Create the store when it is missing and bring its schema up to date
    /// (`profilestore init`, and servers, which pair on first use).
    Migrate,
    /// Use the store exactly as it is: it must exist and be at this build's schema
    /// version. Never creates, migrates or otherwise alters anything, so a cleaner or
    /// audit pointed at a wrong location fails instead of making an empty store there.
    Existing,
}

/// Why a store could not be opened. Every message names the store's location (with any
/// credentials in a URL redacted) and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The text has no `scheme:` prefix.
    #[error("'{url}' is not a storage URL: expected one starting with {supported}")]
    NoScheme {
        /// The text given, redacted.
        url: String,
        /// The schemes this build accepts here.
        supported: &'static str,
    },
    /// The scheme is not one this project knows.
    #[error("unknown storage scheme '{scheme}' in '{url}': supported schemes are {supported}")]
    UnknownScheme {
        /// The URL given, redacted.
        url: String,
        /// Its scheme.
        scheme: String,
        /// The schemes this build accepts here.
        supported: &'static str,
    },
    /// The scheme names a backend this build was compiled without.
    #[error("backend '{backend}' is not compiled into this build (in '{url}')")]
    NotCompiled {
        /// The URL given, redacted.
        url: String,
        /// The backend's name.
        backend: &'static str,
    },
    /// The scheme names the other kind of store (a database where a blob store is
    /// expected, or the reverse).
    #[error("'{url}' names a {found} store, but a {expected} store URL is expected here ({supported})")]
    WrongKind {
        /// The URL given, redacted.
        url: String,
        /// What the URL names.
        found: &'static str,
        /// What was asked for.
        expected: &'static str,
        /// The schemes this build accepts here.
        supported: &'static str,
    },
    /// The URL is malformed.
    #[error("invalid storage URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL given, redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`OpenMode::Existing`] was asked for and the store does not exist.
    #[error("{what} '{location}' does not exist: run `profilestore init` to create it (or check the path)")]
    Missing {
        /// Which store ("database file", "blob directory").
        what: &'static str,
        /// Where it was looked for.
        location: String,
    },
    /// The database holds no profilestore schema.
    #[error("database '{location}' has not been initialised: run `profilestore init` first")]
    NotInitialised {
        /// The database.
        location: String,
    },
    /// The database's schema is older than this build's, and this open may not migrate.
    #[error(
        "database '{location}' is at schema version {found}, this build needs version {expected}: run `profilestore init` to migrate it"
    )]
    SchemaOutdated {
        /// The database.
        location: String,
        /// The version found.
        found: i64,
        /// The version this build needs.
        expected: i64,
    },
    /// The database's schema is newer than any this build knows.
    #[error(
        "database '{location}' is at schema version {found}, newer than the newest this build knows ({known}): use a newer profilestore"
    )]
    SchemaTooNew {
        /// The database.
        location: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// The store exists but failed while being opened or checked.
    #[error("cannot open {what} '{location}'")]
    Store {
        /// Which store.
        what: &'static str,
        /// Where it is.
        location: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
}

/// `url` with anything that may be a secret replaced by `***`: the userinfo before an
/// `@` (user names can be tokens, too) and every query parameter's value.
///
/// Errs toward hiding: an `@` anywhere after the scheme counts as ending a userinfo.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_userinfo, host_and_path)) => format!("{scheme}://***@{host_and_path}"),
            None => before_query.to_owned(),
        },
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((key, _value)) => format!("{key}=***"),
                None => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn userinfo_and_query_values_are_hidden() {
        assert_eq!(redact_url("postgres://alice:hunter2@db:5432/p"), "postgres://***@db:5432/p");
        assert_eq!(redact_url("postgres://tok/en:p@ss@db/p"), "postgres://***@db/p");
        assert_eq!(
            redact_url("s3://bucket/prefix?secret_access_key=abc&region=eu"),
            "s3://bucket/prefix?secret_access_key=***&region=***"
        );
        assert_eq!(redact_url("sqlite://data/p.db"), "sqlite://data/p.db");
        assert_eq!(redact_url("file:///var/lib/blobs"), "file:///var/lib/blobs");
    }
}

/// How to reach an S3-compatible server, beyond the bucket and prefix in the URL.
/// Every field is optional here; the S3 backend refuses to open without credentials
/// unless `skip_signature` is set, so the client never falls back to a cloud
/// metadata endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// The server's base URL, e.g. `http://127.0.0.1:9300`; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region to sign for.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token, for temporary credentials.
    pub session_token: Option<String>,
    /// Send unsigned requests (a public or test bucket); no credentials needed.
    pub skip_signature: bool,
    /// How many key prefixes (shards) a listing lists at once, 1 to
    /// `s3::MAX_LIST_CONCURRENCY`; 1 lists with one sequential walk. `None` for
    /// `s3::DEFAULT_LIST_CONCURRENCY`.
    pub list_concurrency: Option<std::num::NonZeroUsize>,
}
