//! `profilestore check-model`: the exhaustive model checker over the production step
//! logic.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use profilestore_core::settings::Timings;
use profilestore_modelcheck::{
    CASE_STUDY_TIMINGS, Cleaning, Design, Hours, IncrementalDesign, ModelConfig, Operations, PatchDesign, Properties,
    SearchOptions, StoreProtocol, Verdict, check_with,
};

use crate::args::{CheckModelArgs, ModelVariant};
use crate::stores::checked;

/// Runs the checker; exit status 1 on a violation.
pub async fn run(args: CheckModelArgs) -> anyhow::Result<ExitCode> {
    let config = config(&args)?;
    let options = args.threads.map_or_else(SearchOptions::default, |threads| SearchOptions { threads });
    // The search is CPU-bound: keep it off the async runtime's threads.
    let report = tokio::task::spawn_blocking(move || {
        check_with(&config, &options, |p| {
            eprintln!(
                "depth {:>3}  distinct states {:>11}  transitions {:>12}  frontier {:>9}  {:.1?}",
                p.depth, p.distinct_states, p.transitions, p.frontier, p.elapsed
            );
        })
    })
    .await??;
    println!(
        "{} distinct states, {} transitions, depth {}, {:.2?} on {} threads ({:.0} states/s), peak memory {} MiB \
         ({:.0} bytes per state)",
        report.distinct_states,
        report.transitions,
        report.depth,
        report.elapsed,
        report.threads,
        report.states_per_second(),
        report.peak_memory_bytes.unwrap_or(0) / (1 << 20),
        report.bytes_per_state().unwrap_or(0.0)
    );
    let races = report.coverage;
    println!(
        "races reached (states): pending commit with a cleaner query ready {}, pending commit past its deadline {}, \
         deadline reached at a write's check {}",
        races.pending_commit_with_query_ready, races.pending_commit_past_deadline, races.deadline_at_check
    );
    match report.verdict {
        Verdict::Pass => {
            println!("pass: every property holds in every explored state");
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Violation { property, trace } => {
            println!("VIOLATION of {property}: shortest trace, {} steps\n{trace}", trace.steps());
            Ok(super::CHECK_FAILED)
        }
    }
}

/// The cleaning mode `--cleaning` and `--incremental-flaw` name.
fn cleaning(args: &CheckModelArgs) -> anyhow::Result<Cleaning> {
    let design = match args.incremental_flaw.as_deref() {
        None => IncrementalDesign::Working,
        Some("queue-without-delay") => IncrementalDesign::QueueWithoutDelay,
        Some("delay-from-statement") => IncrementalDesign::DelayFromStatement,
        Some("horizon-without-age-filter") => IncrementalDesign::HorizonWithoutAgeFilter,
        Some("horizon-without-lag") => IncrementalDesign::HorizonWithoutLag,
        Some(other) => bail!("--incremental-flaw {other:?} is not a flaw the model knows"),
    };
    match args.cleaning.as_str() {
        "full" if args.incremental_flaw.is_some() => bail!("--incremental-flaw needs --cleaning incremental"),
        "full" => Ok(Cleaning::Full),
        "incremental" => Ok(Cleaning::Incremental(design)),
        other => bail!("--cleaning {other:?} is not a mode the model knows"),
    }
}

/// The model configuration the flags describe; timings must be whole hours and obey
/// the rules unless `--allow-unsafe-timing`.
fn config(args: &CheckModelArgs) -> anyhow::Result<ModelConfig> {
    let hours = |name: &str, d: Option<Duration>, default: Hours| -> anyhow::Result<Hours> {
        let Some(d) = d else { return Ok(default) };
        let secs = d.as_secs();
        if d.subsec_nanos() != 0 || secs % 3600 != 0 || secs / 3600 > u64::from(u8::MAX) {
            bail!("--{name} must be a whole number of hours up to 255h in the model (got {d:?})");
        }
        Ok(Hours((secs / 3600) as u8))
    };
    let timings = Timings {
        request_timeout: hours("request-timeout", args.timings.request_timeout, CASE_STUDY_TIMINGS.request_timeout)?,
        min_blob_age: hours("min-blob-age", args.timings.min_blob_age, CASE_STUDY_TIMINGS.min_blob_age)?,
        delete_delay: hours("delete-delay", args.timings.delete_delay, CASE_STUDY_TIMINGS.delete_delay)?,
        clock_skew: CASE_STUDY_TIMINGS.clock_skew,
    };
    let as_durations = Timings {
        request_timeout: Duration::from_secs(3600 * u64::from(timings.request_timeout.0)),
        min_blob_age: Duration::from_secs(3600 * u64::from(timings.min_blob_age.0)),
        delete_delay: Duration::from_secs(3600 * u64::from(timings.delete_delay.0)),
        clock_skew: Duration::ZERO,
    };
    checked(as_durations, args.timings.allow_unsafe_timing)?;
    let config = ModelConfig {
        servers: args.servers,
        cleaners: args.cleaners,
        users: args.users,
        metadata_values: args.metadata_values,
        images: args.images,
        max_ops: args.max_ops,
        image_ids: args.image_ids.unwrap_or(args.max_ops),
        max_hours: args.max_hours,
        timings,
        design: match args.variant {
            ModelVariant::Working => Design::Working,
            ModelVariant::RecordFirst => Design::RecordFirst,
            ModelVariant::BlobKeyedByUser => Design::BlobKeyedByUser,
        },
        store: match args.store_protocol.as_str() {
            "atomic" => StoreProtocol::AtomicCommit,
            "sqlite-unlocked" => StoreProtocol::SqliteUnlockedQuery,
            "sqlite-locked" => StoreProtocol::SqliteLockedQuery,
            "postgres-bounded" => StoreProtocol::PostgresBoundedCommit,
            other => bail!("--store-protocol {other:?} is not a protocol the model knows"),
        },
        fail_steps: !args.no_failures,
        properties: if args.liveness { Properties::ALL } else { Properties::SAFETY },
        cleaning: cleaning(args)?,
        operations: Operations {
            deletes: args.deletes,
            patches: args.patches.as_deref().map(|design| match design {
                "blind" => PatchDesign::Blind,
                _ => PatchDesign::CompareAndSet,
            }),
        },
    };
    config.validate()?;
    Ok(config)
}
