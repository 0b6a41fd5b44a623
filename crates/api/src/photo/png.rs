//! PNG (and APNG): chunk by chunk, keeping the image, its colour and its animation.
//!
//! Kept: `IHDR`, `PLTE`, `IDAT`, `IEND`, the colour chunks (`iCCP`, `sRGB`, `gAMA`,
//! `cHRM`, `cICP`, `mDCv`, `cLLi`, `sBIT`), `tRNS`, `bKGD`, `pHYs`, `hIST` and APNG's
//! `acTL`, `fcTL`, `fdAT`. Removed: `eXIf`, `tEXt`, `zTXt`, `iTXt` (where XMP
//! lives), `tIME`, every other ancillary chunk (private ones can carry anything, and a
//! decoder skips them anyway), and anything after `IEND`. An unknown critical chunk is
//! refused: no decoder could show the image, and we cannot tell what it holds.

use image::metadata::Orientation;

use super::plan::{Scan, be32, exif_orientation};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Chunks that carry colour: a re-encode writes them again.
const COLOUR: &[&[u8; 4]] = &[b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"cICP", b"mDCv", b"cLLi", b"sBIT"];

/// Every other chunk kept.
const IMAGE: &[&[u8; 4]] =
    &[b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"bKGD", b"pHYs", b"hIST", b"acTL", b"fcTL", b"fdAT"];

/// Walks a PNG (which starts with its signature). CRCs are not checked: a wrong one
/// hides nothing, and decoders judge it. A file that ends at a chunk boundary without
/// `IEND` is accepted as it is.
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, &'static str> {
    let mut scan = Scan::new();
    let mut orientation = None;
    let (mut declared_frames, mut frame_controls) = (0, 0);
    scan.plan.keep(0..SIGNATURE.len());
    let mut pos = SIGNATURE.len();
    while pos < bytes.len() {
        let length = be32(bytes, pos).ok_or("a chunk's header is cut short")?;
        let kind: &[u8; 4] =
            bytes.get(pos + 4..pos + 8).and_then(|k| k.try_into().ok()).ok_or("a chunk's header is cut short")?;
        if !kind.iter().all(u8::is_ascii_alphabetic) {
            return Err("a chunk type is not four letters");
        }
        // Length, type, data, CRC.
        let end = (pos + 12).checked_add(length).filter(|&end| end <= bytes.len() && length <= i32::MAX as usize);
        let end = end.ok_or("a chunk runs past the end of the file")?;
        let data = &bytes[pos + 8..end - 4];
        match kind {
            b"eXIf" => {
                orientation.get_or_insert_with(|| exif_orientation(data));
            }
            b"acTL" => declared_frames = be32(data, 0).ok_or("the animation control chunk is cut short")?,
            b"fcTL" => frame_controls += 1,
            _ => {}
        }
        if COLOUR.contains(&kind) {
            scan.colour.push(pos..end);
            scan.plan.keep(pos..end);
        } else if IMAGE.contains(&kind) {
            scan.plan.keep(pos..end);
        } else if kind[0].is_ascii_uppercase() {
            return Err("an unknown critical chunk");
        }
        pos = end;
        if kind == b"IEND" {
            break;
        }
    }
    scan.frames = (declared_frames as u64).max(frame_controls).max(1);
    scan.orientation = orientation.unwrap_or(Orientation::NoTransforms);
    Ok(scan)
}

/// Where a re-encoded PNG's colour chunks go: after its signature and `IHDR`, which
/// every encoder writes first (13 bytes of data, 12 of length, type and CRC).
pub(super) const AFTER_IHDR: usize = 8 + 25;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::photo::fixtures::png_chunk;

    #[test]
    fn text_and_exif_go_and_colour_and_animation_stay() {
        let ihdr = png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
        let kept = [
            ihdr,
            png_chunk(b"iCCP", b"icc\0\0profile"),
            png_chunk(b"acTL", &[0, 0, 0, 2, 0, 0, 0, 0]),
            png_chunk(b"fcTL", &[0; 26]),
            png_chunk(b"IDAT", b"pixels"),
            png_chunk(b"fcTL", &[0; 26]),
            png_chunk(b"fdAT", b"more pixels"),
            png_chunk(b"IEND", b""),
        ];
        let mut file = SIGNATURE.to_vec();
        for (n, chunk) in kept.iter().enumerate() {
            file.extend_from_slice(chunk);
            if n == 1 {
                file.extend(png_chunk(b"tEXt", b"GPS\0somewhere"));
                file.extend(png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>"));
                file.extend(png_chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0"));
                file.extend(png_chunk(b"prVt", b"anything"));
            }
        }
        file.extend_from_slice(b"trailing");
        let scan = scan(&file).unwrap();
        assert_eq!(scan.frames, 2);
        assert_eq!(scan.colour.len(), 1);
        assert_eq!(scan.plan.apply(file.into()), [SIGNATURE.to_vec(), kept.concat()].concat());
    }

    #[test]
    fn broken_structure_is_refused() {
        let mut file = SIGNATURE.to_vec();
        file.extend(png_chunk(b"IHDR", &[0; 13]));
        let complete = file.clone();
        assert!(scan(&complete).is_ok(), "no IEND, ends at a chunk boundary");
        file.extend_from_slice(&[0; 16]);
        assert_eq!(scan(&file).unwrap_err(), "a chunk type is not four letters");
        let mut critical = complete.clone();
        critical.extend(png_chunk(b"ABCD", b""));
        assert_eq!(scan(&critical).unwrap_err(), "an unknown critical chunk");
        let mut cut = complete;
        cut.extend(png_chunk(b"tEXt", b"cut short"));
        cut.pop();
        assert_eq!(scan(&cut).unwrap_err(), "a chunk runs past the end of the file");
    }
}
