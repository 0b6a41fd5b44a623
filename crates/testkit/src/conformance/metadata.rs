//! The metadata-store suite: each check is named for the promise it checks.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use profilestore_core::error::StoreErrorKind;
use profilestore_core::ids::{IdSource, ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{CommitOutcome, DeleteOutcome, Pairing, Record};
use profilestore_core::time::{Deadline, Time, Timestamp};
use profilestore_runtime::UuidV7Ids;

use super::cleaner_state::*;
use super::conditional::*;
use super::{Doing, MetadataUnderTest, Report};

pub(super) type Check = Result<(), String>;

/// Generous: the suite checks deadlines, not speed.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How many checks the suite has: a run with fewer fails `assert_passed`.
const CHECKS: usize = 35;

pub(super) async fn run<F, Fut>(make: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = MetadataUnderTest>,
{
    let mut report = Report::new("metadata store", CHECKS);
    macro_rules! checks {
        ($($check:ident),* $(,)?) => {
            $( report.run(stringify!($check), make().await, |t| async move { $check(&t).await }).await; )*
        };
    }
    checks!(
        empty_store_answers_nothing,
        put_then_get_round_trips_every_field,
        put_replaces_the_whole_record,
        past_deadline_writes_nothing,
        past_deadline_leaves_the_existing_record,
        future_deadline_commits,
        run_out_request_time_writes_nothing,
        past_deadline_deletes_nothing,
        delete_removes_only_that_record,
        referenced_answers_exactly_the_referenced_subset,
        referenced_follows_replace_and_delete,
        names_image_follows_replace_and_delete,
        referenced_answers_large_inputs,
        records_after_pages_in_byte_order,
        pairing_is_create_if_absent,
        concurrent_pairings_agree,
        update_timings_replaces_only_the_timings,
        bound_timings_refuse_every_guarded_call_once_changed,
        concurrent_writes_to_distinct_users_all_land,
        concurrent_writes_to_one_user_leave_one_whole_record,
        clock_reads_the_databases_time,
        ping_answers,
        replace_and_delete_queue_the_old_image_in_the_same_change,
        claim_counts_the_delay_from_first_sight,
        claim_answers_oldest_first_up_to_the_limit,
        claim_separates_images_a_record_names_again,
        sweep_marks_only_move_forward,
        conditional_put_checks_the_current_record,
        conditional_delete_checks_the_current_record,
        concurrent_compare_and_sets_let_exactly_one_win,
        a_failed_precondition_fails_only_its_own_change,
        a_keyed_write_is_answered_again_not_written_twice,
        a_refused_keyed_write_keeps_no_key,
        concurrent_attempts_with_one_key_write_once,
        an_expired_key_names_nothing,
    );
    report
}

pub(super) fn user(s: &str) -> Result<UserId, String> {
    UserId::parse(s).map_err(|e| format!("suite bug: user id {s:?}: {e}"))
}

pub(super) fn image() -> ImageId {
    UuidV7Ids.next_image_id()
}

pub(super) fn record(user_id: &str, image_id: ImageId, metadata: &str) -> Result<Record, String> {
    Ok(Record {
        user_id: user(user_id)?,
        metadata: metadata.to_owned(),
        image_id,
        content_type: "image/png".to_owned(),
        image_size: 1234,
        updated_at: Timestamp::from_millis(1_700_000_000_123),
    })
}

/// A deadline `by` ahead on both clocks.
pub(super) fn later(t: &MetadataUnderTest, by: Duration) -> Deadline {
    Deadline::after(t.clock.clone(), by)
}

/// A deadline `by` in the past by the store's clock, with time left on the ticks: only
/// the store's own clock can refuse it.
pub(super) fn earlier(t: &MetadataUnderTest, by: Duration) -> Deadline {
    let at =
        Timestamp::from_millis(t.clock.now().as_millis().saturating_sub(i64::try_from(by.as_millis()).unwrap_or(0)));
    Deadline::new(t.clock.clone(), at, TIMEOUT)
}

/// A deadline an hour ahead by the store's clock whose time on the ticks has run out:
/// only the writer's own tick clock can refuse it (a wall clock stepped backwards).
fn ticks_run_out(t: &MetadataUnderTest) -> Deadline {
    Deadline::new(t.clock.clone(), t.clock.now().plus(Duration::from_secs(3600)), Duration::ZERO)
}

pub(super) async fn delete(t: &MetadataUnderTest, user_id: &UserId) -> Result<DeleteOutcome, String> {
    t.store.delete_before(user_id, &later(t, Duration::from_secs(3600))).await.doing("delete_before")
}

pub(super) async fn put(t: &MetadataUnderTest, r: &Record) -> Check {
    let outcome = t.store.put_before(r, &later(t, Duration::from_secs(3600))).await.doing("put_before")?;
    ensure!(outcome == CommitOutcome::Committed, "put_before with a deadline 1 h ahead answered {outcome:?}");
    Ok(())
}

async fn empty_store_answers_nothing(t: &MetadataUnderTest) -> Check {
    ensure!(t.store.get(&user("nobody")?).await.doing("get")?.is_none(), "get of an unknown user found a record");
    ensure!(t.store.count_records().await.doing("count_records")? == 0, "an empty store counts records");
    ensure!(!t.store.has_records().await.doing("has_records")?, "an empty store says it has records");
    ensure!(t.store.records_after(None, 10).await.doing("records_after")?.is_empty(), "an empty store lists records");
    ensure!(t.store.read_pairing().await.doing("read_pairing")?.is_none(), "an empty store holds a pairing");
    let referenced = t.store.referenced(&[image(), image()]).await.doing("referenced")?;
    ensure!(referenced.is_empty(), "an empty store references {referenced:?}");
    let outcome = delete(t, &user("nobody")?).await?;
    ensure!(outcome == DeleteOutcome::NotFound, "delete of an unknown user answered {outcome:?}");
    Ok(())
}

async fn put_then_get_round_trips_every_field(t: &MetadataUnderTest) -> Check {
    // Text that trips naive quoting or encoding, and values at their limits.
    let metadata =
        r#"{"name":"Zoë 🎉 李","quote":"'; DROP TABLE profiles; --","esc":"\u0000\n\t\"","n":[1,2.5,null,true]}"#;
    let longest = format!("{}._-Z9", "a".repeat(UserId::MAX_LEN - 5));
    let mut first = record(&longest, image(), metadata)?;
    first.content_type = "image/webp; q=\"x\"".to_owned();
    first.image_size = i64::MAX as u64;
    first.updated_at = Timestamp::from_millis(1_234_567_890_987);
    let mut big = record("big", image(), &format!("{{\"blob\":\"{}\"}}", "x".repeat(256 * 1024)))?;
    big.image_size = 0;
    for r in [&first, &big] {
        put(t, r).await?;
        let got = t.store.get(&r.user_id).await.doing("get")?;
        ensure!(got.as_ref() == Some(r), "get after put returned {got:?}, expected the record written");
    }
    ensure!(t.store.count_records().await.doing("count_records")? == 2, "two puts of two users do not count 2");
    Ok(())
}

async fn put_replaces_the_whole_record(t: &MetadataUnderTest) -> Check {
    put(t, &record("alice", image(), r#"{"v":1}"#)?).await?;
    let mut second = record("alice", image(), r#"{"v":2}"#)?;
    second.content_type = "image/jpeg".to_owned();
    second.image_size = 99;
    second.updated_at = Timestamp::from_millis(1_800_000_000_000);
    put(t, &second).await?;
    let got = t.store.get(&second.user_id).await.doing("get")?;
    ensure!(got.as_ref() == Some(&second), "after a replace get returned {got:?}, expected {second:?}");
    ensure!(t.store.count_records().await.doing("count_records")? == 1, "a replace changed the record count from 1");
    Ok(())
}

async fn past_deadline_writes_nothing(t: &MetadataUnderTest) -> Check {
    for (name, by) in [("10 s", Duration::from_secs(10)), ("1 h", Duration::from_secs(3600))] {
        let r = record(&format!("late-{}", by.as_secs()), image(), "{}")?;
        let outcome = t.store.put_before(&r, &earlier(t, by)).await.doing("put_before")?;
        ensure!(outcome == CommitOutcome::DeadlineExceeded, "a deadline {name} in the past answered {outcome:?}");
        let got = t.store.get(&r.user_id).await.doing("get")?;
        ensure!(got.is_none(), "a write past its deadline ({name}) stored {got:?}");
        let referenced = t.store.referenced(&[r.image_id]).await.doing("referenced")?;
        ensure!(referenced.is_empty(), "a write past its deadline ({name}) left its image referenced");
    }
    ensure!(t.store.count_records().await.doing("count_records")? == 0, "late writes changed the record count");
    Ok(())
}

async fn past_deadline_leaves_the_existing_record(t: &MetadataUnderTest) -> Check {
    let original = record("bob", image(), r#"{"v":"original"}"#)?;
    put(t, &original).await?;
    let late = record("bob", image(), r#"{"v":"late"}"#)?;
    let outcome = t.store.put_before(&late, &earlier(t, Duration::from_secs(10))).await.doing("put_before")?;
    ensure!(outcome == CommitOutcome::DeadlineExceeded, "a replace 10 s past its deadline answered {outcome:?}");
    let got = t.store.get(&original.user_id).await.doing("get")?;
    ensure!(got.as_ref() == Some(&original), "a replace past its deadline changed the record to {got:?}");
    Ok(())
}

async fn future_deadline_commits(t: &MetadataUnderTest) -> Check {
    for (name, by) in [("10 s", Duration::from_secs(10)), ("1 h", Duration::from_secs(3600))] {
        let r = record(&format!("early-{}", by.as_secs()), image(), "{}")?;
        let outcome = t.store.put_before(&r, &later(t, by)).await.doing("put_before")?;
        ensure!(outcome == CommitOutcome::Committed, "a deadline {name} ahead answered {outcome:?}");
        let got = t.store.get(&r.user_id).await.doing("get")?;
        ensure!(got.as_ref() == Some(&r), "a write {name} before its deadline stored {got:?}");
    }
    Ok(())
}

async fn run_out_request_time_writes_nothing(t: &MetadataUnderTest) -> Check {
    let original = record("carol", image(), r#"{"v":"original"}"#)?;
    put(t, &original).await?;
    let late = record("carol", image(), r#"{"v":"late"}"#)?;
    let outcome = t.store.put_before(&late, &ticks_run_out(t)).await.doing("put_before")?;
    ensure!(outcome == CommitOutcome::DeadlineExceeded, "a write whose request time ran out answered {outcome:?}");
    let got = t.store.get(&original.user_id).await.doing("get")?;
    ensure!(got.as_ref() == Some(&original), "a write whose request time ran out changed the record to {got:?}");
    let outcome = t.store.delete_before(&original.user_id, &ticks_run_out(t)).await.doing("delete_before")?;
    ensure!(outcome == DeleteOutcome::DeadlineExceeded, "a delete whose request time ran out answered {outcome:?}");
    ensure!(t.store.get(&original.user_id).await.doing("get")?.is_some(), "a late delete removed the record");
    Ok(())
}

async fn past_deadline_deletes_nothing(t: &MetadataUnderTest) -> Check {
    let kept = record("dave", image(), "{}")?;
    put(t, &kept).await?;
    for (name, by) in [("10 s", Duration::from_secs(10)), ("1 h", Duration::from_secs(3600))] {
        let outcome = t.store.delete_before(&kept.user_id, &earlier(t, by)).await.doing("delete_before")?;
        ensure!(outcome == DeleteOutcome::DeadlineExceeded, "a delete {name} past its deadline answered {outcome:?}");
        let got = t.store.get(&kept.user_id).await.doing("get")?;
        ensure!(got.as_ref() == Some(&kept), "a delete {name} past its deadline left {got:?}");
    }
    let outcome = t.store.delete_before(&user("nobody")?, &earlier(t, Duration::from_secs(10))).await;
    let outcome = outcome.doing("delete_before")?;
    ensure!(outcome == DeleteOutcome::DeadlineExceeded, "a late delete of no record answered {outcome:?}");
    Ok(())
}

async fn delete_removes_only_that_record(t: &MetadataUnderTest) -> Check {
    let (a, b) = (record("a", image(), "{}")?, record("b", image(), "{}")?);
    put(t, &a).await?;
    put(t, &b).await?;
    let outcome = delete(t, &a.user_id).await?;
    ensure!(outcome == DeleteOutcome::Deleted, "delete of a stored record answered {outcome:?}");
    ensure!(t.store.get(&a.user_id).await.doing("get")?.is_none(), "a deleted record is still there");
    let outcome = delete(t, &a.user_id).await?;
    ensure!(outcome == DeleteOutcome::NotFound, "a second delete answered {outcome:?}");
    let got = t.store.get(&b.user_id).await.doing("get")?;
    ensure!(got.as_ref() == Some(&b), "deleting one record changed another to {got:?}");
    ensure!(t.store.count_records().await.doing("count_records")? == 1, "count after delete is not 1");
    ensure!(t.store.has_records().await.doing("has_records")?, "a store with one record says it has none");
    let outcome = delete(t, &b.user_id).await?;
    ensure!(outcome == DeleteOutcome::Deleted, "delete of the last record answered {outcome:?}");
    ensure!(!t.store.has_records().await.doing("has_records")?, "a store whose records were deleted has records");
    Ok(())
}

async fn referenced_answers_exactly_the_referenced_subset(t: &MetadataUnderTest) -> Check {
    let (i1, i2, i3, unused1, unused2) = (image(), image(), image(), image(), image());
    for (u, i) in [("u1", i1), ("u2", i2), ("u3", i3)] {
        put(t, &record(u, i, "{}")?).await?;
    }
    let asked = [i1, unused1, i2, i1, unused2, i2];
    let got = t.store.referenced(&asked).await.doing("referenced")?;
    ensure!(got == HashSet::from([i1, i2]), "referenced({asked:?}) answered {got:?}, expected {{{i1}, {i2}}}");
    let got = t.store.referenced(&[]).await.doing("referenced")?;
    ensure!(got.is_empty(), "referenced of no ids answered {got:?}");
    let got = t.store.referenced(&[unused1]).await.doing("referenced")?;
    ensure!(got.is_empty(), "referenced of an unused id answered {got:?}");
    Ok(())
}

async fn referenced_follows_replace_and_delete(t: &MetadataUnderTest) -> Check {
    let (old, new, other) = (image(), image(), image());
    put(t, &record("u1", old, "{}")?).await?;
    put(t, &record("u2", other, "{}")?).await?;
    put(t, &record("u1", new, "{}")?).await?;
    let got = t.store.referenced(&[old, new, other]).await.doing("referenced")?;
    ensure!(got == HashSet::from([new, other]), "after replacing {old} by {new}, referenced answered {got:?}");
    delete(t, &user("u2")?).await?;
    let got = t.store.referenced(&[old, new, other]).await.doing("referenced")?;
    ensure!(got == HashSet::from([new]), "after deleting the record naming {other}, referenced answered {got:?}");
    Ok(())
}

async fn names_image_follows_replace_and_delete(t: &MetadataUnderTest) -> Check {
    let (old, new, never) = (image(), image(), image());
    put(t, &record("u1", old, "{}")?).await?;
    ensure!(t.store.names_image(&old).await.doing("names_image")?, "a stored record's image is not named");
    ensure!(!t.store.names_image(&never).await.doing("names_image")?, "an image no record names is named");
    put(t, &record("u1", new, "{}")?).await?;
    ensure!(!t.store.names_image(&old).await.doing("names_image")?, "a replaced image is still named");
    ensure!(t.store.names_image(&new).await.doing("names_image")?, "the replacing image is not named");
    delete(t, &user("u1")?).await?;
    ensure!(!t.store.names_image(&new).await.doing("names_image")?, "a deleted record's image is still named");
    Ok(())
}

async fn referenced_answers_large_inputs(t: &MetadataUnderTest) -> Check {
    // More ids than SQLite's historical 999-parameter limit, referenced ones spread out.
    let mut asked: Vec<ImageId> = (0..2500).map(|_| image()).collect();
    let mut expected = HashSet::new();
    for (n, at) in [0usize, 950, 1999, 2499].into_iter().enumerate() {
        put(t, &record(&format!("big{n}"), asked[at], "{}")?).await?;
        expected.insert(asked[at]);
    }
    asked.push(asked[950]);
    let got = t.store.referenced(&asked).await.doing("referenced")?;
    ensure!(got == expected, "referenced of 2501 ids answered {} ids, expected {expected:?}: {got:?}", got.len());
    Ok(())
}

async fn records_after_pages_in_byte_order(t: &MetadataUnderTest) -> Check {
    // Byte order puts '-' < '.' < digits < upper case < '_' < lower case; a store that
    // sorts by a locale's collation instead gets this wrong.
    let names = ["b", "a_", "Z", "a", "a-", "0", "a.", "A", "z", "a0", "_x"];
    for name in names {
        put(t, &record(name, image(), "{}")?).await?;
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort();
    for limit in [1usize, 2, 3, 100] {
        let (mut seen, mut after) = (Vec::new(), None::<UserId>);
        loop {
            let page = t.store.records_after(after.as_ref(), limit).await.doing("records_after")?;
            ensure!(page.len() <= limit, "records_after(limit {limit}) returned {} records", page.len());
            let Some(last) = page.last() else { break };
            after = Some(last.user_id.clone());
            seen.extend(page.iter().map(|r| r.user_id.to_string()));
            ensure!(seen.len() <= names.len(), "paging with limit {limit} never ends: {seen:?}");
        }
        ensure!(seen == expected, "paging with limit {limit} gave {seen:?}, expected {expected:?}");
    }
    let from_gap = t.store.records_after(Some(&user("a1")?), 2).await.doing("records_after")?;
    let from_gap: Vec<String> = from_gap.iter().map(|r| r.user_id.to_string()).collect();
    ensure!(from_gap == ["a_", "b"], "records_after(\"a1\", 2) gave {from_gap:?}, expected [\"a_\", \"b\"]");
    let none = t.store.records_after(None, 0).await.doing("records_after")?;
    ensure!(none.is_empty(), "records_after with limit 0 returned {} records", none.len());
    ensure!(t.store.count_records().await.doing("count_records")? == names.len() as u64, "count is off");
    Ok(())
}

fn timings(base_ms: u64) -> Timings {
    Timings {
        request_timeout: Duration::from_millis(base_ms + 1),
        min_blob_age: Duration::from_millis(3 * base_ms + 7),
        delete_delay: Duration::from_millis(2 * base_ms + 3),
        clock_skew: Duration::from_millis(base_ms / 2 + 5),
    }
}

fn pairing(base_ms: u64) -> Pairing {
    Pairing {
        cluster_id: uuid::Uuid::from_u128(0x1234_5678_0000_4000_8000_0000_0000_0000 + u128::from(base_ms)),
        timings: timings(base_ms),
    }
}

async fn pairing_is_create_if_absent(t: &MetadataUnderTest) -> Check {
    let (first, second) = (pairing(1500), pairing(60_000));
    let got = t.store.create_pairing(&first).await.doing("create_pairing")?;
    ensure!(got == first, "the first create_pairing returned {got:?}, expected what it stored");
    let got = t.store.create_pairing(&second).await.doing("create_pairing")?;
    ensure!(got == first, "a second create_pairing returned {got:?}, expected the first pairing");
    let got = t.store.read_pairing().await.doing("read_pairing")?;
    ensure!(got.as_ref() == Some(&first), "read_pairing returned {got:?}, expected the first pairing");
    Ok(())
}

async fn concurrent_pairings_agree(t: &MetadataUnderTest) -> Check {
    let candidates: Vec<Pairing> = (1..=8).map(|n| pairing(n * 1000)).collect();
    let results = join_all(candidates.iter().map(|p| t.store.create_pairing(p))).await;
    let results = results.into_iter().collect::<Result<Vec<_>, _>>().doing("create_pairing")?;
    let winner = &results[0];
    ensure!(results.iter().all(|r| r == winner), "concurrent create_pairing calls disagree: {results:?}");
    ensure!(candidates.contains(winner), "the stored pairing {winner:?} is none of the candidates");
    let stored = t.store.read_pairing().await.doing("read_pairing")?;
    ensure!(stored.as_ref() == Some(winner), "read_pairing returned {stored:?}, not the pairing every caller got");
    Ok(())
}

async fn update_timings_replaces_only_the_timings(t: &MetadataUnderTest) -> Check {
    let original = pairing(1500);
    t.store.create_pairing(&original).await.doing("create_pairing")?;
    let updated = timings(90_000);
    t.store.update_timings(original.cluster_id, &updated).await.doing("update_timings")?;
    let got = t.store.read_pairing().await.doing("read_pairing")?;
    let expected = Pairing { cluster_id: original.cluster_id, timings: updated };
    ensure!(got.as_ref() == Some(&expected), "after update_timings read_pairing returned {got:?}");
    let stranger = uuid::Uuid::from_u128(42);
    let refused = t.store.update_timings(stranger, &timings(5)).await;
    ensure!(refused.is_err(), "update_timings for a cluster id the store does not hold succeeded");
    let got = t.store.read_pairing().await.doing("read_pairing")?;
    ensure!(got.as_ref() == Some(&expected), "a refused update_timings changed the pairing to {got:?}");
    Ok(())
}

async fn bound_timings_refuse_every_guarded_call_once_changed(t: &MetadataUnderTest) -> Check {
    let paired = pairing(1500);
    t.store.create_pairing(&paired).await.doing("create_pairing")?;
    t.store.run_under_timings(&paired.timings);
    let original = record("erin", image(), r#"{"v":"original"}"#)?;
    put(t, &original).await?;
    ensure!(
        !t.store.referenced(&[original.image_id]).await.doing("referenced")?.is_empty(),
        "referenced lost a record"
    );

    // A queued image, so the claim below has an entry to stamp.
    put(t, &record("gone", image(), "{}")?).await?;
    delete(t, &user("gone")?).await?;
    t.store.update_timings(paired.cluster_id, &timings(60_000)).await.doing("update_timings")?;
    let changed = |what: &str, e: Option<StoreErrorKind>| -> Check {
        ensure!(
            e == Some(StoreErrorKind::TimingsChanged),
            "{what} under the old timings answered {e:?}, not TimingsChanged"
        );
        Ok(())
    };
    let late = record("erin", image(), r#"{"v":"stale"}"#)?;
    changed(
        "put_before",
        t.store.put_before(&late, &later(t, Duration::from_secs(3600))).await.err().map(|e| e.kind()),
    )?;
    let delete = t.store.delete_before(&original.user_id, &later(t, Duration::from_secs(3600))).await;
    changed("delete_before", delete.err().map(|e| e.kind()))?;
    changed("referenced", t.store.referenced(&[original.image_id]).await.err().map(|e| e.kind()))?;
    changed("claim_superseded", t.store.claim_superseded(Duration::ZERO, 10).await.err().map(|e| e.kind()))?;
    let got = t.store.get(&original.user_id).await.doing("get")?;
    ensure!(got.as_ref() == Some(&original), "a refused call changed the record to {got:?}");

    // The process adopts the stored timings; a request that started under the old
    // ones is still refused, and one under the new ones commits.
    t.store.run_under_timings(&timings(60_000));
    let started_before = later(t, Duration::from_secs(3600)).under(paired.timings);
    changed(
        "put_before of a request started under the old timings",
        t.store.put_before(&late, &started_before).await.err().map(|e| e.kind()),
    )?;
    let started_after = later(t, Duration::from_secs(3600)).under(timings(60_000));
    let outcome = t.store.put_before(&late, &started_after).await.doing("put_before")?;
    ensure!(outcome == CommitOutcome::Committed, "a write under the adopted timings answered {outcome:?}");
    Ok(())
}

async fn concurrent_writes_to_distinct_users_all_land(t: &MetadataUnderTest) -> Check {
    let records = (0..16).map(|n| record(&format!("c{n:02}"), image(), "{}")).collect::<Result<Vec<_>, _>>()?;
    let deadline = later(t, Duration::from_secs(3600));
    let outcomes = join_all(records.iter().map(|r| t.store.put_before(r, &deadline))).await;
    for outcome in outcomes {
        let outcome = outcome.doing("concurrent put_before")?;
        ensure!(outcome == CommitOutcome::Committed, "a concurrent write answered {outcome:?}");
    }
    for r in &records {
        let got = t.store.get(&r.user_id).await.doing("get")?;
        ensure!(got.as_ref() == Some(r), "after concurrent writes {} holds {got:?}", r.user_id);
    }
    ensure!(t.store.count_records().await.doing("count_records")? == 16, "concurrent writes did not all count");
    Ok(())
}

async fn concurrent_writes_to_one_user_leave_one_whole_record(t: &MetadataUnderTest) -> Check {
    let records = (0..8)
        .map(|n| {
            let mut r = record("shared", image(), &format!("{{\"writer\":{n}}}"))?;
            r.image_size = n;
            Ok(r)
        })
        .collect::<Result<Vec<Record>, String>>()?;
    let deadline = later(t, Duration::from_secs(3600));
    for outcome in join_all(records.iter().map(|r| t.store.put_before(r, &deadline))).await {
        outcome.doing("concurrent put_before")?;
    }
    let got = t.store.get(&user("shared")?).await.doing("get")?;
    ensure!(
        got.as_ref().is_some_and(|g| records.contains(g)),
        "after concurrent writes of one user the record is {got:?}, which no single write submitted"
    );
    Ok(())
}

async fn clock_reads_the_databases_time(t: &MetadataUnderTest) -> Check {
    // The databases under test run on this machine (or share its clock), so their
    // clock reads within a round trip of ours.
    let before = t.clock.now();
    let db = t.store.clock().await.doing("clock")?;
    let after = t.clock.now();
    let earliest = Timestamp::from_millis(before.as_millis() - 50);
    ensure!(
        earliest <= db && db <= after.plus(Duration::from_millis(50)),
        "the database read {db} between {before} and {after}"
    );
    Ok(())
}

async fn ping_answers(t: &MetadataUnderTest) -> Check {
    t.store.ping().await.doing("ping")
}
