//! sqlx and rusqlite errors become [`StoreError`]s here, where they enter, so nothing
//! above this module branches on SQLite's result codes.

use profilestore_core::error::{StoreError, StoreErrorKind};

/// SQLite's primary result codes (the low byte of an extended code), from
/// <https://www.sqlite.org/rescode.html>.
mod code {
    pub const ERROR: i32 = 1;
    pub const PERM: i32 = 3;
    pub const BUSY: i32 = 5;
    pub const LOCKED: i32 = 6;
    pub const READONLY: i32 = 8;
    pub const CORRUPT: i32 = 11;
    pub const CANTOPEN: i32 = 14;
    pub const TOOBIG: i32 = 18;
    pub const CONSTRAINT: i32 = 19;
    pub const MISMATCH: i32 = 20;
    pub const MISUSE: i32 = 21;
    pub const NOLFS: i32 = 22;
    pub const AUTH: i32 = 23;
    pub const FORMAT: i32 = 24;
    pub const RANGE: i32 = 25;
    pub const NOTADB: i32 = 26;
}

/// The kind of failure an sqlx error means for the caller.
pub(crate) fn kind_of(e: &sqlx::Error) -> StoreErrorKind {
    match e {
        sqlx::Error::Database(db) => {
            let extended = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(code::ERROR);
            kind_of_result_code(extended & 0xff)
        }
        // Waiting for a connection, losing the worker thread, failing to read the file:
        // all may pass, so the caller may retry.
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            StoreErrorKind::Unavailable
        }
        // A row we cannot read back is data the store should never hold.
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::Protocol(_) => StoreErrorKind::Corrupt,
        sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) | sqlx::Error::Tls(_) => {
            StoreErrorKind::Misconfigured
        }
        _ => StoreErrorKind::Unavailable,
    }
}

/// Whether `e` is SQLite's BUSY or LOCKED: another connection holds a lock we need.
pub(crate) fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let extended = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
            matches!(extended & 0xff, code::BUSY | code::LOCKED)
        }
        _ => false,
    }
}

pub(super) fn kind_of_result_code(primary: i32) -> StoreErrorKind {
    match primary {
        // "no such table", "no such column", permissions, a read-only file, a path that
        // cannot be opened: the setup is wrong, retrying will not help.
        code::ERROR
        | code::PERM
        | code::READONLY
        | code::CANTOPEN
        | code::MISUSE
        | code::NOLFS
        | code::AUTH
        | code::RANGE => StoreErrorKind::Misconfigured,
        // A damaged or foreign file, or values our own statements can never produce.
        code::CORRUPT | code::NOTADB | code::FORMAT | code::MISMATCH | code::CONSTRAINT | code::TOOBIG => {
            StoreErrorKind::Corrupt
        }
        // BUSY, LOCKED, IOERR, FULL, NOMEM, INTERRUPT, SCHEMA, PROTOCOL, ABORT...:
        // contention or a transient condition.
        _ => StoreErrorKind::Unavailable,
    }
}

/// `e` as a store error whose message says what was being done (`doing`).
pub(crate) fn store_error(doing: &str, e: sqlx::Error) -> StoreError {
    StoreError::new(kind_of(&e), format!("SQLite, {doing}: {e}"))
}

/// A closure for `map_err` that turns an sqlx error met while `doing` into a store error.
pub(crate) fn failed(doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| store_error(doing, e)
}

/// A rusqlite error met while `doing` as a store error of the kind its result code
/// means, as for sqlx's (the point reads and the record writer use rusqlite).
pub(super) fn rusqlite_error(doing: &str, e: &rusqlite::Error) -> StoreError {
    let kind = match e {
        rusqlite::Error::SqliteFailure(failure, _) => kind_of_result_code(failure.extended_code & 0xff),
        // A stored value of the wrong type: the schema's NOT NULL and types say never.
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..)
        // A row or column our own statements always have, missing: as sqlx's
        // RowNotFound and ColumnNotFound.
        | rusqlite::Error::QueryReturnedNoRows
        | rusqlite::Error::InvalidColumnIndex(..)
        | rusqlite::Error::InvalidColumnName(..) => StoreErrorKind::Corrupt,
        // A statement and its parameters that do not fit: a bug no retry mends.
        rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::InvalidParameterName(..)
        | rusqlite::Error::ExecuteReturnedResults
        | rusqlite::Error::MultipleStatement => StoreErrorKind::Misconfigured,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, format!("SQLite, {doing}: {e}"))
}

/// A closure for `map_err` that turns a rusqlite error met while `doing` into a store
/// error.
pub(super) fn rusqlite_failed(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| rusqlite_error(doing, &e)
}

/// A row value that does not mean what the schema says it must.
pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("SQLite: {}", what.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_map_by_what_the_caller_can_do() {
        // SQLITE_BUSY_SNAPSHOT (517) is an extended BUSY: contention, retry.
        assert_eq!(kind_of_result_code(517 & 0xff), StoreErrorKind::Unavailable);
        assert_eq!(kind_of_result_code(5), StoreErrorKind::Unavailable);
        assert_eq!(kind_of_result_code(6), StoreErrorKind::Unavailable);
        assert_eq!(kind_of_result_code(10), StoreErrorKind::Unavailable);
        assert_eq!(kind_of_result_code(1), StoreErrorKind::Misconfigured);
        assert_eq!(kind_of_result_code(8), StoreErrorKind::Misconfigured);
        assert_eq!(kind_of_result_code(11), StoreErrorKind::Corrupt);
        assert_eq!(kind_of_result_code(26), StoreErrorKind::Corrupt);
        assert_eq!(kind_of(&sqlx::Error::PoolTimedOut), StoreErrorKind::Unavailable);
        assert_eq!(kind_of(&sqlx::Error::RowNotFound), StoreErrorKind::Corrupt);
    }

    #[test]
    fn rusqlite_errors_keep_their_kind() {
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert_eq!(rusqlite_error("x", &busy).kind(), StoreErrorKind::Unavailable);
        let corrupt = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(11), None);
        assert_eq!(rusqlite_error("x", &corrupt).kind(), StoreErrorKind::Corrupt);
        let wrong_type = rusqlite::Error::InvalidColumnType(0, "image_size".into(), rusqlite::types::Type::Text);
        assert_eq!(rusqlite_error("x", &wrong_type).kind(), StoreErrorKind::Corrupt);
        let no_row = rusqlite::Error::QueryReturnedNoRows;
        assert_eq!(rusqlite_error("x", &no_row).kind(), StoreErrorKind::Corrupt);
        let misbound = rusqlite::Error::InvalidParameterCount(9, 10);
        assert_eq!(rusqlite_error("x", &misbound).kind(), StoreErrorKind::Misconfigured);
    }
}
