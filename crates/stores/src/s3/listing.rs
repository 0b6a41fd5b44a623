//! Listing an S3 store in parallel across its key space, in key order.
//!
//! One delimiter listing of the store's root names the objects directly under it
//! (the pairing marker's and clock probe's folder, foreign keys) and its common
//! prefixes (the 256 shards, and any foreign folder); each common prefix is then listed
//! by a task of its own, at most `concurrency` tasks at a time.
//!
//! The output is exactly what one sequential `ListObjectsV2` walk returns, in the same
//! order: root objects and prefixes are merged by key, and each prefix's keys come out
//! whole before the next prefix's. The cleaner's grouping depends on that (an image's
//! keys must be adjacent).
//!
//! Bounds: the driver starts a prefix's task only once it holds one of `concurrency`
//! permits, taken in key order; the permit travels with the prefix to the consumer,
//! which releases it when it has read the prefix's last page. Each task's channel
//! holds at most [`PREFETCH_PAGES`] server pages. So at most `concurrency` prefixes are
//! listed or waiting to be read at once (and as many list requests run, besides the
//! driver's own), and the pages held stay within [`max_pages_held`] whatever the
//! store's size. No deadlock: the consumer reads prefixes in key order, the prefix it
//! reads is always one that holds a permit (its task started), and reading it to the
//! end is what frees the next permit.
//!
//! Failure and cancellation: the first error (a request that failed after the client's
//! retries, a key outside the prefix, a task that stopped without finishing) ends the
//! stream with that error. Dropping the stream aborts the driver and every task.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::{self, BoxStream, StreamExt};
use object_store::ObjectMeta;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use profilestore_core::error::StoreError;
use profilestore_core::store::ListedBlob;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::S3BlobStore;

/// How many prefixes are listed at once when the options do not say.
pub const DEFAULT_LIST_CONCURRENCY: usize = 8;

/// The most prefixes listed at once that the options may ask for.
pub const MAX_LIST_CONCURRENCY: usize = 64;

/// Server pages (≤ 1000 keys each) a prefix's task may list ahead of the consumer.
pub const PREFETCH_PAGES: usize = 2;

/// The most pages a listing at `concurrency` holds at once: for each prefix holding a
/// permit, its channel and the page its task waits to send; and the root pages queued
/// between the driver and the consumer (at most `concurrency` queued, one being sent).
pub const fn max_pages_held(concurrency: usize) -> usize {
    concurrency * (PREFETCH_PAGES + 1) + concurrency + 1
}

/// What the parallel listings of one store have done, for tests and measurements.
///
/// Promises: `pages_held` counts the listed pages fetched but not yet handed to the
/// stream's reader (or dropped); `tasks` counts prefix tasks started and still
/// listing (an aborted task until the runtime drops it); the peaks are the largest values since the store was opened or
/// [`reset_peaks`](Self::reset_peaks) was called. Shared by every clone of the store.
#[derive(Debug, Default)]
pub struct ListingStats {
    pages_held: AtomicUsize,
    peak_pages_held: AtomicUsize,
    tasks: AtomicUsize,
    peak_tasks: AtomicUsize,
    /// Woken whenever a task stops listing or a page is let go.
    went_down: Notify,
}

impl ListingStats {
    /// Pages fetched and not yet handed on.
    pub fn pages_held(&self) -> usize {
        self.pages_held.load(Ordering::SeqCst)
    }

    /// The most pages held at once.
    pub fn peak_pages_held(&self) -> usize {
        self.peak_pages_held.load(Ordering::SeqCst)
    }

    /// Prefix-listing tasks still listing.
    pub fn tasks(&self) -> usize {
        self.tasks.load(Ordering::SeqCst)
    }

    /// The most prefix-listing tasks listing at once.
    pub fn peak_tasks(&self) -> usize {
        self.peak_tasks.load(Ordering::SeqCst)
    }

    /// Starts the peaks over from the current values.
    pub fn reset_peaks(&self) {
        self.peak_pages_held.store(self.pages_held(), Ordering::SeqCst);
        self.peak_tasks.store(self.tasks(), Ordering::SeqCst);
    }

