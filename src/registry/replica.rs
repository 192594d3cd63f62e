//! The registry's replication, sans-IO: every owner's table, our own with
//! its time-to-live deadlines, deltas, pulls, pages and the repair budget.
//! [`Protocol`](crate::protocol::Protocol) feeds it hellos, registry
//! messages and removals, and sends what it queues. The mechanism is
//! described in the [module docs](super).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Filter, OfflineReason, Registration, RegistryError, RegistryEvent, RegistryLimits};
use crate::membership::NodeId;
use crate::protocol::Destination;
use crate::stats::Stats;

/// The reserved channel registry messages travel on.
pub(crate) const CHANNEL: &str = "shoal.registry";

/// Deltas an owner keeps to answer pulls; a node further behind gets pages.
const LOG_LEN: usize = 64;
/// Deltas held per owner while an earlier one is missing.
const REORDER_MAX: usize = 64;
/// Bytes of early deltas held per owner, and in all: an honest delta is a
/// few hundred bytes, a hostile one up to `max_message_size`.
const EARLY_BYTES_PER_OWNER: usize = 64 * 1024;
const EARLY_BYTES_TOTAL: usize = 4 * 1024 * 1024;
/// How long a gap in an owner's deltas may last before we pull: long
/// enough for a reordered burst to arrive, short next to a hello interval.
const GAP_WAIT: Duration = Duration::from_millis(20);
/// A page sync that received nothing for this long asks for the rest.
const SYNC_WAIT: Duration = Duration::from_millis(60);
/// A pull that brought nothing is repeated after this, then twice as
/// late each time, up to `RETRY_MAX`.
const RETRY_MIN: Duration = Duration::from_millis(150);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A node pulls from one owner at most this often.
const PULL_SPACING: Duration = Duration::from_millis(100);
/// Datagrams a node sends per second, at most, answering pulls (paced: a
/// newcomer's pulls to every owner at once must not overflow the socket
/// buffers of the whole LAN)...
const REPAIR_RATE: f64 = 2_000.0;
/// ...in bursts of at most this many...
const REPAIR_BURST: f64 = 32.0;
/// ...with at most this many waiting; the rest is asked again.
const REPAIR_QUEUE: usize = 4_096;
/// Registration bytes per page: a page stays one datagram (1,500-byte
/// `WRAP` blocks; sealed fragments of `max_datagram_size`) unless one
/// registration alone is larger.
const PAGE_BYTES: usize = 1_000;
/// A repair broadcast this recently is not broadcast again: it serves every
/// node that pulled meanwhile.
const RESEND_AFTER: Duration = Duration::from_millis(20);
/// Page numbers a pull names at most; the rest are asked next time.
const MAX_MISSING: usize = 512;
/// Longest time to live.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// A message for the protocol to send on [`CHANNEL`]: the `data` JSON.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) to: Destination,
    pub(crate) data: Box<serde_json::value::RawValue>,
}

/// A registration on the wire: short keys, no id (it is derived).
#[derive(Debug, Serialize, Deserialize)]
struct WireReg {
    n: String,
    v: String,
    h: String,
    p: u16,
    #[serde(default)]
    m: Map<String, Value>,
}

impl WireReg {
    fn of(r: &Registration) -> WireReg {
        WireReg {
            n: r.name().to_owned(),
            v: r.version().to_owned(),
            h: r.host().to_owned(),
            p: r.port(),
            m: r.meta().clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, Copy)]
enum WireReason {
    #[serde(rename = "d")]
    Deregistered,
    #[serde(rename = "e")]
    Expired,
}

/// Registry messages, tagged by `t`.
#[derive(Deserialize)]
#[serde(tag = "t")]
enum Message {
    /// The owner's table went from version `b` to `v`.
    #[serde(rename = "delta")]
    Delta {
        b: u64,
        v: u64,
        #[serde(default)]
        put: Vec<WireReg>,
        #[serde(default)]
        del: Vec<(String, WireReason)>,
    },
    /// "I hold your table at `have`" (and, during a page sync of version
    /// `snap`, "I miss these pages").
    #[serde(rename = "pull")]
    Pull {
        /// The owner asked.
        o: String,
        have: u64,
        #[serde(default)]
        snap: Option<u64>,
        #[serde(default)]
        missing: Vec<u32>,
    },
    /// Page `i` of `n` of the owner's table at version `v`: every
    /// registration with an id in `[lo, hi)` (`None`: unbounded).
    #[serde(rename = "page")]
    Page {
        v: u64,
        i: u32,
        n: u32,
        lo: Option<String>,
        hi: Option<String>,
        regs: Vec<WireReg>,
    },
}

/// Why a registry message was refused (counted by the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a registry message we understand.
    Invalid,
    /// From a node not in the peer table (or not at its address).
    UnknownOwner,
}

