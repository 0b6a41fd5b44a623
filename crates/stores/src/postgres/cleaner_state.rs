//! The cleaner's state in PostgreSQL: the superseded-image queue (filled by the row
//! trigger of schema version 3) and the sweep marks.

use std::collections::HashSet;
use std::time::Duration;

use profilestore_core::error::StoreError;
use profilestore_core::ids::ImageId;
use profilestore_core::store::{SupersededClaim, SweepMarks};
use profilestore_core::time::Timestamp;

use super::errors::{corrupt, failed};
use super::{DECODE, PostgresMetadataStore};

/// Stamps first sight on every entry that has none; the delete delay starts here.
const STAMP_FIRST_SEEN: &str =
    concat!("UPDATE superseded_images SET first_seen_ms = ", db_now_ms!(), " WHERE first_seen_ms IS NULL");

/// The entries first seen at least `$1` ms ago, oldest first, at most `$2`, each with
/// whether a record names its image, all read in the same statement.
const DUE: &str = concat!(
    "SELECT s.image_id::text AS image_id, EXISTS (SELECT 1 FROM profiles p WHERE p.image_id = s.image_id) AS named ",
    "FROM superseded_images s WHERE s.first_seen_ms <= ",
    db_now_ms!(),
    " - $1 ORDER BY s.first_seen_ms, s.image_id LIMIT $2"
);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl PostgresMetadataStore {
    pub(super) async fn claim_superseded_here(
        &self,
        delete_delay: Duration,
        limit: usize,
    ) -> Result<SupersededClaim, StoreError> {
        // The protocol of `referenced`: read committed, so each statement sees every
        // commit before it; a record write whose deadline check passed commits before
        // its deadline or never (the commit-time trigger), so no record naming a due
        // id can appear later from a write checked before this query.
        let mut tx = self.begin_cleaner_query().await?;
        let stamped = sqlx::query(STAMP_FIRST_SEEN)
            .execute(&mut *tx)
            .await
            .map_err(failed("stamping first sight of superseded images"))?;
        let rows = sqlx::query(DUE)
            .bind(millis(delete_delay))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("reading due superseded images"))?;
        tx.commit().await.map_err(failed("committing the claim of superseded images"))?;
        DECODE.superseded_claim(&rows, stamped.rows_affected(), failed("reading a due superseded image"))
    }

    pub(super) async fn forget_superseded_here(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(ImageId::to_string).collect();
        let done = sqlx::query("DELETE FROM superseded_images WHERE image_id = ANY($1::uuid[])")
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(failed("removing superseded-image entries"))?;
        Ok(done.rows_affected())
    }

    pub(super) async fn superseded_among_here(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<String> = ids.iter().map(ImageId::to_string).collect();
        let found: Vec<String> =
            sqlx::query_scalar("SELECT image_id::text FROM superseded_images WHERE image_id = ANY($1::uuid[])")
                .bind(ids)
                .fetch_all(&self.pool)
                .await
                .map_err(failed("asking which images are queued as superseded"))?;
        found.iter().map(|id| DECODE.image_id(id)).collect()
    }

    pub(super) async fn count_superseded_here(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM superseded_images")
            .fetch_one(&self.pool)
            .await
            .map_err(failed("counting superseded images"))?;
        u64::try_from(n).map_err(|_| corrupt(format!("superseded-image count {n} is negative")))
    }

    pub(super) async fn sweep_marks_here(&self) -> Result<SweepMarks, StoreError> {
        let row = sqlx::query("SELECT listing_horizon_ms, last_full_sweep_ms FROM sweep_marks WHERE singleton = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(failed("reading the sweep marks"))?;
        let Some(row) = row else {
            return Err(corrupt("the sweep_marks row is missing"));
        };
        DECODE.sweep_marks(&row, failed("reading the sweep marks"))
    }

    pub(super) async fn record_sweep_here(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        // GREATEST ignores NULLs: each mark only moves forward, whatever order
        // concurrent cleaners finish in.
        let row = sqlx::query(concat!(
            "UPDATE sweep_marks SET listing_horizon_ms = GREATEST(listing_horizon_ms, $1), ",
            "last_full_sweep_ms = GREATEST(last_full_sweep_ms, $2) ",
            "WHERE singleton = 1 RETURNING listing_horizon_ms, last_full_sweep_ms"
        ))
        .bind(horizon.as_millis())
        .bind(full_sweep_started.map(Timestamp::as_millis))
        .fetch_optional(&self.pool)
        .await
        .map_err(failed("storing the sweep marks"))?;
        let Some(row) = row else {
            return Err(corrupt("the sweep_marks row is missing"));
        };
        DECODE.sweep_marks(&row, failed("storing the sweep marks"))
    }
}
