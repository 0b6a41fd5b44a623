//! The cleaner's state in SQLite: the superseded-image queue (filled by the triggers of
//! schema version 3) and the sweep marks.

use std::collections::HashSet;
use std::time::Duration;

use profilestore_core::error::StoreError;
use profilestore_core::ids::ImageId;
use profilestore_core::store::{SupersededClaim, SweepMarks};
use profilestore_core::time::Timestamp;

use super::{DECODE, SqliteMetadataStore};
use super::errors::{corrupt, failed};

/// Stamps first sight on every entry that has none; the delete delay starts here.
const STAMP_FIRST_SEEN: &str =
    concat!("UPDATE superseded_images SET first_seen_ms = ", db_now_ms!(), " WHERE first_seen_ms IS NULL");

/// Whether any entry waits for its first sight or is due: without one, a claim has
/// nothing to do and need not take the write lock.
const ANY_TO_CLAIM: &str = concat!(
    "SELECT EXISTS (SELECT 1 FROM superseded_images WHERE first_seen_ms IS NULL OR first_seen_ms <= ",
    db_now_ms!(),
    " - ?1)"
);

/// The entries first seen at least `?1` ms ago, oldest first, at most `?2`, each with
/// whether a record names its image, all read in the same statement.
const DUE: &str = concat!(
    "SELECT s.image_id AS image_id, EXISTS (SELECT 1 FROM profiles p WHERE p.image_id = s.image_id) AS named ",
    "FROM superseded_images s WHERE s.first_seen_ms <= ",
    db_now_ms!(),
    " - ?1 ORDER BY s.first_seen_ms, s.image_id LIMIT ?2"
);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteMetadataStore {
    pub(super) async fn claim_superseded_here(
        &self,
        delete_delay: Duration,
        limit: usize,
    ) -> Result<SupersededClaim, StoreError> {
        // Most cycles find the queue empty or still waiting: they answer from a plain
        // read, without queueing behind (or holding up) the writers for the lock. An
        // entry committed after this read is the next cycle's.
        let any: bool = sqlx::query_scalar(ANY_TO_CLAIM)
            .bind(millis(delete_delay))
            .fetch_one(&self.pool)
            .await
            .map_err(failed("looking for superseded images to claim"))?;
        if !any {
            return Ok(SupersededClaim::default());
        }
        // The protocol of `referenced`, so no record naming a due id can commit later.
        let mut tx = self.begin_fenced("to claim superseded images").await?;
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
        let json = serde_json::to_string(&ids).map_err(|e| corrupt(format!("ids do not serialise: {e}")))?;
        let done = sqlx::query("DELETE FROM superseded_images WHERE image_id IN (SELECT value FROM json_each(?))")
            .bind(json)
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
        let json = serde_json::to_string(&ids).map_err(|e| corrupt(format!("ids do not serialise: {e}")))?;
        let found: Vec<String> =
            sqlx::query_scalar("SELECT image_id FROM superseded_images WHERE image_id IN (SELECT value FROM json_each(?))")
                .bind(json)
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
        // MAX over a NULL column answers NULL, hence the COALESCE: each mark only moves
        // forward, whatever order concurrent cleaners finish in.
        let done = sqlx::query(concat!(
            "UPDATE sweep_marks SET ",
            "listing_horizon_ms = MAX(COALESCE(listing_horizon_ms, ?1), ?1), ",
            "last_full_sweep_ms = CASE WHEN ?2 IS NULL THEN last_full_sweep_ms ",
            "ELSE MAX(COALESCE(last_full_sweep_ms, ?2), ?2) END ",
            "WHERE singleton = 1"
        ))
        .bind(horizon.as_millis())
        .bind(full_sweep_started.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(failed("storing the sweep marks"))?;
        if done.rows_affected() == 0 {
            return Err(corrupt("the sweep_marks row is missing"));
        }
        self.sweep_marks_here().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use profilestore_core::store::MetadataStore;
    use profilestore_core::time::{Deadline, Timestamp};
    use profilestore_runtime::SystemClock;
    use sqlx::Connection;

    use super::super::SqliteMetadataStore;
    use super::super::schema::MIGRATIONS;
    use super::super::tests::record;
    use crate::open::OpenMode;

    /// A database left at schema version 2 by an older build, holding one record.
    async fn version_two_database(path: &std::path::Path, record: &profilestore_core::store::Record) {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("PRAGMA journal_mode = WAL").execute(&mut conn).await.unwrap();
        sqlx::raw_sql("CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at_ms INTEGER NOT NULL) STRICT")
            .execute(&mut conn)
            .await
            .unwrap();
        for (version, sql) in &MIGRATIONS[..2] {
            sqlx::raw_sql(*sql).execute(&mut conn).await.unwrap();
            sqlx::query("INSERT INTO schema_version VALUES (?, 0)").bind(version).execute(&mut conn).await.unwrap();
        }
        sqlx::query("INSERT INTO profiles VALUES (?, '{}', ?, 'image/png', 3, 1)")
            .bind(record.user_id.as_str())
            .bind(record.image_id.to_string())
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_version_two_database_migrates_and_its_old_records_queue_their_images_when_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = record("alice");
        version_two_database(&path, &old).await;

        let store = SqliteMetadataStore::open(&path, OpenMode::Migrate).await.unwrap();
        assert_eq!(store.get(&old.user_id).await.unwrap().map(|r| r.image_id), Some(old.image_id));
        assert_eq!(store.count_superseded().await.unwrap(), 0);
        assert_eq!(store.sweep_marks().await.unwrap(), Default::default(), "no cycle has proved anything yet");
        let deadline = Deadline::after(std::sync::Arc::new(SystemClock::new()), Duration::from_secs(60));
        store.put_before(&record("alice"), &deadline).await.unwrap();

        let claim = store.claim_superseded(Duration::ZERO, 10).await.unwrap();
        assert_eq!(claim.due, vec![old.image_id], "a record written before the upgrade queues its image");
        let marks = store.record_sweep(Timestamp::from_millis(5), None).await.unwrap();
        assert_eq!(marks.listing_horizon, Some(Timestamp::from_millis(5)));
    }
}
