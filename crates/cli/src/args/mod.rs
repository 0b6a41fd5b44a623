//! The command line: subcommands and their flags. Every flag can also come from a
//! `PROFILESTORE_…` environment variable or the TOML file named by `--config`
//! (precedence: flag, then environment, then file, then the built-in default).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use profilestore_cleaner::DeleteRate;

mod tools;

pub use tools::{BenchArgs, CheckModelArgs, ModelVariant, SimulateArgs};

/// User profiles split across a database and a blob store, with a storage cleaner
/// that reclaims images nobody references.
#[derive(Debug, Parser)]
#[command(name = "profilestore", version, propagate_version = true)]
pub struct Cli {
    /// A TOML file with settings (keys are the long flag names, e.g. `min-blob-age = "2h"`).
    #[arg(long, global = true, env = "PROFILESTORE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on standard error.
    #[arg(long, global = true, env = "PROFILESTORE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

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
    Serve(ServeArgs),
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

/// Where the stores are.
#[derive(Debug, Clone, Args, Default)]
pub struct StoreArgs {
    /// Directory for the embedded default stores (SQLite file and blob directory).
    /// [default: ./profilestore-data]
    #[arg(long, env = "PROFILESTORE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Metadata database URL (`sqlite://PATH` or `postgres://USER@HOST/DB`).
    /// [default: sqlite://DATA_DIR/profilestore.db]
    #[arg(long, env = "PROFILESTORE_DATABASE", value_name = "URL")]
    pub database: Option<String>,

    /// Blob store URL (`file://PATH` or `s3://BUCKET/PREFIX`). [default: file://DATA_DIR/blobs]
    #[arg(long, env = "PROFILESTORE_BLOBS", value_name = "URL")]
    pub blobs: Option<String>,

    #[command(flatten)]
    pub s3: S3Args,
}

/// How to reach an S3-compatible server (only for `--blobs s3://…`). Credentials must
/// be given (or signing explicitly skipped): profilestore never asks a cloud metadata
/// endpoint for them.
#[derive(Debug, Clone, Args, Default)]
pub struct S3Args {
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for a self-hosted server. [default: AWS]
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// Region to sign requests for. [default: us-east-1]
    #[arg(long, env = "AWS_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,

    /// Access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", value_name = "KEY", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,

    /// Secret access key (prefer the environment variable to the flag).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Session token for temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,

    /// Send unsigned requests (a bucket that allows anonymous access); no credentials.
    #[arg(long, env = "PROFILESTORE_S3_SKIP_SIGNATURE")]
    pub s3_skip_signature: bool,

    /// How many key prefixes (shards) a listing lists at once, 1 to 64; 1 lists with
    /// one sequential walk. [default: 8]
    #[arg(long, env = "PROFILESTORE_S3_LIST_CONCURRENCY", value_parser = parse_positive, value_name = "N")]
    pub s3_list_concurrency: Option<NonZeroUsize>,
}

impl S3Args {
    /// The options the S3 backend opens with.
    pub fn options(&self) -> profilestore_stores::S3Options {
        profilestore_stores::S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            session_token: self.s3_session_token.clone(),
            skip_signature: self.s3_skip_signature,
            list_concurrency: self.s3_list_concurrency,
        }
    }
}

/// The cluster-wide timings (docs/design.md, "Timing rules"). Left unset, a process uses
/// the values stored when the stores were paired.
#[derive(Debug, Clone, Args, Default)]
pub struct TimingArgs {
    /// A request is abandoned once this old: no database write and no blob read after
    /// it. [default: 1h]
    #[arg(long, env = "PROFILESTORE_REQUEST_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<Duration>,

    /// The cleaner only considers blobs at least this old. Must be at least
    /// request-timeout + clock-skew. [default: 2h]
    #[arg(long, env = "PROFILESTORE_MIN_BLOB_AGE", value_parser = parse_duration, value_name = "DURATION")]
    pub min_blob_age: Option<Duration>,

    /// The cleaner waits this long between finding blobs unreferenced and deleting
    /// them. Must be at least request-timeout. [default: 1h]
    #[arg(long, env = "PROFILESTORE_DELETE_DELAY", value_parser = parse_duration, value_name = "DURATION")]
    pub delete_delay: Option<Duration>,

    /// How far apart the clocks of servers, cleaners and stores may be. [default: 5m]
    #[arg(long, env = "PROFILESTORE_CLOCK_SKEW", value_parser = parse_duration, value_name = "DURATION")]
    pub clock_skew: Option<Duration>,

    /// Run even with timings that break a safety rule. For simulation and
    /// demonstration only: images can be lost.
    #[arg(long, env = "PROFILESTORE_ALLOW_UNSAFE_TIMING")]
    pub allow_unsafe_timing: bool,
}

/// How a process checks its clock against the stores' clocks.
#[derive(Debug, Clone, Args, Default)]
pub struct ClockCheckArgs {
    /// How often to measure this process's offsets to the database's and the blob
    /// store's clocks; writing and cleaning stop while one may exceed clock-skew.
    /// [default: 10s]
    #[arg(long, env = "PROFILESTORE_CLOCK_CHECK_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub clock_check_interval: Option<Duration>,
}

