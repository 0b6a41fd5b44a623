//! The JSON bodies of successful answers.

use base64::Engine as _;
use profilestore_core::ids::ImageId;
use profilestore_core::store::Record;

use crate::error::ApiError;

/// The path at which an image's immutable bytes are served.
pub(crate) fn image_url(image_id: ImageId) -> String {
    format!("/v1/images/{image_id}")
}

/// A profile as `PUT` and `GET /v1/profiles/{user_id}` answer it.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ProfileBody {
    user_id: String,
    /// The stored metadata as a JSON object, not as a string holding one.
    metadata: serde_json::Value,
    image_id: ImageId,
    /// Where the image's immutable bytes can be fetched: changes with every write.
    image_url: String,
    content_type: String,
    image_size: u64,
    /// RFC 3339, UTC, millisecond precision.
    updated_at: String,
    /// The image in standard base64; only on reads, which answer metadata and image
    /// together.
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

impl ProfileBody {
    /// The body for `record`, with `image` (its bytes) embedded when given.
    ///
    /// Fails only when the stored metadata is not JSON, which the API never stores:
    /// that is corrupt data, logged and answered as an internal error.
    pub(crate) fn new(record: &Record, image: Option<&[u8]>) -> Result<Self, ApiError> {
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
            updated_at: record.updated_at.to_rfc3339(),
            image: image.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        })
    }
}

/// `{"status": "..."}`, the body of the health and readiness probes.
#[derive(Debug, serde::Serialize)]
pub(crate) struct StatusBody {
    /// `ok` for liveness, `ready` for readiness.
    pub(crate) status: &'static str,
}
