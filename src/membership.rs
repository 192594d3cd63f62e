//! The table of live peers: who we have heard from, what they said, and when.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::hash::BuildHasher;
use std::net::{SocketAddr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foldhash::{fast, quality};
use hashbrown::hash_map::{EntryRef, HashMap};

use crate::election::Rank;
use crate::interface::Via;
use crate::wire::envelope::{HelloRef, RawJson};

/// A node's instance id: node-discovery's `iid`, 32 hex characters for
/// shoal and node-discovery nodes (any short string is accepted from the wire).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Longest id accepted from the wire.
    pub const MAX_LEN: usize = 128;

    /// Wraps an id string.
    ///
    /// ```
    /// let id = shoal::NodeId::new("0123abcd");
    /// assert_eq!(id.as_str(), "0123abcd");
    /// ```
    pub fn new(id: &str) -> Self {
        NodeId(Arc::from(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ids longer than this many characters are shortened in one-line output.
const SHORT_ID_LIMIT: usize = 12;
/// How many characters of a long id one-line output keeps: 8 hex digits
/// (32 bits) tell apart the nodes of any LAN-sized cluster (two of a
/// hundred random ids share them about once in a million clusters), and a
/// prefix still finds the whole id with grep.
const SHORT_ID_CHARS: usize = 8;

/// Writes a node id for a one-line log entry: an id longer than 12
/// characters (every shoal and node-discovery id, 32 hex digits) as its
/// first 8 and `…`; the whole id under the alternate flag (`{:#}`).
pub(crate) fn write_id(f: &mut fmt::Formatter<'_>, id: &NodeId) -> fmt::Result {
    let id = id.as_str();
    if !f.alternate() && id.chars().nth(SHORT_ID_LIMIT).is_some() {
        let cut = id
            .char_indices()
            .nth(SHORT_ID_CHARS)
            .map_or(id.len(), |(i, _)| i);
        write_text(f, &id[..cut])?;
        return f.write_char('…');
    }
    write_text(f, id)
}

/// Characters a peer could use to forge or hide log lines: controls
/// (newlines, terminal escapes), line and paragraph separators, and the
/// bidirectional overrides that reorder what a reader sees.
fn is_unsafe_in_logs(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes text that came from the network (ids, host names, process ids)
/// so that it stays on one line and cannot pass for another log entry:
/// unsafe characters are written as escapes (`\n`, `\u{1b}`).
pub(crate) fn write_text(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    write_escaped(f, text, is_unsafe_in_logs)
}

/// Writes a name from the network (a channel, a service) in double quotes,
/// escaped as [`write_text`] does and with its own quotes and backslashes
/// escaped, so that where it ends is never in doubt.
pub(crate) fn write_quoted(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    f.write_char('"')?;
    write_escaped(f, name, |c| matches!(c, '"' | '\\') || is_unsafe_in_logs(c))?;
    f.write_char('"')
}

fn write_escaped(
    f: &mut fmt::Formatter<'_>,
    text: &str,
    escape: impl Fn(char) -> bool,
) -> fmt::Result {
    let mut rest = text;
    while let Some(i) = rest.find(&escape) {
        f.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        write!(f, "{}", c.escape_default())?;
        rest = &rest[i + c.len_utf8()..];
    }
    f.write_str(rest)
}

/// An election weight for one-line output: with two decimals when that is
/// exact (a configured `0.9` shows as `0.90`), otherwise in full, since
/// random weights differ only in later digits and the election compares
/// them exactly.
pub(crate) struct Weight(pub(crate) f64);

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = format!("{:.2}", self.0);
        if short.parse::<f64>() == Ok(self.0) {
            f.write_str(&short)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// What we know of one peer, from its latest hello.
///
/// Its `Display` is one line for a log; its `Debug` shows every public
/// field, with the times as durations (see the impls).
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Peer {
    /// Instance id (`iid`).
    pub id: NodeId,
    /// Process id (`pid`).
    pub pid: String,
    /// The peer's host name, as it reported it.
    pub host_name: String,
    /// Source address and port of its datagrams. A peer heard over two
    /// paths (IPv4 and IPv6, or two interfaces on one LAN) keeps the path
    /// first heard while that path stays alive (heard within two of its
    /// hello intervals), so this does not flap between them.
    pub addr: SocketAddr,
    /// The interface and local address we heard it on (on the same path
    /// as `addr`), when the driver knows (it always does; a core fed by
    /// hand may not).
    pub via: Option<Via>,
    /// How long before `last_seen` we last heard it on the path of `addr`
    /// and `via`, in ms (0 when its latest hello came that way). A `u32`
    /// in what would be padding, not a second `Instant`: `Peer` travels in
    /// every event.
    pub(crate) path_lag_ms: u32,
    /// What only some peers need (an advertised address, a second path),
    /// out of line for the same reason.
    pub(crate) paths: Option<Box<Paths>>,
    /// It says it is a master.
    pub is_master: bool,
    /// It may become a master.
    pub is_master_eligible: bool,
    /// Its election weight.
    pub weight: f64,
    /// What it advertises, if anything.
    pub info: Option<serde_json::Value>,
    /// `info` as it came on the wire: a hello whose raw `info` is the same
    /// needs no parse and no comparison of values.
    pub(crate) info_raw: Option<Box<str>>,
    /// A keyed hash of (`pid`, `host_name`, raw `info`) from its latest
    /// hello: when the next one hashes the same, none of the three is
    /// compared, so a routine hello reads no string of the peer's from
    /// memory (in a table of thousands, each would be a cache miss).
    pub(crate) wire_fingerprint: u64,
    /// The highest election epoch it has seen (shoal peers only).
    pub epoch: Option<Epoch>,
    /// How often it says hello: what it announces (shoal), or what we
    /// measure (node-discovery peers announce nothing; until their second
    /// hello we assume our own interval, at most 1 s).
    pub hello_interval: Duration,
    /// Gaps measured so far, for a peer that does not announce its interval.
    pub(crate) gaps_measured: u32,
    /// The sequence number of its latest hello (shoal peers only).
    pub hello_seq: Option<u64>,
    /// When we last heard its hello (monotonic).
    pub last_seen: Instant,
    /// When it will be removed unless it says hello again.
    pub deadline: Instant,
    /// Where the table's deadline index files it: at most `deadline`, moved
    /// up only every few hellos (see [`Membership`]).
    pub(crate) indexed: Instant,
}

/// The rarer facts about a peer's addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Paths {
    /// Where we reach it by unicast when its hello advertises an address
    /// (see [`ConfigBuilder::advertise_addr`](crate::ConfigBuilder::advertise_addr)):
    /// that address with the port of `addr`.
    pub(crate) advertised: Option<SocketAddr>,
    /// The source address of its other path, if it has one we heard (a
    /// dual-stack node): its registry datagrams may come either way.
    pub(crate) alt: Option<SocketAddr>,
}

impl Peer {
    /// Where we reach it by unicast: the address it advertises, with the
    /// port of `addr`, or `addr` itself.
    pub(crate) fn target(&self) -> SocketAddr {
        self.paths
            .as_ref()
            .and_then(|p| p.advertised)
            .unwrap_or(self.addr)
    }

    fn paths_mut(&mut self) -> &mut Paths {
        self.paths.get_or_insert_with(Box::default)
    }

    /// Records the source of a second path.
    fn set_alt(&mut self, alt: SocketAddr) {
        if self.paths.as_ref().and_then(|p| p.alt) != Some(alt) {
            self.paths_mut().alt = Some(alt);
        }
    }

    /// Sets the unicast target from the hello's `address` field.
    fn set_advertised(&mut self, address: &str) {
        let target = crate::unicast::target_of(self.addr, address);
        let advertised = (target != self.addr).then_some(target);
        if self.paths.as_ref().and_then(|p| p.advertised) != advertised {
            self.paths_mut().advertised = advertised;
        }
    }
}

/// One line for a log: the id (shortened, see below), host name, address,
/// `master` when it says it is one, `not eligible` when it may not become
/// one, and its weight (two decimals when exact, else in full).
///
/// Ids longer than 12 characters (every shoal and node-discovery id, 32 hex
/// digits) show as their first 8 and `…`: enough to tell a LAN's nodes
/// apart and to grep for the whole id. The alternate form, `{:#}`, prints
/// them whole. Text from the network is escaped so that it stays on one line.
///
/// ```
/// use std::time::Duration;
/// use shoal::sim::SimNet;
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().weight(0.9).build().unwrap());
/// let b = net.add_node(shoal::Config::builder().weight(0.1).build().unwrap());
/// net.run_for(Duration::from_secs(3));
/// let peer = net.node(b).protocol.peers().next().expect("b knows a");
/// let line = peer.to_string();
/// let id = net.node(a).protocol.id().as_str();
/// assert!(line.starts_with(&format!("{}… (", &id[..8])), "{line}");
/// assert!(line.ends_with(", master, weight 0.90)"), "{line}");
/// assert!(format!("{peer:#}").starts_with(&format!("{id} (")));
/// ```
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_id(f, &self.id)?;
        f.write_str(" (")?;
        write_text(f, &self.host_name)?;
        f.write_str(" at ")?;
        write_addr(f, self.addr, self.via.as_ref())?;
        if self.is_master {
            f.write_str(", master")?;
        }
        if !self.is_master_eligible {
            f.write_str(", not eligible")?;
        }
        write!(f, ", weight {})", Weight(self.weight))
    }
}

/// Writes a peer's address: an IPv6 link-local one with its scope as the
/// name of the interface it was heard on when that is known
/// (`[fe80::1%eth0]:12345`), else as [`SocketAddrV6`] writes it
/// (`[fe80::1%2]:12345`).
pub(crate) fn write_addr(
    f: &mut fmt::Formatter<'_>,
    addr: SocketAddr,
    via: Option<&Via>,
) -> fmt::Result {
    if let SocketAddr::V6(v6) = addr {
        if let Some(name) = scope_name(&v6, via) {
            f.write_char('[')?;
            write!(f, "{}%", v6.ip())?;
            write_text(f, name)?;
            return write!(f, "]:{}", v6.port());
        }
    }
    write!(f, "{addr}")
}

/// The name of the interface a link-local address's scope designates, if
/// `via` is that interface (or the address carries no scope id).
fn scope_name<'a>(v6: &SocketAddrV6, via: Option<&'a Via>) -> Option<&'a str> {
    let link_local = v6.ip().segments()[0] & 0xffc0 == 0xfe80;
    let via = via?;
    let same = v6.scope_id() == 0 || v6.scope_id() == via.index;
    (link_local && same && via.local.is_ipv6()).then_some(&*via.interface)
}

