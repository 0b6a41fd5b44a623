//! The production implementations of the core's seams: [`SystemClock`] (time) and
//! [`UuidV7Ids`] (image ids). They are the only place the system clock and the
//! operating system's randomness enter profilestore; the core itself knows only the
//! `Clock` and `IdSource` traits, so simulations and the model checker can put their
//! own in.

use profilestore_core::ids::{IdSource, ImageId};
use profilestore_core::time::{Clock, Time, Timestamp};

/// The production clock: the wall clock read once at creation, advanced by Tokio's
/// monotonic time.
///
/// Why not read the wall clock each time: a wall clock can be stepped (by hand, or by
/// a time daemon correcting a large error), and a forward step would shorten the
/// cleaner's delete delay. Monotonic time is only slewed, so durations measured here
/// are honest; the anchor's error is the `clock_skew` the settings allow for. Under a
/// paused Tokio runtime this clock is virtual, which tests use.
#[derive(Debug, Clone)]
pub struct SystemClock {
    anchor_wall: Timestamp,
    anchor_mono: tokio::time::Instant,
}

impl SystemClock {
    /// A clock anchored at the current wall-clock time.
    #[allow(clippy::disallowed_methods)] // this is the seam
    pub fn new() -> Self {
        SystemClock {
            anchor_wall: Timestamp::from_system_time(std::time::SystemTime::now()),
            anchor_mono: tokio::time::Instant::now(),
        }
    }

    /// A clock that reads `start` now and advances with Tokio's time from here.
    #[allow(clippy::disallowed_methods)] // this is the seam
    pub fn starting_at(start: Timestamp) -> Self {
        SystemClock { anchor_wall: start, anchor_mono: tokio::time::Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn now(&self) -> Timestamp {
        self.anchor_wall.plus(tokio::time::Instant::now().duration_since(self.anchor_mono))
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(deadline.saturating_since(now)).await;
        }
    }
}

/// Production ids: UUIDv7 from the system clock and the operating system's randomness.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV7Ids;

impl IdSource for UuidV7Ids {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn next_image_id(&self) -> ImageId {
        ImageId::from_uuid(uuid::Uuid::now_v7()).expect("now_v7 makes version 7 UUIDs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_tokio_time() {
        let clock = SystemClock::starting_at(Timestamp::from_millis(10_000));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(10_250));
        clock.sleep_until(Timestamp::from_millis(20_000)).await;
        assert!(clock.now() >= Timestamp::from_millis(20_000));
    }

    #[test]
    fn production_ids_are_fresh_and_parse_back() {
        let a = UuidV7Ids.next_image_id();
        let b = UuidV7Ids.next_image_id();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<ImageId>().unwrap(), a);
    }
}
