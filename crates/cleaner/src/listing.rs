//! From a blob listing to images: parse each key into the layout, merge an image's
//! keys into one entry, and keep everything else away from the cleaner's machine.
//!
//! Both the cleaner and the audit page through the listing with an [`ImageGrouper`],
//! which holds at most one page's images plus one image carried over a page boundary,
//! so memory stays flat in the number of blobs.

use std::collections::HashMap;

use profilestore_core::ids::{BlobKey, ImageId};
use profilestore_core::store::{CLOCK_PROBE_KEY, ListedBlob, PAIRING_MARKER_KEY};
use profilestore_core::time::Timestamp;

/// One image as the listing showed it: every one of its keys merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListedImage {
    /// The image.
    pub id: ImageId,
    /// The creation time of its **youngest** key, so the image counts as old enough
    /// only when every one of its blobs is (errs toward not deleting).
    pub created: Timestamp,
    /// The sizes of its keys, added up.
    pub bytes: u64,
}

/// What one listed page held.
#[derive(Debug, Default)]
pub(crate) struct PageImages {
    /// The images whose keys this page completed, in listing order.
    pub images: Vec<ListedImage>,
    /// Every object on the page, in the layout or not.
    pub objects: u64,
    /// Keys outside the layout (the pairing marker excepted): never handed on.
    pub foreign: Vec<String>,
    /// How many times the pairing marker appeared (expected once per listing).
    pub markers: u64,
}

/// Groups listed keys by image, page by page.
///
/// An image's keys (`{shard}/{id}/{variant}`) are adjacent in a sorted listing but may
/// straddle a page boundary, so the image of a page's last layout key is held back
/// and merged into the next page; [`finish`](Self::finish) releases it once the
/// listing has ended. Within a page, keys of one image are merged wherever they are.
#[derive(Debug, Default)]
pub(crate) struct ImageGrouper {
    carry: Option<ListedImage>,
}

impl ImageGrouper {
    /// The images `page` completes, with its object counts.
    pub fn page(&mut self, page: &[ListedBlob]) -> PageImages {
        let mut out = PageImages::default();
        let mut index: HashMap<ImageId, usize> = HashMap::new();
        let mut last = None;
        if let Some(carried) = self.carry.take() {
            index.insert(carried.id, 0);
            out.images.push(carried);
            last = Some(carried.id);
        }
        for blob in page {
            out.objects += 1;
            let Some(key) = BlobKey::parse(&blob.key) else {
                // The marker and the clock probe are profilestore's own: not foreign.
                if blob.key == PAIRING_MARKER_KEY {
                    out.markers += 1;
                } else if blob.key != CLOCK_PROBE_KEY {
                    out.foreign.push(blob.key.clone());
                }
                continue;
            };
            let id = key.image_id;
            last = Some(id);
            match index.get(&id) {
                Some(&i) => {
                    let image = &mut out.images[i];
                    image.created = image.created.max(blob.created);
                    image.bytes = image.bytes.saturating_add(blob.size);
                }
                None => {
                    index.insert(id, out.images.len());
                    out.images.push(ListedImage { id, created: blob.created, bytes: blob.size });
                }
            }
        }
        if let Some(i) = last.and_then(|id| index.get(&id).copied()) {
            self.carry = Some(out.images.remove(i));
        }
        out
    }

    /// The image still held back, now that the listing has ended.
    pub fn finish(&mut self) -> PageImages {
        PageImages { images: self.carry.take().into_iter().collect(), ..PageImages::default() }
    }

    /// Whether an image is held back (the listing has shown at least one image whose
    /// entry is not yet released).
    pub fn holds_image(&self) -> bool {
        self.carry.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ImageId {
        format!("01900000-0000-7000-8000-0000000000{n:02x}").parse().unwrap()
    }

    fn blob(key: impl Into<String>, created: i64) -> ListedBlob {
        ListedBlob { key: key.into(), created: Timestamp::from_millis(created), size: 10 }
    }

    fn key(n: u8, variant: &str) -> String {
        format!("{n:02x}/{}/{variant}", id(n))
    }

    #[test]
    fn foreign_keys_and_the_marker_never_become_images() {
        let mut g = ImageGrouper::default();
        let page = g.page(&[
            blob("foo/bar", 0),
            blob(format!("{}#1", key(1, "original")), 0),
            blob(format!("ff/{}/original", id(1)), 0), // wrong shard
            blob(PAIRING_MARKER_KEY, 0),
            blob(CLOCK_PROBE_KEY, 0),
            blob(key(2, "original"), 0),
        ]);
        assert_eq!(page.objects, 6);
        assert_eq!(page.markers, 1);
        assert_eq!(page.foreign.len(), 3);
        assert!(page.images.is_empty(), "the only image is held back: {:?}", page.images);
        let rest = g.finish();
        assert_eq!(rest.images.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id(2)]);
    }

    #[test]
    fn an_image_straddling_a_page_boundary_is_one_entry_with_its_youngest_time() {
        let mut g = ImageGrouper::default();
        let first = g.page(&[blob(key(1, "original"), 5), blob(key(2, "original"), 100)]);
        assert_eq!(first.images.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id(1)]);
        // The next page continues image 2 (as a second variant would) with a younger key.
        let second = g.page(&[blob(key(2, "original"), 300), blob(key(3, "original"), 7)]);
        assert_eq!(second.images.len(), 1);
        assert_eq!(second.images[0].id, id(2));
        assert_eq!(second.images[0].created, Timestamp::from_millis(300), "youngest wins");
        assert_eq!(second.images[0].bytes, 20);
        let rest = g.finish();
        assert_eq!(rest.images[0].id, id(3));
        assert!(!g.holds_image());
    }

    #[test]
    fn a_page_of_only_foreign_keys_keeps_carrying_the_held_image() {
        let mut g = ImageGrouper::default();
        assert!(g.page(&[blob(key(1, "original"), 0)]).images.is_empty());
        assert!(g.page(&[blob(format!("{}#x", key(1, "original")), 0)]).images.is_empty());
        let last = g.page(&[blob(key(1, "original"), 50)]);
        assert!(last.images.is_empty());
        assert_eq!(g.finish().images[0].created, Timestamp::from_millis(50));
    }
}
