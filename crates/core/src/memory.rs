//! In-memory stores for unit tests and simulation. Never a stand-in where a real
//! store is asked for; they keep the same contracts (the conformance suites check).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{StoreError, StoreErrorKind};
use crate::ids::{BlobKey, ImageId, UserId};
use crate::settings::Timings;
use crate::store::{
    BlobStore, CLOCK_PROBE_KEY, ClockProbe, CommitOutcome, DeleteOutcome, IdempotencyKey, KeyedOutcome, ListedBlob,
    MetadataStore, PAIRING_MARKER_KEY, Pairing, Precondition, Record, SupersededClaim, SweepMarks,
};
use crate::time::{Clock, Deadline, Time, Timestamp};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records in a map; the deadline is checked against the injected clock.
pub struct MemoryMetadataStore {
    clock: Arc<dyn Clock>,
    state: Mutex<MetadataState>,
}

#[derive(Default)]
struct MetadataState {
    records: BTreeMap<UserId, Record>,
    pairing: Option<Pairing>,
    /// The timings the process runs under, once bound.
    bound: Option<Timings>,
    /// The superseded-image queue: each id with when a cleaner first saw it.
    superseded: BTreeMap<ImageId, Option<Timestamp>>,
    marks: SweepMarks,
    /// Idempotency keys by (user, key): the record written, its fingerprint, and when
    /// the key expires.
    keys: BTreeMap<(UserId, String), (Record, String, Timestamp)>,
}

impl MetadataState {
    /// The store contract's timings check, under the one lock every call takes.
    fn check_timings(&self, request: Option<&Timings>) -> Result<(), StoreError> {
        let ours = self.bound.as_ref().map(|bound| request.unwrap_or(bound));
        match (ours, &self.pairing) {
            (Some(ours), Some(pairing)) if pairing.timings != *ours => {
                Err(StoreError::new(StoreErrorKind::TimingsChanged, "the cluster's timings changed; nothing was done"))
            }
            _ => Ok(()),
        }
    }
}

impl MemoryMetadataStore {
    /// An empty store whose "database clock" is `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryMetadataStore { clock, state: Mutex::new(MetadataState::default()) }
    }

    /// The guarded write under the store's one lock, held by the caller.
    fn put_locked(
        &self,
        state: &mut MetadataState,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        state.check_timings(deadline.timings())?;
        if self.clock.now() >= deadline.at() || deadline.passed() {
            return Ok(CommitOutcome::DeadlineExceeded);
        }
        if !precondition.holds(state.records.get(&record.user_id).map(|r| (&r.image_id, &r.metadata))) {
            return Ok(CommitOutcome::PreconditionFailed);
        }
        if let Some(old) = state.records.insert(record.user_id.clone(), record.clone())
            && old.image_id != record.image_id
        {
            state.superseded.insert(old.image_id, None);
        }
        Ok(CommitOutcome::Committed)
    }
}

#[async_trait::async_trait]
impl MetadataStore for MemoryMetadataStore {
    async fn get(&self, user: &UserId) -> Result<Option<Record>, StoreError> {
        Ok(lock(&self.state).records.get(user).cloned())
    }

    async fn put_if_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<CommitOutcome, StoreError> {
        self.put_locked(&mut lock(&self.state), record, precondition, deadline)
    }

