//! Flags of the commands that measure and check the design rather than run it:
//! `bench`, `check-model` and `simulate`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::*;

/// Flags of `bench`. The stores are given by flag only (no environment variable or
/// config file): a benchmark writes thousands of profiles, and must never land in a
/// deployment's stores by accident.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Scenarios, repeatable or comma-separated: write-library, write-http,
    /// read-library, read-http, read-memory, sweep, incremental, s3-listing (needs an
    /// s3:// --blobs), model. [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse_scenario, value_name = "NAME")]
    pub scenario: Vec<profilestore_bench::Scenario>,
    /// Timed runs of each side (floor and product alternate).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Length of one timed run.
    #[arg(long, value_parser = parse_duration, default_value = "10s", value_name = "DURATION")]
    pub run_time: Duration,
    /// Concurrent clients of the write and read scenarios, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64", value_name = "N,..")]
    pub clients: Vec<usize>,
    /// Users the operations are spread over.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Size of the uploaded image (a real PNG of exactly this size, all of it image).
    #[arg(long, value_parser = parse_size, default_value = "20KiB", value_name = "SIZE")]
    pub image_size: bytesize::ByteSize,
    /// Image size of the read-memory scenario: well above the kernel's socket buffers
    /// (a few MiB on loopback), or the held answers finish into them.
    #[arg(long, value_parser = parse_size, default_value = "16MiB", value_name = "SIZE")]
    pub in_flight_image_size: bytesize::ByteSize,
    /// Reads the read-memory scenario holds open at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub in_flight_reads: usize,
    /// Metadata database URL for the write and read scenarios. [default: a fresh
    /// SQLite file in a temporary directory]
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Blob store URL for the write and read scenarios; an `s3://` URL also moves the
    /// sweep's blobs to a fresh prefix under it. [default: a fresh temporary directory]
    #[arg(long, value_name = "URL")]
    pub blobs: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Blobs in the store of the sweep and of the incremental scenario,
    /// comma-separated for several sizes.
    #[arg(long, value_delimiter = ',', default_value = "10000", value_name = "N,..")]
    pub blobs_count: Vec<u64>,
    /// Model-checker configurations, comma-separated: small, case-study, larger.
    #[arg(long, value_delimiter = ',', default_value = "case-study,larger", value_enum, value_name = "SIZE,..")]
    pub model_size: Vec<ModelSizeArg>,
    /// Directory for results.json and latest.svg.
    #[arg(long, default_value = "target/bench", value_name = "DIR")]
    pub out: PathBuf,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one task read from standard input (a sweep side or a model
    /// exploration) and print its outcome, for the parent's memory measurement.
    #[arg(long, hide = true)]
    pub child: bool,
}

/// A model-checker configuration `bench` explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelSizeArg {
    /// The case study with at most 2 operations (about a second).
    Small,
    /// The case study's configuration.
    CaseStudy,
    /// The case study's with the clock bounded at 4 h.
    Larger,
}

impl From<ModelSizeArg> for profilestore_bench::ModelSize {
    fn from(a: ModelSizeArg) -> Self {
        match a {
            ModelSizeArg::Small => profilestore_bench::ModelSize::Small,
            ModelSizeArg::CaseStudy => profilestore_bench::ModelSize::CaseStudy,
            ModelSizeArg::Larger => profilestore_bench::ModelSize::Larger,
        }
    }
}

/// Parses a `bench` scenario name.
fn parse_scenario(s: &str) -> Result<profilestore_bench::Scenario, String> {
    s.parse().map_err(|e: profilestore_bench::BenchError| e.to_string())
}

/// Flags of `check-model`. Defaults are the case study's configuration.
#[derive(Debug, Args)]
pub struct CheckModelArgs {
    /// Servers (1 to 4).
    #[arg(long, default_value_t = 2)]
    pub servers: usize,
    /// Storage cleaners (0 to 4).
    #[arg(long, default_value_t = 2)]
    pub cleaners: usize,
    /// Users.
    #[arg(long, default_value_t = 1)]
    pub users: u8,
    /// Distinct metadata values a write may submit.
    #[arg(long, default_value_t = 2)]
    pub metadata_values: u8,
    /// Distinct images a write may submit.
    #[arg(long, default_value_t = 2)]
    pub images: u8,
    /// Client operations (writes and reads) in all.
    #[arg(long, default_value_t = 3)]
    pub max_ops: u8,
    /// Fresh image ids in all: each write takes one, and no write starts once they
    /// are used up. [default: --max-ops, which bounds nothing more]
    #[arg(long)]
    pub image_ids: Option<u8>,
    /// Hours the clock may advance.
    #[arg(long, default_value_t = 3)]
    pub max_hours: u8,
    /// Which write path to explore.
    #[arg(long, value_enum, default_value_t = ModelVariant::Working)]
    pub variant: ModelVariant,
    /// The database's commit protocol: `atomic` (check and commit in one step, as in
    /// the case study), `sqlite-unlocked` (SQLite before the fix: the cleaner's query
    /// ignores an open write), `sqlite-locked` (the fix: the query takes the write lock) or
    /// `postgres-bounded` (commit-time check, commit bounded by the deadline).
    #[arg(long, default_value = "sqlite-locked", value_parser = ["atomic", "sqlite-unlocked", "sqlite-locked", "postgres-bounded"])]
    pub store_protocol: String,
    /// Store operations never fail (by default any step may fail).
    #[arg(long)]
    pub no_failures: bool,
    /// Also check "eventually no orphans" from every explored state.
    #[arg(long)]
    pub liveness: bool,
    /// How the model's cleaners clean: `full` (every cycle lists everything) or
    /// `incremental` (the superseded-image queue, and listings since the stored
    /// horizon or of everything, chosen freely each cycle).
    #[arg(long, default_value = "full", value_parser = ["full", "incremental"])]
    pub cleaning: String,
    /// With `--cleaning incremental`, a flawed variant to show what the checker
    /// catches: `queue-without-delay`, `delay-from-statement`,
    /// `horizon-without-age-filter` or `horizon-without-lag`.
    #[arg(long, value_parser = ["queue-without-delay", "delay-from-statement", "horizon-without-age-filter", "horizon-without-lag"])]
    pub incremental_flaw: Option<String>,
    /// Servers also delete profiles (a deadline-guarded record delete).
    #[arg(long)]
    pub deletes: bool,
    /// Servers also update metadata keeping the image: `compare-and-set` (the
    /// production update) or `blind` (the flaw: it re-attaches the image it read
    /// whatever the record is now).
    #[arg(long, value_parser = ["compare-and-set", "blind"])]
    pub patches: Option<String>,
    /// Threads expanding each level of the search; the states, the verdict and the
    /// trace are the same for every count. [default: the machine's cores]
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// The timings to explore (whole hours).
    #[command(flatten)]
    pub timings: CheckedTimingArgs,
}

