//! Virtual time and ids for the simulation.
//!
//! The simulation runs on a single-threaded Tokio runtime with paused time: whenever
//! every task waits, Tokio jumps to the next timer. [`SimClock`] reads that virtual
//! time through the core's `Clock` seam. Each process (server, cleaner, the database,
//! the blob store) has a wall clock of its own that wanders: it drifts at a rate of up
//! to a few hundred parts per million and is stepped now and then, forwards or
//! backwards, as a time daemon steps a host's clock, always staying within
//! `±clock_skew/2` of true time so that any two clocks are at most `clock_skew` apart.
//! Its ticks are true virtual time, which never jumps. One clock may be allowed beyond
//! the bound on purpose ([`Rogue`]): a fault the timing rules do not cover.

use std::sync::{Arc, Mutex};
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

/// How the clocks of a run wander.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockModel {
    /// The bound on every clock's distance from true time: half the skew.
    pub bound: Duration,
    /// The largest drift rate, in parts per million (zero: no drift).
    pub drift_ppm: u32,
    /// The mean time between steps of a clock (zero: never stepped).
    pub step_interval: Duration,
}

/// How the log line naming a clock beyond the bound starts (the slicer keeps it).
pub const BEYOND_BOUND: &str = "clock beyond the bound: ";

/// One clock let beyond the bound: from `from` (true virtual time since the start)
/// on, it reads `offset_ms` away from true time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rogue {
    /// When the clock leaves the bound.
    pub from: Duration,
    /// How far ahead of true time it then runs (behind when negative), in milliseconds.
    pub offset_ms: i64,
}

/// A stretch of a clock's life: its offset moves linearly (drift) from `from` to `to`
/// over `len_ms` of true time; a step happens between two segments.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start_ms: u64,
    len_ms: u64,
    from: i64,
    to: i64,
}

impl Segment {
    fn offset_at(&self, t_ms: u64) -> i64 {
        let into = i128::from(t_ms.saturating_sub(self.start_ms).min(self.len_ms));
        let span = i128::from(self.len_ms.max(1));
        let moved = i128::from(self.to - self.from) * into / span;
        self.from + i64::try_from(moved).unwrap_or(0)
    }
}

/// A clock's offsets over its life, drawn lazily from its own stream (the same
/// segments whatever the order the clock is read in).
#[derive(Debug)]
struct Schedule {
    rng: SimRng,
    model: ClockModel,
    segments: Vec<Segment>,
    rogue: Option<Rogue>,
}

/// How long a segment without steps lasts: the drift rate changes this often.
const DRIFT_SEGMENT: Duration = Duration::from_secs(3 * 3600);

impl Schedule {
    fn bound_ms(&self) -> i64 {
        i64::try_from(self.model.bound.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// An offset within the bound; half the time at one of its two ends, since pairs
    /// of clocks at the full skew are where a timing rule short by the skew breaks.
    fn draw_offset(&mut self) -> i64 {
        let b = self.bound_ms();
        let span = u64::try_from(2 * b).unwrap_or(0);
        match self.rng.below(4) {
            0 => -b,
            1 => b,
            _ => i64::try_from(self.rng.below(span + 1)).unwrap_or(0) - b,
        }
    }

    fn push(&mut self, start_ms: u64, from: i64) {
        let m = self.model;
        let len_ms = if m.step_interval.is_zero() {
            u64::try_from(DRIFT_SEGMENT.as_millis()).unwrap_or(u64::MAX)
        } else {
            // Steps come between half and one and a half mean intervals apart.
            let mean = u64::try_from(m.step_interval.as_millis()).unwrap_or(u64::MAX / 4).max(2);
            mean / 2 + self.rng.below(mean + 1)
        };
        let b = self.bound_ms();
        let rate = i64::from(m.drift_ppm);
        let ppm = i64::try_from(self.rng.below(u64::try_from(2 * rate).unwrap_or(0) + 1)).unwrap_or(0) - rate;
        let drifted = i128::from(from) + i128::from(ppm) * i128::from(len_ms) / 1_000_000;
        let to = i64::try_from(drifted.clamp(i128::from(-b), i128::from(b))).unwrap_or(from);
        self.segments.push(Segment { start_ms, len_ms, from, to });
    }

    fn offset_at(&mut self, t_ms: u64) -> i64 {
        if let Some(rogue) = self.rogue
            && u128::from(t_ms) >= rogue.from.as_millis()
        {
            return rogue.offset_ms;
        }
        loop {
            let last = *self.segments.last().expect("a schedule starts with a segment");
            let end = last.start_ms.saturating_add(last.len_ms);
            if t_ms < end || end == last.start_ms {
                break;
            }
            let from = if self.model.step_interval.is_zero() { last.to } else { self.draw_offset() };
            self.push(end, from);
        }
        let i = self.segments.partition_point(|s| s.start_ms <= t_ms).saturating_sub(1);
        self.segments[i].offset_at(t_ms)
    }
}

/// One process's wall clock: true virtual time plus an offset that drifts and is
/// stepped (see the module's documentation). Clones are the same clock.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin: Origin,
    schedule: Arc<Mutex<Schedule>>,
}

impl SimClock {
    /// A clock `offset_ms` ahead of true virtual time (behind when negative), for ever.
    pub fn new(origin: Origin, offset_ms: i64) -> Self {
        let model = ClockModel { bound: Duration::ZERO, drift_ppm: 0, step_interval: Duration::ZERO };
        let never = Segment { start_ms: 0, len_ms: u64::MAX / 4, from: offset_ms, to: offset_ms };
        let schedule = Schedule { rng: SimRng::derive(0, "fixed clock"), model, segments: vec![never], rogue: None };
        SimClock { origin, schedule: Arc::new(Mutex::new(schedule)) }
    }

