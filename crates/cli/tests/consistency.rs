//! The whole design on the embedded default (SQLite + a blob directory), with its
//! timings compressed to milliseconds: concurrent writers and readers whose store
//! calls stall at random (some past their deadline), two cleaners running all along,
//! and an auditor. Every read must be a pair one write submitted, no record may ever
//! dangle, no read within its deadline may find its blob gone, and once writes stop
//! the cleaners must leave no orphan.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use profilestore_cleaner::{Cleaner, CleanerConfig, audit};
use profilestore_core::error::{ServiceError, StoreError};
use profilestore_core::ids::UserId;
use profilestore_core::service::{NewProfile, ProfileService};
use profilestore_core::settings::Timings;
use profilestore_core::store::{BlobStore, MetadataStore};
use profilestore_core::time::{Clock, Timestamp};
use profilestore_runtime::{SystemClock, TokioClock, UuidV7Ids};
use profilestore_stores::{LocalBlobStore, OpenMode, SqliteMetadataStore};
use profilestore_testkit::hooked::{CallHook, Hooked, StoreCall};

const TIMINGS: Timings = Timings {
    request_timeout: Duration::from_millis(200),
    min_blob_age: Duration::from_millis(500),
    delete_delay: Duration::from_millis(300),
    clock_skew: Duration::from_millis(50),
};
const USERS: usize = 6;
const WRITERS: usize = 3;
const READERS: usize = 3;
const TRAFFIC: Duration = Duration::from_secs(3);

/// A tiny deterministic generator (the test needs variety, not quality).
struct Dice(AtomicU64);

impl Dice {
    fn roll(&self, below: u64) -> u64 {
        let mut x = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (x ^ (x >> 31)) % below
    }

    /// Usually nothing; now and then a stall of up to 1.5 request timeouts.
    async fn maybe_stall(&self) {
        if self.roll(8) == 0 {
            tokio::time::sleep(Duration::from_millis(self.roll(300))).await;
        }
    }
}

/// Stalls at random before record commits and blob puts and gets, and counts reads
/// that find their blob gone.
struct Stalling {
    dice: Arc<Dice>,
    vanished: Arc<AtomicU64>,
    /// When set, every record commit stalls exactly this long instead of at random.
    commit_stall: Option<Duration>,
}

#[async_trait::async_trait]
impl CallHook for Stalling {
    async fn before(&self, call: StoreCall) -> Result<(), StoreError> {
        match call {
            StoreCall::CommitRecord => match self.commit_stall {
                Some(stall) => tokio::time::sleep(stall).await,
                None => self.dice.maybe_stall().await,
            },
            StoreCall::PutBlob | StoreCall::GetBlob => self.dice.maybe_stall().await,
            _ => {}
        }
        Ok(())
    }

