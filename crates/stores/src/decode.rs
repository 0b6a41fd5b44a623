//! What the SQL backends share when reading rows back: stored values become records
//! and pairings, and any value that does not mean what the schema says it must is
//! refused as corrupt (never by panicking). Also the one wording of a record write
//! that ran out of time.

use std::time::Duration;

use profilestore_core::error::{StoreError, StoreErrorKind};
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{Pairing, Record, SupersededClaim, SweepMarks};
use profilestore_core::time::Timestamp;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// A profiles row as stored, before its values are checked.
pub(crate) struct StoredRecord {
    pub(crate) user_id: String,
    pub(crate) metadata: String,
    pub(crate) image_id: String,
    pub(crate) content_type: String,
    pub(crate) image_size: i64,
    pub(crate) updated_at_ms: i64,
}

/// Decodes stored values for one backend; `backend` ("SQLite", "PostgreSQL") starts
/// every error message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decoder {
    pub(crate) backend: &'static str,
}

impl Decoder {
    /// A stored value that does not mean what the schema says it must.
    pub(crate) fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::new(StoreErrorKind::Corrupt, format!("{}: {}", self.backend, what.into()))
    }

    /// A stored image id, which must be a UUIDv7 in canonical form.
    pub(crate) fn image_id(&self, s: &str) -> Result<ImageId, StoreError> {
        s.parse().map_err(|_| self.corrupt(format!("stored image id {} is not a canonical UUIDv7", shown(s))))
    }

    /// A row of the profiles table (columns `user_id`, `metadata`, `image_id`,
    /// `content_type`, `image_size`, `updated_at_ms`); `read_failed` maps a column the
    /// driver cannot read.
    pub(crate) fn record<'r, R>(
        &self,
        row: &'r R,
        read_failed: impl Fn(sqlx::Error) -> StoreError,
    ) -> Result<Record, StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let stored = StoredRecord {
            user_id: row.try_get("user_id").map_err(&read_failed)?,
            metadata: row.try_get("metadata").map_err(&read_failed)?,
            image_id: row.try_get("image_id").map_err(&read_failed)?,
            content_type: row.try_get("content_type").map_err(&read_failed)?,
            image_size: row.try_get("image_size").map_err(&read_failed)?,
            updated_at_ms: row.try_get("updated_at_ms").map_err(&read_failed)?,
        };
        self.stored_record(stored)
    }

    /// An idempotency key's row: the record stored under it and its fingerprint.
    pub(crate) fn keyed_record<'r, R>(
        &self,
        row: &'r R,
        read_failed: impl Fn(sqlx::Error) -> StoreError,
    ) -> Result<(Record, String), StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
    {
        let fingerprint: String = row.try_get("fingerprint").map_err(&read_failed)?;
        Ok((self.record(row, &read_failed)?, fingerprint))
    }

    /// A profiles row's values as any driver read them.
    pub(crate) fn stored_record(&self, stored: StoredRecord) -> Result<Record, StoreError> {
        let StoredRecord { user_id, metadata, image_id, content_type, image_size, updated_at_ms } = stored;
        Ok(Record {
            user_id: UserId::parse(&user_id)
                .map_err(|_| self.corrupt(format!("stored user id {} is not a valid user id", shown(&user_id))))?,
            metadata,
            image_id: self.image_id(&image_id)?,
            content_type,
            image_size: u64::try_from(image_size)
                .map_err(|_| self.corrupt(format!("stored image size {image_size} is negative")))?,
            updated_at: Timestamp::from_millis(updated_at_ms),
        })
    }

    /// A row of the sweep_marks table (columns `listing_horizon_ms`,
    /// `last_full_sweep_ms`, each NULL until set).
    pub(crate) fn sweep_marks<'r, R>(
        &self,
        row: &'r R,
        read_failed: impl Fn(sqlx::Error) -> StoreError,
    ) -> Result<SweepMarks, StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    {
        let horizon: Option<i64> = row.try_get("listing_horizon_ms").map_err(&read_failed)?;
        let full: Option<i64> = row.try_get("last_full_sweep_ms").map_err(&read_failed)?;
        Ok(SweepMarks {
            listing_horizon: horizon.map(Timestamp::from_millis),
            last_full_sweep: full.map(Timestamp::from_millis),
        })
    }

    /// A claim of the superseded-image queue from the rows of its due query (columns
    /// `image_id` as text, `named`), after `stamped` entries were first seen.
    pub(crate) fn superseded_claim<'r, R>(
        &self,
        rows: &'r [R],
        stamped: u64,
        read_failed: impl Fn(sqlx::Error) -> StoreError,
    ) -> Result<SupersededClaim, StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut claim = SupersededClaim { first_seen: stamped, ..SupersededClaim::default() };
        for row in rows {
            let id: String = row.try_get("image_id").map_err(&read_failed)?;
            let named: bool = row.try_get("named").map_err(&read_failed)?;
            let id = self.image_id(&id)?;
            if named { claim.named.push(id) } else { claim.due.push(id) }
        }
        Ok(claim)
    }

    /// A row of the pairing table read as text (columns `cluster_id`, `timings`).
    pub(crate) fn pairing<'r, R>(
        &self,
        row: &'r R,
        read_failed: impl Fn(sqlx::Error) -> StoreError,
    ) -> Result<Pairing, StoreError>
    where
        R: Row,
        &'static str: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
    {
        let cluster_id: String = row.try_get("cluster_id").map_err(&read_failed)?;
        let timings: String = row.try_get("timings").map_err(&read_failed)?;
        self.pairing_text(&cluster_id, &timings)
    }

    /// The pairing from its two stored texts, as any driver read them.
    pub(crate) fn pairing_text(&self, cluster_id: &str, timings: &str) -> Result<Pairing, StoreError> {
        Ok(Pairing {
            cluster_id: uuid::Uuid::try_parse(cluster_id)
                .map_err(|_| self.corrupt(format!("stored cluster id {} is not a UUID", shown(cluster_id))))?,
            timings: serde_json::from_str(timings)
                .map_err(|e| self.corrupt(format!("stored timings {} do not parse: {e}", shown(timings))))?,
        })
    }

    /// The JSON stored for `timings`.
    pub(crate) fn timings_json(&self, timings: &Timings) -> Result<String, StoreError> {
        serde_json::to_string(timings).map_err(|e| self.corrupt(format!("timings do not serialise: {e}")))
    }

    /// Runs a guarded write's `attempt` for at most the request's time left; on
    /// timeout, says whether it may have landed (`commit_sent` is set just before
    /// `COMMIT` is sent).
    pub(crate) async fn within_request<T>(
        &self,
        deadline: &profilestore_core::time::Deadline,
        commit_sent: &std::sync::atomic::AtomicBool,
        attempt: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let time_left = deadline.remaining();
        match tokio::time::timeout(time_left, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.write_timed_out(time_left, commit_sent.load(std::sync::atomic::Ordering::SeqCst))),
        }
    }

    /// The error of a record write abandoned at its statement timeout: whether it may
    /// have landed depends only on whether COMMIT had been sent.
    pub(crate) fn write_timed_out(&self, statement_timeout: Duration, commit_sent: bool) -> StoreError {
        if commit_sent {
            StoreError::new(
                StoreErrorKind::CommitUnknown,
                format!(
                    "{}: the request's time ({statement_timeout:?}) ran out while the record's commit was under way; \
                     the record may or may not have been written",
                    self.backend
                ),
            )
        } else {
            StoreError::unavailable(format!(
                "{}: the record write did not finish within the request's time ({statement_timeout:?}); \
                 nothing was written",
                self.backend
            ))
        }
    }
}

