//! The sans-IO heart of [`ServiceDiscovery`](super::ServiceDiscovery): which
//! instances of which services exist, which setup hooks each still has to
//! pass, and when the process is ready. It takes node [`Event`]s, registry
//! events (with the owner of each registration, which the driver looks up)
//! and hook results, and queues hook runs and [`ServiceEvent`]s; it runs
//! nothing itself.
//!
//! An instance is a node advertising a service, keyed by the node's id, or
//! a live registration, keyed by the registration's id: one node may
//! advertise `kv` and own registrations of `kv` too, and each counts.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::event::Event;
use crate::membership::{NodeId, Peer};
use crate::registry::Registration;

use super::{ServiceEvent, ServiceInstance, Services};

/// Identifies one hook run, so that a result arriving after its instance
/// was removed (or renamed, or re-added) is recognised as stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    key: Key,
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

/// What identifies an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A node advertising the service.
    Node(NodeId),
    /// A registration, by its id (`/name/version/host/port`).
    Registration(String),
}

/// The node that owns a registration, as the driver finds it when the
/// registration comes online or changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    /// Its id.
    pub id: NodeId,
    /// It, as the peer table knows it (`None`: this node).
    pub peer: Option<Peer>,
    /// Its address: `peer.addr`, or this node's socket address.
    pub addr: SocketAddr,
}

