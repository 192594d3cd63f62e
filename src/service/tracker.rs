//! The sans-IO heart of [`ServiceDiscovery`](super::ServiceDiscovery): which
//! instances of which services exist, which setup hooks each still has to
//! pass, and when the process is ready. It takes node [`Event`]s and hook
//! results, and queues hook runs and [`ServiceEvent`]s; it runs nothing itself.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::event::Event;
use crate::membership::{NodeId, Peer};

use super::{ServiceEvent, ServiceInstance, Services};

/// Identifies one hook run, so that a result arriving after its instance
/// was removed (or renamed, or re-added) is recognised as stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    id: NodeId,
    generation: u64,
    index: usize,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Run hook number `index` of `instance.name` for `instance`, then report
    /// the result with [`ServiceTracker::hook_finished`].
    RunHook {
        /// Which hook of the service, in registration order.
        index: usize,
        /// The instance to set up.
        instance: ServiceInstance,
        /// Hand this back with the result.
        ticket: Ticket,
    },
}

#[derive(Debug)]
struct Instance {
    name: String,
    peer: Peer,
    generation: u64,
    /// Hooks passed so far.
    done: usize,
    running: bool,
    failed: bool,
    /// Order of activation, to list instances in the order they became usable.
    active: Option<u64>,
}

/// The service-readiness state machine. See the [module docs](self).
#[derive(Debug, Default)]
pub struct ServiceTracker {
    needs: BTreeSet<String>,
    hooks: HashMap<String, usize>,
    instances: HashMap<NodeId, Instance>,
    /// Active instances per service name, kept in step with every
    /// `Instance::active` change (absent means none, so the map never holds
    /// more names than there are active instances): readiness is then
    /// O(1) per activation or removal rather than a walk over every
    /// instance for every need.
    active: HashMap<String, usize>,
    /// How many needs have at least one active instance.
    needs_met: usize,
    generation: u64,
    activations: u64,
    ready: bool,
    actions: VecDeque<Action>,
    events: VecDeque<ServiceEvent>,
}

/// The service name a peer advertises, if any (`info.name`, a string).
pub fn service_name(peer: &Peer) -> Option<&str> {
    peer.info.as_ref()?.get("name")?.as_str()
}

impl ServiceTracker {
    /// A tracker that needs `needs` before it is ready.
    pub fn new(needs: impl IntoIterator<Item = String>) -> Self {
        let mut tracker = ServiceTracker {
            needs: needs.into_iter().collect(),
            ..ServiceTracker::default()
        };
        tracker.ready = tracker.needs_met();
        tracker
    }

    /// Adds a needed service. If it has no active instance and we were
    /// ready, we no longer are ([`ServiceEvent::NotReady`]).
    pub fn need(&mut self, name: &str) {
        if self.needs.insert(name.to_owned()) {
            if self.active_count(name) > 0 {
                self.needs_met += 1;
            } else if self.ready {
                self.ready = false;
                self.events
                    .push_back(ServiceEvent::NotReady(name.to_owned()));
            }
        }
        self.update_ready();
    }

