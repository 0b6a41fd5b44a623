//! The cleaner's store calls: each bounded by the call timeout, and delete requests
//! sent at the turns the pacer booked for them.
//!
//! A child of `cycle` so it can reach the [`Cleaner`]'s private fields without
//! widening them for the rest of the crate.

use std::future::Future;

use profilestore_core::error::StoreError;
use profilestore_core::ids::BlobKey;
use profilestore_core::time::{Clock, Time, Timestamp};

use super::Cleaner;

impl Cleaner {
    /// Sends each delete request at its booked start (by the cleaner's clock), one
    /// after the other; stops at the first failure.
    pub(super) async fn delete_paced(&self, requests: Vec<(Timestamp, Vec<BlobKey>)>) -> Result<(), StoreError> {
        for (start, keys) in requests {
            // Waiting for our turn is not a store call: the call timeout starts after.
            self.clock.sleep_until(start).await;
            // The clocks are checked again at the last moment: a clock that left its
            // bound during the delay (or the wait for our turn) must not delete what
            // it found.
            self.clocks_agree().map_err(StoreError::unavailable)?;
            self.bounded("deleting a batch", self.blobs.delete_many(&keys)).await?;
        }
        Ok(())
    }

    /// `call`'s result, or an Unavailable error once `call_timeout` has passed by the
    /// cleaner's clock (the call is abandoned; a hung store fails the cycle instead of
    /// hanging the daemon).
    pub(super) async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.within_call_timeout(call).await.unwrap_or_else(|| {
            Err(StoreError::unavailable(format!(
                "{what} took longer than {}",
                profilestore_core::settings::fmt_duration(self.config.call_timeout)
            )))
        })
    }

    /// `call`'s output, or `None` once `call_timeout` has passed by the cleaner's clock.
    pub(super) async fn within_call_timeout<T>(&self, call: impl Future<Output = T>) -> Option<T> {
        let deadline = self.clock.now().plus(self.config.call_timeout);
        tokio::select! {
            biased;
            result = call => Some(result),
            () = self.clock.sleep_until(deadline) => None,
        }
    }
}