/// One owner's table as this node holds it.
#[derive(Debug)]
struct Table {
    /// The version of the owner's table this copy is exactly (0: none).
    version: u64,
    /// The latest version the owner announced.
    announced: u64,
    regs: BTreeMap<String, Registration>,
    /// A page sync under way.
    sync: Option<PageSync>,
    /// Deltas that came before the one they follow, by their from-version.
    early: BTreeMap<u64, Delta>,
    /// When a pull is due if our copy is still behind: a gap in the
    /// deltas, or a page sync that stalled (an entry of `Replica::gaps`).
    gap_due: Option<Instant>,
    last_pull: Option<Instant>,
    /// How long after a pull to pull again if still behind: doubles while
    /// nothing comes (an owner that announces what it never sends costs
    /// little), back to `RETRY_MIN` on progress.
    retry: Duration,
    /// When the owner last confirmed this copy (its `lastKnown`).
    confirmed: Instant,
}

impl Table {
    fn new(now: Instant) -> Table {
        Table {
            version: 0,
            announced: 0,
            regs: BTreeMap::new(),
            sync: None,
            early: BTreeMap::new(),
            gap_due: None,
            last_pull: None,
            retry: RETRY_MIN,
            confirmed: now,
        }
    }
}

/// A delta held until the ones before it arrive.
#[derive(Debug)]
struct Delta {
    v: u64,
    put: Vec<WireReg>,
    del: Vec<(String, WireReason)>,
    /// Its size on the wire, for the bounds on what is held.
    bytes: usize,
}

/// Bytes of early deltas one table holds.
fn early_bytes(table: &Table) -> usize {
    table.early.values().map(|d| d.bytes).sum()
}

#[derive(Debug)]
struct PageSync {
    v: u64,
    got: Vec<bool>,
    left: usize,
}

/// Our own registration's lease.
#[derive(Debug)]
struct Lease {
    ttl: Duration,
    expires: Instant,
    refreshed_ms: u64,
}

/// Every owner's table and our own leases. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Replica {
    me: NodeId,
    limits: RegistryLimits,
    /// Our own table's version: grows with each change.
    version: u64,
    /// Every owner's table, ours included (under `me`).
    tables: HashMap<NodeId, Table>,
    leases: HashMap<String, Lease>,
    deadlines: BTreeSet<(Instant, String)>,
    /// Bytes of early deltas held, every table's together.
    early_bytes: usize,
    /// Pulls due for gaps that did not close: (when, owner).
    gaps: BTreeSet<(Instant, NodeId)>,
    /// Who holds each id; the registration that counts is the best of them.
    index: BTreeMap<String, Vec<NodeId>>,
    /// Registrations held, every table's together.
    held: usize,
    /// Our last deltas: (from version, to version, message).
    log: VecDeque<(u64, u64, Box<serde_json::value::RawValue>)>,
    /// Our table in pages, for the version it was cut at.
    pages: Option<(u64, Vec<Box<serde_json::value::RawValue>>)>,
    repair_tokens: f64,
    repair_at: Instant,
    /// Repairs waiting for the budget.
    repair_queue: VecDeque<((u8, u64), u64, Box<serde_json::value::RawValue>)>,
    /// The keys in `repair_queue`, with the version each was cut at.
    queued: HashSet<((u8, u64), u64)>,
    /// What repairs broadcast lately: (kind, number) -> (our version then, when).
    resent: HashMap<(u8, u64), (u64, Instant)>,
    wall: (Instant, u64),
    out: VecDeque<Outgoing>,
    events: VecDeque<RegistryEvent>,
}

fn raw(json: String) -> Box<serde_json::value::RawValue> {
    // Only ever given what serde_json wrote.
    serde_json::value::RawValue::from_string(json).expect("serde_json output is JSON")
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("registry messages serialise")
}

