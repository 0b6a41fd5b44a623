//! The embedded schema migrations, the runner that applies them, and the check that an
//! existing database is at this build's version.
//!
//! Why not `sqlx::migrate!`: it needs sqlx's `macros` feature, and the runner we need is
//! a dozen lines: one `schema_version` table, migrations applied in order inside one
//! `BEGIN IMMEDIATE` transaction, so concurrent starters serialise on SQLite's write
//! lock and exactly one of them applies each migration.

use sqlx::SqlitePool;

use super::errors::store_error;
use crate::open::OpenError;

/// Every migration, in order: `(version, SQL)`. Versions are 1, 2, 3... with no gaps;
/// a released migration is never edited, only followed by a new one.
pub(crate) const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_cleaner_fence.sql")),
    (3, include_str!("migrations/0003_incremental_cleaning.sql")),
    (4, include_str!("migrations/0004_idempotency_keys.sql")),
];

/// The schema version this build reads and writes.
pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version       INTEGER NOT NULL PRIMARY KEY,
    applied_at_ms INTEGER NOT NULL
) STRICT";

fn failed(location: &str, doing: &str, e: sqlx::Error) -> OpenError {
    OpenError::Store { what: "database", location: location.to_owned(), source: store_error(doing, e) }
}

/// Brings the database up to [`CURRENT_VERSION`], creating the schema in an empty one.
/// Refuses a database newer than this build.
pub(crate) async fn migrate(pool: &SqlitePool, location: &str) -> Result<(), OpenError> {
    let fail = |doing: &'static str| move |e| failed(location, doing, e);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail("starting the schema migration"))?;
    sqlx::raw_sql(CREATE_VERSION_TABLE).execute(&mut *tx).await.map_err(fail("creating the schema_version table"))?;
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
        sqlx::query(concat!("INSERT INTO schema_version (version, applied_at_ms) VALUES (?, ", db_now_ms!(), ")"))
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
pub(crate) async fn check_current(pool: &SqlitePool, location: &str) -> Result<(), OpenError> {
    let fail = |doing: &'static str| move |e| failed(location, doing, e);
    let has_table: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'")
            .fetch_one(pool)
            .await
            .map_err(fail("looking for the schema_version table"))?;
    if has_table == 0 {
        return Err(OpenError::NotInitialised { location: location.to_owned() });
    }
    let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
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

/// Succeeds only when the database file is in WAL mode, as a migrating open leaves it.
pub(crate) async fn check_wal(pool: &SqlitePool, location: &str) -> Result<(), OpenError> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .map_err(|e| failed(location, "reading the journal mode", e))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    let source = profilestore_core::error::StoreError::new(
        profilestore_core::error::StoreErrorKind::Misconfigured,
        format!("the database is in '{mode}' journal mode, not WAL: run `profilestore init` to switch it"),
    );
    Err(OpenError::Store { what: "database", location: location.to_owned(), source })
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
