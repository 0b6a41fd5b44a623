//! What faults a run injects: the largest rates, the kinds of fault, and the mix of
//! kinds and rates each seed draws (swarm testing).

use std::time::Duration;

use crate::SimRng;

/// What faults a run injects, and how often. With swarm testing on (the default),
/// these are the largest rates: each seed enables only some kinds, at a fraction of
/// these ([`FaultMix`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// Every store call waits up to this long (it also shuffles concurrent calls).
    pub latency: Duration,
    /// Chance a store call is slow, by up to `slow_max`.
    pub slow: f64,
    /// The longest slow call.
    pub slow_max: Duration,
    /// Chance a store call stalls, for `stall_max / 4` to `stall_max`.
    pub stall: f64,
    /// The longest stall.
    pub stall_max: Duration,
    /// Chance a store call fails.
    pub error: f64,
    /// Mean time between crashes of some server or cleaner; zero for none.
    pub crash_interval: Duration,
    /// The longest a crashed machine stays down.
    pub crash_downtime: Duration,
    /// Chance a record write freezes between the database's deadline check and the
    /// moment its commit becomes visible (a process frozen between its checked
    /// statement and `COMMIT`), for `freeze_max / 8` to `freeze_max`.
    pub freeze: f64,
    /// The longest freeze between check and commit.
    pub freeze_max: Duration,
    /// The largest drift of a clock, in parts per million.
    pub clock_drift_ppm: u32,
    /// The mean time between steps of a clock by its time daemon (zero: never), each
    /// to anywhere within the bound.
    pub clock_steps: Duration,
    /// How far beyond the skew bound one process's clock goes, from some moment on
    /// (zero: no clock leaves the bound). The seed picks the process and the direction.
    /// Not a fault the timing rules cover: the planned offset checks are what would
    /// make processes refuse to act on such a clock.
    pub clock_beyond_bound: Duration,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates {
            latency: Duration::from_millis(50),
            slow: 0.03,
            slow_max: Duration::from_secs(40 * 60),
            stall: 0.004,
            stall_max: Duration::from_secs(6 * 3600),
            error: 0.02,
            crash_interval: Duration::from_secs(3600),
            crash_downtime: Duration::from_secs(20 * 60),
            freeze: 0.003,
            freeze_max: Duration::from_secs(6 * 3600),
            clock_drift_ppm: 300,
            clock_steps: Duration::from_secs(4 * 3600),
            clock_beyond_bound: Duration::ZERO,
        }
    }
}

impl FaultRates {
    /// No faults at all beyond the small scheduling latency: clocks at fixed offsets.
    pub fn none() -> Self {
        FaultRates {
            slow: 0.0,
            stall: 0.0,
            error: 0.0,
            crash_interval: Duration::ZERO,
            freeze: 0.0,
            clock_drift_ppm: 0,
            clock_steps: Duration::ZERO,
            ..FaultRates::default()
        }
    }

    /// Whether fault `kind` is on at all.
    pub fn has(&self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::Slow => self.slow > 0.0,
            FaultKind::Stall => self.stall > 0.0,
            FaultKind::Error => self.error > 0.0,
            FaultKind::Crash => !self.crash_interval.is_zero(),
            FaultKind::Freeze => self.freeze > 0.0,
            FaultKind::Drift => self.clock_drift_ppm > 0,
            FaultKind::Steps => !self.clock_steps.is_zero(),
        }
    }
}

/// The kinds of fault swarm testing switches on and off per seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Store calls slowed by minutes.
    Slow,
    /// Store calls stalled for hours.
    Stall,
    /// Store calls failing.
    Error,
    /// Servers and cleaners crashing.
    Crash,
    /// Record writes frozen between check and commit.
    Freeze,
    /// Clocks drifting.
    Drift,
    /// Clocks stepped.
    Steps,
}

impl FaultKind {
    /// Every kind, in the order summaries print them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Slow,
        FaultKind::Stall,
        FaultKind::Error,
        FaultKind::Crash,
        FaultKind::Freeze,
        FaultKind::Drift,
        FaultKind::Steps,
    ];

    /// A short name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Slow => "slow calls",
            FaultKind::Stall => "stalls",
            FaultKind::Error => "errors",
            FaultKind::Crash => "crashes",
            FaultKind::Freeze => "frozen commits",
            FaultKind::Drift => "clock drift",
            FaultKind::Steps => "clock steps",
        }
    }
}

/// The faults one seed runs with: swarm testing draws from the seed which kinds are
/// on and how often each strikes (a quarter to twice the configured rate), so some
/// seeds run with one or two kinds of fault, undisturbed by the others, and some with
/// all of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultMix {
    /// The rates in force; a kind that is off has rate zero.
    pub rates: FaultRates,
}

impl FaultMix {
    /// The mix of seed `seed`: with `swarm`, drawn from the seed's own stream; without,
    /// every kind of `base` at its configured rate.
    pub fn draw(base: &FaultRates, seed: u64, swarm: bool) -> Self {
        let mut rates = *base;
        if !swarm {
            return FaultMix { rates };
        }
        let mut rng = SimRng::derive(seed, "swarm");
        for kind in FaultKind::ALL {
            let on = rng.chance(0.5);
            // A quarter to twice the configured rate, evenly on a log scale.
            let factor = 2f64.powf(3.0 * rng.unit() - 2.0);
            match kind {
                FaultKind::Slow => rates.slow = if on { (base.slow * factor).min(1.0) } else { 0.0 },
                FaultKind::Stall => rates.stall = if on { (base.stall * factor).min(1.0) } else { 0.0 },
                FaultKind::Error => rates.error = if on { (base.error * factor).min(1.0) } else { 0.0 },
                FaultKind::Crash => {
                    rates.crash_interval = if on { base.crash_interval.div_f64(factor) } else { Duration::ZERO }
                }
                FaultKind::Freeze => rates.freeze = if on { (base.freeze * factor).min(1.0) } else { 0.0 },
                FaultKind::Drift => {
                    rates.clock_drift_ppm = if on { (f64::from(base.clock_drift_ppm) * factor / 2.0) as u32 } else { 0 }
                }
                FaultKind::Steps => {
                    rates.clock_steps = if on { base.clock_steps.div_f64(factor) } else { Duration::ZERO }
                }
            }
        }
        FaultMix { rates }
    }

    /// The kinds this mix has on.
    pub fn kinds(&self) -> Vec<FaultKind> {
        FaultKind::ALL.into_iter().filter(|k| self.rates.has(*k)).collect()
    }
}

/// How many seeds ran with each kind of fault on, and with how many kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixCounts {
    /// Seeds with each kind on, in the order of [`FaultKind::ALL`].
    pub with: [u64; 7],
    /// Seeds by how many kinds they had on (0 to 7).
    pub by_kinds: [u64; 8],
}

impl MixCounts {
    /// Counts one seed's mix.
    pub fn add(&mut self, mix: &FaultMix) {
        let kinds = mix.kinds();
        for (i, kind) in FaultKind::ALL.iter().enumerate() {
            if kinds.contains(kind) {
                self.with[i] += 1;
            }
        }
        self.by_kinds[kinds.len()] += 1;
    }
}

impl std::fmt::Display for MixCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with: Vec<String> =
            FaultKind::ALL.iter().zip(self.with).map(|(k, n)| format!("{} {n}", k.name())).collect();
        let by: Vec<String> = self.by_kinds.iter().enumerate().map(|(k, n)| format!("{k}: {n}")).collect();
        write!(f, "fault mix (seeds with each kind on): {}; seeds by kinds on: {}", with.join(", "), by.join(", "))
    }
}
