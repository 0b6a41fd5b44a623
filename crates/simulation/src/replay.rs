//! The `profilestore simulate` command line that replays a run.

use std::time::Duration;

use crate::{FaultRates, SimConfig, StoreProtocol, SweepMode, sweep_name};

impl SimConfig {
    /// The `profilestore simulate` flags that replay this run. The command line has
    /// no flags for the page size, cleaner interval, think time, swarm testing or fault
    /// rates (other than `--no-faults`): a run with other values than the defaults of
    /// those is replayed through the library, not by these flags. An incremental run
    /// adds `--sweep=incremental --full-every=…` and the queue flaw
    /// `--queue-delay-from-statement` (see [`sweep_mode`] for parsing them).
    pub fn replay_args(&self) -> Vec<String> {
        let t = &self.timings;
        let mut args = vec![
            "simulate".to_owned(),
            format!("--seed={}", self.seed),
            "--seeds=1".to_owned(),
            format!("--servers={}", self.servers),
            format!("--cleaners={}", self.cleaners),
            format!("--clients={}", self.clients),
            format!("--users={}", self.users),
            format!("--ops={}", self.ops),
            format!("--request-timeout={}", flag_duration(t.request_timeout)),
            format!("--min-blob-age={}", flag_duration(t.min_blob_age)),
            format!("--delete-delay={}", flag_duration(t.delete_delay)),
            format!("--clock-skew={}", flag_duration(t.clock_skew)),
        ];
        if self.protocol != StoreProtocol::SqliteLocked {
            args.push(format!("--store-protocol={}", self.protocol.name()));
        }
        if let Some(drain) = self.drain {
            args.push(format!("--drain={}", flag_duration(drain)));
        }
        let beyond = self.faults.clock_beyond_bound;
        if !beyond.is_zero() {
            args.push(format!("--clock-beyond-bound={}", flag_duration(beyond)));
        }
        if self.clock_check {
            args.push("--clock-check".to_owned());
        }
        if let SweepMode::Incremental { full_every } = self.sweep {
            args.push(format!("--sweep={}", sweep_name(self.sweep)));
            args.push(format!("--full-every={}", flag_duration(full_every)));
        }
        if self.queue_delay_from_statement {
            args.push("--queue-delay-from-statement".to_owned());
        }
        if self.patches {
            args.push("--patches".to_owned());
        }
        if self.ignore_preconditions {
            args.push("--ignore-preconditions".to_owned());
        }
        if (FaultRates { clock_beyond_bound: Duration::ZERO, ..self.faults }) == FaultRates::none() {
            args.push("--no-faults".to_owned());
        }
        if self.unsafe_timings() {
            args.push("--allow-unsafe-timing".to_owned());
        }
        args
    }
}

/// A duration as the shortest exact flag value: `2h`, `5m`, `90s`, `250ms`.
fn flag_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_FULL_EVERY, sweep_mode};

    #[test]
    fn flag_durations_are_exact_and_short() {
        assert_eq!(flag_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(flag_duration(Duration::from_secs(300)), "5m");
        assert_eq!(flag_duration(Duration::from_secs(3900)), "65m");
        assert_eq!(flag_duration(Duration::from_secs(61)), "61s");
        assert_eq!(flag_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(flag_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn replay_flags_name_the_protocol_and_the_clock_beyond_the_bound() {
        let plain = SimConfig::default().replay_args();
        assert!(!plain.iter().any(|a| a.starts_with("--store-protocol") || a.starts_with("--clock-beyond")));
        let faults = FaultRates { clock_beyond_bound: Duration::from_secs(3 * 3600), ..FaultRates::none() };
        let args = SimConfig { protocol: StoreProtocol::Unlocked, faults, ..SimConfig::default() }.replay_args();
        for flag in ["--store-protocol=unlocked", "--clock-beyond-bound=3h", "--no-faults"] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
        }
        for p in [StoreProtocol::SqliteLocked, StoreProtocol::PostgresBounded, StoreProtocol::Unlocked] {
            assert_eq!(StoreProtocol::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn replay_flags_name_the_incremental_sweep_the_patches_and_the_flaws() {
        let plain = SimConfig::default().replay_args();
        assert!(
            !plain.iter().any(|a| a.starts_with("--sweep") || a.starts_with("--full-every") || a.contains("queue"))
        );
        let sweep = sweep_mode("incremental", Some(Duration::from_secs(2 * 3600))).unwrap();
        let config = SimConfig {
            sweep,
            queue_delay_from_statement: true,
            patches: true,
            ignore_preconditions: true,
            ..SimConfig::default()
        };
        let args = config.replay_args();
        for flag in [
            "--sweep=incremental",
            "--full-every=2h",
            "--queue-delay-from-statement",
            "--patches",
            "--ignore-preconditions",
        ] {
            assert!(args.iter().any(|a| a == flag), "{flag} missing from {args:?}");
        }
        assert_eq!(sweep_mode("incremental", None), Some(SweepMode::Incremental { full_every: DEFAULT_FULL_EVERY }));
        assert_eq!(sweep_mode("full", None).map(sweep_name), Some("full"));
        assert_eq!(sweep_mode("sideways", None), None);
    }
}
