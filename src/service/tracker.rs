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
        if self.needs.insert(name.to_owned()) && self.active_count(name) == 0 && self.ready {
            self.ready = false;
            self.events
                .push_back(ServiceEvent::NotReady(name.to_owned()));
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
            Event::Removed(peer) => self.remove(&peer.id),
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
                self.deactivated(&inst.name);
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
            self.events.push_back(ServiceEvent::Service(instance));
            self.update_ready();
        }
    }

    /// An instance of `name` stopped being active.
    fn deactivated(&mut self, name: &str) {
        if self.needs.contains(name) && self.active_count(name) == 0 {
            self.events
                .push_back(ServiceEvent::NotReady(name.to_owned()));
        }
        self.update_ready();
    }

    fn active_count(&self, name: &str) -> usize {
        self.instances
            .values()
            .filter(|i| i.name == name && i.active.is_some())
            .count()
    }

    fn needs_met(&self) -> bool {
        self.needs.iter().all(|n| self.active_count(n) > 0)
    }

    fn update_ready(&mut self) {
        let ready = self.needs_met();
        if ready && !self.ready {
            self.events.push_back(ServiceEvent::Ready(self.services()));
        }
        self.ready = ready;
    }
}
