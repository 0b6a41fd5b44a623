//! GIF: block by block. Comments (`FE`) and application extensions other than the
//! loop count (`NETSCAPE2.0`, `ANIMEXTS1.0`) and the ICC profile (`ICCRGBG1012`) go,
//! which takes XMP (`XMP DataXMP`) with them; so does anything after the trailer.
//! GIF has no EXIF, so no orientation.

use super::plan::Scan;

/// Application extensions kept, by their 11-byte identifier.
const KEPT_APPLICATIONS: &[&[u8; 11]] = &[b"NETSCAPE2.0", b"ANIMEXTS1.0", b"ICCRGBG1012"];

/// Walks a GIF (which starts with `GIF87a` or `GIF89a`). A file that ends between
/// blocks without its trailer is accepted as it is.
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, &'static str> {
    let mut scan = Scan::new();
    let packed = *bytes.get(10).ok_or("the screen descriptor is cut short")?;
    // Header (6), screen descriptor (7), then the global colour table if flagged.
    let mut pos = 13 + colour_table_len(packed);
    if pos > bytes.len() {
        return Err("the global colour table is cut short");
    }
    scan.plan.keep(0..pos);
    let mut frames = 0;
    while let Some(&introducer) = bytes.get(pos) {
        let start = pos;
        match introducer {
            0x3b => {
                scan.plan.keep(pos..pos + 1);
                break;
            }
            0x2c => {
                let packed = *bytes.get(pos + 9).ok_or("an image descriptor is cut short")?;
                // Descriptor (10), local colour table, LZW minimum code size (1).
                pos = sub_blocks_end(bytes, pos + 10 + colour_table_len(packed) + 1)?;
                frames += 1;
                scan.plan.keep(start..pos);
            }
            0x21 => {
                let label = *bytes.get(pos + 1).ok_or("an extension is cut short")?;
                pos = sub_blocks_end(bytes, pos + 2)?;
                let keep = match label {
                    0xfe => false,
                    0xff => {
                        bytes.get(start + 3..start + 14).is_some_and(|id| KEPT_APPLICATIONS.iter().any(|k| k == &id))
                    }
                    _ => true,
                };
                if keep {
                    scan.plan.keep(start..pos);
                }
            }
            _ => return Err("an unknown block"),
        }
    }
    scan.frames = frames.max(1);
    Ok(scan)
}

/// The length of a colour table a packed field announces.
fn colour_table_len(packed: u8) -> usize {
    if packed & 0x80 != 0 { 3 << ((packed & 0x07) + 1) } else { 0 }
}

/// Where the sub-blocks starting at `from` end: after their zero-length terminator.
fn sub_blocks_end(bytes: &[u8], mut from: usize) -> Result<usize, &'static str> {
    loop {
        let len = *bytes.get(from).ok_or("a data sub-block is cut short")? as usize;
        from += 1 + len;
        if len == 0 {
            return Ok(from);
        }
        if from > bytes.len() {
            return Err("a data sub-block is cut short");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::photo::fixtures::gif;

    #[test]
    fn comments_and_xmp_go_loops_and_frames_stay() {
        let (file, expected) = gif(3);
        let scan = scan(&file).unwrap();
        assert_eq!(scan.frames, 3);
        assert_eq!(scan.plan.apply(file.into()), expected);
    }

    #[test]
    fn cut_blocks_are_refused() {
        let (_, file) = gif(1);
        assert!(scan(&file[..file.len() - 3]).is_err(), "cut inside the frame's data");
        assert!(scan(b"GIF89a\x01\x00").is_err());
    }
}
