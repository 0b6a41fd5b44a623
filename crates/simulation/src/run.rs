//! One simulated run: the machines, the clients, the chaos, the drain and the final
//! check, all on the caller's paused single-threaded runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::{AbortHandle, JoinHandle};

use profilestore_cleaner::{Cleaner, CleanerConfig};
use profilestore_core::clocks::ClockCheck;
use profilestore_core::error::{InvalidInput, ServiceError};
use profilestore_core::ids::UserId;
use profilestore_core::service::{Condition, NewProfile, ProfileService};

use super::clock::{BEYOND_BOUND, ClockModel, Origin, Rogue, SimClock, SimIds, fmt_elapsed};
use super::log::{Actor, Counters, Journal, short};
use super::rng::SimRng;
use super::stores::{Faulty, REQUEST_DEADLINE, SimWorld};
use super::{FaultMix, FaultRates, SimConfig, SimReport};

/// A server: its service (stateless, so it survives a crash unchanged) and the
/// requests in flight that a crash kills.
struct Server {
    service: ProfileService,
    up: bool,
    in_flight: Vec<AbortHandle>,
}

/// A cleaner machine: its view of the stores and clock, and the running daemon.
struct CleanerMachine {
    metadata: Arc<Faulty>,
    blobs: Arc<Faulty>,
    clock: SimClock,
    clock_check: Option<Arc<ClockCheck>>,
    daemon: Option<JoinHandle<()>>,
}

/// How often a simulated process measures its clock offsets, and how long one
/// measurement vouches for them (virtual time).
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(60);
const CLOCK_CHECK_VOUCHES: Duration = Duration::from_secs(3 * 60);

/// With `config.clock_check`, a clock check over `store` on `clock`, measuring for the
/// rest of the run; `None` otherwise.
fn clock_check(config: &SimConfig, store: &Arc<Faulty>, clock: &SimClock) -> Option<Arc<ClockCheck>> {
    if !config.clock_check {
        return None;
    }
    let check = Arc::new(ClockCheck::new(
        store.clone(),
        store.clone(),
        Arc::new(clock.clone()),
        config.timings.clock_skew,
        CLOCK_CHECK_VOUCHES,
    ));
    let measuring = check.clone();
    tokio::spawn(async move { measuring.run_every(CLOCK_CHECK_EVERY, std::future::pending()).await });
    Some(check)
}

struct Cluster {
    config: SimConfig,
    world: Arc<SimWorld>,
    servers: Mutex<Vec<Server>>,
    cleaners: Mutex<Vec<CleanerMachine>>,
    next_write: std::sync::atomic::AtomicU64,
}

