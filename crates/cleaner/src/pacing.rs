//! How fast the cleaner deletes: a rate in keys per unit of time, and the pacer that
//! spaces delete requests to keep to it.
//!
//! The pacer books each request's share of time when the request is planned: a
//! request of `n` keys starts no earlier than the end of the time booked by the
//! requests before it, and books `n / rate` after its start. So the keys whose
//! requests start within any span `T` number at most `rate × T` plus one request's
//! keys (the first request goes at once), and concurrent delete batches share one
//! budget. Waiting longer before a delete is always safe: the design only requires
//! deletes to come late enough.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use profilestore_core::ids::{BlobKey, ImageId, Variant};
use profilestore_core::time::{Time, Timestamp};

/// At most `keys` keys deleted per `per`, on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRate {
    keys: u64,
    per: Duration,
}

/// Why a text or numbers are not a [`DeleteRate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid delete rate {text:?}: {reason} (expected keys per time, e.g. 500/s, 30000/min, 1000/10s, or a number of keys per second)"
)]
pub struct RateError {
    text: String,
    reason: &'static str,
}

impl DeleteRate {
    /// `keys` keys per `per`; refuses zero keys and a zero span.
    pub fn new(keys: u64, per: Duration) -> Result<DeleteRate, RateError> {
        let refuse = |reason| Err(RateError { text: format!("{keys}/{per:?}"), reason });
        if keys == 0 {
            return refuse("it must allow at least one key");
        }
        if per.is_zero() {
            return refuse("the span must be longer than zero");
        }
        Ok(DeleteRate { keys, per })
    }

    /// The time deleting `n` keys takes at this rate, rounded up to whole
    /// milliseconds (the cleaner clock's precision) so that pacing is never faster
    /// than the rate.
    pub fn time_for(&self, n: u64) -> Duration {
        let nanos = self.per.as_nanos().saturating_mul(u128::from(n)).div_ceil(u128::from(self.keys));
        let millis = nanos.div_ceil(1_000_000);
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

impl FromStr for DeleteRate {
    type Err = RateError;

    /// Parses `KEYS` (per second) or `KEYS/SPAN`, where `SPAN` is a duration such as
    /// `10s` or a bare unit such as `s`, `min` or `h` (one of it).
    fn from_str(s: &str) -> Result<DeleteRate, RateError> {
        let refuse = |reason| RateError { text: s.to_owned(), reason };
        let (keys, span) = s.trim().split_once('/').unwrap_or((s.trim(), "1s"));
        let keys: u64 =
            keys.trim().replace('_', "").parse().map_err(|_| refuse("the number of keys is not a whole number"))?;
        let span = span.trim();
        let span = if span.starts_with(|c: char| c.is_ascii_digit()) { span.to_owned() } else { format!("1{span}") };
        let per = humantime::parse_duration(&span).map_err(|_| refuse("the span after '/' is not a duration"))?;
        DeleteRate::new(keys, per).map_err(|e| refuse(e.reason))
    }
}

/// A rate in a settings file: the same text [`FromStr`] reads (`"500/s"`), or a bare
/// whole number of keys per second (`500`), as on the command line.
impl<'de> serde::Deserialize<'de> for DeleteRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DeleteRate, D::Error> {
        struct RateVisitor;

        impl serde::de::Visitor<'_> for RateVisitor {
            type Value = DeleteRate;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a delete rate such as \"500/s\" or a number of keys per second")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DeleteRate, E> {
                s.parse().map_err(E::custom)
            }

            fn visit_u64<E: serde::de::Error>(self, keys: u64) -> Result<DeleteRate, E> {
                DeleteRate::new(keys, Duration::from_secs(1)).map_err(E::custom)
            }

            fn visit_i64<E: serde::de::Error>(self, keys: i64) -> Result<DeleteRate, E> {
                self.visit_str(&keys.to_string())
            }
        }

        d.deserialize_any(RateVisitor)
    }
}

impl fmt::Display for DeleteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.keys, humantime::format_duration(self.per))
    }
}

/// Plans when each delete request of a cycle may start (see the module's doc).
#[derive(Debug, Clone)]
pub(crate) struct DeletePacer {
    rate: Option<DeleteRate>,
    /// The end of the time booked so far; `None` before the first request.
    booked_until: Option<Timestamp>,
}

