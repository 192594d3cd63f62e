//! What a node tells its user.

use std::fmt;
use std::net::SocketAddr;

use crate::crypto::key::KeyId;
use crate::membership::{write_id, write_quoted, NodeId, Peer, Weight};
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

/// One line for a log: `this node`, its id (shortened as [`Peer`]'s
/// `Display` explains; `{:#}` prints it whole), `master` when it is one,
/// `not eligible` when it may not become one, its weight, and the epoch.
///
/// ```
/// use std::time::Duration;
/// use shoal::sim::SimNet;
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().weight(0.9).build().unwrap());
/// net.run_for(Duration::from_secs(3));
/// let me = net.node(a).protocol.local();
/// let line = me.to_string();
/// assert!(line.starts_with(&format!("this node {}…, master, weight 0.90, epoch ", &me.id.as_str()[..8])), "{line}");
/// ```
impl fmt::Display for LocalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this node ")?;
        write_id(f, &self.id)?;
        if self.is_master {
            f.write_str(", master")?;
        }
        if !self.is_master_eligible {
            f.write_str(", not eligible")?;
        }
        write!(f, ", weight {}", Weight(self.weight))?;
        if let Some(epoch) = &self.epoch {
            write!(f, ", epoch {}", epoch.n)?;
        }
        Ok(())
    }
}

/// One line for a log: the channel, the sender's id (shortened as
/// [`Peer`]'s `Display` explains; `{:#}` prints it whole) and address. The
/// data is left out: it may be large, or not for a log.
///
/// ```
/// # use std::time::Duration;
/// # use shoal::{sim::SimNet, Event};
/// # let mut net = SimNet::new(1);
/// # let a = net.add_node(shoal::Config::builder().build().unwrap());
/// # let b = net.add_node(shoal::Config::builder().build().unwrap());
/// # net.protocol_mut(b).join("jobs").unwrap();
/// # let now = net.now();
/// # net.protocol_mut(a).send(now, "jobs", &serde_json::json!(1)).unwrap();
/// # net.poll(a);
/// # net.run_for(Duration::from_millis(10));
/// # let m = net.node(b).events.iter().find_map(|(_, e)| match e {
/// #     Event::Message(m) => Some(m.clone()),
/// #     _ => None,
/// # }).unwrap();
/// // m: the message node b received on "jobs" from node a
/// assert_eq!(format!("{m:#}"), format!("message on \"jobs\" from {} at {}", m.from, m.addr));
/// ```
impl fmt::Display for ChannelMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message on ")?;
        write_quoted(f, &self.channel)?;
        f.write_str(" from ")?;
        write_id(f, &self.from)?;
        write!(f, " at {}", self.addr)
    }
}

/// Something that happened on the network or to this node.
///
/// It prints as one line for a log (see its `Display`), and in full with
/// `{:?}`.
///
/// ```
/// fn describe(event: &shoal::Event) -> String {
///     use shoal::{Event::*, Removal};
///     match event {
///         Added(peer) => format!("{} joined from {}", peer.id, peer.addr),
///         Removed(peer, Removal::Goodbye) => format!("{} left", peer.id),
///         Removed(peer, _) => format!("{} went silent", peer.id),
///         Master(peer) => format!("{} is master", peer.id),
///         Promotion(_) => "we are master".into(),
///         Demotion(_) => "we stepped down".into(),
///         Lagged(n) => format!("missed {n} events"),
///         other => other.to_string(),
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
    /// A node was removed from the table, for the [`Removal`] reason given.
    Removed(Peer, Removal),
    /// A node became master (or was first heard of as one).
    Master(Peer),
    /// This node became master.
    Promotion(LocalState),
    /// This node stopped being master (or gave up eligibility).
    Demotion(LocalState),
    /// A message on a joined channel. The driver routes these to the
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
    /// Packets from this address fail authentication, so this node cannot
    /// hear whoever sends them: most often a node with another key (or
    /// none, or ours but not in secure mode). Reported whatever
    /// `ignore_data_errors` says, the first time at once, then at most
    /// once per 10 s per address while they keep coming; the driver
    /// also logs each with `tracing::warn!`. Counted in
    /// [`Drops`](crate::Drops) (`unknown_key`, `auth_failed`,
    /// `unauthenticated`, `decrypt`) either way.
    ///
    /// These packets are reported: sealed under a key this node does not
    /// hold; sealed but forged or corrupted; sealed while this node holds
    /// no key or is in the legacy mode; plaintext while it accepts only
    /// sealed packets; legacy-mode packets that do not decrypt. (A
    /// plaintext node cannot tell a legacy-encrypted packet from garbage,
    /// so those are only counted.) The source address of a datagram is
    /// easily forged: treat it as a lead, not a proof. At most 256
    /// addresses are reported per 10 s, so a flood from forged addresses
    /// costs bounded memory and events.
    ///
    /// ```
    /// use std::time::Duration;
    /// use shoal::{sim::SimNet, Config, Event, Key};
    ///
    /// let mut net = SimNet::new(1);
    /// let a = net.add_node(Config::builder().secret_key(Key::from_bytes([1; 32])).build()?);
    /// let b = net.add_node(Config::builder().secret_key(Key::from_bytes([2; 32])).build()?);
    /// net.run_for(Duration::from_secs(3));
    /// let heard = net.node(a).events.iter().find_map(|(_, e)| match e {
    ///     Event::Unauthenticated { from, key_id, .. } => Some((*from, *key_id)),
    ///     _ => None,
    /// });
    /// assert_eq!(heard, Some((net.node(b).addr, Some(Key::from_bytes([2; 32]).id()))));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    Unauthenticated {
        /// Where the packets come from (as the datagrams say).
        from: SocketAddr,
        /// The key the latest one was sealed under; `None` when it was
        /// not sealed.
        key_id: Option<KeyId>,
        /// Packets from this address dropped since its previous report,
        /// this one included.
        dropped: u64,
        /// Why the latest one was refused.
        error: DecodeError,
    },
}

