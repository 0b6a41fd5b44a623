//! Everything one run measured, as written to `results.json`.

use std::path::{Path, PathBuf};

use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::goals::Goal;
use crate::incremental::IncrementalResult;
use crate::listing::ListingResult;
use crate::model::ModelResult;
use crate::read_memory::ReadMemoryResult;
use crate::scenarios::PairResult;
use crate::sweep::SweepResult;

/// The machine a run came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU's model name, from `/proc/cpuinfo` where there is one.
    pub cpu: String,
    /// The operating system.
    pub os: String,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            os: std::env::consts::OS.to_owned(),
        }
    }
}

/// The settings a run used, as the results record them (URLs redacted).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Timed runs of each side.
    pub runs: usize,
    /// Seconds per timed run.
    pub run_time_s: f64,
    /// Client counts.
    pub clients: Vec<usize>,
    /// Users the operations are spread over.
    pub users: usize,
    /// Bytes per uploaded image.
    pub image_size: u64,
    /// The metadata store of the latency scenarios.
    pub database: String,
    /// The blob store of the latency scenarios.
    pub blobs: String,
    /// Blobs per sweep size.
    pub sweep_sizes: Vec<u64>,
}

impl Settings {
    /// The settings of `config`.
    pub fn of(config: &BenchConfig) -> Settings {
        let redacted = |url: &Option<String>, default: &str| {
            url.as_deref().map_or_else(|| default.to_owned(), profilestore_stores::redact_url)
        };
        Settings {
            runs: config.runs,
            run_time_s: config.run_time.as_secs_f64(),
            clients: config.clients.clone(),
            users: config.users,
            image_size: config.image_size,
            database: redacted(&config.stores.database, "sqlite (fresh, temporary)"),
            blobs: redacted(&config.stores.blobs, "file (fresh, temporary)"),
            sweep_sizes: config.sweep_sizes.clone(),
        }
    }
}

/// One run's results.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// The latency scenarios, one entry per scenario and client count.
    pub pairs: Vec<PairResult>,
    /// The cleaner sweeps, one per size.
    pub sweeps: Vec<SweepResult>,
    /// Incremental cycles against full sweeps, one per size.
    #[serde(default)]
    pub incremental: Vec<IncrementalResult>,
    /// The S3 listing, parallel against sequential, one per size.
    #[serde(default)]
    pub listings: Vec<ListingResult>,
    /// Memory per in-flight read, when measured.
    #[serde(default)]
    pub read_memory: Option<ReadMemoryResult>,
    /// The model checker, one per configuration.
    pub model: Vec<ModelResult>,
    /// The goals the measured pairs allow judging.
    pub goals: Vec<Goal>,
    /// Scenarios asked for that this run could not measure, and why.
    pub not_yet_measured: Vec<String>,
}

impl Results {
    /// Writes `results.json` and `latest.svg` into `dir` (created if missing) and
    /// returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), BenchError> {
        std::fs::create_dir_all(dir).map_err(BenchError::io(format!("cannot create {}", dir.display())))?;
        let json_path = dir.join("results.json");
        let json = serde_json::to_string_pretty(self).map_err(|e| BenchError::Config(e.to_string()))?;
        std::fs::write(&json_path, json).map_err(BenchError::io(format!("cannot write {}", json_path.display())))?;
        let svg_path = dir.join("latest.svg");
        std::fs::write(&svg_path, crate::svg::plot(self))
            .map_err(BenchError::io(format!("cannot write {}", svg_path.display())))?;
        Ok((json_path, svg_path))
    }
}
