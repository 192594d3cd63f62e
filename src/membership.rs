//! The table of live peers: who we have heard from, what they said, and when.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::envelope::Hello;

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

/// What we know of one peer, from its latest hello.
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
/// assert_eq!(&peer.id, net.node(a).protocol.id());
/// assert!(peer.is_master && peer.weight == 0.9);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Peer {
    /// Instance id (`iid`).
    pub id: NodeId,
    /// Process id (`pid`).
    pub pid: String,
    /// The peer's host name, as it reported it.
    pub host_name: String,
    /// Source address and port of its datagrams.
    pub addr: SocketAddr,
    /// It says it is a master.
    pub is_master: bool,
    /// It may become a master.
    pub is_master_eligible: bool,
    /// Its election weight.
    pub weight: f64,
    /// What it advertises, if anything.
    pub info: Option<serde_json::Value>,
    /// When we last heard its hello (monotonic).
    pub last_seen: Instant,
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
    },
    /// A new node, refused because the table is full.
    Refused,
}

/// The peer table.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    peers: HashMap<NodeId, Peer>,
    max_nodes: usize,
}

impl Membership {
    pub(crate) fn new(max_nodes: usize) -> Self {
        Membership {
            peers: HashMap::new(),
            max_nodes,
        }
    }

    /// Records a hello from `id` at `from`.
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        id: &str,
        pid: &str,
        host_name: &str,
        from: SocketAddr,
        hello: Hello,
    ) -> (Observed, Option<&Peer>) {
        // Look up by &str first so a hello from a known node allocates nothing for its id.
        // (contains_key first: returning a get_mut borrow from a conditional
        // branch would keep the table borrowed in the other one.)
        if self.peers.contains_key(id) {
            let Some(peer) = self.peers.get_mut(id) else {
                return (Observed::Refused, None);
            };
            let was_master = peer.is_master;
            let info_changed = peer.info != hello.info;
            peer.addr = from;
            peer.is_master = hello.is_master;
            peer.is_master_eligible = hello.is_master_eligible;
            peer.weight = hello.weight;
            peer.info = hello.info;
            peer.last_seen = now;
            if peer.pid != pid {
                peer.pid = pid.to_owned();
            }
            if peer.host_name != host_name {
                peer.host_name = host_name.to_owned();
            }
            return (
                Observed::Known {
                    was_master,
                    info_changed,
                },
                Some(peer),
            );
        }
        if self.peers.len() >= self.max_nodes {
            return (Observed::Refused, None);
        }
        let id = NodeId::new(id);
        let peer = Peer {
            id: id.clone(),
            pid: pid.to_owned(),
            host_name: host_name.to_owned(),
            addr: from,
            is_master: hello.is_master,
            is_master_eligible: hello.is_master_eligible,
            weight: hello.weight,
            info: hello.info,
            last_seen: now,
        };
        let peer = self.peers.entry(id).or_insert(peer);
        (Observed::New, Some(peer))
    }

    /// Removes every peer silent for longer than `timeout`, returning them.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Peer> {
        let mut gone = Vec::new();
        self.peers.retain(|_, peer| {
            if now.saturating_duration_since(peer.last_seen) > timeout {
                gone.push(peer.clone());
                false
            } else {
                true
            }
        });
        // HashMap order is random; keep event order deterministic.
        gone.sort_by(|a, b| a.id.cmp(&b.id));
        gone
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(master: bool, weight: f64) -> Hello {
        Hello {
            is_master: master,
            is_master_eligible: true,
            weight,
            address: "127.0.0.1".into(),
            info: None,
        }
    }

    #[test]
    fn observe_new_then_known_then_expire() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = Membership::new(10);
        let (o, _) = m.observe(t0, "a", "p", "h", addr, hello(false, 0.5));
        assert_eq!(o, Observed::New);
        let (o, p) = m.observe(
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
                info_changed: false
            }
        );
        assert!(p.unwrap().is_master);
        assert!(m
            .expire(t0 + Duration::from_millis(2500), Duration::from_secs(2))
            .is_empty());
        let gone = m.expire(t0 + Duration::from_millis(2501), Duration::from_secs(2));
        assert_eq!(gone.len(), 1);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn full_table_refuses_new_but_keeps_known() {
        let t0 = Instant::now();
        let addr: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let mut m = Membership::new(1);
        m.observe(t0, "a", "p", "h", addr, hello(false, 0.5));
        let (o, _) = m.observe(t0, "b", "p", "h", addr, hello(false, 0.5));
        assert_eq!(o, Observed::Refused);
        let mut with_info = hello(false, 0.6);
        with_info.info = Some(serde_json::json!({"name": "x"}));
        let (o, _) = m.observe(t0, "a", "p", "h", addr, with_info);
        assert_eq!(
            o,
            Observed::Known {
                was_master: false,
                info_changed: true
            }
        );
        assert_eq!(m.get("a").unwrap().weight, 0.6);
    }
}
