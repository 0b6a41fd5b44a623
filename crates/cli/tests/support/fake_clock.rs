//! A wall clock shifted for the processes a test starts (libfaketime).

use std::path::Path;
use std::process::Command;

use super::services_required;

/// A wall clock shifted for the processes it is applied to, by libfaketime (Debian's
/// `faketime` package, which `scripts/test.sh` installs). The shift is read from a
/// file at every clock reading, so a test can move it while a process runs; monotonic
/// clocks are left alone, so the runtime's timers keep working.
pub struct FakeClock {
    library: std::path::PathBuf,
    file: std::path::PathBuf,
}

impl FakeClock {
    /// A fake clock shifted by `offset` (libfaketime's syntax: `+3h`, `-0.2`), or
    /// `None` after saying why the test is skipped (panicking when the suite's tools
    /// are required).
    pub fn new(dir: &Path, offset: &str) -> Option<FakeClock> {
        let listed = Command::new("dpkg").args(["-L", "libfaketime"]).output().ok();
        let text = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let library = text.lines().find(|l| l.ends_with("/libfaketime.so.1")).map(std::path::PathBuf::from);
        let Some(library) = library.filter(|l| l.exists()) else {
            if services_required() {
                panic!(
                    "libfaketime is not installed but PROFILESTORE_REQUIRE_SERVICES=1 (scripts/test.sh installs it)"
                );
            }
            eprintln!("skipping: libfaketime is not installed (apt-get install faketime)");
            return None;
        };
        let clock = FakeClock { library, file: dir.join("faketime") };
        clock.set(offset);
        Some(clock)
    }

    /// Moves the shift; processes see it at their next clock reading.
    pub fn set(&self, offset: &str) {
        std::fs::write(&self.file, offset).expect("writing the fake clock's shift");
    }

    /// Makes `cmd` run on this clock.
    pub fn apply<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("LD_PRELOAD", &self.library)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    }
}
