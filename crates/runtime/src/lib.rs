//! The production implementations of the core's seams: [`SystemClock`] (time) and
//! [`UuidV7Ids`] (image ids). They are the only place the system clock and the
//! operating system's randomness enter profilestore; the core itself knows only the
//! `Clock` and `IdSource` traits, so simulations and the model checker can put their
//! own in.

use profilestore_core::ids::{IdSource, ImageId};
use std::time::Duration;

use profilestore_core::time::{Clock, Time, Timestamp};

/// The production clock: [`now`](Clock::now) reads the host's wall clock afresh each
/// time, and [`ticks`](Clock::ticks) reads `CLOCK_BOOTTIME`, which keeps counting
/// while the machine is suspended and is never stepped.
///
/// Why both: timestamps are compared across processes and with the stores' clocks, so
/// they must be the wall clock as it is now (an error at start must not last the
/// process's life; the clock checks measure the offset). Durations (a request's age, a
/// delete delay) must never be under-counted, whatever happens to the wall clock.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Duration,
}

impl SystemClock {
    /// The host's clock.
    pub fn new() -> Self {
        SystemClock { origin: boot_time() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Wall-clock sleeps wake at least this often to notice a stepped clock.
const WALL_SLEEP_SLICE: Duration = Duration::from_secs(1);

#[async_trait::async_trait]
impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // this is the seam
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(std::time::SystemTime::now())
    }

    fn ticks(&self) -> Duration {
        boot_time().saturating_sub(self.origin)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            tokio::time::sleep(deadline.saturating_since(now).min(WALL_SLEEP_SLICE)).await;
        }
    }

    async fn sleep(&self, span: Duration) {
        let end = self.ticks().saturating_add(span);
        loop {
            let left = end.saturating_sub(self.ticks());
            if left.is_zero() {
                return;
            }
            // Tokio's timers run on CLOCK_MONOTONIC, which stops during a suspend: the
            // loop re-reads the boot clock, so a sleep never ends early.
            tokio::time::sleep(left).await;
        }
    }
}

/// `CLOCK_BOOTTIME`: monotonic, never stepped, counting suspended time.
#[cfg(target_os = "linux")]
fn boot_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on every Linux
    // this builds for, so the call cannot fail.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    Duration::new(u64::try_from(ts.tv_sec).unwrap_or(0), u32::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Elsewhere: the standard monotonic clock (it may stop while suspended).
#[cfg(not(target_os = "linux"))]
#[allow(clippy::disallowed_methods)] // this is the seam
fn boot_time() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// A clock on Tokio's time: wall time `start` at creation, advanced by Tokio's
/// monotonic time for both readings. Under a paused Tokio runtime it is virtual, which
/// tests use to pass hours in microseconds.
#[derive(Debug, Clone)]
pub struct TokioClock {
    anchor_wall: Timestamp,
    anchor_mono: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `start` now and advances with Tokio's time from here.
    #[allow(clippy::disallowed_methods)] // this is the seam
    pub fn starting_at(start: Timestamp) -> Self {
        TokioClock { anchor_wall: start, anchor_mono: tokio::time::Instant::now() }
    }
}

#[async_trait::async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.anchor_wall.plus(self.ticks())
    }

    #[allow(clippy::disallowed_methods)] // this is the seam
    fn ticks(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.anchor_mono)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let now = self.now();
        if now < deadline {
            tokio::time::sleep(deadline.saturating_since(now)).await;
        }
    }

    async fn sleep(&self, span: Duration) {
        tokio::time::sleep(span).await;
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

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_tokio_time() {
        let clock = TokioClock::starting_at(Timestamp::from_millis(10_000));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(10_250));
        assert_eq!(clock.ticks(), Duration::from_millis(250));
        clock.sleep_until(Timestamp::from_millis(20_000)).await;
        assert!(clock.now() >= Timestamp::from_millis(20_000));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // compares the seam with the system clock
    fn system_clock_reads_the_wall_clock_each_time() {
        let clock = SystemClock::new();
        let before = Timestamp::from_system_time(std::time::SystemTime::now());
        let read = clock.now();
        let after = Timestamp::from_system_time(std::time::SystemTime::now());
        assert!(before <= read && read <= after, "{before} <= {read} <= {after}");
    }

    #[tokio::test]
    async fn system_clock_ticks_never_go_backwards_and_a_sleep_lasts_its_span() {
        let clock = SystemClock::new();
        let start = clock.ticks();
        clock.sleep(Duration::from_millis(30)).await;
        let after = clock.ticks();
        assert!(after >= start + Duration::from_millis(30), "slept {:?}", after - start);
    }

    #[test]
    fn production_ids_are_fresh_and_parse_back() {
        let a = UuidV7Ids.next_image_id();
        let b = UuidV7Ids.next_image_id();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<ImageId>().unwrap(), a);
    }
}
