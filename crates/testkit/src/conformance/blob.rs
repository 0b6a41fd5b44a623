//! The blob-store suite: each check is named for the promise it checks.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::join_all;
use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::{BlobKey, IdSource};
use profilestore_core::store::{ListedBlob, PAIRING_MARKER_KEY};
use profilestore_core::time::{Time, Timestamp};
use profilestore_runtime::UuidV7Ids;

use super::{BlobUnderTest, Doing, Report};

type Check = Result<(), String>;

/// How far a store's creation time may fall before the suite's clock read just before
/// the put, or after its clock read just after the listing (beyond the store's
/// precision). Linux stamps file times from a coarse clock that is updated once per
/// timer tick, so a file's time can trail the wall clock by up to one tick (10 ms at
/// the slowest common tick rate, 100 Hz); `SystemClock` starts from a wall-clock
/// reading truncated to the millisecond. 20 ms covers both with margin, and is still
/// far below the errors this check exists to catch (times truncated to seconds, times
/// taken from the wrong clock, a fixed or zero time).
const CLOCK_TOLERANCE: Duration = Duration::from_millis(20);

/// How many checks the suite has: a run with fewer fails `assert_passed`.
const CHECKS: usize = 12;

pub(super) async fn run<F, Fut>(make: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = BlobUnderTest>,
{
    let mut report = Report::new("blob store", CHECKS);
    macro_rules! checks {
        ($($check:ident),* $(,)?) => {
            $( report.run(stringify!($check), make().await, |t| async move { $check(&t).await }).await; )*
        };
    }
    checks!(
        put_new_then_get_and_exists,
        missing_keys_read_as_absent,
        put_new_never_overwrites,
        concurrent_put_new_of_one_key_has_one_winner,
        delete_many_deletes_existing_and_ignores_missing,
        list_pages_cover_every_object_once,
        list_reports_creation_times_and_sizes,
        list_since_lists_exactly_the_images_minted_since_the_horizon,
        marker_is_create_only,
        sweep_staging_keeps_every_object,
        probe_clock_reports_the_time_of_its_put,
        ping_answers,
    );
    report
}

fn key() -> BlobKey {
    BlobKey::original(UuidV7Ids.next_image_id())
}

/// Distinct contents per `seed`, `len` bytes long.
fn contents(seed: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
}

async fn list_all(t: &BlobUnderTest, page_size: usize) -> Result<Vec<Vec<ListedBlob>>, String> {
    t.store.list(page_size).try_collect().await.doing("list")
}

async fn put_new_then_get_and_exists(t: &BlobUnderTest) -> Check {
    // An empty object, a small one, and one large enough to take several writes.
    for (n, len) in [0usize, 17, 3 * 1024 * 1024 + 5].into_iter().enumerate() {
        let (k, bytes) = (key(), contents(n as u8, len));
        t.store.put_new(&k, bytes.clone()).await.doing("put_new")?;
        let got = t.store.get(&k).await.doing("get")?;
        ensure!(
            got.as_ref() == Some(&bytes),
            "get after put_new of {len} bytes returned {:?} bytes",
            got.map(|b| b.len())
        );
        ensure!(t.store.exists(&k).await.doing("exists")?, "exists after put_new answered false");
    }
    Ok(())
}

async fn missing_keys_read_as_absent(t: &BlobUnderTest) -> Check {
    let present = key();
    t.store.put_new(&present, contents(1, 10)).await.doing("put_new")?;
    let missing = key();
    ensure!(t.store.get(&missing).await.doing("get")?.is_none(), "get of a missing key found bytes");
    ensure!(!t.store.exists(&missing).await.doing("exists")?, "exists of a missing key answered true");
    ensure!(t.store.read_marker().await.doing("read_marker")?.is_none(), "a fresh store holds a pairing marker");
    Ok(())
}

async fn put_new_never_overwrites(t: &BlobUnderTest) -> Check {
    let (k, original) = (key(), contents(1, 1000));
    t.store.put_new(&k, original.clone()).await.doing("put_new")?;
    match t.store.put_new(&k, contents(2, 500)).await {
        Ok(()) => return Err("a second put_new of the same key succeeded".into()),
        Err(e) if e.kind() == StoreErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("a second put_new failed as {:?}, expected AlreadyExists: {e}", e.kind())),
    }
    let got = t.store.get(&k).await.doing("get")?;
    ensure!(got.as_ref() == Some(&original), "a refused put_new changed the stored bytes");
    Ok(())
}

async fn concurrent_put_new_of_one_key_has_one_winner(t: &BlobUnderTest) -> Check {
    let k = key();
    let candidates: Vec<Bytes> = (0..8u8).map(|n| contents(n, 64 * 1024 + usize::from(n))).collect();
    let results = join_all(candidates.iter().map(|b| t.store.put_new(&k, b.clone()))).await;
    let mut winners = Vec::new();
    for (n, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => winners.push(n),
            Err(e) if e.kind() == StoreErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("a concurrent put_new failed as {:?}: {e}", e.kind())),
        }
    }
    ensure!(winners.len() == 1, "{} of 8 concurrent put_new calls of one key succeeded", winners.len());
    let got = t.store.get(&k).await.doing("get")?;
    ensure!(got.as_ref() == Some(&candidates[winners[0]]), "the stored bytes are not the successful put's");
    Ok(())
}

