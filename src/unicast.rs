//! The unicast peer set: the addresses a node sends each hello and each
//! datagram for the whole cluster to one by one, besides (or, with
//! [`unicast_only`](crate::ConfigBuilder::unicast_only), instead of) the
//! cluster's broadcast or multicast address.
//!
//! Three kinds of address are sent to, at most
//! [`max_unicast_peers`](crate::ConfigBuilder::max_unicast_peers) in all:
//! 1. live peers that do not hear our broadcast or multicast: those outside
//!    every subnet of the interfaces the driver chose
//!    ([`Protocol::set_interfaces`](crate::protocol::Protocol::set_interfaces)),
//!    or every peer with `unicast_only`. Until the driver names its
//!    interfaces (the core alone, a plain simulation), every peer counts as
//!    on the link. An IPv6 link-local peer is on the link when a chosen
//!    IPv6 interface has the index of its scope;
//! 2. the seeds (the literal ones from the config, then whatever
//!    [`Protocol::set_seeds`](crate::protocol::Protocol::set_seeds) says),
//!    except those that are live peers (they are in the first group or hear
//!    our broadcast). A seed on our own subnet is sent to until heard: the
//!    network may carry no broadcast;
//! 3. addresses learned from the `peers` field of other nodes' hellos, not
//!    yet heard from and not on our subnets (unless `unicast_only`), each
//!    until a node timeout after it was last listed.
//!
//! Live peers come first because they are known to be there; seeds and
//! learned addresses (together: unverified) are not. When they do not all
//! fit, live peers get the limit less a quarter of it (at least one
//! address when the limit is 2 or more) kept for unverified addresses while
//! there are any: without that, a node whose limit is full of peers would
//! never reach the rest of a large cluster, nor they it. Each group that
//! does not fit rotates, in address order: every hello goes to the next
//! ones, so a live peer is reached every `ceil(n / slots)` hellos. Other
//! datagrams for the cluster go where the latest hello went. Our own
//! addresses (an interface's address with our port) are never sent to,
//! and no address twice.
//!
//! Each hello lists (in `peers`) up to [`MAX_LISTED`] live peers of the
//! first group, rotating through them when there are more: a node of one
//! subnet that reaches one node of another by a seed thus makes all of
//! them known to each other.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::ops::Bound;
use std::time::{Duration, Instant};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::interface::{Interface, Via};
use crate::membership::NodeId;

/// At most this many addresses in a hello's `peers` field, sent or read:
/// a hello listing more has the rest ignored.
pub(crate) const MAX_LISTED: usize = 16;

/// Longest entry of a `peers` field, and longest advertised address, read
/// (`[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535` is 47 bytes).
const MAX_ENTRY_LEN: usize = 64;

/// At most this many seed addresses are kept (64 names may resolve to
/// many addresses each).
const MAX_SEED_ADDRS: usize = 1024;

/// The address node-discovery always puts in a hello, and shoal too unless
/// told to advertise another: it means "use the source address".
pub(crate) const DEFAULT_ADDRESS: &str = "127.0.0.1";

/// Whether `ip` may be sent to by unicast, as told by a node at `told_by`:
/// not unspecified, multicast, broadcast or in 0.0.0.0/8, not IPv6
/// link-local (its scope is the announcer's, meaningless here), and
/// loopback only when the announcer is itself on loopback.
pub(crate) fn usable(ip: IpAddr, told_by: IpAddr) -> bool {
    if ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    if ip.is_loopback() {
        return told_by.is_loopback();
    }
    match ip {
        IpAddr::V4(v4) => !v4.is_broadcast() && v4.octets()[0] != 0,
        IpAddr::V6(v6) => !is_link_local(&v6),
    }
}

fn is_link_local(ip: &Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// Where to reach a peer by unicast: the address its hello advertises, with
/// the port of `from`, when that is a usable address; else `from`.
pub(crate) fn target_of(from: SocketAddr, address: &str) -> SocketAddr {
    if address == DEFAULT_ADDRESS || address.len() > MAX_ENTRY_LEN {
        return from;
    }
    match address.parse::<IpAddr>() {
        Ok(ip) if usable(ip, from.ip()) => SocketAddr::new(ip, from.port()),
        _ => from,
    }
}

/// How a live peer was heard, for the unicast set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PeerPath {
    source: SocketAddr,
    target: SocketAddr,
    /// The index of the interface it was heard on (0: unknown).
    index: u32,
}