/// Every public field, except that the two `Instant`s, meaningless when
/// printed, become durations: `last_heard_ago` (since `last_seen`,
/// measured now on the system clock, so it reads zero for a peer of a
/// simulation, whose clock runs ahead) and `timeout` (how long it may stay
/// silent after `last_seen`, so its `deadline`). The table's private
/// bookkeeping is left out.
///
/// ```
/// use std::time::Duration;
/// use shoal::sim::SimNet;
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().build().unwrap());
/// let b = net.add_node(shoal::Config::builder().build().unwrap());
/// net.run_for(Duration::from_secs(1));
/// let peer = net.node(b).protocol.peers().next().expect("b knows a");
/// let debug = format!("{peer:?}");
/// assert!(debug.starts_with("Peer { id: NodeId("), "{debug}");
/// assert!(debug.contains("timeout: 2.6s"), "{debug}");
/// ```
impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("host_name", &self.host_name)
            .field("addr", &self.addr)
            .field("via", &self.via)
            .field("is_master", &self.is_master)
            .field("is_master_eligible", &self.is_master_eligible)
            .field("weight", &self.weight)
            .field("info", &self.info)
            .field("epoch", &self.epoch)
            .field("hello_interval", &self.hello_interval)
            .field("hello_seq", &self.hello_seq)
            .field(
                "last_heard_ago",
                &Instant::now().saturating_duration_since(self.last_seen),
            )
            .field(
                "timeout",
                &self.deadline.saturating_duration_since(self.last_seen),
            )
            .finish_non_exhaustive()
    }
}

/// An election epoch: a counter that grows with each promotion anywhere in
/// the cluster (and when a master finds that the newest epoch names a node
/// that is no longer master, as after a partition heals), and the master
/// that set it. Every shoal hello
/// carries the highest epoch its sender has seen, so an application can
/// fence a stale master: act only on orders stamped with the newest epoch.
///
/// ```
/// use shoal::{Epoch, NodeId};
/// let old = Epoch { n: 3, master: NodeId::new("a") };
/// let new = Epoch { n: 4, master: NodeId::new("b") };
/// assert!(new > old);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch {
    /// The counter.
    pub n: u64,
    /// The master whose promotion set it.
    pub master: NodeId,
}

