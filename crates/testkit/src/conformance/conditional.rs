//! The metadata-store checks of conditional changes: a write or delete with a
//! [`Precondition`] changes the record only when the current one meets it, checked in
//! the change's own transaction.

use std::time::Duration;

use futures::future::join_all;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, Precondition, Record};

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
