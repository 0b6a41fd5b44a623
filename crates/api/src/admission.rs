//! How many uploads are read at once, and how many of their bytes may be held: the
//! bound on what hostile or merely many clients can make the server buffer.
//!
//! An upload is admitted before its body is read, for the bytes it may hold: its
//! declared `Content-Length`, or the whole body limit when it declares none. When
//! either budget is spent it is refused at once (503 `overloaded`, `Retry-After`)
//! rather than queued: a queue of waiting uploads would hold connections and buffers
//! all the same.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Budgets are counted in KiB, so a budget of terabytes still fits a semaphore.
const UNIT: u64 = 1024;

/// The limits on uploads being read at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Uploads read at once.
    pub max_concurrent: usize,
    /// Bytes those uploads may hold together (each counted at its declared length, or
    /// at the body limit when it declares none).
    pub max_bytes_in_flight: u64,
}

impl Default for UploadLimits {
    /// 64 uploads and 256 MiB.
    fn default() -> Self {
        UploadLimits { max_concurrent: 64, max_bytes_in_flight: 256 * 1024 * 1024 }
    }
}

/// The budgets, shared by every router of one process.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    uploads: Arc<Semaphore>,
    units: Arc<Semaphore>,
    max_units: u32,
}

/// An admitted upload's share of the budgets, returned when dropped.
pub(crate) struct Admitted {
    _upload: OwnedSemaphorePermit,
    _units: OwnedSemaphorePermit,
}

/// A budget of `max_bytes`, in the units a semaphore counts (KiB).
pub(crate) fn budget_units(max_bytes: u64) -> u32 {
    u32::try_from(max_bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// The units a share of `bytes` takes from a budget of `max_units`: at least one, and
/// never more than the whole budget (so a share larger than it is held alone rather
/// than refused forever).
pub(crate) fn share_units(bytes: u64, max_units: u32) -> u32 {
    budget_units(bytes).clamp(1, max_units.max(1))
}

impl Admission {
    pub(crate) fn new(limits: UploadLimits) -> Self {
        let max_units = budget_units(limits.max_bytes_in_flight);
        Admission {
            uploads: Arc::new(Semaphore::new(limits.max_concurrent)),
            units: Arc::new(Semaphore::new(max_units as usize)),
            max_units,
        }
    }

    /// Admits an upload that may hold up to `bytes`, or refuses it at once.
    pub(crate) fn admit(&self, bytes: u64) -> Result<Admitted, ApiError> {
        let units = share_units(bytes, self.max_units);
        let upload = self.uploads.clone().try_acquire_owned().map_err(|_| ApiError::overloaded())?;
        let units = self.units.clone().try_acquire_many_owned(units).map_err(|_| ApiError::overloaded())?;
        Ok(Admitted { _upload: upload, _units: units })
    }

    /// Reserves `bytes` more of the byte budget for work on an admitted upload (the
    /// pixels of an image being re-encoded), or `None` at once when it is spent. Like
    /// [`admit`](Self::admit), more than the whole budget is held at the budget: the
    /// work then runs alone.
    pub(crate) fn reserve(&self, bytes: u64) -> Option<Reserved> {
        self.units.clone().try_acquire_many_owned(share_units(bytes, self.max_units)).ok().map(Reserved)
    }

    /// Like [`admit`](Self::admit), but waits up to `within` for a place and room (in
    /// turn with other waiters) before refusing. For a spooled upload whose body is in:
    /// it holds nothing of these budgets while it waits, so waiters cannot block each
    /// other.
    pub(crate) async fn admit_within(&self, bytes: u64, within: Duration) -> Result<Admitted, ApiError> {
        let units = share_units(bytes, self.max_units);
        let both = async {
            let upload = self.uploads.clone().acquire_owned().await.ok()?;
            let units = self.units.clone().acquire_many_owned(units).await.ok()?;
            Some(Admitted { _upload: upload, _units: units })
        };
        tokio::time::timeout(within, both).await.ok().flatten().ok_or_else(ApiError::overloaded)
    }
}

/// Bytes reserved by [`Admission::reserve`], returned when dropped.
pub(crate) struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_admitted_within_both_budgets_and_the_budget_returns_on_drop() {
        let admission = Admission::new(UploadLimits { max_concurrent: 2, max_bytes_in_flight: 10 * 1024 });
        let first = admission.admit(6 * 1024).unwrap();
        assert!(admission.admit(5 * 1024).is_err(), "over the bytes in flight");
        let second = admission.admit(4 * 1024).unwrap();
        assert!(admission.admit(0).is_err(), "over the count");
        drop(first);
        let third = admission.admit(6 * 1024).unwrap();
        drop((second, third));
        // One upload larger than the whole budget is held at the budget, not refused
        // forever (its body limit refuses it if it is too large).
        assert!(admission.admit(u64::MAX).is_ok());
    }
}
