//! Turning a failing run into a short story: fewer operations, then only the events
//! that touch the violation.
//!
//! Shrinking re-runs the same seed with fewer client operations while the same check
//! still breaks on the same images: every actor draws from its own stream, so cutting
//! operations keeps each client's early choices and usually the failure with them.
//! A cut run that breaks the check on other images tells another story (often a loss
//! the earlier end of the clients made possible in the calm phase), so it does not
//! count as the same failure. Slicing then keeps
//! the events that name the violation's images (puts, reads, listings, queries,
//! deletes, commits) and the changes to its users' records meanwhile, which is where
//! every flaw of the case study lives.

use std::collections::HashSet;
use std::time::Duration;

use profilestore_core::ids::{ImageId, UserId};

use super::clock::BEYOND_BOUND;
use super::log::{Actor, Event, Violation};
use super::stores::{LIST_PAGE, QUERY, RECORD_CHANGES};
use super::{SimConfig, SimReport, run};

/// The smallest run found that breaks the same check as `failing` on the same images,
/// with its config. At most `attempts` extra runs.
pub fn shrink(config: &SimConfig, failing: SimReport, attempts: usize) -> (SimConfig, SimReport) {
    let Some((check, images)) = failing.violation.as_ref().map(|v| (v.check, v.images.clone())) else {
        return (config.clone(), failing);
    };
    let mut best = (config.clone(), failing);
    let mut tried = 0;
    // Cut half the operations while the failure stays; when it goes, cut half as many.
    let mut step = best.0.ops / 2;
    while step > 0 && tried < attempts {
        let candidate = SimConfig { ops: best.0.ops - step, ..best.0.clone() };
        tried += 1;
        let report = run(&candidate);
        if report.violation.as_ref().is_some_and(|v| v.check == check && v.images == images) {
            best = (candidate, report);
            step = best.0.ops / 2;
        } else {
            step /= 2;
        }
    }
    best
}

/// The events of `events` that matter to `violation`: those naming its images, the
/// changes to its users' records from one `window` before the first of them up to
/// the violation, and the clock that left the skew bound, if one did.
pub fn slice<'a>(events: &'a [Event], violation: &Violation, window: Duration) -> Vec<&'a Event> {
    let images: HashSet<ImageId> = violation.images.iter().copied().collect();
    let end = violation.at;
    let names_image = |e: &Event| e.images.iter().any(|i| images.contains(i));
    let mut users: HashSet<UserId> = violation.user.iter().cloned().collect();
    users.extend(events.iter().filter(|e| e.at <= end && names_image(e)).filter_map(|e| e.user.clone()));
    let first = events.iter().filter(|e| names_image(e)).map(|e| e.at).min().unwrap_or(end);
    let from = first.saturating_sub(window);
    let kept: Vec<&Event> = events
        .iter()
        .filter(|e| e.at <= end)
        .filter(|e| {
            names_image(e)
                || e.text.starts_with("VIOLATION")
                || e.text.starts_with(BEYOND_BOUND)
                || changes_record(e) && e.user.as_ref().is_some_and(|u| users.contains(u)) && e.at >= from
        })
        .collect();
    without_idle_listings(kept)
}

/// Whether `e` is a store call that changed a user's record: how the record moved on
/// while the violation's story unfolded.
fn changes_record(e: &Event) -> bool {
    RECORD_CHANGES.iter().any(|prefix| e.text.starts_with(prefix))
}

/// Drops the listings after which nothing happened: a cleaner lists every image each
/// cycle, and only the listing a query of its images followed is part of the story.
fn without_idle_listings(events: Vec<&Event>) -> Vec<&Event> {
    let mut waiting_for_listing: HashSet<Actor> = HashSet::new();
    let mut keep = vec![true; events.len()];
    for (i, e) in events.iter().enumerate().rev() {
        if e.text.starts_with(QUERY) {
            waiting_for_listing.insert(e.actor);
        } else if e.text.starts_with(LIST_PAGE) {
            keep[i] = waiting_for_listing.remove(&e.actor);
        }
    }
    events.into_iter().zip(keep).filter_map(|(e, k)| k.then_some(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Check;

    fn event(at: u64, user: Option<&str>, images: &[ImageId], text: &str) -> Event {
        Event {
            at: Duration::from_secs(at),
            actor: Actor::Client(0),
            text: text.into(),
            user: user.map(|u| UserId::parse(u).unwrap()),
            images: images.to_vec(),
        }
    }

    fn id(n: u128) -> ImageId {
        ImageId::from_uuid(
            uuid::Builder::from_unix_timestamp_millis(1, &n.to_le_bytes()[..10].try_into().unwrap()).into_uuid(),
        )
        .unwrap()
    }

    #[test]
    fn a_slice_keeps_the_images_and_users_of_the_violation_and_drops_the_rest() {
        let (a, b) = (id(1), id(2));
        let events = vec![
            event(10, Some("user-1"), &[], "commit user-1's record long before: outside the window"),
            event(5000, Some("user-1"), &[a], "put a"),
            event(5001, Some("user-2"), &[b], "unrelated user and image"),
            event(5002, None, &[a, b], "list a page of blobs → [a, b]"),
            event(5002, None, &[a, b], "list a page of blobs → [a, b] (the last listing before the query)"),
            event(5002, None, &[a], "which of [a] are referenced → referenced []"),
            event(5002, None, &[a], "list a page of blobs → [a] (nothing followed)"),
            event(5003, Some("user-1"), &[], "user-1's unrelated read"),
            event(5003, Some("user-1"), &[], "commit user-1's record naming another image"),
            event(5004, Some("user-1"), &[a], "VIOLATION of no dangling reference"),
            event(5005, Some("user-1"), &[a], "after the violation"),
        ];
        let violation = Violation {
            check: Check::NoDanglingReference,
            at: Duration::from_secs(5004),
            user: None,
            images: vec![a],
            detail: String::new(),
        };
        let kept: Vec<&str> =
            slice(&events, &violation, Duration::from_secs(3600)).iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            kept,
            [
                "put a",
                "list a page of blobs → [a, b] (the last listing before the query)",
                "which of [a] are referenced → referenced []",
                "commit user-1's record naming another image",
                "VIOLATION of no dangling reference"
            ]
        );
    }
}