    /// A clock that wanders as `model` says, drawing from `rng`, and leaves the bound
    /// as `rogue` says, if given.
    pub fn wandering(origin: Origin, model: ClockModel, rng: SimRng, rogue: Option<Rogue>) -> Self {
        let mut schedule = Schedule { rng, model, segments: Vec::new(), rogue };
        let from = schedule.draw_offset();
        schedule.push(0, from);
        SimClock { origin, schedule: Arc::new(Mutex::new(schedule)) }
    }

    /// A clock at a fixed offset within `±skew/2`, so any two such clocks are at most
    /// `skew` apart; half of them sit at one of the two extremes.
    pub fn skewed(origin: Origin, skew: Duration, rng: SimRng) -> Self {
        let model = ClockModel { bound: skew / 2, drift_ppm: 0, step_interval: Duration::ZERO };
        SimClock::wandering(origin, model, rng, None)
    }

    /// How far ahead of true virtual time this clock runs now, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        let t = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX / 4);
        self.schedule.lock().unwrap_or_else(|p| p.into_inner()).offset_at(t)
    }

    fn drift_ppm(&self) -> u32 {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner()).model.drift_ppm
    }
}

#[async_trait::async_trait]
impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX / 4);
        Timestamp::from_millis(EPOCH.as_millis() + elapsed + self.offset_ms())
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let ppm = u64::from(self.drift_ppm());
        loop {
            let gap = u64::try_from(deadline.as_millis().saturating_sub(self.now().as_millis())).unwrap_or(0);
            if gap == 0 {
                return;
            }
            // At most `ppm` slower than true time between steps: sleep that much longer,
            // then look again (a step may have moved the clock meanwhile).
            tokio::time::sleep(Duration::from_millis(gap + gap * ppm / 1_000_000)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::time::Time;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn wandering_clocks_drift_and_step_within_the_bound_and_ticks_never_jump() {
        let origin = Origin::now();
        let model = ClockModel { bound: Duration::from_secs(150), drift_ppm: 300, step_interval: HOUR };
        let clocks: Vec<SimClock> =
            (0..4).map(|i| SimClock::wandering(origin, model, SimRng::derive(9, &format!("c{i}")), None)).collect();
        let (mut backwards, mut forwards, mut drifted) = (0, 0, 0);
        let mut last: Vec<(i64, Duration)> = clocks.iter().map(|c| (c.offset_ms(), c.ticks())).collect();
        for _ in 0..2000 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            for (c, (offset, ticks)) in clocks.iter().zip(&mut last) {
                let now = c.offset_ms();
                assert!(now.abs() <= 150_000, "offset {now} ms beyond the bound");
                assert_eq!(c.ticks(), *ticks + Duration::from_secs(60), "ticks are true time");
                match now - *offset {
                    d if d < -100 => backwards += 1,
                    d if d > 100 => forwards += 1,
                    0 => {}
                    _ => drifted += 1,
                }
                (*offset, *ticks) = (now, c.ticks());
            }
        }
        assert!(backwards > 10 && forwards > 10 && drifted > 1000, "{backwards} {forwards} {drifted}");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_wakes_once_the_clock_reads_the_time_and_a_rogue_leaves_the_bound() {
        let origin = Origin::now();
        let model = ClockModel { bound: Duration::from_secs(150), drift_ppm: 300, step_interval: HOUR };
        let rogue = Rogue { from: 2 * HOUR, offset_ms: -3 * 3_600_000 };
        let clock = SimClock::wandering(origin, model, SimRng::derive(1, "c"), Some(rogue));
        let same = SimClock::wandering(origin, model, SimRng::derive(1, "c"), Some(rogue));
        let target = clock.now().plus(Duration::from_secs(90 * 60));
        clock.sleep_until(target).await;
        assert!(clock.now() >= target);
        assert!(origin.elapsed() < 90 * Duration::from_secs(60) + Duration::from_secs(301), "woke far too late");
        // Read at other moments, the same stream gives the same clock.
        assert_eq!(same.now(), clock.now(), "a clock's schedule depends on its stream alone");
        tokio::time::sleep(HOUR).await;
        assert_eq!(clock.offset_ms(), -3 * 3_600_000);
    }
}
