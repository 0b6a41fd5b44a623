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
use profilestore_stores::{OpenMode, S3Options};

use crate::config::StoreTarget;
use crate::error::BenchError;

/// The PNG every upload starts from.
const AVATAR: &[u8] = include_bytes!("../../../examples/avatar.png");

/// A valid PNG of exactly `size` bytes (at least the example avatar's): the avatar
/// with filler after its end, which decoders ignore and the API accepts. Real bytes,
/// so the API's image checks do their real work.
pub fn image(size: u64) -> Bytes {
    let size = usize::try_from(size).unwrap_or(usize::MAX).max(AVATAR.len());
    let mut bytes = AVATAR.to_vec();
    bytes.resize(size, 0x5a);
    Bytes::from(bytes)
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
            let profile =
                NewProfile { metadata: METADATA.to_owned(), image: image.clone(), content_type: "image/png".into() };
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
    fn the_image_is_the_avatar_padded_to_size() {
        let img = image(20 * 1024);
        assert_eq!(img.len(), 20 * 1024);
        assert!(img.starts_with(AVATAR));
        assert_eq!(image(1).len(), AVATAR.len(), "never shorter than a whole PNG");
    }

    #[test]
    fn users_are_valid_distinct_and_tagged() {
        let u = users(3);
        assert_eq!(u.len(), 3);
        assert_ne!(u[0], u[1]);
        assert!(u[0].as_str().starts_with("bench-"));
    }
}
