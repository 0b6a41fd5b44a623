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

/// A clock that moves only when told to: for tests and simulations, where time must
/// be exact and reproducible. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: std::sync::Arc<std::sync::Mutex<Timestamp>>,
    moved: std::sync::Arc<tokio::sync::Notify>,
}

impl ManualClock {
    /// A clock reading `start` until it is moved.
    pub fn new(start: Timestamp) -> Self {
        ManualClock { now: std::sync::Arc::new(std::sync::Mutex::new(start)), moved: std::sync::Arc::default() }
    }

    /// Moves the clock forward by `span` and wakes every sleeper whose time has come.
    pub fn advance(&self, span: std::time::Duration) {
        {
            let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
            *now = now.plus(span);
        }
        self.moved.notify_waiters();
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let moved = self.moved.notified();
            if self.now() >= deadline {
                return;
            }
            moved.await;
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

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told_and_wakes_its_sleepers() {
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(Timestamp::from_millis(1_500)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(499));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke before its time");
        clock.advance(Duration::from_millis(1));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), Timestamp::from_millis(1_500));
    }
}
