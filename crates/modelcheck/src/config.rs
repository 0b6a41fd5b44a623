//! What the checker explores: actor counts, value domains, bounds, timings, design.

use profilestore_core::machine::PatchDesign;
use profilestore_core::settings::Timings;

use crate::time::Hours;

/// Which write path the servers follow.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Design {
    /// The working design: fresh image id, blob first, then the record naming it.
    Working,
    /// Flaw 1: the record first, then the blob, both under the user's own key.
    RecordFirst,
    /// Flaw 2: the blob first under the user's own key (overwriting), then the record.
    BlobKeyedByUser,
}

/// How the database makes a record write visible, and what its contract excludes
/// meanwhile. Every protocol but [`StoreProtocol::AtomicCommit`] splits the write into
/// two steps: the *check* (the database compares its clock with the request's
/// deadline; the row is staged, invisible to every other transaction) and the
/// *visible* step (the commit lands). Between the two any other actor may step and time
/// may pass, unless the protocol's rule forbids it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StoreProtocol {
    /// Check and visibility are one step: the case study's model, and what the checker
    /// explored before the protocols were modelled.
    AtomicCommit,
    /// SQLite as it was when real processes showed the flaw: writers take the single
    /// write lock (`BEGIN IMMEDIATE`), but the cleaner's "which are referenced" query is
    /// a plain read that no open write excludes. A writer frozen between its checked
    /// `INSERT` and its `COMMIT` may make the row visible at any later time, even past
    /// its deadline: the frozen process never learns that its request was abandoned.
    SqliteUnlockedQuery,
    /// The fix: the cleaner's query takes the same write lock, so it is not enabled
    /// while any commit is pending. A pending commit still lands whenever its frozen
    /// writer wakes (or is rolled back), but never behind a query's back; a write
    /// checked after the query reads a clock past the deadline of every blob the query
    /// asked about (one model clock makes that automatic).
    SqliteLockedQuery,
    /// PostgreSQL with the deadline re-checked at commit (a deferred trigger) and the
    /// commit's time bounded by the time the request has left: a pending commit becomes
    /// visible before its deadline or never. Once the clock reaches the deadline it can
    /// only be refused and rolled back. Queries and other writers are not excluded
    /// (row locks order writers of one user; last visible wins).
    PostgresBoundedCommit,
}

impl StoreProtocol {
    /// Whether a record write is split into a check and a visible step.
    pub fn splits_commit(self) -> bool {
        self != StoreProtocol::AtomicCommit
    }

    /// Whether one pending commit excludes every other write's check (SQLite's single
    /// write lock, held from `BEGIN IMMEDIATE` to `COMMIT`).
    pub fn one_writer_at_a_time(self) -> bool {
        matches!(self, StoreProtocol::SqliteUnlockedQuery | StoreProtocol::SqliteLockedQuery)
    }

    /// Whether a pending commit excludes the cleaner's "which are referenced" query.
    pub fn query_waits_for_writer(self) -> bool {
        self == StoreProtocol::SqliteLockedQuery
    }

    /// Whether a pending commit may still become visible at or after its deadline.
    pub fn lands_after_deadline(self) -> bool {
        self != StoreProtocol::PostgresBoundedCommit
    }
}

/// Which blobs a cleaner cycle looks at, and whether the database keeps a queue of
/// superseded images (docs/incremental-cleaning.md).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Cleaning {
    /// Every cycle lists every blob; the database keeps no queue. The model as it was
    /// before incremental cleaning: the default, and its state counts are unchanged.
    Full,
    /// The database queues the image a visible record write replaced; every cycle
    /// first claims the queue's due entries, deletes their blobs and forgets them, then
    /// lists, either everything (a full sweep, chosen freely) or only ids minted at or
    /// after the stored listing horizon, which a completed cycle moves forward.
    Incremental(IncrementalDesign),
}

/// The incremental design under test: the working one, or one flaw the checker must
/// catch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum IncrementalDesign {
    /// docs/incremental-cleaning.md as written.
    Working,
    /// The claim takes queued entries without waiting `delete_delay` after their first
    /// sight (the listing's delay is kept).
    QueueWithoutDelay,
    /// An entry's delay starts at the replacing write's statement (its deadline check)
    /// instead of when a cleaner first sees it; harmful where a commit can land later
    /// than its check.
    DelayFromStatement,
    /// Blobs listed since a horizon skip the age filter (full listings keep it).
    HorizonWithoutAgeFilter,
    /// A completed cycle moves the horizon to its own start, with no lag.
    HorizonWithoutLag,
}

impl Cleaning {
    /// The incremental design, if cycles are incremental.
    pub fn incremental(self) -> Option<IncrementalDesign> {
        match self {
            Cleaning::Full => None,
            Cleaning::Incremental(design) => Some(design),
        }
    }

    /// Whether the incremental design has this flaw.
    pub fn has(self, flaw: IncrementalDesign) -> bool {
        self.incremental() == Some(flaw)
    }
}

/// Which client operations servers start besides writes and reads. Both off by default,
/// so that the state counts of the models before them are unchanged.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
pub struct Operations {
    /// Profile deletes: one deadline-guarded record delete.
    pub deletes: bool,
    /// Metadata-only updates following this design (the production machine's
    /// compare-and-set, or the blind flaw).
    pub patches: Option<PatchDesign>,
}

