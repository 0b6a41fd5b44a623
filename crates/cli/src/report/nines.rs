//! The case study's per-request reliability, computed from observed rates instead of
//! guessed ones: each assumption the design rests on, how often it was seen to fail
//! per request, with a confidence interval, and the nines that supports.
//!
//! Method: the Wilson score interval at 95 % for `k` events in `n` requests; with no
//! event, the exact one-sided 95 % bound `1 - 0.05^(1/n)` (about `3/n`, the rule of
//! three), so `n` requests without an event support at most about `log10(n/3)` nines.

use super::scrape::{Labels, Scrape, increase, largest};

/// z for a two-sided 95 % interval.
const Z: f64 = 1.959_963_984_540_054;

/// One assumption, observed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Assumption {
    /// What is assumed.
    pub name: &'static str,
    /// What counts as it failing, in the figures.
    pub evidence: &'static str,
    /// The case study's estimate, in nines (`None`: not in the case study).
    pub paper_nines: Option<f64>,
    /// Events seen.
    pub events: u64,
    /// Events per request (the point estimate).
    pub rate: f64,
    /// The 95 % interval of the rate.
    pub rate_interval: (f64, f64),
    /// The nines the data supports: from the upper end of the interval (the
    /// conservative end), and from the point estimate when there were events.
    pub nines_supported: f64,
    /// The nines at the point estimate; `None` with no event (infinite).
    pub nines_estimate: Option<f64>,
    /// No event was seen: the data cannot support more than `nines_supported`.
    pub insufficient_data: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NinesReport {
    /// API requests (routes under `/v1/`) the figures cover.
    pub requests: u64,
    /// How the intervals are computed.
    pub method: &'static str,
    /// Each assumption.
    pub assumptions: Vec<Assumption>,
    /// All assumptions together (the probability all hold), from each one's upper rate.
    pub combined_nines_supported: f64,
    /// The case study's combined estimate (pessimistic and realistic), in nines.
    pub paper_combined_nines: (f64, f64),
    /// The largest `|offset| + error` of any clock measured, seconds.
    pub worst_clock_offset_seconds: Option<f64>,
    /// The configured bound, seconds.
    pub clock_skew_bound_seconds: Option<f64>,
}

/// Why no report can be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The scrapes count no API request.
    #[error("the scrapes count no API request (profilestore_http_requests_total on /v1/ routes): nothing to estimate")]
    NoRequests,
}

/// The report for `scrapes` of one process, in time order.
pub fn report(scrapes: &[Scrape]) -> Result<NinesReport, ReportError> {
    let label = |key: &'static str, allowed: &'static [&'static str]| {
        move |l: &Labels| l.get(key).is_some_and(|v| allowed.contains(&v.as_str()))
    };
    let api = |l: &Labels| l.get("route").is_some_and(|r| r.starts_with("/v1/"));
    let requests = increase(scrapes, "profilestore_http_requests_total", &api).round() as u64;
    if requests == 0 {
        return Err(ReportError::NoRequests);
    }
    let count = |name: &str, keep: &dyn Fn(&Labels) -> bool| increase(scrapes, name, keep).round() as u64;
    let errors_of = |store: &'static str, kinds: &'static [&'static str]| {
        move |l: &Labels| l.get("store").is_some_and(|s| s == store) && label("kind", kinds)(l)
    };
    let all = |_: &Labels| true;
    let rows = [
        (
            "clocks within clock-skew",
            "writes refused because a clock may be beyond the bound (or the timings changed)",
            Some(12.0),
            count("profilestore_writes_total", &label("outcome", &["refused"])),
        ),
        (
            "no server stalls past request-timeout",
            "writes the deadline cut after the blob was stored (at or before the commit), and commits abandoned in flight",
            Some(6.0),
            count(
                "profilestore_write_deadline_cuts_total",
                &label("phase", &["between_blob_and_record", "refused_at_commit"]),
            ) + count("profilestore_writes_total", &label("outcome", &["commit_unknown"])),
        ),
        (
            "the database does not corrupt records",
            "database calls that answered corrupt data",
            Some(11.0),
            count("profilestore_store_call_errors_total", &errors_of("database", &["corrupt"])),
        ),
        (
            "the blob store does not lose or corrupt objects",
            "dangling references, blobs missing under a read, blob calls that answered corrupt data",
            Some(11.0),
            count("profilestore_dangling_references_total", &all)
                + count("profilestore_read_blob_missing_total", &all)
                + count("profilestore_store_call_errors_total", &errors_of("blobs", &["corrupt"])),
        ),
        (
            "the stores answer",
            "store calls that failed as unavailable or were abandoned (availability, not corruption)",
            None,
            count("profilestore_store_call_errors_total", &label("kind", &["unavailable", "abandoned"])),
        ),
    ];
    let assumptions: Vec<Assumption> = rows
        .into_iter()
        .map(|(name, evidence, paper_nines, events)| observe(name, evidence, paper_nines, events, requests))
        .collect();
    // Only the case study's assumptions combine into its figure.
    let all_hold: f64 =
        assumptions.iter().filter(|a| a.paper_nines.is_some()).map(|a| 1.0 - a.rate_interval.1).product();
    Ok(NinesReport {
        requests,
        method: "Wilson score interval (95 %); with no event, the exact one-sided 95 % bound 1 - 0.05^(1/n) \
                 (about 3/n, the rule of three)",
        assumptions,
        combined_nines_supported: nines(1.0 - all_hold),
        paper_combined_nines: (5.96, 7.7),
        worst_clock_offset_seconds: largest(scrapes, "profilestore_clock_offset_worst_seconds", &all),
        clock_skew_bound_seconds: largest(scrapes, "profilestore_clock_skew_bound_seconds", &all),
    })
}

