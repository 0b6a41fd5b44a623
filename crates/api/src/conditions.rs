//! Conditional requests on profiles (RFC 9110 §13): the `ETag` a profile answer
//! carries, and the `If-Match` / `If-None-Match` a change may send so that two
//! editors cannot silently overwrite each other, and a create cannot replace.
//!
//! A profile's entity tag is its version ([`Record::version`]): a digest of the image
//! id and the metadata, so it changes with every write, including a metadata-only
//! update that keeps the image. It is strong: equal tags mean the same profile.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use profilestore_core::service::Condition;
use profilestore_core::store::{ProfileVersion, Record};

use crate::error::ApiError;

/// The strong entity tag of `record`: its version, quoted.
pub(crate) fn profile_etag(record: &Record) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", record.version())).expect("a version is hex digits")
}

/// `response` with `record`'s version as its strong `ETag`.
pub(crate) fn with_etag(mut response: Response, record: &Record) -> Response {
    response.headers_mut().insert(header::ETAG, profile_etag(record));
    response
}

/// Whether the request's `If-Match` / `If-None-Match` ask anything of a change.
///
/// - `If-Match: *` → there must be a profile; `If-Match: "v1", "v2"` → it must be one
///   of these versions (strong comparison: a weak tag, or a tag this server never
///   made, matches nothing).
/// - `If-None-Match: *` → there must be none (create only). Entity tags in
///   `If-None-Match` are refused on a change: "change it unless it is this version"
///   is never what an editor means, and ignoring a condition would be worse.
/// - Both headers at once can never both hold of one profile (there is one, and
///   there is none): 412, as RFC 9110 §13.2.2 evaluates them in turn.
/// - Anything else is 400, checked before the two are combined: a tag that is not a
///   quoted string, an empty list element, `*` beside tags. An empty header asks for
///   nothing. The OpenAPI document's patterns say exactly this.
pub(crate) fn change_condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let if_match = match tag_list(headers, header::IF_MATCH)? {
        TagList::Empty => None,
        TagList::Any => Some(Condition::Present),
        TagList::Tags(tags) => Some(Condition::OneOf(
            tags.into_iter().filter(|tag| !tag.weak).filter_map(|tag| ProfileVersion::parse(tag.opaque)).collect(),
        )),
    };
    let create_only = match tag_list(headers, header::IF_NONE_MATCH)? {
        TagList::Empty => false,
        TagList::Any => true,
        TagList::Tags(_) => return Err(invalid("on a change, `If-None-Match` takes only `*` (create only)")),
    };
    Ok(match (if_match, create_only) {
        (None, false) => Condition::None,
        (None, true) => Condition::Absent,
        (Some(condition), false) => condition,
        // `If-Match` needs a profile, `If-None-Match: *` needs none: no version meets both.
        (Some(_), true) => Condition::OneOf(Vec::new()),
    })
}

/// One entity tag of a list (RFC 9110 §8.8.3): its opaque text between the quotes.
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// What a condition header's lines say together.
enum TagList<'a> {
    /// No header, or only empty ones: no condition.
    Empty,
    /// `*`.
    Any,
    /// One or more entity tags.
    Tags(Vec<EntityTag<'a>>),
}

/// All of a header's lines read as one list (RFC 9110 §5.3), strictly: optional
/// spaces and tabs around the commas, no empty element, and `*` only alone.
fn tag_list(headers: &HeaderMap, name: header::HeaderName) -> Result<TagList<'_>, ApiError> {
    let mut any = false;
    let mut tags = Vec::new();
    for line in headers.get_all(name).iter() {
        let line = line.to_str().map_err(|_| invalid("a condition header is not visible ASCII"))?;
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        if line == "*" {
            any = true;
            continue;
        }
        for element in line.split(',').map(|e| e.trim_matches([' ', '\t'])) {
            tags.push(entity_tag(element).ok_or_else(|| {
                invalid("a condition header holds an element that is not a quoted entity tag (or is empty)")
            })?);
        }
    }
    match (any, tags.is_empty()) {
        (false, true) => Ok(TagList::Empty),
        (true, true) => Ok(TagList::Any),
        (false, false) => Ok(TagList::Tags(tags)),
        (true, false) => Err(invalid("`*` in a condition header stands alone, without entity tags")),
    }
}