/// The unicast peer set. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Unicast {
    /// Our port: an interface's address with it is ours.
    port: u16,
    unicast_only: bool,
    max: usize,
    /// How long a learned address is kept after it was last listed.
    learn_for: Duration,
    /// The interfaces the driver chose; `None` until it says.
    interfaces: Option<Vec<Interface>>,
    seeds: Vec<SocketAddr>,
    /// Every live peer, by id.
    peers: HashMap<NodeId, PeerPath>,
    /// How many live peers have each target (nodes sharing a port on one
    /// host share one).
    live: HashMap<SocketAddr, u32>,
    /// The targets of live peers that do not hear our broadcast, in
    /// address order for the rotation, with how many peers have each.
    off_link: BTreeMap<SocketAddr, u32>,
    /// Learned addresses and until when each is kept.
    learned: HashMap<SocketAddr, Instant>,
    /// Where the rotation through off-link peers is, when they do not all fit.
    peer_cursor: Cursor,
    /// Where the rotation through unverified addresses is.
    unverified_cursor: Cursor,
    /// The last one the previous hello listed, when they do not all fit.
    listed_up_to: Option<SocketAddr>,
}

impl Unicast {
    pub(crate) fn new(config: &crate::Config) -> Unicast {
        // Literal seeds now; names once the driver resolves them.
        let seeds = config
            .seeds()
            .filter_map(|(host, port)| host.parse::<IpAddr>().ok().map(|ip| (ip, port)))
            .map(SocketAddr::from)
            .collect();
        Unicast {
            port: config.port(),
            unicast_only: config.unicast_only,
            max: config.max_unicast_peers,
            learn_for: config.node_timeout,
            interfaces: None,
            seeds,
            peers: HashMap::new(),
            live: HashMap::new(),
            off_link: BTreeMap::new(),
            learned: HashMap::new(),
            peer_cursor: Cursor::default(),
            unverified_cursor: Cursor::default(),
            listed_up_to: None,
        }
    }

    /// Whether nothing is ever sent by unicast now: no seeds, no learned
    /// addresses, no off-link peers.
    pub(crate) fn is_idle(&self) -> bool {
        self.off_link.is_empty() && self.seeds.is_empty() && self.learned.is_empty()
    }

    /// The interfaces the driver chose. Returns whether they changed.
    pub(crate) fn set_interfaces(&mut self, interfaces: &[Interface]) -> bool {
        if self.interfaces.as_deref() == Some(interfaces) {
            return false;
        }
        self.interfaces = Some(interfaces.to_vec());
        // Which peers hear our broadcast may have changed: sort them again.
        self.off_link.clear();
        let paths: Vec<PeerPath> = self.peers.values().copied().collect();
        for path in paths {
            if !self.hears_cluster(&path) {
                *self.off_link.entry(path.target).or_default() += 1;
            }
        }
        true
    }

    /// Replaces the seeds. Returns whether one of them is new.
    pub(crate) fn set_seeds(&mut self, seeds: &[SocketAddr]) -> bool {
        let new = seeds.iter().any(|s| !self.seeds.contains(s));
        self.seeds = seeds.iter().take(MAX_SEED_ADDRS).copied().collect();
        new
    }

    /// A live peer, new or whose path or target changed.
    pub(crate) fn peer_seen(
        &mut self,
        id: &NodeId,
        source: SocketAddr,
        target: SocketAddr,
        via: Option<&Via>,
    ) {
        self.peer_gone(id.as_str());
        let path = PeerPath {
            source,
            target,
            index: via.map_or(0, |v| v.index),
        };
        *self.live.entry(target).or_default() += 1;
        if !self.hears_cluster(&path) {
            *self.off_link.entry(target).or_default() += 1;
        }
        // A learned address is now a peer: the peer's entry takes over.
        self.learned.remove(&target);
        self.peers.insert(id.clone(), path);
    }

    /// A peer left or timed out.
    pub(crate) fn peer_gone(&mut self, id: &str) {
        let Some(path) = self.peers.remove(id) else {
            return;
        };
        decrement(&mut self.live, path.target);
        if !self.hears_cluster(&path) {
            decrement(&mut self.off_link, path.target);
        }
    }

