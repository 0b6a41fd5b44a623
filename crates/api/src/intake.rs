//! Receiving an upload's body within the budgets: in memory, or, for an upload larger
//! than the spool's threshold, into a spool file on disk.
//!
//! An upload held in memory takes its place among the uploads read at once and its
//! share of the memory budget (its declared length, or the body limit) before its body
//! is read, and keeps both until the write is done.
//!
//! A spooled upload, while its body arrives, holds only [`RECEIVING_SHARE`] of the
//! memory budget and, in the spool's disk budget, the bytes it has written so far: a
//! client trickling its body holds neither a place nor a buffer, so slow clients
//! cannot spend the budgets honest uploads need. Once the body is in, it gives its
//! receiving share back and then waits up to [`MEMORY_WAIT`] for a place and the
//! image's size in the memory budget (503 `overloaded` past that); so it never waits
//! while holding any of them. It then reads the image back, removes the file, and
//! goes on as an upload held in memory (stripping, the create-only blob put, the
//! record), its place and share held until the write is done.

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
    may_hold: u64,
    how: How,
}

enum How {
    Memory(Admitted),
    Spool { receiving: Reserved, file: SpoolFile },
}

/// An upload's place and memory share, held from the end of its receipt until its
/// write is done.
pub(crate) struct Held(#[allow(dead_code)] Admitted);

impl Intake {
    /// Admits an upload that may hold `may_hold` bytes, or refuses it at once with 503
    /// `overloaded` when a budget it needs is spent.
    pub(crate) fn admit(admission: &Admission, config: &ApiConfig, may_hold: u64) -> Result<Intake, ApiError> {
        let how = match config.spool.as_ref().filter(|spool| spool.takes(may_hold)) {
            None => How::Memory(admission.admit(may_hold)?),
            Some(spool) => {
                // Memory first: a refused upload then costs no file.
                let receiving = admission.reserve(RECEIVING_SHARE.min(may_hold)).ok_or_else(ApiError::overloaded)?;
                How::Spool { receiving, file: spool.create()? }
            }
        };
        Ok(Intake { may_hold, how })
    }

    /// Reads and checks the whole body (see [`upload::read`]); a spooled image is then
    /// read back into memory as described in the module documentation.
    pub(crate) async fn receive(
        self,
        multipart: Multipart,
        config: &ApiConfig,
        admission: &Admission,
    ) -> Result<(Upload, Held), ApiError> {
        match self.how {
            How::Memory(admitted) => {
                let parts = upload::read(multipart, config, self.may_hold, None).await?;
                // Without a file, `read` keeps the image or refuses the upload.
                let (image, format) = parts.image.ok_or(UploadError::MissingPart("image"))?;
                Ok((Upload { metadata: parts.metadata, image, format }, Held(admitted)))
            }
            How::Spool { receiving, mut file } => {
                let parts = upload::read(multipart, config, self.may_hold, Some(&mut file)).await?;
                // Nothing held while waiting (see `Admission::admit_within`).
                drop(receiving);
                let needs = file.len().saturating_add(parts.metadata.len() as u64);
                let admitted = admission.admit_within(needs, MEMORY_WAIT).await?;
                let image = file.read_back().await.map_err(UploadError::Spool)?;
                let format = crate::image::inspect(&image, config.max_image_pixels).map_err(UploadError::from)?;
                Ok((Upload { metadata: parts.metadata, image, format }, Held(admitted)))
            }
        }
    }
}
