//! Who a request comes from: the address per-client limits count against and the
//! request log names.
//!
//! It is the connection's peer, unless the peer is one of the configured trusted
//! proxies: then it is the right-most address of `X-Forwarded-For` that is not itself
//! a trusted proxy. Each proxy appends the address it received the request from, so
//! everything right of that entry was written by proxies we trust, and everything
//! left of it by the client, who can write anything there: a client-supplied left
//! part is never believed. A header that cannot be read as addresses (garbage, an
//! `unknown`, an empty entry) counts as absent: the peer is the client.
//!
//! `Forwarded` (RFC 7239) is not read: a proxy maintains one of the two headers and
//! passes the other on as the client sent it, so reading both would let a client
//! choose its own address through whichever its proxy does not overwrite.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::client_limits::Clients;

/// The header proxies append their client's address to.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The most entries of `X-Forwarded-For` walked from the right: a chain of proxies is
/// a handful long, and a longer header must not cost more work.
const MAX_HOPS: usize = 32;

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR blocks, IPv4
/// and IPv6. Empty: the header is never read and the peer is always the client.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct TrustedProxies(Vec<IpNet>);

/// Why a text is not a list of trusted proxies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{entry:?} is not an address or CIDR block (expected a comma-separated list such as \
     10.0.0.0/8,192.0.2.7,2001:db8::/32, or `none`)"
)]
pub struct ProxiesError {
    entry: String,
}

impl TrustedProxies {
    /// Trusts no proxy: the peer is always the client.
    pub fn none() -> Self {
        TrustedProxies(Vec::new())
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counting as its IPv4 address) is in a
    /// trusted block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = ProxiesError;

    /// Parses `none`, or addresses and CIDR blocks separated by commas or spaces
    /// (`10.0.0.0/8, 192.0.2.7, 2001:db8::/32`). A block's host bits are ignored.
    fn from_str(s: &str) -> Result<Self, ProxiesError> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(TrustedProxies::none());
        }
        let entries: Vec<&str> = s.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Err(ProxiesError { entry: s.to_owned() });
        }
        let net = |entry: &str| match entry.parse::<IpNet>() {
            Ok(net) => Some(net.trunc()),
            Err(_) => entry.parse::<IpAddr>().ok().map(|ip| IpNet::from(ip.to_canonical())),
        };
        entries
            .into_iter()
            .map(|entry| net(entry).ok_or_else(|| ProxiesError { entry: entry.to_owned() }))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl TryFrom<String> for TrustedProxies {
    type Error = ProxiesError;

    fn try_from(s: String) -> Result<Self, ProxiesError> {
        s.parse()
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let nets: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// The address a request is attributed to, once [`identify_client`] has run; absent
/// when the request came through no listener of ours (a test's `oneshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub(crate) IpAddr);

/// The client behind `peer`: `peer` itself unless it is a trusted proxy, else the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (the left-most
/// entry when all are). Any unreadable entry met on the way makes it `peer`.
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    // Several headers are one list, in order (RFC 9110, 5.3).
    let mut values = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        match value.to_str() {
            Ok(text) => values.push(text),
            Err(_) => return peer,
        }
    }
    let mut furthest = peer;
    let hops = values.iter().rev().flat_map(|value| value.rsplit(','));
    for hop in hops.take(MAX_HOPS) {
        let Some(ip) = parse_hop(hop) else { return peer };
        if !trusted.contains(ip) {
            return ip;
        }
        furthest = ip;
    }
    furthest
}

/// One entry of `X-Forwarded-For`: an address, possibly with a port, IPv6 possibly in
/// brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