    async fn put_keyed_before(
        &self,
        record: &Record,
        precondition: &Precondition,
        key: &IdempotencyKey,
        deadline: &Deadline,
    ) -> Result<KeyedOutcome, StoreError> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let slot = (record.user_id.clone(), key.key.clone());
        if let Some((earlier, fingerprint, expires)) = state.keys.get(&slot)
            && now < *expires
        {
            return Ok(KeyedOutcome::Earlier { record: earlier.clone(), fingerprint: fingerprint.clone() });
        }
        let outcome = self.put_locked(&mut state, record, precondition, deadline)?;
        if outcome == CommitOutcome::Committed {
            state.keys.insert(slot, (record.clone(), key.fingerprint.clone(), now.plus(key.keep_for)));
        }
        Ok(outcome.into())
    }

    async fn keyed_record(&self, user: &UserId, key: &str) -> Result<Option<(Record, String)>, StoreError> {
        let now = self.clock.now();
        let state = lock(&self.state);
        Ok(state
            .keys
            .get(&(user.clone(), key.to_owned()))
            .filter(|(_, _, expires)| now < *expires)
            .map(|(record, fingerprint, _)| (record.clone(), fingerprint.clone())))
    }

    fn run_under_timings(&self, timings: &Timings) {
        lock(&self.state).bound = Some(*timings);
    }

    async fn delete_if_before(
        &self,
        user: &UserId,
        precondition: &Precondition,
        deadline: &Deadline,
    ) -> Result<DeleteOutcome, StoreError> {
        let mut state = lock(&self.state);
        state.check_timings(deadline.timings())?;
        if self.clock.now() >= deadline.at() || deadline.passed() {
            return Ok(DeleteOutcome::DeadlineExceeded);
        }
        if let Some(current) = state.records.get(user)
            && !precondition.holds(Some((&current.image_id, &current.metadata)))
        {
            return Ok(DeleteOutcome::PreconditionFailed);
        }
        Ok(match state.records.remove(user) {
            Some(old) => {
                state.superseded.insert(old.image_id, None);
                DeleteOutcome::Deleted
            }
            None => DeleteOutcome::NotFound,
        })
    }

    async fn referenced(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        let wanted: HashSet<ImageId> = ids.iter().copied().collect();
        let state = lock(&self.state);
        state.check_timings(None)?;
        Ok(state.records.values().map(|r| r.image_id).filter(|id| wanted.contains(id)).collect())
    }

    async fn claim_superseded(&self, delete_delay: Duration, limit: usize) -> Result<SupersededClaim, StoreError> {
        let mut state = lock(&self.state);
        state.check_timings(None)?;
        let now = self.clock.now();
        let mut claim = SupersededClaim::default();
        for first_seen in state.superseded.values_mut().filter(|seen| seen.is_none()) {
            *first_seen = Some(now);
            claim.first_seen += 1;
        }
        let named: HashSet<ImageId> = state.records.values().map(|r| r.image_id).collect();
        let mut due: Vec<(Timestamp, ImageId)> = state
            .superseded
            .iter()
            .filter_map(|(id, seen)| seen.filter(|seen| seen.plus(delete_delay) <= now).map(|seen| (seen, *id)))
            .collect();
        due.sort();
        for (_, id) in due.into_iter().take(limit) {
            if named.contains(&id) { claim.named.push(id) } else { claim.due.push(id) }
        }
        Ok(claim)
    }

    async fn forget_superseded(&self, ids: &[ImageId]) -> Result<u64, StoreError> {
        let mut state = lock(&self.state);
        Ok(ids.iter().filter(|id| state.superseded.remove(id).is_some()).count() as u64)
    }

    async fn superseded_among(&self, ids: &[ImageId]) -> Result<HashSet<ImageId>, StoreError> {
        let state = lock(&self.state);
        Ok(ids.iter().copied().filter(|id| state.superseded.contains_key(id)).collect())
    }

    async fn count_superseded(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.state).superseded.len() as u64)
    }

    async fn sweep_marks(&self) -> Result<SweepMarks, StoreError> {
        Ok(lock(&self.state).marks)
    }

    async fn record_sweep(
        &self,
        horizon: Timestamp,
        full_sweep_started: Option<Timestamp>,
    ) -> Result<SweepMarks, StoreError> {
        let mut state = lock(&self.state);
        state.marks = state.marks.advanced(horizon, full_sweep_started);
        Ok(state.marks)
    }

    async fn count_records(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.state).records.len() as u64)
    }

    async fn clock(&self) -> Result<Timestamp, StoreError> {
        Ok(self.clock.now())
    }

    async fn records_after(&self, after: Option<&UserId>, limit: usize) -> Result<Vec<Record>, StoreError> {
        let state = lock(&self.state);
        let records = state.records.values().filter(|r| after.is_none_or(|a| &r.user_id > a));
        Ok(records.take(limit).cloned().collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_pairing(&self) -> Result<Option<Pairing>, StoreError> {
        Ok(lock(&self.state).pairing.clone())
    }

    async fn create_pairing(&self, pairing: &Pairing) -> Result<Pairing, StoreError> {
        Ok(lock(&self.state).pairing.get_or_insert_with(|| pairing.clone()).clone())
    }

    async fn update_timings(&self, cluster_id: uuid::Uuid, timings: &Timings) -> Result<(), StoreError> {
        match lock(&self.state).pairing.as_mut() {
            Some(p) if p.cluster_id == cluster_id => {
                p.timings = *timings;
                Ok(())
            }
            _ => Err(StoreError::new(StoreErrorKind::Misconfigured, "no pairing with that cluster id")),
        }
    }
}

/// Objects in a sorted map, each with the creation time the injected clock gave it.
pub struct MemoryBlobStore {
    clock: Arc<dyn Clock>,
    objects: Mutex<BTreeMap<String, (Bytes, Timestamp)>>,
    /// Staging files an interrupted put left behind: when each was last modified.
    staging: Mutex<Vec<Timestamp>>,
}

impl MemoryBlobStore {
    /// An empty store whose "blob store clock" is `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryBlobStore { clock, objects: Mutex::new(BTreeMap::new()), staging: Mutex::new(Vec::new()) }
    }

    /// Test hook: stores an object under any raw `key` with the given creation time,
    /// overwriting; the way to plant foreign keys or backdated blobs.
    pub fn insert_raw(&self, key: &str, bytes: Bytes, created: Timestamp) {
        lock(&self.objects).insert(key.to_owned(), (bytes, created));
    }

    /// Test hook: a staging file an interrupted put left behind, last modified at
    /// `modified`; never listed, removed by [`sweep_staging`](BlobStore::sweep_staging).
    pub fn insert_staging(&self, modified: Timestamp) {
        lock(&self.staging).push(modified);
    }

    /// Test hook: every key currently stored.
    pub fn keys(&self) -> Vec<String> {
        lock(&self.objects).keys().cloned().collect()
    }

    fn put_raw_new(&self, key: String, bytes: Bytes) -> Result<(), StoreError> {
        let mut objects = lock(&self.objects);
        if objects.contains_key(&key) {
            return Err(StoreError::new(StoreErrorKind::AlreadyExists, format!("{key} exists")));
        }
        objects.insert(key, (bytes, self.clock.now()));
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put_new(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        self.put_raw_new(key.to_string(), bytes)
    }

    async fn get(&self, key: &BlobKey) -> Result<Option<Bytes>, StoreError> {
        Ok(lock(&self.objects).get(&key.to_string()).map(|(b, _)| b.clone()))
    }

    async fn exists(&self, key: &BlobKey) -> Result<bool, StoreError> {
        Ok(lock(&self.objects).contains_key(&key.to_string()))
    }

    async fn delete_many(&self, keys: &[BlobKey]) -> Result<(), StoreError> {
        let mut objects = lock(&self.objects);
        for key in keys {
            objects.remove(&key.to_string());
        }
        Ok(())
    }

    fn list(&self, page_size: usize) -> BoxStream<'_, Result<Vec<ListedBlob>, StoreError>> {
        let page_size = page_size.max(1);
        // Pages are cut lazily from a cursor, as a remote listing would be: objects
        // added or removed meanwhile may or may not appear.
        stream::unfold(Some(String::new()), move |cursor| async move {
            let after = cursor?;
            let objects = lock(&self.objects);
            let page: Vec<ListedBlob> = objects
                .range::<String, _>((std::ops::Bound::Excluded(&after), std::ops::Bound::Unbounded))
                .take(page_size)
                .map(|(key, (bytes, created))| ListedBlob {
                    key: key.clone(),
                    created: *created,
                    size: bytes.len() as u64,
                })
                .collect();
            if page.is_empty() {
                return None;
            }
            let next = (page.len() == page_size).then(|| page[page.len() - 1].key.clone());
            Some((Ok(page), next))
        })
        .boxed()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep_staging(&self, older_than: Timestamp) -> Result<u64, StoreError> {
        let mut staging = lock(&self.staging);
        let before = staging.len();
        staging.retain(|modified| *modified > older_than);
        Ok((before - staging.len()) as u64)
    }

    async fn probe_clock(&self) -> Result<ClockProbe, StoreError> {
        let created = self.clock.now();
        lock(&self.objects).insert(CLOCK_PROBE_KEY.to_owned(), (Bytes::new(), created));
        Ok(ClockProbe { created, precision: std::time::Duration::from_millis(1) })
    }

    async fn read_marker(&self) -> Result<Option<Bytes>, StoreError> {
        Ok(lock(&self.objects).get(PAIRING_MARKER_KEY).map(|(b, _)| b.clone()))
    }

    async fn create_marker(&self, contents: Bytes) -> Result<(), StoreError> {
        self.put_raw_new(PAIRING_MARKER_KEY.to_owned(), contents)
    }
}
