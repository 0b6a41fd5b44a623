//! `profilestore clean`: one cleaner cycle, or a daemon running one every interval.

use std::process::ExitCode;
use std::sync::Arc;

use profilestore_cleaner::{Cleaner, CleanerConfig};
use profilestore_core::time::SystemClock;

use crate::args::CleanArgs;
use crate::config::FileSettings;
use crate::stores::open_paired;

/// Runs the cleaner; a single cycle exits 1 unless it completed.
pub async fn run(mut args: CleanArgs, file: &FileSettings) -> anyhow::Result<ExitCode> {
    file.fill_stores(&mut args.stores);
    file.fill_timings(&mut args.timings)?;
    let clock = Arc::new(SystemClock::new());
    let opened = open_paired(&args.stores, &args.timings, clock.clone()).await?;
    let config = CleanerConfig {
        timings: opened.timings,
        dry_run: args.dry_run,
        allow_empty_database: args.allow_empty_database || file.allow_empty_database.unwrap_or(false),
        max_unreferenced_fraction: args.max_unreferenced_fraction.or(file.max_unreferenced_fraction),
        allow_unsafe_timing: args.timings.allow_unsafe_timing,
        ..CleanerConfig::default()
    };
    let cleaner = Cleaner::new(opened.metadata, opened.blobs, clock, config)?;
    match args.every.or(file.every()?) {
        Some(interval) => {
            cleaner.run_every(interval, super::shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let report = cleaner.run_cycle().await;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(if report.completed() { ExitCode::SUCCESS } else { super::CHECK_FAILED })
        }
    }
}
