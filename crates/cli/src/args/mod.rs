//! The command line: subcommands and their flags. Every setting can also come from a
//! `PROFILESTORE_…` environment variable or the TOML file named by `--config`
//! (precedence: flag, then environment, then file, then the built-in default); the
//! settings groups in [`settings`] are the one definition all three read.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};
use profilestore_cleaner::DeleteRate;

#[cfg(test)]
mod readme_tests;
mod settings;
mod tools;

pub use settings::{
    AuthMode, AuthSettings, CleanSettings, ClockCheckArgs, Layer, Listen, LogArgs, ProgressArgs, S3Args, ServeSettings,
    StoreArgs, TimingArgs,
};
pub use tools::{BenchArgs, CheckModelArgs, ModelVariant, SimulateArgs};

/// User profiles split across a database and a blob store, with a storage cleaner
/// that reclaims images nobody references.
#[derive(Debug, Parser)]
#[command(name = "profilestore", version, propagate_version = true)]
pub struct Cli {
    /// A TOML file with settings (keys are the long flag names, e.g. `min-blob-age = "2h"`).
    #[arg(long, global = true, env = "PROFILESTORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API. Applies migrations and pairs the stores on first use.
    Serve(Box<ServeArgs>),
    /// Prepare the stores (migrations, pairing, cluster timings) without serving.
    Init(InitArgs),
    /// Run the storage cleaner: one cycle, or a cycle every `--every`.
    Clean(CleanArgs),
    /// Check the stores, read-only: orphans and dangling references. Exit status 1
    /// when a record names a missing image.
    Audit(AuditArgs),
    /// Change the cluster-wide timings stored in the database.
    ///
    /// Running servers and cleaners need no restart: the change waits for the writes
    /// in flight, and from then on a write, delete or cleaner query under the old
    /// timings is refused (a write answers 503 `timings_changed` and may be retried)
    /// while its process adopts the stored timings; servers also re-read them every
    /// clock-check interval. Processes started with timing flags that differ from
    /// the stored ones refuse to run.
    SetTimings(SetTimingsArgs),
    /// Explore every interleaving of the production step logic (writes, reads,
    /// cleaner cycles, clock ticks, failures) over a model world, checking consistent
    /// reads, no dangling reference, no vanished blob and, with `--liveness`,
    /// eventually no orphans. Exit status 1 with the shortest trace on a violation.
    ///
    /// Timings are whole hours. The case study's flawed designs: `--variant
    /// record-first` (1), `--variant blob-keyed-by-user` (2), `--allow-unsafe-timing`
    /// with `--min-blob-age 0s` (3), a `--request-timeout` longer than `--max-hours`
    /// (4), `--delete-delay 0s` (5).
    CheckModel(CheckModelArgs),
    /// Run the real service and cleaner code, many servers, cleaners and clients, in
    /// a deterministic simulation: one seed decides clocks (each drifting and stepped
    /// within `--clock-skew`), ids, scheduling and faults (store errors, latency, stalls
    /// of hours, commits frozen between check and commit, crashes; swarm testing picks
    /// each seed's mix). Checks consistent reads, no dangling reference and no vanished
    /// blob throughout, and no orphans once writes stop; counts the races reached. Exit
    /// status 1 on a violation, with the command that replays the failing seed and a
    /// shrunk trace.
    ///
    /// The case study's flawed timings, with `--allow-unsafe-timing`: `--min-blob-age
    /// 0s` (3), `--request-timeout 1000h` (4), `--delete-delay 0s` (5). Also flawed:
    /// `--store-protocol unlocked`, and `--clock-beyond-bound` unless `--clock-check`
    /// has every process check its clock offsets as production does.
    Simulate(SimulateArgs),
    /// Measure writes, reads (library and HTTP), the cleaner's sweep and the model
    /// checker, each beside a floor measured in the same run (the same store
    /// operations issued directly), as ratios: a table on the terminal, and
    /// results.json and latest.svg under `--out` (docs/performance.md).
    ///
    /// Exit status 0 whether goals are met or missed (the table says which); 2 when
    /// the harness could not measure.
    Bench(BenchArgs),
    /// The case study's "how many nines", computed from observed data: reads one or
    /// more Prometheus scrapes of a `serve` process (URLs of its `/metrics`, or saved
    /// files), in time order, and prints each assumption the design rests on with its
    /// observed rate per request, a 95 % interval, and the nines the data supports,
    /// next to the case study's paper estimate. Several scrapes: what happened
    /// between the first and the last; one: since the process started.
    Report(ReportArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell
    /// (e.g. `profilestore completions bash > /etc/bash_completion.d/profilestore`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `profilestore man > profilestore.1 && man ./profilestore.1`.
    Man,
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Scrapes in time order: `http://HOST:PORT/metrics` URLs or files.
    #[arg(required = true, value_name = "SCRAPE")]
    pub scrapes: Vec<String>,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
    #[command(flatten)]
    pub clocks: ClockCheckArgs,
    #[command(flatten)]
    pub serve: ServeSettings,
    #[command(flatten)]
    pub auth: AuthSettings,
}

/// Flags of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
}

