//! Real processes frozen at random moments. Two `serve` processes and two
//! `clean --every` daemons share one pair of stores; clients write and read through
//! the servers and check every answer, while a chaos thread stops servers with
//! SIGSTOP for longer than `min_blob_age + clock_skew + delete_delay` (so a cleaner
//! can list, ask about and delete the blob of a write caught anywhere in its steps,
//! between its deadline check and its commit included), freezes a cleaner now and
//! then, and SIGKILLs a server or a cleaner and restarts it. Freezes of the two
//! servers overlap. At the end: no read answered an inconsistent pair or a 500, no
//! acknowledged write was lost, and `audit` finds no dangling reference, neither
//! during the run nor after it.
//!
//! Runs on the embedded default (a SQLite file and a blob directory shared through
//! `--data-dir`) and on PostgreSQL + S3 (skipped without the test servers, see
//! `scripts/test.sh`). `PROFILESTORE_FREEZE_TEST_SECS` sets how long the chaos lasts
//! per backend (default 210 s: about 40 whole server freezes).

// These tests drive real processes in real time; the freezes are the scenario.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::traffic::Traffic;
use support::{
    Daemon, Dice, Server, audit_until_no_orphans, bin, deleted_by, log_to, orphans, postgres_and_s3, signal,
    start_cleaner, try_audit_json, unique_suffix,
};

/// Compressed timings for the embedded stores: a blob can be deleted 5.5 s after its
/// write started.
const SQLITE_TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "2s", "--clock-skew", "500ms"];
/// Whole seconds for S3, whose servers keep whole-second timestamps: a clock skew
/// under 2 s could not be checked against them. A blob can be deleted 7 s after its
/// write started.
const S3_TIMINGS: [&str; 8] =
    ["--request-timeout", "1s", "--min-blob-age", "3s", "--delete-delay", "2s", "--clock-skew", "2s"];
const SERVERS: usize = 2;
const CLEANERS: usize = 2;
const CLIENTS: usize = 8;
const USERS_PER_CLIENT: usize = 3;
/// How long the chaos lasts per backend unless `PROFILESTORE_FREEZE_TEST_SECS` says.
const DEFAULT_CHAOS_SECS: u64 = 210;
/// Server freezes the schedule aims at; some are cut short by a kill or the end.
const FREEZES_AIMED: u32 = 46;
/// Server freezes that must have run their whole length.
const MIN_FREEZES: u64 = 30;
/// How long clients go on once the chaos has stopped.
const RECOVERY: Duration = Duration::from_secs(5);
/// The pause between two audits during the run.
const AUDIT_EVERY: Duration = Duration::from_secs(2);