    /// Whether a peer heard on `path` hears our broadcast or multicast.
    fn hears_cluster(&self, path: &PeerPath) -> bool {
        if self.unicast_only {
            return false;
        }
        let Some(interfaces) = &self.interfaces else {
            return true;
        };
        match path.source {
            SocketAddr::V6(v6) if is_link_local(v6.ip()) => {
                let scope = if v6.scope_id() != 0 {
                    v6.scope_id()
                } else {
                    path.index
                };
                interfaces
                    .iter()
                    .any(|i| i.addr.is_ipv6() && (scope == 0 || i.index == scope))
            }
            source => interfaces.iter().any(|i| i.contains(source.ip())),
        }
    }

    /// Whether `addr` is one of ours: an interface's address with our port.
    fn is_own(&self, addr: SocketAddr) -> bool {
        addr.port() == self.port
            && self
                .interfaces
                .iter()
                .flatten()
                .any(|i| i.addr == addr.ip())
    }

    /// Whether `ip` is on one of our subnets (so hears our broadcast).
    fn on_link(&self, ip: IpAddr) -> bool {
        self.interfaces.iter().flatten().any(|i| i.contains(ip))
    }

    /// Learns the addresses a hello from `from` lists (its raw `peers`
    /// field): at most [`MAX_LISTED`] read, each checked, and the learned
    /// set never larger than the limit.
    pub(crate) fn learn(&mut self, now: Instant, from: SocketAddr, listed: &RawValue) {
        for addr in parse_listed(listed) {
            if addr.port() == 0
                || !usable(addr.ip(), from.ip())
                || self.is_own(addr)
                || self.live.contains_key(&addr)
                || self.seeds.contains(&addr)
            {
                continue;
            }
            // On one of our subnets it hears our broadcast (unless we send
            // none); a subnet's broadcast address is no peer.
            if self.is_broadcast(addr.ip()) || (!self.unicast_only && self.on_link(addr.ip())) {
                continue;
            }
            let until = now + self.learn_for;
            if let Some(at) = self.learned.get_mut(&addr) {
                *at = until;
                continue;
            }
            if self.learned.len() >= self.max {
                self.expire(now);
            }
            if self.learned.len() < self.max {
                self.learned.insert(addr, until);
            }
        }
    }

    fn is_broadcast(&self, ip: IpAddr) -> bool {
        self.interfaces
            .iter()
            .flatten()
            .any(|i| i.broadcast.is_some_and(|b| IpAddr::V4(b) == ip))
    }

    /// Forgets learned addresses nobody listed lately.
    fn expire(&mut self, now: Instant) {
        self.learned.retain(|_, until| *until > now);
    }

    /// The addresses to send the next datagram for the cluster to, at most
    /// the limit. `hello` moves the rotations on (a hello), or not (another
    /// message goes where the latest hello went).
    ///
    /// When live off-link peers alone would fill the limit, a quarter of it
    /// (at least one address when the limit is 2 or more) is kept for the
    /// unverified addresses (seeds not heard, learned addresses): without
    /// that, a node whose limit is full of peers would never reach the
    /// others, nor they it.
    pub(crate) fn targets(&mut self, now: Instant, hello: bool) -> Vec<SocketAddr> {
        if hello {
            self.expire(now);
        }
        if self.is_idle() {
            return Vec::new();
        }
        let mut unverified: Vec<SocketAddr> = self
            .seeds
            .iter()
            .chain(self.learned.keys())
            .copied()
            .filter(|a| !self.is_own(*a) && !self.live.contains_key(a))
            .collect();
        unverified.sort_unstable();
        unverified.dedup();
        let reserve = if self.max >= 2 {
            (self.max / 4).max(1)
        } else {
            0
        };
        let peer_slots = self.max - reserve.min(unverified.len());
        let mut out: Vec<SocketAddr> =
            Vec::with_capacity(self.max.min(self.off_link.len() + unverified.len()));
        if self.off_link.len() <= peer_slots {
            out.extend(self.off_link.keys().copied().filter(|a| !self.is_own(*a)));
        } else {
            let after = self.peer_cursor.start(hello);
            out.extend(
                rotation(&self.off_link, after)
                    .filter(|a| !self.is_own(*a))
                    .take(peer_slots),
            );
            self.peer_cursor.advance(hello, out.last().copied());
        }
        let room = self.max - out.len();
        if unverified.len() <= room {
            out.extend(unverified);
        } else {
            let after = self.unverified_cursor.start(hello);
            let at = after.map_or(0, |a| unverified.partition_point(|x| *x <= a));
            let window: Vec<SocketAddr> = unverified[at..]
                .iter()
                .chain(&unverified[..at])
                .copied()
                .take(room)
                .collect();
            self.unverified_cursor
                .advance(hello, window.last().copied());
            out.extend(window);
        }
        out
    }

