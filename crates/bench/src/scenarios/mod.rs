//! The latency scenarios: each pairs a product with its floor on the same stores and
//! runs them interleaved at each client count.

pub(crate) mod http;
pub(crate) mod library;
pub(crate) mod raw;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use profilestore_core::settings::Timings;

use crate::config::{BenchConfig, Scenario};
use crate::error::BenchError;
use crate::fixture::{self, Stores};
use crate::load::{Interleaved, Operation, closed_loop, interleave};
use crate::stats::{RunStats, Spread, ratio};

/// One product measured against its floor at one client count.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairResult {
    /// The scenario (its product's name).
    pub scenario: Scenario,
    /// What the product is measured against.
    pub floor: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Every timed run of both sides, and the order they ran in.
    pub runs: Interleaved<RunStats>,
    /// Product p50 latency over floor p50 latency, run by run: above 1 the product is
    /// slower.
    pub latency_ratio: Option<Spread>,
    /// Product throughput over floor throughput, run by run: below 1 the product is
    /// slower.
    pub throughput_ratio: Option<Spread>,
}

impl PairResult {
    /// A side's median of `field` across its runs.
    pub fn median(&self, product: bool, field: impl Fn(&RunStats) -> f64) -> f64 {
        let runs = if product { &self.runs.product } else { &self.runs.floor };
        Spread::of(runs.iter().map(field)).map_or(f64::NAN, |s| s.median)
    }
}

/// The two sides of a scenario, ready to run, and whatever must live as long as they
/// do (the server).
struct Sides {
    floor: Operation,
    product: Operation,
}

/// Runs `scenario` at each of the configured client counts.
pub(crate) async fn run(config: &BenchConfig, scenario: Scenario) -> Result<Vec<PairResult>, BenchError> {
    let mut out = Vec::new();
    for &clients in &config.clients {
        // Fresh embedded stores for each client count: every write leaves a blob, and a
        // full-size run would otherwise pile up gigabytes before its last pair.
        let stores = Stores::open(&config.stores, Timings::default()).await?;
        let sides = sides(config, scenario, &stores).await?;
        eprintln!("bench: {scenario} vs {} at {clients} clients", scenario.floor_name());
        let warm_up = (config.run_time / 10).min(Duration::from_secs(1));
        for (label, op) in [("floor warm-up", &sides.floor), ("product warm-up", &sides.product)] {
            closed_loop(label, &stores.clock, clients, warm_up, op).await?;
        }
        let timed = |label: String, op: Operation| {
            let (clock, run_time) = (stores.clock.clone(), config.run_time);
            move |run: usize| {
                let (label, op, clock) = (format!("{label} run {run}"), op.clone(), clock.clone());
                async move { closed_loop(&label, &clock, clients, run_time, &op).await }.boxed()
            }
        };
        let runs = interleave(
            config.runs,
            timed(format!("{} ({clients} clients)", scenario.floor_name()), sides.floor.clone()),
            timed(format!("{scenario} ({clients} clients)"), sides.product.clone()),
        )
        .await?;
        let pairs = || runs.floor.iter().zip(&runs.product);
        let latency_ratio = Spread::of(pairs().map(|(f, p)| ratio(p.p50_us, f.p50_us)));
        let throughput_ratio = Spread::of(pairs().map(|(f, p)| ratio(p.throughput, f.throughput)));
        out.push(PairResult {
            scenario,
            floor: scenario.floor_name().to_owned(),
            clients,
            runs,
            latency_ratio,
            throughput_ratio,
        });
    }
    Ok(out)
}

/// Builds both sides of `scenario` over `stores`, seeding the users reads need.
async fn sides(config: &BenchConfig, scenario: Scenario, stores: &Stores) -> Result<Sides, BenchError> {
    let users = fixture::users(config.users);
    let image = fixture::image(config.image_size);
    let service = stores.service();
    if matches!(scenario, Scenario::ReadLibrary | Scenario::ReadHttp) {
        fixture::seed(&service, &users, &image).await?;
    }
    Ok(match scenario {
        Scenario::WriteLibrary => Sides {
            floor: match raw::write_floor(stores, users.clone(), image.clone()).await? {
                Some(strict) => strict,
                None => library::write_floor(stores, users.clone(), image.clone()),
            },
            product: library::write_library(service, users, image),
        },
        Scenario::WriteHttp => {
            let server = Arc::new(http::Server::start(service.clone()).await?);
            Sides {
                floor: library::write_library(service, users.clone(), image.clone()),
                product: http::write_http(http::client()?, server, users, image),
            }
        }
        Scenario::ReadLibrary => {
            Sides { floor: library::read_floor(stores, users.clone()), product: library::read_library(service, users) }
        }
        Scenario::ReadHttp => {
            let mut images = HashMap::new();
            for user in users.iter() {
                let record = stores.metadata.get(user).await?.ok_or_else(|| {
                    BenchError::Config(format!("seeded user {user} has no record: another writer shares the stores?"))
                })?;
                images.insert(user.clone(), record.image_id);
            }
            let server = Arc::new(http::Server::start(service).await?);
            let client = http::client()?;
            Sides {
                floor: http::get_image(client.clone(), server.clone(), users.clone(), Arc::new(images)),
                product: http::get_profile(client, server, users),
            }
        }
        Scenario::ReadMemory | Scenario::Sweep | Scenario::Incremental | Scenario::S3Listing | Scenario::Model => {
            return Err(BenchError::Config(format!("{scenario} is not a latency scenario")));
        }
    })
}
