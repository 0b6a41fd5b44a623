//! `profilestore audit`: a read-only look at both stores.

use profilestore_runtime::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

use crate::args::{AuditArgs, Layer};
use crate::config::FileSettings;
use crate::progress::{self, Mode, Work};
use crate::stores::open_paired;

/// Prints the audit; exit status 1 when a record names a missing image.
pub async fn run(mut args: AuditArgs, file: &FileSettings) -> anyhow::Result<ExitCode> {
    args.stores.fill_from(&file.stores);
    args.timings.fill_from(&file.timings);
    args.progress.fill_from(&file.progress);
    let interval = args.progress.interval()?;
    let clock = Arc::new(SystemClock::new());
    let opened = open_paired(&args.stores, &args.timings, clock.clone()).await?;
    let counters = Arc::new(profilestore_cleaner::Progress::new());
    let shown = progress::show(counters.clone(), Work::Audit, Mode::for_stderr(interval));
    let (metadata, blobs) = (opened.metadata.as_ref(), opened.blobs.as_ref());
    let report =
        profilestore_cleaner::audit_with_progress(metadata, blobs, clock.as_ref(), &opened.timings, &counters).await;
    // The bar is cleared before the report (or the error) is printed.
    shown.finish().await;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.healthy() { ExitCode::SUCCESS } else { super::CHECK_FAILED })
}