/// Runs the simulation `config` describes; call on a current-thread runtime with
/// paused time.
pub async fn simulate(config: &SimConfig) -> SimReport {
    let origin = Origin::now();
    let seed = config.seed;
    let skew = config.timings.clock_skew;
    let mix = FaultMix::draw(&config.faults, seed, config.swarm);
    let rates = mix.rates;
    let journal = Journal::new(origin);
    let rogue = rogue_clock(config, &rates);
    if let Some((who, r)) = rogue {
        let way = if r.offset_ms >= 0 { "ahead of" } else { "behind" };
        journal.record(
            Actor::Chaos,
            format!(
                "{BEYOND_BOUND}{}'s clock runs {} {way} true time from {} on (the bound is {})",
                process_name(config, who),
                fmt_secs(Duration::from_millis(r.offset_ms.unsigned_abs())),
                fmt_elapsed(r.from),
                fmt_secs(skew / 2)
            ),
            None,
            &[],
        );
    }
    // The clock check adds its measurement's error (a millisecond here) to an offset:
    // clocks that may sit a whole skew apart would look beyond it.
    let margin = if config.clock_check { (skew / 100).max(Duration::from_millis(2)) } else { Duration::ZERO };
    let model = ClockModel {
        bound: (skew / 2).saturating_sub(margin),
        drift_ppm: rates.clock_drift_ppm,
        step_interval: rates.clock_steps,
    };
    let clock = |process: usize| {
        let rng = SimRng::derive(seed, &format!("clock of {}", process_name(config, process)));
        let rogue = rogue.filter(|(who, _)| *who == process).map(|(_, r)| r);
        SimClock::wandering(origin, model, rng, rogue)
    };
    let world = Arc::new(
        SimWorld::new(clock(0), clock(1), journal, rates, config.protocol)
            .with_queue_delay_from_statement(config.queue_delay_from_statement)
            .with_ignored_preconditions(config.ignore_preconditions),
    );
    let servers = (0..config.servers)
        .map(|i| {
            let clock = clock(2 + i);
            let store = Faulty::new(
                world.clone(),
                Actor::Server(i),
                clock.clone(),
                SimRng::derive(seed, &format!("server {i} faults")),
            );
            let ids = SimIds::new(clock.clone(), SimRng::derive(seed, &format!("server {i} ids")));
            let check = clock_check(config, &store, &clock);
            let mut service =
                ProfileService::new(store.clone(), store, Arc::new(clock.clone()), Arc::new(ids), config.timings);
            if let Some(check) = check {
                service = service.with_clock_check(check);
            }
            Server { service, up: true, in_flight: Vec::new() }
        })
        .collect();
    let cleaners = (0..config.cleaners)
        .map(|i| {
            let clock = clock(2 + config.servers + i);
            let store = Faulty::new(
                world.clone(),
                Actor::Cleaner(i),
                clock.clone(),
                SimRng::derive(seed, &format!("cleaner {i} faults")),
            );
            let clock_check = clock_check(config, &store, &clock);
            CleanerMachine { metadata: store.clone(), blobs: store, clock, clock_check, daemon: None }
        })
        .collect();
    let cluster = Arc::new(Cluster {
        config: config.clone(),
        world: world.clone(),
        servers: Mutex::new(servers),
        cleaners: Mutex::new(cleaners),
        next_write: Default::default(),
    });
    for i in 0..config.cleaners {
        cluster.start_cleaner(i);
    }
    let chaos = tokio::spawn(cluster.clone().chaos(SimRng::derive(seed, "chaos")));
    let per_client = config.ops.div_ceil(config.clients.max(1));
    let clients: Vec<JoinHandle<()>> = (0..config.clients)
        .map(|i| {
            let ops = per_client.min(config.ops.saturating_sub(i * per_client));
            tokio::spawn(cluster.clone().client(i, ops, SimRng::derive(seed, &format!("client {i}"))))
        })
        .collect();
    for client in clients {
        let _ = client.await;
    }
    chaos.abort();
    let journal = &world.journal;
    if !journal.failed() {
        cluster.drain().await;
    }
    for machine in lock(&cluster.cleaners).iter_mut() {
        if let Some(daemon) = machine.daemon.take() {
            daemon.abort();
        }
    }
    let (events, violation) = journal.finish();
    SimReport {
        seed,
        mix,
        counts: journal.counters.snapshot(),
        virtual_time: origin.elapsed(),
        records_left: world.records().len(),
        blobs_left: world.blobs.keys().len(),
        events,
        violation,
    }
}

impl Cluster {
    fn start_cleaner(&self, i: usize) {
        let mut cleaners = lock(&self.cleaners);
        let machine = &mut cleaners[i];
        if machine.daemon.is_some() {
            return;
        }
        let config = CleanerConfig {
            timings: self.config.timings,
            page_size: self.config.page_size,
            // The guard against an empty database protects against pointing the
            // cleaner at the wrong database, which the simulation does not model; users
            // here may delete every profile.
            allow_empty_database: true,
            allow_unsafe_timing: true,
            sweep: self.config.sweep,
            ..CleanerConfig::default()
        };
        let cleaner = match Cleaner::new(
            machine.metadata.clone(),
            machine.blobs.clone(),
            Arc::new(machine.clock.clone()),
            config,
        ) {
            Ok(cleaner) => match &machine.clock_check {
                Some(check) => cleaner.with_clock_check(check.clone()),
                None => cleaner,
            },
            Err(e) => {
                self.world.journal.record(Actor::Cleaner(i), format!("refused to start: {e}"), None, &[]);
                return;
            }
        };
        let interval = self.config.cleaner_interval;
        self.world.journal.record(Actor::Cleaner(i), "starts `clean --every`".into(), None, &[]);
        machine.daemon = Some(tokio::spawn(async move { cleaner.run_every(interval, std::future::pending()).await }));
    }