/// What a hello changed in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// A node we did not know.
    New,
    /// A known node: whether it was a master before this hello, and whether
    /// this hello changed what it advertises.
    Known {
        was_master: bool,
        info_changed: bool,
        /// Its address, path or unicast target changed.
        moved: bool,
    },
    /// A known node's hello older than one already applied (reordered, or
    /// replayed): ignored entirely.
    Stale,
    /// A new node, refused because the table is full.
    Refused,
    /// Its advertised value could not be parsed (nested too deep): the
    /// hello is dropped.
    BadInfo,
}

/// A peer's advertised value when its raw JSON changed: parsed, and the raw
/// text kept for the next comparison.
fn parse_info(
    raw: Option<RawJson<'_>>,
) -> Result<(Option<serde_json::Value>, Option<Box<str>>), ()> {
    match raw {
        None => Ok((None, None)),
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(value) => Ok((Some(value), Some(raw.get().into()))),
            Err(_) => Err(()),
        },
    }
}

/// The epoch a hello carries, reusing `old` (no allocation) when it is the same.
fn epoch_of(hello: &HelloRef<'_>, old: Option<&Epoch>) -> Option<Epoch> {
    let (n, master) = hello.epoch()?;
    match old {
        Some(e) if e.n == n && e.master.as_str() == master => Some(e.clone()),
        _ => Some(Epoch {
            n,
            master: NodeId::new(master),
        }),
    }
}

/// How long a peer may stay silent: the configured node timeout, or longer
/// for a peer that says hello less often, so that every peer is allowed
/// `missed_hellos` lost hellos plus half an interval of jitter.
///
/// `missed_hellos` is the value `ConfigBuilder::build` settled on: 0 when a
/// timeout was set explicitly and `missed_hellos` was not, so that the
/// timeout is exact for peers that say hello at least as often as we do and
/// a slower peer gets only 1.5 of its intervals, enough not to be dropped
/// between two of its hellos.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub node_timeout: Duration,
    pub missed_hellos: u32,
    /// Our own hello interval: the first guess for a peer that does not
    /// announce its own (see [`first_guess`]).
    pub own_interval: Duration,
}

impl Timeouts {
    pub(crate) fn for_interval(&self, interval: Duration) -> Duration {
        self.node_timeout
            .max(silence_budget(interval, self.missed_hellos))
    }
}

/// The silence a peer that says hello every `interval` survives:
/// `missed_hellos` lost hellos, the interval to its next one, and half an
/// interval of jitter, `(missed_hellos + 1.5) × interval`. `build` checks an
/// explicit timeout against the same formula, so the two cannot disagree.
pub(crate) fn silence_budget(interval: Duration, missed_hellos: u32) -> Duration {
    interval
        .saturating_mul(missed_hellos.saturating_add(1))
        .saturating_add(interval / 2)
}

/// node-discovery does not announce its interval; by default it sends every
/// second, and we measure the gaps to learn what it really uses.
pub(crate) const DEFAULT_PEER_INTERVAL: Duration = Duration::from_millis(1000);

/// The interval assumed for a peer that does not announce one, until its
/// second hello gives a measurement: ours (a cluster usually shares its
/// timings), but never more than node-discovery's default. Guessing 1 s for
/// a Node peer tuned to 250 ms would keep it 6.5 s after a crash if it died
/// before its second hello; guessing our 400 ms for a Node peer at 1 s only
/// shortens its deadline (to the node timeout, 2.6 s) until its second hello,
/// due 1 s after the first.
pub(crate) fn first_guess(own_interval: Duration) -> Duration {
    own_interval.min(DEFAULT_PEER_INTERVAL)
}

/// Updates the measured interval of a peer that does not announce one with
/// one more gap between its hellos. The first gap replaces the first guess;
/// later ones move a running average by a quarter, each clamped to
/// [estimate / 4, 4 x estimate], so that an extra hello (node-discovery says
/// hello when promoted) or a lost one (a gap of two intervals) only nudges
/// it, and a bad first guess is corrected within a few hellos.
pub(crate) fn measure_interval(estimate: Duration, gaps: u32, gap: Duration) -> Duration {
    if gaps <= 1 {
        return gap;
    }
    let sample = gap.clamp(estimate / 4, estimate.saturating_mul(4));
    (estimate.saturating_mul(3) + sample) / 4
}
/// Intervals announced outside this range are clamped: a peer cannot make us
/// keep it for hours, nor expire it before it could possibly say hello.
const MIN_PEER_INTERVAL: Duration = Duration::from_millis(10);
const MAX_PEER_INTERVAL: Duration = Duration::from_secs(60);

/// A master's entry in the table's master index: what the election ranks
/// it by.
#[derive(Debug, Clone)]
struct MasterKey {
    weight: f64,
    id: NodeId,
}

impl MasterKey {
    fn of(peer: &Peer) -> Self {
        MasterKey {
            weight: peer.weight,
            id: peer.id.clone(),
        }
    }

    fn rank(&self) -> Rank<'_> {
        Rank {
            weight: self.weight,
            id: self.id.as_str(),
        }
    }
}

// Ordered by the election's own rule, so the index and the election can
// never disagree on who outranks whom.
impl Ord for MasterKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for MasterKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for MasterKey {}

/// The peer table, with each peer's removal deadline indexed so the next
/// expiry is found without scanning, and the peers that say they are
/// masters indexed by election rank, so that a master hello costs the
/// election O(log n + masters_required) rather than a walk over every peer.
///
/// The index is lazy: a peer is filed at a time no later than its deadline,
/// and re-filed only when its deadline has moved on by more than a third of
/// its budget (every third hello at the defaults), not at every hello. When
/// an entry comes due before the peer's real deadline (it fell silent, or
/// the entry was not moved), [`expire`](Self::expire) re-files it at the
/// real deadline, so removal is exactly at the deadline; the price is one
/// extra wake-up per silent peer.
#[derive(Debug)]
pub(crate) struct Membership {
    /// Looked up at every hello: foldhash, not SipHash (see Cargo.toml).
    peers: HashMap<NodeId, Peer, fast::RandomState>,
    deadlines: BTreeSet<(Instant, NodeId)>,
    /// Exactly the peers whose `is_master` is set, each under its current
    /// weight.
    masters: BTreeSet<MasterKey>,
    max_nodes: usize,
    timeouts: Timeouts,
    /// Keys the wire fingerprints (random per table, so a sender cannot
    /// choose a collision).
    fingerprints: quality::RandomState,
}

