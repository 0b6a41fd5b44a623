//! Many processes at once on one PostgreSQL database and one S3 bucket: three `serve`
//! processes and two `clean --every` daemons of the real binary, timings compressed
//! to whole seconds, clients writing and reading through all servers, one server and
//! one cleaner killed with SIGKILL mid-traffic and restarted.

// These tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::traffic::Traffic;
use support::{S3Env, Server, audit_json, bin, fresh_database, service_env, signal, unique_suffix};

/// Compressed timings in whole seconds (ten processes share two cores). S3 keeps
/// whole-second timestamps, so a clock skew under 2 s could not be checked.
const TIMINGS: [&str; 8] =
    ["--request-timeout", "2s", "--min-blob-age", "5s", "--delete-delay", "2s", "--clock-skew", "2s"];
const TRAFFIC: Duration = Duration::from_secs(20);
const CLIENTS: usize = 6;
const USERS_PER_CLIENT: usize = 3;

struct Cleaner {
    child: Child,
}

fn start_cleaner(stores: &[String], log_dir: &std::path::Path, n: usize) -> Cleaner {
    let log = log_dir.join(format!("cleaner-{n}.log"));
    let child = bin()
        .args(["clean", "--every", "1s", "--log-format", "json"])
        .args(stores)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .expect("clean starts");
    Cleaner { child }
}

/// Sums the `deleted` counters of the cycle lines a cleaner logged.
fn deleted_by(log: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["message"] == "cleaner cycle finished")
        .map(|j| j["deleted"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_two_cleaners_on_postgres_and_s3_survive_kills() {
    let Some(admin) = service_env("PROFILESTORE_TEST_POSTGRES_URL") else { return };
    let Some(s3) = S3Env::from_env() else { return };
    let suffix = unique_suffix();
    let mut stores = vec!["--database".to_owned(), fresh_database(&admin, &format!("cluster_{suffix}"))];
    stores.extend(s3.flags(&format!("cluster-{suffix}")));
    let logs = tempfile::tempdir().unwrap();

    let init = bin().arg("init").args(&stores).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));

    // Servers and cleaners start without timing flags: they adopt the cluster's.
    let mut servers: Vec<Server> = (0..3).map(|_| Server::start(&stores)).collect();
    let mut cleaners: Vec<Cleaner> = (0..2).map(|n| start_cleaner(&stores, logs.path(), n)).collect();
    let traffic = Traffic::new(servers.iter().map(|s| s.base.clone()).collect());

    let started = Instant::now();
    let until = started + TRAFFIC;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let users = (0..USERS_PER_CLIENT).map(|u| format!("user-{c}-{u}")).collect();
            tokio::spawn(traffic.clone().client(users, until))
        })
        .collect();

    // The kill schedule: a server, then a cleaner, each SIGKILLed mid-traffic and restarted.
    let mut events = Vec::new();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let victim = servers.remove(1);
    traffic.servers.write().unwrap().retain(|b| *b != victim.base);
    signal(&victim.child, "KILL");
    drop(victim);
    events.push(format!("{:.1}s: SIGKILL server 1", started.elapsed().as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Server::start(&stores);
    traffic.servers.write().unwrap().push(restarted.base.clone());
    servers.push(restarted);
    events.push(format!("{:.1}s: server 1 restarted", started.elapsed().as_secs_f64()));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut victim = cleaners.remove(0);
    signal(&victim.child, "KILL");
    victim.child.wait().unwrap();
    events.push(format!("{:.1}s: SIGKILL cleaner 0", started.elapsed().as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cleaners.push(start_cleaner(&stores, logs.path(), 2));
    events.push(format!("{:.1}s: cleaner 0 restarted", started.elapsed().as_secs_f64()));

    for client in clients {
        client.await.unwrap();
    }
    events.push(format!("{:.1}s: writes stopped", started.elapsed().as_secs_f64()));

    // The cleaners keep running: every orphan must go (min age 5 s + skew 1 s + delay 2 s + cycles).
    let settle_until = Instant::now() + Duration::from_secs(60);
    let (status, report) = loop {
        let (status, report) = audit_json(&stores);
        let orphans =
            report["orphans"]["in_flight"].as_u64().unwrap() + report["orphans"]["collectable"].as_u64().unwrap();
        if orphans == 0 || Instant::now() > settle_until {
            break (status, report);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    events.push(format!("{:.1}s: audit settled", started.elapsed().as_secs_f64()));
    let final_problems = traffic.check_final(&servers[0].base).await;

    for mut c in cleaners.drain(..) {
        signal(&c.child, "TERM");
        let status = c.child.wait().unwrap();
        assert!(status.success(), "a cleaner daemon exits 0 on SIGTERM: {status}");
    }
    let deleted: u64 = (0..3).map(|n| deleted_by(&logs.path().join(format!("cleaner-{n}.log")))).sum();
    for s in servers.drain(..) {
        assert!(s.terminate().success(), "a server exits 0 on SIGTERM");
    }

    let tally = traffic.tally.lock().unwrap();
    println!(
        "cluster: {} writes acknowledged, failed {:?}; {} reads answered a profile, {} no profile, failed {:?}; \
         cleaners deleted {deleted} images; final: {} records, {} images, {} orphans\n  {}",
        tally.writes_ok,
        tally.writes_failed,
        tally.reads_found,
        tally.reads_missing,
        tally.reads_failed,
        report["records"],
        report["images"],
        report["orphans"]["in_flight"].as_u64().unwrap() + report["orphans"]["collectable"].as_u64().unwrap(),
        events.join("\n  "),
    );
    assert!(tally.problems.is_empty(), "inconsistent answers: {:?}", tally.problems);
    assert!(final_problems.is_empty(), "lost or inconsistent profiles at the end: {final_problems:?}");
    assert_eq!(status, Some(0), "audit finds a dangling reference: {report}");
    assert_eq!(report["dangling_count"], 0);
    assert_eq!(report["orphans"]["in_flight"], 0, "{report}");
    assert_eq!(report["orphans"]["collectable"], 0, "{report}");
    assert_eq!(report["images"], report["records"], "one image per record: {report}");
    assert!(tally.writes_ok > 100 && tally.reads_found > 100, "too little traffic: {tally:?}");
    assert!(deleted > 0, "the cleaners never deleted anything");
}
