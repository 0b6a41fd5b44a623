//! Many processes at once on one PostgreSQL database and one S3 bucket: three `serve`
//! processes and two `clean --every` daemons of the real binary, timings compressed
//! to whole seconds, clients writing and reading through all servers, one server and
//! one cleaner killed with SIGKILL mid-traffic and restarted.

// These tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use support::traffic::Traffic;
use support::{
    Daemon, Server, audit_until_no_orphans, bin, deleted_by, orphans, postgres_and_s3, signal, start_cleaner,
};

/// Compressed timings in whole seconds (ten processes share two cores). S3 keeps
/// whole-second timestamps, so a clock skew under 2 s could not be checked.
const TIMINGS: [&str; 8] =
    ["--request-timeout", "2s", "--min-blob-age", "5s", "--delete-delay", "2s", "--clock-skew", "2s"];
const TRAFFIC: Duration = Duration::from_secs(20);
const CLIENTS: usize = 6;
const USERS_PER_CLIENT: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_and_two_cleaners_on_postgres_and_s3_survive_kills() {
    let Some(stores) = postgres_and_s3("cluster") else { return };
    let logs = tempfile::tempdir().unwrap();

    let init = bin().arg("init").args(&stores).args(TIMINGS).output().unwrap();
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));

    // Servers and cleaners start without timing flags: they adopt the cluster's.
    let mut servers: Vec<Server> = (0..3).map(|_| Server::start(&stores)).collect();
    let cleaner_log = |n: usize| logs.path().join(format!("cleaner-{n}.log"));
    let mut cleaners: Vec<Daemon> = (0..2).map(|n| start_cleaner(&stores, "1s", &cleaner_log(n))).collect();
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
    signal(&victim.0, "KILL");
    victim.0.wait().unwrap();
    events.push(format!("{:.1}s: SIGKILL cleaner 0", started.elapsed().as_secs_f64()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cleaners.push(start_cleaner(&stores, "1s", &cleaner_log(2)));
    events.push(format!("{:.1}s: cleaner 0 restarted", started.elapsed().as_secs_f64()));

    for client in clients {
        client.await.unwrap();
    }
    events.push(format!("{:.1}s: writes stopped", started.elapsed().as_secs_f64()));

    // The cleaners keep running: every orphan must go (min age 5 s + skew 1 s + delay 2 s + cycles).
    let (status, report) = audit_until_no_orphans(&stores, Duration::from_secs(60)).await;
    events.push(format!("{:.1}s: audit settled", started.elapsed().as_secs_f64()));
    let final_problems = traffic.check_final(&servers[0].base).await;

    for c in cleaners.drain(..) {
        let status = c.terminate();
        assert!(status.success(), "a cleaner daemon exits 0 on SIGTERM: {status}");
    }
    let deleted: u64 = (0..3).map(|n| deleted_by(&cleaner_log(n))).sum();
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
        orphans(&report),
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
