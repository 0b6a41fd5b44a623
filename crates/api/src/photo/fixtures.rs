//! Real images built in the tests: encoded by the `image` crate, then given the
//! metadata a phone or an editor writes (EXIF with GPS and an orientation, XMP, IPTC,
//! text chunks, an ICC profile), by hand, byte by byte.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ImageEncoder, ImageReader, RgbImage};

/// Width and height of the test picture: wider than tall, left half red, right half
/// blue, so a rotation shows in both the dimensions and the pixels.
pub(super) const WIDTH: u32 = 16;
pub(super) const HEIGHT: u32 = 8;

/// GPS latitude 48° 51′ as EXIF rationals: bytes that must not survive.
pub(super) const GPS_BYTES: &[u8] = &[0, 0, 0, 48, 0, 0, 0, 1, 0, 0, 0, 51, 0, 0, 0, 1];
/// What XMP blocks in the fixtures say: must not survive either.
pub(super) const XMP: &[u8] = b"<x:xmpmeta><exif:GPSLatitude>48,51.49N</exif:GPSLatitude></x:xmpmeta>";
/// A stand-in ICC profile: its bytes must survive unchanged.
pub(super) fn icc_profile() -> Vec<u8> {
    let mut icc = b"ICC profile stand-in ".to_vec();
    icc.extend((0..300u32).map(|n| (n * 7 % 251) as u8));
    icc
}

/// The test picture.
pub(super) fn picture() -> RgbImage {
    RgbImage::from_fn(WIDTH, HEIGHT, |x, _| if x < WIDTH / 2 { [220, 20, 20].into() } else { [20, 20, 220].into() })
}

/// A big-endian TIFF (EXIF) structure: IFD0 with `Orientation` = `orientation` and a
/// pointer to a GPS IFD with a latitude.
pub(super) fn exif_tiff(orientation: u16) -> Vec<u8> {
    let mut t = b"MM\0*\0\0\0\x08".to_vec();
    // IFD0: two entries, then the next IFD's offset (none). The GPS IFD follows at 38.
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    t.extend_from_slice(&orientation.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
    t.extend_from_slice(&[0; 4]);
    // GPS IFD: LatitudeRef "N", Latitude (three rationals at 68).
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    t.extend_from_slice(&[0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 68]);
    t.extend_from_slice(&[0; 4]);
    t.extend_from_slice(GPS_BYTES);
    t.extend_from_slice(&[0, 0, 0x0b, 0x8e, 0, 0, 0, 100]);
    t
}

/// A JPEG segment.
fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xff, marker];
    s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// The test picture as a JPEG with EXIF (GPS, `orientation`), XMP, IPTC, a comment and
/// an ICC profile, as a phone and an editor leave it.
pub(super) fn jpeg_with_metadata(orientation: u16) -> Vec<u8> {
    let mut plain = Vec::new();
    JpegEncoder::new_with_quality(&mut plain, 95)
        .write_image(picture().as_raw(), WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .unwrap();
    let mut file = plain[..2].to_vec();
    file.extend(segment(0xe1, &[b"Exif\0\0".as_slice(), &exif_tiff(orientation)].concat()));
    file.extend(segment(0xe1, &[b"http://ns.adobe.com/xap/1.0/\0".as_slice(), XMP].concat()));
    file.extend(segment(0xe2, &[b"ICC_PROFILE\0\x01\x01".as_slice(), &icc_profile()].concat()));
    file.extend(segment(0xed, b"Photoshop 3.0\x008BIM\x04\x04\0\0\0\0\0\x0aGPS Paris"));
    file.extend(segment(0xfe, b"taken at home"));
    file.extend_from_slice(&plain[2..]);
    file
}

/// CRC-32 as PNG computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG chunk with its length and CRC.
pub(super) fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&crc32(&c[4..]).to_be_bytes());
    c
}

/// `data` as a zlib stream of one stored (uncompressed) block.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(data);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + byte as u32) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    z
}