/// Why a node was removed ([`Event::Removed`]).
///
/// ```
/// assert_eq!(shoal::Removal::Timeout.to_string(), "timed out");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Removal {
    /// It said goodbye: it shut down (or its last handle was dropped).
    /// Peers remove it at once, and if it was master, a successor takes
    /// over without waiting for the master timeout.
    Goodbye,
    /// It went silent for longer than its deadline (the node timeout, or
    /// longer for a peer that says hello less often): it crashed, lost the
    /// network, or left without a goodbye.
    Timeout,
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Removal::Goodbye => "said goodbye",
            Removal::Timeout => "timed out",
        })
    }
}

/// One line for a log, starting with what happened:
///
/// - `added 3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90)`, and
///   likewise `updated` and `master`, each with the peer as its
///   [`Display`](Peer#impl-Display-for-Peer) prints it, and `removed`, with
///   the reason after the peer (`…: timed out`, `…: said goodbye`);
/// - `promotion (this node 77aa0011…, master, weight 0.90, epoch 4)`, and
///   likewise `demotion`;
/// - `message on "jobs" from 3f2a1b9c… at 10.0.0.2:12345` (without the data);
/// - `data error from 10.0.0.9:5000: checksum mismatch`;
/// - `unauthenticated: 3 packets from 10.0.0.9:5000 dropped (key id
///   1a2b3c4d): sealed packet refused: unknown key 1a2b3c4d`, or `(not
///   sealed)` for a packet without a key id;
/// - `lagged: 12 events lost`.
///
/// Ids longer than 12 characters (every shoal and node-discovery id, 32 hex
/// digits) show as their first 8 and `…`: enough to tell a LAN's nodes
/// apart, and a prefix to grep the whole id with. The alternate form,
/// `{:#}`, prints them whole. Text that came from the network is escaped,
/// so that every event stays on one line.
///
/// ```
/// assert_eq!(shoal::Event::Lagged(3).to_string(), "lagged: 3 events lost");
/// ```
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner values are handed this formatter, so `{:#}` reaches the ids.
        let (what, peer) = match self {
            Event::Added(peer) => ("added", peer),
            Event::Updated(peer) => ("updated", peer),
            Event::Removed(peer, why) => {
                f.write_str("removed ")?;
                fmt::Display::fmt(peer, f)?;
                return write!(f, ": {why}");
            }
            Event::Master(peer) => ("master", peer),
            Event::Promotion(me) => return write_local(f, "promotion", me),
            Event::Demotion(me) => return write_local(f, "demotion", me),
            Event::Message(message) => return fmt::Display::fmt(message, f),
            Event::DataError { from, error } => {
                return write!(f, "data error from {from}: {error}")
            }
            Event::Lagged(n) => return write_lagged(f, *n),
            Event::Unauthenticated {
                from,
                key_id,
                dropped,
                error,
            } => {
                let s = if *dropped == 1 { "" } else { "s" };
                write!(
                    f,
                    "unauthenticated: {dropped} packet{s} from {from} dropped "
                )?;
                return match key_id {
                    Some(id) => write!(f, "(key id {id}): {error}"),
                    None => write!(f, "(not sealed): {error}"),
                };
            }
        };
        write!(f, "{what} ")?;
        fmt::Display::fmt(peer, f)
    }
}

/// `promotion (this node …)`: shared with the service layer's events.
pub(crate) fn write_local(f: &mut fmt::Formatter<'_>, what: &str, me: &LocalState) -> fmt::Result {
    write!(f, "{what} (")?;
    fmt::Display::fmt(me, f)?;
    f.write_str(")")
}

