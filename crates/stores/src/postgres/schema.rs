//! The embedded schema migrations, the runner that applies them, and the checks an
//! open makes before it trusts a database: this build's schema version, and a primary
//! (never a standby).
//!
//! Why not `sqlx::migrate!`: it needs sqlx's `macros` feature, and the runner we need is
//! short: one `schema_version` table, and migrations applied in order inside one
//! transaction that first takes an advisory lock, so servers starting at once queue
//! behind each other and exactly one applies each migration. (Without the lock, two
//! `CREATE TABLE`s racing fail with a duplicate key in PostgreSQL's own catalogs.)

use profilestore_core::error::{StoreError, StoreErrorKind};
use sqlx::{Connection, PgConnection};

use super::errors::store_error;
use crate::open::OpenError;

/// Every migration, in order: `(version, SQL)`. Versions are 1, 2, 3... with no gaps;
/// a released migration is never edited, only followed by a new one.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_guard_deletes.sql")),
    (3, include_str!("migrations/0003_incremental_cleaning.sql")),
    (4, include_str!("migrations/0004_idempotency_keys.sql")),
];

/// The schema version this build reads and writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The advisory lock every migrating open holds for its whole transaction: the bytes
/// of "profstor". Advisory locks are per database, so stores in different databases
/// never wait for each other; stores in different schemas of one database do, briefly.
pub(crate) const MIGRATION_LOCK: i64 = 0x7072_6f66_7374_6f72;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE schema_version (
    version       BIGINT NOT NULL PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
)";

/// Whether a `schema_version` table is visible on the connection's search path.
const HAS_VERSION_TABLE: &str = "SELECT to_regclass('schema_version') IS NOT NULL";

fn failed(location: &str, doing: &str, e: sqlx::Error) -> OpenError {
    OpenError::Store { what: "database", location: location.to_owned(), source: store_error(doing, e) }
}

/// Brings the database up to [`CURRENT_VERSION`], creating the schema in an empty one.
/// Refuses a database newer than this build. Safe when many processes call it at once.
pub(crate) async fn migrate(conn: &mut PgConnection, location: &str) -> Result<(), OpenError> {
    let fail = |doing: &'static str| move |e| failed(location, doing, e);
    let mut tx = conn.begin().await.map_err(fail("starting the schema migration"))?;
    // A peer stuck while holding the lock makes us fail with a message, not hang.
    sqlx::query("SET LOCAL lock_timeout = '60s'")
        .execute(&mut *tx)
        .await
        .map_err(fail("setting the migration's lock timeout"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(fail("taking the migration lock"))?;
    // Read committed: each statement from here on sees what an earlier lock holder
    // committed, so the check below is made after the previous migrator finished.
    let has_table: bool = sqlx::query_scalar(HAS_VERSION_TABLE)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail("looking for the schema_version table"))?;
    if !has_table {
        sqlx::raw_sql(CREATE_VERSION_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(fail("creating the schema_version table"))?;
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(fail("reading the schema version"))?;
    let found = found.unwrap_or(0);
    if found > CURRENT_VERSION {
        return Err(OpenError::SchemaTooNew { location: location.to_owned(), found, known: CURRENT_VERSION });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(fail("applying a schema migration"))?;
        sqlx::query(concat!("INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, ", db_now_ms!(), ")"))
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(fail("recording a schema migration"))?;
        tracing::info!(database = location, version, "applied schema migration");
    }
    tx.commit().await.map_err(fail("committing the schema migration"))?;
    Ok(())
}

/// Succeeds only when the database is at exactly [`CURRENT_VERSION`]; changes nothing.
pub(crate) async fn check_current(conn: &mut PgConnection, location: &str) -> Result<(), OpenError> {
    let fail = |doing: &'static str| move |e| failed(location, doing, e);
    let has_table: bool = sqlx::query_scalar(HAS_VERSION_TABLE)
        .fetch_one(&mut *conn)
        .await
        .map_err(fail("looking for the schema_version table"))?;
    if !has_table {
        return Err(OpenError::NotInitialised { location: location.to_owned() });
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(fail("reading the schema version"))?;
    match found {
        None => Err(OpenError::NotInitialised { location: location.to_owned() }),
        Some(found) if found < CURRENT_VERSION => {
            Err(OpenError::SchemaOutdated { location: location.to_owned(), found, expected: CURRENT_VERSION })
        }
        Some(found) if found > CURRENT_VERSION => {
            Err(OpenError::SchemaTooNew { location: location.to_owned(), found, known: CURRENT_VERSION })
        }
        Some(_) => Ok(()),
    }
}

/// Whether the server on the other end of `conn` is a standby (in recovery).
pub(crate) async fn is_standby(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(conn).await
}

/// The error for a connection that reached a standby: a replica may lag behind the
/// primary, and "is this image referenced?" answered from an old state lets the cleaner
/// delete an image a record names, so every query must go to the primary.
pub(crate) fn standby_refused() -> StoreError {
    StoreError::new(
        StoreErrorKind::Misconfigured,
        "PostgreSQL: the server is a standby (in recovery); profilestore must use the primary, \
         because a replica's view may be older than the last committed record",
    )
}

/// Succeeds only when `conn` reached a primary.
pub(crate) async fn check_primary(conn: &mut PgConnection, location: &str) -> Result<(), OpenError> {
    match is_standby(conn).await {
        Ok(false) => Ok(()),
        Ok(true) => {
            Err(OpenError::Store { what: "database", location: location.to_owned(), source: standby_refused() })
        }
        Err(e) => Err(failed(location, "asking whether the server is a standby", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (version, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
        assert_eq!(CURRENT_VERSION, MIGRATIONS.len() as i64);
    }
}
