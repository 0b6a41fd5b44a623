//! The cluster-wide timings and the rules that make them safe (docs/design.md, "Timing rules").
//!
//! This is the one place the rules live. Every process validates its timings here at
//! start, and the values stored when the stores were paired must match.

use std::fmt;
use std::time::Duration;

use crate::time::Time;

/// The four durations the design's safety rests on, in the units of a [`Time`].
///
/// Production uses [`Duration`]; the model checker uses hours.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Timings<S = Duration> {
    /// A request acts only while `now < start + request_timeout`.
    pub request_timeout: S,
    /// The cleaner considers a blob only once it is at least this old (plus skew).
    pub min_blob_age: S,
    /// The cleaner waits this long between finding a blob unreferenced and deleting it.
    pub delete_delay: S,
    /// How far apart the clocks of servers, cleaners and stores may be.
    pub clock_skew: S,
}

impl Timings<Duration> {
    /// The case study's numbers: 1 h, 2 h, 1 h, 5 min.
    pub const CASE_STUDY: Timings = Timings {
        request_timeout: Duration::from_secs(3600),
        min_blob_age: Duration::from_secs(7200),
        delete_delay: Duration::from_secs(3600),
        clock_skew: Duration::from_secs(300),
    };

    /// Every timing rule with these values filled in: the setting it constrains, the
    /// rule, whether it holds, and why a broken one matters. The one list both
    /// [`validate`](Self::validate) and [`rules`](Self::rules) read.
    fn checked_rules(&self) -> [(&'static str, String, bool, &'static str); 3] {
        let (timeout, age, delay, skew) = (self.request_timeout, self.min_blob_age, self.delete_delay, self.clock_skew);
        [
            (
                "request-timeout",
                format!("request-timeout ({}) > 0", fmt_duration(timeout)),
                !timeout.is_zero(),
                "a request with no time at all can do nothing",
            ),
            (
                "min-blob-age",
                format!(
                    "min-blob-age ({}) >= request-timeout + clock-skew ({})",
                    fmt_duration(age),
                    fmt_duration(timeout + skew)
                ),
                age >= timeout + skew,
                "otherwise the cleaner can delete the blob of a write that has not yet committed its record",
            ),
            (
                "delete-delay",
                format!("delete-delay ({}) >= request-timeout ({})", fmt_duration(delay), fmt_duration(timeout)),
                delay >= timeout,
                "otherwise a read that fetched the old record can find its blob deleted",
            ),
        ]
    }

    /// Checks every timing rule; `Ok` when all hold, else each broken rule.
    pub fn validate(&self) -> Result<(), TimingViolations> {
        let broken: Vec<TimingViolation> = self
            .checked_rules()
            .into_iter()
            .filter(|(_, _, holds, _)| !holds)
            .map(|(setting, rule, _, detail)| TimingViolation { setting, rule, detail: detail.into() })
            .collect();
        if broken.is_empty() { Ok(()) } else { Err(TimingViolations(broken)) }
    }

    /// Each timing rule with these values filled in, and whether it holds (for status
    /// pages; [`validate`](Self::validate) says why a broken one matters).
    pub fn rules(&self) -> Vec<(String, bool)> {
        self.checked_rules().into_iter().map(|(_, rule, holds, _)| (rule, holds)).collect()
    }

    /// The slack a committed-but-not-yet-visible record may stall for without risk:
    /// `min_blob_age - request_timeout - clock_skew`. It bounds what no store protocol
    /// can (see `docs/design.md`, "Check, then commit"); `serve` and `clean` print it
    /// at start.
    pub fn commit_stall_margin(&self) -> Duration {
        self.min_blob_age.saturating_sub(self.request_timeout + self.clock_skew)
    }

    /// Each field whose value differs from `other`'s, as `(setting, ours, theirs)`.
    pub fn differences(&self, other: &Timings) -> Vec<(&'static str, Duration, Duration)> {
        [
            ("request-timeout", self.request_timeout, other.request_timeout),
            ("min-blob-age", self.min_blob_age, other.min_blob_age),
            ("delete-delay", self.delete_delay, other.delete_delay),
            ("clock-skew", self.clock_skew, other.clock_skew),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .collect()
    }
}

impl Default for Timings<Duration> {
    fn default() -> Self {
        Timings::CASE_STUDY
    }
}

impl<S: Copy + std::ops::Add<Output = S>> Timings<S> {
    /// How old a blob must look, by the cleaner's clock, before the cleaner asks
    /// whether it is referenced: `min_blob_age + clock_skew`, so skew errs toward not
    /// deleting.
    pub fn cleaner_min_age(&self) -> S {
        self.min_blob_age + self.clock_skew
    }