/// Flags of `clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
    #[command(flatten)]
    pub clocks: ClockCheckArgs,
    #[command(flatten)]
    pub progress: ProgressArgs,
    #[command(flatten)]
    pub clean: CleanSettings,

    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the cycle summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
    #[command(flatten)]
    pub progress: ProgressArgs,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `set-timings`: the new values (unset ones keep their stored value).
#[derive(Debug, Args)]
pub struct SetTimingsArgs {
    #[command(flatten)]
    pub stores: StoreArgs,
    #[command(flatten)]
    pub timings: TimingArgs,
}

/// What a duration looks like, for refusals of a flag's or a file's value alike.
const DURATION_HINT: &str = "expected a duration such as 2h, 10m, 1h 30m or 250ms";

/// What a size looks like, for refusals of a flag's or a file's value alike.
const SIZE_HINT: &str = "expected a size such as 10MiB, 512KiB or 1000000";

/// Parses a human duration such as `2h`, `10m`, `1h 5m` or `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{e} ({DURATION_HINT})"))
}

/// Parses a human size such as `10MiB`, `512KiB` or `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<ByteSize, String> {
    s.trim().parse::<ByteSize>().map_err(|e| format!("{e} ({SIZE_HINT})"))
}

/// Parses a whole number of at least 1.
pub fn parse_positive(s: &str) -> Result<NonZeroUsize, String> {
    s.trim().parse().map_err(|_| "expected a whole number of at least 1".to_owned())
}

/// Parses a delete rate such as `500/s`, `30000/min` or `500` (per second).
pub fn parse_delete_rate(s: &str) -> Result<DeleteRate, String> {
    s.parse().map_err(|e: profilestore_cleaner::pacing::RateError| e.to_string())
}

/// Parses a list of trusted proxies: addresses and CIDR blocks, or `none`.
pub fn parse_trusted_proxies(s: &str) -> Result<profilestore_api::TrustedProxies, String> {
    s.parse().map_err(|e: profilestore_api::ProxiesError| e.to_string())
}

/// Parses a fraction between 0 and 1.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a number between 0 and 1, e.g. 0.5".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::settings::parse_listen;
    use super::*;

    #[test]
    fn durations_and_sizes_parse_from_human_strings() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h 5m"), Ok(Duration::from_secs(3900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").unwrap_err().contains("expected a duration"));
        assert_eq!(parse_size("10MiB"), Ok(ByteSize::mib(10)));
        assert_eq!(parse_size("1000"), Ok(ByteSize::b(1000)));
        assert!(parse_size("big").is_err());
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert_eq!(parse_listen("off"), Ok(Listen::Off));
        assert_eq!(parse_listen("127.0.0.1:0"), Ok(Listen::On("127.0.0.1:0".parse().unwrap())));
        assert!(parse_listen("localhost").unwrap_err().contains("nor `off`"));
        assert!(parse_fraction("1.5").is_err());
        assert_eq!(parse_positive("8").map(NonZeroUsize::get), Ok(8));
        assert!(parse_positive("0").is_err());
        assert_eq!(parse_delete_rate("30000/min").map(|r| r.to_string()), Ok("30000/1m".to_owned()));
        assert!(parse_delete_rate("fast").unwrap_err().contains("500/s"));
        assert_eq!(parse_trusted_proxies("10.0.0.0/8, ::1").map(|p| p.to_string()), Ok("10.0.0.0/8,::1/128".into()));
        assert!(parse_trusted_proxies("proxy.internal").unwrap_err().contains("not an address or CIDR block"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_parses_with_its_defaults_into_its_fields() {
        // A value parser whose type differs from its field's panics only when parsed:
        // parse every command, defaults included, and every setting given.
        let commands: &[&[&str]] = &[
            &["serve", "--max-image-size", "1MiB", "--max-upload-memory", "2MiB", "--min-upload-rate", "0"],
            &["serve", "--header-timeout", "5s", "--max-concurrent-uploads", "3", "--auth-leeway", "1m"],
            &["serve", "--trusted-proxies", "10.0.0.0/8,::1", "--max-uploads-per-client", "2"],
            &["serve", "--max-requests-per-client", "50", "--client-request-burst", "80"],
            &["init"],
            &["clean", "--every", "1m", "--delete-rate", "5/s", "--max-unreferenced-fraction", "0.5"],
            &["audit", "--progress-interval", "1s"],
            &["set-timings", "--min-blob-age", "3h"],
            &["check-model"],
            &["simulate"],
            &["bench", "--image-size", "2KiB"],
            &["report", "scrape.txt"],
        ];
        for args in commands {
            let line = std::iter::once("profilestore").chain(args.iter().copied());
            if let Err(e) = Cli::try_parse_from(line) {
                panic!("{args:?}: {e}");
            }
        }
    }
}
