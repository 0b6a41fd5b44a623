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
/// Two readings, for two questions:
/// - [`now`](Clock::now) is the wall clock, what other processes and the stores compare
///   timestamps with. It is read afresh each time (an error at start does not last),
///   and may jump when the host's clock is stepped.
/// - [`ticks`](Clock::ticks) measures durations: time since an arbitrary origin fixed
///   for the clock's life that never goes backwards, never jumps with the wall clock,
///   and keeps counting while the machine or VM is suspended (Linux `CLOCK_BOOTTIME`),
///   so a request's age or a delete delay is never under-counted.
///
/// Promises: `ticks` never decreases, and `sleep_until(t)` returns no earlier than the
/// moment `now() >= t`; `sleep(span)` returns no earlier than `ticks()` has grown by
/// `span`.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;

    /// Time elapsed since this clock's fixed origin, counting suspended time.
    fn ticks(&self) -> Duration;

    /// Waits until `now() >= deadline`.
    async fn sleep_until(&self, deadline: Timestamp);

    /// Waits until `ticks()` has grown by at least `span`.
    async fn sleep(&self, span: Duration);
}

/// A request's deadline as both clocks see it: the wall-clock instant a store compares
/// its own clock with (`at`), and the request's remaining time on the process's
/// [`ticks`](Clock::ticks), which no wall-clock step can lengthen.
///
/// Promises: [`remaining`](Deadline::remaining) only shrinks, and
/// [`passed`](Deadline::passed) once true stays true.
#[derive(Clone)]
pub struct Deadline {
    at: Timestamp,
    ends: Duration,
    timeout: Duration,
    clock: std::sync::Arc<dyn Clock>,
    timings: Option<crate::settings::Timings>,
}

impl Deadline {
    /// A deadline `timeout` from now on both of `clock`'s readings.
    pub fn after(clock: std::sync::Arc<dyn Clock>, timeout: Duration) -> Deadline {
        let at = clock.now().plus(timeout);
        Deadline::new(clock, at, timeout)
    }

    /// A deadline at wall-clock instant `at` that also ends once `remaining` has passed
    /// on `clock`'s ticks, whichever comes first.
    pub fn new(clock: std::sync::Arc<dyn Clock>, at: Timestamp, remaining: Duration) -> Deadline {
        let ends = clock.ticks().saturating_add(remaining);
        Deadline { at, ends, timeout: remaining, clock, timings: None }
    }

    /// The same deadline for a request started under `timings`: a store bound to the
    /// cluster's timings refuses its writes once the stored timings are other than
    /// these, whatever the process has adopted since.
    pub fn under(mut self, timings: crate::settings::Timings) -> Deadline {
        self.timings = Some(timings);
        self
    }

    /// The timings the request started under, when known.
    pub fn timings(&self) -> Option<&crate::settings::Timings> {
        self.timings.as_ref()
    }

    /// The time the request was given when the deadline was made.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The wall-clock instant a store's own clock must still be before.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// The time left on the process's tick clock; zero once it has run out.
    pub fn remaining(&self) -> Duration {
        self.ends.saturating_sub(self.clock.ticks())
    }

    /// Whether the request's time on the tick clock has run out.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Waits until the request's time on the tick clock has run out.
    pub async fn expired(&self) {
        loop {
            let left = self.remaining();
            if left.is_zero() {
                return;
            }
            self.clock.sleep(left).await;
        }
    }
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline").field("at", &self.at).field("remaining", &self.remaining()).finish()
    }
}

/// A clock that moves only when told to: for tests and simulations, where time must
/// be exact and reproducible. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: std::sync::Arc<std::sync::Mutex<ManualState>>,
    moved: std::sync::Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone, Copy)]
struct ManualState {
    wall: Timestamp,
    ticks: Duration,
}

impl ManualClock {
    /// A clock reading `start` until it is moved.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            state: std::sync::Arc::new(std::sync::Mutex::new(ManualState { wall: start, ticks: Duration::ZERO })),
            moved: std::sync::Arc::default(),
        }
    }

    /// Moves both readings forward by `span` and wakes every sleeper whose time has come.
    pub fn advance(&self, span: std::time::Duration) {
        {
            let mut state = self.lock();
            state.wall = state.wall.plus(span);
            state.ticks = state.ticks.saturating_add(span);
        }
        self.moved.notify_waiters();
    }

    /// Steps the wall clock alone by `millis` (negative: backwards), as an operator or
    /// a time daemon stepping the host's clock does; the ticks do not move.
    pub fn step_wall(&self, millis: i64) {
        {
            let mut state = self.lock();
            state.wall = Timestamp::from_millis(state.wall.as_millis().saturating_add(millis));
        }
        self.moved.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.lock().wall
    }

    fn ticks(&self) -> Duration {
        self.lock().ticks
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

    async fn sleep(&self, span: Duration) {
        let end = self.ticks().saturating_add(span);
        loop {
            let moved = self.moved.notified();
            if self.ticks() >= end {
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

    #[tokio::test]
    async fn a_wall_clock_step_moves_neither_the_ticks_nor_a_deadline_on_them() {
        let clock = ManualClock::new(Timestamp::from_millis(10_000));
        let deadline = Deadline::after(std::sync::Arc::new(clock.clone()), Duration::from_millis(1_000));
        assert_eq!(deadline.at(), Timestamp::from_millis(11_000));
        clock.step_wall(-5_000);
        assert_eq!(clock.now(), Timestamp::from_millis(5_000));
        assert_eq!(clock.ticks(), Duration::ZERO);
        clock.advance(Duration::from_millis(600));
        assert_eq!(deadline.remaining(), Duration::from_millis(400), "a backward step lengthened the request");
        clock.step_wall(60_000);
        assert!(!deadline.passed(), "a forward step of the wall clock ended the tick deadline");
        clock.advance(Duration::from_millis(400));
        assert!(deadline.passed());
        deadline.expired().await;
    }
}
