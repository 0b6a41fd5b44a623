//! Time as the step logic sees it, and the [`Clock`] seam that supplies it.
//!
//! The step machines are generic over [`Time`], so production runs them on wall-clock
//! [`Timestamp`]s while the model checker runs the very same machines on small integer
//! hours.

use std::fmt;
use std::hash::Hash;
use std::ops::Add;
use std::time::Duration;

/// A point in time the step logic can compare and move forward by a span.
///
/// Promises: `plus` never wraps (it saturates), and `t.plus(zero) == t`.
pub trait Time: Copy + Ord + Hash + fmt::Debug + Send + Sync + 'static {
    /// A length of time in the same units.
    type Span: Copy + Ord + Hash + fmt::Debug + Default + Add<Output = Self::Span> + Send + Sync + 'static;

    /// This instant moved forward by `span`, saturating at the end of representable time.
    fn plus(self, span: Self::Span) -> Self;
}

/// Wall-clock time in milliseconds since the Unix epoch, as the stores exchange it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Converts a `SystemTime`; times before the epoch clamp to the epoch.
    pub fn from_system_time(t: std::time::SystemTime) -> Self {
        let millis = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(millis)
    }

    /// The time from `earlier` to `self`, or zero when `earlier` is not earlier.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 form with millisecond precision, in UTC.
    pub fn to_rfc3339(self) -> String {
        let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0));
        humantime::format_rfc3339_millis(t).to_string()
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Time for Timestamp {
    type Span = Duration;

    fn plus(self, span: Duration) -> Self {
        let millis = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(millis))
    }
}

/// The source of time for drivers and stores. Nothing in the core reads the system
/// clock except through this seam.
///
/// Promises: `now` never goes backwards within one clock, and `sleep_until(t)`
/// returns no earlier than the moment `now() >= t`.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;

    /// Waits until `now() >= deadline`.
    async fn sleep_until(&self, deadline: Timestamp);
}

/// The production clock: the wall clock read once at creation, advanced by Tokio's
/// monotonic time.
///
/// Why not read the wall clock each time: a wall clock can be stepped (by hand, or by
/// a time daemon correcting a large error), and a forward step would shorten the
/// cleaner's delete delay. Monotonic time is only slewed, so durations measured here
/// are honest; the anchor's error is the `clock_skew` the settings allow for. Under a
/// paused Tokio runtime this clock is virtual, which is what simulations want.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_saturates_instead_of_wrapping() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t.plus(Duration::from_secs(10)), Timestamp::from_millis(i64::MAX));
    }

    #[test]
    fn saturating_since_is_zero_for_later_instants() {
        let a = Timestamp::from_millis(1_000);
        let b = Timestamp::from_millis(3_500);
        assert_eq!(b.saturating_since(a), Duration::from_millis(2_500));
        assert_eq!(a.saturating_since(b), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_tokio_time() {
        let clock = SystemClock::starting_at(Timestamp::from_millis(10_000));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(10_250));
        clock.sleep_until(Timestamp::from_millis(20_000)).await;
        assert!(clock.now() >= Timestamp::from_millis(20_000));
    }
}
