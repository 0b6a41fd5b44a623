//! Rows to records and pairings, refusing (as corrupt, never by panicking) any stored
//! value that does not mean what the schema says it must.

use profilestore_core::error::StoreError;
use profilestore_core::ids::{ImageId, UserId};
use profilestore_core::settings::Timings;
use profilestore_core::store::{Pairing, Record};
use profilestore_core::time::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::errors::{corrupt, failed};

/// A stored string shortened for an error message: corrupt data may be huge.
fn shown(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    format!("{out:?}")
}

/// A stored image id (as `uuid::text`), which must be a UUIDv7 in canonical form.
pub(super) fn parse_image_id(s: &str) -> Result<ImageId, StoreError> {
    s.parse().map_err(|_| corrupt(format!("stored image id {} is not a canonical UUIDv7", shown(s))))
}

/// A row of `record_columns!()`.
pub(super) fn record_from_row(row: &PgRow) -> Result<Record, StoreError> {
    let reading = failed("reading a profile record");
    let user_id: String = row.try_get("user_id").map_err(&reading)?;
    let image_id: String = row.try_get("image_id").map_err(&reading)?;
    let image_size: i64 = row.try_get("image_size").map_err(&reading)?;
    Ok(Record {
        user_id: UserId::parse(&user_id)
            .map_err(|_| corrupt(format!("stored user id {} is not a valid user id", shown(&user_id))))?,
        metadata: row.try_get("metadata").map_err(&reading)?,
        image_id: parse_image_id(&image_id)?,
        content_type: row.try_get("content_type").map_err(&reading)?,
        image_size: u64::try_from(image_size)
            .map_err(|_| corrupt(format!("stored image size {image_size} is negative")))?,
        updated_at: Timestamp::from_millis(row.try_get("updated_at_ms").map_err(&reading)?),
    })
}

/// A row of `cluster_id::text, timings::text` from the pairing table.
pub(super) fn pairing_from_row(row: &PgRow) -> Result<Pairing, StoreError> {
    let reading = failed("reading the pairing");
    let cluster_id: String = row.try_get("cluster_id").map_err(&reading)?;
    let timings: String = row.try_get("timings").map_err(&reading)?;
    Ok(Pairing {
        cluster_id: uuid::Uuid::try_parse(&cluster_id)
            .map_err(|_| corrupt(format!("stored cluster id {} is not a UUID", shown(&cluster_id))))?,
        timings: serde_json::from_str(&timings)
            .map_err(|e| corrupt(format!("stored timings {} do not parse: {e}", shown(&timings))))?,
    })
}

/// The JSON stored for `timings`.
pub(super) fn timings_json(timings: &Timings) -> Result<String, StoreError> {
    serde_json::to_string(timings).map_err(|e| corrupt(format!("timings do not serialise: {e}")))
}