impl Replica {
    /// `max_message`: the largest message the node sends; a registration
    /// must fit in one delta.
    pub(crate) fn new(
        me: NodeId,
        mut limits: RegistryLimits,
        max_message: usize,
        now: Instant,
    ) -> Replica {
        // The four parts (255 bytes each at most) and the delta around them.
        limits.meta_bytes = limits
            .meta_bytes
            .min(max_message.saturating_sub(1_500).max(2));
        let mut tables = HashMap::new();
        tables.insert(me.clone(), Table::new(now));
        Replica {
            me,
            limits,
            version: 0,
            tables,
            leases: HashMap::new(),
            deadlines: BTreeSet::new(),
            early_bytes: 0,
            gaps: BTreeSet::new(),
            index: BTreeMap::new(),
            held: 0,
            log: VecDeque::new(),
            pages: None,
            repair_tokens: REPAIR_BURST,
            repair_at: now,
            resent: HashMap::new(),
            repair_queue: VecDeque::new(),
            queued: HashSet::new(),
            wall: (now, 0),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    fn wall_ms(&self, at: Instant) -> u64 {
        let (origin, ms) = self.wall;
        match at.checked_duration_since(origin) {
            Some(d) => ms + d.as_millis() as u64,
            None => ms.saturating_sub(origin.duration_since(at).as_millis() as u64),
        }
    }

    /// Our table's version, for our hellos (`None` until we register).
    pub(crate) fn version(&self) -> Option<u64> {
        (self.version > 0).then_some(self.version)
    }

    pub(crate) fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<RegistryEvent> {
        self.events.pop_front()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let lease = self.deadlines.first().map(|(at, _)| *at);
        let gap = self.gaps.first().map(|(at, _)| *at);
        // The next repair's token.
        let repair = (!self.repair_queue.is_empty()).then(|| {
            let wait = (1.0 - self.repair_tokens).max(0.0) / REPAIR_RATE;
            // Never "now" again: a rounding must not make a timer loop.
            self.repair_at + Duration::from_secs_f64(wait).max(Duration::from_micros(50))
        });
        lease.into_iter().chain(gap).chain(repair).min()
    }

    // ----- queries ------------------------------------------------------

    /// The registrations `filter` covers, one per id, in id order.
    pub(crate) fn registrations(&self, filter: &Filter) -> Vec<Registration> {
        let prefix = filter.id_prefix();
        self.index
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(id, _)| id.starts_with(&prefix))
            .filter_map(|(id, _)| self.current(id))
            .collect()
    }

    /// One registration by id.
    pub(crate) fn registration(&self, id: &str) -> Option<Registration> {
        self.current(id)
    }

    /// How many ids are live.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The registration that counts for `id`, with its `lastKnown`.
    fn current(&self, id: &str) -> Option<Registration> {
        let (owner, reg) = self.best(id)?;
        let mut reg = reg.clone();
        let ms = if *owner == self.me {
            self.leases.get(id).map_or(0, |l| l.refreshed_ms)
        } else {
            self.tables
                .get(owner)
                .map_or(0, |t| self.wall_ms(t.confirmed))
        };
        reg.set_last_known(ms);
        Some(reg)
    }

    /// The owner whose copy of `id` counts (ours for our own), for the
    /// service layer, which names an instance's node.
    #[cfg(feature = "runtime")]
    pub(crate) fn owner(&self, id: &str) -> Option<&NodeId> {
        self.best(id).map(|(owner, _)| owner)
    }

    /// The holder whose copy of `id` counts: registered last, then the
    /// highest owner id.
    fn best(&self, id: &str) -> Option<(&NodeId, &Registration)> {
        self.index
            .get(id)?
            .iter()
            .filter_map(|owner| Some((owner, self.tables.get(owner)?.regs.get(id)?)))
            .max_by(|(a, ra), (b, rb)| (ra.registered(), a).cmp(&(rb.registered(), b)))
    }

    // ----- local commands -----------------------------------------------

    /// Registers (or re-registers, which refreshes and may change the
    /// metadata) one of our own registrations.
    pub(crate) fn register(
        &mut self,
        now: Instant,
        reg: Registration,
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(RegistryError::Ttl);
        }
        let bytes = json(reg.meta()).len();
        if bytes > self.limits.meta_bytes {
            return Err(RegistryError::MetaTooLarge {
                bytes,
                max: self.limits.meta_bytes,
            });
        }
        let mine = &self.tables[&self.me];
        let same = match mine.regs.get(reg.id()) {
            Some(old) => old.same_as(&reg),
            None => {
                if mine.regs.len() >= self.limits.per_owner {
                    return Err(RegistryError::TooMany {
                        limit: "per_owner",
                        max: self.limits.per_owner,
                    });
                }
                if self.held >= self.limits.total {
                    return Err(RegistryError::TooMany {
                        limit: "total",
                        max: self.limits.total,
                    });
                }
                false
            }
        };
        self.lease(now, reg.id(), ttl);
        if !same {
            let me = self.me.clone();
            self.publish(vec![WireReg::of(&reg)], Vec::new());
            self.put(&me, reg);
        }
        Ok(())
    }

    /// Starts our registration's time to live again.
    pub(crate) fn refresh(&mut self, now: Instant, id: &str) -> Result<(), RegistryError> {
        let ttl = match self.leases.get(id) {
            Some(lease) => lease.ttl,
            None => return Err(RegistryError::NotRegistered(id.to_owned())),
        };
        self.lease(now, id, ttl);
        Ok(())
    }

    /// Removes one of our registrations everywhere.
    pub(crate) fn deregister(&mut self, id: &str) -> Result<(), RegistryError> {
        let Some(lease) = self.leases.remove(id) else {
            return Err(RegistryError::NotRegistered(id.to_owned()));
        };
        self.deadlines.remove(&(lease.expires, id.to_owned()));
        self.publish(Vec::new(), vec![(id.to_owned(), WireReason::Deregistered)]);
        let me = self.me.clone();
        self.remove(&me, id, OfflineReason::Deregistered);
        Ok(())
    }

    fn lease(&mut self, now: Instant, id: &str, ttl: Duration) {
        let expires = now + ttl;
        let refreshed_ms = self.wall_ms(now);
        if let Some(old) = self.leases.insert(
            id.to_owned(),
            Lease {
                ttl,
                expires,
                refreshed_ms,
            },
        ) {
            self.deadlines.remove(&(old.expires, id.to_owned()));
        }
        self.deadlines.insert((expires, id.to_owned()));
    }

