//! A private PostgreSQL server for one test (started by the project's own service
//! script), for tests that must change server-wide settings or stop the server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server of this test's own, on a free loopback port; stopped on drop.
pub struct PrivateServer {
    dir: tempfile::TempDir,
    /// The URL of its test database.
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/postgres.sh")
}

/// Whether PostgreSQL's server binaries are installed here.
pub fn installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some())
}

impl PrivateServer {
    /// Starts one, or `None` after saying why the test is skipped (panicking when
    /// servers are required).
    pub fn start() -> Option<PrivateServer> {
        if !installed() {
            return crate::services::missing("PostgreSQL is not installed (run scripts/test.sh)");
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        // The postgres user must reach its data directory.
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let url = run("start", &dir.path().join("pg"))
            .lines()
            .find_map(|l| l.strip_prefix("PROFILESTORE_TEST_POSTGRES_URL=").map(str::to_owned))
            .expect("the script prints the URL");
        Some(PrivateServer { dir, url })
    }

    /// Stops the server; [`PrivateServer::resume`] starts it again.
    pub fn stop(&self) {
        run("stop", &self.dir.path().join("pg"));
    }

    /// Starts the stopped server again on the same port and data.
    pub fn resume(&self) {
        run("resume", &self.dir.path().join("pg"));
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(self.dir.path().join("pg")).output();
    }
}

/// Runs the service script; returns its standard output.
fn run(command: &str, dir: &Path) -> String {
    let out = Command::new("bash").arg(script()).arg(command).arg(dir).output().expect("bash runs");
    assert!(out.status.success(), "postgres.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
