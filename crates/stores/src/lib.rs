//! Storage backends for profilestore, chosen by URL. Every backend keeps the store
//! contracts of `profilestore_core::store`, checked by the conformance suites of
//! `profilestore-testkit`.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`resolve`] | [`open_metadata`] and [`open_blobs`]: the one place a URL becomes a store |
//! | [`open`] | [`OpenMode`] (may opening create or migrate?) and [`OpenError`] |
//! | [`sqlite`] | [`SqliteMetadataStore`]: records in a SQLite file, deadline checked by SQLite's clock; embedded migrations |
//! | `postgres` | `PostgresMetadataStore`: records in PostgreSQL, deadline checked by `clock_timestamp()` (feature `postgres`) |
//! | `s3` | `S3BlobStore`: objects in an S3-compatible bucket via `object_store` (feature `s3`) |
//! | [`local`] | [`LocalBlobStore`]: image files under a directory via `object_store`; the staging-file sweep |
//! | [`measured`] | [`Measured`]: any store with every call's latency and errors recorded; the resolver measures every store it opens |
//!
//! Backend errors (sqlx, `object_store`, I/O) become
//! [`StoreError`](profilestore_core::error::StoreError)s inside the backend modules;
//! no backend type appears in this crate's public signatures.

mod decode;
#[cfg(feature = "failpoints")]
pub mod failpoint;
pub mod local;
pub mod measured;
pub mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod resolve;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sqlite;

pub use local::LocalBlobStore;
pub use measured::Measured;
pub use open::{OpenError, OpenMode, S3Options, redact_url};
pub use resolve::{open_blobs, open_metadata};
pub use sqlite::SqliteMetadataStore;
