//! Per-client limits: how many uploads one client may have read at once, and how fast
//! it may send requests, so that one client cannot take the whole server.
//!
//! A client is its address ([`ClientAddr`]), IPv6 addresses grouped by their /64 (one
//! subscriber is usually given a whole /64, so counting its single addresses would
//! give it billions of clients). The table of clients is bounded: it keeps two
//! generations of at most [`TRACKED_CLIENTS`] entries, and when the current one is
//! full the older is forgotten (a forgotten client starts again with a full allowance,
//! which is no more than a new address would get). An entry with uploads in flight is
//! never forgotten: its client would escape its upload limit. So a flood of distinct
//! addresses costs bounded memory and constant work per request.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;

use crate::client::{ClientAddr, TrustedProxies};
use crate::error::ApiError;

/// How many clients one generation of the table holds (each entry is some 64 bytes,
/// so the two generations hold about 8 MiB at most).
const TRACKED_CLIENTS: usize = 65_536;

/// What one client may hold and how fast it may ask.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientLimits {
    /// Whose `X-Forwarded-For` names the client; none by default (the peer is the
    /// client).
    pub trusted_proxies: TrustedProxies,
    /// Uploads one client may have read at once; more are refused with 429
    /// `too_many_uploads`. `None`: an eighth of the uploads read at once, at least 1.
    pub max_uploads_per_client: Option<usize>,
    /// Requests one client may send per second on average; more are refused with 429
    /// `too_many_requests` and a `Retry-After`. 0 (the default): no limit.
    pub max_requests_per_second: u32,
    /// How many requests a client may send at once above that pace (a rested client
    /// has this many in hand). `None`: two seconds' worth.
    pub request_burst: Option<u32>,
}

impl ClientLimits {
    /// The uploads one client may have read at once when the server reads
    /// `max_concurrent` at once.
    pub fn uploads_per_client(&self, max_concurrent: usize) -> usize {
        self.max_uploads_per_client.unwrap_or(max_concurrent / 8).max(1)
    }

    /// The burst a client may send: the setting, else two seconds' worth; at least 1.
    pub fn burst(&self) -> u32 {
        self.request_burst.unwrap_or(self.max_requests_per_second.saturating_mul(2)).max(1)
    }
}

/// The per-client table and limits, shared by every router of one process (cloning
/// shares it: the admin listener serves the same router and so the same limits).
#[derive(Clone, Debug)]
pub(crate) struct Clients(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    trusted: TrustedProxies,
    max_uploads: usize,
    /// Tokens per second; 0: no rate limit.
    rate: f64,
    burst: f64,
    table: Mutex<Table>,
}

/// The clients seen lately, in two generations.
#[derive(Debug)]
struct Table {
    current: HashMap<IpAddr, Entry>,
    previous: HashMap<IpAddr, Entry>,
    per_generation: usize,
}

#[derive(Debug)]
struct Entry {
    /// Requests the client may still send at once.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    counted: Instant,
    /// Its uploads being read; shared with their [`Slot`]s.
    uploads: Arc<AtomicUsize>,
}