/// The `iCCP` chunk of [`icc_profile`].
pub(super) fn iccp_chunk() -> Vec<u8> {
    png_chunk(b"iCCP", &[b"test\0\0".as_slice(), &zlib_stored(&icc_profile())].concat())
}

/// The test picture as a PNG with `iCCP`, `tEXt`, XMP in `iTXt`, `eXIf` (GPS,
/// `orientation`) and `tIME`.
pub(super) fn png_with_metadata(orientation: u16) -> Vec<u8> {
    let mut plain = Vec::new();
    PngEncoder::new(&mut plain).write_image(picture().as_raw(), WIDTH, HEIGHT, image::ExtendedColorType::Rgb8).unwrap();
    let after_ihdr = super::png::AFTER_IHDR;
    let mut file = plain[..after_ihdr].to_vec();
    file.extend(iccp_chunk());
    file.extend(png_chunk(b"gAMA", &45455u32.to_be_bytes()));
    file.extend(png_chunk(b"tEXt", b"Comment\0GPS Paris"));
    file.extend(png_chunk(b"iTXt", &[b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), XMP].concat()));
    file.extend(png_chunk(b"eXIf", &exif_tiff(orientation)));
    file.extend(png_chunk(b"tIME", &[7, 0xe8, 1, 2, 3, 4, 5]));
    file.extend_from_slice(&plain[after_ihdr..]);
    file
}

/// A RIFF chunk, padded to an even size.
pub(super) fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = kind.to_vec();
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// A WebP file around `chunks`.
pub(super) fn riff(chunks: &[u8]) -> Vec<u8> {
    let mut f = b"RIFF".to_vec();
    f.extend_from_slice(&(chunks.len() as u32 + 4).to_le_bytes());
    f.extend_from_slice(b"WEBP");
    f.extend_from_slice(chunks);
    f
}

/// The test picture as an extended WebP with `ICCP`, `EXIF` (GPS, `orientation`) and
/// `XMP ` chunks, flagged in its `VP8X`.
pub(super) fn webp_with_metadata(orientation: u16) -> Vec<u8> {
    let mut simple = Vec::new();
    WebPEncoder::new_lossless(&mut simple)
        .write_image(picture().as_raw(), WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .unwrap();
    // The simple file is RIFF, size, WEBP, then its one VP8L chunk.
    let vp8l = &simple[12..];
    let mut vp8x = vec![0x20 | 0x08 | 0x04, 0, 0, 0];
    vp8x.extend_from_slice(&(WIDTH - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(HEIGHT - 1).to_le_bytes()[..3]);
    let chunks = [
        riff_chunk(b"VP8X", &vp8x),
        riff_chunk(b"ICCP", &icc_profile()),
        vp8l.to_vec(),
        riff_chunk(b"EXIF", &exif_tiff(orientation)),
        riff_chunk(b"XMP ", XMP),
    ];
    riff(&chunks.concat())
}

/// A GIF of `frames` 1×1 frames with a loop count, a comment and an XMP block, and
/// what it must become: the same without the comment, the XMP and the trailing bytes.
pub(super) fn gif(frames: usize) -> (Vec<u8>, Vec<u8>) {
    let head = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    let looping = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00".to_vec();
    let comment = b"\x21\xfe\x09GPS Paris\x00".to_vec();
    let xmp = [b"\x21\xff\x0bXMP DataXMP\x10".as_slice(), &XMP[..16], b"\x00"].concat();
    let frame =
        b"\x21\xf9\x04\x00\x0a\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00".to_vec();
    let frames = frame.repeat(frames);
    let sent = [head.clone(), looping.clone(), comment, xmp, frames.clone(), b";junk".to_vec()].concat();
    (sent, [head, looping, frames, b";".to_vec()].concat())
}

/// Decodes `bytes` with the `image` crate: the proof that a stored form is an image.
pub(super) fn decode(bytes: &[u8]) -> image::DynamicImage {
    ImageReader::new(Cursor::new(bytes)).with_guessed_format().unwrap().decode().unwrap()
}

/// Whether `needle` occurs in `haystack`.
pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
