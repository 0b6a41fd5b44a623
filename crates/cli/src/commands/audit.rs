//! `profilestore audit`: a read-only look at both stores.

use profilestore_runtime::SystemClock;
use std::process::ExitCode;
use std::sync::Arc;

use crate::args::AuditArgs;
use crate::config::FileSettings;
use crate::stores::open_paired;

/// Prints the audit; exit status 1 when a record names a missing image.
pub async fn run(mut args: AuditArgs, file: &FileSettings) -> anyhow::Result<ExitCode> {
    file.fill_stores(&mut args.stores);
    file.fill_timings(&mut args.timings)?;
    let clock = Arc::new(SystemClock::new());
    let opened = open_paired(&args.stores, &args.timings, clock.clone()).await?;
    let report =
        profilestore_cleaner::audit(opened.metadata.as_ref(), opened.blobs.as_ref(), clock.as_ref(), &opened.timings)
            .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(if report.healthy() { ExitCode::SUCCESS } else { super::CHECK_FAILED })
}
