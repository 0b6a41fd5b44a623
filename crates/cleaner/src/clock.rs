//! The cleaner's view of time within one cycle: never ahead of the wall clock, and
//! never faster than the tick clock.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use profilestore_core::time::{Clock, Time, Timestamp};

/// A clock for one cleaner cycle at a time.
///
/// The cycle compares blobs' creation times (stamped by another clock) with its own
/// time, and waits `delete_delay` between a query and its deletes. Both comparisons
/// must err toward keeping: a blob must never look older than the wall clock says,
/// and a delay must never be shorter on the tick clock (which counts suspended time
/// and is never stepped) than asked. So this clock reads the wall clock at each
/// [`reanchor`](CycleClock::reanchor) (the start of a cycle) and from there advances
/// by the ticks, dropping to the wall clock whenever the wall clock is behind: a wall
/// clock stepped forward mid-cycle cannot shorten a delay, one stepped back cannot
/// make a blob look older. The next cycle catches up with the wall clock, so an error
/// never lasts.
pub struct CycleClock {
    inner: Arc<dyn Clock>,
    anchor: Mutex<Anchor>,
}

#[derive(Clone, Copy)]
struct Anchor {
    wall: Timestamp,
    ticks: Duration,
}

impl CycleClock {
    /// A cycle clock over `inner`, anchored now.
    pub fn new(inner: Arc<dyn Clock>) -> Self {
        let anchor = Anchor { wall: inner.now(), ticks: inner.ticks() };
        CycleClock { inner, anchor: Mutex::new(anchor) }
    }

    /// Takes the wall clock as it is now: called at the start of each cycle.
    pub fn reanchor(&self) {
        let anchor = Anchor { wall: self.inner.now(), ticks: self.inner.ticks() };
        *self.anchor.lock().unwrap_or_else(|p| p.into_inner()) = anchor;
    }
}

#[async_trait::async_trait]
impl Clock for CycleClock {
    fn now(&self) -> Timestamp {
        let (wall, ticks) = (self.inner.now(), self.inner.ticks());
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        let projected = anchor.wall.plus(ticks.saturating_sub(anchor.ticks));
        if wall <= projected {
            *anchor = Anchor { wall, ticks };
            wall
        } else {
            projected
        }
    }

    fn ticks(&self) -> Duration {
        self.inner.ticks()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        loop {
            let now = self.now();
            if now >= deadline {
                return;
            }
            // This clock advances no faster than the ticks: a tick sleep of the gap
            // never overshoots by more than the wall clock lagging.
            self.inner.sleep(deadline.saturating_since(now)).await;
        }
    }

    async fn sleep(&self, span: Duration) {
        self.inner.sleep(span).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::time::ManualClock;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn a_forward_step_mid_cycle_does_not_shorten_a_delay_and_the_next_cycle_catches_up() {
        let wall = ManualClock::new(at(1_000_000));
        let clock = CycleClock::new(Arc::new(wall.clone()));
        wall.advance(Duration::from_secs(10));
        assert_eq!(clock.now(), at(1_010_000));
        wall.step_wall(3_600_000);
        assert_eq!(clock.now(), at(1_010_000), "a forward step counted as elapsed time");
        wall.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), at(1_015_000));
        clock.reanchor();
        assert_eq!(clock.now(), at(4_615_000), "the next cycle did not take the wall clock");
    }

    #[test]
    fn a_backward_step_is_followed_at_once_so_blobs_never_look_older() {
        let wall = ManualClock::new(at(1_000_000));
        let clock = CycleClock::new(Arc::new(wall.clone()));
        wall.step_wall(-60_000);
        assert_eq!(clock.now(), at(940_000));
        wall.advance(Duration::from_secs(1));
        assert_eq!(clock.now(), at(941_000));
    }
}