    /// The `peers` field of our next hello: up to [`MAX_LISTED`] live peers
    /// we reach by unicast, rotating; `None` when there are none.
    pub(crate) fn listed(&mut self) -> Option<Vec<String>> {
        if self.off_link.is_empty() {
            return None;
        }
        let listable = |a: &SocketAddr| !matches!(a, SocketAddr::V6(v6) if is_link_local(v6.ip()));
        let chosen: Vec<SocketAddr> = if self.off_link.len() <= MAX_LISTED {
            self.off_link.keys().copied().filter(listable).collect()
        } else {
            let chosen: Vec<SocketAddr> = rotation(&self.off_link, self.listed_up_to)
                .take(MAX_LISTED)
                .filter(listable)
                .collect();
            self.listed_up_to = chosen.last().copied().or(self.listed_up_to);
            chosen
        };
        if chosen.is_empty() {
            return None;
        }
        Some(chosen.into_iter().map(|a| Listed(a).to_string()).collect())
    }
}

/// A rotation's place: each hello's window starts after the last address
/// of the previous one; other messages go to the latest hello's window.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    /// Where the next hello's window starts (after this address).
    next: Option<SocketAddr>,
    /// Where the latest hello's window started.
    current: Option<SocketAddr>,
}

impl Cursor {
    fn start(&mut self, hello: bool) -> Option<SocketAddr> {
        if hello {
            self.current = self.next;
        }
        self.current
    }

    fn advance(&mut self, hello: bool, last: Option<SocketAddr>) {
        if hello {
            self.next = last;
        }
    }
}

/// Every key of `map` once, starting after `after` and wrapping round.
fn rotation(
    map: &BTreeMap<SocketAddr, u32>,
    after: Option<SocketAddr>,
) -> impl Iterator<Item = SocketAddr> + '_ {
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let tail = map.range((start, Bound::Unbounded));
    let head = map
        .range(..)
        .take_while(move |(a, _)| after.is_some_and(|after| **a <= after));
    tail.chain(head).map(|(a, _)| *a)
}

/// Takes one from `key`'s count, removing it at zero.
fn decrement<M>(map: &mut M, key: SocketAddr)
where
    M: CountMap,
{
    if let Some(n) = map.count(key) {
        *n -= 1;
        if *n == 0 {
            map.forget(key);
        }
    }
}

/// A multiset of addresses, as either map.
trait CountMap {
    fn count(&mut self, key: SocketAddr) -> Option<&mut u32>;
    fn forget(&mut self, key: SocketAddr);
}

impl CountMap for HashMap<SocketAddr, u32> {
    fn count(&mut self, key: SocketAddr) -> Option<&mut u32> {
        self.get_mut(&key)
    }
    fn forget(&mut self, key: SocketAddr) {
        self.remove(&key);
    }
}

impl CountMap for BTreeMap<SocketAddr, u32> {
    fn count(&mut self, key: SocketAddr) -> Option<&mut u32> {
        self.get_mut(&key)
    }
    fn forget(&mut self, key: SocketAddr) {
        self.remove(&key);
    }
}

/// An address as a `peers` entry: `ip:port`, IPv6 as `[ip]:port` without
/// a scope id.
struct Listed(SocketAddr);

impl fmt::Display for Listed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V6(v6) => write!(f, "{}", SocketAddrV6::new(*v6.ip(), v6.port(), 0, 0)),
            v4 => write!(f, "{v4}"),
        }
    }
}

/// Reads a `peers` field: the first [`MAX_LISTED`] entries that parse as
/// socket addresses (entries longer than 64 bytes do not); the rest of a
/// longer list is skipped without being kept. Anything but an array of
/// strings reads as an empty list.
pub(crate) fn parse_listed(raw: &RawValue) -> Vec<SocketAddr> {
    serde_json::from_str::<List>(raw.get())
        .map(|l| l.0)
        .unwrap_or_default()
}