fn observe(name: &'static str, evidence: &'static str, paper_nines: Option<f64>, events: u64, n: u64) -> Assumption {
    let (k, nf) = (events as f64, n as f64);
    let rate = k / nf;
    let rate_interval = if events == 0 { (0.0, 1.0 - 0.05f64.powf(1.0 / nf)) } else { wilson(k, nf) };
    Assumption {
        name,
        evidence,
        paper_nines,
        events,
        rate,
        rate_interval,
        nines_supported: nines(rate_interval.1),
        nines_estimate: (events > 0).then(|| nines(rate)),
        insufficient_data: events == 0,
    }
}

/// The Wilson score interval of `k` successes in `n` trials.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let p = k / n;
    let z2 = Z * Z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Nines of a failure probability `q`: `-log10(q)`.
pub(super) fn nines(q: f64) -> f64 {
    if q <= 0.0 { f64::INFINITY } else { -q.log10() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(text: &str) -> Scrape {
        Scrape::parse(text).unwrap()
    }

    #[test]
    fn no_event_in_n_requests_supports_about_log10_of_n_over_3_nines_and_says_so() {
        let s = scrape(
            r#"profilestore_http_requests_total{route="/v1/profiles/{user_id}",method="GET",status="200"} 30000"#,
        );
        let r = report(&[s]).unwrap();
        assert_eq!(r.requests, 30_000);
        let stall = &r.assumptions[1];
        assert!(stall.insufficient_data && stall.events == 0);
        assert!((stall.nines_supported - (30_000f64 / 3.0).log10()).abs() < 0.01, "{stall:?}");
        assert!(r.combined_nines_supported < stall.nines_supported, "four assumptions together support fewer");
    }

    #[test]
    fn observed_events_give_a_rate_with_an_interval_around_it() {
        let s = scrape(
            r#"profilestore_http_requests_total{route="/v1/profiles/{user_id}",method="PUT",status="200"} 990
profilestore_http_requests_total{route="/v1/profiles/{user_id}",method="PUT",status="504"} 10
profilestore_http_requests_total{route="/healthz",method="GET",status="200"} 5000
profilestore_write_deadline_cuts_total{phase="refused_at_commit"} 4
profilestore_write_deadline_cuts_total{phase="before_blob"} 6
profilestore_writes_total{outcome="commit_unknown"} 1
profilestore_dangling_references_total 0
profilestore_clock_offset_worst_seconds{clock="database"} 0.2
profilestore_clock_offset_worst_seconds{clock="blob_store"} 1.5
profilestore_clock_skew_bound_seconds 300"#,
        );
        let r = report(&[s]).unwrap();
        assert_eq!(r.requests, 1000, "health checks are not API requests");
        let stall = &r.assumptions[1];
        assert_eq!(stall.events, 5, "cuts before the blob do not matter; the other four and the unknown commit do");
        assert!((stall.rate - 0.005).abs() < 1e-12);
        let (lo, hi) = stall.rate_interval;
        assert!(lo < 0.005 && 0.005 < hi && lo > 0.001 && hi < 0.02, "{stall:?}");
        assert!((stall.nines_estimate.unwrap() - 2.3).abs() < 0.01);
        assert!(!stall.insufficient_data);
        assert_eq!(r.worst_clock_offset_seconds, Some(1.5));
        assert_eq!(r.clock_skew_bound_seconds, Some(300.0));
    }

    #[test]
    fn a_scrape_without_api_requests_is_refused() {
        let s = scrape(r#"profilestore_http_requests_total{route="/healthz",method="GET",status="200"} 5"#);
        assert_eq!(report(&[s]).unwrap_err(), ReportError::NoRequests);
    }
}
