//! Clocks are measured, not trusted: this process's offset to the database's clock
//! and to the blob store's, and the verdict that stops writing and cleaning while
//! either may be beyond `clock_skew`.
//!
//! The timing rules assume every clock within `clock_skew` of every other. A process
//! cannot know its own clock is right, but it can bound its offset to each clock it is
//! compared with: the database's (`SELECT` of its clock, the round trip as the error
//! bound) and the blob store's (the creation time it reports for a probe object,
//! against this clock read just before and just after the put, plus the store's
//! precision). An offset that may lie beyond the bound makes [`ClockCheck::verdict`]
//! refuse; a later measurement within it lifts the refusal by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::StoreError;
use crate::store::{BlobStore, MetadataStore};
use crate::time::{Clock, Timestamp};

/// The two clocks a process is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerClock {
    /// The database's clock, which judges deadlines.
    Database,
    /// The blob store's clock, which stamps blobs' creation times.
    BlobStore,
}

impl PeerClock {
    /// The name used in logs, errors and `readyz`.
    pub fn name(self) -> &'static str {
        match self {
            PeerClock::Database => "database",
            PeerClock::BlobStore => "blob store",
        }
    }
}

/// One measurement of a peer clock's offset: the peer's clock minus ours lies in
/// `[offset - error, offset + error]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// The middle of the interval, in milliseconds (positive: the peer is ahead).
    pub offset_ms: i64,
    /// Half the interval's width, in milliseconds.
    pub error_ms: i64,
    /// When it was measured, by our wall clock.
    pub measured_at: Timestamp,
    /// When it was measured, by our tick clock: a measurement's age is judged on it,
    /// so no wall-clock step can make an old one look fresh.
    pub measured_ticks: Duration,
}

impl Offset {
    /// The offset interval `[peer - t1, peer + precision - t0]` of a peer reading taken
    /// between our readings `t0` and `t1`, truncated to `precision`.
    pub fn between(t0: Timestamp, peer: Timestamp, precision: Duration, t1: Timestamp) -> Offset {
        let precision = i64::try_from(precision.as_millis()).unwrap_or(i64::MAX / 4).max(1);
        let low = peer.as_millis() - t1.as_millis();
        let high = peer.as_millis() + precision - t0.as_millis();
        Offset {
            offset_ms: (low + high).div_euclid(2),
            error_ms: (high - low + 1) / 2,
            measured_at: t1,
            measured_ticks: Duration::ZERO,
        }
    }

    /// The largest distance from zero the offset may have.
    pub fn worst_ms(&self) -> i64 {
        self.offset_ms.abs() + self.error_ms
    }
}

/// Why a process must not write or clean now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockFault {
    /// A peer clock may be further off than the bound.
    #[error(
        "the {} clock is {} ms {} this process's (± {} ms), beyond the {} ms clock_skew bound",
        .clock.name(), .offset.offset_ms.abs(), if .offset.offset_ms >= 0 { "ahead of" } else { "behind" },
        .offset.error_ms, .bound_ms
    )]
    OutOfBounds {
        /// Which clock.
        clock: PeerClock,
        /// Its measured offset.
        offset: Offset,
        /// The bound, `clock_skew`, in milliseconds.
        bound_ms: i64,
    },
    /// The clock has not been measured yet, or its last measurement is too old.
    #[error("the {} clock's offset is not known ({})", .clock.name(), .why)]
    Unmeasured {
        /// Which clock.
        clock: PeerClock,
        /// Why not.
        why: String,
    },
}

/// The latest measurement of each peer clock.
#[derive(Debug, Clone, Default)]
pub struct ClockReadings {
    /// The database's clock, or why it could not be measured.
    pub database: Option<Result<Offset, String>>,
    /// The blob store's clock, or why it could not be measured.
    pub blob_store: Option<Result<Offset, String>>,
}

/// Measures this process's offsets to the database's and the blob store's clocks and
/// says whether writing and cleaning may go on. Cheap to share.
pub struct ClockCheck {
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    /// The bound, `clock_skew`, in milliseconds; a timings change moves it.
    bound_ms: std::sync::atomic::AtomicU64,
    /// A measurement older than this no longer vouches for the clocks.
    max_age: Duration,
    readings: Mutex<ClockReadings>,
}

/// Why a `clock_skew` is refused: smaller than what can be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "clock-skew {bound_ms} ms is smaller than what can be measured against the blob store, whose creation times \
     have {precision_ms} ms precision: set clock-skew to at least {needed_ms} ms (and min-blob-age to at least \
     request-timeout + clock-skew)"
)]
pub struct SkewTooFine {
    /// The configured bound.
    pub bound_ms: i64,
    /// The blob store's precision.
    pub precision_ms: i64,
    /// The smallest bound that can be checked.
    pub needed_ms: i64,
}