    /// Crashes and restarts machines at random until aborted.
    async fn chaos(self: Arc<Self>, mut rng: SimRng) {
        let mean = self.config.faults.crash_interval;
        if mean.is_zero() {
            return;
        }
        let machines = (self.config.servers + self.config.cleaners) as u64;
        loop {
            tokio::time::sleep(rng.millis_up_to(mean * 2)).await;
            let victim = rng.below(machines) as usize;
            let downtime = rng.millis_between(Duration::from_secs(10), self.config.faults.crash_downtime);
            let counters = &self.world.journal.counters;
            if victim < self.config.servers {
                let mut servers = lock(&self.servers);
                let server = &mut servers[victim];
                if !server.up {
                    continue;
                }
                server.up = false;
                let killed = server.in_flight.iter().filter(|h| !h.is_finished()).count();
                for request in server.in_flight.drain(..) {
                    request.abort();
                }
                Counters::bump(&counters.server_crashes);
                self.world.journal.record(
                    Actor::Chaos,
                    format!("crashes server {victim} ({killed} requests killed) for {}", fmt_secs(downtime)),
                    None,
                    &[],
                );
                let cluster = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(downtime).await;
                    lock(&cluster.servers)[victim].up = true;
                    cluster.world.journal.record(Actor::Chaos, format!("restarts server {victim}"), None, &[]);
                });
            } else {
                let i = victim - self.config.servers;
                let Some(daemon) = lock(&self.cleaners)[i].daemon.take() else { continue };
                daemon.abort();
                Counters::bump(&counters.cleaner_crashes);
                self.world.journal.record(
                    Actor::Chaos,
                    format!("crashes cleaner {i} for {}", fmt_secs(downtime)),
                    None,
                    &[],
                );
                let cluster = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(downtime).await;
                    cluster.start_cleaner(i);
                });
            }
        }
    }

    /// A client: `ops` requests, each to a random server for a random user, with a
    /// random pause before each.
    async fn client(self: Arc<Self>, index: usize, ops: usize, mut rng: SimRng) {
        let me = Actor::Client(index);
        let journal = &self.world.journal;
        for _ in 0..ops {
            if journal.failed() {
                return;
            }
            tokio::time::sleep(rng.millis_up_to(self.config.think_time)).await;
            // Skewed popularity: low-numbered users are busy, high-numbered ones rarely
            // act, so both fresh and hours-old images get replaced.
            let u = rng.unit();
            let index = ((u * u * self.config.users as f64) as usize).min(self.config.users - 1);
            let user = UserId::parse(&format!("user-{index}")).expect("simulated user ids are valid");
            let server = rng.below(self.config.servers as u64) as usize;
            let kind = rng.below(100);
            let (service, deadline) = {
                let servers = lock(&self.servers);
                let s = &servers[server];
                if !s.up {
                    Counters::bump(&journal.counters.refused);
                    journal.record(me, format!("server {server} is down; {user}'s request refused"), Some(&user), &[]);
                    continue;
                }
                (s.service.clone(), journal.elapsed() + self.config.timings.request_timeout)
            };
            // With updates on, a tenth of the operations are updates, taken from the
            // writes.
            let writes_below = if self.config.patches { 35 } else { 45 };
            if kind < writes_below {
                let n = self.next_write.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let profile = NewProfile {
                    metadata: format!("{{\"write\":\"{}\"}}", super::checks::write_tag(&user, n)),
                    image: Bytes::from(format!("sim-image:{}", super::checks::write_tag(&user, n))),
                    content_type: "image/png".into(),
                };
                journal.record(me, format!("→ server {server}: write #{n} for {user}"), Some(&user), &[]);
                let u = user.clone();
                let answer = self.serve(server, deadline, async move { service.write(u, profile).await }).await;
                self.on_write(me, &user, n, answer);
            } else if kind < 45 {
                let n = self.next_write.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                journal.record(me, format!("→ server {server}: update #{n} of {user}"), Some(&user), &[]);
                let u = user.clone();
                let change = move |metadata: &str| {
                    super::checks::updated(metadata, n)
                        .ok_or_else(|| InvalidInput::new("invalid_metadata", "not a simulated profile's metadata"))
                };
                let update = async move { service.update_metadata(&u, &Condition::None, change).await };
                let answer = self.serve(server, deadline, update).await;
                super::checks::log_update(journal, me, &user, n, answer);
            } else if kind < 90 {
                journal.record(me, format!("→ server {server}: read {user}"), Some(&user), &[]);
                let u = user.clone();
                let answer = self.serve(server, deadline, async move { service.read(&u).await }).await;
                self.on_read(me, &user, answer);
            } else {
                journal.record(me, format!("→ server {server}: delete {user}"), Some(&user), &[]);
                let u = user.clone();
                let answer = self.serve(server, deadline, async move { service.delete(&u).await }).await;
                match answer {
                    Some(Ok(existed)) => {
                        Counters::bump(&journal.counters.deletes);
                        journal.record(me, format!("← delete {user}: {existed}"), Some(&user), &[]);
                    }
                    Some(Err(e)) => {
                        Counters::bump(&journal.counters.deletes);
                        journal.record(me, format!("← delete {user}: {}", e.code()), Some(&user), &[]);
                    }
                    None => Counters::bump(&journal.counters.deletes),
                }
            }
        }
    }

    /// Runs `request` as a task of `server` (so a crash kills it); `None` when it was
    /// killed.
    async fn serve<T: Send + 'static>(
        &self,
        server: usize,
        deadline: Duration,
        request: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let task = tokio::spawn(REQUEST_DEADLINE.scope(deadline, request));
        {
            let mut servers = lock(&self.servers);
            let s = &mut servers[server];
            s.in_flight.retain(|h| !h.is_finished());
            s.in_flight.push(task.abort_handle());
        }
        match task.await {
            Ok(answer) => Some(answer),
            Err(_) => {
                Counters::bump(&self.world.journal.counters.requests_killed);
                None
            }
        }
    }

    fn on_write(
        &self,
        me: Actor,
        user: &UserId,
        n: u64,
        answer: Option<Result<profilestore_core::store::Record, ServiceError>>,
    ) {
        let journal = &self.world.journal;
        match answer {
            Some(Ok(record)) => {
                Counters::bump(&journal.counters.writes_ok);
                journal.record(
                    me,
                    format!("← write #{n} for {user}: ok, names {}", short(&record.image_id)),
                    Some(user),
                    &[record.image_id],
                );
            }
            Some(Err(e)) => {
                Counters::bump(&journal.counters.writes_failed);
                journal.record(me, format!("← write #{n} for {user}: {}", e.code()), Some(user), &[]);
            }
            None => {
                Counters::bump(&journal.counters.writes_failed);
                journal.record(me, format!("← write #{n} for {user}: connection lost"), Some(user), &[]);
            }
        }
    }

    fn on_read(
        &self,
        me: Actor,
        user: &UserId,
        answer: Option<Result<Option<profilestore_core::service::Profile>, ServiceError>>,
    ) {
        super::checks::check_read(&self.world.journal, me, user, answer);
    }

    /// Writes have stopped: no more faults or crashes, every cleaner running, and
    /// long enough for every orphan to be found old, waited on and deleted twice over;
    /// then no image may be left unreferenced.
    async fn drain(&self) {
        let journal = &self.world.journal;
        self.world.calm_down();
        for i in 0..self.config.cleaners {
            self.start_cleaner(i);
        }
        let drain = self.config.drain();
        journal.record(
            Actor::Checker,
            format!("writes stopped; cleaners run calmly for {}", fmt_secs(drain)),
            None,
            &[],
        );
        tokio::time::sleep(drain).await;
        self.world.check_no_orphans();
    }
}