impl Membership {
    pub(crate) fn new(max_nodes: usize, timeouts: Timeouts) -> Self {
        Membership {
            peers: HashMap::default(),
            deadlines: BTreeSet::new(),
            masters: BTreeSet::new(),
            max_nodes,
            timeouts,
            fingerprints: quality::RandomState::default(),
        }
    }

    /// Records a hello from `id` at `from`. A hello from a known peer
    /// whose advertised value did not change allocates nothing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        id: &str,
        pid: &str,
        host_name: &str,
        from: SocketAddr,
        via: Option<&Via>,
        hello: &HelloRef<'_>,
    ) -> (Observed, Option<&Peer>) {
        let announced = hello.interval.map(Duration::from_millis);
        let fingerprint = |state: &quality::RandomState| {
            state.hash_one((pid, host_name, hello.info.as_ref().map(RawJson::get)))
        };
        // One lookup, by &str, so a hello from a known node allocates
        // nothing for its id (entry_ref: std's entry would need a NodeId).
        let full = self.peers.len() >= self.max_nodes;
        let vacant = match self.peers.entry_ref(id) {
            EntryRef::Vacant(vacant) => vacant,
            EntryRef::Occupied(entry) => {
                let peer = entry.into_mut();
                let stale =
                    matches!((hello.seq, peer.hello_seq), (Some(seq), Some(last)) if seq <= last);
                if stale {
                    // Reordered by the network, or replayed by someone: it
                    // changes nothing, not even the deadline.
                    return (Observed::Stale, Some(peer));
                }
                // Hashed only now: a stale hello costs no hashing.
                let fingerprint = fingerprint(&self.fingerprints);
                let same_wire = peer.wire_fingerprint == fingerprint;
                let same_info = same_wire
                    || match (&peer.info_raw, hello.info) {
                        (Some(old), Some(new)) => **old == *new.get(),
                        (None, None) => true,
                        _ => false,
                    };
                let mut info_changed = false;
                if !same_info {
                    let Ok((info, raw)) = parse_info(hello.info) else {
                        return (Observed::BadInfo, None);
                    };
                    // Same value written differently (key order, spacing) is no change.
                    info_changed = peer.info != info;
                    peer.info = info;
                    peer.info_raw = raw;
                }
                let interval = match announced {
                    Some(interval) => interval,
                    None => {
                        let gap = now.saturating_duration_since(peer.last_seen);
                        peer.gaps_measured = peer.gaps_measured.saturating_add(1);
                        measure_interval(peer.hello_interval, peer.gaps_measured, gap)
                    }
                }
                .clamp(MIN_PEER_INTERVAL, MAX_PEER_INTERVAL);
                let budget = self.timeouts.for_interval(interval);
                let deadline = now + budget;
                peer.deadline = deadline;
                let late = deadline.saturating_duration_since(peer.indexed);
                if deadline < peer.indexed || late > budget / 3 {
                    self.deadlines.remove(&(peer.indexed, peer.id.clone()));
                    self.deadlines.insert((deadline, peer.id.clone()));
                    peer.indexed = deadline;
                }
                let previous_hello = std::mem::replace(&mut peer.last_seen, now);
                let was_master = peer.is_master;
                // The one check a routine hello pays for the master index.
                let rank_changed = was_master != hello.is_master
                    || (was_master && peer.weight.to_bits() != hello.weight.to_bits());
                if rank_changed {
                    if was_master {
                        self.masters.remove(&MasterKey::of(peer));
                    }
                    if hello.is_master {
                        self.masters.insert(MasterKey {
                            weight: hello.weight,
                            id: peer.id.clone(),
                        });
                    }
                }
                // Stay on the path first heard while it is alive; take the
                // new one when the old has been silent for two intervals.
                let (old_addr, old_target) = (peer.addr, peer.target());
                if peer.addr == from && peer.via.as_ref() == via {
                    peer.path_lag_ms = 0;
                } else {
                    let silent = now.saturating_duration_since(previous_hello)
                        + Duration::from_millis(u64::from(peer.path_lag_ms));
                    if silent > peer.hello_interval.saturating_mul(2) {
                        let old = peer.addr;
                        peer.addr = from;
                        peer.via = via.cloned();
                        peer.path_lag_ms = 0;
                        peer.set_alt(old);
                    } else {
                        peer.path_lag_ms = u32::try_from(silent.as_millis()).unwrap_or(u32::MAX);
                        peer.set_alt(from);
                    }
                }
                if hello.address != crate::unicast::DEFAULT_ADDRESS || peer.paths.is_some() {
                    peer.set_advertised(&hello.address);
                }
                let moved = peer.addr != old_addr || peer.target() != old_target;
                peer.is_master = hello.is_master;
                peer.is_master_eligible = hello.is_master_eligible;
                peer.weight = hello.weight;
                peer.epoch = epoch_of(hello, peer.epoch.as_ref());
                peer.hello_interval = interval;
                peer.hello_seq = hello.seq;
                if !same_wire {
                    if peer.pid != pid {
                        peer.pid = pid.to_owned();
                    }
                    if peer.host_name != host_name {
                        peer.host_name = host_name.to_owned();
                    }
                    peer.wire_fingerprint = fingerprint;
                }
                return (
                    Observed::Known {
                        was_master,
                        info_changed,
                        moved,
                    },
                    Some(peer),
                );
            }
        };
        if full {
            return (Observed::Refused, None);
        }
        let Ok((info, info_raw)) = parse_info(hello.info) else {
            return (Observed::BadInfo, None);
        };
        let interval = announced
            .unwrap_or_else(|| first_guess(self.timeouts.own_interval))
            .clamp(MIN_PEER_INTERVAL, MAX_PEER_INTERVAL);
        let deadline = now + self.timeouts.for_interval(interval);
        let id = NodeId::new(id);
        let peer = Peer {
            id: id.clone(),
            pid: pid.to_owned(),
            host_name: host_name.to_owned(),
            addr: from,
            via: via.cloned(),
            path_lag_ms: 0,
            paths: None,
            is_master: hello.is_master,
            is_master_eligible: hello.is_master_eligible,
            weight: hello.weight,
            info,
            info_raw,
            wire_fingerprint: fingerprint(&self.fingerprints),
            epoch: epoch_of(hello, None),
            hello_interval: interval,
            gaps_measured: 0,
            hello_seq: hello.seq,
            last_seen: now,
            deadline,
            indexed: deadline,
        };
        self.deadlines.insert((deadline, id.clone()));
        if peer.is_master {
            self.masters.insert(MasterKey::of(&peer));
        }
        let peer = vacant.insert_with_key(id, peer);
        if hello.address != crate::unicast::DEFAULT_ADDRESS {
            peer.set_advertised(&hello.address);
        }
        (Observed::New, Some(peer))
    }

    /// Removes every peer whose deadline has come, in deadline order;
    /// re-files those whose index entry came due before their deadline.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Peer> {
        let mut gone = Vec::new();
        while let Some((filed, _)) = self.deadlines.first() {
            if *filed > now {
                break;
            }
            let Some((_, id)) = self.deadlines.pop_first() else {
                break;
            };
            match self.peers.get_mut(&id) {
                Some(peer) if peer.deadline > now => {
                    peer.indexed = peer.deadline;
                    self.deadlines.insert((peer.deadline, id));
                }
                Some(_) => {
                    if let Some(peer) = self.peers.remove(&id) {
                        if peer.is_master {
                            self.masters.remove(&MasterKey::of(&peer));
                        }
                        gone.push(peer);
                    }
                }
                None => {}
            }
        }
        gone.sort_by_key(|p| p.deadline);
        gone
    }

    /// Removes one peer (it said goodbye).
    pub(crate) fn remove(&mut self, id: &str) -> Option<Peer> {
        let peer = self.peers.remove(id)?;
        self.deadlines.remove(&(peer.indexed, peer.id.clone()));
        if peer.is_master {
            self.masters.remove(&MasterKey::of(&peer));
        }
        Some(peer)
    }

    /// The peers that say they are masters, highest rank first. Each step
    /// is O(1) amortised after an O(log n) start, so a caller that needs
    /// only those above some rank, or the first few, stops early.
    pub(crate) fn masters_by_rank(&self) -> impl Iterator<Item = Rank<'_>> {
        self.masters.iter().rev().map(MasterKey::rank)
    }

    /// How many peers say they are masters.
    pub(crate) fn master_count(&self) -> usize {
        self.masters.len()
    }

    /// When [`expire`](Self::expire) has work next: the earliest removal
    /// deadline, or earlier when an entry must be re-filed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// A copy of a hello of peer `id` arrived from `from` by `via` (and was
    /// dropped as a duplicate): that path is alive.
    pub(crate) fn heard_again(&mut self, id: &str, from: SocketAddr, via: Option<&Via>) {
        if let Some(peer) = self.peers.get_mut(id) {
            if peer.addr == from && peer.via.as_ref() == via {
                // Heard on its own path after its latest hello: no lag.
                peer.path_lag_ms = 0;
            } else {
                peer.set_alt(from);
            }
        }
    }

    /// Whether `from` is where peer `id` sends from (on either of its paths).
    pub(crate) fn is_at(&self, id: &str, from: SocketAddr) -> bool {
        self.peers.get(id).is_some_and(|p| {
            p.addr == from || p.paths.as_ref().is_some_and(|x| x.alt == Some(from))
        })
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Peer> {
        self.peers.get(id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }
}

impl std::borrow::Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Test helper: `observe` with an owned hello (encoded and decoded again).
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn observe_owned(
    m: &mut Membership,
    now: Instant,
    id: &str,
    pid: &str,
    host_name: &str,
    from: SocketAddr,
    hello: crate::wire::envelope::Hello,
) -> (Observed, Option<Peer>) {
    let json = serde_json::value::to_raw_value(&hello).expect("hello encodes");
    let hello = crate::wire::envelope::decode_hello_ref(&json).expect("hello decodes");
    let (o, p) = m.observe(now, id, pid, host_name, from, None, &hello);
    (o, p.cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::envelope::Hello;

    fn hello(master: bool, weight: f64) -> Hello {
        Hello {
            is_master: master,
            is_master_eligible: true,
            weight,
            address: "127.0.0.1".into(),
            info: None,
            interval: None,
            seq: None,
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        }
    }

    fn table(max: usize) -> Membership {
        Membership::new(
            max,
            Timeouts {
                node_timeout: Duration::from_secs(2),
                missed_hellos: 0,
                own_interval: Duration::from_secs(1),
            },
        )
    }

    #[test]
    fn observe_new_then_known_then_expire() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = table(10);
        let (o, _) = observe_owned(&mut m, t0, "a", "p", "h", addr, hello(false, 0.5));
        assert_eq!(o, Observed::New);
        let (o, p) = observe_owned(
            &mut m,
            t0 + Duration::from_millis(500),
            "a",
            "p",
            "h",
            addr,
            hello(true, 0.5),
        );
        assert_eq!(
            o,
            Observed::Known {
                was_master: false,
                info_changed: false,
                moved: false
            }
        );
        assert!(p.unwrap().is_master);
        assert!(m.expire(t0 + Duration::from_millis(2499)).is_empty());
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_millis(2500)));
        let gone = m.expire(t0 + Duration::from_millis(2500));
        assert_eq!(gone.len(), 1);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn full_table_refuses_new_but_keeps_known() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = table(1);
        observe_owned(&mut m, t0, "a", "p", "h", addr, hello(false, 0.5));
        let (o, _) = observe_owned(&mut m, t0, "b", "p", "h", addr, hello(false, 0.5));
        assert_eq!(o, Observed::Refused);
        let mut with_info = hello(false, 0.6);
        with_info.info = Some(serde_json::json!({"name": "x"}));
        let (o, _) = observe_owned(&mut m, t0, "a", "p", "h", addr, with_info);
        assert_eq!(
            o,
            Observed::Known {
                was_master: false,
                info_changed: true,
                moved: false
            }
        );
        assert_eq!(m.get("a").unwrap().weight, 0.6);
        // A new process id or host name shows, whatever the fingerprint did.
        let (_, p) = observe_owned(&mut m, t0, "a", "p2", "h2", addr, hello(false, 0.6));
        let p = p.unwrap();
        assert_eq!((p.pid.as_str(), p.host_name.as_str()), ("p2", "h2"));
        assert!(p.info.is_none(), "info dropped when a hello carries none");
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn each_peer_gets_a_budget_for_its_own_interval() {
        let t = Timeouts {
            node_timeout: Duration::from_millis(2600),
            missed_hellos: 5,
            own_interval: Duration::from_millis(400),
        };
        // shoal at 400 ms: 5 lost hellos + half an interval = the node timeout.
        assert_eq!(
            t.for_interval(Duration::from_millis(400)),
            Duration::from_millis(2600)
        );
        // node-discovery at 1 s gets 6.5 s.
        assert_eq!(
            t.for_interval(Duration::from_secs(1)),
            Duration::from_millis(6500)
        );
        // node-discovery's own timings: the node timeout, exactly.
        let compat = Timeouts {
            node_timeout: Duration::from_secs(2),
            missed_hellos: 0,
            own_interval: Duration::from_secs(1),
        };
        assert_eq!(
            compat.for_interval(Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        // A peer slower than the timeout allows is still not dropped
        // between two of its hellos: 1.5 of its intervals.
        assert_eq!(
            compat.for_interval(Duration::from_secs(2)),
            Duration::from_secs(3)
        );
    }
}

#[cfg(test)]
mod lazy_index_tests {
    use super::*;

    #[test]
    fn steady_hellos_never_wake_the_node_and_a_silent_peer_goes_at_its_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = Membership::new(
            4,
            Timeouts {
                node_timeout: ms(2600),
                missed_hellos: 5,
                own_interval: ms(400),
            },
        );
        let hello = |seq| crate::wire::envelope::Hello {
            is_master: false,
            is_master_eligible: true,
            weight: 0.5,
            address: "127.0.0.1".into(),
            info: None,
            interval: Some(400),
            seq: Some(seq),
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        };
        let mut now = t0;
        let mut refiled = 0;
        let mut filed = None;
        for seq in 0..100 {
            now = t0 + ms(400) * seq as u32;
            observe_owned(&mut m, now, "a", "p", "h", addr, hello(seq));
            let next = m.next_deadline().unwrap();
            // The index never asks for a wake-up while hellos keep coming.
            assert!(next > now + ms(400), "{:?}", next - now);
            assert!(next <= now + ms(2600));
            if filed != Some(next) {
                refiled += 1;
                filed = Some(next);
            }
        }
        assert!(refiled <= 40, "re-filed {refiled} times in 100 hellos");
        // Silent from here: at most one early wake (re-filing), then removal
        // exactly at the deadline.
        let deadline = now + ms(2600);
        let first = m.next_deadline().unwrap();
        if first < deadline {
            assert!(m.expire(first).is_empty(), "re-filed, not removed");
            assert_eq!(m.next_deadline(), Some(deadline));
        }
        assert!(m.expire(deadline - ms(1)).is_empty());
        assert_eq!(m.expire(deadline).len(), 1);
    }
}

#[cfg(test)]
mod first_guess_tests {
    use super::*;

    #[test]
    fn a_silent_peer_is_first_assumed_to_say_hello_as_often_as_we_do() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let node_hello = |seq: Option<u64>| crate::wire::envelope::Hello {
            is_master: false,
            is_master_eligible: true,
            weight: 0.5,
            address: "127.0.0.1".into(),
            info: None,
            interval: None,
            seq,
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        };
        for (own, expect) in [(250, 250), (400, 400), (5000, 1000)] {
            let mut m = Membership::new(
                4,
                Timeouts {
                    node_timeout: Duration::from_millis(750),
                    missed_hellos: 5,
                    own_interval: Duration::from_millis(own),
                },
            );
            let (_, p) = observe_owned(&mut m, t0, "n", "p", "h", addr, node_hello(None));
            let p = p.unwrap();
            assert_eq!(p.hello_interval, Duration::from_millis(expect));
            let budget = Duration::from_millis(expect * 13 / 2).max(Duration::from_millis(750));
            assert_eq!(p.deadline, t0 + budget);
        }
    }
}