/// Which safety properties are checked. Each can be switched off so a test can show
/// that a flawed design also breaks a weaker property (flaw 1 breaks "no dangling
/// reference" transiently before it breaks "consistent reads").
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Properties {
    /// Every read's answer was submitted together by one write of that user.
    pub consistent_reads: bool,
    /// Every record names an existing blob, in every state.
    pub no_dangling_reference: bool,
    /// A read within its deadline never finds the blob its record named missing.
    pub no_vanished_blob: bool,
    /// From every explored state a drain schedule reaches a state with no orphan.
    pub eventually_no_orphans: bool,
}

impl Properties {
    /// Every safety property, no liveness (the liveness drain costs a run per state).
    pub const SAFETY: Properties = Properties {
        consistent_reads: true,
        no_dangling_reference: true,
        no_vanished_blob: true,
        eventually_no_orphans: false,
    };

    /// Every property, liveness included.
    pub const ALL: Properties = Properties { eventually_no_orphans: true, ..Properties::SAFETY };
}

/// The bounds and settings of one exhaustive exploration.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Number of interchangeable servers (1..=4).
    pub servers: usize,
    /// Number of interchangeable cleaners (0..=4).
    pub cleaners: usize,
    /// Number of users (1..=8).
    pub users: u8,
    /// Number of distinct metadata values a write may submit.
    pub metadata_values: u8,
    /// Number of distinct images a write may submit.
    pub images: u8,
    /// At most this many client operations (writes and reads) are started.
    pub max_ops: u8,
    /// At most this many fresh image ids are issued (working design): once they are
    /// used up, no further write starts. A bound at or above `max_ops` bounds nothing.
    pub image_ids: u8,
    /// The clock stops advancing at this hour.
    pub max_hours: u8,
    /// The cluster timings in hours; `clock_skew` should be zero (one model clock).
    /// A `request_timeout` beyond `max_hours` means "requests are never killed".
    pub timings: Timings<Hours>,
    /// The write path under test.
    pub design: Design,
    /// How the database commits a record write.
    pub store: StoreProtocol,
    /// Whether any store operation may fail instead of taking effect.
    pub fail_steps: bool,
    /// The properties checked.
    pub properties: Properties,
    /// Full sweeps only, or the superseded-image queue and the listing horizon.
    pub cleaning: Cleaning,
    /// Deletes and metadata-only updates, beside writes and reads.
    pub operations: Operations,
}

/// The case study's timings in hours: 1 h timeout, 2 h age filter, 1 h delete delay.
pub const CASE_STUDY_TIMINGS: Timings<Hours> =
    Timings { request_timeout: Hours(1), min_blob_age: Hours(2), delete_delay: Hours(1), clock_skew: Hours(0) };

impl ModelConfig {
    /// The case study's configuration: 2 servers, 2 cleaners, 1 user, 2 metadata values,
    /// 2 images, 3 image ids, at most 3 operations and 3 hours, failing steps, the
    /// working design, and the case study's atomic commit (production's SQLite protocol
    /// is [`StoreProtocol::SqliteLockedQuery`]).
    pub fn case_study() -> Self {
        ModelConfig {
            servers: 2,
            cleaners: 2,
            users: 1,
            metadata_values: 2,
            images: 2,
            max_ops: 3,
            image_ids: 3,
            max_hours: 3,
            timings: CASE_STUDY_TIMINGS,
            design: Design::Working,
            store: StoreProtocol::AtomicCommit,
            fail_steps: true,
            properties: Properties::SAFETY,
            cleaning: Cleaning::Full,
            operations: Operations { deletes: false, patches: None },
        }
    }

    /// Checks the bounds the state encoding relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_string()));
        if self.servers == 0 || self.servers > MAX_ACTORS {
            return fail("servers must be 1..=4");
        }
        if self.cleaners > MAX_ACTORS {
            return fail("cleaners must be 0..=4");
        }
        if usize::from(self.users) > MAX_USERS {
            return fail("users must be 1..=8");
        }
        if self.users == 0 || self.metadata_values == 0 || self.images == 0 || self.image_ids == 0 {
            return fail("users, metadata_values, images and image_ids must be at least 1");
        }
        // The submitted (user, metadata, image) triples live in one 64-bit set.
        if usize::from(self.users) * usize::from(self.metadata_values) * usize::from(self.images) > 64 {
            return fail("users * metadata_values * images must be at most 64");
        }
        // Blobs: one per user key, or one fresh id per write; the store holds 32.
        if usize::from(self.users) + usize::from(self.max_ops) > MAX_BLOBS {
            return fail("users + max_ops must be at most 32");
        }
        // The queue and the mint hours hold one entry per fresh id.
        if self.cleaning != Cleaning::Full && self.image_ids.min(self.max_ops) > MAX_QUEUE as u8 {
            return fail("incremental cleaning allows at most 16 fresh image ids");
        }
        if self.max_hours > 200 {
            return fail("max_hours must be at most 200");
        }
        Ok(())
    }
}

/// The most servers, and the most cleaners, a model may have: the world holds them
/// inline so that cloning it allocates nothing.
pub const MAX_ACTORS: usize = 4;
/// The most users a model may have.
pub const MAX_USERS: usize = 8;
/// The most blobs the model blob store holds.
pub const MAX_BLOBS: usize = 32;
/// The most entries the superseded-image queue, and the most mint hours, a model holds
/// (incremental cleaning: one per fresh image id).
pub const MAX_QUEUE: usize = 16;

/// A configuration the checker cannot encode.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("invalid model configuration: {0}")]
pub struct ConfigError(pub String);
