//! Shared by the tests that drive real `profilestore` processes.
#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::disallowed_methods)] // real processes, real time

mod fake_clock;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A PNG every test can upload.
pub const PNG: &[u8] = include_bytes!("../../../../examples/avatar.png");

/// The `profilestore` binary with the developer's own settings removed.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_profilestore"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PROFILESTORE_") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// A PNG whose pixels spell `tag`: unique bytes the server stores as sent (it holds
/// no metadata to strip), so a read can be matched with the write that sent it.
pub fn tagged_png(tag: &str) -> Vec<u8> {
    let mut pixels = tag.as_bytes().to_vec();
    pixels.resize(pixels.len().div_ceil(3).max(1) * 3, 0);
    let width = u32::try_from(pixels.len() / 3).expect("a short tag");
    let image = image::RgbImage::from_raw(width, 1, pixels).expect("three bytes per pixel");
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).expect("a PNG encodes");
    png.into_inner()
}

/// A running `profilestore serve` and the base URLs it printed.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// The admin listener's base URL (`/metrics`), unless it was turned off.
    pub admin: Option<String>,
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0` with `args` and waits for its address.
    pub fn start(args: &[String]) -> Server {
        Server::try_start(args, Stdio::inherit()).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Like [`Server::start`], with the server's standard error going to `stderr`;
    /// a server that exits before printing its address is an error, not a panic.
    pub fn try_start(args: &[String], stderr: Stdio) -> Result<Server, String> {
        Server::try_start_logging(args, stderr, "warn")
    }

    /// Like [`Server::try_start`], logging at `level` (a `RUST_LOG` filter).
    pub fn try_start_logging(args: &[String], stderr: Stdio, level: &str) -> Result<Server, String> {
        let mut child = bin()
            .env("RUST_LOG", level)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("serve starts");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).expect("serve prints its address");
        // The admin listener's address follows in the same write, unless it is off.
        let mut admin = None;
        if !args.windows(2).any(|w| w[0] == "--admin-listen" && w[1] == "off") {
            let mut second = String::new();
            stdout.read_line(&mut second).expect("serve prints its admin address");
            admin = second.trim().strip_prefix("profilestore admin on ").map(str::to_owned);
        }
        match line.trim().strip_prefix("profilestore listening on ") {
            Some(base) => Ok(Server { base: base.to_owned(), admin, child }),
            None => {
                child.kill().ok();
                let status = child.wait().ok();
                Err(format!("serve did not start ({status:?}): first line {line:?}"))
            }
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, "serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Sends SIGTERM to `child` (a `what` process) and waits up to 10 s for it to exit.
fn terminate(child: &mut Child, what: &str) -> std::process::ExitStatus {
    signal(child, "TERM");
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    panic!("{what} did not stop on SIGTERM");
}

/// A child process killed and reaped when dropped (a panicking test leaves none behind).
pub struct Daemon(pub Child);

impl Daemon {
    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        terminate(&mut self.0, "daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Where a process's standard error goes: appended to `log` (restarts add to it).
pub fn log_to(log: &Path) -> Stdio {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file opens");
    Stdio::from(file)
}

/// Starts a `clean --every <every>` daemon on `stores`, logging JSON at level info to `log`.
pub fn start_cleaner(stores: &[String], every: &str, log: &Path) -> Daemon {
    let child = bin()
        .args(["clean", "--every", every, "--log-format", "json"])
        .args(stores)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_to(log))
        .spawn()
        .expect("clean starts");
    Daemon(child)
}

/// The JSON lines of a log written with `--log-format json`.
pub fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Sums the `deleted` counters of the cycle lines a cleaner logged.
pub fn deleted_by(log: &Path) -> u64 {
    log_lines(log)
        .iter()
        .filter(|j| j["message"] == "cleaner cycle finished")
        .map(|j| j["deleted"].as_u64().unwrap_or(0))
        .sum()
}

/// Waits for `done` to hold, checking every 20 ms, for at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "gave up after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (e.g. "TERM", "KILL") to `child`.
pub fn signal(child: &Child, signal: &str) {
    Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill runs");
}

pub use profilestore_testkit::services::{service_env, services_required};

#[allow(unused_imports)] // each test binary uses a different part
pub use fake_clock::FakeClock;

/// How far ahead of this process's clock (in seconds) the first JSON log line of
/// `log` was stamped: how a test sees that a fake clock reached the process.
pub fn log_clock_ahead_secs(log: &str) -> Option<f64> {
    let line: serde_json::Value = log.lines().find_map(|l| serde_json::from_str(l).ok())?;
    let stamped = humantime::parse_rfc3339_weak(line["timestamp"].as_str()?).ok()?;
    let now = std::time::SystemTime::now();
    Some(match stamped.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(behind) => -behind.duration().as_secs_f64(),
    })
}

/// The S3 settings of the test server, as `serve`/`clean` flags.
pub struct S3Env {
    pub endpoint: String,
    pub bucket: String,
    pub key: String,
    pub secret: String,
}

impl S3Env {
    /// The test S3 server from the environment, if any.
    pub fn from_env() -> Option<S3Env> {
        Some(S3Env {
            endpoint: service_env("PROFILESTORE_TEST_S3_ENDPOINT")?,
            bucket: service_env("PROFILESTORE_TEST_S3_BUCKET")?,
            key: service_env("PROFILESTORE_TEST_S3_ACCESS_KEY_ID")?,
            secret: service_env("PROFILESTORE_TEST_S3_SECRET_ACCESS_KEY")?,
        })
    }

    /// Store flags for a blob store under `prefix` of the test bucket.
    pub fn flags(&self, prefix: &str) -> Vec<String> {
        vec![
            "--blobs".into(),
            format!("s3://{}/{prefix}", self.bucket),
            "--s3-endpoint".into(),
            self.endpoint.clone(),
            "--s3-access-key-id".into(),
            self.key.clone(),
            "--s3-secret-access-key".into(),
            self.secret.clone(),
        ]
    }
}

/// Creates a fresh database next to the one `admin_url` names; returns its URL.
pub fn fresh_database(admin_url: &str, name: &str) -> String {
    let status = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql runs");
    assert!(status.success(), "could not create database {name}");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{name}")
}

/// Store flags for a fresh database on the test PostgreSQL server and a fresh prefix
/// of the test S3 bucket, both named after `name` and a unique suffix; `None` when
/// the test servers are not configured (see [`service_env`]).
pub fn postgres_and_s3(name: &str) -> Option<Vec<String>> {
    let admin = service_env("PROFILESTORE_TEST_POSTGRES_URL")?;
    let s3 = S3Env::from_env()?;
    let suffix = unique_suffix();
    let mut stores = vec!["--database".to_owned(), fresh_database(&admin, &format!("{name}_{suffix}"))];
    stores.extend(s3.flags(&format!("{name}-{suffix}")));
    Some(stores)
}

/// A short random lowercase name part, unique per test run.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}{:08x}", std::process::id(), nanos)
}

/// Runs `profilestore audit --json` with `args` and returns its exit code and report.
pub fn audit_json(args: &[String]) -> (Option<i32>, serde_json::Value) {
    try_audit_json(args).unwrap_or_else(|why| panic!("{why}"))
}

/// Like [`audit_json`], but an audit that prints no report (a store it could not
/// reach) is an error, not a panic.
pub fn try_audit_json(args: &[String]) -> Result<(Option<i32>, serde_json::Value), String> {
    let out = bin().arg("audit").arg("--json").args(args).output().unwrap();
    match serde_json::from_slice(&out.stdout) {
        Ok(report) => Ok((out.status.code(), report)),
        Err(e) => Err(format!("audit printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr))),
    }
}

/// The orphans (in flight and collectable) an audit report counts.
pub fn orphans(report: &serde_json::Value) -> u64 {
    report["orphans"]["in_flight"].as_u64().unwrap() + report["orphans"]["collectable"].as_u64().unwrap()
}

/// Audits every half second, while cleaners run, until no orphan is left or `limit`
/// has passed; returns the last audit.
pub async fn audit_until_no_orphans(args: &[String], limit: Duration) -> (Option<i32>, serde_json::Value) {
    let give_up = std::time::Instant::now() + limit;
    loop {
        let (code, report) = audit_json(args);
        if orphans(&report) == 0 || std::time::Instant::now() > give_up {
            return (code, report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `path` exists; a small wrapper so tests read plainly.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// A tiny deterministic generator shared by a test's tasks (variety, not quality).
pub struct Dice(std::sync::atomic::AtomicU64);

impl Dice {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Dice {
        Dice(std::sync::atomic::AtomicU64::new(seed))
    }

    /// A number below `n`.
    pub fn roll(&self, n: u64) -> u64 {
        let mut x = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) % n
    }
}

/// Traffic that checks every answer: writes with unique (metadata, image) pairs and
/// reads that must return a pair some write submitted.
pub mod traffic {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, RwLock};
    use std::time::{Duration, Instant};

    use base64::Engine;

    use super::{Dice, tagged_png};

    /// What the clients saw.
    #[derive(Debug, Default)]
    pub struct Tally {
        pub writes_ok: u64,
        pub writes_failed: HashMap<String, u64>,
        pub reads_found: u64,
        pub reads_missing: u64,
        pub reads_failed: HashMap<String, u64>,
        pub problems: Vec<String>,
    }

    impl Tally {
        fn failed(map: &mut HashMap<String, u64>, why: String) {
            *map.entry(why).or_default() += 1;
        }
    }

    /// (user, seq) → the image bytes that write sent.
    type Submitted = HashMap<(String, u64), Vec<u8>>;

    /// Shared state of one traffic run.
    #[derive(Clone)]
    pub struct Traffic {
        /// Base URLs of the servers currently up; clients pick among them.
        pub servers: Arc<RwLock<Vec<String>>>,
        /// (user, seq) → image bytes of every write ever sent.
        submitted: Arc<Mutex<Submitted>>,
        /// user → highest seq a server acknowledged with 200.
        acked: Arc<Mutex<HashMap<String, u64>>>,
        pub tally: Arc<Mutex<Tally>>,
        http: reqwest::Client,
        dice: Arc<Dice>,
    }

    impl Traffic {
        /// Traffic against `servers`.
        pub fn new(servers: Vec<String>) -> Traffic {
            Traffic {
                servers: Arc::new(RwLock::new(servers)),
                submitted: Arc::default(),
                acked: Arc::default(),
                tally: Arc::default(),
                http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
                dice: Arc::new(Dice::new(42)),
            }
        }

        fn pick_server(&self) -> Option<String> {
            let servers = self.servers.read().unwrap();
            (!servers.is_empty()).then(|| servers[self.dice.roll(servers.len() as u64) as usize].clone())
        }

        /// One client owning `users` (so each user's writes are sequential), until `until`.
        pub async fn client(self, users: Vec<String>, until: Instant) {
            let mut seq = 0u64;
            while Instant::now() < until {
                let user = &users[self.dice.roll(users.len() as u64) as usize];
                let Some(base) = self.pick_server() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if self.dice.roll(10) < 4 {
                    seq += 1;
                    self.write(&base, user, seq).await;
                } else {
                    self.read(&base, user).await;
                }
            }
        }

        async fn write(&self, base: &str, user: &str, seq: u64) {
            let image = tagged_png(&format!("{user}/{seq}"));
            self.submitted.lock().unwrap().insert((user.to_owned(), seq), image.clone());
            let form = reqwest::multipart::Form::new()
                .text("metadata", format!(r#"{{"seq":{seq}}}"#))
                .part("image", reqwest::multipart::Part::bytes(image));
            let result = self.http.put(format!("{base}/v1/profiles/{user}")).multipart(form).send().await;
            let mut tally = self.tally.lock().unwrap();
            match result {
                Ok(r) if r.status() == 200 => {
                    tally.writes_ok += 1;
                    let mut acked = self.acked.lock().unwrap();
                    let last = acked.entry(user.to_owned()).or_default();
                    *last = (*last).max(seq);
                }
                Ok(r) => Tally::failed(&mut tally.writes_failed, format!("status {}", r.status().as_u16())),
                Err(_) => Tally::failed(&mut tally.writes_failed, "connection".into()),
            }
        }

        async fn read(&self, base: &str, user: &str) {
            let result = self.http.get(format!("{base}/v1/profiles/{user}")).send().await;
            let response = match result {
                Ok(r) => r,
                Err(_) => return Tally::failed(&mut self.tally.lock().unwrap().reads_failed, "connection".into()),
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let mut tally = self.tally.lock().unwrap();
            match status {
                200 => {
                    tally.reads_found += 1;
                    if let Some(problem) = self.check_pair(user, &body) {
                        tally.problems.push(problem);
                    }
                }
                404 => tally.reads_missing += 1,
                500 => tally.problems.push(format!("500 on read of {user}: {body}")),
                other => Tally::failed(&mut tally.reads_failed, format!("status {other}")),
            }
        }

        /// `None` when `body` is a pair one write of `user` submitted.
        fn check_pair(&self, user: &str, body: &str) -> Option<String> {
            let json: serde_json::Value = match serde_json::from_str(body) {
                Ok(j) => j,
                Err(e) => return Some(format!("unparsable profile of {user}: {e}")),
            };
            let seq = json["metadata"]["seq"].as_u64()?;
            let image = base64::engine::general_purpose::STANDARD.decode(json["image"].as_str()?).ok()?;
            match self.submitted.lock().unwrap().get(&(user.to_owned(), seq)) {
                Some(sent) if *sent == image => None,
                Some(_) => Some(format!("{user}: metadata of write {seq} with another write's image")),
                None => Some(format!("{user}: write {seq} was never submitted")),
            }
        }

        /// Checks, through `base`, that each user's profile is one it submitted and no
        /// older than its last acknowledged write; returns the problems.
        pub async fn check_final(&self, base: &str) -> Vec<String> {
            let acked = self.acked.lock().unwrap().clone();
            let mut problems = Vec::new();
            for (user, last) in acked {
                let response = self.http.get(format!("{base}/v1/profiles/{user}")).send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                if status != 200 {
                    problems.push(format!("{user}: final read {status} {body}"));
                    continue;
                }
                if let Some(p) = self.check_pair(&user, &body) {
                    problems.push(p);
                }
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                let seq = json["metadata"]["seq"].as_u64().unwrap_or(0);
                if seq < last {
                    problems.push(format!("{user}: acknowledged write {last} lost, profile is write {seq}"));
                }
            }
            problems
        }
    }
}