    /// Returns once no prefix-listing task is listing (a dropped listing's tasks stop
    /// when the runtime next drops aborted tasks, not at the drop itself).
    pub async fn tasks_stopped(&self) {
        self.until(|stats| stats.tasks() == 0).await;
    }

    /// Returns once no task is listing and no page is held: what a dropped listing
    /// leaves once the runtime has dropped its tasks.
    pub async fn released(&self) {
        self.until(|stats| stats.tasks() == 0 && stats.pages_held() == 0).await;
    }

    /// Returns once `done` holds, checking it whenever a count goes down.
    async fn until(&self, done: impl Fn(&ListingStats) -> bool) {
        loop {
            let went_down = self.went_down.notified();
            let mut went_down = std::pin::pin!(went_down);
            // Registered before the check, so a change between the check and the wait
            // still wakes us.
            went_down.as_mut().enable();
            if done(self) {
                return;
            }
            went_down.await;
        }
    }

    fn up(count: &AtomicUsize, peak: &AtomicUsize) {
        let now = count.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
    }
}

/// A listed page, counted in [`ListingStats::pages_held`] until taken or dropped.
struct Held {
    blobs: Vec<ListedBlob>,
    stats: Arc<ListingStats>,
}

impl Held {
    fn new(blobs: Vec<ListedBlob>, stats: &Arc<ListingStats>) -> Held {
        ListingStats::up(&stats.pages_held, &stats.peak_pages_held);
        Held { blobs, stats: stats.clone() }
    }

    fn take(mut self) -> Vec<ListedBlob> {
        std::mem::take(&mut self.blobs)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats.pages_held.fetch_sub(1, Ordering::SeqCst);
        self.stats.went_down.notify_waiters();
    }
}

/// Counts a prefix task in [`ListingStats::tasks`] from before it is spawned until it
/// has listed its last page (dropped before the last send, so the count is down before
/// the consumer can free the task's permit) or the runtime drops it.
struct TaskAlive(Arc<ListingStats>);

impl TaskAlive {
    fn new(stats: &Arc<ListingStats>) -> TaskAlive {
        ListingStats::up(&stats.tasks, &stats.peak_tasks);
        TaskAlive(stats.clone())
    }
}

impl Drop for TaskAlive {
    fn drop(&mut self) {
        self.0.tasks.fetch_sub(1, Ordering::SeqCst);
        self.0.went_down.notify_waiters();
    }
}

/// A spawned task that is aborted when this handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a prefix task sends: a page, `None` once the prefix is done, or the error
/// that ended it.
type PrefixPage = Result<Option<Held>, StoreError>;

/// What the driver sends, in key order.
enum Part {
    /// Objects directly under the root, in key order.
    Objects(Held),
    /// A common prefix, its keys arriving from its own task; the permit is released
    /// when the consumer drops this part, having read the prefix to its end.
    Prefix(PrefixReading),
    /// The root listing is complete.
    End,
    /// The listing failed.
    Failed(StoreError),
}

/// Every object of `store`, as server pages in key order, listed `concurrency`
/// prefixes at a time (see the module's doc). With `skip_through`, each common
/// prefix `p/` is listed only after the key `p/{skip_through}` (S3's `StartAfter`),
/// so a shard's older images cost no request. Starts nothing until first polled.
pub(super) fn parallel(
    store: Arc<S3BlobStore>,
    concurrency: usize,
    skip_through: Option<Arc<str>>,
) -> BoxStream<'static, Result<Vec<ListedBlob>, StoreError>> {
    enum State {
        NotStarted(Arc<S3BlobStore>, Option<Arc<str>>),
        Reading(Reader),
        Done,
    }
    stream::unfold(State::NotStarted(store, skip_through), move |state| async move {
        let mut reader = match state {
            State::NotStarted(store, skip_through) => {
                let (parts, reading) = mpsc::channel(concurrency.max(1));
                let driver = AbortOnDrop(tokio::spawn(drive(store, concurrency.max(1), skip_through, parts)));
                Reader { parts: reading, current: None, _driver: driver }
            }
            State::Reading(reader) => reader,
            State::Done => return None,
        };
        match reader.next().await {
            Some(Ok(page)) => Some((Ok(page), State::Reading(reader))),
            // Dropping the reader aborts the driver and every task.
            Some(Err(e)) => Some((Err(e), State::Done)),
            None => None,
        }
    })
    .boxed()
}

