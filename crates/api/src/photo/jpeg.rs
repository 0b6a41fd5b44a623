//! JPEG: segment by segment, keeping what decoding and colour need and nothing else.
//!
//! Kept: the frame and scan headers, tables and restart markers, the entropy-coded
//! data, `APP0` `JFIF` (density), `APP2` `ICC_PROFILE` (colour) and `APP14` `Adobe`
//! (the colour transform of CMYK/YCCK files). Removed: every other `APPn` (`APP1`
//! Exif and XMP, `APP2` MPF and FlashPix, `APP13` Photoshop/IPTC, makers' own), `COM`,
//! and anything after `EOI` (where phones append motion-photo videos and MPF's extra
//! images, with their own metadata).

use image::metadata::Orientation;

use super::plan::{Scan, be16, exif_orientation};

const SOI: u8 = 0xd8;
const EOI: u8 = 0xd9;
const SOS: u8 = 0xda;
const APP0: u8 = 0xe0;
const APP1: u8 = 0xe1;
const APP2: u8 = 0xe2;
const APP14: u8 = 0xee;
const APP15: u8 = 0xef;
const COM: u8 = 0xfe;

/// Walks a JPEG (which starts with `FF D8`). A file that ends without `EOI` but at a
/// segment or inside scan data is accepted as it is (cameras and editors write
/// truncated files that viewers still show); a segment cut short is not.
pub(super) fn scan(bytes: &[u8]) -> Result<Scan, &'static str> {
    let mut scan = Scan::new();
    let mut orientation = None;
    scan.plan.keep(0..2);
    let mut pos = 2;
    while pos < bytes.len() {
        if bytes[pos] != 0xff {
            return Err("expected a marker between segments");
        }
        // Any number of 0xFF fill bytes may precede a marker.
        let mut at = pos + 1;
        while bytes.get(at) == Some(&0xff) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at) else { return Err("the file ends inside a marker") };
        let start = pos;
        pos = at + 1;
        match marker {
            EOI => {
                scan.plan.keep(start..pos);
                break;
            }
            SOI => return Err("a second start-of-image marker"),
            0x01 | 0xd0..=0xd7 => scan.plan.keep(start..pos),
            0x00 => return Err("a stuffed zero where a marker belongs"),
            _ => {
                let length = be16(bytes, pos).ok_or("the file ends inside a segment's length")?;
                let end = pos + length;
                if length < 2 || end > bytes.len() {
                    return Err("a segment runs past the end of the file");
                }
                let payload = &bytes[pos + 2..end];
                if marker == APP1 && orientation.is_none() && payload.starts_with(b"Exif\0\0") {
                    orientation = Some(exif_orientation(payload));
                }
                if keeps(marker, payload) {
                    scan.plan.keep(start..end);
                }
                pos = end;
                if marker == SOS {
                    let data_end = entropy_coded_end(bytes, pos);
                    scan.plan.keep(pos..data_end);
                    pos = data_end;
                }
            }
        }
    }
    scan.orientation = orientation.unwrap_or(Orientation::NoTransforms);
    Ok(scan)
}

/// Whether a segment with `marker` and `payload` stays in the stored form.
fn keeps(marker: u8, payload: &[u8]) -> bool {
    match marker {
        APP0 => payload.starts_with(b"JFIF\0"),
        APP2 => payload.starts_with(b"ICC_PROFILE\0"),
        APP14 => payload.starts_with(b"Adobe"),
        APP0..=APP15 | COM => false,
        _ => true,
    }
}

/// Where the entropy-coded data that starts at `from` ends: at the first marker that
/// is neither a stuffed zero (`FF 00`) nor a restart (`FF D0`–`FF D7`), or at the end
/// of the file.
fn entropy_coded_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(offset) = bytes[at..].iter().position(|&b| b == 0xff) {
        let ff = at + offset;
        match bytes.get(ff + 1) {
            Some(0x00 | 0xd0..=0xd7) => at = ff + 2,
            // A fill byte: the marker follows it.
            Some(0xff) => at = ff + 1,
            Some(_) => return ff,
            None => return bytes.len(),
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xff, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn metadata_segments_and_trailing_bytes_go_and_the_rest_stays_in_order() {
        let sof = segment(0xc0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
        let sos = segment(SOS, &[1, 1, 0, 0, 63, 0]);
        let data = [0x12, 0xff, 0x00, 0x34, 0xff, 0xd3, 0x56];
        let kept_parts: Vec<Vec<u8>> = vec![
            vec![0xff, SOI],
            segment(APP0, b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"),
            segment(APP2, b"ICC_PROFILE\0\x01\x01profile"),
            segment(0xdb, &[0; 65]),
            sof,
            sos,
            data.to_vec(),
            vec![0xff, EOI],
        ];
        let mut file = Vec::new();
        for (n, part) in kept_parts.iter().enumerate() {
            file.extend_from_slice(part);
            if n == 1 {
                file.extend(segment(APP1, b"Exif\0\0MM\0*\0\0\0\x08\0\0"));
                file.extend(segment(APP1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>"));
                file.extend(segment(APP2, b"MPF\0II*\0"));
                file.extend(segment(0xed, b"Photoshop 3.0\08BIM"));
                file.extend(segment(COM, b"a comment"));
            }
        }
        file.extend_from_slice(b"appended motion photo");
        let scan = scan(&file).unwrap();
        let out = scan.plan.apply(file.into());
        assert_eq!(out, kept_parts.concat());
    }

    #[test]
    fn cut_segments_are_refused_and_a_file_cut_in_its_scan_is_kept() {
        let mut cut = vec![0xff, SOI];
        cut.extend(segment(APP1, b"Exif\0\0"));
        cut.truncate(cut.len() - 2);
        assert!(scan(&cut).is_err());
        let mut in_scan = vec![0xff, SOI];
        in_scan.extend(segment(SOS, &[1, 1, 0, 0, 63, 0]));
        in_scan.extend_from_slice(&[1, 2, 3, 0xff]);
        let kept = scan(&in_scan).unwrap();
        assert_eq!(kept.plan.output_len(), in_scan.len());
        assert!(scan(b"\xff\xd8junk").is_err());
    }
}
