//! What incremental cleaning costs a write: the superseded-image queue's statement,
//! and on the local directory the listing journal's append.
//!
//! The queue. Its statement runs inside the
//! record's own transaction and only when the write replaces a record naming another
//! image (or a delete removes one), so it cannot be switched off to measure a floor
//! without it. Measured instead: a record write that replaces (the statement fires)
//! against a first write of a new user (it does not), one client, alternating. The
//! difference bounds the statement's cost from above: a replace also rewrites a row
//! where a first write inserts one.

use std::sync::Arc;

use futures::FutureExt;
use profilestore_core::ids::{BlobKey, IdSource, ImageId, UserId};
use profilestore_core::store::BlobStore;
use profilestore_core::store::{CommitOutcome, MetadataStore, Record};
use profilestore_core::time::{Clock, Deadline};
use profilestore_runtime::UuidV7Ids;
use profilestore_stores::LocalBlobStore;

use super::fixture::{Fixture, minted_at};
use crate::config::BenchConfig;
use crate::error::BenchError;
use crate::fixture::METADATA;
use crate::load::{Interleaved, Operation, closed_loop, interleave};
use crate::stats::{RunStats, Spread, ratio};

/// How many users the replacing side rewrites in turn.
const REWRITTEN: u64 = 100;

/// First writes (`floor`) against replacements (`product`), record commits only.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WriteCost {
    /// Each side's runs, one client for the run time each.
    pub runs: Interleaved<RunStats>,
    /// A replacement's p50 over a first write's, run by run.
    pub p50_ratio: Option<Spread>,
}

struct Writer {
    metadata: Arc<dyn MetadataStore>,
    clock: Arc<dyn Clock>,
    timings: profilestore_core::settings::Timings,
    tag: String,
}

impl Writer {
    async fn write(&self, user: UserId, image_id: ImageId) -> Result<(), String> {
        let record = Record {
            user_id: user,
            metadata: METADATA.to_owned(),
            image_id,
            content_type: "image/png".to_owned(),
            image_size: crate::fixture::image(0).len() as u64,
            updated_at: self.clock.now(),
        };
        let deadline = Deadline::after(self.clock.clone(), self.timings.request_timeout).under(self.timings);
        match self.metadata.put_before(&record, &deadline).await {
            Ok(CommitOutcome::Committed) => Ok(()),
            Ok(other) => Err(format!("not committed: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn user(&self, kind: &str, n: u64) -> UserId {
        UserId::parse(&format!("inc-{}-{kind}-{n:08}", self.tag)).expect("valid user id")
    }
}

/// Measures both sides on the fixture's metadata store, after the cycles.
pub(super) async fn measure(fixture: &Fixture, config: &BenchConfig) -> Result<WriteCost, BenchError> {
    let stores = &fixture.stores;
    let writer = Arc::new(Writer {
        metadata: stores.metadata.clone(),
        clock: stores.clock.clone(),
        timings: stores.timings,
        tag: format!("{:08x}", crate::fixture::fresh_u128() as u32),
    });
    let rewriter = writer.clone();
    for n in 0..REWRITTEN {
        fixture.put_record(writer.user("hot", n), minted_at(stores.clock.now())).await?;
    }
    // Each run's first writes go to users of its own: a second run must not rewrite them.
    let first = move |run: usize| -> Operation {
        let w = writer.clone();
        Arc::new(move |n| {
            let w = w.clone();
            async move { w.write(w.user(&format!("first{run}"), n), minted_at(w.clock.now())).await }.boxed()
        })
    };
    let replace: Operation = {
        let w = rewriter;
        Arc::new(move |n| {
            let w = w.clone();
            async move { w.write(w.user("hot", n % REWRITTEN), minted_at(w.clock.now())).await }.boxed()
        })
    };
    let replace = move |_| replace.clone();
    one_client_each(stores.clock.clone(), config, ("first writes", first), ("replacements", replace)).await
}

/// `floor` and `product`, each the operation its run number names, one client for
/// the run time each, alternating; the product's p50 over the floor's, run by run.
async fn one_client_each(
    clock: Arc<dyn Clock>,
    config: &BenchConfig,
    floor: (&'static str, impl Fn(usize) -> Operation + Send + Sync + 'static),
    product: (&'static str, impl Fn(usize) -> Operation + Send + Sync + 'static),
) -> Result<WriteCost, BenchError> {
    let run_time = config.run_time;
    let (c1, c2) = (clock.clone(), clock);
    let runs = interleave(
        config.runs,
        move |run| {
            let (op, clock, name) = (floor.1(run), c1.clone(), floor.0);
            async move { closed_loop(name, &clock, 1, run_time, &op).await }.boxed()
        },
        move |run| {
            let (op, clock, name) = (product.1(run), c2.clone(), product.0);
            async move { closed_loop(name, &clock, 1, run_time, &op).await }.boxed()
        },
    )
    .await?;
    let p50_ratio = Spread::of(runs.floor.iter().zip(&runs.product).map(|(f, p)| ratio(p.p50_us, f.p50_us)));
    Ok(WriteCost { runs, p50_ratio })
}

/// Blob puts of the fixture's image through the local directory's store with its
/// listing journal (`product`) against the same store without it (`floor`), one
/// client, alternating; `None` when the blobs are not a local directory.
pub(super) async fn measure_journal(fixture: &Fixture, config: &BenchConfig) -> Result<Option<WriteCost>, BenchError> {
    let Some(journaled) = fixture.stores.local_blobs().await? else { return Ok(None) };
    let unjournaled = journaled.clone().without_journal();
    let image = crate::fixture::image(config.image_size);
    let put = |store: LocalBlobStore| -> Operation {
        let (store, image) = (Arc::new(store), image.clone());
        Arc::new(move |_| {
            let (store, image) = (store.clone(), image.clone());
            async move {
                let key = BlobKey::original(UuidV7Ids.next_image_id());
                store.put_new(&key, image).await.map_err(|e| e.to_string())
            }
            .boxed()
        })
    };
    let (without, with) = (put(unjournaled), put(journaled));
    let (without, with) = (move |_| without.clone(), move |_| with.clone());
    let clock = fixture.stores.clock.clone();
    Ok(Some(
        one_client_each(
            clock,
            config,
            ("blob puts without the journal", without),
            ("blob puts with the journal", with),
        )
        .await?,
    ))
}