/// One prefix's pages, its task and its permit.
struct PrefixReading {
    pages: mpsc::Receiver<PrefixPage>,
    _task: AbortOnDrop,
    _permit: OwnedSemaphorePermit,
}

/// The consumer's side: the parts in key order, and the prefix being read.
struct Reader {
    parts: mpsc::Receiver<Part>,
    current: Option<PrefixReading>,
    _driver: AbortOnDrop,
}

impl Reader {
    /// The next page, `None` at the end, or the error that ends the listing.
    async fn next(&mut self) -> Option<Result<Vec<ListedBlob>, StoreError>> {
        loop {
            if let Some(reading) = &mut self.current {
                match reading.pages.recv().await {
                    Some(Ok(Some(page))) => return Some(Ok(page.take())),
                    // Frees the permit: the next prefix may start.
                    Some(Ok(None)) => self.current = None,
                    Some(Err(e)) => return Some(Err(e)),
                    // A task never drops its sender before sending `None` or an error
                    // unless it panicked or was aborted: the prefix is incomplete.
                    None => return Some(Err(stopped("a prefix's listing task"))),
                }
                continue;
            }
            match self.parts.recv().await {
                Some(Part::Objects(page)) => return Some(Ok(page.take())),
                Some(Part::Prefix(reading)) => self.current = Some(reading),
                Some(Part::End) => return None,
                Some(Part::Failed(e)) => return Some(Err(e)),
                None => return Some(Err(stopped("the listing's driver"))),
            }
        }
    }
}

fn stopped(what: &str) -> StoreError {
    StoreError::unavailable(format!("listing blobs: {what} stopped before the listing was complete"))
}

