//! The library paths and their floors: `ProfileService::write` and `read` against
//! the same store operations issued directly on the same stores.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use profilestore_core::ids::{BlobKey, IdSource, UserId};
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::store::{CommitOutcome, Record};
use profilestore_core::time::Deadline;
use profilestore_runtime::UuidV7Ids;

use crate::fixture::{METADATA, Stores};
use crate::load::Operation;

/// The user operation `n` acts for: round robin, so concurrent clients mostly touch
/// different rows.
pub(crate) fn user_for(users: &[UserId], n: u64) -> UserId {
    users[(n % users.len() as u64) as usize].clone()
}

/// The write floor on a database other than SQLite (whose floor is `raw`'s plain
/// upsert): a create-only put of a fresh key, then the record committed under a
/// deadline one request timeout away, exactly the two store calls a write makes, with
/// nothing around them.
pub(crate) fn write_floor(stores: &Stores, users: Arc<Vec<UserId>>, image: Bytes) -> Operation {
    let (metadata, blobs, clock, timings) =
        (stores.metadata.clone(), stores.blobs.clone(), stores.clock.clone(), stores.timings);
    Arc::new(move |n| {
        let (metadata, blobs, clock, image) = (metadata.clone(), blobs.clone(), clock.clone(), image.clone());
        let user = user_for(&users, n);
        async move {
            let image_id = UuidV7Ids.next_image_id();
            let image_size = image.len() as u64;
            blobs.put_new(&BlobKey::original(image_id), image).await.map_err(|e| e.to_string())?;
            let deadline = Deadline::after(clock.clone(), timings.request_timeout).under(timings);
            let record = Record {
                user_id: user,
                metadata: METADATA.to_owned(),
                image_id,
                content_type: "image/png".to_owned(),
                image_size,
                updated_at: clock.now(),
            };
            match metadata.put_before(&record, &deadline).await {
                Ok(CommitOutcome::Committed) => Ok(()),
                Ok(other) => Err(format!("commit answered {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        }
        .boxed()
    })
}

/// The library write: `ProfileService::write`.
pub(crate) fn write_library(service: ProfileService, users: Arc<Vec<UserId>>, image: Bytes) -> Operation {
    Arc::new(move |n| {
        let service = service.clone();
        let user = user_for(&users, n);
        let profile =
            NewProfile { metadata: METADATA.to_owned(), image: image.clone(), content_type: "image/png".into() };
        async move { service.write(user, profile).await.map(|_| ()).map_err(|e| e.to_string()) }.boxed()
    })
}

/// The read floor: the record, then the blob it names.
pub(crate) fn read_floor(stores: &Stores, users: Arc<Vec<UserId>>) -> Operation {
    let (metadata, blobs) = (stores.metadata.clone(), stores.blobs.clone());
    Arc::new(move |n| {
        let (metadata, blobs) = (metadata.clone(), blobs.clone());
        let user = user_for(&users, n);
        async move {
            let record = metadata.get(&user).await.map_err(|e| e.to_string())?.ok_or("no record")?;
            match blobs.get(&BlobKey::original(record.image_id)).await.map_err(|e| e.to_string())? {
                Some(_) => Ok(()),
                None => Err("no blob".to_owned()),
            }
        }
        .boxed()
    })
}

/// The library read: `ProfileService::read`.
pub(crate) fn read_library(service: ProfileService, users: Arc<Vec<UserId>>) -> Operation {
    Arc::new(move |n| {
        let service = service.clone();
        let user = user_for(&users, n);
        async move {
            match service.read(&user).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("no profile".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        }
        .boxed()
    })
}
