//! Virtual time and ids for the simulation.
//!
//! The simulation runs on a single-threaded Tokio runtime with paused time: whenever
//! every task waits, Tokio jumps to the next timer. [`SimClock`] reads that virtual
//! time through the core's `Clock` seam, each machine with its own fixed offset
//! within the configured skew, so servers, cleaners and the two stores disagree about
//! the time exactly as much as the timings allow.

use std::sync::Mutex;
use std::time::Duration;

use profilestore_core::ids::{IdSource, ImageId};
use profilestore_core::time::{Clock, Timestamp};

use super::rng::SimRng;

/// The wall-clock instant every simulated run starts at (2026-01-01T00:00:00Z), so
/// the same seed gives the same timestamps.
pub const EPOCH: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// Virtual time since the run began; the start of the run is taken once per run.
#[derive(Debug, Clone, Copy)]
pub struct Origin(tokio::time::Instant);

impl Origin {
    /// The run begins now (on the paused runtime).
    #[allow(clippy::disallowed_methods)] // the simulation's clock seam
    pub fn now() -> Self {
        Origin(tokio::time::Instant::now())
    }

    /// Virtual time elapsed since the run began.
    #[allow(clippy::disallowed_methods)] // the simulation's clock seam
    pub fn elapsed(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.0)
    }

    /// The Tokio instant `elapsed` after the start of the run.
    pub fn instant_after(&self, elapsed: Duration) -> tokio::time::Instant {
        self.0 + elapsed
    }
}

/// One machine's clock: virtual time plus a fixed offset in milliseconds.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin: Origin,
    offset_ms: i64,
}

impl SimClock {
    /// A clock `offset_ms` ahead of true virtual time (behind when negative).
    pub fn new(origin: Origin, offset_ms: i64) -> Self {
        SimClock { origin, offset_ms }
    }

    /// A clock whose offset lies within `±skew/2`, so any two such clocks are at most
    /// `skew` apart. Half the clocks sit at one of the two extremes: pairs at the full
    /// bound are where a timing rule short by the skew breaks.
    pub fn skewed(origin: Origin, skew: Duration, rng: &mut SimRng) -> Self {
        let span = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX / 4);
        let from_low = match rng.below(4) {
            0 => 0,
            1 => span,
            _ => i64::try_from(rng.below(u64::try_from(span).unwrap_or(0) + 1)).unwrap_or(0),
        };
        SimClock::new(origin, from_low - span / 2)
    }

    /// How far ahead of true virtual time this clock runs, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }
}

#[async_trait::async_trait]
impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX / 4);
        Timestamp::from_millis(EPOCH.as_millis() + elapsed + self.offset_ms)
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        while self.now() < deadline {
            let true_ms = deadline.as_millis() - self.offset_ms - EPOCH.as_millis();
            let wake = self.origin.instant_after(Duration::from_millis(u64::try_from(true_ms).unwrap_or(0)));
            tokio::time::sleep_until(wake).await;
        }
    }

    fn ticks(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn sleep(&self, span: Duration) {
        tokio::time::sleep(span).await;
    }
}

/// Image ids for the simulation: UUIDv7 from the machine's clock and the seeded
/// stream, so a seed always issues the same ids.
pub struct SimIds {
    clock: SimClock,
    rng: Mutex<SimRng>,
}

impl SimIds {
    /// Ids stamped by `clock`, with random bits from `rng`.
    pub fn new(clock: SimClock, rng: SimRng) -> Self {
        SimIds { clock, rng: Mutex::new(rng) }
    }
}

impl IdSource for SimIds {
    fn next_image_id(&self) -> ImageId {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut tail = [0u8; 10];
        tail[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        tail[8..].copy_from_slice(&rng.next_u64().to_le_bytes()[..2]);
        let millis = u64::try_from(self.clock.now().as_millis()).unwrap_or(0);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
        ImageId::from_uuid(uuid).expect("the builder makes canonical version 7 UUIDs")
    }
}

/// Shortens `d` for trace tables: `+3:05:07.250` from the start of the run.
pub fn fmt_elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("+{h}:{m:02}:{s:02}.{frac:03}")
}