/// `lagged: 12 events lost`: shared with the service layer's events.
pub(crate) fn write_lagged(f: &mut fmt::Formatter<'_>, n: u64) -> fmt::Result {
    let s = if n == 1 { "" } else { "s" };
    write!(f, "lagged: {n} event{s} lost")
}

#[cfg(test)]
mod display_tests {
    use super::*;
    use crate::membership::display_tests::{peer, LONG_ID};
    use crate::wire::DecodeError;

    fn me(master: bool, eligible: bool, epoch: Option<u64>) -> LocalState {
        LocalState {
            id: NodeId::new("77aa0011bb22cc33dd44ee55ff667788"),
            is_master: master,
            is_master_eligible: eligible,
            weight: 0.9,
            info: None,
            epoch: epoch.map(|n| crate::Epoch {
                n,
                master: NodeId::new(LONG_ID),
            }),
        }
    }

    #[test]
    fn every_event_prints_on_one_line() {
        let p = || peer(LONG_ID, false, true, 0.9);
        let m = || peer(LONG_ID, true, true, 0.9);
        let cases = [
            (
                Event::Added(p()),
                "added 3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90)",
            ),
            (
                Event::Updated(p()),
                "updated 3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90)",
            ),
            (
                Event::Removed(p(), Removal::Timeout),
                "removed 3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90): timed out",
            ),
            (
                Event::Removed(p(), Removal::Goodbye),
                "removed 3f2a1b9c… (web-1 at 10.0.0.2:12345, weight 0.90): said goodbye",
            ),
            (
                Event::Master(m()),
                "master 3f2a1b9c… (web-1 at 10.0.0.2:12345, master, weight 0.90)",
            ),
            (
                Event::Promotion(me(true, true, Some(4))),
                "promotion (this node 77aa0011…, master, weight 0.90, epoch 4)",
            ),
            (
                Event::Demotion(me(false, false, None)),
                "demotion (this node 77aa0011…, not eligible, weight 0.90)",
            ),
            (
                Event::Message(ChannelMessage {
                    channel: "jobs".into(),
                    data: serde_json::json!({"secret": 1}),
                    from: NodeId::new(LONG_ID),
                    addr: "10.0.0.2:12345".parse().unwrap(),
                }),
                "message on \"jobs\" from 3f2a1b9c… at 10.0.0.2:12345",
            ),
            (
                Event::DataError {
                    from: "10.0.0.9:5000".parse().unwrap(),
                    error: DecodeError::Checksum,
                },
                "data error from 10.0.0.9:5000: checksum mismatch",
            ),
            (Event::Lagged(12), "lagged: 12 events lost"),
            (Event::Lagged(1), "lagged: 1 event lost"),
            (
                Event::Unauthenticated {
                    from: "10.0.0.9:5000".parse().unwrap(),
                    key_id: Some(KeyId([0x1a, 0x2b, 0x3c, 0x4d])),
                    dropped: 3,
                    error: DecodeError::Secure(crate::SecureError::UnknownKey(KeyId([
                        0x1a, 0x2b, 0x3c, 0x4d,
                    ]))),
                },
                "unauthenticated: 3 packets from 10.0.0.9:5000 dropped (key id 1a2b3c4d): \
                 sealed packet refused: unknown key 1a2b3c4d",
            ),
            (
                Event::Unauthenticated {
                    from: "10.0.0.9:5000".parse().unwrap(),
                    key_id: None,
                    dropped: 1,
                    error: DecodeError::Unauthenticated,
                },
                "unauthenticated: 1 packet from 10.0.0.9:5000 dropped (not sealed): \
                 plaintext packet refused in secure mode",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(event.to_string(), line);
        }
    }

    #[test]
    fn the_alternate_form_prints_ids_whole_and_names_stay_quoted() {
        assert_eq!(
            format!("{:#}", Event::Added(peer(LONG_ID, false, true, 0.9))),
            format!("added {LONG_ID} (web-1 at 10.0.0.2:12345, weight 0.90)")
        );
        assert_eq!(
            format!("{:#}", Event::Promotion(me(true, true, Some(4)))),
            "promotion (this node 77aa0011bb22cc33dd44ee55ff667788, master, weight 0.90, epoch 4)"
        );
        let message = ChannelMessage {
            channel: "a\" b\\\nc".into(),
            data: serde_json::Value::Null,
            from: NodeId::new(LONG_ID),
            addr: "10.0.0.2:12345".parse().unwrap(),
        };
        assert_eq!(
            format!("{message:#}"),
            format!("message on \"a\\\" b\\\\\\nc\" from {LONG_ID} at 10.0.0.2:12345")
        );
    }
}
