//! Where an S3 store lives: the bucket and key prefix of an `s3://bucket/prefix` URL.

use object_store::path::Path;

/// A validated bucket name and the normalised key prefix under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    /// The bucket, by S3's bucket naming rules.
    pub bucket: String,
    /// Every key of the store lives under `{prefix}/`; `None` is the bucket's root.
    pub prefix: Option<Path>,
}

impl Location {
    /// Parses what follows `s3://`: `bucket`, `bucket/`, `bucket/some/prefix/`. Leading
    /// and trailing slashes of the prefix are dropped; what remains must be segments of
    /// `[A-Za-z0-9._-]` other than `.` and `..`. Returns why it is refused otherwise.
    pub fn parse(bucket_and_prefix: &str) -> Result<Location, String> {
        if bucket_and_prefix.contains(['?', '#']) {
            // Settings in a URL would be easy to leak into logs; they go by flag,
            // environment variable or config file instead.
            return Err("query strings and fragments are not supported in an s3:// URL: give the endpoint, \
                 region and credentials as settings (e.g. --s3-endpoint)"
                .to_owned());
        }
        let (bucket, prefix) = bucket_and_prefix.split_once('/').unwrap_or((bucket_and_prefix, ""));
        validate_bucket(bucket)?;
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            return Ok(Location { bucket: bucket.to_owned(), prefix: None });
        }
        for segment in prefix.split('/') {
            let valid_chars = segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if segment.is_empty() || segment == "." || segment == ".." || !valid_chars {
                // A narrow alphabet: every server and proxy spells these keys the same
                // way in URLs, signatures and listings.
                return Err(format!(
                    "invalid key prefix {prefix:?}: it must be segments of [A-Za-z0-9._-] separated by single \
                     slashes (no empty, '.' or '..' segments)"
                ));
            }
        }
        let path = Path::parse(prefix).map_err(|e| format!("invalid key prefix {prefix:?}: {e}"))?;
        Ok(Location { bucket: bucket.to_owned(), prefix: Some(path) })
    }

    /// The object path of `key` (relative to the store) under the prefix.
    pub fn path_of(&self, key: &str) -> Result<Path, object_store::path::Error> {
        match &self.prefix {
            Some(prefix) => Path::parse(format!("{prefix}/{key}")),
            None => Path::parse(key),
        }
    }

    /// `full` relative to the prefix; `None` when it lies outside it.
    pub fn relative<'a>(&self, full: &'a str) -> Option<&'a str> {
        match &self.prefix {
            Some(prefix) => full.strip_prefix(prefix.as_ref())?.strip_prefix('/'),
            None => Some(full),
        }
    }
}

/// S3's rules for bucket names (the strict, DNS-compatible ones every server accepts):
/// 3 to 63 characters of `[a-z0-9.-]`, starting and ending with a letter or digit, no
/// `..`, `.-` or `-.`, and not shaped like an IPv4 address.
fn validate_bucket(bucket: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("invalid bucket name {bucket:?}: {why}"));
    if bucket.is_empty() {
        return Err("the URL names no bucket: expected s3://BUCKET or s3://BUCKET/PREFIX".to_owned());
    }
    if !(3..=63).contains(&bucket.len()) {
        return refuse("it must be 3 to 63 characters long");
    }
    if !bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-')) {
        return refuse("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(bucket.as_bytes().first()) || !alnum(bucket.as_bytes().last()) {
        return refuse("it must start and end with a letter or digit");
    }
    if bucket.contains("..") || bucket.contains(".-") || bucket.contains("-.") {
        return refuse("'..', '.-' and '-.' are not allowed");
    }
    let parts: Vec<&str> = bucket.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok()) {
        return refuse("it must not look like an IP address");
    }
    Ok(())
}
