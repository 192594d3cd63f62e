//! A deterministic, in-memory LAN for [`Protocol`] nodes in simulated time.
//!
//! Each node has an address of its own (10.0.0.1, 10.0.0.2, ... on its
//! configured port). A datagram for the cluster reaches every node on the
//! same port (the sender included, as broadcast loops back); a datagram
//! for one peer reaches only the node at that address. Each delivery comes
//! after a random latency, unless it is lost or a partition separates the
//! two. Time jumps from one deliverable thing to the
//! next, so hours of protocol time for thousands of nodes run in
//! milliseconds to seconds, and a seed reproduces a run exactly.
//!
//! Nodes may also sit on subnets joined by a router
//! ([`SimNet::add_node_on`]): a node of subnet `s` is at 10.0.s.n, has one
//! interface (`sim0`, 10.0.s.n/24, which the simulator tells its protocol
//! about with [`Protocol::set_interfaces`]), hears the cluster datagrams of
//! its own subnet only, and is reached by unicast from anywhere, as across
//! a router that forwards unicast but not broadcast.
//!
//! ```
//! use std::time::Duration;
//! use shoal::sim::SimNet;
//!
//! let mut net = SimNet::new(1);
//! for weight in [0.2, 0.9, 0.5] {
//!     net.add_node(shoal::Config::builder().weight(weight).build().unwrap());
//! }
//! net.run_for(Duration::from_secs(5));
//! assert_eq!(net.masters(), vec![1]);
//! ```

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::event::Event;
use crate::interface::{Interface, Via};
use crate::protocol::{Destination, Protocol, Transmit};
use crate::registry::RegistryEvent;
use crate::wire::envelope::Sender;
use crate::Config;

/// Wall-clock ms at the start of every simulation.
const SIM_WALL_MS: u64 = 1_700_000_000_000;

/// The name of a simulated node's one interface.
const SIM_INTERFACE: &str = "sim0";

/// A subnet node's interface: `sim0`, its address, /24.
fn sim_interface(addr: SocketAddr) -> Interface {
    Interface::new(SIM_INTERFACE, 1, addr.ip(), 24)
}

/// A simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// The protocol state machine.
    pub protocol: Protocol,
    /// Its address on the simulated LAN.
    pub addr: SocketAddr,
    /// False once crashed.
    pub alive: bool,
    /// Every event it emitted, with the simulated time since the start of the run.
    pub events: Vec<(Duration, Event)>,
    /// Every registry event it emitted, likewise.
    pub registry_events: Vec<(Duration, RegistryEvent)>,
    /// Its partition group; nodes only hear nodes of the same group.
    pub group: u32,
    /// Its subnet, if it was added on one ([`SimNet::add_node_on`]).
    pub subnet: Option<u8>,
    timer: Option<Instant>,
}

#[derive(Debug)]
struct Delivery {
    at: Instant,
    seq: u64,
    to: usize,
    from: usize,
    payload: Arc<[u8]>,
}

// Ordered by time, then by send order (seq is unique).
impl PartialEq for Delivery {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Delivery {}
impl PartialOrd for Delivery {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delivery {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The simulated network. See the [module docs](self).
#[derive(Debug)]
pub struct SimNet {
    start: Instant,
    now: Instant,
    nodes: Vec<SimNode>,
    rng: StdRng,
    deliveries: BinaryHeap<Reverse<Delivery>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    seq: u64,
    /// Latency of each delivery, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// Probability that one delivery (to one receiver) is lost.
    pub loss: f64,
    /// Datagrams delivered so far.
    pub delivered: u64,
}

impl SimNet {
    /// An empty network; `seed` makes the run reproducible.
    pub fn new(seed: u64) -> Self {
        let start = Instant::now();
        SimNet {
            start,
            now: start,
            nodes: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            deliveries: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            seq: 0,
            latency: (Duration::from_micros(100), Duration::from_micros(500)),
            loss: 0.0,
            delivered: 0,
        }
    }

    /// Starts a node now; returns its index.
    pub fn add_node(&mut self, config: Config) -> usize {
        let index = self.nodes.len();
        let addr = SocketAddr::from((
            Ipv4Addr::from(0x0a00_0000 + index as u32 + 1),
            config.port(),
        ));
        self.push(config, addr, None)
    }