    fn fetched(&self, found: bool) {
        if !found {
            // Reads only fetch blobs a record named a moment ago, and the driver
            // abandons a fetch at its deadline: a miss here is a vanished blob.
            self.vanished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the run saw, for the assertions and the printed summary.
#[derive(Default, Debug)]
struct Tally {
    writes_committed: u64,
    writes_late: u64,
    writes_failed: u64,
    reads_found: u64,
    reads_empty: u64,
    reads_late_or_failed: u64,
    inconsistent: Vec<String>,
    dangling: Vec<String>,
}

fn user(n: u64) -> UserId {
    UserId::parse(&format!("user-{n}")).unwrap()
}

/// A server whose clock runs behind the database's computes a deadline the database
/// has already passed while the server's own timer still allows the commit: the
/// database's check inside the statement is what refuses it. With clocks in step the
/// same stall commits, so the refusal is the deadline's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_a_commit_past_the_deadline_that_the_servers_own_timer_still_allows() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn MetadataStore> =
        Arc::new(SqliteMetadataStore::open(dir.path().join("p.db"), OpenMode::Migrate).await.unwrap());
    let blobs: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::open(dir.path().join("blobs"), OpenMode::Migrate).await.unwrap());
    let stalled: Arc<dyn MetadataStore> = Hooked::new(
        sqlite.clone(),
        Stalling {
            dice: Arc::new(Dice(AtomicU64::new(0))),
            vanished: Arc::default(),
            commit_stall: Some(Duration::from_millis(500)),
        },
    );
    let timings = Timings { request_timeout: Duration::from_secs(1), ..TIMINGS };
    let service_with_clock = |behind: Duration| {
        let now = SystemClock::new().now();
        let clock =
            Arc::new(TokioClock::starting_at(Timestamp::from_millis(now.as_millis() - behind.as_millis() as i64)));
        ProfileService::new(stalled.clone(), blobs.clone(), clock, Arc::new(UuidV7Ids), timings)
    };
    let profile =
        || NewProfile { metadata: "{}".into(), image: Bytes::from_static(b"img"), content_type: "image/png".into() };

    let in_step = service_with_clock(Duration::ZERO);
    in_step.write(user(1), profile()).await.expect("with clocks in step a 500 ms stall commits");

    let behind = service_with_clock(Duration::from_millis(700));
    let err = behind.write(user(2), profile()).await.unwrap_err();
    assert!(matches!(err, ServiceError::DeadlineExceeded), "{err:?}");
    assert!(sqlite.get(&user(2)).await.unwrap().is_none(), "the late record did not land");
}

/// What one run of the system showed.
struct Run {
    tally: Tally,
    vanished: u64,
    final_report: profilestore_cleaner::AuditReport,
    records: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_is_a_submitted_pair_nothing_dangles_and_cleaners_leave_no_orphan() {
    let run = run_system(TIMINGS).await;
    let (tally, report) = (&run.tally, &run.final_report);
    assert!(tally.inconsistent.is_empty(), "reads answered pairs no write submitted: {:?}", tally.inconsistent);
    assert!(tally.dangling.is_empty(), "dangling references: {:?}", tally.dangling);
    assert_eq!(run.vanished, 0, "a read within its deadline found its blob gone");
    assert!(report.healthy());
    assert_eq!(report.orphans.in_flight + report.orphans.collectable, 0, "orphans left: {report}");
    assert_eq!(report.images, run.records as u64, "exactly one image per record");
    // The run must have exercised what it claims to.
    assert!(tally.writes_committed > 50 && tally.reads_found > 50, "too little traffic: {tally:?}");
    assert!(tally.writes_late > 0, "no write ever ran past its deadline: {tally:?}");
}

/// The same harness catches a cleaner with neither an age filter nor a delete delay
/// (the case study's flawed designs 3 and 5): the checks above are not vacuous.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_checks_catch_a_cleaner_without_age_filter_or_delete_delay() {
    let flawed =
        Timings { min_blob_age: Duration::ZERO, delete_delay: Duration::ZERO, clock_skew: Duration::ZERO, ..TIMINGS };
    let run = run_system(flawed).await;
    let broken = run.tally.dangling.len() as u64 + run.vanished;
    assert!(broken > 0, "the flawed cleaner went unnoticed: {:?}, {} vanished", run.tally, run.vanished);
}

/// Runs the traffic, the cleaners (with `cleaner_timings`) and the auditor, then lets
/// the cleaners settle, and reports what happened.
async fn run_system(cleaner_timings: Timings) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let sqlite: Arc<dyn MetadataStore> =
        Arc::new(SqliteMetadataStore::open(dir.path().join("p.db"), OpenMode::Migrate).await.unwrap());
    let local: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::open(dir.path().join("blobs"), OpenMode::Migrate).await.unwrap());
    let dice = Arc::new(Dice(AtomicU64::new(7)));
    let vanished = Arc::new(AtomicU64::new(0));
    let stalling = || Stalling { dice: dice.clone(), vanished: vanished.clone(), commit_stall: None };
    let metadata: Arc<dyn MetadataStore> = Hooked::new(sqlite.clone(), stalling());
    let blobs: Arc<dyn BlobStore> = Hooked::new(local.clone(), stalling());
    let service = ProfileService::new(metadata, blobs, clock.clone(), Arc::new(UuidV7Ids), TIMINGS);

    // (user, metadata, image) triples every write submitted, before it was sent.
    let submitted: Arc<Mutex<HashSet<(String, String, Bytes)>>> = Arc::default();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let (stop_cleaners, cleaners_stopped) = tokio::sync::watch::channel(false);

    let cleaner_config =
        CleanerConfig { timings: cleaner_timings, page_size: 7, allow_unsafe_timing: true, ..CleanerConfig::default() };
    let cleaners: Vec<_> = (0..2)
        .map(|_| {
            let cleaner = Cleaner::new(sqlite.clone(), local.clone(), clock.clone(), cleaner_config.clone()).unwrap();
            let mut stop = cleaners_stopped.clone();
            tokio::spawn(async move {
                cleaner
                    .run_every(Duration::from_millis(50), async move {
                        stop.wait_for(|s| *s).await.map(|_| ()).unwrap_or(())
                    })
                    .await
            })
        })
        .collect();

    let started = clock.now();
    let traffic_ends = started.saturating_since(Timestamp::from_millis(0)) + TRAFFIC;
    let during_traffic = {
        let clock = clock.clone();
        move || clock.now().saturating_since(Timestamp::from_millis(0)) < traffic_ends
    };

    let mut tasks = Vec::new();
    for w in 0..WRITERS as u64 {
        let (service, submitted, tally, dice, during) =
            (service.clone(), submitted.clone(), tally.clone(), dice.clone(), during_traffic.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while during() {
                n += 1;
                let who = user(dice.roll(USERS as u64));
                let metadata = format!(r#"{{"writer":{w},"n":{n}}}"#);
                let image = Bytes::from(format!("image of writer {w} write {n}"));
                submitted.lock().unwrap().insert((who.to_string(), metadata.clone(), image.clone()));
                let profile = NewProfile { metadata, image, content_type: "image/png".into() };
                let result = service.write(who, profile).await;
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(_) => t.writes_committed += 1,
                    Err(ServiceError::DeadlineExceeded) => t.writes_late += 1,
                    Err(_) => t.writes_failed += 1,
                }
            }
        }));
    }
    for _ in 0..READERS {
        let (service, submitted, tally, dice, during) =
            (service.clone(), submitted.clone(), tally.clone(), dice.clone(), during_traffic.clone());
        tasks.push(tokio::spawn(async move {
            while during() {
                let who = user(dice.roll(USERS as u64));
                let result = service.read(&who).await;
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(Some(p)) => {
                        t.reads_found += 1;
                        let triple = (who.to_string(), p.record.metadata.clone(), p.image.clone());
                        if !submitted.lock().unwrap().contains(&triple) {
                            t.inconsistent.push(format!("{triple:?}"));
                        }
                    }
                    Ok(None) => t.reads_empty += 1,
                    Err(e @ ServiceError::DanglingReference { .. }) => t.dangling.push(e.to_string()),
                    Err(_) => t.reads_late_or_failed += 1,
                }
            }
        }));
    }
    // The auditor: no record may dangle at any moment.
    let auditor = {
        let (sqlite, local, clock, tally, during) =
            (sqlite.clone(), local.clone(), clock.clone(), tally.clone(), during_traffic.clone());
        tokio::spawn(async move {
            let mut audits = 0;
            while during() {
                let report = audit(sqlite.as_ref(), local.as_ref(), clock.as_ref(), &TIMINGS).await.unwrap();
                audits += 1;
                tally.lock().unwrap().dangling.extend(report.dangling.iter().map(|d| format!("audit: {d:?}")));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            audits
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    let audits = auditor.await.unwrap();

    // Writes have stopped; the cleaners keep running until no orphan is left.
    let settle_by = clock.now().saturating_since(Timestamp::from_millis(0)) + Duration::from_secs(10);
    let final_report = loop {
        let report = audit(sqlite.as_ref(), local.as_ref(), clock.as_ref(), &TIMINGS).await.unwrap();
        let orphans = report.orphans.in_flight + report.orphans.collectable;
        if orphans == 0 || clock.now().saturating_since(Timestamp::from_millis(0)) > settle_by {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop_cleaners.send(true).unwrap();
    for cleaner in cleaners {
        cleaner.await.unwrap();
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let records = sqlite.records_after(None, 1000).await.unwrap().len();
    let vanished = vanished.load(Ordering::Relaxed);
    println!(
        "{} writes committed, {} late (504), {} failed; {} reads found, {} empty, {} late or failed; \
         {} audits during traffic; at the end {} records, {} images, {} orphans; {} dangling seen, {} vanished blobs",
        tally.writes_committed,
        tally.writes_late,
        tally.writes_failed,
        tally.reads_found,
        tally.reads_empty,
        tally.reads_late_or_failed,
        audits,
        final_report.records,
        final_report.images,
        final_report.orphans.in_flight + final_report.orphans.collectable,
        tally.dangling.len(),
        vanished,
    );
    Run { tally, vanished, final_report, records }
}
