//! The promises a run checks, each where it can first break: a read's answer when
//! the client gets it, a blob fetch the moment the store answers it, every record
//! after each commit and blob delete, and every image after the drain.

use std::collections::HashSet;
use std::time::Duration;

use super::log::{Actor, Check, Counters, Journal, short, shorts};
use super::stores::SimWorld;
use profilestore_core::error::ServiceError;
use profilestore_core::ids::{BlobKey, ImageId, UserId};
use profilestore_core::service::Profile;
use profilestore_core::store::Record;

impl SimWorld {
    /// Checks that every record names an existing blob; records a violation if not.
    pub fn check_no_dangling(&self, actor: Actor) {
        Counters::bump(&self.journal.counters.dangling_checks);
        let keys: HashSet<String> = self.blobs.keys().into_iter().collect();
        for record in self.records() {
            if !keys.contains(&BlobKey::original(record.image_id).to_string()) {
                self.journal.violate(
                    actor,
                    Check::NoDanglingReference,
                    Some(&record.user_id),
                    &[record.image_id],
                    format!("{}'s record names {} but its blob is gone", record.user_id, short(&record.image_id)),
                );
                return;
            }
        }
    }

    /// Checks a read's blob fetch the store answered at `now`: before the read's
    /// `deadline` (both true virtual time since the start), the blob its record named
    /// must not be `missing`; records a violation if it was. Counts the fetches that
    /// raced a cleaner: of a blob some cleaner's query had already found unreferenced
    /// (it is on its way out), and of a blob found missing.
    pub fn check_fetch(&self, actor: Actor, id: ImageId, missing: bool, now: Duration, deadline: Duration) {
        let counters = &self.journal.counters;
        Counters::bump(&counters.vanish_checks);
        if self.condemned.lock().unwrap_or_else(|p| p.into_inner()).contains(&id) {
            Counters::bump(&counters.reads_of_condemned);
        }
        if missing {
            Counters::bump(&counters.reads_missing_blob);
        }
        if missing && now < deadline {
            self.journal.violate(
                actor,
                Check::NoVanishedBlob,
                None,
                &[id],
                format!(
                    "a read within its deadline (still {} to go) found {}'s blob missing",
                    super::stores::fmt_wait(deadline.saturating_sub(now)),
                    short(&id)
                ),
            );
        }
    }

    /// Checks that every image in the blob store is referenced (after the drain);
    /// records a violation naming the first few orphans if not.
    pub fn check_no_orphans(&self) {
        let journal = &self.journal;
        let referenced: HashSet<ImageId> = self.records().iter().map(|r| r.image_id).collect();
        let mut orphans = Vec::new();
        for key in self.blobs.keys() {
            let Some(key) = BlobKey::parse(&key) else { continue };
            Counters::bump(&journal.counters.orphan_checks);
            if !referenced.contains(&key.image_id) {
                orphans.push(key.image_id);
            }
        }
        if !orphans.is_empty() {
            let first: Vec<ImageId> = orphans.iter().take(3).copied().collect();
            journal.violate(
                Actor::Checker,
                Check::EventuallyNoOrphans,
                None,
                &first,
                format!("{} images still unreferenced after the drain, e.g. [{}]", orphans.len(), shorts(&first)),
            );
        }
    }
}

/// Logs a read's answer and checks it: a profile's metadata and image must come
/// from one write, and a read must never answer a dangling reference.
pub(super) fn check_read(
    journal: &Journal,
    me: Actor,
    user: &UserId,
    answer: Option<Result<Option<Profile>, ServiceError>>,
) {
    let counters = &journal.counters;
    match answer {
        Some(Ok(Some(profile))) => {
            Counters::bump(&counters.reads_found);
            Counters::bump(&counters.consistency_checks);
            let id = profile.record.image_id;
            let meta_write = write_of(&profile.record.metadata);
            let image_write = std::str::from_utf8(&profile.image).ok().and_then(|s| s.strip_prefix("sim-image:"));
            let users_write = meta_write.is_some_and(|w| w.starts_with(&format!("{user}#")));
            journal.record(
                me,
                format!("← read {user}: write {} naming {}", meta_write.unwrap_or("?"), short(&id)),
                Some(user),
                &[id],
            );
            if profile.record.user_id != *user || !users_write || meta_write != image_write {
                journal.violate(
                    me,
                    Check::ConsistentRead,
                    Some(user),
                    &[id],
                    format!(
                        "read {user} answered the metadata of write {} with the image of write {}",
                        meta_write.unwrap_or("?"),
                        image_write.unwrap_or("?")
                    ),
                );
            }
        }
        Some(Ok(None)) => {
            Counters::bump(&counters.reads_empty);
            journal.record(me, format!("← read {user}: no profile"), Some(user), &[]);
        }
        Some(Err(ServiceError::DanglingReference { image_id, .. })) => {
            Counters::bump(&counters.reads_failed);
            journal.violate(
                me,
                Check::NoDanglingReference,
                Some(user),
                &[image_id],
                format!("read {user} answered dangling_reference: its record names {}", short(&image_id)),
            );
        }
        Some(Err(e)) => {
            Counters::bump(&counters.reads_failed);
            journal.record(me, format!("← read {user}: {}", e.code()), Some(user), &[]);
        }
        None => {
            Counters::bump(&counters.reads_failed);
            journal.record(me, format!("← read {user}: connection lost"), Some(user), &[]);
        }
    }
}