    /// Starts a node now on subnet `subnet`, at 10.0.`subnet`.n (n = 1, 2,
    /// ... in the order they are added) on its configured port; returns
    /// its index. It hears the cluster datagrams of its subnet only;
    /// unicast reaches it from any subnet.
    ///
    /// Do not mix with [`add_node`](Self::add_node) on one network: its
    /// addresses (10.0.0.1, ...) could collide. A collision panics.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shoal::sim::SimNet;
    ///
    /// let mut net = SimNet::new(1);
    /// let config = || shoal::Config::builder().build().unwrap();
    /// let a = net.add_node_on(config(), 1);
    /// let b = net.add_node_on(config(), 2);
    /// assert_eq!(net.node(b).addr, "10.0.2.1:12345".parse().unwrap());
    /// net.run_for(Duration::from_secs(3));
    /// // No seed: broadcast does not cross the router, two clusters.
    /// assert_eq!(net.masters(), vec![a, b]);
    /// ```
    pub fn add_node_on(&mut self, config: Config, subnet: u8) -> usize {
        let n = self
            .nodes
            .iter()
            .filter(|node| node.subnet == Some(subnet))
            .count();
        let n = u8::try_from(n + 1).expect("at most 254 nodes on one simulated subnet");
        assert!(n < 255, "at most 254 nodes on one simulated subnet");
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, subnet, n), config.port()));
        self.push(config, addr, Some(subnet))
    }

    fn push(&mut self, config: Config, addr: SocketAddr, subnet: Option<u8>) -> usize {
        assert!(
            self.nodes.iter().all(|node| node.addr != addr),
            "two simulated nodes at {addr}"
        );
        let index = self.nodes.len();
        let protocol = self.protocol(&config, index, addr, subnet);
        self.nodes.push(SimNode {
            protocol,
            addr,
            alive: true,
            events: Vec::new(),
            registry_events: Vec::new(),
            group: 0,
            subnet,
            timer: None,
        });
        self.after(index);
        index
    }

    fn protocol(
        &mut self,
        config: &Config,
        index: usize,
        addr: SocketAddr,
        subnet: Option<u8>,
    ) -> Protocol {
        let sender = Sender {
            pid: format!("{:032x}", self.rng.gen::<u128>()),
            iid: format!("{:032x}", self.rng.gen::<u128>()),
            host_name: format!("sim{index}"),
        };
        let mut protocol = Protocol::new(config, sender, self.now, self.rng.gen());
        // One wall clock for the whole simulated LAN.
        protocol.set_wall_clock(self.start, SIM_WALL_MS);
        if subnet.is_some() {
            protocol.set_interfaces(self.now, &[sim_interface(addr)]);
        }
        protocol
    }

