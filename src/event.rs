//! What a node tells its user.

use std::net::SocketAddr;

use crate::membership::{NodeId, Peer};
use crate::wire::DecodeError;

/// The local node's own election state.
///
/// ```
/// use std::time::Duration;
/// use shoal::sim::SimNet;
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().weight(0.9).build().unwrap());
/// let b = net.add_node(shoal::Config::builder().weight(0.1).build().unwrap());
/// net.run_for(Duration::from_secs(3));
/// let me = net.node(a).protocol.local();
/// assert!(me.is_master && me.is_master_eligible);
/// assert_eq!(me.weight, 0.9);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LocalState {
    /// Our instance id.
    pub id: NodeId,
    /// We are a master.
    pub is_master: bool,
    /// We may become a master.
    pub is_master_eligible: bool,
    /// Our election weight.
    pub weight: f64,
    /// What we advertise.
    pub info: Option<serde_json::Value>,
    /// The highest election epoch we have seen (set by our own promotion
    /// when we are master).
    pub epoch: Option<crate::Epoch>,
}

/// A message received on a channel.
///
/// ```
/// use std::time::Duration;
/// use shoal::{sim::SimNet, Event};
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().build().unwrap());
/// let b = net.add_node(shoal::Config::builder().build().unwrap());
/// net.protocol_mut(b).join("chat").unwrap();
/// let now = net.now();
/// net.protocol_mut(a).send(now, "chat", &serde_json::json!({"text": "hi"})).unwrap();
/// net.poll(a);
/// net.run_for(Duration::from_millis(10));
/// let got = net.node(b).events.iter().find_map(|(_, e)| match e {
///     Event::Message(m) => Some(m.clone()),
///     _ => None,
/// });
/// let m = got.expect("delivered");
/// assert_eq!((m.channel.as_str(), &m.from), ("chat", net.node(a).protocol.id()));
/// assert_eq!(m.data["text"], "hi");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChannelMessage {
    /// The channel name (the envelope's `event`).
    pub channel: String,
    /// The message's JSON value.
    pub data: serde_json::Value,
    /// The sender's instance id.
    pub from: NodeId,
    /// The sender's address.
    pub addr: SocketAddr,
}

/// Something that happened on the network or to this node.
///
/// ```
/// fn describe(event: &shoal::Event) -> String {
///     use shoal::Event::*;
///     match event {
///         Added(peer) => format!("{} joined from {}", peer.id, peer.addr),
///         Removed(peer) => format!("{} left", peer.id),
///         Master(peer) => format!("{} is master", peer.id),
///         Promotion(_) => "we are master".into(),
///         Demotion(_) => "we stepped down".into(),
///         Lagged(n) => format!("missed {n} events"),
///         other => format!("{other:?}"),
///     }
/// }
/// assert_eq!(describe(&shoal::Event::Lagged(3)), "missed 3 events");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A node was heard from for the first time.
    Added(Peer),
    /// A known node changed what it advertises (its `info`).
    Updated(Peer),
    /// A node went silent for longer than the node timeout and was removed.
    Removed(Peer),
    /// A node became master (or was first heard of as one).
    Master(Peer),
    /// This node became master.
    Promotion(LocalState),
    /// This node stopped being master (or gave up eligibility).
    Demotion(LocalState),
    /// A message on a joined channel. The tokio driver routes these to the
    /// channel's subscriptions, not to the event stream.
    Message(ChannelMessage),
    /// An undecodable packet, reported only when `ignore_data_errors` is false.
    DataError {
        /// Where it came from.
        from: SocketAddr,
        /// What was wrong with it.
        error: DecodeError,
    },
    /// This event stream fell behind and lost this many events (the oldest ones).
    Lagged(u64),
}
