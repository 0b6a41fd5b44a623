//! AWS Signature Version 4 for the few bucket requests `object_store` does not make
//! (module `bucket_config`): requests signed in the `Authorization` header, with the
//! payload's SHA-256 in `x-amz-content-sha256`. No presigned URLs, no chunked uploads.
//!
//! Written from the published algorithm and checked against AWS's own S3 examples
//! (known keys, a fixed date) in the unit tests below.

use aws_lc_rs::{digest, hmac};
use profilestore_core::time::Timestamp;

/// The signing algorithm's name, as it appears in the `Authorization` header.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The service every request here is signed for.
const SERVICE: &str = "s3";

/// Who signs, and for which region.
pub(super) struct Signer<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
}

/// The parts of a request the signature covers.
pub(super) struct Request<'a> {
    /// `GET`, `PUT`, …
    pub method: &'a str,
    /// The URL's path, percent-encoded once, as sent.
    pub path: &'a str,
    /// The canonical query string: `name=value` pairs, encoded and sorted by name
    /// (`versioning=` for `?versioning`); empty for none.
    pub query: &'a str,
    /// Every header to sign, `host` and `x-amz-*` among them; names in any case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The payload's SHA-256, lower-case hex (also sent as `x-amz-content-sha256`).
    pub payload_sha256: &'a str,
}

impl Signer<'_> {
    /// The `Authorization` header's value for `request` at `amz_date` (the
    /// `x-amz-date` header's value, see [`amz_date`]).
    pub fn authorization(&self, request: &Request<'_>, amz_date: &str) -> String {
        let mut headers: Vec<(String, &str)> =
            request.headers.iter().map(|(name, value)| (name.to_ascii_lowercase(), value.trim())).collect();
        headers.sort();
        let signed_headers = headers.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(";");
        let canonical_headers: String = headers.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
        let canonical_request =
            [request.method, request.path, request.query, &canonical_headers, &signed_headers, request.payload_sha256]
                .join("\n");
        let date = &amz_date[..amz_date.len().min(8)];
        let scope = format!("{date}/{}/{SERVICE}/aws4_request", self.region);
        let string_to_sign = format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()));
        // The key is derived from the secret through the date, region and service, so a
        // leaked derived key is good for one day, one region and one service only.
        let key = [date, self.region, SERVICE, "aws4_request"]
            .iter()
            .fold(format!("AWS4{}", self.secret).into_bytes(), |key, part| hmac_sha256(&key, part.as_bytes()));
        let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
        format!("{ALGORITHM} Credential={}/{scope},SignedHeaders={signed_headers},Signature={signature}", self.key_id)
    }
}

/// `now` as `x-amz-date` wants it: `YYYYMMDD'T'HHMMSS'Z'`, in UTC.
pub(super) fn amz_date(now: Timestamp) -> String {
    // `2013-05-24T00:00:00.000Z` → `20130524T000000Z`.
    let rfc3339 = now.to_rfc3339();
    let seconds = rfc3339.split_once('.').map_or(rfc3339.trim_end_matches('Z'), |(whole, _)| whole);
    let mut date: String = seconds.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    date.push('Z');
    date
}

/// SHA-256 of `bytes`, lower-case hex.
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys, date and bucket of the examples in AWS's S3 documentation
    /// ("Signature Calculations for the Authorization Header: Transferring Payload in a
    /// Single Chunk").
    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &str = "20130524T000000Z";
    const HOST: &str = "examplebucket.s3.amazonaws.com";

    fn signer() -> Signer<'static> {
        Signer { key_id: KEY_ID, secret: SECRET, region: "us-east-1" }
    }

    #[test]
    fn the_empty_payload_hashes_as_aws_publishes_it() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn amz_date_is_the_utc_time_without_separators() {
        // 2013-05-24T00:00:00Z, the examples' date.
        assert_eq!(amz_date(Timestamp::from_millis(1_369_353_600_000)), DATE);
        assert_eq!(amz_date(Timestamp::from_millis(1_369_353_600_000 + 3_723_999)), "20130524T010203Z");
    }

    #[test]
    fn aws_example_get_object_with_a_range() {
        let empty = sha256_hex(b"");
        let headers = [("Host", HOST), ("Range", "bytes=0-9"), ("x-amz-content-sha256", &empty), ("x-amz-date", DATE)];
        let request =
            Request { method: "GET", path: "/test.txt", query: "", headers: &headers, payload_sha256: &empty };
        assert_eq!(
            signer().authorization(&request, DATE),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        // A bucket subresource, as `?versioning` is: the canonical query is `lifecycle=`.
        let empty = sha256_hex(b"");
        let headers = [("x-amz-date", DATE), ("host", HOST), ("x-amz-content-sha256", &empty)];
        let request =
            Request { method: "GET", path: "/", query: "lifecycle=", headers: &headers, payload_sha256: &empty };
        assert_eq!(
            signer().authorization(&request, DATE),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;x-amz-content-sha256;x-amz-date,\
             Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }
}