/// An admitted request's hold on its client's allowance: for an upload, one of the
/// client's upload slots, given back when dropped (once the write is done).
pub(crate) struct Slot(Option<Arc<AtomicUsize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(uploads) = &self.0 {
            uploads.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

impl Clients {
    /// The limits of `limits` for a server reading `max_concurrent` uploads at once.
    pub(crate) fn new(limits: &ClientLimits, max_concurrent: usize) -> Self {
        Self::with_table_size(limits, max_concurrent, TRACKED_CLIENTS)
    }

    fn with_table_size(limits: &ClientLimits, max_concurrent: usize, per_generation: usize) -> Self {
        let table = Table { current: HashMap::new(), previous: HashMap::new(), per_generation };
        Clients(Arc::new(Shared {
            trusted: limits.trusted_proxies.clone(),
            max_uploads: limits.uploads_per_client(max_concurrent),
            rate: f64::from(limits.max_requests_per_second),
            burst: f64::from(limits.burst()),
            table: Mutex::new(table),
        }))
    }

    /// Whose `X-Forwarded-For` is believed.
    pub(crate) fn trusted_proxies(&self) -> &TrustedProxies {
        &self.0.trusted
    }

    /// Admits one request of `client` (an upload when `upload`), or refuses it at once.
    pub(crate) fn admit(&self, client: IpAddr, upload: bool, now: Instant) -> Result<Slot, ApiError> {
        let shared = &self.0;
        let mut table = shared.table.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = table.entry(group(client), now, shared.burst);
        if shared.rate > 0.0 {
            let elapsed = now.saturating_duration_since(entry.counted).as_secs_f64();
            entry.tokens = (entry.tokens + elapsed * shared.rate).min(shared.burst);
            entry.counted = now;
            if entry.tokens < 1.0 {
                // The whole seconds until the bucket holds a request again (at most
                // one, as the rate is at least 1 per second).
                let wait = ((1.0 - entry.tokens) / shared.rate).ceil().max(1.0);
                return Err(ApiError::too_many_requests(wait as u64));
            }
        }
        // Counted only once admitted: a refused upload takes no request from the bucket.
        if upload && entry.uploads.load(Ordering::Acquire) >= shared.max_uploads {
            return Err(ApiError::too_many_uploads());
        }
        if shared.rate > 0.0 {
            entry.tokens -= 1.0;
        }
        Ok(Slot(upload.then(|| {
            // Raised under the table's lock, so two uploads cannot both take the last slot.
            entry.uploads.fetch_add(1, Ordering::AcqRel);
            entry.uploads.clone()
        })))
    }

    /// How many clients the table holds (both generations).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        let table = self.0.table.lock().unwrap();
        table.current.len() + table.previous.len()
    }
}

impl Table {
    /// `client`'s entry, made (with a full allowance) if it is new.
    fn entry(&mut self, client: IpAddr, now: Instant, burst: f64) -> &mut Entry {
        if !self.current.contains_key(&client) {
            let entry = self.previous.remove(&client).unwrap_or_else(|| Entry {
                tokens: burst,
                counted: now,
                uploads: Arc::new(AtomicUsize::new(0)),
            });
            if self.current.len() >= self.per_generation {
                self.rotate();
            }
            self.current.insert(client, entry);
        }
        self.current.get_mut(&client).expect("just inserted")
    }

    /// Forgets the older generation, but for the clients with uploads in flight (at
    /// most the server's uploads at once), which move to the new one.
    fn rotate(&mut self) {
        let busy: Vec<(IpAddr, Entry)> =
            self.previous.drain().filter(|(_, e)| e.uploads.load(Ordering::Acquire) > 0).collect();
        self.previous = std::mem::take(&mut self.current);
        self.current.extend(busy);
    }
}

/// Refuses a request over its client's rate (429 `too_many_requests`) or, for an
/// upload, over its client's uploads at once (429 `too_many_uploads`); an admitted
/// upload holds its slot until its answer is made, so until the write is done.
/// A request with no [`ClientAddr`] is not limited.
pub(crate) async fn limit_clients(State(clients): State<Clients>, request: Request, next: Next) -> Response {
    let Some(ClientAddr(client)) = request.extensions().get::<ClientAddr>().copied() else {
        return next.run(request).await;
    };
    // Transport timing on tokio's clock, not a decision about the stores.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    match clients.admit(client, request.method() == Method::PUT, now) {
        Ok(slot) => {
            let response = next.run(request).await;
            drop(slot);
            response
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Where a test's explicit timeline starts; each test passes its own instants.
    #[allow(clippy::disallowed_methods)] // a point on tokio's clock, not a store decision
    fn origin() -> Instant {
        Instant::now()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn rated(per_second: u32, burst: u32) -> ClientLimits {
        ClientLimits { max_requests_per_second: per_second, request_burst: Some(burst), ..ClientLimits::default() }
    }

    fn refusal_code(result: Result<Slot, ApiError>) -> &'static str {
        result.err().map_or("admitted", |e| e.code())
    }

    #[test]
    fn defaults_follow_the_global_budget() {
        let limits = ClientLimits::default();
        assert_eq!(limits.uploads_per_client(64), 8);
        assert_eq!(limits.uploads_per_client(3), 1);
        assert_eq!(ClientLimits { max_requests_per_second: 50, ..limits.clone() }.burst(), 100);
        assert_eq!(limits.burst(), 1);
    }

    #[test]
    fn a_client_is_held_to_its_uploads_at_once_and_gets_them_back() {
        let clients = Clients::new(&ClientLimits { max_uploads_per_client: Some(2), ..ClientLimits::default() }, 64);
        let now = origin();
        let first = clients.admit(ip("198.51.100.1"), true, now).unwrap();
        let _second = clients.admit(ip("198.51.100.1"), true, now).unwrap();
        assert_eq!(refusal_code(clients.admit(ip("198.51.100.1"), true, now)), "too_many_uploads");
        // Other requests of the same client, and another client's uploads, go on.
        assert!(clients.admit(ip("198.51.100.1"), false, now).is_ok());
        assert!(clients.admit(ip("198.51.100.2"), true, now).is_ok());
        drop(first);
        assert!(clients.admit(ip("198.51.100.1"), true, now).is_ok());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let clients = Clients::new(&ClientLimits { max_uploads_per_client: Some(1), ..ClientLimits::default() }, 64);
        let now = origin();
        let _held = clients.admit(ip("2001:db8:1:2::1"), true, now).unwrap();
        let same_64 = clients.admit(ip("2001:db8:1:2:ffff::9"), true, now);
        assert_eq!(refusal_code(same_64), "too_many_uploads");
        assert!(clients.admit(ip("2001:db8:1:3::1"), true, now).is_ok(), "another /64 is another client");
    }

    #[test]
    fn the_rate_refuses_past_the_burst_and_recovers_with_time() {
        let clients = Clients::new(&rated(2, 3), 64);
        let start = origin();
        for _ in 0..3 {
            assert!(clients.admit(ip("198.51.100.1"), false, start).is_ok());
        }
        let refused = clients.admit(ip("198.51.100.1"), false, start).err().unwrap();
        assert_eq!((refused.code(), refused.retry_after_secs()), ("too_many_requests", Some(1)));
        assert!(clients.admit(ip("198.51.100.2"), false, start).is_ok(), "another client has its own");
        // Half a second at 2 per second is one more request, and no more.
        let later = start + Duration::from_millis(500);
        assert!(clients.admit(ip("198.51.100.1"), false, later).is_ok());
        assert!(clients.admit(ip("198.51.100.1"), false, later).is_err());
    }

    #[test]
    fn refused_requests_cost_nothing_so_a_hammering_client_recovers_in_time() {
        let clients = Clients::new(&rated(1, 1), 64);
        let now = origin();
        assert!(clients.admit(ip("198.51.100.1"), false, now).is_ok());
        for ms in 0..100 {
            let refused = clients.admit(ip("198.51.100.1"), false, now + Duration::from_millis(ms * 9));
            assert_eq!(refused.err().map(|e| e.retry_after_secs()), Some(Some(1)));
        }
        assert!(clients.admit(ip("198.51.100.1"), false, now + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn a_flood_of_addresses_is_held_to_the_tables_bound_and_busy_clients_are_kept() {
        let limits = ClientLimits { max_uploads_per_client: Some(1), ..rated(1, 1) };
        let clients = Clients::with_table_size(&limits, 64, 100);
        let now = origin();
        let held = clients.admit(ip("203.0.113.1"), true, now).unwrap();
        let exhausted = clients.admit(ip("203.0.113.2"), false, now).unwrap();
        drop(exhausted);
        for n in 0..10_000u32 {
            let spoofed = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            let _ = clients.admit(spoofed, false, now);
            assert!(clients.tracked() <= 201, "the table grew to {}", clients.tracked());
        }
        // The busy client is still counted: its upload slot is still taken.
        assert_eq!(refusal_code(clients.admit(ip("203.0.113.1"), true, now)), "too_many_requests");
        assert_eq!(
            refusal_code(clients.admit(ip("203.0.113.1"), true, now + Duration::from_secs(1))),
            "too_many_uploads"
        );
        drop(held);
        // A forgotten idle client starts again with a full allowance: as a new one would.
        assert!(clients.admit(ip("203.0.113.2"), false, now).is_ok());
    }
}
