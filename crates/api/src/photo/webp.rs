//! WebP: the RIFF container chunk by chunk.
//!
//! Kept: `VP8X` (with its EXIF and XMP flags cleared), `ICCP`, `ANIM`, `ANMF`,
//! `ALPH`, `VP8 `, `VP8L`. Removed: `EXIF`, `XMP `, unknown chunks, and anything past
//! the RIFF size; the RIFF size is rewritten to the result's.

use image::metadata::Orientation;

use super::plan::{Scan, exif_orientation, le32};

/// `RIFF`, its size, `WEBP`.
const HEADER: usize = 12;
/// The `VP8X` flags that announce EXIF and XMP chunks.
const EXIF_FLAG: u8 = 0x08;
const XMP_FLAG: u8 = 0x04;

/// Walks a WebP (which starts with `RIFF....WEBP`).
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, &'static str> {
    let mut scan = Scan::new();
    let mut orientation = None;
    let riff_size = le32(bytes, 4).ok_or("the RIFF header is cut short")?;
    let riff_end = riff_size.checked_add(8).filter(|&end| end <= bytes.len() && end >= HEADER);
    let riff_end = riff_end.ok_or("the RIFF size runs past the end of the file")?;
    scan.plan.keep(0..HEADER);
    let mut pos = HEADER;
    let mut frames = 0;
    while pos < riff_end {
        let kind = bytes.get(pos..pos + 4).ok_or("a chunk's header is cut short")?;
        let size = le32(bytes, pos + 4).ok_or("a chunk's header is cut short")?;
        // Chunks are padded to an even size.
        let end = (pos + 8).checked_add(size + (size & 1)).filter(|&end| end <= riff_end);
        let end = end.ok_or("a chunk runs past the RIFF size")?;
        let data = &bytes[pos + 8..pos + 8 + size];
        match kind {
            b"VP8X" => {
                if pos != HEADER || size < 10 {
                    return Err("the extended header is not the first chunk, or is too short");
                }
                scan.plan.keep(pos..end);
                let flags = data[0];
                if flags & (EXIF_FLAG | XMP_FLAG) != 0 {
                    // Nothing before it is removed: its offset in the result is its own.
                    scan.plan.patch(pos + 8, vec![flags & !(EXIF_FLAG | XMP_FLAG)]);
                }
            }
            b"ANMF" => {
                frames += 1;
                scan.plan.keep(pos..end);
            }
            b"ICCP" | b"ANIM" | b"ALPH" | b"VP8 " | b"VP8L" => scan.plan.keep(pos..end),
            b"EXIF" => {
                orientation.get_or_insert_with(|| exif_orientation(data));
            }
            _ => {}
        }
        pos = end;
    }
    let size = u32::try_from(scan.plan.output_len() - 8).map_err(|_| "the file is too large")?;
    scan.plan.patch(4, size.to_le_bytes().to_vec());
    scan.frames = frames.max(1);
    scan.orientation = orientation.unwrap_or(Orientation::NoTransforms);
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::photo::fixtures::{riff, riff_chunk};

    #[test]
    fn exif_xmp_and_unknown_chunks_go_the_flags_and_size_follow() {
        let mut vp8x = vec![0x20 | EXIF_FLAG | XMP_FLAG | 0x02, 0, 0, 0];
        vp8x.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let kept_after = [
            riff_chunk(b"ICCP", b"profile"),
            riff_chunk(b"ANIM", &[0; 6]),
            riff_chunk(b"ANMF", &[0; 17]),
            riff_chunk(b"ANMF", &[0; 16]),
        ];
        let mut chunks = vec![riff_chunk(b"VP8X", &vp8x)];
        chunks.extend(kept_after.iter().cloned());
        chunks.push(riff_chunk(b"EXIF", b"Exif\0\0MM\0*\0\0\0\x08\0\0"));
        chunks.push(riff_chunk(b"XMP ", b"<x:xmpmeta/>"));
        chunks.push(riff_chunk(b"ZZZZ", b"private"));
        let mut file = riff(&chunks.concat());
        file.extend_from_slice(b"after the RIFF");
        let scan = scan(&file).unwrap();
        assert_eq!(scan.frames, 2);
        let out = scan.plan.apply(file.into());
        vp8x[0] = 0x20 | 0x02;
        let expected = riff(&[vec![riff_chunk(b"VP8X", &vp8x)], kept_after.to_vec()].concat().concat());
        assert_eq!(out, expected);
    }

    #[test]
    fn sizes_past_the_end_are_refused() {
        let file = riff(&riff_chunk(b"VP8L", b"pixels"));
        assert!(scan(&file).is_ok());
        let mut short = file.clone();
        short.truncate(file.len() - 1);
        assert!(scan(&short).is_err(), "the RIFF size runs past the end");
        let mut lying = riff(&riff_chunk(b"VP8L", b"pixels"));
        lying[16] = 200;
        assert!(scan(&lying).is_err(), "a chunk runs past the RIFF size");
    }
}
