//! PostgreSQL goes away during traffic and comes back: requests fail with 503 while
//! it is down, succeed again once it returns, and nothing acknowledged is lost or
//! left dangling. The test runs its own PostgreSQL (started by the project's script
//! on a private data directory and port), so stopping it disturbs no other test.

// These tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use profilestore_testkit::postgres::PrivateServer;
use support::traffic::Traffic;
use support::{Server, audit_json, bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_with_503_while_postgres_is_down_and_recover_when_it_returns() {
    let Some(pg) = PrivateServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.url.clone();
    let stores = vec![
        "--database".to_owned(),
        url,
        "--blobs".to_owned(),
        format!("file://{}", dir.path().join("blobs").display()),
        "--request-timeout".into(),
        "2s".into(),
        "--min-blob-age".into(),
        "5s".into(),
        "--delete-delay".into(),
        "2s".into(),
        "--clock-skew".into(),
        "1s".into(),
    ];
    let servers: Vec<Server> = (0..2).map(|_| Server::start(&stores)).collect();
    let traffic = Traffic::new(servers.iter().map(|s| s.base.clone()).collect());
    let started = Instant::now();
    let until = started + Duration::from_secs(14);
    let clients: Vec<_> = (0..4)
        .map(|c| tokio::spawn(traffic.clone().client(vec![format!("user-{c}-a"), format!("user-{c}-b")], until)))
        .collect();

    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = traffic.tally.lock().unwrap().writes_ok;
    pg.stop();
    let stopped_at = started.elapsed();
    // While it is down, readiness says so and requests get 503.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = reqwest::get(format!("{}/readyz", servers[0].base)).await.unwrap();
    assert_eq!(ready.status(), 503, "readyz while the database is down");
    let during = {
        let t = traffic.tally.lock().unwrap();
        (
            t.writes_failed.get("status 503").copied().unwrap_or(0),
            t.reads_failed.get("status 503").copied().unwrap_or(0),
        )
    };
    pg.resume();
    let resumed_at = started.elapsed();

    for client in clients {
        client.await.unwrap();
    }
    let after = traffic.tally.lock().unwrap().writes_ok;
    let ready = reqwest::get(format!("{}/readyz", servers[1].base)).await.unwrap();
    assert_eq!(ready.status(), 200, "readyz after the database returned");
    let final_problems = traffic.check_final(&servers[0].base).await;
    let (audit_status, report) = audit_json(&stores);
    let tally = traffic.tally.lock().unwrap();
    println!(
        "postgres down from {stopped_at:.1?} to {resumed_at:.1?}: {} writes ok ({} before the outage, {} after it ended), \
         failed {:?}; reads {} found, failed {:?}; audit: {} records, {} dangling",
        tally.writes_ok,
        before,
        after,
        tally.writes_failed,
        tally.reads_found,
        tally.reads_failed,
        report["records"],
        report["dangling_count"],
    );
    assert!(during.0 + during.1 > 0, "no request got 503 while the database was down: {tally:?}");
    assert!(after > before, "no write succeeded once the database returned");
    assert!(tally.problems.is_empty(), "inconsistent answers: {:?}", tally.problems);
    assert!(final_problems.is_empty(), "lost or inconsistent profiles: {final_problems:?}");
    assert_eq!(audit_status, Some(0), "dangling reference after the outage: {report}");
    let unexpected: Vec<_> = tally
        .writes_failed
        .keys()
        .chain(tally.reads_failed.keys())
        .filter(|k| !matches!(k.as_str(), "status 503" | "status 504"))
        .collect();
    assert!(unexpected.is_empty(), "failures other than 503/504: {unexpected:?}");
    drop(tally);
    drop(servers);
    pg.stop();
}

#[test]
fn the_init_command_also_refuses_a_database_that_is_down() {
    // A closed port: the error names the (redacted) URL and comes quickly.
    let started = Instant::now();
    let out = bin()
        .args(["init", "--database", "postgres://app:secret@127.0.0.1:1/none", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1") && !err.contains("secret"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}
