//! The test side of the stores' failpoints (the `failpoints` feature of
//! `profilestore-stores`, compiled only into test builds): a test arms, watches and
//! releases a failpoint in another process through files in one directory.
//!
//! The file protocol is the one `profilestore_stores::failpoint` reads: the process
//! gets the directory in `PROFILESTORE_FAILPOINT_DIR`; `park-before-commit` arms the
//! next record write to park between its deadline check and its commit (the write
//! consumes it); the write creates `parked`; `release` lets it go on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The environment variable that hands a process the failpoint directory.
pub const DIR_VAR: &str = "PROFILESTORE_FAILPOINT_DIR";

/// One process's failpoint directory.
pub struct Failpoints {
    dir: PathBuf,
}

impl Failpoints {
    /// A failpoint directory under `parent`.
    pub fn new(parent: &Path) -> Failpoints {
        let dir = parent.join("failpoints");
        std::fs::create_dir_all(&dir).expect("creating the failpoint directory");
        Failpoints { dir }
    }

    /// Hands the directory to `cmd`.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env(DIR_VAR, &self.dir)
    }

    /// Arms the park before a record's commit: the next write to reach it parks.
    pub fn arm_park_before_commit(&self) {
        std::fs::File::create(self.dir.join("park-before-commit")).expect("arming the failpoint");
    }

    /// Waits (polling its file) until a write has parked; panics after `limit`.
    #[allow(clippy::disallowed_methods)] // real time: the other process runs in it
    pub fn wait_parked(&self, limit: Duration) {
        let start = Instant::now();
        while !self.dir.join("parked").exists() {
            assert!(start.elapsed() < limit, "no write parked at the failpoint within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lets the parked write go on.
    pub fn release(&self) {
        std::fs::File::create(self.dir.join("release")).expect("releasing the failpoint");
    }

    /// Readies the failpoint for another round once the released write has gone past
    /// it (the caller waits for that: a write still parked would then park forever).
    pub fn reset(&self) {
        for file in ["parked", "release", "park-before-commit.taken"] {
            match std::fs::remove_file(self.dir.join(file)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("resetting the failpoint: {e}"),
                _ => {}
            }
        }
    }
}
