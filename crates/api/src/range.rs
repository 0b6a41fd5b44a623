//! `Range` requests on image bytes (RFC 9110 §14): one byte range of an image, so a
//! client can resume a download or read a header without the whole image.
//!
//! Only single ranges are served; a request for several gets the whole image (a
//! server may always ignore `Range`), as does one whose `If-Range` does not name the
//! image's ETag, or whose `Range` does not parse.

use axum::http::{HeaderMap, header};

/// What a request's `Range` asks of an image of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Requested {
    /// The whole image (no usable `Range`).
    Whole,
    /// Bytes `first..=last`, both within the image.
    Part { first: u64, last: u64 },
    /// A range that starts past the image's end: 416.
    Unsatisfiable,
}

/// Reads the request's `Range` and `If-Range` for an image of `len` bytes whose strong
/// ETag is `etag`.
pub(crate) fn requested(headers: &HeaderMap, etag: &str, len: u64) -> Requested {
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else { return Requested::Whole };
    // If-Range with anything but this image's ETag (another tag, or a date this server
    // never sent) means "the whole thing": the client's copy is not this one.
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().ok().map(str::trim) != Some(etag)
    {
        return Requested::Whole;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else { return Requested::Whole };
    if spec.contains(',') {
        return Requested::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Requested::Whole };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            Some(0) => Requested::Unsatisfiable,
            Some(_) if len == 0 => Requested::Unsatisfiable,
            Some(n) => Requested::Part { first: len.saturating_sub(n), last: len - 1 },
            None => Requested::Whole,
        },
        // `a-` or `a-b`.
        (false, _) => {
            let Some(first) = number(first) else { return Requested::Whole };
            let last = if last.is_empty() { Some(u64::MAX) } else { number(last) };
            match last {
                None => Requested::Whole,
                Some(last) if last < first => Requested::Whole,
                Some(_) if first >= len => Requested::Unsatisfiable,
                Some(last) => Requested::Part { first, last: last.min(len - 1) },
            }
        }
        (true, true) => Requested::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ask(range: &str, if_range: Option<&str>, len: u64) -> Requested {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(tag) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(tag).unwrap());
        }
        requested(&h, "\"id\"", len)
    }

    #[test]
    fn single_ranges_are_served_within_the_image() {
        assert_eq!(ask("bytes=0-9", None, 100), Requested::Part { first: 0, last: 9 });
        assert_eq!(ask("bytes=90-", None, 100), Requested::Part { first: 90, last: 99 });
        assert_eq!(ask("bytes=90-500", None, 100), Requested::Part { first: 90, last: 99 }, "clamped to the end");
        assert_eq!(ask("bytes=-10", None, 100), Requested::Part { first: 90, last: 99 });
        assert_eq!(ask("bytes=-500", None, 100), Requested::Part { first: 0, last: 99 });
        assert_eq!(ask(" bytes= 5 - 5 ", None, 100), Requested::Part { first: 5, last: 5 });
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(ask("bytes=100-", None, 100), Requested::Unsatisfiable);
        assert_eq!(ask("bytes=100-200", None, 100), Requested::Unsatisfiable);
        assert_eq!(ask("bytes=-0", None, 100), Requested::Unsatisfiable);
        assert_eq!(ask("bytes=0-", None, 0), Requested::Unsatisfiable);
    }

    #[test]
    fn anything_else_gets_the_whole_image() {
        for range in ["items=0-1", "bytes=0-1,5-6", "bytes=9-1", "bytes=x-1", "bytes=-", "bytes=+1-2", "bytes=1"] {
            assert_eq!(ask(range, None, 100), Requested::Whole, "{range}");
        }
        assert_eq!(ask("bytes=0-1", Some("\"other\""), 100), Requested::Whole);
        assert_eq!(ask("bytes=0-1", Some("Tue, 01 Dec 2026 00:00:00 GMT"), 100), Requested::Whole);
        assert_eq!(ask("bytes=0-1", Some("\"id\""), 100), Requested::Part { first: 0, last: 1 });
        assert_eq!(requested(&HeaderMap::new(), "\"id\"", 100), Requested::Whole);
    }
}