    /// Crashes node `i`: it stops sending and receiving at once.
    pub fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.alive = false;
        }
    }

    /// Restarts node `i` as a fresh instance (a new id) with `config`.
    pub fn restart(&mut self, i: usize, config: Config) {
        let (addr, subnet) = (self.nodes[i].addr, self.nodes[i].subnet);
        let protocol = self.protocol(&config, i, addr, subnet);
        if let Some(node) = self.nodes.get_mut(i) {
            node.protocol = protocol;
            node.alive = true;
            node.timer = None;
        }
        self.after(i);
    }

    /// Puts node `i` in partition group `group` (all start in group 0).
    pub fn set_group(&mut self, i: usize, group: u32) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.group = group;
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        for node in &mut self.nodes {
            node.group = 0;
        }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// Node `i`'s protocol, to issue commands (call [`SimNet::poll`] after).
    pub fn protocol_mut(&mut self, i: usize) -> &mut Protocol {
        &mut self.nodes[i].protocol
    }

    /// Collects what node `i` queued after a command.
    pub fn poll(&mut self, i: usize) {
        self.after(i);
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Indices of the live nodes that consider themselves master.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].protocol.local().is_master)
            .collect()
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.step(end) {}
        self.now = end;
    }

    /// Runs until `done` holds (checked after each step) or `limit` passes;
    /// returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&SimNet) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(end) {
                self.now = end;
                return done(self);
            }
        }
    }

    /// Processes the earliest pending delivery or timer due by `end`.
    fn step(&mut self, end: Instant) -> bool {
        let next_timer = loop {
            match self.timers.peek() {
                Some(Reverse((at, i))) if self.nodes[*i].timer != Some(*at) => {
                    self.timers.pop();
                }
                Some(Reverse((at, _))) => break Some(*at),
                None => break None,
            }
        };
        let next_delivery = self.deliveries.peek().map(|Reverse(d)| d.at);
        let take_delivery = match (next_delivery, next_timer) {
            (Some(d), Some(t)) => d <= t,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return false,
        };
        if take_delivery {
            let Some(Reverse(d)) = self.deliveries.pop() else {
                return false;
            };
            if d.at > end {
                self.deliveries.push(Reverse(d));
                return false;
            }
            self.now = self.now.max(d.at);
            let (to, from) = (&self.nodes[d.to], &self.nodes[d.from]);
            if to.alive && to.group == from.group {
                let (from, now) = (from.addr, self.now);
                let node = &mut self.nodes[d.to];
                match node.subnet {
                    Some(_) => {
                        let via = Via::new(SIM_INTERFACE, 1, node.addr.ip());
                        node.protocol
                            .handle_datagram_via(now, from, Some(&via), &d.payload)
                    }
                    None => node.protocol.handle_datagram(now, from, &d.payload),
                }
                self.delivered += 1;
                self.after(d.to);
            }
        } else {
            let Some(Reverse((at, i))) = self.timers.pop() else {
                return false;
            };
            if at > end {
                self.timers.push(Reverse((at, i)));
                return false;
            }
            self.now = self.now.max(at);
            self.nodes[i].timer = None;
            if self.nodes[i].alive {
                let now = self.now;
                self.nodes[i].protocol.handle_timeout(now);
                self.after(i);
            }
        }
        true
    }

    /// Sends `transmit` from node `i` now, as if its protocol had queued
    /// it: for hand-made datagrams (a forged packet, a unicast probe).
    ///
    /// ```
    /// use shoal::protocol::{Destination, Transmit};
    /// use shoal::sim::SimNet;
    ///
    /// let mut net = SimNet::new(1);
    /// let a = net.add_node(shoal::Config::builder().build().unwrap());
    /// let b = net.add_node(shoal::Config::builder().build().unwrap());
    /// let before = net.node(b).protocol.stats().dropped.not_wrapped;
    /// let to = Destination::Peer(net.node(b).addr);
    /// net.send(a, Transmit { destination: to, payload: vec![b'{'; 64] });
    /// net.run_for(std::time::Duration::from_millis(1));
    /// assert_eq!(net.node(b).protocol.stats().dropped.not_wrapped, before + 1);
    /// ```
    pub fn send(&mut self, i: usize, transmit: Transmit) {
        self.schedule(i, transmit);
    }

    /// Schedules node `i`'s transmits, records its events, re-arms its timer.
    fn after(&mut self, i: usize) {
        let elapsed = self.now - self.start;
        while let Some(event) = self.nodes[i].protocol.poll_event() {
            self.nodes[i].events.push((elapsed, event));
        }
        while let Some(event) = self.nodes[i].protocol.poll_registry_event() {
            self.nodes[i].registry_events.push((elapsed, event));
        }
        while let Some(transmit) = self.nodes[i].protocol.poll_transmit() {
            self.schedule(i, transmit);
        }
        if self.nodes[i].alive {
            let next = self.nodes[i].protocol.poll_timeout();
            if next != self.nodes[i].timer {
                self.nodes[i].timer = next;
                if let Some(at) = next {
                    self.timers.push(Reverse((at, i)));
                }
            }
        }
    }

    /// Queues one delivery of `transmit` per node it is addressed to.
    fn schedule(&mut self, i: usize, transmit: Transmit) {
        let (sender, subnet) = (self.nodes[i].addr, self.nodes[i].subnet);
        {
            let payload: Arc<[u8]> = transmit.payload.into();
            for to in 0..self.nodes.len() {
                let receiver = self.nodes[to].addr;
                let addressed = match transmit.destination {
                    // A broadcast or multicast reaches every node on the
                    // port and the subnet, the sender included (it loops
                    // back); a router does not forward it.
                    Destination::Cluster => {
                        receiver.port() == sender.port() && self.nodes[to].subnet == subnet
                    }
                    Destination::Peer(addr) => receiver == addr,
                };
                if !addressed || !self.nodes[to].alive || self.rng.gen::<f64>() < self.loss {
                    continue;
                }
                let (lo, hi) = self.latency;
                let latency = if hi > lo {
                    self.rng.gen_range(lo..hi)
                } else {
                    lo
                };
                self.seq += 1;
                self.deliveries.push(Reverse(Delivery {
                    at: self.now + latency,
                    seq: self.seq,
                    to,
                    from: i,
                    payload: payload.clone(),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_is_everyone_on_the_port_and_a_peer_is_one_address() {
        let mut net = SimNet::new(3);
        let config = |port| Config::builder().port(port).build().unwrap();
        let (a, b, c) = (
            net.add_node(config(1000)),
            net.add_node(config(1000)),
            net.add_node(config(2000)),
        );
        net.run_for(Duration::from_secs(3));
        let peers = |net: &SimNet, i: usize| net.node(i).protocol.peers().count();
        assert_eq!((peers(&net, a), peers(&net, b), peers(&net, c)), (1, 1, 0));
        // Two clusters, each with its own master.
        let masters = net.masters();
        assert_eq!(masters.len(), 2, "{masters:?}");
        assert!(masters.contains(&c));

        // A unicast datagram reaches its addressee only, whatever its port.
        let junk = |to| Transmit {
            destination: Destination::Peer(to),
            payload: vec![b'{'; 64],
        };
        let before: Vec<u64> = (0..3)
            .map(|i| net.node(i).protocol.stats().dropped.not_wrapped)
            .collect();
        let to_c = net.node(c).addr;
        net.send(a, junk(to_c));
        net.run_for(Duration::from_millis(1));
        let after: Vec<u64> = (0..3)
            .map(|i| net.node(i).protocol.stats().dropped.not_wrapped)
            .collect();
        assert_eq!(
            after,
            vec![before[0], before[1], before[2] + 1],
            "only node c heard it"
        );
    }
}
