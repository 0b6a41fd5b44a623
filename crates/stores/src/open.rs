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

/// `text` with anything that may be a secret replaced by `***`: the userinfo before an
/// `@` (user names can be tokens, too), every query parameter's value and any fragment.
///
/// The `url` crate finds them; the text comes back unchanged when there is nothing to
/// hide, and otherwise as the `url` crate writes it. Errs toward hiding: an `@` that the
/// URL reads as part of the path (a password with an unencoded `/`) still hides
/// everything before it, and text that is no URL shows nothing after its scheme unless
/// it has no `@`, `:`, `?` or `#` there (then nothing in it has the shape of a secret,
/// like a local path with a space).
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else { return redact_unparsed(text) };
    let has_userinfo = !url.username().is_empty() || url.password().is_some();
    if !has_userinfo && url.query().is_none() && url.fragment().is_none() && !text.contains('@') {
        return text.to_owned();
    }
    if has_userinfo {
        // Cannot fail: a URL that has userinfo can hold it.
        let _ = url.set_password(None);
        let _ = url.set_username("***");
    }
    if url.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(name, _)| name.into_owned()).collect();
        url.query_pairs_mut().clear().extend_pairs(names.iter().map(|name| (name, "***")));
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    hide_through_last_at(url.as_str())
}

/// Everything between the scheme and the last `@` replaced by `***`.
fn hide_through_last_at(text: &str) -> String {
    let start = after_scheme(text);
    match text[start..].rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &text[start + at..]),
        None => text.to_owned(),
    }
}

/// Text that is no URL: kept only when nothing after its scheme can be a secret.
fn redact_unparsed(text: &str) -> String {
    let start = after_scheme(text);
    if text[start..].contains(['@', ':', '?', '#']) { format!("{}***", &text[..start]) } else { text.to_owned() }
}

/// Where what follows `scheme://` (or `scheme:`) starts; 0 without a scheme.
fn after_scheme(text: &str) -> usize {
    let Some((scheme, rest)) = text.split_once(':') else { return 0 };
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return 0;
    }
    scheme.len() + 1 + if rest.starts_with("//") { 2 } else { 0 }
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

    #[test]
    fn odd_urls_never_show_a_secret() {
        let hidden = |text: &str, secret: &str| {
            let out = redact_url(text);
            assert!(!out.contains(secret), "{text} shows {secret}: {out}");
            out
        };
        assert_eq!(hidden("postgres://u:p%40ss%2Fw@db/p", "ss"), "postgres://***@db/p");
        assert_eq!(hidden("postgres://u:p@ss@db/p", "ss"), "postgres://***@db/p");
        assert_eq!(hidden("postgres://tok3n@db/p", "tok3n"), "postgres://***@db/p");
        assert_eq!(hidden("postgres://u:hunter2@[::1]:5432/p", "hunter2"), "postgres://***@[::1]:5432/p");
        assert_eq!(
            hidden("postgres://db/p?password=hunter2&sslmode", "hunter2"),
            "postgres://db/p?password=***&sslmode=***"
        );
        assert_eq!(hidden("s3://b/p#hunter2", "hunter2"), "s3://b/p#***");
        // No scheme, or no URL at all: nothing after the scheme is shown.
        assert_eq!(hidden("alice:hunter2@db/p", "hunter2"), "alice:***@db/p");
        assert_eq!(hidden("alice@db", "alice"), "***");
        assert_eq!(hidden("postgres://u:hunter2@[::1/p", "hunter2"), "postgres://***");
        assert_eq!(hidden("postgres://u:hunter2", "hunter2"), "postgres://***");
        assert_eq!(hidden("postgres://u:pw@db:port/p", "pw"), "postgres://***");
        // Nothing shaped like a secret: shown as given, not as the `url` crate would write it.
        assert_eq!(redact_url("sqlite://my data/p.db"), "sqlite://my data/p.db");
        assert_eq!(redact_url("SQLite:///var/my data/p.db"), "SQLite:///var/my data/p.db");
        assert_eq!(redact_url("data/p.db"), "data/p.db");
        assert_eq!(redact_url(""), "");
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