/// The timings a checker explores, which may break the safety rules on request.
/// Defaults are the case study's.
#[derive(Debug, Args)]
pub struct CheckedTimingArgs {
    /// A request is abandoned once this old. [default: 1h]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<Duration>,
    /// The cleaner's age filter. [default: 2h]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_blob_age: Option<Duration>,
    /// The cleaner's delay between "unreferenced" and "delete". [default: 1h]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub delete_delay: Option<Duration>,
    /// Check timings that break a safety rule (to watch the checker find the flaw).
    #[arg(long)]
    pub allow_unsafe_timing: bool,
}

/// The write path `check-model` explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelVariant {
    /// The working design: fresh image id, blob first, then the record.
    Working,
    /// Flaw 1: the record first, then the blob, both keyed by the user.
    RecordFirst,
    /// Flaw 2: the blob first, keyed by the user (overwritten), then the record.
    BlobKeyedByUser,
}

/// Flags of `simulate`. Defaults: the case study's timings, every fault on.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// How many seeds to run (seed, seed + 1, …).
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// The first seed. [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start no new seed after this much wall-clock time.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub time_budget: Option<Duration>,
    /// Seeds run in parallel. [default: the machine's cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Servers running the profile service.
    #[arg(long, default_value_t = 3)]
    pub servers: usize,
    /// Cleaners running `clean --every`.
    #[arg(long, default_value_t = 2)]
    pub cleaners: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Users the clients act for.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
    /// Client operations per seed (45% writes, 45% reads, 10% deletes).
    #[arg(long, default_value_t = 2000)]
    pub ops: usize,
    /// The timings to simulate.
    #[command(flatten)]
    pub timings: CheckedTimingArgs,
    /// How far apart the simulated clocks may be. [default: 5m]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub clock_skew: Option<Duration>,
    /// Inject no faults (only millisecond latencies that shuffle the schedule).
    #[arg(long)]
    pub no_faults: bool,
    /// The simulated database's commit protocol: `sqlite-locked` (the cleaner's query
    /// waits for a checked write's commit), `postgres-bounded` (a commit lands only
    /// before its deadline) or `unlocked` (SQLite before the fix: flawed).
    #[arg(long, default_value = "sqlite-locked", value_parser = ["sqlite-locked", "postgres-bounded", "unlocked"])]
    pub store_protocol: String,
    /// Let one process's clock (the seed picks which, and which way) go this far
    /// beyond the skew bound: a fault the timing rules do not cover.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub clock_beyond_bound: Option<Duration>,
    /// Every server and cleaner runs the production clock check (measuring its
    /// offsets to the stores' clocks, refusing to write or clean beyond the bound).
    #[arg(long)]
    pub clock_check: bool,
    /// How long cleaners run after writes stop before orphans count. [default: long
    /// enough by the timings]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub drain: Option<Duration>,
    /// How the cleaners list: `full` (every cycle lists everything) or `incremental`
    /// (only images minted since the stored horizon, a full sweep every
    /// `--full-every`); the superseded-image queue is reclaimed in both.
    #[arg(long, default_value = "full", value_parser = ["full", "incremental"])]
    pub sweep: String,
    /// With `--sweep incremental`: how often a full sweep runs. [default: 3h]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub full_every: Option<Duration>,
    /// Flawed on purpose: the queue's delete delay starts at the write's statement
    /// time instead of when a cleaner first sees the entry.
    #[arg(long)]
    pub queue_delay_from_statement: bool,
    /// Clients also send metadata-only updates (`PATCH`): 35 % writes, 10 % updates.
    #[arg(long)]
    pub patches: bool,
    /// Flawed on purpose: the simulated database ignores a commit's precondition, so
    /// an update (`--patches`) commits without its compare-and-set.
    #[arg(long)]
    pub ignore_preconditions: bool,
}