    /// Registers one more setup hook for `name` (it is also a need); returns
    /// its index. Instances already known, active ones included, run it too:
    /// an active instance stays active unless it fails.
    pub fn add_hook(&mut self, name: &str) -> usize {
        let count = self.hooks.entry(name.to_owned()).or_insert(0);
        *count += 1;
        let index = *count - 1;
        self.need(name);
        let ids: Vec<NodeId> = self
            .instances
            .iter()
            .filter(|(_, i)| i.name == name)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.advance(&id);
        }
        index
    }

    /// Feeds a node event.
    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Added(peer) => self.seen(peer),
            Event::Updated(peer) => self.seen(peer),
            Event::Removed(peer, _) => self.remove(&peer.id),
            Event::Master(peer) => self.events.push_back(ServiceEvent::Master(peer.clone())),
            Event::Promotion(me) => self.events.push_back(ServiceEvent::Promotion(me.clone())),
            Event::Demotion(me) => self.events.push_back(ServiceEvent::Demotion(me.clone())),
            _ => {}
        }
    }

    /// Brings the tracker in line with the node's peer table, after events
    /// were lost (a lagging consumer): removed peers go, new or changed ones
    /// are handled as if their events had arrived.
    pub fn reconcile(&mut self, peers: &[Peer]) {
        let live: HashMap<&NodeId, &Peer> = peers.iter().map(|p| (&p.id, p)).collect();
        let gone: Vec<NodeId> = self
            .instances
            .keys()
            .filter(|id| !live.contains_key(id))
            .cloned()
            .collect();
        for id in gone {
            self.remove(&id);
        }
        for peer in peers {
            self.seen(peer);
        }
    }

    /// Reports the result of a hook run started by [`Action::RunHook`].
    pub fn hook_finished(&mut self, ticket: Ticket, result: Result<(), String>) {
        let Some(inst) = self.instances.get_mut(&ticket.id) else {
            return;
        };
        if inst.generation != ticket.generation || !inst.running || inst.done != ticket.index {
            return; // stale: the instance was removed, renamed or re-added meanwhile
        }
        inst.running = false;
        match result {
            Ok(()) => {
                inst.done += 1;
                self.advance(&ticket.id);
            }
            Err(error) => {
                inst.failed = true;
                let instance = ServiceInstance {
                    name: inst.name.clone(),
                    peer: inst.peer.clone(),
                };
                let was_active = inst.active.take().is_some();
                self.events
                    .push_back(ServiceEvent::SetupFailed { instance, error });
                if was_active {
                    let name = self.instances[&ticket.id].name.clone();
                    self.deactivated(&name);
                }
            }
        }
    }

    /// The next hook to run.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServiceEvent> {
        self.events.pop_front()
    }

    /// Whether every need has an active instance.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The needed services.
    pub fn needs(&self) -> impl Iterator<Item = &str> {
        self.needs.iter().map(String::as_str)
    }

    /// Active instances by service name, each list in activation order.
    pub fn services(&self) -> Services {
        let mut map: BTreeMap<String, Vec<(u64, ServiceInstance)>> = BTreeMap::new();
        for inst in self.instances.values() {
            if let Some(order) = inst.active {
                map.entry(inst.name.clone()).or_default().push((
                    order,
                    ServiceInstance {
                        name: inst.name.clone(),
                        peer: inst.peer.clone(),
                    },
                ));
            }
        }
        map.into_iter()
            .map(|(name, mut list)| {
                list.sort_by_key(|(order, _)| *order);
                (name, list.into_iter().map(|(_, i)| i).collect())
            })
            .collect()
    }

    // ----- internals ----------------------------------------------------

    /// A peer was added or changed: track, move or drop its instance.
    fn seen(&mut self, peer: &Peer) {
        let name = service_name(peer);
        match (self.instances.get_mut(&peer.id), name) {
            (Some(inst), Some(name)) if inst.name == name => {
                // Same service: keep its progress, refresh what it advertises.
                inst.peer = peer.clone();
            }
            (Some(_), _) => {
                // Renamed, or no longer a service: it leaves the old one...
                self.remove(&peer.id);
                // ...and, renamed, starts over in the new one.
                if let Some(name) = name {
                    self.insert(name.to_owned(), peer);
                }
            }
            (None, Some(name)) => self.insert(name.to_owned(), peer),
            (None, None) => {}
        }
    }

    fn insert(&mut self, name: String, peer: &Peer) {
        self.generation += 1;
        self.instances.insert(
            peer.id.clone(),
            Instance {
                name,
                peer: peer.clone(),
                generation: self.generation,
                done: 0,
                running: false,
                failed: false,
                active: None,
            },
        );
        self.advance(&peer.id);
    }

    fn remove(&mut self, id: &NodeId) {
        if let Some(inst) = self.instances.remove(id) {
            if inst.active.is_some() {
                let name = inst.name.clone();
                self.events
                    .push_back(ServiceEvent::InstanceGone(ServiceInstance {
                        name: inst.name,
                        peer: inst.peer,
                    }));
                self.deactivated(&name);
            }
        }
    }

    /// Starts the instance's next hook, or activates it when all passed.
    fn advance(&mut self, id: &NodeId) {
        let Some(inst) = self.instances.get_mut(id) else {
            return;
        };
        if inst.failed || inst.running {
            return;
        }
        let hooks = self.hooks.get(&inst.name).copied().unwrap_or(0);
        if inst.done < hooks {
            inst.running = true;
            self.actions.push_back(Action::RunHook {
                index: inst.done,
                instance: ServiceInstance {
                    name: inst.name.clone(),
                    peer: inst.peer.clone(),
                },
                ticket: Ticket {
                    id: id.clone(),
                    generation: inst.generation,
                    index: inst.done,
                },
            });
        } else if inst.active.is_none() {
            self.activations += 1;
            inst.active = Some(self.activations);
            let instance = ServiceInstance {
                name: inst.name.clone(),
                peer: inst.peer.clone(),
            };
            let first = match self.active.get_mut(&instance.name) {
                Some(count) => {
                    *count += 1;
                    false
                }
                None => {
                    self.active.insert(instance.name.clone(), 1);
                    true
                }
            };
            if first && self.needs.contains(&instance.name) {
                self.needs_met += 1;
            }
            self.events.push_back(ServiceEvent::Service(instance));
            self.update_ready();
        }
    }

    /// An instance of `name` stopped being active (its `active` was just
    /// cleared, or it was removed while active).
    fn deactivated(&mut self, name: &str) {
        let left = self.active.get_mut(name).map_or(0, |count| {
            *count -= 1;
            *count
        });
        if left == 0 {
            let counted = self.active.remove(name).is_some();
            if self.needs.contains(name) {
                if counted {
                    self.needs_met -= 1;
                }
                self.events
                    .push_back(ServiceEvent::NotReady(name.to_owned()));
            }
        }
        self.update_ready();
    }

    fn active_count(&self, name: &str) -> usize {
        self.active.get(name).copied().unwrap_or(0)
    }

    fn needs_met(&self) -> bool {
        self.needs_met == self.needs.len()
    }

    fn update_ready(&mut self) {
        let ready = self.needs_met();
        if ready && !self.ready {
            self.events.push_back(ServiceEvent::Ready(self.services()));
        }
        self.ready = ready;
    }
}