/// The two backends share the machine's two cores: one runs at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One pair of stores and how to run on it.
struct Backend {
    stores: Vec<String>,
    timings: [&'static str; 8],
    /// `min_blob_age + clock_skew + delete_delay`: every freeze lasts longer.
    exposure: Duration,
    /// The cleaners' interval.
    every: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_servers_frozen_and_killed_at_random_leave_nothing_dangling() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let backend = Backend {
        stores: vec!["--data-dir".to_owned(), data],
        timings: SQLITE_TIMINGS,
        exposure: Duration::from_millis(5500),
        every: "200ms",
    };
    run("sqlite", backend, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_s3_servers_frozen_and_killed_at_random_leave_nothing_dangling() {
    let Some(stores) = postgres_and_s3("freezes") else { return };
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend { stores, timings: S3_TIMINGS, exposure: Duration::from_secs(7), every: "500ms" };
    run("postgres+s3", backend, dir.path()).await;
}

/// How long the chaos lasts per backend.
fn chaos_secs() -> u64 {
    match std::env::var("PROFILESTORE_FREEZE_TEST_SECS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("PROFILESTORE_FREEZE_TEST_SECS={v:?} is not whole seconds")),
        Err(_) => DEFAULT_CHAOS_SECS,
    }
}

/// A duration from `lo` to `hi`.
fn between(dice: &Dice, lo: Duration, hi: Duration) -> Duration {
    lo + Duration::from_millis(dice.roll((hi - lo).as_millis() as u64 + 1))
}

/// A server's place in the fleet: the process (none while it restarts) and, while
/// it is stopped, when its freeze ends.
struct ServerSlot {
    server: Option<Server>,
    frozen_until: Option<Instant>,
    restart: Option<JoinHandle<Result<Server, String>>>,
    log: PathBuf,
}

/// A cleaner's place in the fleet.
struct CleanerSlot {
    daemon: Daemon,
    frozen_until: Option<Instant>,
    log: PathBuf,
}

/// Every process of the run.
struct Fleet {
    stores: Vec<String>,
    every: &'static str,
    servers: Vec<ServerSlot>,
    cleaners: Vec<CleanerSlot>,
}

impl Fleet {
    /// Starts a server for `slot` on another thread (it may wait for SQLite's write
    /// lock, held by a frozen process this thread must wake).
    fn restart_server(&mut self, slot: usize) {
        let (stores, log) = (self.stores.clone(), self.servers[slot].log.clone());
        self.servers[slot].restart = Some(std::thread::spawn(move || Server::try_start(&stores, log_to(&log))));
    }

    /// Takes the outcome of a server's restart: serving, or tried again.
    fn restarted(&mut self, slot: usize, outcome: Result<Server, String>, traffic: &Traffic, chaos: &mut Chaos) {
        match outcome {
            Ok(server) => {
                traffic.servers.write().unwrap().push(server.base.clone());
                self.servers[slot].server = Some(server);
            }
            Err(why) => {
                eprintln!("server {slot} restart failed, trying again: {why}");
                chaos.failed_restarts += 1;
                std::thread::sleep(Duration::from_millis(200));
                self.restart_server(slot);
            }
        }
    }

    fn restart_cleaner(&mut self, slot: usize) {
        let c = &mut self.cleaners[slot];
        c.daemon = start_cleaner(&self.stores, self.every, &c.log);
        c.frozen_until = None;
    }
}

/// What the chaos did.
#[derive(Debug, Default)]
struct Chaos {
    /// Server freezes that lasted their whole length, ended by SIGCONT.
    server_freezes: u64,
    /// Server freezes ended early by a SIGKILL (or by the end of the chaos).
    server_freezes_cut: u64,
    cleaner_freezes: u64,
    server_kills: u64,
    cleaner_kills: u64,
    /// Restarts that failed (the process exited before serving) and were tried again.
    failed_restarts: u64,
    /// Processes that exited on their own, restarted.
    exits: Vec<String>,
    /// The longest time both servers were frozen at once.
    longest_all_frozen: Duration,
}

/// Freezes, thaws, kills and restarts processes of `fleet` until `until`, then thaws
/// every process and waits for every restart.
fn run_chaos(fleet: &mut Fleet, traffic: &Traffic, exposure: Duration, until: Instant, dice: &Dice) -> Chaos {
    let mut c = Chaos::default();
    let freeze_length = || between(dice, exposure + Duration::from_millis(500), exposure + Duration::from_millis(2500));
    let longest = exposure + Duration::from_millis(2500);
    let period = until.saturating_duration_since(Instant::now()).saturating_sub(longest) / FREEZES_AIMED;
    let start = Instant::now();
    let mut next_freeze = start + period / 2;
    let mut next_cleaner_freeze = start + between(dice, Duration::from_secs(5), Duration::from_secs(15));
    let mut next_kill = start + between(dice, Duration::from_secs(10), Duration::from_secs(20));
    let mut all_frozen_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        for slot in &mut fleet.servers {
            if let (Some(end), Some(server)) = (slot.frozen_until, &slot.server)
                && now >= end
            {
                signal(&server.child, "CONT");
                slot.frozen_until = None;
                c.server_freezes += 1;
            }
        }
        for slot in &mut fleet.cleaners {
            if slot.frozen_until.is_some_and(|end| now >= end) {
                signal(&slot.daemon.0, "CONT");
                slot.frozen_until = None;
                c.cleaner_freezes += 1;
            }
        }
        let all_frozen = fleet.servers.iter().all(|s| s.frozen_until.is_some());
        match (all_frozen, all_frozen_since) {
            (true, None) => all_frozen_since = Some(now),
            (false, Some(since)) => {
                c.longest_all_frozen = c.longest_all_frozen.max(now - since);
                all_frozen_since = None;
            }
            _ => {}
        }
        if now >= until {
            break;
        }

        // Restarts that finished, and processes that ended on their own.
        for n in 0..fleet.servers.len() {
            if fleet.servers[n].restart.as_ref().is_some_and(JoinHandle::is_finished) {
                let outcome = fleet.servers[n].restart.take().unwrap().join().unwrap();
                fleet.restarted(n, outcome, traffic, &mut c);
            }
            let exited = fleet.servers[n].server.as_mut().and_then(|s| s.child.try_wait().unwrap());
            if let Some(status) = exited {
                c.exits.push(format!("server {n}: {status}"));
                let gone = fleet.servers[n].server.take().unwrap();
                traffic.servers.write().unwrap().retain(|b| *b != gone.base);
                fleet.servers[n].frozen_until = None;
                fleet.restart_server(n);
            }
        }
        for n in 0..fleet.cleaners.len() {
            if let Some(status) = fleet.cleaners[n].daemon.0.try_wait().unwrap() {
                c.exits.push(format!("cleaner {n}: {status}"));
                fleet.restart_cleaner(n);
            }
        }

        if now >= next_freeze {
            let up: Vec<usize> = (0..SERVERS)
                .filter(|&n| fleet.servers[n].server.is_some() && fleet.servers[n].frozen_until.is_none())
                .collect();
            if !up.is_empty() {
                let n = up[dice.roll(up.len() as u64) as usize];
                signal(&fleet.servers[n].server.as_ref().unwrap().child, "STOP");
                fleet.servers[n].frozen_until = Some(now + freeze_length());
                next_freeze = now + between(dice, period * 6 / 10, period * 14 / 10);
            }
        }
        if now >= next_cleaner_freeze {
            let n = dice.roll(CLEANERS as u64) as usize;
            if fleet.cleaners[n].frozen_until.is_none() {
                signal(&fleet.cleaners[n].daemon.0, "STOP");
                fleet.cleaners[n].frozen_until = Some(now + freeze_length());
            }
            next_cleaner_freeze = now + between(dice, Duration::from_secs(10), Duration::from_secs(20));
        }
        if now >= next_kill {
            // Frozen processes are killed too: a frozen server may hold the write lock.
            if dice.roll(2) == 0 {
                let n = dice.roll(SERVERS as u64) as usize;
                if let Some(victim) = fleet.servers[n].server.take() {
                    traffic.servers.write().unwrap().retain(|b| *b != victim.base);
                    signal(&victim.child, "KILL");
                    drop(victim); // reaps it
                    if fleet.servers[n].frozen_until.take().is_some() {
                        c.server_freezes_cut += 1;
                    }
                    c.server_kills += 1;
                    fleet.restart_server(n);
                }
            } else {
                let n = dice.roll(CLEANERS as u64) as usize;
                signal(&fleet.cleaners[n].daemon.0, "KILL");
                fleet.cleaners[n].daemon.0.wait().unwrap();
                c.cleaner_kills += 1;
                fleet.restart_cleaner(n);
            }
            next_kill = now + between(dice, Duration::from_secs(12), Duration::from_secs(24));
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // The end: every process runs again.
    for slot in &mut fleet.servers {
        if let (Some(_), Some(server)) = (slot.frozen_until.take(), &slot.server) {
            signal(&server.child, "CONT");
            c.server_freezes_cut += 1;
        }
    }
    for slot in &mut fleet.cleaners {
        if slot.frozen_until.take().is_some() {
            signal(&slot.daemon.0, "CONT");
        }
    }
    for n in 0..fleet.servers.len() {
        while let Some(restart) = fleet.servers[n].restart.take() {
            fleet.restarted(n, restart.join().unwrap(), traffic, &mut c);
        }
    }
    c
}

/// What the audits during the run saw.
#[derive(Debug, Default)]
struct Audits {
    runs: u64,
    unreachable: u64,
    /// Distinct dangling references seen, as `user -> image`.
    dangling: std::collections::BTreeSet<String>,
}

/// Audits the stores every [`AUDIT_EVERY`] until `stop`: any dangling reference found
/// is real (the audit re-reads the record before it reports one).
async fn audit_during(stores: Vec<String>, stop: Arc<AtomicBool>) -> Audits {
    let mut audits = Audits::default();
    while !stop.load(Ordering::Relaxed) {
        let stores = stores.clone();
        match tokio::task::spawn_blocking(move || try_audit_json(&stores)).await.unwrap() {
            Ok((_, report)) => {
                audits.runs += 1;
                let listed = report["dangling"].as_array().into_iter().flatten();
                audits.dangling.extend(listed.map(|d| format!("{} -> {}", d["user_id"], d["image_id"])));
            }
            // A store may be out of reach while a process holds its lock frozen.
            Err(_) => audits.unreachable += 1,
        }
        tokio::time::sleep(AUDIT_EVERY).await;
    }
    audits
}

async fn run(name: &str, backend: Backend, work: &Path) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let stores = backend.stores.clone();
    let init = bin().arg("init").args(&stores).args(backend.timings).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));

    // Servers and cleaners start without timing flags: they adopt the cluster's.
    let servers: Vec<ServerSlot> = (0..SERVERS)
        .map(|n| {
            let log = work.join(format!("serve-{n}.log"));
            let server = Server::try_start(&stores, log_to(&log)).unwrap_or_else(|why| panic!("{why}"));
            ServerSlot { server: Some(server), frozen_until: None, restart: None, log }
        })
        .collect();
    let cleaners: Vec<CleanerSlot> = (0..CLEANERS)
        .map(|n| {
            let log = work.join(format!("clean-{n}.log"));
            CleanerSlot { daemon: start_cleaner(&stores, backend.every, &log), frozen_until: None, log }
        })
        .collect();
    let bases = servers.iter().map(|s| s.server.as_ref().unwrap().base.clone()).collect();
    let mut fleet = Fleet { stores: stores.clone(), every: backend.every, servers, cleaners };
    let traffic = Traffic::new(bases);

    let secs = chaos_secs();
    let seed = unique_suffix().bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let started = Instant::now();
    let chaos_until = started + Duration::from_secs(secs);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let users = (0..USERS_PER_CLIENT).map(|u| format!("user-{c}-{u}")).collect();
            tokio::spawn(traffic.clone().client(users, chaos_until + RECOVERY))
        })
        .collect();
    let stop_audits = Arc::new(AtomicBool::new(false));
    let auditor = tokio::spawn(audit_during(stores.clone(), stop_audits.clone()));
    let chaos = tokio::task::spawn_blocking({
        let traffic = traffic.clone();
        move || {
            let counts = run_chaos(&mut fleet, &traffic, backend.exposure, chaos_until, &Dice::new(seed));
            (fleet, counts)
        }
    });
    let (fleet, chaos) = chaos.await.unwrap();
    for client in clients {
        client.await.unwrap();
    }
    stop_audits.store(true, Ordering::Relaxed);
    let audits = auditor.await.unwrap();
    let traffic_secs = started.elapsed().as_secs_f64();

    // Requests in flight finish before a server exits on SIGTERM; a fresh server
    // answers the final reads.
    let Fleet { servers, cleaners, .. } = fleet;
    for slot in servers {
        let status = slot.server.unwrap().terminate();
        assert!(status.success(), "a server exits 0 on SIGTERM: {status}");
    }
    let final_server =
        Server::try_start(&stores, log_to(&work.join("serve-final.log"))).unwrap_or_else(|why| panic!("{why}"));

    // The cleaners keep running: every orphan must go.
    let (code, report) = audit_until_no_orphans(&stores, Duration::from_secs(60)).await;
    let final_problems = traffic.check_final(&final_server.base).await;
    assert!(final_server.terminate().success(), "the final server exits 0 on SIGTERM");
    let mut deleted = 0;
    for slot in cleaners {
        let status = slot.daemon.terminate();
        assert!(status.success(), "a cleaner daemon exits 0 on SIGTERM: {status}");
        deleted += deleted_by(&slot.log);
    }

    let tally = traffic.tally.lock().unwrap();
    let orphans = orphans(&report);
    println!(
        "freezes {name}: {} server freezes of {:.1}-{:.1} s ({} cut short), {} cleaner freezes, both servers frozen \
         up to {:.1} s at once; kills: {} servers, {} cleaners ({} failed restarts, exits {:?}); {traffic_secs:.0} s \
         of traffic: writes {} ok, failed {:?}; reads {} found, {} no profile, failed {:?}; {} audits during the run \
         ({} could not run) saw {} dangling references; {} problems in answers; cleaners deleted {deleted}; final: {} records, {} images, {orphans} \
         orphans, {} dangling; seed {seed}",
        chaos.server_freezes,
        (backend.exposure + Duration::from_millis(500)).as_secs_f64(),
        (backend.exposure + Duration::from_millis(2500)).as_secs_f64(),
        chaos.server_freezes_cut,
        chaos.cleaner_freezes,
        chaos.longest_all_frozen.as_secs_f64(),
        chaos.server_kills,
        chaos.cleaner_kills,
        chaos.failed_restarts,
        chaos.exits,
        tally.writes_ok,
        tally.writes_failed,
        tally.reads_found,
        tally.reads_missing,
        tally.reads_failed,
        audits.runs,
        audits.unreachable,
        audits.dangling.len(),
        tally.problems.len(),
        report["records"],
        report["images"],
        report["dangling_count"],
    );
    assert!(tally.problems.is_empty(), "{} inconsistent answers or 500s: {:?}", tally.problems.len(), tally.problems);
    assert!(!tally.writes_failed.contains_key("status 500"), "writes answered 500: {:?}", tally.writes_failed);
    assert!(final_problems.is_empty(), "lost or inconsistent profiles at the end: {final_problems:?}");
    assert!(audits.dangling.is_empty(), "audits during the run found dangling references: {:?}", audits.dangling);
    assert_eq!(report["dangling_count"], 0, "the final audit finds dangling references: {report}");
    assert_eq!(code, Some(0), "audit: {report}");
    assert_eq!(orphans, 0, "orphans left after the cleaners settled: {report}");
    assert!(chaos.server_freezes >= MIN_FREEZES, "only {} whole server freezes: {chaos:?}", chaos.server_freezes);
    assert!(tally.writes_ok > 100 && tally.reads_found > 100, "too little traffic: {tally:?}");
    assert!(deleted > 0, "the cleaners never deleted anything");
}
