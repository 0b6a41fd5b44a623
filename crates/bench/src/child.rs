//! Work run in a process of its own (`profilestore bench --child`), so that its peak
//! resident memory is its own and not whatever the benchmark process reached before.
//!
//! The parent writes one [`ChildTask`] as JSON to the child's standard input and
//! reads one [`ChildOutcome`] as JSON from the last line of its standard output; S3
//! credentials go in the child's environment, never on its command line.

use std::path::Path;
use std::process::Stdio;

use profilestore_stores::S3Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::ModelSize;
use crate::error::BenchError;

/// What a child process is asked to do.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum ChildTask {
    /// The sweep's floor: list every blob and scan every record's image id, once.
    SweepFloor(SweepStores),
    /// The sweep's product: one cleaner cycle.
    SweepCleaner(SweepStores),
    /// Serve the stores and hold reads open (see `read_memory`).
    HeldReads(crate::read_memory::HeldReads),
    /// One exploration of the model checker.
    Model {
        /// Which configuration.
        size: ModelSize,
        /// Threads to search on.
        threads: usize,
    },
}

/// The stores a sweep child opens (existing, already paired). S3 settings travel
/// in the child's environment, as `serve` takes them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SweepStores {
    /// The metadata database URL.
    pub database: String,
    /// The blob store URL.
    pub blobs: String,
}

/// `s3` as the environment variables `profilestore` reads them from: how a child
/// gets credentials without them on its command line, which other users can read.
fn s3_env(s3: &S3Options) -> Vec<(&'static str, String)> {
    let vars = [
        ("AWS_ENDPOINT_URL", &s3.endpoint),
        ("AWS_REGION", &s3.region),
        ("AWS_ACCESS_KEY_ID", &s3.access_key_id),
        ("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key),
        ("AWS_SESSION_TOKEN", &s3.session_token),
    ];
    let mut env: Vec<_> = vars.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))).collect();
    if s3.skip_signature {
        env.push(("PROFILESTORE_S3_SKIP_SIGNATURE", "true".into()));
    }
    env
}

/// What a child measured. Counts a task does not produce are zero.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChildOutcome {
    /// Wall time of the measured work alone (not process start or opening stores).
    pub seconds: f64,
    /// The process's peak resident memory (`VmHWM`) when the work was done.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak is of a process of its own (false: measured in the benchmark
    /// process, where it includes everything run before).
    pub own_process: bool,
    /// Objects the listing returned.
    pub listed: u64,
    /// Records the scan returned.
    pub records: u64,
    /// Images the cleaner deleted.
    pub deleted: u64,
    /// Distinct states the model checker explored.
    pub states: u64,
    /// Resident memory (`VmRSS`) of a server holding no read.
    #[serde(default)]
    pub rss_idle_bytes: Option<u64>,
    /// Resident memory of the same server holding its reads open.
    #[serde(default)]
    pub rss_held_bytes: Option<u64>,
}

/// Runs `task` in this process: what `profilestore bench --child` does, and the
/// fallback when no executable is configured.
pub async fn run_task(task: &ChildTask, s3: &S3Options) -> Result<ChildOutcome, BenchError> {
    match task {
        ChildTask::SweepFloor(stores) => crate::sweep::floor(stores, s3).await,
        ChildTask::SweepCleaner(stores) => crate::sweep::cleaner(stores, s3).await,
        ChildTask::HeldReads(task) => crate::read_memory::hold(task, s3).await,
        ChildTask::Model { size, threads } => crate::model::explore(*size, *threads).await,
    }
}

/// Runs `task` in a child `exe bench --child`, or in this process without `exe`.
pub async fn run(exe: Option<&Path>, task: &ChildTask, s3: &S3Options) -> Result<ChildOutcome, BenchError> {
    let Some(exe) = exe else { return run_task(task, s3).await };
    let mut child = tokio::process::Command::new(exe)
        .args(["bench", "--child"])
        .envs(s3_env(s3))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::io(format!("cannot start {}", exe.display())))?;
    let json = serde_json::to_vec(task).map_err(|e| BenchError::Child(e.to_string()))?;
    let mut stdin = child.stdin.take().ok_or_else(|| BenchError::Child("no stdin".into()))?;
    stdin.write_all(&json).await.map_err(BenchError::io("cannot write the child's task"))?;
    drop(stdin);
    let mut out = String::new();
    let mut stdout = child.stdout.take().ok_or_else(|| BenchError::Child("no stdout".into()))?;
    stdout.read_to_string(&mut out).await.map_err(BenchError::io("cannot read the child's answer"))?;
    let status = child.wait().await.map_err(BenchError::io("cannot wait for the child"))?;
    if !status.success() {
        return Err(BenchError::Child(format!("{task:?} exited with {status}")));
    }
    let last = out.lines().last().unwrap_or("");
    serde_json::from_str(last).map_err(|e| BenchError::Child(format!("unreadable answer {last:?}: {e}")))
}

/// The child's side: reads a task from standard input, runs it (with the S3
/// settings the child was started with), prints the outcome as one line of JSON.
pub async fn serve_stdin(s3: &S3Options) -> Result<(), BenchError> {
    let mut input = String::new();
    // One small read before any work starts: blocking the runtime here costs nothing.
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut input).map_err(BenchError::io("cannot read the task"))?;
    let task: ChildTask =
        serde_json::from_str(&input).map_err(|e| BenchError::Child(format!("unreadable task: {e}")))?;
    let mut outcome = run_task(&task, s3).await?;
    outcome.own_process = true;
    println!("{}", serde_json::to_string(&outcome).map_err(|e| BenchError::Child(e.to_string()))?);
    Ok(())
}

/// This process's peak resident memory so far (`VmHWM`), where Linux reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    profilestore_modelcheck::checker::peak_memory_bytes()
}