/// The write tag a profile's metadata names: `{"write":"TAG"}`, or with an update's
/// member after it, `{"write":"TAG","update":N}` (an update keeps the image, so the
/// tag still names the write that stored it).
pub(super) fn write_of(metadata: &str) -> Option<&str> {
    let rest = metadata.strip_prefix("{\"write\":\"")?;
    let (tag, after) = rest.split_once('"')?;
    (after == "}" || (after.starts_with(",\"update\":") && after.ends_with('}'))).then_some(tag)
}

/// `metadata` with its update member set to `n`: what a simulated `PATCH` asks.
pub(super) fn updated(metadata: &str, n: u64) -> Option<String> {
    write_of(metadata).map(|tag| format!("{{\"write\":\"{tag}\",\"update\":{n}}}"))
}

/// Logs an update's answer (the commit itself is checked for dangling references
/// where it lands).
pub(super) fn log_update(
    journal: &Journal,
    me: Actor,
    user: &UserId,
    n: u64,
    answer: Option<Result<Option<Record>, ServiceError>>,
) {
    let counters = &journal.counters;
    let (counter, text, ids) = match answer {
        Some(Ok(Some(record))) => {
            (&counters.updates_ok, format!("committed, naming {}", short(&record.image_id)), vec![record.image_id])
        }
        Some(Ok(None)) => (&counters.updates_ok, "no profile".to_owned(), vec![]),
        Some(Err(e)) => (&counters.updates_failed, e.code().to_owned(), vec![]),
        None => (&counters.updates_failed, "connection lost".to_owned(), vec![]),
    };
    Counters::bump(counter);
    journal.record(me, format!("← update #{n} of {user}: {text}"), Some(user), &ids);
}

/// Names a write in its metadata and image: the user and the write's number, so a
/// read can tell that both halves of what it answered come from one write of that
/// user.
pub(super) fn write_tag(user: &UserId, n: u64) -> String {
    format!("{user}#{n}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Origin;
    use bytes::Bytes;
    use profilestore_core::service::Profile;
    use profilestore_core::store::Record;
    use profilestore_core::time::Timestamp;

    /// A profile stored under `record_user` whose metadata and image carry these
    /// write tags.
    fn profile(record_user: &str, meta_tag: &str, image_tag: &str) -> Profile {
        let id = ImageId::from_uuid(uuid::Builder::from_unix_timestamp_millis(1, &[7; 10]).into_uuid()).unwrap();
        Profile {
            record: Record {
                user_id: UserId::parse(record_user).unwrap(),
                metadata: format!("{{\"write\":\"{meta_tag}\"}}"),
                image_id: id,
                content_type: "image/png".into(),
                image_size: 1,
                updated_at: Timestamp::from_millis(0),
            },
            image: Bytes::from(format!("sim-image:{image_tag}")),
        }
    }

    fn checked(answer: Option<Result<Option<Profile>, ServiceError>>) -> Option<Check> {
        let journal = Journal::new(Origin::now());
        let user = UserId::parse("user-1").unwrap();
        check_read(&journal, Actor::Client(0), &user, answer);
        journal.finish().1.map(|v| v.check)
    }

    #[test]
    fn the_read_check_passes_a_consistent_profile_and_catches_a_mixed_one() {
        let found = |p: Profile| checked(Some(Ok(Some(p))));
        assert_eq!(found(profile("user-1", "user-1#4", "user-1#4")), None);
        assert_eq!(checked(Some(Ok(None))), None);
        // Metadata of one write, image of another.
        assert_eq!(found(profile("user-1", "user-1#4", "user-1#3")), Some(Check::ConsistentRead));
        // Another user's profile.
        assert_eq!(found(profile("user-2", "user-2#4", "user-2#4")), Some(Check::ConsistentRead));
        // Filed under the right user, but both halves written for another.
        assert_eq!(found(profile("user-1", "user-2#4", "user-2#4")), Some(Check::ConsistentRead));
    }

    #[test]
    fn the_read_check_catches_a_dangling_reference() {
        let image_id = profile("user-1", "user-1#1", "user-1#1").record.image_id;
        let user = UserId::parse("user-1").unwrap();
        let answer = Some(Err(ServiceError::DanglingReference { user, image_id }));
        assert_eq!(checked(answer), Some(Check::NoDanglingReference));
        assert_eq!(checked(Some(Err(ServiceError::DeadlineExceeded))), None);
    }
}