    /// Expires our registrations whose time to live has lapsed.
    pub(crate) fn handle_timeout(&mut self, now: Instant, stats: &mut Stats) {
        self.pull_gaps(now, stats);
        self.release(now, stats);
        let mut gone = Vec::new();
        while let Some((at, _)) = self.deadlines.first() {
            if *at > now {
                break;
            }
            let Some((_, id)) = self.deadlines.pop_first() else {
                break;
            };
            self.leases.remove(&id);
            gone.push(id);
        }
        if gone.is_empty() {
            return;
        }
        self.publish(
            Vec::new(),
            gone.iter()
                .map(|id| (id.clone(), WireReason::Expired))
                .collect(),
        );
        let me = self.me.clone();
        for id in gone {
            self.remove(&me, &id, OfflineReason::Expired);
        }
    }

    /// Announces a change of our table: a new version and its delta.
    fn publish(&mut self, put: Vec<WireReg>, del: Vec<(String, WireReason)>) {
        #[derive(Serialize)]
        struct Delta<'a> {
            t: &'static str,
            b: u64,
            v: u64,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            put: &'a [WireReg],
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            del: &'a [(String, WireReason)],
        }
        let b = self.version;
        self.version += 1;
        let v = self.version;
        if let Some(mine) = self.tables.get_mut(&self.me) {
            mine.version = v;
        }
        let data = raw(json(&Delta {
            t: "delta",
            b,
            v,
            put: &put,
            del: &del,
        }));
        if self.log.len() >= LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back((b, v, data.clone()));
        self.pages = None;
        self.out.push_back(Outgoing {
            to: Destination::Cluster,
            data,
        });
    }

    // ----- the shared view ----------------------------------------------

    /// Puts `owner`'s copy of a registration (its table exists).
    fn put(&mut self, owner: &NodeId, reg: Registration) {
        let id = reg.id().to_owned();
        let before = self.current(&id);
        let Some(table) = self.tables.get_mut(owner) else {
            return;
        };
        if table.regs.insert(id.clone(), reg).is_none() {
            self.held += 1;
            self.index
                .entry(id.clone())
                .or_default()
                .push(owner.clone());
        }
        let after = self.current(&id);
        self.emit(before, after, OfflineReason::Deregistered);
    }

    /// Removes `owner`'s copy of a registration, if it has one.
    fn remove(&mut self, owner: &NodeId, id: &str, reason: OfflineReason) {
        let before = self.current(id);
        let Some(table) = self.tables.get_mut(owner) else {
            return;
        };
        if table.regs.remove(id).is_none() {
            return;
        }
        self.unindex(owner, id);
        let after = self.current(id);
        self.emit(before, after, reason);
    }

    fn unindex(&mut self, owner: &NodeId, id: &str) {
        self.held -= 1;
        if let Some(holders) = self.index.get_mut(id) {
            holders.retain(|h| h != owner);
            if holders.is_empty() {
                self.index.remove(id);
            }
        }
    }

    fn emit(
        &mut self,
        before: Option<Registration>,
        after: Option<Registration>,
        reason: OfflineReason,
    ) {
        let event = match (before, after) {
            (None, Some(after)) => RegistryEvent::Online(after),
            (Some(before), None) => RegistryEvent::Offline {
                registration: before,
                reason,
            },
            (Some(before), Some(after)) if !before.same_as(&after) => RegistryEvent::Updated(after),
            _ => return,
        };
        self.events.push_back(event);
    }

    /// An owner left the cluster: everything it held goes.
    pub(crate) fn owner_removed(&mut self, owner: &str) {
        if owner == self.me.as_str() {
            return;
        }
        let Some((owner, table)) = self.tables.get_key_value(owner) else {
            return;
        };
        let owner = owner.clone();
        let ids: Vec<String> = table.regs.keys().cloned().collect();
        self.early_bytes -= early_bytes(table);
        for id in ids {
            self.remove(&owner, &id, OfflineReason::OwnerGone);
        }
        self.tables.remove(&owner);
    }

    // ----- remote input -------------------------------------------------

    /// A hello from `owner`, announcing its table's version.
    pub(crate) fn on_hello(
        &mut self,
        now: Instant,
        owner: &str,
        version: Option<u64>,
        stats: &mut Stats,
    ) {
        let Some(announced) = version.filter(|v| *v > 0) else {
            return;
        };
        if owner == self.me.as_str() {
            return; // another instance of our own process, say: not our table
        }
        let table = match self.tables.get_mut(owner) {
            Some(table) => table,
            None => self
                .tables
                .entry(NodeId::new(owner))
                .or_insert_with(|| Table::new(now)),
        };
        if announced < table.version {
            // A version can only grow: the copy is not the owner's table.
            table.version = 0;
            table.sync = None;
        }
        table.announced = announced;
        if announced == table.version {
            table.confirmed = now;
        } else {
            // Too early to pull again: the next hello asks.
            let _ = self.pull(now, owner, stats);
        }
    }

    /// A message on [`CHANNEL`] from `sender`, a node in the peer table
    /// (`known`), or not.
    pub(crate) fn on_message(
        &mut self,
        now: Instant,
        sender: &str,
        known: bool,
        data: &str,
        stats: &mut Stats,
    ) -> Result<(), Refusal> {
        let message: Message = serde_json::from_str(data).map_err(|_| Refusal::Invalid)?;
        if !known {
            return Err(Refusal::UnknownOwner);
        }
        if sender == self.me.as_str() {
            return Ok(()); // our own process's other instance: not our table
        }
        match message {
            Message::Delta { b, v, put, del } => {
                self.on_delta(now, sender, (b, v), (put, del), data.len(), stats)
            }
            Message::Pull {
                o,
                have,
                snap,
                missing,
            } => {
                if o == self.me.as_str() {
                    self.serve(now, have, snap, &missing, stats);
                }
                Ok(())
            }
            Message::Page {
                v,
                i,
                n,
                lo,
                hi,
                regs,
            } => self.on_page(now, sender, (v, i, n), (lo, hi), regs, stats),
        }
    }

    fn table_of(&mut self, now: Instant, owner: &str) -> &mut Table {
        if !self.tables.contains_key(owner) {
            self.tables.insert(NodeId::new(owner), Table::new(now));
        }
        self.tables.get_mut(owner).expect("just inserted")
    }

    fn on_delta(
        &mut self,
        now: Instant,
        owner: &str,
        (b, v): (u64, u64),
        (put, del): (Vec<WireReg>, Vec<(String, WireReason)>),
        bytes: usize,
        stats: &mut Stats,
    ) -> Result<(), Refusal> {
        if v <= b {
            return Err(Refusal::Invalid);
        }
        let table = self.table_of(now, owner);
        table.announced = table.announced.max(v);
        if v <= table.version {
            return Ok(()); // already have it
        }
        if b != table.version || table.sync.is_some() {
            // Out of order (a burst of deltas can be reordered) or lost:
            // hold it for a moment and pull only if the gap stays.
            let room = table.early.len() < REORDER_MAX
                && early_bytes(table) + bytes <= EARLY_BYTES_PER_OWNER
                && self.early_bytes + bytes <= EARLY_BYTES_TOTAL;
            let table = self.table_of(now, owner);
            if room && !table.early.contains_key(&b) {
                table.early.insert(b, Delta { v, put, del, bytes });
                self.early_bytes += bytes;
            }
            let table = self.table_of(now, owner);
            if table.gap_due.is_none() {
                table.gap_due = Some(now + GAP_WAIT);
                let owner = NodeId::new(owner);
                self.gaps.insert((now + GAP_WAIT, owner));
            }
            return Ok(());
        }
        let owner = NodeId::new(owner);
        self.apply(now, &owner, b, Delta { v, put, del, bytes }, stats);
        self.drain_early(now, &owner, stats);
        Ok(())
    }

    /// Applies the held deltas that now follow our copy, and closes the
    /// gap if none is left.
    fn drain_early(&mut self, now: Instant, owner: &NodeId, stats: &mut Stats) {
        loop {
            let Some(table) = self.tables.get_mut(owner) else {
                return;
            };
            let version = table.version;
            let before = early_bytes(table);
            table.early.retain(|from, _| *from >= version);
            let next = table.early.remove(&version);
            self.early_bytes -= before - early_bytes(table);
            let Some(next) = next else {
                break;
            };
            self.apply(now, owner, version, next, stats);
        }
        if let Some(table) = self.tables.get_mut(owner) {
            if table.early.is_empty() {
                if let Some(due) = table.gap_due.take() {
                    self.gaps.remove(&(due, owner.clone()));
                }
            }
        }
    }

    /// Applies `owner`'s delta from version `b` (our copy's) to `delta.v`.
    fn apply(&mut self, now: Instant, owner: &NodeId, b: u64, delta: Delta, stats: &mut Stats) {
        let Some(table) = self.tables.get_mut(owner) else {
            return;
        };
        debug_assert_eq!(table.version, b);
        table.version = delta.v;
        table.confirmed = now;
        table.retry = RETRY_MIN;
        for (id, why) in delta.del {
            let reason = match why {
                WireReason::Deregistered => OfflineReason::Deregistered,
                WireReason::Expired => OfflineReason::Expired,
            };
            self.remove(owner, &id, reason);
        }
        for reg in delta.put {
            self.accept(owner, reg, stats);
        }
    }

    /// Pulls from the owners whose gap outlived [`GAP_WAIT`].
    fn pull_gaps(&mut self, now: Instant, stats: &mut Stats) {
        while let Some((at, _)) = self.gaps.first() {
            if *at > now {
                break;
            }
            let Some((_, owner)) = self.gaps.pop_first() else {
                break;
            };
            let Some(table) = self.tables.get_mut(&owner) else {
                continue;
            };
            table.gap_due = None;
            if table.version < table.announced || !table.early.is_empty() {
                if table.sync.is_none() {
                    // The pull brings them again.
                    self.early_bytes -= early_bytes(table);
                    table.early.clear();
                }
                if let Some(after) = self.pull(now, owner.as_str(), stats) {
                    // Pulled too recently: try again when allowed.
                    self.rearm(&owner, after);
                }
            }
        }
    }

    /// Checks a remote registration against the limits and puts it.
    ///
    /// The cheap checks first: a flood over the limits costs a map lookup
    /// per registration, not a validation and a serialisation.
    fn accept(&mut self, owner: &NodeId, reg: WireReg, stats: &mut Stats) {
        let Some(table) = self.tables.get(owner) else {
            return;
        };
        let full = table.regs.len() >= self.limits.per_owner || self.held >= self.limits.total;
        if full {
            let id = format!("/{}/{}/{}/{}", reg.n, reg.v, reg.h, reg.p);
            if !table.regs.contains_key(&id) {
                stats.dropped.registry_limit += 1;
                return;
            }
        }
        if json(&reg.m).len() > self.limits.meta_bytes {
            stats.dropped.registry_limit += 1;
            return;
        }
        let Ok(reg) = Registration::new(reg.n, reg.v, reg.h, reg.p, reg.m) else {
            stats.dropped.registry_invalid += 1;
            return;
        };
        self.put(owner, reg);
    }

    fn on_page(
        &mut self,
        now: Instant,
        owner: &str,
        (v, i, n): (u64, u32, u32),
        (lo, hi): (Option<String>, Option<String>),
        regs: Vec<WireReg>,
        stats: &mut Stats,
    ) -> Result<(), Refusal> {
        let (i, n) = (i as usize, n as usize);
        if n == 0 || i >= n || n > self.limits.per_owner + 1 || regs.len() > self.limits.per_owner {
            return Err(Refusal::Invalid);
        }
        let table = self.table_of(now, owner);
        if v <= table.version {
            return Ok(());
        }
        match &table.sync {
            Some(sync) if sync.v > v => return Ok(()), // older than the sync under way
            Some(sync) if sync.v == v => {
                if sync.got.len() != n {
                    return Err(Refusal::Invalid);
                }
                if sync.got[i] {
                    return Ok(());
                }
            }
            _ => {
                table.sync = Some(PageSync {
                    v,
                    got: vec![false; n],
                    left: n,
                })
            }
        }
        table.announced = table.announced.max(v);
        table.retry = RETRY_MIN;
        // Replace our copy of the page's range with the page.
        let in_range = |id: &str| {
            lo.as_deref().map_or(true, |lo| id >= lo) && hi.as_deref().map_or(true, |hi| id < hi)
        };
        let keep: BTreeSet<String> = regs
            .iter()
            .map(|r| format!("/{}/{}/{}/{}", r.n, r.v, r.h, r.p))
            .collect();
        let stale: Vec<String> = table
            .regs
            .keys()
            .filter(|id| in_range(id) && !keep.contains(*id))
            .cloned()
            .collect();
        let owner = NodeId::new(owner);
        for id in stale {
            // A change the owner no longer has a delta for: it was
            // deregistered or expired; we cannot tell which.
            self.remove(&owner, &id, OfflineReason::Deregistered);
        }
        for reg in regs {
            self.accept(&owner, reg, stats);
        }
        let Some(table) = self.tables.get_mut(&owner) else {
            return Ok(());
        };
        let done = match &mut table.sync {
            Some(sync) => {
                sync.got[i] = true;
                sync.left -= 1;
                sync.left == 0
            }
            None => false,
        };
        if done {
            table.sync = None;
            table.version = v;
            table.confirmed = now;
            // Deltas that came during the sync may follow it.
            self.drain_early(now, &owner, stats);
            if self
                .tables
                .get(&owner)
                .is_some_and(|t| t.announced > t.version && t.gap_due.is_none())
            {
                let _ = self.pull(now, owner.as_str(), stats);
            }
        } else {
            // Pages are paced: if they stop coming, ask for the rest.
            self.rearm(&owner, now + SYNC_WAIT);
        }
        Ok(())
    }

    /// Asks `owner` for what our copy misses, at most every
    /// [`PULL_SPACING`].
    /// Returns when it may pull again if it is too early now.
    fn pull(&mut self, now: Instant, owner: &str, stats: &mut Stats) -> Option<Instant> {
        #[derive(Serialize)]
        struct Pull<'a> {
            t: &'static str,
            o: &'a str,
            have: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            snap: Option<u64>,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            missing: &'a [u32],
        }
        let table = self.tables.get_mut(owner)?;
        if let Some(at) = table.last_pull.filter(|at| now < *at + PULL_SPACING) {
            return Some(at + PULL_SPACING);
        }
        table.last_pull = Some(now);
        let missing: Vec<u32> = table.sync.as_ref().map_or_else(Vec::new, |s| {
            (0..s.got.len() as u32)
                .filter(|i| !s.got[*i as usize])
                .take(MAX_MISSING)
                .collect()
        });
        let data = raw(json(&Pull {
            t: "pull",
            o: owner,
            have: table.version,
            snap: table.sync.as_ref().map(|s| s.v),
            missing: &missing,
        }));
        let retry = table.retry;
        table.retry = (retry * 2).min(RETRY_MAX);
        stats.registry_pulls += 1;
        self.out.push_back(Outgoing {
            to: Destination::Cluster,
            data,
        });
        let owner = NodeId::new(owner);
        self.rearm(&owner, now + retry);
        None
    }

    /// (Re)schedules the pull check of `owner` at `due`.
    fn rearm(&mut self, owner: &NodeId, due: Instant) {
        let Some(table) = self.tables.get_mut(owner) else {
            return;
        };
        if let Some(old) = table.gap_due.replace(due) {
            self.gaps.remove(&(old, owner.clone()));
        }
        self.gaps.insert((due, owner.clone()));
    }

    /// Answers a pull: the deltas since `have` if the log still has them
    /// and the puller is not in a page sync, else pages (the missing ones
    /// of a sync at our version, or all),
    /// within the repair budget. Answers are broadcast, not unicast: nodes
    /// on one host share the port, so a unicast reply could reach the
    /// wrong one; and one answer serves every node that misses the same
    /// thing (a delta or page broadcast in the last `RESEND_AFTER` is not
    /// sent again).
    fn serve(
        &mut self,
        now: Instant,
        have: u64,
        snap: Option<u64>,
        missing: &[u32],
        stats: &mut Stats,
    ) {
        if have == self.version || self.version == 0 {
            return;
        }
        // (kind, number): a delta by its version, a page by its index.
        let mut answer: Vec<((u8, u64), Box<serde_json::value::RawValue>)> = Vec::new();
        // A node in the middle of a page sync ignores deltas until it ends:
        // answer it with pages, or it would wait for deltas forever.
        let log_start = match snap {
            None => self.log.iter().position(|(b, _, _)| *b == have),
            Some(_) => None,
        };
        if let Some(start) = log_start {
            answer.extend(
                self.log
                    .iter()
                    .skip(start)
                    .map(|(_, v, d)| ((0, *v), d.clone())),
            );
        } else {
            let resume = snap == Some(self.version) && !missing.is_empty();
            let pages = self.pages();
            if resume {
                answer.extend(missing.iter().filter_map(|i| {
                    let page = pages.get(*i as usize)?;
                    Some(((1, u64::from(*i)), page.clone()))
                }));
            } else {
                answer.extend(
                    pages
                        .iter()
                        .enumerate()
                        .map(|(i, page)| ((1, i as u64), page.clone())),
                );
            }
        }
        let version = self.version;
        self.resent
            .retain(|_, (v, at)| *v == version && now < *at + RESEND_AFTER);
        for (key, data) in answer {
            if self.resent.contains_key(&key) || self.queued.contains(&(key, version)) {
                continue; // just sent, or waiting: it serves this pull too
            }
            if self.repair_queue.len() >= REPAIR_QUEUE {
                stats.registry_repairs_deferred += 1;
                break;
            }
            self.queued.insert((key, version));
            self.repair_queue.push_back((key, version, data));
        }
        self.release(now, stats);
    }

    /// Sends the queued repairs the budget allows now.
    fn release(&mut self, now: Instant, stats: &mut Stats) {
        let elapsed = now.saturating_duration_since(self.repair_at).as_secs_f64();
        self.repair_tokens = (self.repair_tokens + elapsed * REPAIR_RATE).min(REPAIR_BURST);
        self.repair_at = now;
        while self.repair_tokens >= 1.0 {
            let Some((key, version, data)) = self.repair_queue.pop_front() else {
                break;
            };
            self.queued.remove(&(key, version));
            self.resent.insert(key, (version, now));
            self.repair_tokens -= 1.0;
            stats.registry_repairs += 1;
            self.out.push_back(Outgoing {
                to: Destination::Cluster,
                data,
            });
        }
    }

    /// Our table in pages, cut once per version.
    fn pages(&mut self) -> &[Box<serde_json::value::RawValue>] {
        if self.pages.as_ref().map(|(v, _)| *v) != Some(self.version) {
            let mine = &self.tables[&self.me];
            let mut groups: Vec<Vec<(&str, String)>> = vec![Vec::new()];
            let mut size = 0;
            for (id, reg) in &mine.regs {
                let one = json(&WireReg::of(reg));
                let last = groups.last_mut().expect("never empty");
                if !last.is_empty() && size + one.len() > PAGE_BYTES {
                    groups.push(Vec::new());
                    size = 0;
                }
                size += one.len() + 1;
                groups.last_mut().expect("never empty").push((id, one));
            }
            let n = groups.len();
            let firsts: Vec<Option<&str>> = groups
                .iter()
                .map(|g| g.first().map(|(id, _)| *id))
                .collect();
            let pages = groups
                .iter()
                .enumerate()
                .map(|(i, group)| {
                    let lo = if i == 0 { None } else { firsts[i] };
                    let hi = firsts.get(i + 1).copied().flatten();
                    let regs: Vec<&str> = group.iter().map(|(_, r)| r.as_str()).collect();
                    raw(format!(
                        r#"{{"t":"page","v":{},"i":{i},"n":{n},"lo":{},"hi":{},"regs":[{}]}}"#,
                        self.version,
                        json(&lo),
                        json(&hi),
                        regs.join(",")
                    ))
                })
                .collect();
            self.pages = Some((self.version, pages));
        }
        self.pages.as_ref().map_or(&[], |(_, p)| p)
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(limits: RegistryLimits) -> (Replica, Instant) {
        let now = Instant::now();
        (Replica::new(NodeId::new("me"), limits, 1 << 20, now), now)
    }

    fn wire(name: &str, port: u16) -> String {
        format!(r#"{{"n":"{name}","v":"1","h":"h","p":{port},"m":{{}}}}"#)
    }

    fn delta(b: u64, v: u64, puts: &[String]) -> String {
        format!(
            r#"{{"t":"delta","b":{b},"v":{v},"put":[{}]}}"#,
            puts.join(",")
        )
    }

    #[test]
    fn hostile_registry_messages_are_refused_and_hold_nothing() {
        let (mut r, now) = replica(RegistryLimits::default());
        let mut stats = Stats::default();
        let mut feed =
            |r: &mut Replica, known, data: &str| r.on_message(now, "peer", known, data, &mut stats);
        for bad in [
            "",
            "null",
            "[]",
            r#"{"t":"nope"}"#,
            r#"{"t":"delta","b":1,"v":1}"#,
            r#"{"t":"delta","b":0,"v":1,"put":[{"n":"a"}]}"#,
            r#"{"t":"page","v":1,"i":5,"n":2,"lo":null,"hi":null,"regs":[]}"#,
            r#"{"t":"page","v":1,"i":0,"n":4000000000,"lo":null,"hi":null,"regs":[]}"#,
            r#"{"t":"page","v":1,"i":0,"n":0,"lo":null,"hi":null,"regs":[]}"#,
            r#"{"t":"pull","have":1}"#,
        ] {
            assert_eq!(feed(&mut r, true, bad), Err(Refusal::Invalid), "{bad}");
        }
        assert_eq!(
            feed(&mut r, false, &delta(0, 1, &[wire("a", 1)])),
            Err(Refusal::UnknownOwner)
        );
        // Registrations with a bad part are counted, not held.
        assert_eq!(
            feed(&mut r, true, &delta(0, 1, &[wire("a/b", 1), wire("ok", 0)])),
            Ok(())
        );
        assert_eq!(r.held(), 0);
        // Early deltas are held up to REORDER_MAX, whatever the flood.
        for b in 10..10_000 {
            let _ = feed(&mut r, true, &delta(b, b + 1, &[wire("x", 1)]));
        }
        assert!(r.tables["peer"].early.len() <= REORDER_MAX);
        assert!(r.early_bytes <= EARLY_BYTES_PER_OWNER);
        assert_eq!(r.early_bytes, early_bytes(&r.tables["peer"]));
        // The owner leaves: nothing is held any more.
        r.owner_removed("peer");
        assert_eq!(r.early_bytes, 0);
        assert_eq!(r.held(), 0);
        assert_eq!(stats.dropped.registry_invalid, 2);
    }

    #[test]
    fn a_pull_is_answered_from_the_log_then_with_pages() {
        let (mut r, now) = replica(RegistryLimits::default());
        let mut stats = Stats::default();
        for port in 1..=100 {
            let reg =
                Registration::new("s".into(), "1".into(), "h".into(), port, Map::new()).unwrap();
            r.register(now, reg, Duration::from_secs(60)).unwrap();
        }
        while r.poll_outgoing().is_some() {}
        // Behind by 10: the last 10 deltas.
        r.on_message(
            now,
            "peer",
            true,
            r#"{"t":"pull","o":"me","have":90}"#,
            &mut stats,
        )
        .unwrap();
        assert_eq!(std::iter::from_fn(|| r.poll_outgoing()).count(), 10);
        // Behind by more than the log: pages of at most PAGE_BYTES of
        // registrations each, covering the table.
        let later = now + Duration::from_secs(1);
        r.on_message(
            later,
            "peer",
            true,
            r#"{"t":"pull","o":"me","have":0}"#,
            &mut stats,
        )
        .unwrap();
        let pages: Vec<String> = std::iter::from_fn(|| r.poll_outgoing())
            .map(|o| o.data.get().to_owned())
            .collect();
        assert!(
            pages.len() > 1 && pages.iter().all(|p| p.len() < PAGE_BYTES + 200),
            "{}",
            pages.len()
        );
        // A pull for another owner is not ours to answer.
        r.on_message(
            later,
            "peer",
            true,
            r#"{"t":"pull","o":"else","have":0}"#,
            &mut stats,
        )
        .unwrap();
        assert!(r.poll_outgoing().is_none());

        // The pages alone rebuild the table elsewhere, in any order.
        let (mut copy, now) = replica(RegistryLimits::default());
        for page in pages.iter().rev() {
            copy.on_message(now, "me2", true, page, &mut stats).unwrap();
        }
        assert_eq!(copy.held(), 100);
        assert_eq!(copy.tables["me2"].version, 100);
    }
}
