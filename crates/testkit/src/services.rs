//! Tests that need a real server (PostgreSQL, S3) or tool (libfaketime): skipped with
//! a visible message under a plain `cargo test`, failed when the suite requires them
//! (`scripts/test.sh` sets `PROFILESTORE_REQUIRE_SERVICES=1` after starting them).

use std::io::Write as _;

/// The variable `scripts/test.sh` sets once every server the suite needs is up.
pub const REQUIRE_VAR: &str = "PROFILESTORE_REQUIRE_SERVICES";

/// Whether a missing server must fail the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// The value of environment variable `var` naming a server, or `None` after saying
/// the test is skipped; panics instead when servers are required.
pub fn service_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => missing(&format!("{var} is not set (run scripts/test.sh to start PostgreSQL and S3)")),
    }
}

/// `None` after saying the test is skipped because `what` is missing; panics instead
/// when servers are required. For a capability a server lacks, as well as a server.
pub fn missing<T>(what: &str) -> Option<T> {
    if services_required() {
        panic!("{what}, but {REQUIRE_VAR}=1");
    }
    // Outside the test harness's capture, so a passing run shows what it skipped.
    let _ = writeln!(std::io::stderr(), "skipping: {what}");
    None
}