    /// How far the listing horizon trails the start of a completed cycle:
    /// `request_timeout + min_blob_age + 3 * clock_skew`.
    ///
    /// An image id minted at `t` by a server's clock (within `clock_skew` of true time)
    /// has its blob put no later than `t + request_timeout + 2 * clock_skew` by the blob
    /// store's clock; a cycle that starts at `T` by the cleaner's clock (also within
    /// skew) and lists that blob finds it [`old_enough`] when `t <= T - lag`. So every
    /// blob minted at or before `T - lag` existed and was old enough when such a cycle
    /// listed it, and later cycles need not list it again.
    pub fn listing_horizon_lag(&self) -> S {
        self.request_timeout + self.min_blob_age + self.clock_skew + self.clock_skew + self.clock_skew
    }
}

/// Whether a blob created at `created` (by the blob store's clock) is old enough for
/// the cleaner to consider at `now` (by the cleaner's clock). Ages compare with `>=`.
pub fn old_enough<T: Time>(created: T, now: T, timings: &Timings<T::Span>) -> bool {
    created.plus(timings.cleaner_min_age()) <= now
}

/// One broken timing rule: the setting to change, the rule, and what breaks without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingViolation {
    /// The flag name of the offending setting.
    pub setting: &'static str,
    /// The rule, with the values that break it.
    pub rule: String,
    /// What goes wrong when the rule is broken.
    pub detail: String,
}

/// Every timing rule a configuration breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TimingViolations(pub Vec<TimingViolation>);

impl fmt::Display for TimingViolations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} breaks the rule {}: {}", v.setting, v.rule, v.detail)?;
        }
        Ok(())
    }
}

/// A duration in the short human form the flags accept (`1h 5m`, `250ms`).
pub fn fmt_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const H: Duration = Duration::from_secs(3600);

    #[test]
    fn case_study_numbers_are_safe() {
        assert_eq!(Timings::default().validate(), Ok(()));
        assert_eq!(Timings::CASE_STUDY.commit_stall_margin(), Duration::from_secs(55 * 60));
    }

    #[test]
    fn the_boundaries_of_both_inequalities_are_allowed() {
        let t = Timings {
            request_timeout: H,
            min_blob_age: H + Duration::from_secs(300),
            delete_delay: H,
            ..Timings::CASE_STUDY
        };
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn each_broken_rule_names_its_setting() {
        let too_young = Timings { min_blob_age: H, ..Timings::CASE_STUDY };
        let err = too_young.validate().unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].setting, "min-blob-age");
        assert!(err.to_string().contains("request-timeout + clock-skew"), "{err}");

        let no_delay = Timings { delete_delay: Duration::ZERO, ..Timings::CASE_STUDY };
        assert_eq!(no_delay.validate().unwrap_err().0[0].setting, "delete-delay");

        let no_timeout = Timings { request_timeout: Duration::ZERO, ..Timings::CASE_STUDY };
        assert_eq!(no_timeout.validate().unwrap_err().0[0].setting, "request-timeout");
    }

    #[test]
    fn old_enough_includes_skew_and_compares_with_ge() {
        let t = Timings::CASE_STUDY;
        let created = Timestamp::from_millis(0);
        let exactly = Timestamp::from_millis((2 * 3600 + 300) * 1000);
        assert!(old_enough(created, exactly, &t), "exactly min_blob_age + skew is old enough");
        assert!(!old_enough(created, Timestamp::from_millis(exactly.as_millis() - 1), &t));
        // Without the skew term the blob would already count: skew pushes toward keeping it.
        assert!(!old_enough(created, Timestamp::from_millis(2 * 3600 * 1000), &t));
    }

    #[test]
    fn differences_list_each_changed_setting() {
        let other = Timings { clock_skew: Duration::from_secs(60), ..Timings::CASE_STUDY };
        let diff = Timings::CASE_STUDY.differences(&other);
        assert_eq!(diff, vec![("clock-skew", Duration::from_secs(300), Duration::from_secs(60))]);
    }
}
