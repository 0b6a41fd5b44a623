//! Reading a profile upload: a `multipart/form-data` body with exactly one
//! `metadata` part (a JSON object) and one `image` part.
//!
//! The body is read part by part and each part chunk by chunk; every limit is checked
//! as bytes arrive, so a refused upload costs at most the limit in memory, and an
//! image with the wrong magic bytes is refused after its first few bytes. The image
//! part goes either into a buffer or, for an upload admitted to the spool, into a
//! file on disk (see `spool`), the limits checked alike.

use std::time::Duration;

use axum::extract::multipart::{Field, Multipart, MultipartError};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{Bytes, BytesMut};

use crate::ApiConfig;
use crate::image::{self, ImageError, ImageFormat};
use crate::spool::SpoolFile;

/// The largest metadata part accepted, in bytes.
pub(crate) const MAX_METADATA_SIZE: u64 = 64 * 1024;

/// Room for multipart framing (boundaries, part headers) on top of the two parts.
const FRAMING_ALLOWANCE: u64 = 16 * 1024;

/// How long an upload may take before its average rate is held to the minimum: room
/// for a slow start (TCP's, a phone waking its radio).
const RATE_GRACE: Duration = Duration::from_secs(10);

/// The pace an upload's body must keep: after [`RATE_GRACE`], on average at least
/// `min_rate` bytes per second since the body began.
struct Pace {
    // Transport timing, not a decision about the stores: tokio's clock (which tests
    // can pause), not the Clock seam.
    started: tokio::time::Instant,
    received: u64,
    min_rate: u64,
}

impl Pace {
    fn new(min_rate: u64) -> Self {
        #[allow(clippy::disallowed_methods)]
        let started = tokio::time::Instant::now();
        Pace { started, received: 0, min_rate }
    }

    /// When the next bytes must have arrived to keep the pace; `None` without a minimum.
    fn next_by(&self) -> Option<tokio::time::Instant> {
        (self.min_rate > 0)
            .then(|| self.started + RATE_GRACE + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64))
    }

    /// Waits for `next` within the pace; refuses the upload as too slow otherwise.
    async fn keep<T>(&self, next: impl std::future::Future<Output = T>) -> Result<T, UploadError> {
        match self.next_by() {
            None => Ok(next.await),
            Some(deadline) => tokio::time::timeout_at(deadline, next).await.map_err(|_| UploadError::TooSlow),
        }
    }
}

/// The largest request body a profile upload may have under `config`.
pub(crate) fn body_limit(config: &ApiConfig) -> u64 {
    config.max_image_size.saturating_add(MAX_METADATA_SIZE).saturating_add(FRAMING_ALLOWANCE)
}

/// A validated upload: everything the service needs, nothing it must check again.
#[derive(Debug)]
pub(crate) struct Upload {
    /// The metadata exactly as sent: the text of a JSON object.
    pub(crate) metadata: String,
    /// The image's bytes.
    pub(crate) image: Bytes,
    /// The image's format, recognised from its bytes.
    pub(crate) format: ImageFormat,
}

/// What a body held: its metadata, and its image unless that went to a spool file.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The metadata exactly as sent: the text of a JSON object.
    pub(crate) metadata: String,
    /// The image's bytes and format, or `None` when they were written to the spool
    /// file given to [`read`] (its format is then checked once it is read back).
    pub(crate) image: Option<(Bytes, ImageFormat)>,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UploadError {
    /// The request's `Content-Type` is not `multipart/form-data`.
    #[error("the request body must be multipart/form-data")]
    NotMultipart,
    /// The multipart framing is broken (bad boundary, truncated body, unreadable headers).
    #[error("the multipart body is malformed: {0}")]
    Malformed(&'static str),
    /// The body as a whole is longer than any valid upload can be.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The body limit in bytes.
        limit: u64,
    },
    /// A required part was not sent.
    #[error("the `{0}` part is missing")]
    MissingPart(&'static str),
    /// A part was sent twice.
    #[error("the `{0}` part was sent more than once")]
    DuplicatePart(&'static str),
    /// A part other than `metadata` and `image` was sent (or one without a name).
    #[error("unexpected part: only `metadata` and `image` are accepted")]
    UnknownPart,
    /// The metadata part is larger than allowed.
    #[error("the metadata part is larger than {limit} bytes")]
    MetadataTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The metadata is not JSON at all.
    #[error("the metadata part is not valid JSON: {0}")]
    MetadataNotJson(serde_json::Error),
    /// The metadata is JSON but not an object.
    #[error("the metadata part must be a JSON object")]
    MetadataNotObject,
    /// The image part is larger than allowed.
    #[error("the image part is larger than {limit} bytes")]
    ImageTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The image is not one we accept.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The client did not finish sending the body within the request timeout.
    #[error("the upload did not arrive within the request timeout")]
    TooSlow,
    /// The image could not be written to, or read back from, its spool file (of kind
    /// `StorageFull` when the spool's disk budget is spent).
    #[error("the upload could not be spooled to disk: {0}")]
    Spool(#[source] std::io::Error),
}

impl UploadError {
    /// Stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            UploadError::NotMultipart => "unsupported_media_type",
            UploadError::Malformed(_) => "malformed_multipart",
            UploadError::BodyTooLarge { .. } => "payload_too_large",
            UploadError::MissingPart(_) => "missing_part",
            UploadError::DuplicatePart(_) => "duplicate_part",
            UploadError::UnknownPart => "unknown_part",
            UploadError::MetadataTooLarge { .. } => "metadata_too_large",
            UploadError::MetadataNotJson(_) => "invalid_metadata",
            UploadError::MetadataNotObject => "metadata_not_object",
            UploadError::ImageTooLarge { .. } => "image_too_large",
            UploadError::Image(e) => e.code(),
            UploadError::TooSlow => "request_timeout",
            // The disk budget (or the disk) is full: like a spent memory budget.
            UploadError::Spool(e) if e.kind() == std::io::ErrorKind::StorageFull => "overloaded",
            UploadError::Spool(_) => "internal",
        }
    }
}

/// Checks what can be checked from the headers alone, before any of the body is read:
/// the content type, and a declared `Content-Length` over the body limit. Returns the
/// most bytes the body may hold: its declared length, or the body limit.
pub(crate) fn check_headers(headers: &HeaderMap, config: &ApiConfig) -> Result<u64, UploadError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(UploadError::NotMultipart);
    }
    let limit = body_limit(config);
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(UploadError::BodyTooLarge { limit });
    }
    Ok(declared.unwrap_or(limit))
}

