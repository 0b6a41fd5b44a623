//! One module per subcommand. Each returns the process's exit status.

pub mod audit;
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
