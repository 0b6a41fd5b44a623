//! The stores a scenario runs on, the image it uploads, and the users it seeds.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use profilestore_core::ids::UserId;
use profilestore_core::pairing::pair_or_verify;
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore, Pairing};
use profilestore_core::time::Clock;
use profilestore_runtime::{SystemClock, UuidV7Ids};
use profilestore_stores::{LocalBlobStore, OpenMode, S3Options};

use crate::config::StoreTarget;
use crate::error::BenchError;

/// A valid PNG of exactly `size` bytes (70 at the least), every byte of it image: one
/// row of grey pixels, stored uncompressed. No filler after the image or in chunks a
/// decoder skips, since the API strips those before storing (the stored image would
/// then be smaller than the one the floor writes). Real bytes, so the API's image
/// checks do their real work.
pub fn image(size: u64) -> Bytes {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    // Total = 64 bytes of signature, headers and checksums + 5 per stored deflate block
    // + the row's width. The width decides how many blocks its row takes, so search
    // for a block count that agrees, with one empty block more where none does.
    let layout =
        (1..=size / MAX_STORED_BLOCK + 1).flat_map(|blocks| [(blocks, 0), (blocks, 1)]).find_map(|(blocks, empty)| {
            let width = size.checked_sub(64 + 5 * (blocks + empty)).filter(|&w| w >= 1)?;
            ((width + 1).div_ceil(MAX_STORED_BLOCK) == blocks).then_some((width, empty))
        });
    let (width, empty_blocks) = layout.unwrap_or((1, 0));
    Bytes::from(grey_row_png(width, empty_blocks))
}

/// The most bytes one stored (uncompressed) deflate block holds.
const MAX_STORED_BLOCK: usize = 65_535;