/// Reads and validates the whole upload. Stops at the first refusal without reading
/// the rest of the body.
///
/// `may_hold` is the most the body can hold (its declared length, or the body limit):
/// a part's buffer is allocated once at the smaller of it and the part's limit, so an
/// upload holds no more than it was admitted for (a growing buffer would double).
/// With `spool`, the image part is written to that file instead, and only its first
/// bytes are kept (to refuse what is no image early).
pub(crate) async fn read(
    mut multipart: Multipart,
    config: &ApiConfig,
    may_hold: u64,
    mut spool: Option<&mut SpoolFile>,
) -> Result<Parts, UploadError> {
    let limit = body_limit(config);
    let mut pace = Pace::new(config.min_upload_rate);
    let mut metadata: Option<String> = None;
    let mut image: Option<Option<(Bytes, ImageFormat)>> = None;
    while let Some(mut field) = pace.keep(multipart.next_field()).await?.map_err(|e| multipart_error(&e, limit))? {
        match field.name() {
            Some("metadata") => {
                if metadata.is_some() {
                    return Err(UploadError::DuplicatePart("metadata"));
                }
                let too_large = || UploadError::MetadataTooLarge { limit: MAX_METADATA_SIZE };
                let max = MAX_METADATA_SIZE.min(may_hold);
                let bytes =
                    read_part(&mut field, &mut pace, (MAX_METADATA_SIZE, max), limit, too_large, |_| Ok(())).await?;
                metadata = Some(validate_metadata(&bytes)?);
            }
            Some("image") => {
                if image.is_some() {
                    return Err(UploadError::DuplicatePart("image"));
                }
                let max = config.max_image_size;
                let too_large = || UploadError::ImageTooLarge { limit: max };
                image = Some(match spool.as_deref_mut() {
                    None => {
                        let sizes = (max, max.min(may_hold));
                        let bytes =
                            read_part(&mut field, &mut pace, sizes, limit, too_large, refuse_unrecognised).await?;
                        let format = image::inspect(&bytes, config.max_image_pixels)?;
                        Some((bytes, format))
                    }
                    Some(file) => {
                        spool_part(&mut field, &mut pace, (max, limit), too_large, file).await?;
                        None
                    }
                });
            }
            _ => return Err(UploadError::UnknownPart),
        }
    }
    let metadata = metadata.ok_or(UploadError::MissingPart("metadata"))?;
    let image = image.ok_or(UploadError::MissingPart("image"))?;
    Ok(Parts { metadata, image })
}

/// Refuses an image as soon as enough of it has arrived to see that its magic bytes
/// match no accepted format, instead of reading up to the size limit first.
fn refuse_unrecognised(so_far: &[u8]) -> Result<(), UploadError> {
    if so_far.len() >= ImageFormat::SNIFF_LEN && ImageFormat::sniff(so_far).is_none() {
        return Err(ImageError::Unrecognised.into());
    }
    Ok(())
}

/// Reads one part into a buffer of `capacity` bytes, refusing it with `too_large()`
/// the moment more than `max` bytes have arrived, as too slow when a chunk does not arrive within `pace`, and running
/// `check` on what has arrived after each chunk.
async fn read_part(
    field: &mut Field<'_>,
    pace: &mut Pace,
    (max, capacity): (u64, u64),
    body_limit: u64,
    too_large: impl Fn() -> UploadError,
    check: impl Fn(&[u8]) -> Result<(), UploadError>,
) -> Result<Bytes, UploadError> {
    let mut buf = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = next_chunk(field, pace, (buf.len() as u64, max), body_limit, &too_large).await? {
        buf.extend_from_slice(&chunk);
        check(&buf)?;
    }
    Ok(buf.freeze())
}

