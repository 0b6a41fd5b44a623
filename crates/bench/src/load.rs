//! The closed-loop load generator, and the runner that alternates a floor with its
//! product run by run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use profilestore_core::time::Clock;

use crate::error::BenchError;
use crate::stats::RunStats;

/// One operation of a load: given a sequence number unique within the run (clients
/// draw them from one counter, so consecutive operations pick different users),
/// performs it and says why it failed, if it did.
pub type Operation = Arc<dyn Fn(u64) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Runs `op` from `clients` concurrent clients, each issuing its next operation as
/// soon as the previous one answered, until `run_time` has passed (at least one
/// operation each); then waits for the operations in flight. `label` names the side in errors.
///
/// Errs only when no operation succeeded: a product that fails some operations is a
/// fact to report (`errors`), not a broken harness.
pub async fn closed_loop(
    label: &str,
    clock: &Arc<dyn Clock>,
    clients: usize,
    run_time: Duration,
    op: &Operation,
) -> Result<RunStats, BenchError> {
    let sequence = Arc::new(AtomicU64::new(0));
    let start = clock.ticks();
    let end = start.saturating_add(run_time);
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (clock, op, sequence) = (clock.clone(), op.clone(), sequence.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut errors, mut first_error) = (0u64, None);
                // Every client issues at least one operation, however late a loaded
                // machine starts it.
                loop {
                    let n = sequence.fetch_add(1, Ordering::Relaxed);
                    let began = clock.ticks();
                    let result = op(n).await;
                    let ended = clock.ticks();
                    match result {
                        Ok(()) => latencies.push(ended.saturating_sub(began)),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                    if ended >= end {
                        break;
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
    for task in tasks {
        let (l, e, f) = task.await.map_err(|e| BenchError::Http(format!("a load client panicked: {e}")))?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let elapsed = clock.ticks().saturating_sub(start);
    if latencies.is_empty() {
        return Err(BenchError::NothingMeasured {
            scenario: label.to_owned(),
            errors,
            first: first_error.unwrap_or_else(|| "no operation ran".into()),
        });
    }
    if let Some(first) = first_error {
        tracing::warn!(side = label, errors, first = %first, "some operations failed");
    }
    Ok(RunStats::from_latencies(latencies, errors, elapsed))
}

/// Which side of a pair a run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The baseline: the same store operations issued directly.
    Floor,
    /// What is being measured against it.
    Product,
}

/// The runs of one pair, in the order they were taken.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interleaved<T> {
    /// The floor's runs, in order.
    pub floor: Vec<T>,
    /// The product's runs, in order.
    pub product: Vec<T>,
    /// Which side each timed run measured, in the order they ran.
    pub order: Vec<Side>,
}

/// Runs `floor` and `product` `runs` times each, alternating (floor, product, floor,
/// …), so slow drift of a noisy machine (other builds, caches, a growing store) falls
/// on both sides alike. Each closure is called with the run's index.
pub async fn interleave<T, F, P>(runs: usize, mut floor: F, mut product: P) -> Result<Interleaved<T>, BenchError>
where
    F: FnMut(usize) -> BoxFuture<'static, Result<T, BenchError>>,
    P: FnMut(usize) -> BoxFuture<'static, Result<T, BenchError>>,
{
    let mut out = Interleaved { floor: Vec::new(), product: Vec::new(), order: Vec::new() };
    for run in 0..runs {
        out.floor.push(floor(run).await?);
        out.order.push(Side::Floor);
        out.product.push(product(run).await?);
        out.order.push(Side::Product);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn the_sides_alternate_and_each_runs_the_asked_number_of_times() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, b) = (log.clone(), log.clone());
        let out = interleave(
            3,
            move |i| {
                a.lock().unwrap().push(("floor", i));
                async move { Ok(i) }.boxed()
            },
            move |i| {
                b.lock().unwrap().push(("product", i));
                async move { Ok(10 + i) }.boxed()
            },
        )
        .await
        .unwrap();
        assert_eq!(out.floor, vec![0, 1, 2]);
        assert_eq!(out.product, vec![10, 11, 12]);
        assert_eq!(out.order, [Side::Floor, Side::Product].repeat(3));
        let expected: Vec<_> = (0..3).flat_map(|i| [("floor", i), ("product", i)]).collect();
        assert_eq!(*log.lock().unwrap(), expected);
    }

    #[tokio::test]
    async fn a_load_where_every_operation_fails_measured_nothing() {
        let clock: Arc<dyn Clock> = Arc::new(profilestore_runtime::SystemClock::new());
        let op: Operation = Arc::new(|_| async { Err("refused".to_string()) }.boxed());
        let err = closed_loop("test", &clock, 2, Duration::from_millis(20), &op).await.unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn every_client_draws_distinct_sequence_numbers() {
        let clock: Arc<dyn Clock> = Arc::new(profilestore_runtime::SystemClock::new());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let op: Operation = Arc::new(move |n| {
            s.lock().unwrap().push(n);
            async {
                tokio::task::yield_now().await;
                Ok(())
            }
            .boxed()
        });
        let stats = closed_loop("test", &clock, 4, Duration::from_millis(30), &op).await.unwrap();
        let mut seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len() as u64, stats.ops);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as u64, stats.ops, "a sequence number was handed out twice");
    }
}
