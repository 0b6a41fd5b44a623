//! Test support for profilestore: a dev-dependency of the other crates, never part of
//! a release build (`cargo tree -e normal -p profilestore` does not show it).
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`conformance`] | the metadata-store and blob-store suites every backend runs, in-memory fakes included |
//! | [`failpoint`] | the test side of the stores' failpoints: arm, wait for and release a parked write in another process |
//! | [`hooked`] | stores seen through a hook before every call: failures, stalls, gates and recorded calls |
//! | [`postgres`] | a private PostgreSQL server for a test that changes server-wide settings or stops it |
//! | [`services`] | "this test needs a real server": skip with a message, or fail when the suite requires servers |
//! | this crate's root | small fixtures: deadlines chosen side by side |

pub mod conformance;
pub mod failpoint;
pub mod hooked;
pub mod postgres;
pub mod raw_http;
pub mod services;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use profilestore_core::time::{Deadline, Timestamp};

/// A deadline at wall-clock instant `at` with `remaining` on the system's tick clock:
/// for tests that choose each side of a deadline on its own.
pub fn test_deadline(at: Timestamp, remaining: Duration) -> Deadline {
    Deadline::new(Arc::new(profilestore_runtime::SystemClock::new()), at, remaining)
}
