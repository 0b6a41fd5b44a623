//! `profilestore set-timings`: the one way to change the cluster-wide timings.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use profilestore_core::settings::fmt_duration;
use profilestore_runtime::SystemClock;

use crate::args::{Layer, SetTimingsArgs};
use crate::config::FileSettings;
use crate::stores::{open_existing, updated_timings};

/// Stores the new timings, after checking them against the safety rules.
pub async fn run(mut args: SetTimingsArgs, file: &FileSettings) -> anyhow::Result<ExitCode> {
    args.stores.fill_from(&file.stores);
    args.timings.fill_from(&file.timings);
    let clock = Arc::new(SystemClock::new());
    let (metadata, _, pairing) = open_existing(&args.stores, clock).await.context("refusing to change timings")?;
    let new = updated_timings(&pairing.timings, &args.timings)?;
    let changes = new.differences(&pairing.timings);
    if changes.is_empty() {
        println!("timings unchanged");
        return Ok(ExitCode::SUCCESS);
    }
    metadata.update_timings(pairing.cluster_id, &new).await?;
    for (name, ours, old) in changes {
        println!("{name}: {} -> {}", fmt_duration(old), fmt_duration(ours));
    }
    println!(
        "running servers and cleaners adopt the new timings by themselves; a process started with other timing flags will refuse to run"
    );
    Ok(ExitCode::SUCCESS)
}
