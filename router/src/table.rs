//! The compiled route table: host → route → backends, and the backend pick.
//!
//! A [`Table`] is built once per route-table version by the follower task and then only read:
//! the request path loads it through `ArcSwap` (no lock) and never mutates it, except for the
//! per-backend atomic counters.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hyper::http::uri::Authority;
use ouro_types::RouteTable;
use rand::Rng;
use rustls::sign::CertifiedKey;

use crate::shipper::LogDrops;
use crate::tls::{self, KeyCache};

/// A backend whose connect failed this recently is picked only when nothing better is left.
const FAILURE_PENALTY_WINDOW: Duration = Duration::from_secs(3);
/// Weight added to a recently failed backend's load in the two-choices comparison.
const FAILURE_PENALTY: usize = 1 << 20;

/// One immutable version of the routes, as the request path sees it.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub version: u64,
    /// False until the first table arrived from the route source.
    pub loaded: bool,
    hosts: HashMap<String, Arc<Route>>,
    /// TLS certificates by host name: each route host that one of its route's certificates
    /// covers (the first such certificate wins).
    certificates: HashMap<String, Arc<CertifiedKey>>,
    /// Every certificate parsed for this version, reused by the next one.
    parsed: KeyCache,
}

/// An app's route: where requests for any of its hosts go.
#[derive(Debug)]
pub(crate) struct Route {
    pub app: String,
    pub backends: Vec<Backend>,
    /// ACME HTTP-01 challenges of the app: token → key authorization.
    pub acme: HashMap<String, String>,
    /// The app's request log lines dropped for a full shipping queue, not yet reported.
    pub log_drops: Arc<LogDrops>,
}

/// One `up` web dyno of a route.
#[derive(Debug)]
pub(crate) struct Backend {
    pub dyno: Arc<str>,
    pub authority: Authority,
    load: Arc<BackendLoad>,
}

/// Per-address counters. They outlive table swaps: a new table reuses the counters of the same
/// `ip:port`, so requests in flight on a dyno still count after the route table changes.
#[derive(Debug, Default)]
struct BackendLoad {
    in_flight: AtomicUsize,
    /// Milliseconds since [`clock_origin`] of the last connect failure, 0 for none.
    failed_at_ms: AtomicU64,
}

/// Counts one request as outstanding on a backend until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<BackendLoad>);

impl Table {
    /// Compiles the wire table, reusing the counters of `previous` for addresses (and apps) it
    /// already knew.
    /// Routes or backends that cannot be used (bad address, host already taken) are skipped with
    /// a warning rather than rejecting the whole table.
    pub fn compile(wire: &RouteTable, previous: &Table) -> Table {
        let mut known: HashMap<&str, &Arc<BackendLoad>> = HashMap::new();
        let mut known_drops: HashMap<&str, &Arc<LogDrops>> = HashMap::new();
        for route in previous.hosts.values() {
            known_drops.insert(route.app.as_str(), &route.log_drops);
            for backend in &route.backends {
                known.insert(backend.authority.as_str(), &backend.load);
            }
        }
        let mut hosts = HashMap::new();
        let mut certificates = HashMap::new();
        let mut parsed = KeyCache::default();
        let mut provider = None;
        for wire_route in &wire.routes {
            let mut route_keys = Vec::with_capacity(wire_route.certificates.len());
            for cert in &wire_route.certificates {
                let cache_key = (cert.chain_pem.clone(), cert.key_pem.clone());
                let key = match previous.parsed.0.get(&cache_key).or_else(|| parsed.0.get(&cache_key)) {
                    Some(key) => Arc::clone(key),
                    None => {
                        let provider = provider.get_or_insert_with(tls::provider);
                        match tls::certified_key(cert, provider) {
                            Ok(key) => key,
                            Err(error) => {
                                tracing::warn!(app = %wire_route.app, %error, "skipping unusable TLS certificate");
                                continue;
                            }
                        }
                    }
                };
                parsed.0.insert(cache_key, Arc::clone(&key));
                route_keys.push(key);
            }
            let mut backends = Vec::with_capacity(wire_route.backends.len());
            for wire_backend in &wire_route.backends {
                let authority = match wire_backend.addr.parse::<Authority>() {
                    Ok(authority) if authority.port_u16().is_some() => authority,
                    _ => {
                        tracing::warn!(app = %wire_route.app, dyno = %wire_backend.dyno, addr = %wire_backend.addr,
                            "skipping backend with an address that is not host:port");
                        continue;
                    }
                };
                let load = known.get(authority.as_str()).map(|load| Arc::clone(load)).unwrap_or_default();
                backends.push(Backend { dyno: Arc::from(wire_backend.dyno.as_str()), authority, load });
            }
            let log_drops = known_drops.get(wire_route.app.as_str()).map(|d| Arc::clone(d)).unwrap_or_default();
            let acme =
                wire_route.acme_challenges.iter().map(|c| (c.token.clone(), c.key_authorization.clone())).collect();
            let route = Arc::new(Route { app: wire_route.app.clone(), backends, acme, log_drops });
            for host in &wire_route.hosts {
                let host = normalize_host(host).into_owned();
                if let Some(other) = hosts.get(&host).map(|r: &Arc<Route>| r.app.clone()) {
                    tracing::warn!(%host, app = %wire_route.app, %other, "host already routed to another app; ignored");
                    continue;
                }
                if let Some(key) = route_keys.iter().find(|key| tls::covers(key, &host)) {
                    certificates.insert(host.clone(), Arc::clone(key));
                }
                hosts.insert(host, Arc::clone(&route));
            }
        }
        Table { version: wire.version, loaded: true, hosts, certificates, parsed }
    }