impl DeletePacer {
    /// A pacer for `rate`; `None` lets every request start at once.
    pub fn new(rate: Option<DeleteRate>) -> DeletePacer {
        DeletePacer { rate, booked_until: None }
    }

    /// When a request of `keys` keys planned at `now` may start, booking its time.
    pub fn reserve(&mut self, now: Timestamp, keys: u64) -> Timestamp {
        let Some(rate) = self.rate else { return now };
        let start = self.booked_until.map_or(now, |booked| booked.max(now));
        self.booked_until = Some(start.plus(rate.time_for(keys)));
        start
    }

    /// The delete requests for every variant of every image in `ids`, at most
    /// `batch_size` keys each, with the start each is booked for at `now`. Only keys
    /// built from an [`ImageId`] are ever named.
    pub fn plan(&mut self, ids: &[ImageId], batch_size: usize, now: Timestamp) -> Vec<(Timestamp, Vec<BlobKey>)> {
        let keys: Vec<BlobKey> = ids.iter().flat_map(|&id| Variant::ALL.map(|v| BlobKey::new(id, v))).collect();
        keys.chunks(batch_size.max(1)).map(|batch| (self.reserve(now, batch.len() as u64), batch.to_vec())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> DeleteRate {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn rates_parse_from_human_text() {
        let per_sec = DeleteRate::new(500, Duration::from_secs(1)).unwrap();
        assert_eq!(rate("500"), per_sec);
        assert_eq!(rate("500/s"), per_sec);
        assert_eq!(rate(" 500 / 1s "), per_sec);
        assert_eq!(rate("30000/min"), DeleteRate::new(30_000, Duration::from_secs(60)).unwrap());
        assert_eq!(rate("1000/10s"), DeleteRate::new(1000, Duration::from_secs(10)).unwrap());
        assert_eq!(rate("10_000/h"), DeleteRate::new(10_000, Duration::from_secs(3600)).unwrap());
        assert_eq!(rate("30000/min").to_string(), "30000/1m");
        for bad in ["", "0/s", "-5/s", "1.5/s", "5/0s", "5/fortnight", "five/s", "5/"] {
            let err = bad.parse::<DeleteRate>().expect_err(bad);
            assert!(err.to_string().contains("500/s"), "{err} does not show an example");
        }
    }

    #[test]
    fn rates_deserialise_from_the_same_text_or_a_bare_number() {
        let from = |json: &str| serde_json::from_str::<DeleteRate>(json).map_err(|e| e.to_string());
        assert_eq!(from("\"30000/min\""), Ok(rate("30000/min")));
        assert_eq!(from("500"), Ok(rate("500/s")));
        assert!(from("0").unwrap_err().contains("at least one key"));
        assert!(from("-5").unwrap_err().contains("500/s"));
        assert!(from("\"fast\"").unwrap_err().contains("500/s"));
        assert!(from("1.5").unwrap_err().contains("delete rate"));
    }

    #[test]
    fn time_for_keys_rounds_up_and_never_overflows() {
        let r = rate("3/s");
        assert_eq!(r.time_for(3), Duration::from_secs(1));
        assert_eq!(r.time_for(1), Duration::from_millis(334), "333.3 ms rounds up");
        assert_eq!(r.time_for(0), Duration::ZERO);
        assert_eq!(rate("1000000/s").time_for(1), Duration::from_millis(1));
        assert_eq!(rate("1/h").time_for(u64::MAX), Duration::from_millis(u64::MAX), "saturates");
    }

    #[test]
    fn requests_are_spaced_by_the_keys_before_them() {
        let t = |ms: i64| Timestamp::from_millis(ms);
        let mut pacer = DeletePacer::new(Some(rate("100/s")));
        // Three requests planned at once: the first goes now, the others when the
        // keys before them have had their time.
        assert_eq!(pacer.reserve(t(0), 50), t(0));
        assert_eq!(pacer.reserve(t(0), 100), t(500));
        assert_eq!(pacer.reserve(t(0), 10), t(1500));
        // Booked until 1600; one planned later than that starts when planned.
        assert_eq!(pacer.reserve(t(5000), 100), t(5000));
        assert_eq!(pacer.reserve(t(5200), 1), t(6000));
        let mut unlimited = DeletePacer::new(None);
        assert_eq!(unlimited.reserve(t(7), 1000), t(7));
        assert_eq!(unlimited.reserve(t(7), 1000), t(7));
    }
}
