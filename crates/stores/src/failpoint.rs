//! Test-only failpoints, compiled in only with the `failpoints` feature: a release
//! build carries none of this (`cargo tree -e normal` shows the feature off).
//!
//! One failpoint exists, [`take_park_before_commit`] then [`park`] (or
//! [`park_blocking`] on a thread of its own), between a record write's deadline check
//! and its `COMMIT`. It emulates the hazard the store protocols exist for: a
//! process that passed the check and then stalls (SIGSTOP, swap, a VM freeze, a
//! worker thread stuck in the kernel) before its commit lands.
//!
//! It is driven from outside the process through files in the directory named by
//! `PROFILESTORE_FAILPOINT_DIR`:
//! - the test creates `park-before-commit` to arm it; the next record write to reach
//!   the failpoint consumes that file (so exactly one write parks per arming);
//! - the parked write creates `parked` (the test waits for it);
//! - the test creates `release`; the write then goes on to commit.
//!
//! `profilestore_testkit::failpoint` is the test side of this file protocol.

use std::path::PathBuf;
use std::time::Duration;

/// The environment variable naming the failpoint directory.
pub const DIR_VAR: &str = "PROFILESTORE_FAILPOINT_DIR";

/// How often a parked write looks for its release file.
const POLL: Duration = Duration::from_millis(10);

/// Whether the failpoint is armed, disarming it: `true` for exactly one caller per
/// arming, which must then [`park`] (or [`park_blocking`]) before its commit.
pub fn take_park_before_commit() -> bool {
    let Some(dir) = std::env::var_os(DIR_VAR).map(PathBuf::from) else { return false };
    // Renaming is atomic: of two writes racing here, one wins the arming.
    std::fs::rename(dir.join("park-before-commit"), dir.join("park-before-commit.taken")).is_ok()
}

/// Parks until the test releases the write. Call it on a task the caller's timeouts
/// cannot cancel (a frozen process's timers do not fire either), holding whatever the
/// write holds at that point: its transaction, and on SQLite the write lock.
pub async fn park() {
    let Some(dir) = parked() else { return };
    // On the runtime's timer, not a blocking thread: a runtime shutting down drops a
    // parked task, where it would wait for ever for a blocking one.
    while !released(&dir) {
        tokio::time::sleep(POLL).await;
    }
    tracing::warn!("failpoint: the parked record write goes on to commit");
}

/// [`park`] for a caller on a thread of its own (the SQLite writer's), which it blocks.
pub fn park_blocking() {
    let Some(dir) = parked() else { return };
    while !released(&dir) {
        std::thread::sleep(POLL);
    }
    tracing::warn!("failpoint: the parked record write goes on to commit");
}

/// Says the write is parked (the `parked` file), answering the failpoint directory.
fn parked() -> Option<PathBuf> {
    let dir = std::env::var_os(DIR_VAR).map(PathBuf::from)?;
    tracing::warn!("failpoint: a record write parks between its deadline check and its commit");
    if let Err(e) = std::fs::write(dir.join("parked"), b"") {
        tracing::error!(error = %e, "failpoint: could not say the write is parked");
    }
    Some(dir)
}

/// Whether the test has released the parked write (a file's existence: a stat).
fn released(dir: &std::path::Path) -> bool {
    dir.join("release").try_exists().unwrap_or(false)
}