struct List(Vec<SocketAddr>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = List;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of addresses")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
        let mut out = Vec::new();
        for _ in 0..MAX_LISTED {
            match seq.next_element::<Entry>()? {
                Some(Entry(Some(addr))) => out.push(addr),
                Some(Entry(None)) => {}
                None => return Ok(List(out)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(List(out))
    }
}

struct Entry(Option<SocketAddr>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(EntryVisitor)
    }
}

struct EntryVisitor;

impl Visitor<'_> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
        Ok(Entry(if v.len() <= MAX_ENTRY_LEN {
            v.parse().ok()
        } else {
            None
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    fn set(config: crate::ConfigBuilder) -> Unicast {
        let mut u = Unicast::new(&config.build().unwrap());
        u.set_interfaces(&[Interface::new("eth0", 2, "10.0.1.5".parse().unwrap(), 24)]);
        u
    }

    #[test]
    fn usable_addresses_are_unicast_ones() {
        let lan: IpAddr = "10.0.1.9".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for ok in ["10.0.2.1", "192.0.2.1", "2001:db8::1", "fd00::1"] {
            assert!(usable(ok.parse().unwrap(), lan), "{ok}");
        }
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "::",
            "ff02::1",
            "fe80::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!usable(bad.parse().unwrap(), lan), "{bad}");
        }
        // Loopback only from loopback (a test cluster on one host).
        assert!(usable("127.0.0.2".parse().unwrap(), lo));
    }

    #[test]
    fn the_target_is_the_advertised_address_with_the_source_port() {
        let from = sa("10.0.0.2:40000");
        assert_eq!(target_of(from, "127.0.0.1"), from);
        assert_eq!(target_of(from, "203.0.113.9"), sa("203.0.113.9:40000"));
        assert_eq!(target_of(from, "2001:db8::9"), sa("[2001:db8::9]:40000"));
        for bad in [
            "",
            "x",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "fe80::1",
            &"1".repeat(100),
        ] {
            assert_eq!(target_of(from, bad), from, "{bad}");
        }
    }

    #[test]
    fn a_peers_field_is_read_with_bounds() {
        // The first 16 entries at most, the rest skipped.
        let many: Vec<String> = (1..=1000)
            .map(|i| format!("\"10.9.{}.{}:1\"", i / 250, i % 250 + 1))
            .collect();
        let got = parse_listed(&raw(&format!("[{}]", many.join(","))));
        assert_eq!(got.len(), MAX_LISTED);
        assert_eq!(got[0], sa("10.9.0.2:1"));
        // Entries that do not parse are skipped; anything but an array of
        // strings is no list.
        let long = format!("\"{}\"", "1".repeat(5000));
        let got = parse_listed(&raw(&format!(
            r#"["x","","999.1.1.1:1",{long},"[2001:db8::1]:5","10.0.0.1:7"]"#
        )));
        assert_eq!(got, vec![sa("[2001:db8::1]:5"), sa("10.0.0.1:7")]);
        for not_a_list in [
            "null",
            "17",
            r#""10.0.0.1:7""#,
            r#"{"a":"10.0.0.1:7"}"#,
            "[1,2]",
            r#"[["10.0.0.1:7"]]"#,
            r#"["10.0.0.1:7",null]"#,
        ] {
            assert!(parse_listed(&raw(not_a_list)).is_empty(), "{not_a_list}");
        }
    }

    #[test]
    fn learned_addresses_are_checked_bounded_and_expire() {
        let t0 = Instant::now();
        let mut u = set(crate::Config::builder()
            .max_unicast_peers(4)
            .seeds(["10.0.7.7:12345"]));
        let from = sa("10.0.3.3:12345");
        let listed = raw(
            r#"["10.0.1.5:12345","10.0.1.9:12345","10.0.1.255:12345","10.0.7.7:12345","10.0.8.1:12345","10.0.8.1:12345","127.0.0.1:1","10.0.8.2:12345","10.0.8.3:12345","10.0.8.4:12345","10.0.8.5:12345"]"#,
        );
        u.learn(t0, from, &listed);
        // Ours, on our subnet, its broadcast, a seed, loopback: skipped;
        // then at most the limit.
        assert_eq!(u.learned.len(), 4);
        assert!(u
            .learned
            .keys()
            .all(|a| a.ip().to_string().starts_with("10.0.8.")));
        let targets = u.targets(t0, true);
        assert_eq!(targets.len(), 4, "{targets:?}");
        // Not listed again for a node timeout: forgotten.
        let later = t0 + crate::Config::default().node_timeout() + Duration::from_millis(1);
        assert_eq!(u.targets(later, true), vec![sa("10.0.7.7:12345")]);
        assert!(u.learned.is_empty());
    }

    #[test]
    fn off_link_peers_come_first_and_rotate_when_over_the_limit() {
        let t0 = Instant::now();
        let mut u = set(crate::Config::builder().max_unicast_peers(4));
        // Four on-link peers: no unicast, nothing listed.
        for n in 1..=4u8 {
            let a = SocketAddr::from(([10, 0, 1, 10 + n], 12345));
            u.peer_seen(&NodeId::new(&format!("on{n}")), a, a, None);
        }
        assert!(u.targets(t0, true).is_empty());
        assert_eq!(u.listed(), None);
        // Ten off-link peers, limit 4: each hello the next 4, all in 3 hellos.
        for n in 1..=10u8 {
            let a = SocketAddr::from(([10, 0, 2, n], 12345));
            u.peer_seen(&NodeId::new(&format!("off{n}")), a, a, None);
        }
        let mut reached = std::collections::HashSet::new();
        for _ in 0..3 {
            let t = u.targets(t0, true);
            assert_eq!(t.len(), 4);
            // A message goes where the latest hello went.
            assert_eq!(u.targets(t0, false), t);
            reached.extend(t);
        }
        assert_eq!(reached.len(), 10);
        let listed = u.listed().unwrap();
        assert_eq!(listed.len(), 10);
        assert!(listed.contains(&"10.0.2.1:12345".to_owned()));
        // A peer that leaves is no longer sent to.
        u.peer_gone("off1");
        assert!((0..5).all(|_| !u.targets(t0, true).contains(&sa("10.0.2.1:12345"))));
        // unicast_only: every peer is off-link.
        let mut only = set(crate::Config::builder().unicast_only(true));
        let a = sa("10.0.1.11:12345");
        only.peer_seen(&NodeId::new("x"), a, a, None);
        assert_eq!(only.targets(t0, true), vec![a]);
    }

    #[test]
    fn seeds_are_sent_to_until_heard_and_never_our_own() {
        let t0 = Instant::now();
        let mut u =
            set(crate::Config::builder().seeds(["10.0.1.5:12345", "10.0.2.1:12345", "10.0.1.7"]));
        // Ours (10.0.1.5 with our port) is skipped; a seed on our subnet is
        // still sent to until heard (the network may carry no broadcast).
        assert_eq!(
            u.targets(t0, true),
            vec![sa("10.0.1.7:12345"), sa("10.0.2.1:12345")]
        );
        let seed = sa("10.0.2.1:12345");
        u.peer_seen(&NodeId::new("s"), seed, seed, None);
        // Heard: now it is an off-link peer, sent to once.
        assert_eq!(u.targets(t0, true), vec![seed, sa("10.0.1.7:12345")]);
        let near = sa("10.0.1.7:12345");
        u.peer_seen(&NodeId::new("n"), near, near, None);
        // Heard on our subnet: it hears our broadcast.
        assert_eq!(u.targets(t0, true), vec![seed]);
        // set_seeds replaces them and says whether one is new.
        assert!(!u.set_seeds(&[seed]));
        assert!(u.set_seeds(&[sa("10.0.3.1:12345")]));
    }

    #[test]
    fn link_local_peers_are_on_link_by_their_scope_and_never_listed() {
        let t0 = Instant::now();
        let mut u = Unicast::new(&crate::Config::builder().build().unwrap());
        u.set_interfaces(&[
            Interface::new("eth0", 2, "10.0.1.5".parse().unwrap(), 24),
            Interface::new("eth0", 2, "fe80::5".parse().unwrap(), 64),
        ]);
        let eth0 = sa("[fe80::9%2]:12345");
        let eth1 = sa("[fe80::9%3]:12345");
        u.peer_seen(&NodeId::new("a"), eth0, eth0, None);
        assert!(u.targets(t0, true).is_empty());
        u.peer_seen(&NodeId::new("b"), eth1, eth1, None);
        assert_eq!(u.targets(t0, true), vec![eth1]);
        assert_eq!(u.listed(), None);
        let global = sa("[2001:db8::9]:12345");
        u.peer_seen(&NodeId::new("c"), global, global, None);
        assert_eq!(u.listed(), Some(vec!["[2001:db8::9]:12345".to_owned()]));
    }
}
