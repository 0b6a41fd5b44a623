//! What a benchmark run measures, and where.

use std::path::PathBuf;
use std::time::Duration;

use profilestore_stores::S3Options;

use crate::error::BenchError;

/// One measurement the suite can take. Every latency scenario pairs a product with
/// its floor, run at each client count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `ProfileService::write` against a blob put + record commit issued directly.
    WriteLibrary,
    /// `PUT /v1/profiles/{user}` through a real server against the library write.
    WriteHttp,
    /// `ProfileService::read` against a record read + blob get issued directly.
    ReadLibrary,
    /// `GET /v1/profiles/{user}` (JSON, image in base64) against `GET /v1/images/{id}`
    /// of the same images.
    ReadHttp,
    /// Memory per in-flight read: a server in a child process holding slow clients'
    /// profile GETs of a large image, against the same number of image GETs.
    ReadMemory,
    /// One cleaner cycle over N blobs (10 % orphans) against listing every blob plus
    /// one scan of the records' image ids; each side in a child process, for its peak
    /// memory.
    Sweep,
    /// At N blobs with 1 % changed since the last cycle, an incremental cleaner cycle
    /// against a full sweep: keys touched and time (real cycles, no delete delay).
    Incremental,
    /// On an S3 blob store: listing N keys at the store's list concurrency (default
    /// 8) against one sequential listing of the same keys, keys per second.
    S3Listing,
    /// The model checker at the case study's size and one size larger: states,
    /// states/s, peak memory (each in a child process).
    Model,
}

impl Scenario {
    /// Every scenario, in the order a run takes them.
    pub const ALL: [Scenario; 9] = [
        Scenario::WriteLibrary,
        Scenario::WriteHttp,
        Scenario::ReadLibrary,
        Scenario::ReadHttp,
        Scenario::ReadMemory,
        Scenario::Sweep,
        Scenario::Incremental,
        Scenario::S3Listing,
        Scenario::Model,
    ];

    /// The scenario's name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::WriteLibrary => "write-library",
            Scenario::WriteHttp => "write-http",
            Scenario::ReadLibrary => "read-library",
            Scenario::ReadHttp => "read-http",
            Scenario::ReadMemory => "read-memory",
            Scenario::Sweep => "sweep",
            Scenario::Incremental => "incremental",
            Scenario::S3Listing => "s3-listing",
            Scenario::Model => "model",
        }
    }

    /// The name of the floor the scenario's product is measured against.
    pub fn floor_name(self) -> &'static str {
        match self {
            Scenario::WriteLibrary => "write-floor",
            Scenario::WriteHttp => "write-library",
            Scenario::ReadLibrary => "read-floor",
            Scenario::ReadHttp => "image-get-http",
            Scenario::ReadMemory => "image-get-held",
            Scenario::Sweep => "list+scan",
            Scenario::Incremental => "full sweep",
            Scenario::S3Listing => "sequential listing",
            Scenario::Model => "-",
        }
    }

    /// Whether it is a latency scenario, run at each client count.
    pub fn is_load(self) -> bool {
        matches!(self, Scenario::WriteLibrary | Scenario::WriteHttp | Scenario::ReadLibrary | Scenario::ReadHttp)
    }
}

impl std::str::FromStr for Scenario {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|c| c.name() == s.trim()).ok_or_else(|| {
            let names: Vec<_> = Scenario::ALL.iter().map(|c| c.name()).collect();
            BenchError::Config(format!("unknown scenario {s:?}: expected one of {}", names.join(", ")))
        })
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model-checker configuration the `model` scenario explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelSize {
    /// The case study's configuration with two operations instead of three: a second
    /// or less, for the test suite's run of the harness.
    Small,
    /// The case study's configuration.
    CaseStudy,
    /// The case study's with the clock bounded at 4 h instead of 3 h.
    Larger,
}

