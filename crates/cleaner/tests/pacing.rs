//! Delete requests keep to their batch size and the cleaner's delete rate, on a paused
//! Tokio clock: the deletes' times are read from the store hook, never waited for.

mod common;

use std::time::Duration;

use common::{H, World, config};
use profilestore_cleaner::{CleanerConfig, DeleteRate, Outcome};
use profilestore_core::time::Timestamp;

const OLD: Duration = Duration::from_secs(3 * 3600);

/// Runs one cycle over 30 old orphans listed 10 to a page, and returns the delete
/// requests it made: when each went out and how many keys it named.
async fn deletes_of_a_cycle(config: CleanerConfig) -> Vec<(Timestamp, usize)> {
    let w = World::new();
    let orphans: Vec<_> = (0..30).map(|n| w.orphan(n, OLD)).collect();
    w.profile(100, OLD).await;
    let report = w.cleaner(config).run_cycle().await;
    assert_eq!(report.outcome, Outcome::Completed, "{report}");
    assert_eq!(report.deleted, 30);
    assert!(orphans.iter().all(|&id| !w.has(id)), "every orphan is deleted");
    let mut deletes: Vec<(Timestamp, usize)> =
        w.hook.deletes.lock().unwrap().iter().map(|(at, keys)| (*at, keys.len())).collect();
    deletes.sort();
    deletes
}

#[tokio::test(start_paused = true)]
async fn delete_requests_keep_to_the_batch_size_and_the_rate() {
    let rate: DeleteRate = "10/s".parse().unwrap();
    let paced = deletes_of_a_cycle(CleanerConfig {
        delete_batch_size: 4,
        delete_rate: Some(rate),
        // Shorter than the whole paced run (2.8 s): waiting for a turn is not part of
        // any store call.
        call_timeout: Duration::from_secs(1),
        ..config(10)
    })
    .await;

    // The pages' batches (about 10 images each) go out in requests of at most 4 keys.
    assert_eq!(paced.iter().map(|d| d.1).sum::<usize>(), 30);
    assert!(paced.iter().all(|&(_, keys)| keys <= 4), "a request above the batch size: {paced:?}");
    assert!(paced.len() >= 8, "{paced:?}");
    // Each request starts no sooner than the keys before it allow at 10 per second.
    for pair in paced.windows(2) {
        let ((before, keys), (next, _)) = (pair[0], pair[1]);
        let gap = next.saturating_since(before);
        assert!(gap >= rate.time_for(keys as u64), "{keys} keys, then the next request {gap:?} later: {paced:?}");
    }
    let (first, last) = (paced[0], paced[paced.len() - 1]);
    let span = last.0.saturating_since(first.0);
    assert!(span >= rate.time_for(30 - last.1 as u64), "{} keys before the last request in {span:?}", 30 - last.1);
    // ...and no later than needed: the batches were all due after one delete delay.
    assert!(span < Duration::from_secs(4), "{span:?}");

    // Without a rate, the same cycle sends every request as soon as it is due.
    let unpaced = deletes_of_a_cycle(CleanerConfig { delete_batch_size: 4, ..config(10) }).await;
    assert_eq!(unpaced.len(), paced.len());
    let spread = unpaced[unpaced.len() - 1].0.saturating_since(unpaced[0].0);
    assert!(spread < Duration::from_millis(100), "unpaced requests spread over {spread:?}");
    assert!(unpaced[0].0.saturating_since(common::T0) >= H, "deleted before the delete delay");
}

#[tokio::test(start_paused = true)]
async fn full_batches_go_out_whole_and_paced_batches_take_the_rate_s_time() {
    // 30 images in one page: one request of 30 keys (the batch size is 1000).
    let one = deletes_of_a_cycle(config(1000)).await;
    assert_eq!(one.iter().map(|d| d.1).collect::<Vec<_>>(), vec![30]);
    // At 15 keys a minute, requests of 15 keys go out a minute apart.
    let paced = deletes_of_a_cycle(CleanerConfig {
        delete_batch_size: 15,
        delete_rate: Some("15/min".parse().unwrap()),
        ..config(1000)
    })
    .await;
    assert_eq!(paced.iter().map(|d| d.1).collect::<Vec<_>>(), vec![15, 15]);
    assert_eq!(paced[1].0.saturating_since(paced[0].0), Duration::from_secs(60));
}