#[cfg(test)]
mod seq_tests {
    use super::*;
    use crate::wire::envelope::Hello;

    #[test]
    fn a_reordered_or_replayed_older_hello_changes_nothing() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = Membership::new(
            4,
            Timeouts {
                node_timeout: Duration::from_secs(2),
                missed_hellos: 0,
                own_interval: Duration::from_secs(1),
            },
        );
        let hello = |seq, name: &str| Hello {
            is_master: false,
            is_master_eligible: true,
            weight: 0.5,
            address: "127.0.0.1".into(),
            info: Some(serde_json::json!({ "name": name })),
            interval: Some(400),
            seq: Some(seq),
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        };
        observe_owned(&mut m, t0, "a", "p", "h", addr, hello(1, "one"));
        observe_owned(&mut m, t0, "a", "p", "h", addr, hello(3, "three"));
        let later = t0 + Duration::from_millis(10);
        let (o, p) = observe_owned(&mut m, later, "a", "p", "h", addr, hello(2, "two"));
        assert_eq!(o, Observed::Stale);
        let p = p.unwrap();
        assert_eq!(p.info.as_ref().unwrap()["name"], "three");
        assert_eq!(p.last_seen, t0, "a replay cannot keep a dead node alive");
    }
}

#[cfg(test)]
mod measure_tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn measured_intervals_follow_the_peer_and_shrug_off_outliers() {
        // A node-discovery peer configured for 250 ms: the first gap is enough.
        assert_eq!(measure_interval(ms(1000), 1, ms(250)), ms(250));
        // Steady gaps keep it.
        assert_eq!(measure_interval(ms(250), 5, ms(250)), ms(250));
        // An extra hello 5 ms after the last moves it only a little...
        assert_eq!(
            measure_interval(ms(1000), 5, ms(5)),
            ms(812) + Duration::from_micros(500)
        );
        // ...and so does one lost hello (a double gap).
        assert_eq!(measure_interval(ms(1000), 5, ms(2000)), ms(1250));
        // A bad first guess (an extra hello right after the first) recovers.
        let mut est = measure_interval(ms(1000), 1, ms(10));
        for gaps in 2..20 {
            est = measure_interval(est, gaps, ms(1000));
        }
        assert!(est > ms(900), "{est:?}");
    }
}