/// A stored string shortened for an error message: corrupt data may be huge.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// The error of a guarded call refused because the cluster's stored timings are no
/// longer the ones the process runs under.
pub(crate) fn timings_changed(ours: &Timings, stored: &Timings) -> StoreError {
    let changes: Vec<String> = stored
        .differences(ours)
        .into_iter()
        .map(|(name, now, was)| {
            format!(
                "{name} {} (was {})",
                profilestore_core::settings::fmt_duration(now),
                profilestore_core::settings::fmt_duration(was)
            )
        })
        .collect();
    StoreError::new(
        StoreErrorKind::TimingsChanged,
        format!("the cluster's timings changed since this process started ({}); nothing was done", changes.join(", ")),
    )
}

/// `query` with a guarded record write's seven parameters bound, in the order both
/// backends' statements take them: user id, metadata, image id, content type, image
/// size, update time, then the deadline (milliseconds since the epoch).
pub(crate) fn bind_record_write<'q, DB>(
    query: sqlx::query::Query<'q, DB, DB::Arguments>,
    record: &profilestore_core::store::Record,
    image_size: i64,
    deadline: profilestore_core::time::Timestamp,
) -> sqlx::query::Query<'q, DB, DB::Arguments>
where
    DB: sqlx::Database,
    String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    query
        .bind(record.user_id.as_str().to_owned())
        .bind(record.metadata.clone())
        .bind(record.image_id.to_string())
        .bind(record.content_type.clone())
        .bind(image_size)
        .bind(record.updated_at.as_millis())
        .bind(deadline.as_millis())
}