impl ClockCheck {
    /// A check of the offsets against `bound` (the cluster's `clock_skew`); a
    /// measurement vouches for `max_age`, after which the verdict refuses until the
    /// next one.
    pub fn new(
        metadata: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        bound: Duration,
        max_age: Duration,
    ) -> ClockCheck {
        let bound_ms = std::sync::atomic::AtomicU64::new(u64::try_from(bound.as_millis()).unwrap_or(u64::MAX));
        ClockCheck { metadata, blobs, clock, bound_ms, max_age, readings: Mutex::new(ClockReadings::default()) }
    }

    /// Judges offsets against `bound` from now on (the cluster's `clock_skew` changed).
    pub fn set_bound(&self, bound: Duration) {
        let ms = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        self.bound_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    fn bound(&self) -> Duration {
        Duration::from_millis(self.bound_ms.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Measures both offsets now, keeps them, logs any change of verdict, and returns
    /// the verdict. Refuses (`Err(SkewTooFine)`) a bound the blob store's precision
    /// cannot check: an in-step clock would then look out of bounds half the time.
    pub async fn measure(&self) -> Result<Result<(), ClockFault>, SkewTooFine> {
        let before = self.verdict();
        let database = self.measure_database().await.map_err(|e| e.to_string());
        let probe = self.measure_blob_store().await;
        if let Ok((_, precision)) = &probe {
            let bound_ms = millis(self.bound());
            let precision_ms = millis(*precision);
            if bound_ms < 2 * precision_ms {
                return Err(SkewTooFine { bound_ms, precision_ms, needed_ms: 2 * precision_ms });
            }
        }
        let bound = self.bound();
        crate::metrics::clock_measured(PeerClock::Database, database.as_ref().map_err(drop), bound);
        let probed = probe.as_ref().map(|(offset, _)| offset).map_err(drop);
        crate::metrics::clock_measured(PeerClock::BlobStore, probed, bound);
        {
            let mut readings = self.readings.lock().unwrap_or_else(|p| p.into_inner());
            readings.database = Some(database);
            readings.blob_store = Some(probe.map(|(offset, _)| offset).map_err(|e| e.to_string()));
        }
        let after = self.verdict();
        match (&before, &after) {
            (_, Err(fault)) if before.as_ref().err() != Some(fault) => {
                tracing::error!(error = %fault, "clock check: writing and cleaning stop until the clocks agree");
            }
            (Err(ClockFault::OutOfBounds { .. }), Ok(())) => {
                tracing::warn!("clock check: the clocks agree again; writing and cleaning resume");
            }
            _ => {}
        }
        Ok(after)
    }

    /// Whether writing and cleaning may go on: both clocks measured within `max_age`
    /// and both offsets surely within the bound.
    pub fn verdict(&self) -> Result<(), ClockFault> {
        let readings = self.readings.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (ticks, bound_ms) = (self.clock.ticks(), millis(self.bound()));
        for (clock, reading) in [(PeerClock::Database, readings.database), (PeerClock::BlobStore, readings.blob_store)]
        {
            let offset = match reading {
                None => return Err(ClockFault::Unmeasured { clock, why: "not measured yet".into() }),
                Some(Err(why)) => return Err(ClockFault::Unmeasured { clock, why }),
                Some(Ok(offset)) => offset,
            };
            if ticks.saturating_sub(offset.measured_ticks) > self.max_age {
                let why = format!("the last measurement is older than {} ms", millis(self.max_age));
                return Err(ClockFault::Unmeasured { clock, why });
            }
            if offset.worst_ms() > bound_ms {
                return Err(ClockFault::OutOfBounds { clock, offset, bound_ms });
            }
        }
        Ok(())
    }

    /// The latest readings, for status pages and metrics.
    pub fn readings(&self) -> ClockReadings {
        self.readings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Measures every `interval` until `shutdown` completes.
    pub async fn run_every(&self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // A bound found too fine was refused at start; a later refusal is logged.
            if let Err(e) = self.measure().await {
                tracing::error!(error = %e, "clock check");
            }
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = self.clock.sleep(interval) => {}
            }
        }
    }

    async fn measure_database(&self) -> Result<Offset, StoreError> {
        let t0 = self.clock.now();
        let peer = self.bounded(self.metadata.clock()).await?;
        let t1 = self.clock.now();
        Ok(Offset { measured_ticks: self.clock.ticks(), ..Offset::between(t0, peer, Duration::from_millis(1), t1) })
    }

    async fn measure_blob_store(&self) -> Result<(Offset, Duration), StoreError> {
        let t0 = self.clock.now();
        let probe = self.bounded(self.blobs.probe_clock()).await?;
        let t1 = self.clock.now();
        let offset = Offset::between(t0, probe.created, probe.precision, t1);
        Ok((Offset { measured_ticks: self.clock.ticks(), ..offset }, probe.precision))
    }

    /// A measurement that takes longer than a measurement vouches for is no use (and a
    /// hung store must not hang the check).
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::select! {
            biased;
            out = call => out,
            () = self.clock.sleep(self.max_age) => Err(StoreError::unavailable("measuring a clock took too long")),
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryBlobStore, MemoryMetadataStore};
    use crate::time::ManualClock;

    const SKEW: Duration = Duration::from_millis(500);

    fn check(ours: &ManualClock, database: &ManualClock, blobs: &ManualClock) -> ClockCheck {
        ClockCheck::new(
            Arc::new(MemoryMetadataStore::new(Arc::new(database.clone()))),
            Arc::new(MemoryBlobStore::new(Arc::new(blobs.clone()))),
            Arc::new(ours.clone()),
            SKEW,
            Duration::from_secs(60),
        )
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn an_offset_interval_covers_the_round_trip_and_the_precision() {
        let o = Offset::between(at(1_000), at(5_000), Duration::from_secs(1), at(1_100));
        // The peer's clock minus ours lies in [5000 - 1100, 6000 - 1000] = [3900, 5000].
        assert_eq!((o.offset_ms, o.error_ms), (4_450, 550));
        assert_eq!(o.worst_ms(), 5_000);
    }

    #[tokio::test]
    async fn clocks_in_step_pass_and_a_clock_beyond_the_bound_stops_until_it_is_back() {
        let (ours, db, blobs) =
            (ManualClock::new(at(1_000_000)), ManualClock::new(at(1_000_000)), ManualClock::new(at(1_000_000)));
        let check = check(&ours, &db, &blobs);
        assert!(matches!(check.verdict(), Err(ClockFault::Unmeasured { .. })), "unmeasured clocks vouch for nothing");
        assert_eq!(check.measure().await.unwrap(), Ok(()));

        blobs.step_wall(-3 * 3_600_000);
        let fault = check.measure().await.unwrap().unwrap_err();
        assert!(matches!(fault, ClockFault::OutOfBounds { clock: PeerClock::BlobStore, .. }), "{fault:?}");
        assert!(fault.to_string().contains("blob store clock is 10800000 ms behind"), "{fault}");

        blobs.step_wall(3 * 3_600_000);
        db.step_wall(600);
        let fault = check.measure().await.unwrap().unwrap_err();
        assert!(matches!(fault, ClockFault::OutOfBounds { clock: PeerClock::Database, .. }), "{fault:?}");
        db.step_wall(-600);
        assert_eq!(check.measure().await.unwrap(), Ok(()), "back within bounds, the check resumes by itself");
    }

    #[tokio::test]
    async fn a_stale_measurement_vouches_for_nothing() {
        let clock = ManualClock::new(at(1_000_000));
        let check = check(&clock, &clock, &clock);
        check.measure().await.unwrap().unwrap();
        clock.advance(Duration::from_secs(61));
        assert!(matches!(check.verdict(), Err(ClockFault::Unmeasured { .. })));
    }

    #[tokio::test]
    async fn a_bound_finer_than_the_blob_stores_precision_is_refused() {
        struct Coarse(MemoryBlobStore);
        #[async_trait::async_trait]
        impl BlobStore for Coarse {
            async fn put_new(&self, k: &crate::ids::BlobKey, b: bytes::Bytes) -> Result<(), StoreError> {
                self.0.put_new(k, b).await
            }
            async fn get(&self, k: &crate::ids::BlobKey) -> Result<Option<bytes::Bytes>, StoreError> {
                self.0.get(k).await
            }
            async fn exists(&self, k: &crate::ids::BlobKey) -> Result<bool, StoreError> {
                self.0.exists(k).await
            }
            async fn delete_many(&self, k: &[crate::ids::BlobKey]) -> Result<(), StoreError> {
                self.0.delete_many(k).await
            }
            fn list(
                &self,
                n: usize,
            ) -> futures::stream::BoxStream<'_, Result<Vec<crate::store::ListedBlob>, StoreError>> {
                self.0.list(n)
            }
            async fn ping(&self) -> Result<(), StoreError> {
                Ok(())
            }
            async fn probe_clock(&self) -> Result<crate::store::ClockProbe, StoreError> {
                let probe = self.0.probe_clock().await?;
                Ok(crate::store::ClockProbe { precision: Duration::from_secs(1), ..probe })
            }
            async fn read_marker(&self) -> Result<Option<bytes::Bytes>, StoreError> {
                self.0.read_marker().await
            }
            async fn create_marker(&self, c: bytes::Bytes) -> Result<(), StoreError> {
                self.0.create_marker(c).await
            }
        }
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at(1_000_000)));
        let check = ClockCheck::new(
            Arc::new(MemoryMetadataStore::new(clock.clone())),
            Arc::new(Coarse(MemoryBlobStore::new(clock.clone()))),
            clock,
            SKEW,
            Duration::from_secs(60),
        );
        let refused = check.measure().await.unwrap_err();
        assert_eq!(refused.needed_ms, 2_000);
        assert!(refused.to_string().contains("at least 2000 ms"), "{refused}");
    }
}