#[cfg(test)]
mod counter_tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    const NAMES: [&str; 3] = ["db", "cache", "queue"];

    fn peer(id: u8, name: Option<u8>, t0: Instant) -> Peer {
        let info = name.map(|n| serde_json::json!({ "name": NAMES[usize::from(n)] }));
        Peer {
            id: NodeId::new(&format!("node-{id}")),
            pid: "1".into(),
            host_name: "h".into(),
            addr: "10.0.0.2:12345".parse().unwrap(),
            is_master: false,
            is_master_eligible: true,
            weight: 0.5,
            info_raw: info.as_ref().map(|i| i.to_string().into()),
            info,
            wire_fingerprint: 0,
            epoch: None,
            hello_interval: Duration::from_millis(400),
            gaps_measured: 0,
            hello_seq: None,
            last_seen: t0,
            deadline: t0,
            indexed: t0,
        }
    }

    /// The counters as a walk over every instance finds them.
    fn recount(t: &ServiceTracker) -> (HashMap<String, usize>, usize) {
        let mut active: HashMap<String, usize> = HashMap::new();
        for inst in t.instances.values().filter(|i| i.active.is_some()) {
            *active.entry(inst.name.clone()).or_default() += 1;
        }
        let met = t.needs.iter().filter(|n| active.contains_key(*n)).count();
        (active, met)
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A peer added or updated, advertising one of [`NAMES`] or nothing.
        Seen(u8, Option<u8>),
        Removed(u8),
        /// Finishes the pending hook run at this position (modulo their
        /// number), passing or failing.
        Finish(u8, bool),
        /// Reports a result again for a ticket already used (stale).
        Replay(u8),
        Need(u8),
        AddHook(u8),
        /// Reconciles with a table holding the peers whose bit is set.
        Reconcile(u8, Option<u8>),
    }

    fn op() -> impl Strategy<Value = Op> {
        let name = proptest::option::of(0u8..3);
        prop_oneof![
            5 => (0u8..8, name.clone()).prop_map(|(p, n)| Op::Seen(p, n)),
            2 => (0u8..8).prop_map(Op::Removed),
            5 => (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(i, ok)| Op::Finish(i, ok)),
            1 => any::<u8>().prop_map(Op::Replay),
            1 => (0u8..3).prop_map(Op::Need),
            1 => (0u8..3).prop_map(Op::AddHook),
            1 => (any::<u8>(), name).prop_map(|(mask, n)| Op::Reconcile(mask, n)),
        ]
    }

    proptest! {
        #[test]
        fn counters_always_equal_a_recount(
            initial in proptest::collection::vec(0u8..3, 0..3),
            ops in proptest::collection::vec(op(), 0..150),
        ) {
            let t0 = Instant::now();
            let mut t = ServiceTracker::new(
                initial.iter().map(|n| NAMES[usize::from(*n)].to_owned()),
            );
            let mut pending: Vec<Ticket> = Vec::new();
            let mut used: Vec<Ticket> = Vec::new();
            for op in ops {
                match op {
                    Op::Seen(p, n) => t.handle_event(&Event::Updated(peer(p, n, t0))),
                    Op::Removed(p) => t.handle_event(&Event::Removed(peer(p, None, t0), crate::Removal::Timeout)),
                    Op::Finish(i, ok) if !pending.is_empty() => {
                        let ticket = pending.remove(usize::from(i) % pending.len());
                        used.push(ticket.clone());
                        t.hook_finished(ticket, if ok { Ok(()) } else { Err("no".into()) });
                    }
                    Op::Finish(..) => {}
                    Op::Replay(i) if !used.is_empty() => {
                        let ticket = used[usize::from(i) % used.len()].clone();
                        t.hook_finished(ticket, Ok(()));
                    }
                    Op::Replay(_) => {}
                    Op::Need(n) => t.need(NAMES[usize::from(n)]),
                    Op::AddHook(n) => {
                        t.add_hook(NAMES[usize::from(n)]);
                    }
                    Op::Reconcile(mask, n) => {
                        let peers: Vec<Peer> = (0u8..8)
                            .filter(|p| mask & (1 << p) != 0)
                            .map(|p| peer(p, n.map(|n| (n + p) % 3), t0))
                            .collect();
                        t.reconcile(&peers);
                    }
                }
                while let Some(Action::RunHook { ticket, .. }) = t.poll_action() {
                    pending.push(ticket);
                }
                while t.poll_event().is_some() {}
                let (active, met) = recount(&t);
                prop_assert_eq!(&t.active, &active);
                prop_assert_eq!(t.needs_met, met);
                prop_assert_eq!(t.is_ready(), met == t.needs.len());
            }
        }
    }
}