/// A PNG of one row of `width` grey pixels, its zlib stream in stored blocks, led by
/// `empty_blocks` empty ones.
fn grey_row_png(width: usize, empty_blocks: usize) -> Vec<u8> {
    // Filter byte 0 (none), then the pixels.
    let mut row = vec![0u8];
    row.extend((0..width).map(|i| (i % 251) as u8));
    let mut zlib = vec![0x78, 0x01];
    for _ in 0..empty_blocks {
        zlib.extend([0x00, 0x00, 0x00, 0xff, 0xff]);
    }
    let mut blocks = row.chunks(MAX_STORED_BLOCK).peekable();
    while let Some(block) = blocks.next() {
        let len = u16::try_from(block.len()).expect("a stored block holds at most 65535 bytes");
        zlib.push(u8::from(blocks.peek().is_none()));
        zlib.extend(len.to_le_bytes());
        zlib.extend((!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend(adler32(&row).to_be_bytes());

    let mut header = u32::try_from(width).expect("a PNG is at most 2^31 pixels wide").to_be_bytes().to_vec();
    // Height 1, 8-bit greyscale, deflate, no filter method extensions, not interlaced.
    header.extend([0, 0, 0, 1, 8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", header.as_slice()), (b"IDAT", &zlib), (b"IEND", &[])] {
        png.extend(u32::try_from(data.len()).expect("a chunk under 2^31 bytes").to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend(crc.to_be_bytes());
    }
    png
}

/// Zlib's Adler-32 checksum of `data`.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &byte in chunk {
            a += u32::from(byte);
            b += a;
        }
        (a, b) = (a % 65_521, b % 65_521);
    }
    (b << 16) | a
}

/// The CRC-32 (ISO-HDLC, as PNG uses) of `data`, a byte at a time: the bench makes
/// one image per run.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The JSON metadata every upload carries.
pub const METADATA: &str = r#"{"name":"Bench User","bio":"a profile written by profilestore bench"}"#;

/// A paired metadata store and blob store, with the clock and timings to use them
/// under, and the temporary directory that holds them (removed on drop) if any.
pub struct Stores {
    /// The metadata database.
    pub metadata: Arc<dyn MetadataStore>,
    /// The blob store.
    pub blobs: Arc<dyn BlobStore>,
    /// The clock every side of every scenario uses, for deadlines and for timing.
    pub clock: Arc<dyn Clock>,
    /// The cluster's timings.
    pub timings: Timings,
    /// The URLs, for child processes.
    pub urls: (String, String),
    _dir: Option<tempfile::TempDir>,
}

impl Stores {
    /// Opens (creating and migrating as needed) the stores `target` names, or fresh
    /// embedded ones in a new temporary directory, and pairs them with `timings` on
    /// first use. Stores paired before keep their own timings.
    pub async fn open(target: &StoreTarget, timings: Timings) -> Result<Stores, BenchError> {
        let dir = match (&target.database, &target.blobs) {
            (Some(_), Some(_)) => None,
            _ => Some(
                tempfile::Builder::new()
                    .prefix("profilestore-bench")
                    .tempdir()
                    .map_err(BenchError::io("cannot create a temporary directory"))?,
            ),
        };
        let path = dir.as_ref().map(|d| d.path().to_path_buf());
        let database = target.database.clone().unwrap_or_else(|| sqlite_url(path.as_deref()));
        let blobs = target.blobs.clone().unwrap_or_else(|| file_url(path.as_deref()));
        let mut stores = Stores::open_urls(&database, &blobs, &target.s3, timings, OpenMode::Migrate).await?;
        stores._dir = dir;
        Ok(stores)
    }

    /// Opens the stores at these URLs in `mode`, pairing them with `timings` when
    /// neither is paired yet.
    pub async fn open_urls(
        database: &str,
        blobs: &str,
        s3: &S3Options,
        timings: Timings,
        mode: OpenMode,
    ) -> Result<Stores, BenchError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let metadata = profilestore_stores::open_metadata(database, mode, clock.clone()).await?;
        let blob_store = profilestore_stores::open_blobs(blobs, mode, clock.clone(), s3).await?;
        let first = Pairing { cluster_id: uuid::Uuid::from_u128(fresh_u128()), timings };
        let pairing = pair_or_verify(metadata.as_ref(), blob_store.as_ref(), &first).await?;
        metadata.run_under_timings(&pairing.timings);
        Ok(Stores {
            metadata,
            blobs: blob_store,
            clock,
            timings: pairing.timings,
            urls: (database.to_owned(), blobs.to_owned()),
            _dir: None,
        })
    }

    /// The local blob directory behind these stores opened again (with its listing
    /// journal; `without_journal` turns it off), or `None` for another blob store.
    pub(crate) async fn local_blobs(&self) -> Result<Option<LocalBlobStore>, BenchError> {
        let Some(dir) = self.urls.1.strip_prefix("file://") else { return Ok(None) };
        let store = LocalBlobStore::open(dir, OpenMode::Existing)
            .await
            .map_err(|e| BenchError::Config(format!("reopening the blob directory: {e}")))?;
        Ok(Some(store))
    }

    /// The profile service over these stores, as `serve` builds it (without the
    /// background clock check, whose verdict is one lock read per write).
    pub fn service(&self) -> ProfileService {
        ProfileService::new(
            self.metadata.clone(),
            self.blobs.clone(),
            self.clock.clone(),
            Arc::new(UuidV7Ids),
            self.timings,
        )
    }
}

/// `sqlite://DIR/profilestore.db`.
pub fn sqlite_url(dir: Option<&Path>) -> String {
    format!("sqlite://{}", dir.unwrap_or(Path::new(".")).join("profilestore.db").display())
}

/// `file://DIR/blobs`.
pub fn file_url(dir: Option<&Path>) -> String {
    format!("file://{}", dir.unwrap_or(Path::new(".")).join("blobs").display())
}

/// The profile every bench write stores: [`METADATA`] and `image`, a PNG.
pub fn profile(image: Bytes) -> NewProfile {
    NewProfile { metadata: METADATA.to_owned(), image, content_type: "image/png".into() }
}

/// A fresh 128-bit value from the id source (cluster ids, run tags): the bench makes
/// no randomness of its own.
pub fn fresh_u128() -> u128 {
    use profilestore_core::ids::IdSource;
    UuidV7Ids.next_image_id().as_uuid().as_u128()
}

/// The user ids a run spreads its operations over: `bench-TAG-00000`, … — a tag of
/// their own, so a bench against shared stores never touches a real user's profile.
pub fn users(count: usize) -> Arc<Vec<UserId>> {
    let tag = format!("{:08x}", fresh_u128() as u32);
    let ids =
        (0..count).map(|i| UserId::parse(&format!("bench-{tag}-{i:05}")).expect("bench user ids are valid")).collect();
    Arc::new(ids)
}

/// Writes one profile for each of `users` through `service`, a few at a time.
pub async fn seed(service: &ProfileService, users: &[UserId], image: &Bytes) -> Result<(), BenchError> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(users.iter().cloned())
        .map(|user| {
            let profile = profile(image.clone());
            async move { service.write(user, profile).await.map(|_| ()) }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_a_whole_png_of_exactly_the_size_asked() {
        // Around one and two stored blocks' boundaries too, where the search needs an
        // empty block.
        for size in [70, 71, 1_000, 20 * 1024, 65_600, 65_603, 65_604, 65_605, 65_610, 131_140, 131_150, 300_000] {
            let png = image(size);
            assert_eq!(png.len() as u64, size);
            let decoded = ::image::load_from_memory_with_format(&png, ::image::ImageFormat::Png)
                .unwrap_or_else(|e| panic!("{size} bytes: {e}"));
            assert_eq!(decoded.height(), 1);
            // All but the headers and checksums is pixels.
            assert!(size - u64::from(decoded.width()) <= 64 + 5 * (size / 65_535 + 2), "{size}");
        }
        assert_eq!(image(0).len(), 70, "never shorter than a whole PNG");
    }

    #[test]
    fn the_checksums_are_zlibs_and_pngs() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn users_are_valid_distinct_and_tagged() {
        let u = users(3);
        assert_eq!(u.len(), 3);
        assert_ne!(u[0], u[1]);
        assert!(u[0].as_str().starts_with("bench-"));
    }
}