/// `element` as an entity tag: `"…"` or `W/"…"` around visible ASCII other than the
/// quote (and the comma, which separates the list's elements).
fn entity_tag(element: &str) -> Option<EntityTag<'_>> {
    let (weak, quoted) = match element.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, element),
    };
    let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
    opaque.bytes().all(|b| b.is_ascii_graphic() && b != b'"').then_some(EntityTag { weak, opaque })
}

/// Whether a read's `If-None-Match` names `etag` (`*`, or a listed tag equal to it
/// under the weak comparison RFC 9110 prescribes for this header): answer 304.
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

fn invalid(message: &'static str) -> ApiError {
    ApiError::invalid_precondition(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    const V: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn if_match_names_versions_strongly() {
        let tag = format!("\"{V}\"");
        assert_eq!(change_condition(&with(&[])).unwrap(), Condition::None);
        assert_eq!(change_condition(&with(&[(header::IF_MATCH, "*")])).unwrap(), Condition::Present);
        assert_eq!(
            change_condition(&with(&[(header::IF_MATCH, &tag)])).unwrap(),
            Condition::OneOf(vec![ProfileVersion::parse(V).unwrap()])
        );
        // Two lines are one list; a weak tag and a foreign tag match nothing.
        let weak = format!("W/{tag}");
        let listed = change_condition(&with(&[(header::IF_MATCH, "\"other\""), (header::IF_MATCH, &weak)])).unwrap();
        assert_eq!(listed, Condition::OneOf(vec![]));
    }

    #[test]
    fn if_none_match_star_creates_only_and_nonsense_is_refused() {
        assert_eq!(change_condition(&with(&[(header::IF_NONE_MATCH, "*")])).unwrap(), Condition::Absent);
        let both = with(&[(header::IF_MATCH, "*"), (header::IF_NONE_MATCH, "*")]);
        assert_eq!(change_condition(&both).unwrap(), Condition::OneOf(vec![]), "both: never met");
        assert_eq!(change_condition(&with(&[(header::IF_MATCH, "")])).unwrap(), Condition::None, "empty: none");
        let refused_cases = [
            with(&[(header::IF_NONE_MATCH, "\"abc\"")]),
            with(&[(header::IF_MATCH, "unquoted")]),
            // A malformed tag is refused even beside a create-only condition.
            with(&[(header::IF_NONE_MATCH, "*"), (header::IF_MATCH, "y8jO")]),
            with(&[(header::IF_MATCH, ",")]),
            with(&[(header::IF_NONE_MATCH, ",")]),
            with(&[(header::IF_MATCH, "\"a\"b\"")]),
            with(&[(header::IF_MATCH, "\"a\", ")]),
            with(&[(header::IF_MATCH, "*, \"a\"")]),
            with(&[(header::IF_MATCH, "*"), (header::IF_MATCH, "\"a\"")]),
        ];
        for refused in refused_cases {
            let error = change_condition(&refused).unwrap_err();
            assert_eq!(error.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn not_modified_uses_weak_comparison_and_lists() {
        let etag = "\"abc\"";
        let inm = |values: &[&str]| with(&values.iter().map(|v| (header::IF_NONE_MATCH, *v)).collect::<Vec<_>>());
        assert!(not_modified(&inm(&["\"abc\""]), etag));
        assert!(not_modified(&inm(&["W/\"abc\""]), etag));
        assert!(not_modified(&inm(&["\"x\", \"abc\""]), etag));
        assert!(not_modified(&inm(&["\"x\"", "\"abc\""]), etag));
        assert!(not_modified(&inm(&["*"]), etag));
        assert!(!not_modified(&inm(&["\"abcd\""]), etag));
        assert!(!not_modified(&inm(&["abc"]), etag));
        assert!(!not_modified(&HeaderMap::new(), etag));
    }
}