async fn delete_many_deletes_existing_and_ignores_missing(t: &BlobUnderTest) -> Check {
    let (a, b, kept, missing) = (key(), key(), key(), key());
    for k in [a, b, kept] {
        t.store.put_new(&k, contents(3, 100)).await.doing("put_new")?;
    }
    t.store.delete_many(&[a, missing, b, a]).await.doing("delete_many of present, missing and repeated keys")?;
    for k in [a, b] {
        ensure!(!t.store.exists(&k).await.doing("exists")?, "{k} still exists after delete_many");
        ensure!(t.store.get(&k).await.doing("get")?.is_none(), "{k} still reads after delete_many");
    }
    ensure!(t.store.exists(&kept).await.doing("exists")?, "delete_many removed a key it was not given");
    t.store.delete_many(&[a, b]).await.doing("delete_many of keys already gone")?;
    t.store.delete_many(&[]).await.doing("delete_many of no keys")?;
    Ok(())
}

async fn list_pages_cover_every_object_once(t: &BlobUnderTest) -> Check {
    let mut expected: HashMap<String, u64> = HashMap::new();
    for n in 0..7u8 {
        let (k, len) = (key(), 10 + usize::from(n));
        t.store.put_new(&k, contents(n, len)).await.doing("put_new")?;
        expected.insert(k.to_string(), len as u64);
    }
    // A key outside the layout must be listed too.
    t.store.create_marker(Bytes::from_static(b"{}")).await.doing("create_marker")?;
    expected.insert(PAIRING_MARKER_KEY.to_owned(), 2);
    for page_size in [1usize, 2, 1000] {
        let pages = list_all(t, page_size).await?;
        let mut seen: HashMap<String, u64> = HashMap::new();
        for page in &pages {
            ensure!(page.len() <= page_size, "a page of page_size {page_size} holds {} objects", page.len());
            for blob in page {
                ensure!(
                    seen.insert(blob.key.clone(), blob.size).is_none(),
                    "page_size {page_size}: {} listed twice",
                    blob.key
                );
            }
        }
        ensure!(seen == expected, "page_size {page_size}: listed {seen:?}, expected {expected:?}");
    }
    Ok(())
}

/// The key of an image minted `offset_ms` after `base`, with `tail` as its random part
/// (so its shard is `tail`'s low byte).
fn minted_key(base: Timestamp, offset_ms: i64, tail: u64) -> Result<BlobKey, String> {
    let ms = base.as_millis() + offset_ms;
    let id = format!("{:08x}-{:04x}-7000-8000-{tail:012x}", ms >> 16, ms & 0xffff);
    Ok(BlobKey::original(id.parse().map_err(|e| format!("suite bug: id {id}: {e}"))?))
}

async fn list_since_lists_exactly_the_images_minted_since_the_horizon(t: &BlobUnderTest) -> Check {
    let horizon = t.clock.now();
    let mut newer = HashSet::new();
    let mut older = HashSet::new();
    // Three shards, images on both sides of the horizon in each, one exactly at it.
    for (n, shard) in [0x01u64, 0x7f, 0xfe].into_iter().enumerate() {
        for (i, offset) in [-86_400_000i64, -1, 0, 1, 3_600_000].into_iter().enumerate() {
            let key = minted_key(horizon, offset, (n as u64 * 16 + i as u64) << 8 | shard)?;
            t.store.put_new(&key, contents(1, 4)).await.doing("put_new")?;
            if offset >= 0 { newer.insert(key.to_string()) } else { older.insert(key.to_string()) };
        }
    }
    t.store.put_new(&BlobKey::original(UuidV7Ids.next_image_id()), contents(2, 4)).await.doing("put_new")?;
    let pages: Vec<Vec<ListedBlob>> = t.store.list_since(horizon, 2).try_collect().await.doing("list_since")?;
    ensure!(pages.iter().all(|p| p.len() <= 2), "list_since(page_size 2) returned a page of more than 2");
    let listed: Vec<String> = pages.into_iter().flatten().map(|b| b.key).collect();
    let unique: HashSet<&String> = listed.iter().collect();
    ensure!(unique.len() == listed.len(), "list_since listed a key twice: {listed:?}");
    for key in &newer {
        ensure!(unique.contains(key), "list_since({horizon:?}) missed {key}, minted at or after it");
    }
    for key in &older {
        ensure!(!unique.contains(key), "list_since({horizon:?}) listed {key}, minted before it");
    }
    let everything: HashSet<String> = list_all(t, 1000).await?.into_iter().flatten().map(|b| b.key).collect();
    for key in &listed {
        ensure!(everything.contains(key), "list_since listed {key}, which list does not");
    }
    Ok(())
}