#[derive(Debug)]
struct Instance {
    /// What hooks and events get; its name never changes (a renamed node
    /// is a new instance).
    instance: ServiceInstance,
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
    instances: HashMap<Key, Instance>,
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
        let keys: Vec<Key> = self
            .instances
            .iter()
            .filter(|(_, i)| i.instance.name == name)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.advance(&key);
        }
        index
    }

    /// Feeds a node event.
    pub fn handle_event(&mut self, event: &Event) {
        match event {
            Event::Added(peer) => self.seen(peer),
            Event::Updated(peer) => self.seen(peer),
            Event::Removed(peer, _) => self.remove(&Key::Node(peer.id.clone())),
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
        let gone: Vec<Key> = self
            .instances
            .keys()
            .filter(|key| matches!(key, Key::Node(id) if !live.contains_key(id)))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
        for peer in peers {
            self.seen(peer);
        }
    }

    /// A registration came online, or changed (new metadata, another
    /// owner): `owner` is the node whose copy counts now. A new one is an
    /// instance of the service it names, set up like any other; a known
    /// one keeps its progress and gets the new details.
    pub fn registration_online(&mut self, registration: Registration, owner: Owner) {
        let key = Key::Registration(registration.id().to_owned());
        let instance = ServiceInstance::registered(registration, owner);
        match self.instances.get_mut(&key) {
            // The id holds the name: an update is always the same service.
            Some(inst) => inst.instance = instance,
            None => self.insert(key, instance),
        }
    }

    /// A registration went offline (deregistered, expired, or its owner
    /// left): its instance goes.
    pub fn registration_offline(&mut self, id: &str) {
        self.remove(&Key::Registration(id.to_owned()));
    }

    /// Brings the registration instances in line with the registry, after
    /// its events were lost: `live` is every live registration, with its
    /// owner.
    pub fn reconcile_registrations(&mut self, live: Vec<(Registration, Owner)>) {
        let ids: BTreeSet<&str> = live.iter().map(|(r, _)| r.id()).collect();
        let gone: Vec<Key> = self
            .instances
            .keys()
            .filter(|key| matches!(key, Key::Registration(id) if !ids.contains(id.as_str())))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
        for (registration, owner) in live {
            self.registration_online(registration, owner);
        }
    }

    /// Reports the result of a hook run started by [`Action::RunHook`].
    pub fn hook_finished(&mut self, ticket: Ticket, result: Result<(), String>) {
        let Some(inst) = self.instances.get_mut(&ticket.key) else {
            return;
        };
        if inst.generation != ticket.generation || !inst.running || inst.done != ticket.index {
            return; // stale: the instance was removed, renamed or re-added meanwhile
        }
        inst.running = false;
        match result {
            Ok(()) => {
                inst.done += 1;
                self.advance(&ticket.key);
            }
            Err(error) => {
                inst.failed = true;
                let instance = inst.instance.clone();
                let was_active = inst.active.take().is_some();
                let name = instance.name.clone();
                self.events
                    .push_back(ServiceEvent::SetupFailed { instance, error });
                if was_active {
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
                map.entry(inst.instance.name.clone())
                    .or_default()
                    .push((order, inst.instance.clone()));
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
        let key = Key::Node(peer.id.clone());
        let name = service_name(peer);
        match (self.instances.get_mut(&key), name) {
            (Some(inst), Some(name)) if inst.instance.name == name => {
                // Same service: keep its progress, refresh what it advertises.
                inst.instance = ServiceInstance::advertised(name.to_owned(), peer.clone());
            }
            (Some(_), _) => {
                // Renamed, or no longer a service: it leaves the old one...
                self.remove(&key);
                // ...and, renamed, starts over in the new one.
                if let Some(name) = name {
                    let instance = ServiceInstance::advertised(name.to_owned(), peer.clone());
                    self.insert(key, instance);
                }
            }
            (None, Some(name)) => {
                let instance = ServiceInstance::advertised(name.to_owned(), peer.clone());
                self.insert(key, instance);
            }
            (None, None) => {}
        }
    }

    fn insert(&mut self, key: Key, instance: ServiceInstance) {
        self.generation += 1;
        self.instances.insert(
            key.clone(),
            Instance {
                instance,
                generation: self.generation,
                done: 0,
                running: false,
                failed: false,
                active: None,
            },
        );
        self.advance(&key);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(inst) = self.instances.remove(key) {
            if inst.active.is_some() {
                let name = inst.instance.name.clone();
                self.events
                    .push_back(ServiceEvent::InstanceGone(inst.instance));
                self.deactivated(&name);
            }
        }
    }

    /// Starts the instance's next hook, or activates it when all passed.
    fn advance(&mut self, key: &Key) {
        let Some(inst) = self.instances.get_mut(key) else {
            return;
        };
        if inst.failed || inst.running {
            return;
        }
        let hooks = self.hooks.get(&inst.instance.name).copied().unwrap_or(0);
        if inst.done < hooks {
            inst.running = true;
            self.actions.push_back(Action::RunHook {
                index: inst.done,
                instance: inst.instance.clone(),
                ticket: Ticket {
                    key: key.clone(),
                    generation: inst.generation,
                    index: inst.done,
                },
            });
        } else if inst.active.is_none() {
            self.activations += 1;
            inst.active = Some(self.activations);
            let instance = inst.instance.clone();
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
        test_peer(&format!("node-{id}"), info, t0)
    }

    /// A peer at 10.0.0.2 advertising `info`, for the tests of this file.
    pub(super) fn test_peer(id: &str, info: Option<serde_json::Value>, t0: Instant) -> Peer {
        Peer {
            id: NodeId::new(id),
            pid: "1".into(),
            host_name: "h".into(),
            addr: "10.0.0.2:12345".parse().unwrap(),
            via: None,
            path_lag_ms: 0,
            paths: None,
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
            *active.entry(inst.instance.name.clone()).or_default() += 1;
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
        /// A registration of one of [`NAMES`] online (or updated), by port.
        RegOnline(u8, u8),
        RegOffline(u8, u8),
        /// Reconciles with a registry holding the registrations whose bit is set.
        RegReconcile(u8, u8),
    }

    fn reg(name: u8, port: u8) -> (Registration, Owner) {
        let r = Registration::builder(
            NAMES[usize::from(name)],
            "1",
            "10.0.0.9",
            1 + u16::from(port),
        )
        .build()
        .unwrap();
        let owner = Owner {
            id: NodeId::new("owner"),
            peer: None,
            addr: "10.0.0.9:1".parse().unwrap(),
        };
        (r, owner)
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
            3 => (0u8..3, 0u8..4).prop_map(|(n, p)| Op::RegOnline(n, p)),
            2 => (0u8..3, 0u8..4).prop_map(|(n, p)| Op::RegOffline(n, p)),
            1 => (0u8..3, any::<u8>()).prop_map(|(n, mask)| Op::RegReconcile(n, mask)),
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
                    Op::RegOnline(n, p) => {
                        let (r, owner) = reg(n, p);
                        t.registration_online(r, owner);
                    }
                    Op::RegOffline(n, p) => t.registration_offline(reg(n, p).0.id()),
                    Op::RegReconcile(n, mask) => {
                        let live = (0u8..4)
                            .filter(|p| mask & (1 << p) != 0)
                            .map(|p| reg((n + p) % 3, p))
                            .collect();
                        t.reconcile_registrations(live);
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

#[cfg(test)]
mod registration_tests {
    use super::*;
    use std::time::Instant;

    fn kv(port: u16) -> Registration {
        Registration::builder("kv", "1.0.0", "10.0.0.5", port)
            .build()
            .unwrap()
    }

    fn peer(id: &str, info: serde_json::Value) -> Peer {
        let mut peer = super::counter_tests::test_peer(id, Some(info), Instant::now());
        peer.host_name = "sidecar".into();
        peer
    }

    /// The sidecar that registered kv on its app's behalf.
    fn sidecar() -> Owner {
        let peer = peer("sidecar", serde_json::json!({"name": "sidecar"}));
        Owner {
            id: peer.id.clone(),
            addr: peer.addr,
            peer: Some(peer),
        }
    }

    fn events(t: &mut ServiceTracker) -> Vec<ServiceEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn a_registration_meets_a_need() {
        let mut t = ServiceTracker::new(["kv".to_owned()]);
        t.registration_online(kv(7000), sidecar());
        let events = events(&mut t);
        assert!(
            matches!(
                &events[..],
                [ServiceEvent::Service(_), ServiceEvent::Ready(_)]
            ),
            "{events:?}"
        );
        assert!(t.is_ready());
        let services = t.services();
        let instance = &services["kv"][0];
        assert_eq!((instance.host(), instance.port()), ("10.0.0.5", Some(7000)));
        assert_eq!(
            instance.registration().map(Registration::id),
            Some("/kv/1.0.0/10.0.0.5/7000")
        );
        // The node is the owner, as the peer table knows it.
        assert_eq!(instance.id().as_str(), "sidecar");
        assert_eq!(
            instance.peer.as_ref().map(|p| p.host_name.as_str()),
            Some("sidecar")
        );
        assert_eq!(
            ServiceEvent::Service(instance.clone()).to_string(),
            r#"service "kv" active on registration /kv/1.0.0/10.0.0.5/7000"#
        );
    }

    #[test]
    fn a_setup_hook_runs_with_the_registrations_host_and_port() {
        let mut t = ServiceTracker::new([]);
        t.add_hook("kv");
        t.registration_online(kv(7000), sidecar());
        let Some(Action::RunHook {
            instance, ticket, ..
        }) = t.poll_action()
        else {
            panic!("a hook run");
        };
        assert_eq!((instance.host(), instance.port()), ("10.0.0.5", Some(7000)));
        assert!(!t.is_ready(), "not active before its hook passed");
        // New metadata while the hook runs: progress is kept, no second run.
        let updated = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000)
            .meta("zone", "eu")
            .build()
            .unwrap();
        t.registration_online(updated, sidecar());
        assert_eq!(t.poll_action(), None);
        t.hook_finished(ticket, Ok(()));
        assert!(t.is_ready());
        assert_eq!(
            t.services()["kv"][0].registration().unwrap().meta()["zone"],
            "eu"
        );
    }

    #[test]
    fn offline_removes_the_instance_and_the_last_one_is_not_ready() {
        let mut t = ServiceTracker::new(["kv".to_owned()]);
        t.registration_online(kv(7000), sidecar());
        events(&mut t);
        t.registration_offline("/kv/1.0.0/10.0.0.5/7000");
        let events = events(&mut t);
        match &events[..] {
            [ServiceEvent::InstanceGone(gone), ServiceEvent::NotReady(name)] => {
                assert_eq!(gone.port(), Some(7000));
                assert_eq!(name, "kv");
            }
            other => panic!("{other:?}"),
        }
        assert!(!t.is_ready());
        // An unknown id is no change.
        t.registration_offline("/kv/1.0.0/10.0.0.5/7000");
        assert!(t.poll_event().is_none());
    }

    #[test]
    fn node_and_registration_instances_of_one_service_count_together() {
        let mut t = ServiceTracker::new(["kv".to_owned()]);
        // The sidecar advertises kv itself too, and owns a registration of
        // kv: two instances, keyed apart.
        let node = peer("sidecar", serde_json::json!({"name": "kv", "port": 7001}));
        t.handle_event(&Event::Added(node.clone()));
        t.registration_online(kv(7000), sidecar());
        t.registration_online(kv(7002), sidecar());
        let services = t.services();
        let ports: Vec<_> = services["kv"].iter().map(ServiceInstance::port).collect();
        assert_eq!(ports, [Some(7001), Some(7000), Some(7002)]);
        assert_eq!(services["kv"][0].host(), "10.0.0.2");
        assert!(services["kv"][0].registration().is_none());
        events(&mut t);

        // The node stops advertising: its registrations stay.
        t.handle_event(&Event::Removed(node, crate::Removal::Timeout));
        assert!(t.is_ready());
        // A resync drops what the registry no longer holds.
        t.reconcile_registrations(vec![(kv(7002), sidecar())]);
        assert!(t.is_ready());
        assert_eq!(t.services()["kv"].len(), 1);
        t.reconcile_registrations(Vec::new());
        let events = events(&mut t);
        assert!(
            matches!(events.last(), Some(ServiceEvent::NotReady(n)) if n == "kv"),
            "{events:?}"
        );
    }

    #[test]
    fn a_registration_this_process_owns_has_no_peer() {
        let mut t = ServiceTracker::new(["kv".to_owned()]);
        let me = Owner {
            id: NodeId::new("me"),
            peer: None,
            addr: "0.0.0.0:47650".parse().unwrap(),
        };
        t.registration_online(kv(7000), me);
        let instance = t.services()["kv"][0].clone();
        assert!(instance.peer.is_none());
        assert_eq!(instance.id().as_str(), "me");
        assert_eq!(instance.info(), &serde_json::Value::Null);
        assert_eq!(instance.port(), Some(7000));
    }
}