/// How `clean` and `audit` show their progress on standard error: a bar at a terminal,
/// else a log line with the same counters every interval.
#[derive(Debug, Clone, Args, Default)]
pub struct ProgressArgs {
    /// How often to log a progress line when standard error is not a terminal (and
    /// always for `clean --every`). [default: 10s]
    #[arg(long, env = "PROFILESTORE_PROGRESS_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
    pub progress_interval: Option<Duration>,
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

    /// Address to listen on; port 0 picks a free port (printed at start). [default: 127.0.0.1:8080]
    #[arg(long, env = "PROFILESTORE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Largest image accepted, e.g. `10MiB`. [default: 10MiB]
    #[arg(long, env = "PROFILESTORE_MAX_IMAGE_SIZE", value_parser = parse_size, value_name = "SIZE")]
    pub max_image_size: Option<u64>,

    /// Most pixels (width × height) an image may have. [default: 40000000]
    #[arg(long, env = "PROFILESTORE_MAX_IMAGE_PIXELS", value_name = "PIXELS")]
    pub max_image_pixels: Option<u64>,

    /// Address of the admin listener (`/metrics`), kept apart from the API so a public
    /// listener exposes only the API; `off` serves none. Port 0 picks a free port
    /// (printed at start). [default: 127.0.0.1:0]
    #[arg(long, env = "PROFILESTORE_ADMIN_LISTEN", value_parser = parse_listen, value_name = "ADDR|off")]
    pub admin_listen: Option<Listen>,
}

/// Where an optional listener listens: an address, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Listen {
    /// Listen on this address.
    On(SocketAddr),
    /// Do not listen.
    Off,
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(s: String) -> Result<Listen, String> {
        parse_listen(&s)
    }
}

/// Parses `off` or a socket address such as `127.0.0.1:9464`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse().map(Listen::On).map_err(|_| format!("{s:?} is not an address such as 127.0.0.1:9464, nor `off`"))
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

    /// Run as a daemon: a cycle every DURATION (e.g. `10m`) until SIGINT/SIGTERM.
    #[arg(long, env = "PROFILESTORE_EVERY", value_parser = parse_duration, value_name = "DURATION")]
    pub every: Option<Duration>,

    /// Clean incrementally: each cycle lists only images minted since the horizon the
    /// last completed cycles stored (plus the queue of replaced and deleted images),
    /// and a full sweep of the whole store runs once every DURATION (e.g. `1d`) as the
    /// safety net. [default: every cycle is a full sweep]
    #[arg(long, env = "PROFILESTORE_FULL_EVERY", value_parser = parse_duration, value_name = "DURATION")]
    pub full_every: Option<Duration>,

    /// List what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Delete even when the database holds no records at all (otherwise such a cycle
    /// deletes nothing: a wiped database would make every image look unreferenced).
    #[arg(long, env = "PROFILESTORE_ALLOW_EMPTY_DATABASE")]
    pub allow_empty_database: bool,

    /// Stop a cycle that would delete more than this share (0..=1) of the old blobs.
    #[arg(long, env = "PROFILESTORE_MAX_UNREFERENCED_FRACTION", value_parser = parse_fraction, value_name = "FRACTION")]
    pub max_unreferenced_fraction: Option<f64>,

    /// Delete at most this many keys per unit of time, on average (e.g. `500/s`,
    /// `30000/min`, `1000/10s`; a bare number is per second). [default: no limit]
    #[arg(long, env = "PROFILESTORE_DELETE_RATE", value_parser = parse_delete_rate, value_name = "RATE")]
    pub delete_rate: Option<DeleteRate>,

    /// Keys per delete request, 1 to 1000. [default: 1000]
    #[arg(long, env = "PROFILESTORE_DELETE_BATCH_SIZE", value_name = "N")]
    pub delete_batch_size: Option<usize>,

    /// Print the cycle summary as JSON.
    #[arg(long)]
    pub json: bool,

    /// With `--every`: serve the daemon's `/metrics` on this address (e.g.
    /// `127.0.0.1:9465`). [default: off]
    #[arg(long, env = "PROFILESTORE_METRICS_LISTEN", value_parser = parse_listen, value_name = "ADDR|off")]
    pub metrics_listen: Option<Listen>,
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

/// Parses a human duration such as `2h`, `10m`, `1h 5m` or `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e} (expected a duration such as 2h, 10m, 1h 30m or 250ms)"))
}

/// Parses a human size such as `10MiB`, `512KiB` or `1000000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{e} (expected a size such as 10MiB, 512KiB or 1000000)"))
}

/// Parses a whole number of at least 1.
pub fn parse_positive(s: &str) -> Result<NonZeroUsize, String> {
    s.trim().parse().map_err(|_| "expected a whole number of at least 1".to_owned())
}

/// Parses a delete rate such as `500/s`, `30000/min` or `500` (per second).
pub fn parse_delete_rate(s: &str) -> Result<DeleteRate, String> {
    s.parse().map_err(|e: profilestore_cleaner::pacing::RateError| e.to_string())
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
    use super::*;

    #[test]
    fn durations_and_sizes_parse_from_human_strings() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h 5m"), Ok(Duration::from_secs(3900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("soon").unwrap_err().contains("expected a duration"));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
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
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
