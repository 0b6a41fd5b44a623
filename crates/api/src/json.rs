//! The JSON bodies of successful answers.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use profilestore_core::ids::ImageId;
use profilestore_core::store::Record;

use crate::error::ApiError;

/// The path at which an image's immutable bytes are served.
pub(crate) fn image_url(image_id: ImageId) -> String {
    format!("/v1/images/{image_id}")
}

/// A profile as `PUT` and `GET /v1/profiles/{user_id}` answer it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ProfileBody {
    /// The user's id.
    #[schema(example = "alice")]
    user_id: String,
    /// The stored metadata as a JSON object, not as a string holding one.
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// The id of the image this write stored (a UUIDv7), new with every write.
    #[schema(value_type = String, format = "uuid")]
    image_id: ImageId,
    /// Where the image's immutable bytes can be fetched (`/v1/images/{image_id}`).
    image_url: String,
    /// The image's media type, recognised from its bytes at upload.
    #[schema(example = "image/png")]
    content_type: String,
    /// The stored image's size in bytes: after its metadata was removed, not as sent.
    image_size: u64,
    /// The SHA-256 of the stored image's bytes (lowercase hex): what every read of the
    /// image returns, which may differ from what was sent (metadata removed,
    /// orientation applied). Absent from a `PATCH`'s answer, which changes metadata
    /// only (a read names it).
    #[schema(example = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", pattern = "^[0-9a-f]{64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    image_sha256: Option<String>,
    /// When the profile was written: RFC 3339, UTC, millisecond precision.
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A read's answer: the profile and, last, its image.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ProfileWithImage {
    #[serde(flatten)]
    profile: ProfileBody,
    /// The image's bytes in standard base64 (with padding).
    #[schema(content_encoding = "base64")]
    image: String,
}

/// The upload of `PUT /v1/profiles/{user_id}`: a `multipart/form-data` body with
/// exactly these two parts.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // Describes what `upload::read` parses; never built.
pub(crate) struct UploadForm {
    /// The profile's metadata: a JSON object of at most 64 KiB.
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
    /// The image: PNG, JPEG, GIF or WebP, recognised by its bytes, at most
    /// `max-image-size` bytes, `max-image-pixels` pixels and `max-image-frames` frames.
    /// Stored without its metadata, upright (see the `PUT`).
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    image: Vec<u8>,
}

impl ProfileBody {
    /// The body for `record`, whose image's SHA-256 is `image_sha256`, without its
    /// image (a `PUT`'s answer; a read's answer is [`profile_response`], which adds it).
    ///
    /// Fails only when the stored metadata is not JSON, which the API never stores:
    /// that is corrupt data, logged and answered as an internal error.
    pub(crate) fn new(record: &Record, image_sha256: Option<String>) -> Result<Self, ApiError> {
        let metadata = serde_json::from_str(&record.metadata).map_err(|e| {
            tracing::error!(user = %record.user_id, error = %e, "stored metadata is not valid JSON");
            ApiError::internal()
        })?;
        Ok(ProfileBody {
            user_id: record.user_id.to_string(),
            metadata,
            image_id: record.image_id,
            image_url: image_url(record.image_id),
            content_type: record.content_type.clone(),
            image_size: record.image_size,
            image_sha256,
            updated_at: record.updated_at.to_rfc3339(),
        })
    }
}

/// Image bytes encoded per piece of a streamed answer: a multiple of 3, so only the
/// last piece carries base64 padding.
const IMAGE_PIECE: usize = 48 * 1024;

/// A read's answer: `record`'s body with `"image"`, its bytes in standard base64, as
/// the last member. An image larger than one piece is written as a stream, so that the
/// answer holds the image once plus one encoded piece, never the whole base64 text or
/// a second copy of the JSON; a smaller one is encoded into a single buffer, one
/// allocation and one write.
///
/// The length is known in advance and sent as `Content-Length`.
pub(crate) fn profile_response(record: &Record, image: Bytes) -> Result<Response, ApiError> {
    // Hashed from the bytes read, so the read names what it answers.
    let body = ProfileBody::new(record, Some(crate::photo::sha256_hex(&image)))?;
    const TAIL: &[u8] = br#""}"#;
    let encoded_len = image.len().div_ceil(3) * 4;
    let whole = image.len() <= IMAGE_PIECE;
    // The members other than the metadata take well under 512 bytes.
    let mut head = Vec::with_capacity(512 + record.metadata.len() + if whole { encoded_len + TAIL.len() } else { 0 });
    serde_json::to_writer(&mut head, &body).map_err(|e| {
        tracing::error!(user = %record.user_id, error = %e, "a profile did not serialise");
        ApiError::internal()
    })?;
    // The serialised object ends with its closing brace; the image goes before it.
    head.pop();
    head.extend_from_slice(br#","image":""#);
    let length = head.len() + encoded_len + TAIL.len();
    let body = if whole {
        let start = head.len();
        head.resize(start + encoded_len, 0);
        base64::engine::general_purpose::STANDARD.encode_slice(&image, &mut head[start..]).map_err(|e| {
            tracing::error!(user = %record.user_id, error = %e, "a profile's image did not encode");
            ApiError::internal()
        })?;
        head.extend_from_slice(TAIL);
        Body::from(head)
    } else {
        let pieces = (0..image.len().div_ceil(IMAGE_PIECE)).map(move |n| {
            let piece = &image[n * IMAGE_PIECE..image.len().min((n + 1) * IMAGE_PIECE)];
            Bytes::from(base64::engine::general_purpose::STANDARD.encode(piece))
        });
        let parts = std::iter::once(Bytes::from(head)).chain(pieces).chain(std::iter::once(Bytes::from_static(TAIL)));
        Body::from_stream(futures::stream::iter(parts.map(Ok::<_, std::convert::Infallible>)))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

/// `{"status": "..."}`, the body of the health and readiness probes.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct StatusBody {
    /// `ok` for liveness, `ready` for readiness.
    #[schema(value_type = String)]
    pub(crate) status: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::ids::UserId;
    use profilestore_core::time::Timestamp;

    fn record() -> Record {
        Record {
            user_id: UserId::parse("alice").unwrap(),
            metadata: r#"{"name":"Alice \"A\"","tags":[1,2]}"#.into(),
            image_id: "01900000-0000-7000-8000-000000000001".parse().unwrap(),
            content_type: "image/png".into(),
            image_size: 0,
            updated_at: Timestamp::from_millis(1_700_000_000_123),
        }
    }

    #[tokio::test]
    async fn the_profile_answer_is_the_json_of_the_whole_profile_at_every_size() {
        // Up to one piece the image is encoded whole, above it the answer is streamed.
        let record = record();
        for size in [0, 1, 2, 3, 4, IMAGE_PIECE - 1, IMAGE_PIECE, IMAGE_PIECE + 1, 3 * IMAGE_PIECE + 2] {
            let image: Vec<u8> = (0..size).map(|n| (n * 7 + n / 251) as u8).collect();
            let response = profile_response(&record, Bytes::from(image.clone())).unwrap();
            let length: usize = response.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            assert_eq!(body.len(), length, "Content-Length at {size} bytes");
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            // The documented shape of the answer, built directly.
            let whole = ProfileWithImage {
                profile: ProfileBody::new(&record, Some(crate::photo::sha256_hex(&image))).unwrap(),
                image: base64::engine::general_purpose::STANDARD.encode(&image),
            };
            let expected = serde_json::to_value(whole).unwrap();
            assert_eq!(got, expected, "at {size} bytes");
        }
    }
}
