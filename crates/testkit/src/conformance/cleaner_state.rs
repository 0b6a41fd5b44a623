//! The metadata-store checks of the cleaner's state: the superseded-image queue the
//! record changes fill, and the sweep marks completed cycles store.

use std::collections::HashSet;
use std::time::Duration;

use profilestore_core::ids::ImageId;
use profilestore_core::store::{CommitOutcome, SweepMarks};
use profilestore_core::time::Timestamp;

use super::metadata::{Check, delete, earlier, image, put, record, user};
use super::{Doing, MetadataUnderTest};

const HOUR: Duration = Duration::from_secs(3600);

async fn queued(t: &MetadataUnderTest) -> Result<u64, String> {
    t.store.count_superseded().await.doing("count_superseded")
}

fn set(ids: &[ImageId]) -> HashSet<ImageId> {
    ids.iter().copied().collect()
}

pub(super) async fn replace_and_delete_queue_the_old_image_in_the_same_change(t: &MetadataUnderTest) -> Check {
    let (a, b) = (image(), image());
    put(t, &record("alice", a, r#"{"v":1}"#)?).await?;
    ensure!(queued(t).await? == 0, "a first write queued an image");
    put(t, &record("alice", a, r#"{"v":2}"#)?).await?;
    ensure!(queued(t).await? == 0, "a replace naming the same image queued it");
    let late = record("alice", image(), "{}")?;
    let outcome = t.store.put_before(&late, &earlier(t, Duration::from_secs(10))).await.doing("put_before")?;
    ensure!(outcome == CommitOutcome::DeadlineExceeded, "a late replace answered {outcome:?}");
    ensure!(queued(t).await? == 0, "a replace refused at its deadline queued the image it did not replace");
    put(t, &record("alice", b, "{}")?).await?;
    ensure!(queued(t).await? == 1, "a replace naming a new image did not queue the old one");
    delete(t, &user("alice")?).await?;
    ensure!(queued(t).await? == 2, "a delete did not queue its record's image");

    let claim = t.store.claim_superseded(Duration::ZERO, 100).await.doing("claim_superseded")?;
    ensure!(set(&claim.due) == set(&[a, b]), "with no delay the claim answered {claim:?}, not both images as due");
    ensure!(claim.first_seen == 2 && claim.named.is_empty(), "the claim answered {claim:?}");
    let forgotten = t.store.forget_superseded(&[a, b, image()]).await.doing("forget_superseded")?;
    ensure!(forgotten == 2, "forgetting two entries and an unknown id removed {forgotten}");
    ensure!(queued(t).await? == 0, "forgotten entries are still queued");
    ensure!(t.store.forget_superseded(&[a]).await.doing("forget_superseded")? == 0, "forgot an entry twice");
    Ok(())
}

pub(super) async fn claim_counts_the_delay_from_first_sight(t: &MetadataUnderTest) -> Check {
    let a = image();
    put(t, &record("bob", a, "{}")?).await?;
    put(t, &record("bob", image(), "{}")?).await?;
    let first = t.store.claim_superseded(HOUR, 100).await.doing("claim_superseded")?;
    ensure!(first.first_seen == 1, "the first claim stamped {} entries, not 1", first.first_seen);
    ensure!(first.due.is_empty() && first.named.is_empty(), "an entry first seen now was due after 1 h: {first:?}");
    let second = t.store.claim_superseded(HOUR, 100).await.doing("claim_superseded")?;
    ensure!(second.first_seen == 0, "an entry was stamped twice: {second:?}");
    ensure!(second.due.is_empty(), "an entry seen moments ago was due after 1 h: {second:?}");
    let now = t.store.claim_superseded(Duration::ZERO, 100).await.doing("claim_superseded")?;
    ensure!(now.due == vec![a], "with no delay the claim answered {now:?}");
    ensure!(queued(t).await? == 1, "a claim removed its entry; only forget_superseded may");
    Ok(())
}

pub(super) async fn claim_answers_oldest_first_up_to_the_limit(t: &MetadataUnderTest) -> Check {
    let first = image();
    put(t, &record("carol", first, "{}")?).await?;
    put(t, &record("carol", image(), "{}")?).await?;
    t.store.claim_superseded(HOUR, 100).await.doing("claim_superseded")?;
    // Wait for the database's clock to move past the first stamp, so the later entries
    // are stamped strictly later.
    let stamped = t.store.clock().await.doing("clock")?;
    while t.store.clock().await.doing("clock")? <= stamped {
        tokio::task::yield_now().await;
    }
    for n in 0..3 {
        put(t, &record(&format!("dave-{n}"), image(), "{}")?).await?;
        delete(t, &user(&format!("dave-{n}"))?).await?;
    }
    let claim = t.store.claim_superseded(Duration::ZERO, 2).await.doing("claim_superseded")?;
    ensure!(claim.first_seen == 3, "the claim stamped {} new entries, not 3", claim.first_seen);
    ensure!(claim.due.len() == 2, "a claim with limit 2 answered {} due entries", claim.due.len());
    ensure!(claim.due[0] == first, "the entry seen first was not answered first: {claim:?}");
    Ok(())
}

pub(super) async fn claim_separates_images_a_record_names_again(t: &MetadataUnderTest) -> Check {
    let shared = image();
    put(t, &record("erin", shared, "{}")?).await?;
    put(t, &record("erin", image(), "{}")?).await?;
    put(t, &record("frank", shared, "{}")?).await?;
    let claim = t.store.claim_superseded(Duration::ZERO, 100).await.doing("claim_superseded")?;
    ensure!(claim.named == vec![shared] && claim.due.is_empty(), "a re-named image was answered as {claim:?}");
    Ok(())
}

pub(super) async fn sweep_marks_only_move_forward(t: &MetadataUnderTest) -> Check {
    let ms = Timestamp::from_millis;
    let marks = t.store.sweep_marks().await.doing("sweep_marks")?;
    ensure!(marks == SweepMarks::default(), "a fresh store holds marks {marks:?}");
    let steps = [
        (ms(100_000), None, (Some(ms(100_000)), None)),
        (ms(50_000), Some(ms(10_000)), (Some(ms(100_000)), Some(ms(10_000)))),
        (ms(200_000), Some(ms(5_000)), (Some(ms(200_000)), Some(ms(10_000)))),
        (ms(150_000), Some(ms(20_000)), (Some(ms(200_000)), Some(ms(20_000)))),
    ];
    for (horizon, full, (want_horizon, want_full)) in steps {
        let stored = t.store.record_sweep(horizon, full).await.doing("record_sweep")?;
        let want = SweepMarks { listing_horizon: want_horizon, last_full_sweep: want_full };
        ensure!(stored == want, "record_sweep({horizon:?}, {full:?}) left {stored:?}, expected {want:?}");
        let read = t.store.sweep_marks().await.doing("sweep_marks")?;
        ensure!(read == stored, "sweep_marks read {read:?} after record_sweep answered {stored:?}");
    }
    Ok(())
}
