//! What a status page shows of a running service: its timings and the rules they
//! satisfy, how much the stores hold, what the cleaners last stored, and the clocks.
//! Every figure is gathered under a time limit and a cap, so a status page never hangs
//! or walks a whole billion-key store.

use std::time::Duration;

use futures::StreamExt;

use super::{ProfileService, within};
use crate::clocks::ClockReadings;
use crate::settings::Timings;
use crate::store::SweepMarks;
use crate::time::Deadline;

/// How many of something were counted, and their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    /// Items counted.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Whether every item was counted (`false`: the cap was reached first).
    pub complete: bool,
}

/// A snapshot of the service for operators.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    /// The timings the service runs with.
    pub timings: Timings,
    /// Each timing rule with its values, and whether it holds.
    pub rules: Vec<(String, bool)>,
    /// Records: exactly how many, and the image bytes they name (up to the cap).
    pub records: Result<(u64, Tally), String>,
    /// Objects in the blob store (up to the cap).
    pub blobs: Result<Tally, String>,
    /// What completed cleaner cycles stored.
    pub sweep_marks: Result<SweepMarks, String>,
    /// Superseded images queued for the cleaner.
    pub superseded_queued: Result<u64, String>,
    /// The latest clock measurements, when the service checks its clocks.
    pub clocks: Option<ClockReadings>,
}

impl ProfileService {
    /// Gathers a [`ServiceStatus`], each store question within `limit`, counting at
    /// most `cap` records and `cap` blobs.
    pub async fn status(&self, limit: Duration, cap: u64) -> ServiceStatus {
        let timings = self.timings();
        let records = async {
            let total = self.metadata.count_records().await.map_err(|e| e.to_string())?;
            let mut tally = Tally { count: 0, bytes: 0, complete: true };
            let mut after = None;
            loop {
                let page = self.metadata.records_after(after.as_ref(), 1000).await.map_err(|e| e.to_string())?;
                let Some(last) = page.last() else { break };
                after = Some(last.user_id.clone());
                tally.count += page.len() as u64;
                tally.bytes += page.iter().map(|r| r.image_size).sum::<u64>();
                if tally.count >= cap {
                    tally.complete = false;
                    break;
                }
            }
            Ok((total, tally))
        };
        let blobs = async {
            let mut tally = Tally { count: 0, bytes: 0, complete: true };
            let mut pages = self.blobs.list(1000);
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| e.to_string())?;
                tally.count += page.len() as u64;
                tally.bytes += page.iter().map(|b| b.size).sum::<u64>();
                if tally.count >= cap {
                    tally.complete = false;
                    break;
                }
            }
            Ok(tally)
        };
        let deadline = Deadline::after(self.clock.clone(), limit);
        let (records, blobs, sweep_marks, superseded_queued) = tokio::join!(
            within(&deadline, records),
            within(&deadline, blobs),
            within(&deadline, async { self.metadata.sweep_marks().await.map_err(|e| e.to_string()) }),
            within(&deadline, async { self.metadata.count_superseded().await.map_err(|e| e.to_string()) }),
        );
        ServiceStatus {
            timings,
            rules: timings.rules(),
            records: in_time("counting records", limit, records),
            blobs: in_time("listing blobs", limit, blobs),
            sweep_marks: in_time("reading the sweep marks", limit, sweep_marks),
            superseded_queued: in_time("counting the superseded queue", limit, superseded_queued),
            clocks: self.clock_check.as_ref().map(|c| c.readings()),
        }
    }
}

/// An answer that came within the limit, or why there is none.
fn in_time<T>(what: &str, limit: Duration, answer: Option<Result<T, String>>) -> Result<T, String> {
    answer.unwrap_or_else(|| Err(format!("{what} took longer than {}", crate::settings::fmt_duration(limit))))
}