/// The process whose clock leaves the bound, and how, when the fault is on: any
/// process, either way, from some moment in the first 12 hours on.
fn rogue_clock(config: &SimConfig, rates: &FaultRates) -> Option<(usize, Rogue)> {
    if rates.clock_beyond_bound.is_zero() {
        return None;
    }
    let mut rng = SimRng::derive(config.seed, "rogue clock");
    let who = rng.below((2 + config.servers + config.cleaners) as u64) as usize;
    let beyond = config.timings.clock_skew / 2 + rates.clock_beyond_bound;
    let offset = i64::try_from(beyond.as_millis()).unwrap_or(i64::MAX / 4);
    let offset_ms = if rng.chance(0.5) { offset } else { -offset };
    let from = rng.millis_up_to(Duration::from_secs(12 * 3600));
    Some((who, Rogue { from, offset_ms }))
}

/// Process `i`: the database, the blob store, the servers, then the cleaners.
fn process_name(config: &SimConfig, i: usize) -> String {
    match i {
        0 => "the database".into(),
        1 => "the blob store".into(),
        i if i < 2 + config.servers => format!("server {}", i - 2),
        i => format!("cleaner {}", i - 2 - config.servers),
    }
}

fn fmt_secs(d: Duration) -> String {
    profilestore_core::settings::fmt_duration(Duration::from_secs(d.as_secs()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
