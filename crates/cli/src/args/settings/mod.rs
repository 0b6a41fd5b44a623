//! The settings groups: each is the one definition of its settings, read both by the
//! command-line parser (flags and `PROFILESTORE_…` variables) and by the settings
//! file (keys are the long flag names). Adding a setting is adding a field here.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use profilestore_api::TrustedProxies;
use profilestore_cleaner::DeleteRate;
use profilestore_core::pairing::TimingOverrides;

use super::parse_trusted_proxies;
use super::{LogFormat, parse_delete_rate, parse_duration, parse_fraction, parse_positive, parse_size};

/// A setting, or a group of them, that a file's values fill in wherever the command
/// line and the environment left it unset.
pub trait Layer {
    /// Keeps what `self` has; takes from `file` what it lacks.
    fn fill_from(&mut self, file: &Self);
}

impl<T: Clone> Layer for Option<T> {
    fn fill_from(&mut self, file: &Self) {
        if self.is_none() {
            self.clone_from(file);
        }
    }
}

/// A switch is on when the flag, the environment or the file turns it on: none of
/// them can turn off what another turned on (as before the groups were shared).
impl Layer for bool {
    fn fill_from(&mut self, file: &Self) {
        *self |= *file;
    }
}

/// Defines a settings group: the struct with clap's and serde's derives (kebab-case
/// keys, every key optional) and its [`Layer`] impl, which visits every field. The
/// macro exists so the field list is written once: a field added to a group is a
/// flag, an environment variable and a file key, and is layered, with nothing else
/// to edit.
macro_rules! settings_group {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $($(#[$field_attr:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Default, clap::Args, serde::Deserialize)]
        #[serde(default, rename_all = "kebab-case")]
        pub struct $name {
            $($(#[$field_attr])* pub $field: $ty,)*
        }

        impl Layer for $name {
            fn fill_from(&mut self, file: &Self) {
                $(Layer::fill_from(&mut self.$field, &file.$field);)*
            }
        }
    };
}

mod auth;
pub use auth::{AuthMode, AuthSettings};

settings_group! {
    /// Settings of every command that logs.
    pub struct LogArgs {
        /// Log format on standard error.
        #[arg(long, global = true, env = "PROFILESTORE_LOG_FORMAT", value_enum)]
        pub log_format: Option<LogFormat>,
    }
}

settings_group! {
    /// Where the stores are.
    pub struct StoreArgs {
        /// Directory for the embedded default stores (SQLite file and blob directory).
        /// [default: ./profilestore-data]
        #[arg(long, env = "PROFILESTORE_DATA_DIR", value_name = "DIR")]
        pub data_dir: Option<PathBuf>,

        /// Metadata database URL (`sqlite://PATH` or `postgres://USER@HOST/DB`).
        /// [default: sqlite://DATA_DIR/profilestore.db]
        #[arg(long, env = "PROFILESTORE_DATABASE", value_name = "URL")]
        pub database: Option<String>,

        /// Blob store URL (`file://PATH` or `s3://BUCKET/PREFIX`). [default: file://DATA_DIR/blobs]
        #[arg(long, env = "PROFILESTORE_BLOBS", value_name = "URL")]
        pub blobs: Option<String>,

        /// Read from the file beside this group, not inside it (see `FileSettings`).
        #[command(flatten)]
        #[serde(skip)]
        pub s3: S3Args,
    }
}

settings_group! {
    /// How to reach an S3-compatible server (only for `--blobs s3://…`). Credentials must
    /// be given (or signing explicitly skipped): profilestore never asks a cloud metadata
    /// endpoint for them. Credentials are never read from the settings file.
    pub struct S3Args {
        /// S3 endpoint, e.g. `http://127.0.0.1:9000` for a self-hosted server. [default: AWS]
        #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
        pub s3_endpoint: Option<String>,

        /// Region to sign requests for. [default: us-east-1]
        #[arg(long, env = "AWS_REGION", value_name = "REGION")]
        pub s3_region: Option<String>,

        /// Access key id.
        #[arg(long, env = "AWS_ACCESS_KEY_ID", value_name = "KEY", hide_env_values = true)]
        #[serde(skip)]
        pub s3_access_key_id: Option<String>,

        /// Secret access key (prefer the environment variable to the flag).
        #[arg(long, env = "AWS_SECRET_ACCESS_KEY", value_name = "SECRET", hide_env_values = true)]
        #[serde(skip)]
        pub s3_secret_access_key: Option<String>,

        /// Session token for temporary credentials.
        #[arg(long, env = "AWS_SESSION_TOKEN", value_name = "TOKEN", hide_env_values = true)]
        #[serde(skip)]
        pub s3_session_token: Option<String>,

        /// Send unsigned requests (a bucket that allows anonymous access); no credentials.
        #[arg(long, env = "PROFILESTORE_S3_SKIP_SIGNATURE")]
        pub s3_skip_signature: bool,

        /// How many key prefixes (shards) a listing lists at once, 1 to 64; 1 lists with
        /// one sequential walk. [default: 8]
        #[arg(long, env = "PROFILESTORE_S3_LIST_CONCURRENCY", value_parser = parse_positive, value_name = "N")]
        pub s3_list_concurrency: Option<NonZeroUsize>,
    }
}

impl S3Args {
    /// The options the S3 backend opens with.
    pub fn options(&self) -> profilestore_stores::S3Options {
        profilestore_stores::S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            session_token: self.s3_session_token.clone(),
            skip_signature: self.s3_skip_signature,
            list_concurrency: self.s3_list_concurrency,
        }
    }
}

settings_group! {
    /// The cluster-wide timings (docs/design.md, "Timing rules"). Left unset, a process
    /// uses the values stored when the stores were paired.
    pub struct TimingArgs {
        /// A request is abandoned once this old: no database write and no blob read after
        /// it. [default: 1h]
        #[arg(long, env = "PROFILESTORE_REQUEST_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub request_timeout: Option<Duration>,

        /// The cleaner only considers blobs at least this old. Must be at least
        /// request-timeout + clock-skew. [default: 2h]
        #[arg(long, env = "PROFILESTORE_MIN_BLOB_AGE", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub min_blob_age: Option<Duration>,

        /// The cleaner waits this long between finding blobs unreferenced and deleting
        /// them. Must be at least request-timeout. [default: 1h]
        #[arg(long, env = "PROFILESTORE_DELETE_DELAY", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub delete_delay: Option<Duration>,

        /// How far apart the clocks of servers, cleaners and stores may be. [default: 5m]
        #[arg(long, env = "PROFILESTORE_CLOCK_SKEW", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub clock_skew: Option<Duration>,

        /// Run even with timings that break a safety rule. For simulation and
        /// demonstration only: images can be lost.
        #[arg(long, env = "PROFILESTORE_ALLOW_UNSAFE_TIMING")]
        pub allow_unsafe_timing: bool,
    }
}

impl TimingArgs {
    /// The timings given to this process, each `None` when unset. The struct literal
    /// is exhaustive, so a timing added to core's `Timings` fails to compile until it
    /// has its setting here.
    pub fn overrides(&self) -> TimingOverrides {
        TimingOverrides {
            request_timeout: self.request_timeout,
            min_blob_age: self.min_blob_age,
            delete_delay: self.delete_delay,
            clock_skew: self.clock_skew,
        }
    }
}

settings_group! {
    /// How a process checks its clock against the stores' clocks.
    pub struct ClockCheckArgs {
        /// How often to measure this process's offsets to the database's and the blob
        /// store's clocks; writing and cleaning stop while one may exceed clock-skew.
        /// [default: 10s]
        #[arg(long, env = "PROFILESTORE_CLOCK_CHECK_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub clock_check_interval: Option<Duration>,
    }
}

settings_group! {
    /// How `clean` and `audit` show their progress on standard error: a bar at a
    /// terminal, else a log line with the same counters every interval.
    pub struct ProgressArgs {
        /// How often to log a progress line when standard error is not a terminal (and
        /// always for `clean --every`). [default: 10s]
        #[arg(long, env = "PROFILESTORE_PROGRESS_INTERVAL", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub progress_interval: Option<Duration>,
    }
}

impl ProgressArgs {
    /// How often `clean` and `audit` log progress: the setting, else the default;
    /// never zero.
    pub fn interval(&self) -> anyhow::Result<Duration> {
        let interval = self.progress_interval.unwrap_or(crate::progress::DEFAULT_INTERVAL);
        anyhow::ensure!(!interval.is_zero(), "progress-interval must be more than zero");
        Ok(interval)
    }
}

settings_group! {
    /// What `serve` accepts, and where it listens.
    pub struct ServeSettings {
        /// Address to listen on; port 0 picks a free port (printed at start). [default: 127.0.0.1:8080]
        #[arg(long, env = "PROFILESTORE_LISTEN", value_name = "ADDR")]
        pub listen: Option<SocketAddr>,

        /// Largest image accepted, e.g. `10MiB`. [default: 10MiB]
        #[arg(long, env = "PROFILESTORE_MAX_IMAGE_SIZE", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub max_image_size: Option<ByteSize>,

        /// Most pixels (width × height) an image may have. [default: 40000000]
        #[arg(long, env = "PROFILESTORE_MAX_IMAGE_PIXELS", value_name = "PIXELS")]
        pub max_image_pixels: Option<u64>,

        /// Most frames an animated image (APNG, animated WebP, GIF) may have, counted from
        /// its structure before anything is decoded. [default: 1000]
        #[arg(long, env = "PROFILESTORE_MAX_IMAGE_FRAMES", value_name = "FRAMES")]
        pub max_image_frames: Option<u64>,

        /// Store images exactly as sent. Without it, EXIF, XMP, IPTC and comments (GPS
        /// above all) are removed, the EXIF orientation is applied to the pixels and the
        /// ICC profile is kept; the limits apply either way.
        #[arg(long, env = "PROFILESTORE_KEEP_IMAGE_METADATA")]
        pub keep_image_metadata: bool,

        /// How many uploads are held in memory at once (a spooled upload counts once its
        /// body is in); more are refused with 503 `overloaded`. [default: 64]
        #[arg(long, env = "PROFILESTORE_MAX_CONCURRENT_UPLOADS", value_parser = parse_positive, value_name = "N")]
        pub max_concurrent_uploads: Option<NonZeroUsize>,

        /// How many bytes the uploads being read may hold together (each counted at its
        /// declared length, or at the body limit), e.g. `256MiB`; beyond it, 503
        /// `overloaded`. [default: 256MiB]
        #[arg(long, env = "PROFILESTORE_MAX_UPLOAD_MEMORY", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub max_upload_memory: Option<ByteSize>,

        /// Uploads that may hold more than this (their declared length, or the body limit
        /// when they declare none) are received into the spool on disk, not memory, e.g.
        /// `1MiB`; `0` spools every upload. [default: 1MiB]
        #[arg(long, env = "PROFILESTORE_SPOOL_ABOVE", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub spool_above: Option<ByteSize>,

        /// The spool's directory: created with mode 0700 (an existing one must be closed to
        /// group and others); files left in it by a killed process are removed at start.
        /// [default: DATA_DIR/spool]
        #[arg(long, env = "PROFILESTORE_SPOOL_DIR", value_name = "DIR")]
        pub spool_dir: Option<PathBuf>,

        /// How many bytes the spooled uploads may hold on disk together, e.g. `1GiB`;
        /// beyond it, 503 `overloaded`. `0` turns the spool off: every upload is held in
        /// memory. [default: 1GiB]
        #[arg(long, env = "PROFILESTORE_MAX_SPOOL_SIZE", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub max_spool_size: Option<ByteSize>,

        /// How long a client may take to send a request's head (request line and
        /// headers); then its connection is closed. [default: 10s]
        #[arg(long, env = "PROFILESTORE_HEADER_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub header_timeout: Option<Duration>,

        /// A PEM certificate chain (leaf first) to serve HTTPS with; reloaded when the file
        /// changes. Needs `--tls-key`.
        #[arg(long, env = "PROFILESTORE_TLS_CERT", value_name = "FILE")]
        pub tls_cert: Option<PathBuf>,

        /// The PEM private key of `--tls-cert`; reloaded with it.
        #[arg(long, env = "PROFILESTORE_TLS_KEY", value_name = "FILE")]
        pub tls_key: Option<PathBuf>,

        /// A TLS-terminating proxy is in front: serve plain HTTP on a non-loopback
        /// address anyway (without it, and without `--tls-cert`, `serve` refuses one).
        /// Needs `--trusted-proxies`.
        #[arg(long, env = "PROFILESTORE_BEHIND_PROXY")]
        pub behind_proxy: bool,

        /// Proxies whose `X-Forwarded-For` names the client (for the per-client limits
        /// and the log): addresses and CIDR blocks, comma-separated, or `none`.
        /// Required with `--behind-proxy`. [default: none: the peer is the client]
        #[arg(long, env = "PROFILESTORE_TRUSTED_PROXIES", value_parser = parse_trusted_proxies, value_name = "LIST")]
        pub trusted_proxies: Option<TrustedProxies>,

        /// Uploads one client (an IPv4 address, or an IPv6 /64) may have read at once;
        /// more get 429. [default: an eighth of max-concurrent-uploads, at least 1]
        #[arg(long, env = "PROFILESTORE_MAX_UPLOADS_PER_CLIENT", value_parser = parse_positive, value_name = "N")]
        pub max_uploads_per_client: Option<NonZeroUsize>,

        /// Requests per second one client may send on average; more get 429 and
        /// `Retry-After`. `0` turns it off. [default: 0]
        #[arg(long, env = "PROFILESTORE_MAX_REQUESTS_PER_CLIENT", value_name = "N")]
        pub max_requests_per_client: Option<u32>,

        /// Requests a rested client may send at once above that rate. [default: two
        /// seconds' worth]
        #[arg(long, env = "PROFILESTORE_CLIENT_REQUEST_BURST", value_name = "N")]
        pub client_request_burst: Option<u32>,

        /// How long caches may keep an image served by id (`Cache-Control: max-age`):
        /// the bound on how long a deleted or replaced photo can still be seen in a
        /// cache. [default: 5m]
        #[arg(long, env = "PROFILESTORE_IMAGE_CACHE_MAX_AGE", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub image_cache_max_age: Option<Duration>,

        /// How long a write's `Idempotency-Key` is kept: a retry within it is answered
        /// with the first write's result instead of writing again. [default: 24h]
        #[arg(long, env = "PROFILESTORE_IDEMPOTENCY_KEY_TTL", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub idempotency_key_ttl: Option<Duration>,

        /// How long a client may go without taking any of the answer sent to it; then
        /// its connection is dropped with the bytes it held. [default: 60s]
        #[arg(long, env = "PROFILESTORE_SEND_TIMEOUT", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub send_timeout: Option<Duration>,

        /// The slowest average pace, per second, a client that fell behind may take its
        /// answer at once it has been behind for 10 s, e.g. `8KiB`; slower, its connection
        /// is dropped. `0` turns it off (the send timeout still applies). [default: 8KiB]
        #[arg(long, env = "PROFILESTORE_MIN_DOWNLOAD_RATE", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub min_download_rate: Option<ByteSize>,

        /// The slowest average pace, per second, an upload's body may arrive at once its
        /// first 10 s are past, e.g. `8KiB`; slower is refused with 408. `0` turns it off
        /// (the request timeout still bounds an upload). [default: 8KiB]
        #[arg(long, env = "PROFILESTORE_MIN_UPLOAD_RATE", value_parser = parse_size, value_name = "SIZE")]
        #[serde(deserialize_with = "size")]
        pub min_upload_rate: Option<ByteSize>,

        /// Address of the admin listener (`/metrics`), kept apart from the API so a public
        /// listener exposes only the API; `off` serves none. Port 0 picks a free port
        /// (printed at start). [default: 127.0.0.1:0]
        #[arg(long, env = "PROFILESTORE_ADMIN_LISTEN", value_parser = parse_listen, value_name = "ADDR|off")]
        pub admin_listen: Option<Listen>,
    }
}


settings_group! {
    /// How `clean` cleans: its schedule, its safety stops and its pace.
    pub struct CleanSettings {
        /// Run as a daemon: a cycle every DURATION (e.g. `10m`) until SIGINT/SIGTERM.
        #[arg(long, env = "PROFILESTORE_EVERY", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub every: Option<Duration>,

        /// Clean incrementally: each cycle lists only images minted since the horizon the
        /// last completed cycles stored (plus the queue of replaced and deleted images),
        /// and a full sweep of the whole store runs once every DURATION (e.g. `1d`) as the
        /// safety net. [default: every cycle is a full sweep]
        #[arg(long, env = "PROFILESTORE_FULL_EVERY", value_parser = parse_duration, value_name = "DURATION")]
        #[serde(deserialize_with = "duration")]
        pub full_every: Option<Duration>,

        /// Delete even when the database holds no records at all (otherwise such a cycle
        /// deletes nothing: a wiped database would make every image look unreferenced).
        #[arg(long, env = "PROFILESTORE_ALLOW_EMPTY_DATABASE")]
        pub allow_empty_database: bool,

        /// Stop a cycle that would delete more than this share (0..=1) of the old blobs.
        #[arg(long, env = "PROFILESTORE_MAX_UNREFERENCED_FRACTION", value_parser = parse_fraction, value_name = "FRACTION")]
        #[serde(deserialize_with = "fraction")]
        pub max_unreferenced_fraction: Option<f64>,

        /// Delete at most this many keys per unit of time, on average (e.g. `500/s`,
        /// `30000/min`, `1000/10s`; a bare number is per second). [default: no limit]
        #[arg(long, env = "PROFILESTORE_DELETE_RATE", value_parser = parse_delete_rate, value_name = "RATE")]
        pub delete_rate: Option<DeleteRate>,

        /// Keys per delete request, 1 to 1000. [default: 1000]
        #[arg(long, env = "PROFILESTORE_DELETE_BATCH_SIZE", value_name = "N")]
        pub delete_batch_size: Option<usize>,

        /// With `--every`: serve the daemon's `/metrics` on this address (e.g.
        /// `127.0.0.1:9465`). [default: off]
        #[arg(long, env = "PROFILESTORE_METRICS_LISTEN", value_parser = parse_listen, value_name = "ADDR|off")]
        pub metrics_listen: Option<Listen>,
    }
}

/// Where an optional listener listens: an address, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Listen {
    /// Listen on this address.
    On(SocketAddr),
    /// Do not listen.
    Off,
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(s: String) -> Result<Listen, String> {
        parse_listen(&s)
    }
}

/// Parses `off` or a socket address such as `127.0.0.1:9464`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse().map(Listen::On).map_err(|_| format!("{s:?} is not an address such as 127.0.0.1:9464, nor `off`"))
}

/// A file's duration, by `humantime_serde` (the flags' syntax), with the flags' hint
/// added to a refusal so both say what is expected alike.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    with_hint(humantime_serde::option::deserialize(d), super::DURATION_HINT)
}

/// A file's size, by bytesize's serde support: `"10MiB"` or a bare number of bytes.
fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ByteSize>, D::Error> {
    with_hint(serde::Deserialize::deserialize(d), super::SIZE_HINT)
}

/// A file's fraction, held to the flag's range.
fn fraction<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let value: Option<f64> = serde::Deserialize::deserialize(d)?;
    value.map(|f| parse_fraction(&f.to_string())).transpose().map_err(serde::de::Error::custom)
}

fn with_hint<T, E: serde::de::Error>(result: Result<T, E>, hint: &str) -> Result<T, E> {
    // Some deserialisers end their message with a line break.
    result.map_err(|e| E::custom(format!("{} ({hint})", e.to_string().trim_end())))
}
