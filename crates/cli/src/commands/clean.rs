//! `profilestore clean`: one cleaner cycle, or a daemon running one every interval.

use std::process::ExitCode;
use std::sync::Arc;

use profilestore_api::RenderMetrics;
use profilestore_cleaner::{Cleaner, CleanerConfig, Preflight, Progress, SweepMode};
use profilestore_core::pairing::verify;
use profilestore_core::time::Clock;
use profilestore_runtime::SystemClock;

use crate::args::{CleanArgs, Layer, Listen};
use crate::config::FileSettings;
use crate::progress::{self, Mode, Work};
use crate::stores::{Opened, open_paired};

/// Runs the cleaner; a single cycle exits 1 unless it completed. A daemon serves its
/// `/metrics` (from `render`) when given an address.
pub async fn run(mut args: CleanArgs, file: &FileSettings, render: RenderMetrics) -> anyhow::Result<ExitCode> {
    args.stores.fill_from(&file.stores);
    args.timings.fill_from(&file.timings);
    args.clocks.fill_from(&file.clocks);
    args.progress.fill_from(&file.progress);
    args.clean.fill_from(&file.clean);
    let progress_interval = args.progress.interval()?;
    let (metrics_listen, every) = (args.clean.metrics_listen, args.clean.every);
    anyhow::ensure!(
        every.is_some() || !matches!(metrics_listen, Some(Listen::On(_))),
        "--metrics-listen serves a daemon's figures: it needs --every (one cycle exits before anyone scrapes it)"
    );
    let clock = Arc::new(SystemClock::new());
    let opened = open_paired(&args.stores, &args.timings, clock.clone()).await?;
    // The cleaner's deletes are what a versioned bucket keeps.
    crate::stores::check_bucket_versioning(&args.stores, clock.as_ref()).await;
    let config = CleanerConfig {
        timings: opened.timings,
        dry_run: args.dry_run,
        allow_empty_database: args.clean.allow_empty_database,
        max_unreferenced_fraction: args.clean.max_unreferenced_fraction,
        allow_unsafe_timing: args.timings.allow_unsafe_timing,
        delete_rate: args.clean.delete_rate,
        delete_batch_size: args.clean.delete_batch_size.unwrap_or(CleanerConfig::default().delete_batch_size),
        sweep: match args.clean.full_every {
            Some(full_every) => SweepMode::Incremental { full_every },
            None => SweepMode::Full,
        },
        ..CleanerConfig::default()
    };
    // The slack min_blob_age - request_timeout - clock_skew bounds any stall no store
    // protocol can (an fsync that never returns, a host frozen after its commit check).
    tracing::info!(
        cluster_id = %opened.cluster_id,
        commit_stall_slack = %profilestore_core::settings::fmt_duration(config.timings.commit_stall_margin()),
        "cleaner starting"
    );
    let clock_check = super::start_clock_check(&opened, clock.clone(), &args.clocks).await?;
    let progress = Arc::new(Progress::new());
    let work = Work::Clean { dry_run: config.dry_run };
    let Some(interval) = every else {
        let cleaner = Cleaner::new(opened.metadata.clone(), opened.blobs.clone(), clock, config)?
            .with_preflight(still_paired(&opened, Arc::default()))
            .with_clock_check(clock_check)
            .with_progress(progress.clone());
        let shown = progress::show(progress, work, Mode::for_stderr(progress_interval));
        let report = cleaner.run_cycle().await;
        // The bar is cleared before the report is printed.
        shown.finish().await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{report}");
        }
        return Ok(if report.completed() { ExitCode::SUCCESS } else { super::CHECK_FAILED });
    };
    // A daemon outlives timing changes: when the cluster's timings change, the cycle
    // in progress is refused, and the cleaner is rebuilt under the stored ones.
    let mut opened = opened;
    profilestore_cleaner::metrics::process_started(clock.now());
    if let Some(Listen::On(addr)) = metrics_listen {
        let now = clock.clone();
        let render: RenderMetrics = Arc::new(move || {
            profilestore_cleaner::metrics::refresh(now.now());
            render()
        });
        let admin = crate::metrics::AdminListener::bind(addr).await?;
        crate::metrics::announce(&format!("profilestore cleaner metrics on http://{}\n", admin.addr))?;
        admin.serve(render, None, profilestore_api::ServeOptions::default(), super::shutdown_signal());
    }
    // A daemon logs its progress, terminal or not: nobody waits at a daemon's bar,
    // which would be redrawn for days between the cycle lines, while the log line
    // lands where the rest of the daemon's log goes. It says nothing between cycles.
    let _shown = progress::show(progress.clone(), work, Mode::Log(progress_interval));
    let mut shutdown = std::pin::pin!(super::shutdown_signal());
    loop {
        let changed = Arc::new(tokio::sync::Notify::new());
        let cleaner = Cleaner::new(
            opened.metadata.clone(),
            opened.blobs.clone(),
            clock.clone(),
            CleanerConfig { timings: opened.timings, ..config.clone() },
        )?
        .with_preflight(still_paired(&opened, changed.clone()))
        .with_clock_check(clock_check.clone())
        .with_progress(progress.clone())
        .with_queue_depth();
        tokio::select! {
            biased;
            () = cleaner.run_every(interval, &mut shutdown) => return Ok(ExitCode::SUCCESS),
            () = changed.notified() => {
                // A store that fails here is retried: only timings this process was
                // explicitly told to differ from end it.
                let pairing = loop {
                    match verify(opened.metadata.as_ref(), opened.blobs.as_ref()).await {
                        Ok(pairing) => break pairing,
                        Err(e) => {
                            tracing::warn!(error = %e, "reloading the cluster's timings failed; retrying");
                            tokio::select! {
                                biased;
                                () = &mut shutdown => return Ok(ExitCode::SUCCESS),
                                () = tokio::time::sleep(interval.max(std::time::Duration::from_secs(1))) => {}
                            }
                        }
                    }
                };
                let timings = crate::stores::adopt_timings(&pairing, &args.timings)?;
                tracing::warn!(old = ?opened.timings, new = ?timings, "the cluster's timings changed: the cleaner runs under the stored ones");
                clock_check.set_bound(timings.clock_skew);
                opened.timings = timings;
            }
        }
    }
}

/// Before every cycle: the stores are still paired with each other, in the same
/// cluster, with the timings this cleaner runs with. Someone may have run
/// `set-timings` (or repointed a store) since the daemon started; a cleaner with stale
/// timings could delete what newer servers still need.
fn still_paired(opened: &Opened, timings_changed: Arc<tokio::sync::Notify>) -> Preflight {
    let (metadata, blobs) = (opened.metadata.clone(), opened.blobs.clone());
    let (cluster_id, timings) = (opened.cluster_id, opened.timings);
    Arc::new(move || {
        let (metadata, blobs, timings_changed) = (metadata.clone(), blobs.clone(), timings_changed.clone());
        Box::pin(async move {
            let pairing = verify(metadata.as_ref(), blobs.as_ref()).await.map_err(|e| e.to_string())?;
            if pairing.cluster_id != cluster_id {
                return Err(format!("the stores now belong to cluster {}, not {cluster_id}", pairing.cluster_id));
            }
            if pairing.timings != timings {
                timings_changed.notify_one();
                return Err("the cluster's timings changed since this cycle's cleaner started: reloading them".into());
            }
            Ok(())
        })
    })
}