/// Lists the root with a delimiter, page by page, and sends its objects and prefixes
/// in key order, starting each prefix's task once it holds a permit.
async fn drive(
    store: Arc<S3BlobStore>,
    concurrency: usize,
    skip_through: Option<Arc<str>>,
    parts: mpsc::Sender<Part>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let root = store.location.prefix.as_ref().map(|p| format!("{p}/"));
    let mut token = None;
    loop {
        let options =
            PaginatedListOptions { delimiter: Some(Cow::Borrowed("/")), page_token: token, ..Default::default() };
        let page = match store.s3.list_paginated(root.as_deref(), options).await {
            Ok(page) => page,
            Err(e) => {
                let _ = parts.send(Part::Failed(store.error("listing blobs", e))).await;
                return;
            }
        };
        for item in in_key_order(page.result.objects, page.result.common_prefixes) {
            let part = match item {
                RootItem::Objects(objects) => match objects.into_iter().map(|m| store.listed(m)).collect() {
                    Ok(blobs) => Part::Objects(Held::new(blobs, &store.stats)),
                    Err(e) => Part::Failed(e),
                },
                RootItem::Prefix(prefix) => {
                    // Taken here, one prefix after the other, so permits go in key order
                    // (the order the consumer reads in), whatever order the runtime runs
                    // tasks in. The semaphore is never closed.
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let (send, pages) = mpsc::channel(PREFETCH_PAGES);
                    let alive = TaskAlive::new(&store.stats);
                    let prefix = format!("{prefix}/");
                    let start_after = skip_through.as_deref().map(|bound| format!("{prefix}{bound}"));
                    let task = tokio::spawn(list_prefix(store.clone(), prefix, start_after, send, alive));
                    Part::Prefix(PrefixReading { pages, _task: AbortOnDrop(task), _permit: permit })
                }
            };
            let failed = matches!(part, Part::Failed(_));
            // A closed channel means the stream was dropped: stop.
            if parts.send(part).await.is_err() || failed {
                return;
            }
        }
        match page.page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let _ = parts.send(Part::End).await;
}

/// Lists everything under `prefix` (which ends in `/`) after the key `start_after`
/// if given, sending each server page, then `None`; or the error that stopped it.
async fn list_prefix(
    store: Arc<S3BlobStore>,
    prefix: String,
    start_after: Option<String>,
    pages: mpsc::Sender<PrefixPage>,
    alive: TaskAlive,
) {
    let mut token = None;
    loop {
        let options = PaginatedListOptions { page_token: token, offset: start_after.clone(), ..Default::default() };
        let listed = match store.s3.list_paginated(Some(&prefix), options).await {
            Ok(page) => page
                .result
                .objects
                .into_iter()
                .map(|m| store.listed(m))
                .collect::<Result<Vec<_>, _>>()
                .map(|blobs| (blobs, page.page_token)),
            Err(e) => Err(store.error("listing blobs", e)),
        };
        match listed {
            Ok((blobs, next)) => {
                // A closed channel means the listing was dropped: stop.
                if !blobs.is_empty() && pages.send(Ok(Some(Held::new(blobs, &store.stats)))).await.is_err() {
                    return;
                }
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
            Err(e) => {
                drop(alive);
                let _ = pages.send(Err(e)).await;
                return;
            }
        }
    }
    drop(alive);
    let _ = pages.send(Ok(None)).await;
}

/// One step of the root listing, in key order.
#[derive(Debug, PartialEq)]
enum RootItem {
    /// A run of objects with no prefix between them.
    Objects(Vec<ObjectMeta>),
    /// A common prefix (without its trailing `/`).
    Prefix(Path),
}

/// One root page's objects and prefixes merged into the order a sequential listing
/// returns their keys in: a prefix `p` sorts where `p/` does, since every key under
/// it starts with `p/` and no root object contains a `/` after the root.
fn in_key_order(mut objects: Vec<ObjectMeta>, mut prefixes: Vec<Path>) -> Vec<RootItem> {
    objects.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    prefixes.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut items = Vec::new();
    let mut objects = objects.into_iter().peekable();
    for prefix in prefixes {
        let slashed = format!("{prefix}/");
        let run: Vec<ObjectMeta> =
            std::iter::from_fn(|| objects.next_if(|o| o.location.as_ref() < slashed.as_str())).collect();
        if !run.is_empty() {
            items.push(RootItem::Objects(run));
        }
        items.push(RootItem::Prefix(prefix));
    }
    let rest: Vec<ObjectMeta> = objects.collect();
    if !rest.is_empty() {
        items.push(RootItem::Objects(rest));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str) -> ObjectMeta {
        ObjectMeta { location: Path::from(key), last_modified: Default::default(), size: 0, e_tag: None, version: None }
    }

    fn keys(items: &[RootItem]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                RootItem::Objects(run) => run.iter().map(|o| o.location.to_string()).collect::<Vec<_>>().join(","),
                RootItem::Prefix(p) => format!("{p}/*"),
            })
            .collect()
    }

    #[test]
    fn root_objects_and_prefixes_merge_in_the_order_of_a_sorted_listing() {
        // `ab` sorts before `ab/…`, `ab/…` before `ab0` and `ab_` ('/' is below both).
        let items = in_key_order(
            vec![object("zz"), object("ab"), object("ab0"), object("_x"), object("ab_"), object("00")],
            vec![Path::from("ff"), Path::from("ab"), Path::from("_profilestore")],
        );
        assert_eq!(keys(&items), ["00", "_profilestore/*", "_x,ab", "ab/*", "ab0,ab_", "ff/*", "zz"]);
        assert_eq!(keys(&in_key_order(vec![], vec![Path::from("a")])), ["a/*"]);
        assert_eq!(keys(&in_key_order(vec![object("a")], vec![])), ["a"]);
        assert!(in_key_order(vec![], vec![]).is_empty());
    }

    #[test]
    fn the_page_bound_grows_with_concurrency_only() {
        assert_eq!(max_pages_held(1), PREFETCH_PAGES + 3);
        assert!(max_pages_held(8) < 8 * 5);
    }
}
