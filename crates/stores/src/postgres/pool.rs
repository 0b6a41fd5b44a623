//! Connecting: the server checked on a connection of its own, then the pool, with
//! when a pooled connection is checked before use.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use super::errors::store_error;
use super::{PostgresSettings, schema};
use crate::open::{OpenError, OpenMode};
use profilestore_core::error::StoreError;

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// sqlx pings every connection on its release to the pool, so one that was released
/// less than this ago was alive then. Pinging on every acquire as well (sqlx's
/// default) costs each call one more round trip to the server, and on a busy server
/// that is a large share of its work: a point read is one statement. A connection the
/// server dropped within this window (a restart in the last second) fails one call,
/// which gets the transient error every call gets while the server is away, and is
/// then discarded at its release.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Checks the server at `url` on a connection of its own (a primary, the schema as
/// `mode` wants it, migrated if asked), then answers the store's pool. Errors name
/// `location`, the URL with its credentials redacted.
pub(super) async fn connect(
    url: &str,
    location: &str,
    mode: OpenMode,
    settings: &PostgresSettings,
) -> Result<PgPool, OpenError> {
    let mut options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| OpenError::InvalidUrl { url: location.to_owned(), reason: e.to_string() })?;
    if options.get_application_name().is_none() {
        options = options.application_name("profilestore");
    }
    let store_failed = |source| OpenError::Store { what: "database", location: location.to_owned(), source };

    // One connection of our own for the checks and the migration: its errors are
    // the server's (a refused connection, a bad password), where the pool would
    // retry until its timeout and report only that it timed out.
    let mut conn = match tokio::time::timeout(settings.connect_timeout, options.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(store_failed(store_error("connecting", e))),
        Err(_) => {
            return Err(store_failed(StoreError::unavailable(format!(
                "PostgreSQL, connecting: no connection within {:?}",
                settings.connect_timeout
            ))));
        }
    };
    let checked = async {
        schema::check_primary(&mut conn, location).await?;
        match mode {
            OpenMode::Migrate => schema::migrate(&mut conn, location).await,
            OpenMode::Existing => schema::check_current(&mut conn, location).await,
        }
    }
    .await;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the connection used to open the store failed");
    }
    checked?;

    Ok(open(settings, options))
}

/// The store's pool: `settings`' limits, every new connection refused when it reached
/// a standby, idle connections checked before use.
fn open(settings: &PostgresSettings, options: PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(|conn, _meta| Box::pin(refuse_standby(conn)))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// Fails a new pooled connection that reached a standby (a DNS name moved to a replica
/// after open), so no query is ever answered from a replica's older view.
async fn refuse_standby(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    if schema::is_standby(conn).await? {
        return Err(sqlx::Error::Configuration(schema::standby_refused().into()));
    }
    Ok(())
}
