//! sqlx errors become [`StoreError`]s here, where they enter, so nothing above this
//! module branches on PostgreSQL's SQLSTATEs.

use profilestore_core::error::{StoreError, StoreErrorKind};

/// The SQLSTATE our commit-time trigger raises when a record write reaches its
/// deadline before COMMIT (see `migrations/0001_init.sql`). Class `PS` is not used by
/// PostgreSQL, so no server error can be mistaken for it.
pub(crate) const DEADLINE_PASSED: &str = "PSD01";

/// The kind of failure an sqlx error means for the caller.
pub(crate) fn kind_of(e: &sqlx::Error) -> StoreErrorKind {
    match e {
        sqlx::Error::Database(db) => db.code().map_or(StoreErrorKind::Unavailable, |code| kind_of_sqlstate(&code)),
        // A lost or refused connection, no free connection in time, a closed pool: all
        // may pass, so the caller may retry.
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed
        | sqlx::Error::Protocol(_) => StoreErrorKind::Unavailable,
        // A row we cannot read back is data the store should never hold.
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::Encode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. } => StoreErrorKind::Corrupt,
        sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_) | sqlx::Error::Tls(_) => {
            StoreErrorKind::Misconfigured
        }
        _ => StoreErrorKind::Unavailable,
    }
}

/// What a SQLSTATE (<https://www.postgresql.org/docs/current/errcodes-appendix.html>)
/// means for the caller.
pub(crate) fn kind_of_sqlstate(code: &str) -> StoreErrorKind {
    match code {
        // Our own statements never break these unless the schema or the data is not what
        // this build wrote: corrupt data, or a server that lost some.
        "XX001" | "XX002" => StoreErrorKind::Corrupt,
        // A read-only transaction: we are talking to a standby, never allowed here.
        "25006" => StoreErrorKind::Misconfigured,
        // The setup is wrong: missing database, schema, table or column, bad credentials,
        // missing privileges, an unsupported server.
        "3D000" | "3F000" | "0A000" => StoreErrorKind::Misconfigured,
        _ => match code.get(..2) {
            // Connection exceptions; shutdown, crash and startup (57P01..57P03);
            // statement timeout and cancellation (57014); too many connections, disk full
            // (53); serialisation failures and deadlocks (40); lock timeouts (55P03);
            // system I/O errors (58): transient, retry.
            Some("08" | "57" | "53" | "40" | "55" | "58" | "25") => StoreErrorKind::Unavailable,
            Some("28" | "42" | "3D" | "3F" | "0A" | "F0" | "39" | "38" | "2F") => StoreErrorKind::Misconfigured,
            // Data exceptions and integrity violations: values our statements never
            // produce from valid records, so the stored data (or schema) is not ours.
            Some("22" | "23" | "XX") => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Unavailable,
        },
    }
}

/// The SQLSTATE of `e`, when the server sent one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// `e` as a store error whose message says what was being done (`doing`).
pub(crate) fn store_error(doing: &str, e: sqlx::Error) -> StoreError {
    let message = match sqlstate(&e) {
        Some(code) => format!("PostgreSQL, {doing}: {e} (SQLSTATE {code})"),
        None => format!("PostgreSQL, {doing}: {e}"),
    };
    StoreError::new(kind_of(&e), message).with_source(e)
}

/// A closure for `map_err` that turns an sqlx error met while `doing` into a store error.
pub(crate) fn failed(doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| store_error(doing, e)
}

/// A row value that does not mean what the schema says it must.
pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, format!("PostgreSQL: {}", what.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_by_what_the_caller_can_do() {
        use StoreErrorKind::*;
        for (code, kind) in [
            ("57P01", Unavailable), // admin_shutdown
            ("57P02", Unavailable), // crash_shutdown
            ("57P03", Unavailable), // cannot_connect_now
            ("57014", Unavailable), // query_canceled: statement timeout
            ("08006", Unavailable), // connection_failure
            ("08001", Unavailable),
            ("40001", Unavailable),   // serialization_failure
            ("40P01", Unavailable),   // deadlock_detected
            ("55P03", Unavailable),   // lock_not_available
            ("53300", Unavailable),   // too_many_connections
            ("25P03", Unavailable),   // idle_in_transaction_session_timeout
            ("42P01", Misconfigured), // undefined_table
            ("42703", Misconfigured), // undefined_column
            ("42501", Misconfigured), // insufficient_privilege
            ("28P01", Misconfigured), // invalid_password
            ("28000", Misconfigured), // invalid_authorization_specification
            ("3D000", Misconfigured), // invalid_catalog_name: no such database
            ("25006", Misconfigured), // read_only_sql_transaction: a standby
            ("22P02", Corrupt),       // invalid_text_representation
            ("23514", Corrupt),       // check_violation
            ("XX001", Corrupt),       // data_corrupted
        ] {
            assert_eq!(kind_of_sqlstate(code), kind, "SQLSTATE {code}");
        }
        assert_eq!(kind_of(&sqlx::Error::PoolTimedOut), Unavailable);
        assert_eq!(kind_of(&sqlx::Error::PoolClosed), Unavailable);
        assert_eq!(kind_of(&sqlx::Error::RowNotFound), Corrupt);
        assert_eq!(kind_of(&sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())), Unavailable);
    }
}