/// Writes the image part to `file`, with [`read_part`]'s limits: refused with
/// `too_large()` past `max` bytes, as too slow off the pace, and as no image once its
/// first bytes match no accepted format (only those are kept in memory).
async fn spool_part(
    field: &mut Field<'_>,
    pace: &mut Pace,
    (max, body_limit): (u64, u64),
    too_large: impl Fn() -> UploadError,
    file: &mut SpoolFile,
) -> Result<(), UploadError> {
    let mut head = Vec::with_capacity(ImageFormat::SNIFF_LEN);
    while let Some(chunk) = next_chunk(field, pace, (file.len(), max), body_limit, &too_large).await? {
        let wanted = ImageFormat::SNIFF_LEN.saturating_sub(head.len()).min(chunk.len());
        head.extend_from_slice(&chunk[..wanted]);
        refuse_unrecognised(&head)?;
        file.append(&chunk).await.map_err(UploadError::Spool)?;
    }
    Ok(())
}

/// A part's next chunk, within the pace; refused with `too_large()` when it would take
/// the part from `so_far` bytes past `max`.
async fn next_chunk(
    field: &mut Field<'_>,
    pace: &mut Pace,
    (so_far, max): (u64, u64),
    body_limit: u64,
    too_large: &impl Fn() -> UploadError,
) -> Result<Option<Bytes>, UploadError> {
    let Some(chunk) = pace.keep(field.chunk()).await?.map_err(|e| multipart_error(&e, body_limit))? else {
        return Ok(None);
    };
    pace.received += chunk.len() as u64;
    if so_far.saturating_add(chunk.len() as u64) > max {
        return Err(too_large());
    }
    Ok(Some(chunk))
}

/// The metadata as text, once it is known to be a JSON object. The client's text is
/// kept as sent (key order, number spelling), only checked.
fn validate_metadata(bytes: &[u8]) -> Result<String, UploadError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(UploadError::MetadataNotJson)?;
    if !value.is_object() {
        return Err(UploadError::MetadataNotObject);
    }
    // from_slice only succeeds on UTF-8 input, so this cannot fail; map it anyway
    // rather than trust that with a panic.
    String::from_utf8(bytes.to_vec()).map_err(|_| UploadError::Malformed("the metadata part is not UTF-8"))
}

/// Maps a multipart reading failure: the body limit to 413, everything else to a
/// malformed body (a client that disconnected mid-body lands here too; nobody is left
/// to read the answer).
fn multipart_error(e: &MultipartError, limit: u64) -> UploadError {
    match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => UploadError::BodyTooLarge { limit },
        StatusCode::BAD_REQUEST => {
            tracing::debug!(error = %e.body_text(), "malformed multipart body");
            UploadError::Malformed("the parts or their headers could not be parsed")
        }
        _ => {
            tracing::debug!(error = %e.body_text(), "request body could not be read");
            UploadError::Malformed("the request body could not be read")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(content_type: &str, length: Option<u64>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        if let Some(len) = length {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        h
    }

    #[test]
    fn only_multipart_form_data_is_accepted() {
        let config = ApiConfig::default();
        assert!(check_headers(&headers("multipart/form-data; boundary=x", None), &config).is_ok());
        assert!(check_headers(&headers("Multipart/Form-Data;boundary=x", None), &config).is_ok());
        for other in ["application/json", "image/png", "multipart/mixed; boundary=x", ""] {
            assert!(matches!(check_headers(&headers(other, None), &config), Err(UploadError::NotMultipart)), "{other}");
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let config = ApiConfig { max_image_size: 1000, ..ApiConfig::default() };
        let limit = body_limit(&config);
        let ct = "multipart/form-data; boundary=x";
        assert_eq!(check_headers(&headers(ct, Some(limit)), &config).unwrap(), limit);
        assert_eq!(check_headers(&headers(ct, Some(10)), &config).unwrap(), 10);
        assert_eq!(check_headers(&headers(ct, None), &config).unwrap(), limit, "undeclared: the whole limit");
        assert!(matches!(check_headers(&headers(ct, Some(limit + 1)), &config), Err(UploadError::BodyTooLarge { .. })));
    }

    #[test]
    fn metadata_must_be_a_json_object() {
        assert_eq!(validate_metadata(br#" {"a": [1, 2]} "#).unwrap(), r#" {"a": [1, 2]} "#);
        assert!(matches!(validate_metadata(b"[1]"), Err(UploadError::MetadataNotObject)));
        assert!(matches!(validate_metadata(b"\"s\""), Err(UploadError::MetadataNotObject)));
        assert!(matches!(validate_metadata(b"{nope"), Err(UploadError::MetadataNotJson(_))));
        assert!(matches!(validate_metadata(b"{\"a\":\"\xff\"}"), Err(UploadError::MetadataNotJson(_))));
    }
}
