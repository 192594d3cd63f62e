//! What a node tells its user.

use std::net::SocketAddr;

use crate::membership::{NodeId, Peer};
use crate::wire::DecodeError;

/// The local node's own election state.
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
}

/// A message received on a channel.
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
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A node was heard from for the first time.
    Added(Peer),
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
