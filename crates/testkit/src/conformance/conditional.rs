//! The metadata-store checks of conditional changes: a write or delete with a
//! [`Precondition`] changes the record only when the current one meets it, checked in
//! the change's own transaction; and keyed writes, whose idempotency key is stored
//! with the record.

use std::time::Duration;

use futures::future::join_all;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, Precondition, Record};

use super::metadata::{Check, image, later, put, record, user};
use super::{Doing, MetadataUnderTest};

const HOUR: Duration = Duration::from_secs(3600);

async fn put_if(t: &MetadataUnderTest, r: &Record, precondition: Precondition) -> Result<CommitOutcome, String> {
    t.store.put_if_before(r, &precondition, &later(t, HOUR)).await.doing("put_if_before")
}

fn is(r: &Record) -> Precondition {
    Precondition::Is { image_id: r.image_id, metadata: r.metadata.clone() }
}

async fn current(t: &MetadataUnderTest, name: &str) -> Result<Option<Record>, String> {
    t.store.get(&user(name)?).await.doing("get")
}

pub(super) async fn conditional_put_checks_the_current_record(t: &MetadataUnderTest) -> Check {
    let first = record("alice", image(), r#"{"v":1}"#)?;
    ensure!(
        put_if(t, &first, Precondition::Present).await? == CommitOutcome::PreconditionFailed,
        "Present on no record wrote"
    );
    let stale = record("alice", image(), "{}")?;
    ensure!(put_if(t, &first, is(&stale)).await? == CommitOutcome::PreconditionFailed, "Is on no record wrote");
    ensure!(current(t, "alice").await?.is_none(), "a refused conditional write left a record");
    ensure!(put_if(t, &first, Precondition::Absent).await? == CommitOutcome::Committed, "Absent on no record refused");

    let second = record("alice", image(), r#"{"v":2}"#)?;
    ensure!(
        put_if(t, &second, Precondition::Absent).await? == CommitOutcome::PreconditionFailed,
        "Absent replaced a record"
    );
    let other_image = Precondition::Is { image_id: image(), metadata: first.metadata.clone() };
    ensure!(put_if(t, &second, other_image).await? == CommitOutcome::PreconditionFailed, "Is with another image wrote");
    // Same image, other metadata: a metadata-only update in between changed the version.
    let other_metadata = Precondition::Is { image_id: first.image_id, metadata: r#"{"v":0}"#.to_owned() };
    ensure!(
        put_if(t, &second, other_metadata).await? == CommitOutcome::PreconditionFailed,
        "Is with other metadata wrote"
    );
    ensure!(current(t, "alice").await?.as_ref() == Some(&first), "a refused conditional write changed the record");

    ensure!(put_if(t, &second, is(&first)).await? == CommitOutcome::Committed, "Is of the current record refused");
    ensure!(current(t, "alice").await?.as_ref() == Some(&second), "the compare-and-set did not store the new record");
    let third = record("alice", image(), r#"{"v":3}"#)?;
    ensure!(put_if(t, &third, Precondition::Present).await? == CommitOutcome::Committed, "Present on a record refused");
    Ok(())
}

pub(super) async fn conditional_delete_checks_the_current_record(t: &MetadataUnderTest) -> Check {
    let kept = record("alice", image(), r#"{"v":1}"#)?;
    put(t, &kept).await?;
    let delete_if = |precondition: Precondition| async move {
        t.store.delete_if_before(&user("alice")?, &precondition, &later(t, HOUR)).await.doing("delete_if_before")
    };
    let stale = Precondition::Is { image_id: image(), metadata: kept.metadata.clone() };
    ensure!(delete_if(stale.clone()).await? == DeleteOutcome::PreconditionFailed, "Is with another image deleted");
    ensure!(delete_if(Precondition::Absent).await? == DeleteOutcome::PreconditionFailed, "Absent deleted a record");
    ensure!(current(t, "alice").await?.as_ref() == Some(&kept), "a refused conditional delete changed the record");
    ensure!(delete_if(is(&kept)).await? == DeleteOutcome::Deleted, "Is of the current record did not delete");
    ensure!(current(t, "alice").await?.is_none(), "the conditional delete left the record");
    // Nothing to delete: "not found", whatever was expected of it.
    ensure!(delete_if(stale).await? == DeleteOutcome::NotFound, "Is on no record did not answer NotFound");
    ensure!(delete_if(Precondition::Present).await? == DeleteOutcome::NotFound, "Present on no record: not NotFound");
    Ok(())
}

/// Many compare-and-sets of one record at once, each naming the record all of them
/// read: exactly one wins (a lost update otherwise), and the record is the winner's.
pub(super) async fn concurrent_compare_and_sets_let_exactly_one_win(t: &MetadataUnderTest) -> Check {
    let read = record("alice", image(), r#"{"v":0}"#)?;
    put(t, &read).await?;
    let writes: Vec<Record> =
        (1..=8).map(|n| record("alice", image(), &format!(r#"{{"v":{n}}}"#))).collect::<Result<_, _>>()?;
    let deadline = later(t, HOUR);
    let expected = is(&read);
    let outcomes = join_all(writes.iter().map(|w| t.store.put_if_before(w, &expected, &deadline))).await;
    let mut winners = Vec::new();
    for (w, outcome) in writes.iter().zip(outcomes) {
        match outcome.doing("put_if_before")? {
            CommitOutcome::Committed => winners.push(w),
            CommitOutcome::PreconditionFailed => {}
            other => return Err(format!("a compare-and-set answered {other:?}")),
        }
    }
    ensure!(winners.len() == 1, "{} of 8 compare-and-sets of one version won", winners.len());
    ensure!(current(t, "alice").await?.as_ref() == Some(winners[0]), "the record is not the winner's");
    Ok(())
}

/// A refused precondition refuses only its own change: changes of other users made at
/// the same time (one transaction, where a store batches them) all land.
pub(super) async fn a_failed_precondition_fails_only_its_own_change(t: &MetadataUnderTest) -> Check {
    let existing = record("taken", image(), "{}")?;
    put(t, &existing).await?;
    let refused = record("taken", image(), r#"{"new":true}"#)?;
    let others: Vec<Record> = (0..6).map(|n| record(&format!("u{n}"), image(), "{}")).collect::<Result<_, _>>()?;
    let deadline = later(t, HOUR);
    let create_only = Precondition::Absent;
    let (refused_outcome, outcomes) = futures::join!(
        t.store.put_if_before(&refused, &create_only, &deadline),
        join_all(others.iter().map(|r| t.store.put_if_before(r, &Precondition::Any, &deadline)))
    );
    let refused_outcome = refused_outcome.doing("put_if_before")?;
    ensure!(
        refused_outcome == CommitOutcome::PreconditionFailed,
        "create-only over a record answered {refused_outcome:?}"
    );
    for (r, outcome) in others.iter().zip(outcomes) {
        let outcome = outcome.doing("put_if_before")?;
        ensure!(outcome == CommitOutcome::Committed, "{}'s write beside a refused one answered {outcome:?}", r.user_id);
    }
    ensure!(current(t, "taken").await?.as_ref() == Some(&existing), "the refused create changed the record");
    Ok(())
}

fn key(name: &str, fingerprint: &str) -> IdempotencyKey {
    IdempotencyKey { key: name.to_owned(), fingerprint: fingerprint.to_owned(), keep_for: HOUR }
}

async fn put_keyed(t: &MetadataUnderTest, r: &Record, k: &IdempotencyKey) -> Result<KeyedOutcome, String> {
    t.store.put_keyed_before(r, &Precondition::Any, k, &later(t, HOUR)).await.doing("put_keyed_before")
}

fn earlier(record: &Record, fingerprint: &str) -> KeyedOutcome {
    KeyedOutcome::Earlier { record: record.clone(), fingerprint: fingerprint.to_owned() }
}

/// A retry with the key of a committed write writes nothing and answers that write's
/// record and fingerprint, whatever happened to the profile since; keys are per user.
pub(super) async fn a_keyed_write_is_answered_again_not_written_twice(t: &MetadataUnderTest) -> Check {
    let first = record("alice", image(), r#"{"v":1}"#)?;
    let k = key("k-1", "fp-a");
    ensure!(put_keyed(t, &first, &k).await? == KeyedOutcome::Committed, "a first keyed write did not commit");
    let retry = record("alice", image(), r#"{"v":1}"#)?;
    let outcome = put_keyed(t, &retry, &k).await?;
    ensure!(outcome == earlier(&first, "fp-a"), "a retry with the key answered {outcome:?}");
    ensure!(current(t, "alice").await?.as_ref() == Some(&first), "the retry wrote");
    let replaced = record("alice", image(), r#"{"v":2}"#)?;
    put(t, &replaced).await?;
    let outcome = put_keyed(t, &retry, &key("k-1", "fp-other")).await?;
    ensure!(outcome == earlier(&first, "fp-a"), "after a replacement, a retry answered {outcome:?}");
    ensure!(current(t, "alice").await?.as_ref() == Some(&replaced), "a late retry wrote over the replacement");
    let other_user = record("bob", image(), "{}")?;
    ensure!(put_keyed(t, &other_user, &k).await? == KeyedOutcome::Committed, "another user's key of the same name");
    Ok(())
}

/// A keyed write refused (its precondition, its deadline) stores no key: a retry
/// with the same key may still write.
pub(super) async fn a_refused_keyed_write_keeps_no_key(t: &MetadataUnderTest) -> Check {
    let r = record("alice", image(), "{}")?;
    let k = key("k-2", "fp");
    let refused = t.store.put_keyed_before(&r, &Precondition::Present, &k, &later(t, HOUR)).await;
    ensure!(refused.doing("put_keyed_before")? == KeyedOutcome::PreconditionFailed, "Present on no record wrote");
    let late = t.store.put_keyed_before(&r, &Precondition::Any, &k, &super::metadata::earlier(t, HOUR)).await;
    ensure!(late.doing("put_keyed_before")? == KeyedOutcome::DeadlineExceeded, "a late keyed write wrote");
    ensure!(put_keyed(t, &r, &k).await? == KeyedOutcome::Committed, "a refused attempt kept its key");
    Ok(())
}

/// Eight attempts with one key at once: exactly one writes, and every other answers
/// its record.
pub(super) async fn concurrent_attempts_with_one_key_write_once(t: &MetadataUnderTest) -> Check {
    let attempts: Vec<Record> = (0..8).map(|_| record("alice", image(), "{}")).collect::<Result<_, _>>()?;
    let k = key("k-3", "fp");
    let deadline = later(t, HOUR);
    let outcomes =
        join_all(attempts.iter().map(|r| t.store.put_keyed_before(r, &Precondition::Any, &k, &deadline))).await;
    let outcomes: Vec<KeyedOutcome> =
        outcomes.into_iter().map(|o| o.doing("put_keyed_before")).collect::<Result<_, _>>()?;
    let winners: Vec<&Record> =
        attempts.iter().zip(&outcomes).filter(|(_, o)| **o == KeyedOutcome::Committed).map(|(r, _)| r).collect();
    ensure!(winners.len() == 1, "{} of 8 attempts with one key wrote: {outcomes:?}", winners.len());
    for outcome in &outcomes {
        ensure!(
            *outcome == KeyedOutcome::Committed || *outcome == earlier(winners[0], "fp"),
            "an attempt answered {outcome:?}, not the winner's record"
        );
    }
    ensure!(current(t, "alice").await?.as_ref() == Some(winners[0]), "the record is not the winner's");
    Ok(())
}

/// A key kept for no time names nothing once it has expired: the next write with it
/// writes.
pub(super) async fn an_expired_key_names_nothing(t: &MetadataUnderTest) -> Check {
    let fleeting = IdempotencyKey { keep_for: Duration::ZERO, ..key("k-4", "fp") };
    let first = record("alice", image(), "{}")?;
    ensure!(put_keyed(t, &first, &fleeting).await? == KeyedOutcome::Committed, "a keyed write did not commit");
    let second = record("alice", image(), "{}")?;
    let outcome = put_keyed(t, &second, &fleeting).await?;
    ensure!(outcome == KeyedOutcome::Committed, "a write with an expired key answered {outcome:?}");
    ensure!(current(t, "alice").await?.as_ref() == Some(&second), "the write with an expired key did not land");
    Ok(())
}