#[cfg(test)]
mod master_index_tests {
    use super::*;
    use crate::wire::envelope::Hello;
    use proptest::prelude::*;

    const ADDR: &str = "10.0.0.2:12345";

    fn hello(master: bool, weight: f64, seq: Option<u64>) -> Hello {
        Hello {
            is_master: master,
            is_master_eligible: true,
            weight,
            address: "127.0.0.1".into(),
            info: None,
            interval: Some(400),
            seq,
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        }
    }

    fn table() -> Membership {
        Membership::new(
            64,
            Timeouts {
                node_timeout: Duration::from_secs(2),
                missed_hellos: 0,
                own_interval: Duration::from_millis(400),
            },
        )
    }

    /// The masters as a walk over every peer finds them, highest rank first.
    fn scanned(m: &Membership) -> Vec<(u64, String)> {
        let mut masters: Vec<&Peer> = m.iter().filter(|p| p.is_master).collect();
        masters.sort_by(|a, b| {
            let rank = |p: &Peer| (p.weight, p.id.clone());
            let (a, b) = (rank(a), rank(b));
            Rank {
                weight: b.0,
                id: b.1.as_str(),
            }
            .cmp(&Rank {
                weight: a.0,
                id: a.1.as_str(),
            })
        });
        masters
            .iter()
            .map(|p| (p.weight.to_bits(), p.id.to_string()))
            .collect()
    }