    /// The TLS certificate for a normalized host name, if its app has one covering it.
    pub fn certificate(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        self.certificates.get(host)
    }

    /// The route for a normalized host (see [`normalize_host`]).
    pub fn route(&self, host: &str) -> Option<&Arc<Route>> {
        self.hosts.get(host)
    }

    /// Every route, once per host it has (so a route may come more than once).
    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.hosts.values()
    }
}

impl Route {
    /// Least outstanding requests over two random choices ("power of two choices") among the
    /// backends not in `tried`; `None` once every backend has been tried.
    ///
    /// Plain random spreads badly when dynos are unequally slow (Heroku's 2013 queueing
    /// story); comparing two random candidates avoids the slow one while staying cheap and
    /// avoiding the herd that "always the global least loaded" causes.
    pub fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.backends.len();
        if tried.is_empty() {
            return two_choices(n, |i| i, |i| self.backends[i].load.score());
        }
        let left: Vec<usize> = (0..n).filter(|i| !tried.contains(i)).collect();
        two_choices(left.len(), |k| left[k], |i| self.backends[i].load.score())
    }
}

fn two_choices(n: usize, index: impl Fn(usize) -> usize, score: impl Fn(usize) -> usize) -> Option<usize> {
    match n {
        0 => None,
        1 => Some(index(0)),
        _ => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (a, b) = (index(a), index(b));
            Some(if score(b) < score(a) { b } else { a })
        }
    }
}

impl Backend {
    /// Marks the start of a request on this backend.
    pub fn start(&self) -> InFlight {
        self.load.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(&self.load))
    }

    /// Remembers a failed connect so that the next picks avoid this backend for a while.
    pub fn connect_failed(&self) {
        self.load.failed_at_ms.store(millis_since_origin().max(1), Ordering::Relaxed);
    }
}

impl BackendLoad {
    fn score(&self) -> usize {
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let failed_at = self.failed_at_ms.load(Ordering::Relaxed);
        if failed_at != 0 && millis_since_origin().saturating_sub(failed_at) < FAILURE_PENALTY_WINDOW.as_millis() as u64
        {
            in_flight + FAILURE_PENALTY
        } else {
            in_flight
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lower-case, without `:port` and without a trailing dot: the form route hosts are stored in.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = if raw.starts_with('[') {
        // IPv6 literal: `[::1]:8080`.
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        match raw.rfind(':') {
            Some(colon) => &raw[..colon],
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn millis_since_origin() -> u64 {
    clock_origin().elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_types::{Route as WireRoute, RouteBackend};

    fn wire(version: u64, backends: &[(&str, &str)]) -> RouteTable {
        RouteTable {
            version,
            routes: vec![WireRoute {
                app: "demo".into(),
                hosts: vec!["demo.localhost".into(), "Www.Demo.Localhost".into()],
                backends: backends
                    .iter()
                    .map(|(dyno, addr)| RouteBackend { dyno: (*dyno).into(), addr: (*addr).into() })
                    .collect(),
                certificates: Vec::new(),
                acme_challenges: Vec::new(),
            }],
        }
    }

    #[test]
    fn normalize_host_cases() {
        for (input, expect) in [
            ("demo.localhost", "demo.localhost"),
            ("Demo.LocalHost:8080", "demo.localhost"),
            ("demo.localhost.", "demo.localhost"),
            ("[::1]:8080", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(normalize_host(input), expect, "input {input}");
        }
    }

    #[test]
    fn compile_skips_bad_addresses_and_normalizes_hosts() {
        let table = Table::compile(&wire(3, &[("web.1", "127.0.0.1:5000"), ("web.2", "no port")]), &Table::default());
        assert_eq!(table.version, 3);
        assert!(table.loaded);
        let route = table.route("www.demo.localhost").expect("route");
        assert_eq!(route.backends.len(), 1);
        assert_eq!(&*route.backends[0].dyno, "web.1");
        assert!(table.route("other.localhost").is_none());
    }

    #[test]
    fn counters_survive_a_table_swap_for_the_same_address() {
        let first = Table::compile(&wire(1, &[("web.1", "127.0.0.1:5000")]), &Table::default());
        let guard = first.route("demo.localhost").unwrap().backends[0].start();
        let second = Table::compile(&wire(2, &[("web.1", "127.0.0.1:5000"), ("web.2", "127.0.0.1:5001")]), &first);
        let backends = &second.route("demo.localhost").unwrap().backends;
        assert_eq!(backends[0].load.score(), 1);
        assert_eq!(backends[1].load.score(), 0);
        drop(guard);
        assert_eq!(backends[0].load.score(), 0);
    }

    #[test]
    fn pick_prefers_the_less_loaded_of_two_and_skips_tried() {
        let table =
            Table::compile(&wire(1, &[("web.1", "127.0.0.1:5000"), ("web.2", "127.0.0.1:5001")]), &Table::default());
        let route = table.route("demo.localhost").unwrap();
        let _busy = route.backends[0].start();
        for _ in 0..100 {
            assert_eq!(route.pick(&[]), Some(1));
        }
        assert_eq!(route.pick(&[1]), Some(0));
        assert_eq!(route.pick(&[0, 1]), None);
        route.backends[1].connect_failed();
        assert_eq!(route.pick(&[]), Some(0), "a recently failed backend loses against a busy one");
    }
}
