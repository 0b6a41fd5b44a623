//! The stored form of an uploaded photo: without EXIF, XMP, IPTC or comments (GPS
//! above all), with its EXIF orientation applied to the pixels, its ICC profile kept,
//! and under limits on pixels, bytes and frames checked before anything is decoded.
//!
//! Two paths:
//! - **Lossless** (almost every upload): the format's structure is walked, never its
//!   pixels, and the metadata's byte ranges are cut out in place ([`plan`]). The
//!   stored bytes are a subsequence of the upload's, so they fit the buffer the upload
//!   was admitted for, and pixels are untouched.
//! - **Re-encoded** (a still JPEG, PNG or WebP whose EXIF orientation is not 1): the
//!   pixels are decoded under limits, oriented, and encoded again in the same format
//!   with the ICC profile ([`reorient`]); the memory for it is reserved from the
//!   upload budget first, or the upload is refused with 503 `overloaded`.
//!
//! An animated image keeps its pixels as they are (an orientation on an animation is
//! dropped with the EXIF block, not applied). GIF carries no EXIF; its comments and
//! XMP go. With `keep_image_metadata` the walk still runs (the frame limit applies and
//! a broken structure is refused) but the upload is stored as sent.
//!
//! All of it runs on a blocking thread: a walk over 10 MiB, a decode or a hash would
//! otherwise stall the runtime's workers.

use bytes::Bytes;
use image::metadata::Orientation;

use crate::ApiConfig;
use crate::admission::Admission;
use crate::image::{ImageError, ImageFormat};

mod gif;
mod jpeg;
mod plan;
mod png;
mod reorient;
mod webp;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

/// Why a photo was refused while its stored form was made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PhotoError {
    /// The header's format or dimensions (the same checks as at upload).
    #[error(transparent)]
    Header(#[from] ImageError),
    /// The container's structure cannot be walked, so its metadata cannot be found.
    #[error("the {format} image's structure cannot be read to remove its metadata: {why}")]
    Malformed {
        /// The format's media type.
        format: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More frames than allowed (APNG, animated WebP, GIF).
    #[error("the image has {frames} frames, more than the {limit} allowed")]
    TooManyFrames {
        /// Frames counted from the structure.
        frames: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// The pixels did not decode (needed to apply the orientation).
    #[error("the {format} image's pixels could not be decoded to apply its EXIF orientation")]
    Undecodable {
        /// The format's media type.
        format: &'static str,
    },
    /// Decoding or re-encoding would need more memory than its limits allow.
    #[error("applying the {format} image's EXIF orientation would need more memory than its decoding limits allow")]
    DecodingLimit {
        /// The format's media type.
        format: &'static str,
    },
    /// The upload budget has no room for the decoding.
    #[error("the server is decoding as many images as its upload memory allows")]
    Overloaded,
}

/// What [`prepare`] needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// `max-image-pixels`.
    pub(crate) max_pixels: u64,
    /// `max-image-frames`.
    pub(crate) max_frames: u64,
    /// `keep-image-metadata`: store as sent.
    pub(crate) keep_metadata: bool,
}

impl From<&ApiConfig> for Rules {
    fn from(config: &ApiConfig) -> Self {
        Rules {
            max_pixels: config.max_image_pixels,
            max_frames: config.max_image_frames,
            keep_metadata: config.keep_image_metadata,
        }
    }
}

/// The stored form of an upload and its name.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The bytes to store.
    pub(crate) image: Bytes,
    /// The SHA-256 of [`image`](Self::image), lowercase hex.
    pub(crate) sha256: String,
}

/// Makes the stored form of `image` on a blocking thread. Promises: the result holds
/// no EXIF, XMP, IPTC, comment or trailing bytes unless `keep_image_metadata`; nothing
/// is decoded before the pixel and frame limits pass.
pub(crate) async fn prepare(image: Bytes, config: &ApiConfig, admission: &Admission) -> Result<Prepared, PhotoError> {
    let rules = Rules::from(config);
    let admission = admission.clone();
    match tokio::task::spawn_blocking(move || prepare_blocking(image, rules, &admission)).await {
        Ok(result) => result,
        Err(e) => {
            // A parser bug on hostile bytes costs one refused upload, not the server.
            tracing::error!(error = %e, "preparing an image panicked");
            Err(PhotoError::Malformed { format: "uploaded", why: "it could not be processed" })
        }
    }
}

/// [`prepare`], on the calling thread.
pub(crate) fn prepare_blocking(image: Bytes, rules: Rules, admission: &Admission) -> Result<Prepared, PhotoError> {
    let header = crate::image::header(&image, rules.max_pixels)?;
    let format = header.format.content_type();
    let scan = match header.format {
        ImageFormat::Jpeg => jpeg::scan(&image),
        ImageFormat::Png => png::scan(&image),
        ImageFormat::Webp => webp::scan(&image),
        ImageFormat::Gif => gif::scan(&image),
    }
    .map_err(|why| PhotoError::Malformed { format, why })?;
    if scan.frames > rules.max_frames {
        return Err(PhotoError::TooManyFrames { frames: scan.frames, limit: rules.max_frames });
    }
    let stored = if rules.keep_metadata {
        image
    } else if scan.orientation != Orientation::NoTransforms && scan.frames == 1 {
        let oriented = reorient::reorient(&image, header, &scan, admission)?;
        tracing::debug!(format, orientation = ?scan.orientation, sent = image.len(), stored = oriented.len(), "image re-encoded upright");
        Bytes::from(oriented)
    } else {
        scan.plan.apply(image)
    };
    Ok(Prepared { sha256: sha256_hex(&stored), image: stored })
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl PhotoError {
    /// Stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            PhotoError::Header(e) => e.code(),
            PhotoError::Malformed { .. } | PhotoError::Undecodable { .. } => "invalid_image",
            PhotoError::TooManyFrames { .. } => "image_too_many_frames",
            PhotoError::DecodingLimit { .. } => "image_too_many_pixels",
            PhotoError::Overloaded => "overloaded",
        }
    }
}
