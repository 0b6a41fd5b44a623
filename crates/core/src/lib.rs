//! Core of profilestore: profiles split across a transactional database (metadata)
//! and a blob store (images), kept consistent without a shared transaction.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`ids`] | user ids, image ids (UUIDv7), blob keys `{shard}/{image_id}/{variant}`, the [`IdSource`](ids::IdSource) seam |
//! | [`time`] | the [`Time`](time::Time) the step logic runs on, wall-clock [`Timestamp`](time::Timestamp)s, the [`Clock`](time::Clock) seam and a [`ManualClock`](time::ManualClock) for tests |
//! | [`clocks`] | the [`ClockCheck`](clocks::ClockCheck): offsets to the database's and the blob store's clocks, measured, and the verdict that stops writes and cleaning |
//! | [`settings`] | the four cluster-wide [`Timings`](settings::Timings) and the rules that make them safe |
//! | [`store`] | the [`MetadataStore`](store::MetadataStore) and [`BlobStore`](store::BlobStore) traits and their contracts |
//! | [`machine`] | the write, read and cleaner-cycle step logic, shared by the service and the model checker |
//! | [`service`] | the async drivers of the write and read machines: what a server runs |
//! | [`pairing`] | how a database and a blob store are tied to each other and to the timings |
//! | [`error`] | store errors and service errors, each with a kind that says what to do |
//! | [`memory`] | in-memory stores for tests and simulation |
//! | [`metrics`] | the names of the figures the core records (write outcomes, deadline cuts, read anomalies, clock offsets) |
//!
//! Dependencies point one way: this crate knows the store traits, never a concrete
//! backend, HTTP, or the ambient clock and randomness. The production clock and id
//! source live in `profilestore-runtime`; clippy's `disallowed-methods` keeps
//! `SystemTime::now`, `Instant::now` and `Uuid::now_v7` out of every other place.

pub mod clocks;
pub mod error;
pub mod ids;
pub mod machine;
pub mod memory;
pub mod metrics;
pub mod pairing;
pub mod service;
pub mod settings;
pub mod store;
pub mod time;
