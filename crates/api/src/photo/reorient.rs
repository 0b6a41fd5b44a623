//! Applying an EXIF orientation to the pixels: decode under limits, rotate or flip,
//! encode again in the same format with the colour profile, and no metadata.
//!
//! The only path here that decodes. Every bound is known before the first pixel is:
//! the header's dimensions (already under `max-image-pixels`), the decoder's
//! announced output size, the memory reserved for it from the upload budget, and a
//! cap on the encoded output.

use std::io::{Cursor, Write};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits};

use super::PhotoError;
use super::plan::Scan;
use crate::admission::Admission;
use crate::image::{Header, ImageFormat};

/// The quality of a re-encoded JPEG: high, because the photo was lossy already and
/// every generation loses more.
pub(super) const JPEG_QUALITY: u8 = 90;

/// The most bytes per pixel any decoder here produces (16-bit RGBA): the bound on the
/// decoded size before the decoder is asked.
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// Room for a decoder's own tables and an encoder's framing beyond the pixels.
const SLACK: u64 = 16 << 20;

/// `header`'s image with `scan.orientation` applied, encoded again. Reserves, from
/// `admission`'s byte budget, three times the decoded size (the decoded pixels, their
/// oriented copy, the encoded output) before decoding, and holds it until done.
pub(super) fn reorient(
    bytes: &[u8],
    header: Header,
    scan: &Scan,
    admission: &Admission,
) -> Result<Vec<u8>, PhotoError> {
    let media = header.format.content_type();
    let invalid = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => PhotoError::DecodingLimit { format: media },
        other => {
            tracing::debug!(format = media, error = %other, "an image did not decode");
            PhotoError::Undecodable { format: media }
        }
    };
    let format = match header.format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        // No EXIF in GIF: never asked.
        ImageFormat::Gif => return Err(PhotoError::Undecodable { format: media }),
    };
    let mut limits = Limits::default();
    // The decoder must agree with the header the pixel limit was checked on.
    limits.max_image_width = u32::try_from(header.width).ok();
    limits.max_image_height = u32::try_from(header.height).ok();
    limits.max_alloc = Some((header.width * header.height).saturating_mul(MAX_BYTES_PER_PIXEL).saturating_add(SLACK));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(invalid)?;
    let decoded = decoder.total_bytes();
    let _reserved = admission.reserve(decoded.saturating_mul(3)).ok_or(PhotoError::Overloaded)?;
    let icc = decoder.icc_profile().ok().flatten();
    let mut pixels = DynamicImage::from_decoder(decoder).map_err(invalid)?;
    pixels.apply_orientation(scan.orientation);
    let cap = usize::try_from(decoded.saturating_add(SLACK)).unwrap_or(usize::MAX);
    let mut out = Capped { out: Vec::new(), cap };
    let encoded = match header.format {
        ImageFormat::Jpeg => {
            let mut encoder = JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            with_icc(&mut encoder, icc);
            pixels.write_with_encoder(encoder)
        }
        // PNG's colour chunks are carried over verbatim below, ICC among them.
        ImageFormat::Png => pixels.write_with_encoder(PngEncoder::new(&mut out)),
        _ => {
            let mut encoder = WebPEncoder::new_lossless(&mut out);
            with_icc(&mut encoder, icc);
            pixels.write_with_encoder(encoder)
        }
    };
    drop(pixels);
    encoded.map_err(|e| match e {
        image::ImageError::IoError(_) => PhotoError::DecodingLimit { format: media },
        other => {
            tracing::error!(format = media, error = %other, "an oriented image did not encode");
            PhotoError::Undecodable { format: media }
        }
    })?;
    let mut out = out.out;
    if header.format == ImageFormat::Png {
        let colour: Vec<u8> = scan.colour.iter().flat_map(|r| &bytes[r.clone()]).copied().collect();
        out.splice(super::png::AFTER_IHDR..super::png::AFTER_IHDR, colour);
    }
    Ok(out)
}

/// Gives `encoder` the ICC profile, if there is one. Both encoders used here take one.
fn with_icc(encoder: &mut impl ImageEncoder, icc: Option<Vec<u8>>) {
    if let Some(icc) = icc
        && let Err(e) = encoder.set_icc_profile(icc)
    {
        tracing::warn!(error = %e, "the encoder refused the ICC profile");
    }
}

/// A buffer that refuses to grow past `cap`: an encoder's output is bounded by what
/// was reserved for it, whatever the pixels compress to.
struct Capped {
    out: Vec<u8>,
    cap: usize,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.cap {
            return Err(std::io::Error::other("the encoded image is larger than its reservation"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