impl ModelSize {
    /// The name in the results.
    pub fn name(self) -> &'static str {
        match self {
            ModelSize::Small => "case study, ≤ 2 ops",
            ModelSize::CaseStudy => "case study",
            ModelSize::Larger => "case study, ≤ 4 h",
        }
    }
}

/// Where the latency scenarios' stores are.
#[derive(Debug, Clone, Default)]
pub struct StoreTarget {
    /// The metadata database URL; `None` for a fresh SQLite file in a temporary
    /// directory (one per scenario and client count, removed after it).
    pub database: Option<String>,
    /// The blob store URL; `None` for a fresh directory beside the SQLite file.
    pub blobs: Option<String>,
    /// How to reach S3, for an `s3://` blob URL.
    pub s3: S3Options,
}

/// Everything a benchmark run needs to know.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The scenarios to run, in [`Scenario::ALL`]'s order whatever the order given.
    pub scenarios: Vec<Scenario>,
    /// Timed runs of each side of each pair (at least 1; the issue asks for 5).
    pub runs: usize,
    /// How long one timed run lasts.
    pub run_time: Duration,
    /// The concurrent client counts of the latency scenarios.
    pub clients: Vec<usize>,
    /// How many users the latency scenarios spread their operations over.
    pub users: usize,
    /// The size of the uploaded image (a real PNG of exactly this size, all of it image).
    pub image_size: u64,
    /// Where the latency scenarios' stores are.
    pub stores: StoreTarget,
    /// The image size of the read-memory scenario: well above the kernel's socket
    /// buffers, or the answers finish into them.
    pub in_flight_image_size: u64,
    /// How many reads the read-memory scenario holds open at once.
    pub in_flight_reads: usize,
    /// How many blobs each sweep size holds (the sweep's and the incremental
    /// scenario's).
    pub sweep_sizes: Vec<u64>,
    /// The model-checker configurations to explore.
    pub model_sizes: Vec<ModelSize>,
    /// The `profilestore` executable to run the sweep's and the model checker's sides
    /// in (`bench --child`), for their own peak memory; `None` runs them in this
    /// process, where the peak is the process's so far and says little.
    pub child_exe: Option<PathBuf>,
    /// Where results.json and the plot are written.
    pub out_dir: PathBuf,
}

impl Default for BenchConfig {
    /// The settings: every scenario, 5 runs of 10 s at 1, 8 and 64 clients,
    /// 1,000 users, a 20 KiB image, fresh embedded stores, a 10,000-blob sweep, the
    /// case study's model and one size larger, results under `target/bench`.
    fn default() -> Self {
        BenchConfig {
            scenarios: Scenario::ALL.to_vec(),
            runs: 5,
            run_time: Duration::from_secs(10),
            clients: vec![1, 8, 64],
            users: 1000,
            image_size: 20 * 1024,
            in_flight_image_size: 16 * 1024 * 1024,
            in_flight_reads: 16,
            stores: StoreTarget::default(),
            sweep_sizes: vec![10_000],
            model_sizes: vec![ModelSize::CaseStudy, ModelSize::Larger],
            child_exe: None,
            out_dir: PathBuf::from("target/bench"),
        }
    }
}

impl BenchConfig {
    /// `Ok` when the run can measure something.
    pub fn validate(&self) -> Result<(), BenchError> {
        let fail = |what: &str| Err(BenchError::Config(what.to_owned()));
        if self.scenarios.is_empty() {
            return fail("no scenario selected");
        }
        if self.runs == 0 {
            return fail("runs must be at least 1");
        }
        if self.run_time.is_zero() {
            return fail("run-time must be longer than zero");
        }
        if self.clients.is_empty() || self.clients.contains(&0) {
            return fail("clients must be one or more counts, each at least 1");
        }
        if self.in_flight_reads == 0 {
            return fail("in-flight-reads must be at least 1");
        }
        if self.users == 0 {
            return fail("users must be at least 1");
        }
        if self.sweep_sizes.contains(&0) {
            return fail("every sweep size must be at least 1 blob");
        }
        Ok(())
    }
}