    fn indexed(m: &Membership) -> Vec<(u64, String)> {
        m.masters_by_rank()
            .map(|r| (r.weight.to_bits(), r.id.to_owned()))
            .collect()
    }

    fn assert_index_matches_scan(m: &Membership) {
        assert_eq!(indexed(m), scanned(m));
        assert_eq!(m.master_count(), scanned(m).len());
    }

    fn say(m: &mut Membership, now: Instant, id: &str, h: Hello) -> Observed {
        let addr: SocketAddr = ADDR.parse().unwrap();
        observe_owned(m, now, id, "p", "h", addr, h).0
    }

    #[test]
    fn promotion_demotion_weight_change_and_removal_keep_the_index_exact() {
        let t0 = Instant::now();
        let mut m = table();
        say(&mut m, t0, "a", hello(false, 0.5, None));
        say(&mut m, t0, "b", hello(true, 0.7, None));
        say(&mut m, t0, "c", hello(true, 0.7, None));
        assert_eq!(indexed(&m), scanned(&m));
        // Equal weights: the larger id ranks first.
        let ids: Vec<String> = indexed(&m).into_iter().map(|(_, id)| id).collect();
        assert_eq!(ids, ["c", "b"]);
        // Promotion.
        say(&mut m, t0, "a", hello(true, 0.5, None));
        assert_index_matches_scan(&m);
        assert_eq!(m.master_count(), 3);
        // Weight change of a master moves it.
        say(&mut m, t0, "a", hello(true, 0.9, None));
        assert_index_matches_scan(&m);
        assert_eq!(indexed(&m)[0].1, "a");
        // -0.0 and 0.0 are different ranks (IEEE total order).
        say(&mut m, t0, "b", hello(true, -0.0, None));
        say(&mut m, t0, "b", hello(true, 0.0, None));
        assert_index_matches_scan(&m);
        // Demotion.
        say(&mut m, t0, "c", hello(false, 0.7, None));
        assert_index_matches_scan(&m);
        assert_eq!(m.master_count(), 2);
        // A non-master's weight change is not indexed.
        say(&mut m, t0, "c", hello(false, 0.1, None));
        assert_index_matches_scan(&m);
        // Goodbye.
        assert!(m.remove("a").is_some());
        assert_index_matches_scan(&m);
        assert_eq!(m.master_count(), 1);
        // Expiry.
        let gone = m.expire(t0 + Duration::from_secs(10));
        assert_eq!(gone.len(), 2);
        assert_index_matches_scan(&m);
        assert_eq!(m.master_count(), 0);
    }

