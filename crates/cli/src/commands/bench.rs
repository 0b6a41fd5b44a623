//! `profilestore bench`: parses nothing itself; the harness is `profilestore-bench`.

use std::process::ExitCode;

use anyhow::Context;
use profilestore_bench::{BenchConfig, Scenario, StoreTarget};

use crate::args::BenchArgs;

/// Runs the benchmark and prints its tables (or JSON); exit status 0 whatever the
/// goals' verdicts, an error only when the harness could not measure.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.child {
        profilestore_bench::child::serve_stdin(&args.s3.options()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let config = BenchConfig {
        scenarios: if args.scenario.is_empty() { Scenario::ALL.to_vec() } else { args.scenario },
        runs: args.runs,
        run_time: args.run_time,
        clients: args.clients,
        users: args.users,
        image_size: args.image_size.as_u64(),
        in_flight_image_size: args.in_flight_image_size.as_u64(),
        in_flight_reads: args.in_flight_reads,
        stores: StoreTarget { database: args.database, blobs: args.blobs, s3: args.s3.options() },
        sweep_sizes: args.blobs_count,
        model_sizes: args.model_size.into_iter().map(Into::into).collect(),
        // The sweep's and the model checker's sides run in children of this same
        // binary, so each peak memory is that side's own.
        child_exe: Some(std::env::current_exe().context("cannot find this executable to run the children")?),
        out_dir: args.out,
    };
    let results = profilestore_bench::run(&config).await?;
    let (json_path, svg_path) = results.write(&config.out_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", profilestore_bench::table::render(&results));
        let met = results.goals.iter().filter(|g| g.met).count();
        println!("goals: {met} met, {} missed", results.goals.len() - met);
        println!("wrote {} and {}", json_path.display(), svg_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
