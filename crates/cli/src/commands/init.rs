//! `profilestore init`: migrations, pairing and cluster timings, nothing else.

use std::process::ExitCode;
use std::sync::Arc;

use profilestore_core::settings::fmt_duration;
use profilestore_runtime::SystemClock;

use crate::args::{InitArgs, Layer};
use crate::config::FileSettings;
use crate::stores::open_and_pair;

/// Prepares the stores and prints the cluster's identity and timings.
pub async fn run(mut args: InitArgs, file: &FileSettings) -> anyhow::Result<ExitCode> {
    args.stores.fill_from(&file.stores);
    args.timings.fill_from(&file.timings);
    let opened = open_and_pair(&args.stores, &args.timings, Arc::new(SystemClock::new())).await?;
    let t = opened.timings;
    println!("stores paired as cluster {}", opened.cluster_id);
    println!(
        "timings: request-timeout {}, min-blob-age {}, delete-delay {}, clock-skew {}",
        fmt_duration(t.request_timeout),
        fmt_duration(t.min_blob_age),
        fmt_duration(t.delete_delay),
        fmt_duration(t.clock_skew)
    );
    Ok(ExitCode::SUCCESS)
}