/// Attributes the request to its client ([`ClientAddr`]) from the peer address the
/// listener put in it, for the limits and the request log.
pub(crate) async fn identify_client(State(clients): State<Clients>, mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = client_address(peer.ip(), request.headers(), clients.trusted_proxies());
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The client of a request from `peer` carrying these `X-Forwarded-For` headers.
    fn client(peer: &str, forwarded: &[&str], trusted: &str) -> IpAddr {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        client_address(ip(peer), &headers, &proxies(trusted))
    }

    #[test]
    fn lists_of_proxies_parse_addresses_and_blocks_of_both_families() {
        let list = proxies("10.0.0.0/8, 192.0.2.7 2001:db8::/32,::1");
        assert_eq!(list.to_string(), "10.0.0.0/8,192.0.2.7/32,2001:db8::/32,::1/128");
        assert!(list.contains(ip("10.200.3.4")) && list.contains(ip("192.0.2.7")));
        assert!(!list.contains(ip("192.0.2.8")) && !list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("2001:db8:ffff::1")) && !list.contains(ip("2001:db9::1")));
        assert!(list.contains(ip("::ffff:10.1.1.1")), "an IPv4-mapped peer is its IPv4 address");
        assert_eq!(proxies("10.1.2.3/8").to_string(), "10.0.0.0/8", "host bits are ignored");
        assert!(proxies("none").is_empty());
        for bad in ["", " , ", "10.0.0.0/33", "proxy.example", "10.0.0.0/8,nope"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peers_header_is_ignored() {
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], "10.0.0.0/8"), ip("203.0.113.9"));
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], "none"), ip("203.0.113.9"));
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client_and_a_spoofed_left_part_is_not() {
        // The client wrote "1.2.3.4" itself; the proxy appended what it saw.
        assert_eq!(client("10.0.0.2", &["1.2.3.4, 198.51.100.1"], "10.0.0.0/8"), ip("198.51.100.1"));
        // Two trusted proxies in a row: the first one's peer is the client.
        assert_eq!(client("10.0.0.2", &["1.2.3.4, 198.51.100.1, 10.0.0.9"], "10.0.0.0/8"), ip("198.51.100.1"));
        // Several headers are one list, in order.
        assert_eq!(client("10.0.0.2", &["1.2.3.4", "198.51.100.1"], "10.0.0.0/8"), ip("198.51.100.1"));
        // No header, or all hops trusted: the peer, or the furthest trusted hop.
        assert_eq!(client("10.0.0.2", &[], "10.0.0.0/8"), ip("10.0.0.2"));
        assert_eq!(client("10.0.0.2", &["10.9.9.9, 10.0.0.1"], "10.0.0.0/8"), ip("10.9.9.9"));
    }

    #[test]
    fn ipv6_entries_and_ports_are_read() {
        let trusted = "2001:db8:1::/48";
        assert_eq!(client("2001:db8:1::5", &["2001:db8:ff::7"], trusted), ip("2001:db8:ff::7"));
        assert_eq!(client("2001:db8:1::5", &["[2001:db8:ff::7]:4711"], trusted), ip("2001:db8:ff::7"));
        assert_eq!(client("2001:db8:1::5", &["[2001:db8:ff::7]"], trusted), ip("2001:db8:ff::7"));
        assert_eq!(client("::ffff:10.0.0.2", &["198.51.100.1:80"], "10.0.0.0/8"), ip("198.51.100.1"));
    }

    #[test]
    fn an_unreadable_header_leaves_the_peer_as_the_client() {
        for garbage in ["unknown", "198.51.100.1,", "", "198.51.100.1 203.0.113.1", "_hidden, 198.51.100.1x"] {
            assert_eq!(client("10.0.0.2", &[garbage], "10.0.0.0/8"), ip("10.0.0.2"), "{garbage:?}");
        }
        // Garbage left of the client's entry is the client's own business.
        assert_eq!(client("10.0.0.2", &["garbage, 198.51.100.1"], "10.0.0.0/8"), ip("198.51.100.1"));
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(b"198.51.100.\xff").unwrap());
        assert_eq!(client_address(ip("10.0.0.2"), &headers, &proxies("10.0.0.0/8")), ip("10.0.0.2"));
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_walked_only_so_far() {
        let chain = format!("198.51.100.1, {}", vec!["10.0.0.1"; 100].join(", "));
        assert_eq!(client("10.0.0.2", &[&chain], "10.0.0.0/8"), ip("10.0.0.1"));
    }
}
