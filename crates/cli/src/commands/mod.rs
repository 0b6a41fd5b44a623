//! One module per subcommand. Each returns the process's exit status.

pub mod audit;
pub mod bench;
pub mod check_model;
pub mod clean;
pub mod init;
pub mod serve;
pub mod set_timings;
pub mod simulate;

use std::process::ExitCode;

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the process");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}

/// Exit status 1: the command ran, and what it checked is not fine.
pub const CHECK_FAILED: ExitCode = ExitCode::FAILURE;

/// How often a process measures its clock offsets unless told otherwise.
pub const DEFAULT_CLOCK_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Measures this process's offsets to both stores' clocks once (refusing a clock-skew
/// too fine to check), then keeps measuring in the background for the process's life.
/// A measurement vouches for three intervals.
pub async fn start_clock_check(
    opened: &crate::stores::Opened,
    clock: std::sync::Arc<dyn profilestore_core::time::Clock>,
    args: &crate::args::ClockCheckArgs,
) -> anyhow::Result<std::sync::Arc<profilestore_core::clocks::ClockCheck>> {
    let interval = args.clock_check_interval.unwrap_or(DEFAULT_CLOCK_CHECK_INTERVAL);
    anyhow::ensure!(!interval.is_zero(), "clock-check-interval must be more than zero");
    let check = std::sync::Arc::new(profilestore_core::clocks::ClockCheck::new(
        opened.metadata.clone(),
        opened.blobs.clone(),
        clock,
        opened.timings.clock_skew,
        interval.saturating_mul(3),
    ));
    match check.measure().await? {
        Ok(()) => tracing::info!("clock check: the database's and the blob store's clocks are within clock-skew"),
        Err(fault) => tracing::error!(error = %fault, "clock check: not writing or cleaning until the clocks agree"),
    }
    let background = check.clone();
    tokio::spawn(async move { background.run_every(interval, std::future::pending()).await });
    Ok(check)
}
