//! The `profilestore` binary: parses the command line, sets up logging, and hands
//! over to one subcommand. Exit status: 0 success, 1 a check failed (audit found a
//! dangling reference, a cleaner cycle did not complete), 2 an error (bad settings,
//! unreachable or unpaired stores).

mod args;
mod auth;
mod commands;
mod config;
mod metrics;
mod progress;
mod report;
mod stores;
mod transport;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command, Layer, LogFormat};
use crate::config::FileSettings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Generated from the CLI's own definition, so they never drift from it.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "profilestore", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                // A reader that stopped early (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => fail(&e.into()),
                _ => ExitCode::SUCCESS,
            };
        }
        _ => {}
    }
    let file = match cli.config.as_deref().map(FileSettings::load).transpose() {
        Ok(file) => file.unwrap_or_default(),
        Err(e) => return fail(&e),
    };
    // A benchmark's server would log every request it answers: warnings only.
    let default_filter = if matches!(cli.command, Command::Bench(_)) { "warn" } else { "info,sqlx=warn" };
    let mut log = cli.log.clone();
    log.fill_from(&file.log);
    init_logging(log.log_format.unwrap_or(LogFormat::Text), default_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&e.into()),
    };
    let result = runtime.block_on(async move {
        // Before any store is opened: every part records into it.
        let render = metrics::install()?;
        match cli.command {
            Command::Serve(args) => commands::serve::run(*args, &file, render).await,
            Command::Init(args) => commands::init::run(args, &file).await,
            Command::Clean(args) => commands::clean::run(args, &file, render).await,
            Command::Audit(args) => commands::audit::run(args, &file).await,
            Command::SetTimings(args) => commands::set_timings::run(args, &file).await,
            Command::CheckModel(args) => commands::check_model::run(args).await,
            // CPU-bound, on runtimes of its own (one per seed): off the async threads.
            Command::Bench(args) => commands::bench::run(args).await,
            Command::Report(args) => report::run(args).await,
            Command::Completions { .. } | Command::Man => unreachable!("answered before the runtime starts"),
            Command::Simulate(args) => tokio::task::spawn_blocking(move || commands::simulate::run(args)).await?,
        }
    });
    result.unwrap_or_else(|e| fail(&e))
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::from(2)
}

fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only for a person at a terminal, never into a log file or collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(progress::LogWriter::make).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
