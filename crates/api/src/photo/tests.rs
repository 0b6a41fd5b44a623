//! The stored form of real images: metadata gone, ICC kept byte for byte, orientation
//! applied to the pixels, still decodable; and the limits refuse before decoding.

use bytes::Bytes;
use image::GenericImageView;

use super::fixtures::*;
use super::*;
use crate::admission::UploadLimits;

fn rules() -> Rules {
    Rules { max_pixels: 1_000_000, max_frames: 10, keep_metadata: false }
}

fn admission() -> Admission {
    Admission::new(UploadLimits::default())
}

fn prepare(bytes: Vec<u8>) -> Result<Prepared, PhotoError> {
    prepare_blocking(Bytes::from(bytes), rules(), &admission())
}

/// Asserts `stored` holds no EXIF, GPS or XMP bytes.
fn assert_no_metadata(stored: &[u8], case: &str) {
    assert!(!contains(stored, GPS_BYTES), "{case}: the GPS latitude survived");
    assert!(!contains(stored, b"GPS"), "{case}: a GPS tag or text survived");
    assert!(!contains(stored, b"xmpmeta"), "{case}: XMP survived");
    assert!(!contains(stored, b"Exif\0\0") && !contains(stored, b"MM\0*"), "{case}: an EXIF block survived");
}

/// Asserts the picture is upright as sent (red left, blue right) or turned a quarter
/// clockwise (red top, blue bottom), judged by the colours at two points.
fn assert_red_then_blue(image: &image::DynamicImage, turned: bool, case: &str) {
    let (w, h) = image.dimensions();
    let (first, second) = if turned { ((w / 2, 1), (w / 2, h - 2)) } else { ((1, h / 2), (w - 2, h / 2)) };
    let [r, _, b, _] = image.get_pixel(first.0, first.1).0;
    assert!(r > 150 && b < 100, "{case}: red expected at {first:?}, got {r} red {b} blue");
    let [r, _, b, _] = image.get_pixel(second.0, second.1).0;
    assert!(b > 150 && r < 100, "{case}: blue expected at {second:?}, got {r} red {b} blue");
}

#[test]
fn an_upright_jpeg_loses_its_metadata_losslessly_and_keeps_its_icc_profile() {
    let sent = jpeg_with_metadata(1);
    let stored = prepare(sent.clone()).unwrap();
    assert_no_metadata(&stored.image, "jpeg");
    assert!(!contains(&stored.image, b"Photoshop") && !contains(&stored.image, b"taken at home"), "IPTC or comment");
    assert!(contains(&stored.image, &icc_profile()), "the ICC profile is kept byte for byte");
    assert!(stored.image.len() < sent.len());
    // Lossless: the entropy-coded data, and so every pixel, is the upload's.
    assert!(contains(&sent, &stored.image[stored.image.len() - 200..]));
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
    assert_red_then_blue(&image, false, "jpeg");
    assert_eq!(stored.sha256, sha256_hex(&stored.image));
}

#[test]
fn a_jpeg_with_orientation_6_is_turned_upright_and_re_encoded_with_its_icc_profile() {
    let stored = prepare(jpeg_with_metadata(6)).unwrap();
    assert_no_metadata(&stored.image, "jpeg, orientation 6");
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (HEIGHT, WIDTH), "width and height swapped");
    assert_red_then_blue(&image, true, "jpeg, orientation 6");
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&stored.image[..])).unwrap();
    assert_eq!(image::ImageDecoder::icc_profile(&mut decoder).unwrap(), Some(icc_profile()));
}

#[test]
fn a_png_loses_text_xmp_exif_and_time_and_keeps_its_colour_chunks() {
    let sent = png_with_metadata(1);
    let stored = prepare(sent).unwrap();
    assert_no_metadata(&stored.image, "png");
    for kind in [b"tEXt", b"iTXt", b"eXIf", b"tIME"] {
        assert!(!contains(&stored.image, kind), "{}", String::from_utf8_lossy(kind));
    }
    assert!(contains(&stored.image, &iccp_chunk()), "iCCP kept byte for byte");
    assert!(contains(&stored.image, b"gAMA"));
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
    assert_red_then_blue(&image, false, "png");
}

#[test]
fn a_png_with_orientation_6_is_re_encoded_upright_with_its_colour_chunks() {
    let stored = prepare(png_with_metadata(6)).unwrap();
    assert_no_metadata(&stored.image, "png, orientation 6");
    assert!(contains(&stored.image, &iccp_chunk()), "iCCP carried over byte for byte");
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (HEIGHT, WIDTH));
    assert_red_then_blue(&image, true, "png, orientation 6");
}

