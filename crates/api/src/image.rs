//! Recognising an uploaded image by its magic bytes and reading its dimensions from
//! its header. Nothing here decodes pixels.
//!
//! Why magic bytes and not the declared `Content-Type` or file name: both are the
//! client's claim, and the type we store is served back to browsers; a claim of
//! `image/png` on an HTML file would otherwise become stored script.

/// The image formats the API accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageFormat {
    Png,
    Jpeg,
    Gif,
    Webp,
}

impl ImageFormat {
    /// How many leading bytes [`sniff`](Self::sniff) needs to recognise every format.
    pub(crate) const SNIFF_LEN: usize = 12;

    /// The format whose magic bytes `bytes` starts with, or `None`.
    pub(crate) fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(b"\xff\xd8\xff") {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageFormat::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(ImageFormat::Webp)
        } else {
            None
        }
    }

    /// The media type of this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Webp => "image/webp",
        }
    }

    fn imagesize_type(self) -> imagesize::ImageType {
        match self {
            ImageFormat::Png => imagesize::ImageType::Png,
            ImageFormat::Jpeg => imagesize::ImageType::Jpeg,
            ImageFormat::Gif => imagesize::ImageType::Gif,
            ImageFormat::Webp => imagesize::ImageType::Webp,
        }
    }
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ImageError {
    /// The bytes start with none of the accepted formats' magic bytes.
    #[error("the image is not a PNG, JPEG, GIF or WebP (recognised by its content, not its declared type)")]
    Unrecognised,
    /// The magic bytes match but the header does not yield usable dimensions.
    #[error("the {format} image's header is unreadable or declares no pixels")]
    Unreadable {
        /// The format's media type.
        format: &'static str,
    },
    /// The header declares more pixels than allowed.
    #[error("the image is {width}x{height} pixels, more than the {limit} allowed")]
    TooManyPixels {
        /// Declared width.
        width: u64,
        /// Declared height.
        height: u64,
        /// The configured maximum pixel count.
        limit: u64,
    },
}

impl ImageError {
    /// Stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ImageError::Unrecognised => "unsupported_image",
            ImageError::Unreadable { .. } => "invalid_image",
            ImageError::TooManyPixels { .. } => "image_too_many_pixels",
        }
    }
}

/// What an image's header declares: its format and its dimensions (both non-zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The format, recognised by its magic bytes.
    pub(crate) format: ImageFormat,
    /// Declared width in pixels.
    pub(crate) width: u64,
    /// Declared height in pixels.
    pub(crate) height: u64,
}

/// Checks a complete uploaded image: its format by magic bytes, then its dimensions
/// from the header, refusing more than `max_pixels`. Returns the format.
pub(crate) fn inspect(bytes: &[u8], max_pixels: u64) -> Result<ImageFormat, ImageError> {
    header(bytes, max_pixels).map(|h| h.format)
}

/// Like [`inspect`], returning the dimensions too: what the limits on decoding are
/// computed from, before any pixel is decoded.
pub(crate) fn header(bytes: &[u8], max_pixels: u64) -> Result<Header, ImageError> {
    let format = ImageFormat::sniff(bytes).ok_or(ImageError::Unrecognised)?;
    let unreadable = ImageError::Unreadable { format: format.content_type() };
    // imagesize detects the format again before reading the header; it must agree with
    // ours, or it would read the dimensions of some other format's header.
    match imagesize::image_type(bytes) {
        Ok(t) if t == format.imagesize_type() => {}
        _ => return Err(unreadable),
    }
    // The header parser walks client-supplied bytes; a bug in it must cost one refused
    // upload, not the connection's task.
    let size = std::panic::catch_unwind(|| imagesize::blob_size(bytes))
        .map_err(|_| unreadable.clone())?
        .map_err(|_| unreadable.clone())?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 {
        return Err(unreadable);
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(ImageError::TooManyPixels { width, height, limit: max_pixels });
    }
    Ok(Header { format, width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0]);
        b
    }

    #[test]
    fn each_format_is_recognised_by_its_magic_bytes() {
        assert_eq!(ImageFormat::sniff(&png(1, 1)), Some(ImageFormat::Png));
        assert_eq!(ImageFormat::sniff(b"\xff\xd8\xff\xe0"), Some(ImageFormat::Jpeg));
        assert_eq!(ImageFormat::sniff(b"GIF89a\x01\x00\x01\x00"), Some(ImageFormat::Gif));
        assert_eq!(ImageFormat::sniff(b"RIFF\x00\x00\x00\x00WEBPVP8X"), Some(ImageFormat::Webp));
        assert_eq!(ImageFormat::sniff(b"<html><script>"), None);
        assert_eq!(ImageFormat::sniff(b"RIFF\x00\x00\x00\x00WAVE"), None);
        assert_eq!(ImageFormat::sniff(b""), None);
    }

    #[test]
    fn pixels_are_counted_from_the_header() {
        assert_eq!(inspect(&png(100, 100), 10_000), Ok(ImageFormat::Png));
        assert_eq!(
            inspect(&png(100, 101), 10_000),
            Err(ImageError::TooManyPixels { width: 100, height: 101, limit: 10_000 })
        );
        // Would overflow u32 arithmetic; must still be refused, not wrap.
        assert!(matches!(inspect(&png(u32::MAX, u32::MAX), 10), Err(ImageError::TooManyPixels { .. })));
    }

    #[test]
    fn every_accepted_format_yields_dimensions() {
        let mut webp = b"RIFF\x16\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x00\x00\x00\x00".to_vec();
        webp.extend_from_slice(&[99, 0, 0, 99, 0, 0]);
        assert_eq!(inspect(&webp, 10_000), Ok(ImageFormat::Webp));
        assert!(matches!(inspect(&webp, 9_999), Err(ImageError::TooManyPixels { width: 100, height: 100, .. })));
        let gif = b"GIF89a\x02\x00\x03\x00\x00\x00\x00;";
        assert!(matches!(inspect(gif, 5), Err(ImageError::TooManyPixels { width: 2, height: 3, .. })));
        let jpeg = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x03\x00\x02\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9";
        assert!(matches!(inspect(jpeg, 5), Err(ImageError::TooManyPixels { width: 2, height: 3, .. })));
        assert_eq!(inspect(jpeg, 6), Ok(ImageFormat::Jpeg));
    }

    #[test]
    fn truncated_or_empty_headers_are_unreadable() {
        assert_eq!(inspect(&png(1, 1)[..14], 10).map_err(|e| e.code()), Err("invalid_image"));
        assert_eq!(inspect(&png(0, 5), 10).map_err(|e| e.code()), Err("invalid_image"));
        assert_eq!(
            inspect(b"\xff\xd8\xff\xd9\x00\x00\x00\x00\x00\x00\x00\x00", 10).map_err(|e| e.code()),
            Err("invalid_image")
        );
        assert_eq!(inspect(b"plain text, not an image", 10).map_err(|e| e.code()), Err("unsupported_image"));
    }
}
