//! Receiving an upload's body within the budgets: in memory, or, for an upload larger
//! than the spool's threshold, into a spool file on disk.
//!
//! An upload held in memory takes its share of the memory budget (its declared length,
//! or the body limit) before its body is read, and keeps it until the write is done.
//! A spooled upload takes, while its body arrives, its place among the uploads read at
//! once, [`RECEIVING_SHARE`] of memory and its share of the disk budget. Once the body
//! is in, it gives the memory share back, waits up to [`MEMORY_WAIT`] for the image's
//! size in the memory budget (503 `overloaded` past that), reads the image back and
//! removes the file; from there it goes on as an upload held in memory (stripping,
//! the create-only blob put, the record), the memory share held until the write is
//! done.

use std::time::Duration;

use axum::extract::Multipart;

use crate::ApiConfig;
use crate::admission::{Admission, Admitted, Reserved};
use crate::error::ApiError;
use crate::spool::SpoolFile;
use crate::upload::{self, MAX_METADATA_SIZE, Upload, UploadError};

/// The memory a spooled upload holds while its body arrives: its metadata part (at
/// most [`MAX_METADATA_SIZE`]) and the pieces on their way to the file.
const RECEIVING_SHARE: u64 = 2 * MAX_METADATA_SIZE;

/// How long a spooled upload whose body is in waits for room in the memory budget.
/// Refusing at once would waste a whole body the client took minutes to send; waiting
/// longer would hold its connection for an overload that is not passing.
const MEMORY_WAIT: Duration = Duration::from_secs(10);

/// An upload admitted to be received, in memory or in the spool.
pub(crate) struct Intake {
    admitted: Admitted,
    may_hold: u64,
    spool: Option<SpoolFile>,
}

/// The shares an upload holds from the end of its receipt until its write is done.
pub(crate) struct Held {
    _admitted: Admitted,
    _memory: Option<Reserved>,
}

impl Intake {
    /// Admits an upload that may hold `may_hold` bytes, or refuses it at once with 503
    /// `overloaded` when a budget it needs is spent.
    pub(crate) fn admit(admission: &Admission, config: &ApiConfig, may_hold: u64) -> Result<Intake, ApiError> {
        match config.spool.as_ref().filter(|spool| spool.takes(may_hold)) {
            None => Ok(Intake { admitted: admission.admit(may_hold)?, may_hold, spool: None }),
            Some(spool) => {
                // Its place and memory first: a refused upload then costs no file.
                let admitted = admission.admit(RECEIVING_SHARE.min(may_hold))?;
                // Only the image goes to disk, and it cannot be larger than this.
                let file = spool.create(may_hold.min(config.max_image_size))?;
                Ok(Intake { admitted, may_hold, spool: Some(file) })
            }
        }
    }

    /// Reads and checks the whole body (see [`upload::read`]); a spooled image is then
    /// read back into memory as described in the module documentation.
    pub(crate) async fn receive(
        self,
        multipart: Multipart,
        config: &ApiConfig,
        admission: &Admission,
    ) -> Result<(Upload, Held), ApiError> {
        let Intake { mut admitted, may_hold, mut spool } = self;
        let parts = upload::read(multipart, config, may_hold, spool.as_mut()).await?;
        let metadata = parts.metadata;
        let (image, format, memory) = match (parts.image, spool) {
            (Some((image, format)), _) => (image, format, None),
            (None, Some(file)) => {
                // No waiting while holding memory: see `Admitted::release_bytes`.
                admitted.release_bytes();
                let memory = admission
                    .reserve_within(file.len().saturating_add(metadata.len() as u64), MEMORY_WAIT)
                    .await
                    .ok_or_else(ApiError::overloaded)?;
                let image = file.read_back().await.map_err(UploadError::Spool)?;
                let format = crate::image::inspect(&image, config.max_image_pixels).map_err(UploadError::from)?;
                (image, format, Some(memory))
            }
            (None, None) => unreachable!("`upload::read` keeps the image unless it is given a file"),
        };
        Ok((Upload { metadata, image, format }, Held { _admitted: admitted, _memory: memory }))
    }
}