async fn list_reports_creation_times_and_sizes(t: &BlobUnderTest) -> Check {
    let mut puts = Vec::new();
    for n in 0..5u8 {
        let before = t.clock.now();
        let k = key();
        t.store.put_new(&k, contents(n, 100 + usize::from(n))).await.doing("put_new")?;
        puts.push((k.to_string(), before, 100 + u64::from(n)));
        // Spread the puts over several milliseconds (and timer ticks).
        tokio::time::sleep(Duration::from_millis(7)).await;
    }
    let listed: Vec<ListedBlob> = list_all(t, 1000).await?.into_iter().flatten().collect();
    let after = t.clock.now();
    let tolerance_ms = i64::try_from(CLOCK_TOLERANCE.as_millis()).unwrap_or(0);
    for (k, before, size) in puts {
        let Some(blob) = listed.iter().find(|b| b.key == k) else {
            return Err(format!("{k} is missing from the listing"));
        };
        ensure!(blob.size == size, "{k} is listed with size {}, expected {size}", blob.size);
        let earliest = Timestamp::from_millis(before.as_millis() - tolerance_ms);
        ensure!(
            blob.created >= earliest,
            "{k} is listed as created at {}, before the put started at {before} (beyond {CLOCK_TOLERANCE:?} tolerance)",
            blob.created
        );
        let latest = after.plus(t.timestamp_precision + CLOCK_TOLERANCE);
        ensure!(
            blob.created <= latest,
            "{k} is listed as created at {}, after the listing ended at {after}",
            blob.created
        );
    }
    Ok(())
}

async fn marker_is_create_only(t: &BlobUnderTest) -> Check {
    let first = Bytes::from_static(br#"{"cluster_id":"first"}"#);
    t.store.create_marker(first.clone()).await.doing("create_marker")?;
    let got = t.store.read_marker().await.doing("read_marker")?;
    ensure!(got.as_ref() == Some(&first), "read_marker returned {got:?}, expected what create_marker wrote");
    match t.store.create_marker(Bytes::from_static(b"second")).await {
        Ok(()) => return Err("a second create_marker succeeded".into()),
        Err(e) if e.kind() == StoreErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("a second create_marker failed as {:?}, expected AlreadyExists: {e}", e.kind())),
    }
    let got = t.store.read_marker().await.doing("read_marker")?;
    ensure!(got.as_ref() == Some(&first), "a refused create_marker changed the marker to {got:?}");
    Ok(())
}

async fn sweep_staging_keeps_every_object(t: &BlobUnderTest) -> Check {
    let mut stored = Vec::new();
    for n in 0..3u8 {
        let (k, bytes) = (key(), contents(n, 50));
        t.store.put_new(&k, bytes.clone()).await.doing("put_new")?;
        stored.push((k, bytes));
    }
    t.store.create_marker(Bytes::from_static(b"{}")).await.doing("create_marker")?;
    // A cutoff in the future makes every staging file old enough: only real objects
    // must survive.
    t.store.sweep_staging(t.clock.now().plus(Duration::from_secs(3600))).await.doing("sweep_staging")?;
    for (k, bytes) in &stored {
        let got = t.store.get(k).await.doing("get")?;
        ensure!(got.as_ref() == Some(bytes), "{k} changed or vanished in sweep_staging");
    }
    ensure!(t.store.read_marker().await.doing("read_marker")?.is_some(), "sweep_staging removed the pairing marker");
    let listed: HashSet<String> = list_all(t, 1000).await?.into_iter().flatten().map(|b| b.key).collect();
    ensure!(listed.len() == stored.len() + 1, "after sweep_staging the listing holds {listed:?}");
    Ok(())
}

async fn probe_clock_reports_the_time_of_its_put(t: &BlobUnderTest) -> Check {
    for _ in 0..2 {
        let before = t.clock.now();
        let probe = t.store.probe_clock().await.doing("probe_clock")?;
        let after = t.clock.now();
        ensure!(probe.precision <= Duration::from_secs(1), "a probe precision of {:?} is too coarse", probe.precision);
        // The store's clock truncates to its precision; the stores under test share
        // this machine's clock, so allow that and a little scheduling.
        let slack = probe.precision + Duration::from_millis(50);
        let earliest = Timestamp::from_millis(before.as_millis() - i64::try_from(slack.as_millis()).unwrap_or(0));
        ensure!(
            earliest <= probe.created && probe.created <= after.plus(Duration::from_millis(50)),
            "the probe was stamped {} for a put between {before} and {after}",
            probe.created
        );
    }
    let listed: Vec<String> = list_all(t, 100).await?.into_iter().flatten().map(|b| b.key).collect();
    ensure!(
        listed.iter().filter(|k| *k == profilestore_core::store::CLOCK_PROBE_KEY).count() == 1,
        "probing twice left {listed:?}, not one probe object"
    );
    Ok(())
}

async fn ping_answers(t: &BlobUnderTest) -> Check {
    t.store.ping().await.doing("ping")
}
