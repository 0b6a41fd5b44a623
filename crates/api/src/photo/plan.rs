//! What a format's walk found, and the lossless edit it calls for: which byte ranges
//! of the upload to keep, in order, and a few bytes to overwrite afterwards (a
//! container's size, a flags byte).
//!
//! The edit only ever removes bytes, so it is applied in place: each kept range moves
//! towards the front of the same buffer, never past a range still to be read. The
//! stored form then costs no second buffer, and the upload's admitted bytes bound it.

use std::ops::Range;

use bytes::Bytes;
use image::metadata::Orientation;

/// What walking an image's structure (never its pixels) found.
#[derive(Debug)]
pub(super) struct Scan {
    /// The lossless edit that removes the metadata.
    pub(super) plan: Plan,
    /// How many frames the image holds: 1 for a still image.
    pub(super) frames: u64,
    /// The EXIF orientation, [`Orientation::NoTransforms`] when absent or unreadable.
    pub(super) orientation: Orientation,
    /// Ranges of the upload a re-encode must carry over verbatim (PNG's colour chunks);
    /// empty for the other formats, whose encoders take the ICC profile themselves.
    pub(super) colour: Vec<Range<usize>>,
}

impl Scan {
    /// A scan with an empty plan, one frame and no orientation.
    pub(super) fn new() -> Self {
        Scan { plan: Plan::default(), frames: 1, orientation: Orientation::NoTransforms, colour: Vec::new() }
    }
}

/// The ranges of the upload to keep and the bytes to overwrite in the result.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    /// Ascending, disjoint, adjacent ranges merged.
    keep: Vec<Range<usize>>,
    /// `(offset in the result, bytes)`, each within the result.
    patches: Vec<(usize, Vec<u8>)>,
}

impl Plan {
    /// Keeps `range` of the upload, after everything kept so far.
    pub(super) fn keep(&mut self, range: Range<usize>) {
        debug_assert!(self.keep.last().is_none_or(|last| last.end <= range.start), "ranges out of order");
        if range.is_empty() {
            return;
        }
        match self.keep.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => self.keep.push(range),
        }
    }

    /// Overwrites the result's bytes at `offset` with `bytes` once the ranges are kept.
    pub(super) fn patch(&mut self, offset: usize, bytes: Vec<u8>) {
        self.patches.push((offset, bytes));
    }

    /// The length of the result.
    pub(super) fn output_len(&self) -> usize {
        self.keep.iter().map(|r| r.len()).sum()
    }

    /// The ranges kept, in order.
    #[cfg(test)]
    pub(super) fn kept(&self) -> &[Range<usize>] {
        &self.keep
    }

    /// Whether the result is `original` itself: everything kept, nothing patched to
    /// a different value.
    fn is_identity(&self, original: &[u8]) -> bool {
        self.keep.len() <= 1
            && self.output_len() == original.len()
            && self.patches.iter().all(|(at, bytes)| original.get(*at..at + bytes.len()) == Some(bytes.as_slice()))
    }

    /// The stored form of `image`: the kept ranges, then the patches. In place when
    /// `image` is its buffer's only owner (it is, straight from the upload); copied
    /// into a buffer of the result's size otherwise.
    pub(super) fn apply(&self, image: Bytes) -> Bytes {
        if self.is_identity(&image) {
            return image;
        }
        let mut out = match image.try_into_mut() {
            Ok(mut buf) => {
                let mut written = 0;
                for range in &self.keep {
                    // `written <= range.start`: the kept ranges are ascending, so
                    // this never overwrites a byte still to be moved.
                    buf.copy_within(range.clone(), written);
                    written += range.len();
                }
                buf.truncate(written);
                buf
            }
            Err(shared) => {
                let mut buf = bytes::BytesMut::with_capacity(self.output_len());
                for range in &self.keep {
                    buf.extend_from_slice(&shared[range.clone()]);
                }
                buf
            }
        };
        for (at, bytes) in &self.patches {
            out[*at..at + bytes.len()].copy_from_slice(bytes);
        }
        out.freeze()
    }
}

/// A big-endian `u16` at `at`, if the bytes reach that far.
pub(super) fn be16(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_be_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?) as usize)
}

/// A big-endian `u32` at `at`, if the bytes reach that far.
pub(super) fn be32(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_be_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
}

/// A little-endian `u32` at `at`, if the bytes reach that far.
pub(super) fn le32(bytes: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
}

/// The orientation an EXIF payload records: a TIFF structure, with or without the
/// `Exif\0\0` prefix JPEG uses (PNG's `eXIf` and WebP's `EXIF` are seen with both).
pub(super) fn exif_orientation(payload: &[u8]) -> Orientation {
    let tiff = payload.strip_prefix(b"Exif\0\0").unwrap_or(payload);
    Orientation::from_exif_chunk(tiff).unwrap_or(Orientation::NoTransforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(keep: &[Range<usize>], patches: &[(usize, &[u8])]) -> Plan {
        let mut plan = Plan::default();
        for r in keep {
            plan.keep(r.clone());
        }
        for (at, bytes) in patches {
            plan.patch(*at, bytes.to_vec());
        }
        plan
    }

    #[test]
    fn an_edit_gives_the_same_bytes_in_place_and_copied() {
        let original: Vec<u8> = (0..100).collect();
        let p = plan(&[0..10, 10..20, 40..50, 90..100], &[(0, b"ab")]);
        assert_eq!(p.kept(), [0..20, 40..50, 90..100], "adjacent ranges merge");
        let mut expected: Vec<u8> = (0..20).chain(40..50).chain(90..100).collect();
        expected[..2].copy_from_slice(b"ab");
        let in_place = p.apply(Bytes::from(original.clone()));
        assert_eq!(in_place, expected);
        let shared = Bytes::from(original);
        let held = shared.clone();
        assert_eq!(p.apply(shared), expected, "copied when the buffer is shared");
        assert_eq!(held.len(), 100, "the shared original is untouched");
    }

    #[test]
    fn keeping_everything_returns_the_upload_itself() {
        let original = Bytes::from((0..50).collect::<Vec<u8>>());
        let whole = [0..50, 50..50];
        let same = plan(&whole, &[(4, &[4, 5])]).apply(original.clone());
        assert_eq!(same.as_ptr(), original.as_ptr(), "no copy");
    }
}