#[test]
fn a_webp_loses_exif_and_xmp_chunks_and_flags_and_keeps_iccp() {
    let stored = prepare(webp_with_metadata(1)).unwrap();
    assert_no_metadata(&stored.image, "webp");
    assert!(!contains(&stored.image, b"EXIF") && !contains(&stored.image, b"XMP "));
    assert!(contains(&stored.image, &riff_chunk(b"ICCP", &icc_profile())), "ICCP kept byte for byte");
    assert_eq!(stored.image[20], 0x20, "VP8X: only the ICC flag left");
    let riff_size = u32::from_le_bytes(stored.image[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff_size + 8, stored.image.len());
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
    assert_red_then_blue(&image, false, "webp");
}

#[test]
fn a_webp_with_orientation_6_is_re_encoded_upright_with_its_icc_profile() {
    let stored = prepare(webp_with_metadata(6)).unwrap();
    assert_no_metadata(&stored.image, "webp, orientation 6");
    assert!(contains(&stored.image, &icc_profile()));
    let image = decode(&stored.image);
    assert_eq!(image.dimensions(), (HEIGHT, WIDTH));
    assert_red_then_blue(&image, true, "webp, orientation 6");
}

#[test]
fn a_gif_loses_comments_and_xmp() {
    let (sent, expected) = gif(2);
    assert_eq!(prepare(sent).unwrap().image, expected);
}

#[test]
fn with_the_opt_out_the_upload_is_stored_as_sent() {
    let sent = jpeg_with_metadata(6);
    let keep = Rules { keep_metadata: true, ..rules() };
    let stored = prepare_blocking(Bytes::from(sent.clone()), keep, &admission()).unwrap();
    assert_eq!(stored.image, sent);
    assert_eq!(stored.sha256, sha256_hex(&sent));
}

/// A PNG declaring `width` × `height` with an `eXIf` orientation of 6: it would be
/// decoded if it passed the limits.
fn bomb(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    // One row of zeros, compressed: a tiny file whatever it declares.
    let idat = [0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01];
    let chunks = [png_chunk(b"IHDR", &ihdr), png_chunk(b"eXIf", &exif_tiff(6)), png_chunk(b"IDAT", &idat)];
    [b"\x89PNG\r\n\x1a\n".to_vec(), chunks.concat(), png_chunk(b"IEND", b"")].concat()
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header_before_any_decoding() {
    let bomb = bomb(50_000, 50_000);
    assert!(bomb.len() < 200);
    // An empty upload budget: a decode would be refused as overloaded, so a refusal
    // for its pixels proves the decision came before any decoding was attempted.
    let spent = Admission::new(UploadLimits { max_concurrent: 1, max_bytes_in_flight: 1024 });
    let _all = spent.reserve(1024).unwrap();
    let refused = prepare_blocking(Bytes::from(bomb), rules(), &spent).unwrap_err();
    assert!(matches!(refused, PhotoError::Header(ImageError::TooManyPixels { .. })), "{refused:?}");
    assert_eq!(refused.code(), "image_too_many_pixels");
    // Within the pixel limit, the same file reaches the decoder, which needs the budget.
    let small = prepare_blocking(Bytes::from(self::bomb(100, 100)), rules(), &spent).unwrap_err();
    assert!(matches!(small, PhotoError::Overloaded), "{small:?}");
}

#[test]
fn too_many_frames_are_refused_from_the_structure() {
    let (gif, _) = gif(11);
    let refused = prepare(gif).unwrap_err();
    assert!(matches!(refused, PhotoError::TooManyFrames { frames: 11, limit: 10 }), "{refused:?}");
    // An APNG declaring a million frames in its acTL, holding none of them.
    let mut apng = bomb(10, 10);
    let actl = png_chunk(b"acTL", &[0, 0x0f, 0x42, 0x40, 0, 0, 0, 0]);
    apng.splice(super::png::AFTER_IHDR..super::png::AFTER_IHDR, actl);
    let refused = prepare(apng).unwrap_err();
    assert!(matches!(refused, PhotoError::TooManyFrames { frames: 1_000_000, .. }), "{refused:?}");
    assert_eq!(refused.code(), "image_too_many_frames");
}

#[test]
fn pixels_that_do_not_decode_are_refused_as_invalid() {
    let mut broken = png_with_metadata(6);
    let idat = broken.windows(4).position(|w| w == b"IDAT").unwrap();
    broken[idat + 4..idat + 12].fill(0xff);
    let refused = prepare(broken).unwrap_err();
    assert_eq!(refused.code(), "invalid_image", "{refused:?}");
}