    #[test]
    fn stale_refused_and_unparsable_hellos_leave_the_index_alone() {
        let t0 = Instant::now();
        let mut m = table();
        say(&mut m, t0, "a", hello(true, 0.5, Some(5)));
        // An older hello saying otherwise is ignored.
        assert_eq!(
            say(&mut m, t0, "a", hello(false, 0.9, Some(4))),
            Observed::Stale
        );
        assert_index_matches_scan(&m);
        assert_eq!(m.master_count(), 1);
        // A hello whose info cannot be parsed changes nothing either.
        let mut deep = hello(false, 0.9, Some(6));
        let mut info = serde_json::json!(0);
        for _ in 0..200 {
            info = serde_json::json!([info]);
        }
        deep.info = Some(info);
        assert_eq!(say(&mut m, t0, "a", deep), Observed::BadInfo);
        assert_index_matches_scan(&m);
        assert_eq!(indexed(&m), [(0.5f64.to_bits(), "a".to_owned())]);
        // A full table refuses a new master without indexing it.
        let mut small = Membership::new(1, m.timeouts);
        say(&mut small, t0, "x", hello(false, 0.5, None));
        assert_eq!(
            say(&mut small, t0, "y", hello(true, 0.5, None)),
            Observed::Refused
        );
        assert_index_matches_scan(&small);
        assert_eq!(small.master_count(), 0);
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Op {
        Hello {
            peer: u8,
            master: bool,
            weight: u8,
            seq: Option<u8>,
        },
        Goodbye(u8),
        /// Time passes (ms), then expiry runs.
        Wait(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..12, any::<bool>(), 0u8..6, proptest::option::of(0u8..8)).prop_map(
                |(peer, master, weight, seq)| Op::Hello { peer, master, weight, seq }
            ),
            1 => (0u8..12).prop_map(Op::Goodbye),
            1 => (0u16..3000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn the_index_always_equals_a_scan(ops in proptest::collection::vec(op(), 0..120)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut m = Membership::new(
                8,
                Timeouts {
                    node_timeout: Duration::from_millis(1000),
                    missed_hellos: 0,
                    own_interval: Duration::from_millis(400),
                },
            );
            // Few weights, some equal and some that only IEEE total order tells apart.
            let weights = [0.0, -0.0, 0.25, 0.5, 0.5 + f64::EPSILON, -1e308];
            for op in ops {
                match op {
                    Op::Hello { peer, master, weight, seq } => {
                        let h = hello(master, weights[usize::from(weight)], seq.map(u64::from));
                        say(&mut m, now, &format!("n{peer}"), h);
                    }
                    Op::Goodbye(peer) => {
                        m.remove(&format!("n{peer}"));
                    }
                    Op::Wait(ms) => {
                        now += Duration::from_millis(u64::from(ms));
                        m.expire(now);
                    }
                }
                prop_assert_eq!(indexed(&m), scanned(&m));
                prop_assert_eq!(m.master_count(), scanned(&m).len());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod display_tests {
    use super::*;
    use crate::wire::envelope::Hello;

    pub(crate) const LONG_ID: &str = "3f2a1b9c0d4e5f60718293a4b5c6d7e8";

    /// A peer as a hello from 10.0.0.2:12345 makes it.
    pub(crate) fn peer(id: &str, master: bool, eligible: bool, weight: f64) -> Peer {
        let hello = Hello {
            is_master: master,
            is_master_eligible: eligible,
            weight,
            address: "127.0.0.1".into(),
            info: Some(serde_json::json!({"name": "web"})),
            interval: Some(400),
            seq: Some(7),
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        };
        let mut m = Membership::new(
            4,
            Timeouts {
                node_timeout: Duration::from_millis(2600),
                missed_hellos: 5,
                own_interval: Duration::from_millis(400),
            },
        );
        let addr = "10.0.0.2:12345".parse().unwrap();
        let (_, p) = observe_owned(&mut m, Instant::now(), id, "4242", "web-1", addr, hello);
        p.unwrap()
    }

    #[test]
    fn a_peer_prints_on_one_line_with_a_short_id() {
        assert_eq!(
            peer(LONG_ID, false, true, 0.9).to_string(),
            "3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90)"
        );
        assert_eq!(
            format!("{:#}", peer(LONG_ID, false, true, 0.9)),
            format!("{LONG_ID} (web-1 at 10.0.0.2:12345, weight 0.90)")
        );
        assert_eq!(
            peer("n1", true, false, 0.123456789).to_string(),
            "n1 (web-1 at 10.0.0.2:12345, master, not eligible, weight 0.123456789)"
        );
    }

    #[test]
    fn short_ids_weights_and_hostile_text() {
        // Twelve characters are kept whole; thirteen are cut to eight.
        assert_eq!(
            peer("abcdefghijkl", false, true, 1.0)
                .to_string()
                .split(' ')
                .next(),
            Some("abcdefghijkl")
        );
        assert_eq!(
            peer("abcdefghijklm", false, true, 1.0)
                .to_string()
                .split(' ')
                .next(),
            Some("abcdefgh…")
        );
        // Cut on a character boundary, whatever the id's script.
        assert_eq!(
            peer("ééééééééééééé", false, true, 1.0)
                .to_string()
                .split(' ')
                .next(),
            Some("éééééééé…")
        );
        assert_eq!(Weight(0.5).to_string(), "0.50");
        assert_eq!(Weight(-0.1733123456789).to_string(), "-0.1733123456789");
        assert_eq!(Weight(1.0).to_string(), "1.00");
        // A peer cannot start a new log line, nor reorder what a reader sees.
        let mut p = peer("a\nb", false, true, 0.5);
        p.host_name = "h\r\n\u{1b}[31m\u{202e}x\u{2028}".into();
        assert_eq!(
            p.to_string(),
            "a\\nb (h\\r\\n\\u{1b}[31m\\u{202e}x\\u{2028} at 10.0.0.2:12345, weight 0.50)"
        );
    }

    #[test]
    fn debug_shows_what_a_user_can_act_on_and_no_bookkeeping() {
        let debug = format!("{:?}", peer(LONG_ID, true, true, 0.9));
        for private in ["info_raw", "wire_fingerprint", "gaps_measured", "indexed"] {
            assert!(!debug.contains(private), "{private} in {debug}");
        }
        for public in [
            "id: NodeId(3f2a1b9c0d4e5f60718293a4b5c6d7e8)",
            "pid: \"4242\"",
            "host_name: \"web-1\"",
            "addr: 10.0.0.2:12345",
            "is_master: true",
            "is_master_eligible: true",
            "weight: 0.9",
            "info: Some(Object {\"name\": String(\"web\")})",
            "epoch: None",
            "hello_interval: 400ms",
            "hello_seq: Some(7)",
            "last_heard_ago: ",
            "timeout: 2.6s",
        ] {
            assert!(debug.contains(public), "{public} not in {debug}");
        }
        assert!(!debug.contains("Instant"), "{debug}");
        assert!(debug.ends_with(", .. }"), "{debug}");
    }
}
#[cfg(test)]
mod addr_display_tests {
    use super::*;

    struct Addr(SocketAddr, Option<Via>);

    impl fmt::Display for Addr {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_addr(f, self.0, self.1.as_ref())
        }
    }

    #[test]
    fn a_link_local_address_shows_its_interface_by_name() {
        let eth0 = Via::new("eth0", 2, "fe80::1".parse().unwrap());
        let shown = |a: &str, via: Option<&Via>| Addr(a.parse().unwrap(), via.cloned()).to_string();
        assert_eq!(
            shown("[fe80::9%2]:12345", Some(&eth0)),
            "[fe80::9%eth0]:12345"
        );
        assert_eq!(
            shown("[fe80::9]:12345", Some(&eth0)),
            "[fe80::9%eth0]:12345"
        );
        // Another interface's scope, or none known: as SocketAddrV6 shows it.
        assert_eq!(shown("[fe80::9%3]:12345", Some(&eth0)), "[fe80::9%3]:12345");
        assert_eq!(shown("[fe80::9%2]:12345", None), "[fe80::9%2]:12345");
        // Global and IPv4 addresses: unchanged.
        assert_eq!(
            shown("[2001:db8::9]:12345", Some(&eth0)),
            "[2001:db8::9]:12345"
        );
        let v4 = Via::new("eth0", 2, "10.0.0.1".parse().unwrap());
        assert_eq!(shown("10.0.0.9:12345", Some(&v4)), "10.0.0.9:12345");
        // An interface name from the OS is escaped like any text.
        let odd = Via::new("e\nth", 2, "fe80::1".parse().unwrap());
        assert_eq!(shown("[fe80::9%2]:1", Some(&odd)), "[fe80::9%e\\nth]:1");
    }
}

#[cfg(test)]
mod size_tests {
    /// `Peer` travels in every event; the CLI's input enum holds an event
    /// beside much smaller variants, and clippy refuses a difference of
    /// 200 bytes or more. Keep it from growing unnoticed.
    #[test]
    fn a_peer_stays_small() {
        let event = std::mem::size_of::<crate::Event>();
        let registry = std::mem::size_of::<crate::RegistryEvent>();
        assert!(
            event < registry + 200,
            "Event {event}, RegistryEvent {registry} bytes"
        );
    }
}
