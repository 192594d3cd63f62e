//! The sans-IO protocol core: a state machine that takes `(now, input)` and
//! queues what to transmit and which events to emit. No sockets, no clock
//! reads, no async: the driver ([`crate::Discovery`]) feeds it, and
//! tests drive thousands of nodes through it in simulated time.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shoal::protocol::{Protocol, Sender};
//!
//! let config = shoal::Config::builder().weight(0.9).build().unwrap();
//! let sender = Sender { pid: "p".repeat(32), iid: "a".repeat(32), host_name: "host".into() };
//! let t0 = Instant::now();
//! let mut node = Protocol::new(&config, sender, t0, 7);
//!
//! // The first timeout is due at once: the node says hello as soon as it starts.
//! assert_eq!(node.poll_timeout(), Some(t0));
//! node.handle_timeout(t0);
//! let hello = node.poll_transmit().expect("a hello");
//! assert!(hello.payload.starts_with(b"WRAP"));
//!
//! // Alone after one check interval, it promotes itself.
//! node.handle_timeout(t0 + Duration::from_secs(2));
//! assert!(node.local().is_master);
//! ```

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::config::{Config, Encryption, Ignore};
use crate::crypto::key::{Key, KeyId};
use crate::dedupe::{Check, PathDedupe};
use crate::election::{self, Rank};
use crate::event::{ChannelMessage, Event, LocalState, Removal};
use crate::interface::{Interface, Via};
use crate::membership::{Epoch, Membership, NodeId, Observed, Peer, Timeouts};
use crate::packet::{self, Decoded, Incoming, PacketCodec};
use crate::registry::replica::{self, Refusal, Replica};
use crate::registry::{Filter, Registration, RegistryError, RegistryEvent};
use crate::stats::Stats;
use crate::unauthenticated::UnauthenticatedSenders;
use crate::unicast::Unicast;
pub use crate::wire::envelope::Sender;
use crate::wire::envelope::{self, Hello, HelloRef};
use crate::wire::fast_hello;
use crate::wire::{DecodeError, EnvelopeError};
use crate::Error;
use crate::SecureError;

/// Event names that cannot be used as channels: node-discovery's six, and
/// shoal's goodbye and registry.
pub const RESERVED_CHANNELS: [&str; 8] = [
    "promotion",
    "demotion",
    "added",
    "removed",
    "master",
    "hello",
    GOODBYE,
    replica::CHANNEL,
];

/// The event a leaving node sends. node-discovery has no listener for it and
/// ignores it.
pub const GOODBYE: &str = "shoal.goodbye";

/// An early hello (answering a newcomer) waits a random 0..this, so that
/// peers hearing the same newcomer do not all answer in the same instant...
const EARLY_HELLO_JITTER: Duration = Duration::from_millis(5);
/// ...at least this long after the previous early hello, so that newcomers
/// arriving together are answered by one...
const EARLY_HELLO_SPACING: Duration = Duration::from_millis(10);
/// ...and at most `EARLY_HELLO_BURST` go out per `EARLY_HELLO_WINDOW`,
/// whatever the number of newcomers: a few nodes starting one after the
/// other are each answered within milliseconds, while 100 nodes restarting
/// at once cost each node one or two extra hellos, and a stream of
/// newcomers at most 4 per second (the others hear us at our next hello).
const EARLY_HELLO_BURST: usize = 4;
const EARLY_HELLO_WINDOW: Duration = Duration::from_secs(1);

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Who it is for.
    pub destination: Destination,
    /// The datagram: one `WRAP` block or one sealed fragment.
    pub payload: Vec<u8>,
}

/// Who a [`Transmit`] is for. The core says *who*; the driver's transport
/// knows *how* (which sockets, interfaces, broadcast or multicast
/// addresses, or the unicast addresses of known peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination {
    /// Every node of the cluster: the configured broadcast or multicast
    /// address today.
    Cluster,
    /// One peer, at this address.
    Peer(SocketAddr),
}

/// One node's protocol state. See the [module docs](self).
#[derive(Debug)]
pub struct Protocol {
    config: Config,
    sender: Sender,
    id: NodeId,
    /// Our own hello, kept in its wire shape so sending one clones nothing.
    me: Hello,
    peers: Membership,
    /// Framing and protection: whole messages in and out.
    codec: PacketCodec,
    joined: HashSet<String>,
    rng: StdRng,
    next_hello: Instant,
    next_check: Instant,
    /// A hello owed to newcomers, if one is scheduled.
    early_hello: Option<Instant>,
    /// When the latest early hellos went out, at most `EARLY_HELLO_BURST`.
    early_sent: VecDeque<Instant>,
    /// No promotion before this: time to hear the peers after starting.
    promote_after: Instant,
    /// Removed masters, and until when each still counts as one.
    masters_gone: Vec<Instant>,
    /// The highest election epoch seen.
    epoch: Option<Epoch>,
    /// Set by a permanent demotion: never master again.
    permanently_demoted: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Senders whose packets failed authentication, reported lately.
    unauthenticated: UnauthenticatedSenders,
    /// The LAN's registrations, ours included.
    registry: Replica,
    /// Who else gets each datagram for the cluster, by unicast.
    unicast: Unicast,
    /// Copies of one datagram that arrive by two paths.
    dedupe: PathDedupe,
    /// The sender of the hello the datagram being handled carried, if any.
    hello_from: Option<NodeId>,
}

/// Checks a channel name against the reserved names.
pub(crate) fn check_channel(name: &str) -> Result<(), Error> {
    if RESERVED_CHANNELS.contains(&name) {
        return Err(Error::ReservedChannel(name.to_owned()));
    }
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_CHANNEL_LEN {
        "it is longer than 255 bytes"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidChannel {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// Refuses a value holding a number JSON cannot carry: serde_json would
/// send NaN and infinities as `null`. `root` names the value in the error.
pub(crate) fn check_finite<T: Serialize + ?Sized>(root: &str, value: &T) -> Result<(), Error> {
    crate::wire::finite::check(root, value).map_err(|e| Error::NonFiniteNumber {
        path: e.path,
        value: e.value,
    })
}

/// Longest channel name, in bytes: it travels in every message.
const MAX_CHANNEL_LEN: usize = 255;

impl Protocol {
    /// A node that starts at `now`. `seed` drives every random choice
    /// (weight when not configured, message ids), so a simulation is
    /// reproducible; the driver seeds it from the OS.
    pub fn new(config: &Config, sender: Sender, now: Instant, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let weight = config.weight.unwrap_or_else(|| rng.gen::<f64>());
        let sender_iid = sender.iid.clone();
        Protocol {
            id: NodeId::new(&sender.iid),
            codec: PacketCodec::new(config, &sender.iid, now),
            sender,
            me: Hello {
                is_master: false,
                is_master_eligible: config.master_eligible,
                weight,
                address: advertised(config.advertise_addr),
                info: config.info.clone(),
                interval: Some(
                    u64::try_from(config.hello_interval.as_millis()).unwrap_or(u64::MAX),
                ),
                seq: Some(0),
                epoch: None,
                epoch_master: None,
                reg: None,
                peers: None,
            },
            peers: Membership::new(
                config.max_nodes,
                Timeouts {
                    node_timeout: config.node_timeout,
                    missed_hellos: config.missed_hellos,
                    own_interval: config.hello_interval,
                },
            ),
            joined: HashSet::new(),
            rng,
            next_hello: now,
            next_check: now + config.check_interval.max(config.promotion_delay),
            early_hello: None,
            early_sent: VecDeque::with_capacity(EARLY_HELLO_BURST),
            promote_after: now + config.promotion_delay,
            masters_gone: Vec::new(),
            epoch: None,
            permanently_demoted: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            unauthenticated: UnauthenticatedSenders::default(),
            registry: Replica::new(
                NodeId::new(&sender_iid),
                config.registry,
                config.reassembly.max_message,
                now,
            ),
            unicast: Unicast::new(config),
            dedupe: PathDedupe::default(),
            hello_from: None,
            config: config.clone(),
        }
    }

    /// Our instance id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// Our own election state and advertised value.
    pub fn local(&self) -> LocalState {
        LocalState {
            id: self.id.clone(),
            is_master: self.me.is_master,
            is_master_eligible: self.me.is_master_eligible,
            weight: self.me.weight,
            info: self.me.info.clone(),
            epoch: self.epoch.clone(),
        }
    }

    /// The live peers.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    /// One peer, by id.
    pub fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.get(id)
    }

    /// Traffic counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// How many addresses the unauthenticated-packet reports track.
    #[cfg(test)]
    pub(crate) fn unauthenticated_senders(&self) -> usize {
        self.unauthenticated.len()
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Tells the node the wall-clock time (ms since the Unix epoch) at
    /// `now`, for the timestamps of sealed packets. The driver does
    /// this at start; a simulation gives every node the same origin.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.codec.set_wall_clock(now, unix_ms);
        self.registry.set_wall_clock(now, unix_ms);
    }

    /// How packets are protected now (`None`: plaintext only, no key).
    pub fn encryption(&self) -> Option<Encryption> {
        self.codec.mode()
    }

    /// Switches protection at run time, for a rolling enablement (see
    /// [`Encryption`]). Secure modes need a key ([`install_key`](Self::install_key));
    /// the legacy mode needs a configured
    /// [`legacy_key`](crate::ConfigBuilder::legacy_key).
    pub fn set_encryption(&mut self, mode: Option<Encryption>) -> Result<(), Error> {
        self.codec.set_mode(mode)
    }

    /// Adds a key to the keyring: accepted from now on; with no keyring yet,
    /// it becomes the primary (sending) key.
    pub fn install_key(&mut self, key: Key) -> Result<(), Error> {
        self.codec.install_key(key)
    }

    /// Makes an installed key the primary: sealed packets are sent under it.
    pub fn use_key(&mut self, id: KeyId) -> Result<(), Error> {
        self.codec.use_key(id)
    }

    /// Removes a secondary key: packets sealed under it are refused from now on.
    pub fn remove_key(&mut self, id: KeyId) -> Result<(), Error> {
        self.codec.remove_key(id)
    }

    /// The ids of the installed keys, primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.codec.key_ids()
    }

    // ----- inputs -------------------------------------------------------

    /// Feeds one received datagram. A packet that fails authentication is
    /// dropped and, rate-limited per address, reported as
    /// [`Event::Unauthenticated`].
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.handle_datagram_via(now, from, None, datagram)
    }

    /// Feeds one received datagram with where it arrived: the interface and
    /// our local address on it (the driver always knows; see
    /// [`Peer::via`](crate::Peer::via)).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use shoal::protocol::{Protocol, Sender};
    /// # let config = shoal::Config::builder().build().unwrap();
    /// # let sender = Sender { pid: "p".repeat(32), iid: "a".repeat(32), host_name: "h".into() };
    /// let mut node = Protocol::new(&config, sender, Instant::now(), 7);
    /// let via = shoal::Via::new("eth0", 2, "10.0.0.5".parse().unwrap());
    /// node.handle_datagram_via(Instant::now(), "10.0.0.6:12345".parse().unwrap(), Some(&via), b"junk");
    /// assert_eq!(node.stats().dropped.total(), 1);
    /// ```
    pub fn handle_datagram_via(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Option<&Via>,
        datagram: &[u8],
    ) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let fingerprint = match self.dedupe.is_on() {
            false => None,
            true => match self.dedupe.check(now, from, via, datagram) {
                Check::Duplicate(hello_of) => {
                    self.stats.dropped.duplicate += 1;
                    if let Some(id) = hello_of {
                        // Its other path is alive too: keep it if it is the
                        // one the peer is on.
                        self.peers.heard_again(id.as_str(), from, via);
                    }
                    return;
                }
                Check::New(fingerprint) => Some(fingerprint),
            },
        };
        let mut incoming = Incoming::new(from, datagram);
        let mut accepted = false;
        self.hello_from = None;
        while let Some(decoded) = self.codec.decode(now, &mut incoming) {
            match decoded {
                Ok(Decoded::Message { bytes, sealed_by }) => {
                    accepted = true;
                    self.handle_envelope(now, from, via, &bytes, sealed_by);
                    self.codec.recycle(bytes);
                }
                Ok(Decoded::Pending) => accepted = true,
                Ok(Decoded::Own) => self.stats.dropped.own += 1,
                Err(error) => {
                    if matches!(error, DecodeError::Secure(SecureError::Replay)) {
                        // Perhaps the copy of a datagram by a second path.
                        self.dedupe.turn_on();
                    }
                    if let Some(key_id) = self.codec.auth_failure(datagram, &error) {
                        let event = self
                            .unauthenticated
                            .record(now, from, key_id, error.clone());
                        self.events.extend(event);
                    }
                    self.drop_packet(from, error)
                }
            }
        }
        let hello_from = self.hello_from.take();
        if let (true, Some(fingerprint)) = (accepted, fingerprint) {
            // Only what authenticated and decoded: copies of a refused
            // datagram are refused (and counted) again.
            self.dedupe.remember(now, fingerprint, hello_from);
        }
    }

    /// Tells the core which interfaces the driver uses now (after each
    /// rescan): a peer on one of their subnets hears our broadcast or
    /// multicast; any other is reached by unicast.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use shoal::protocol::{Protocol, Sender};
    /// # let config = shoal::Config::builder().build().unwrap();
    /// # let sender = Sender { pid: "p".repeat(32), iid: "a".repeat(32), host_name: "h".into() };
    /// let mut node = Protocol::new(&config, sender, Instant::now(), 7);
    /// node.set_interfaces(Instant::now(), &[shoal::Interface::new("eth0", 2, "10.0.0.5".parse().unwrap(), 24)]);
    /// ```
    ///
    /// Takes effect at the next hello: peers outside every subnet of these
    /// interfaces are sent each hello and each datagram for the cluster by
    /// unicast from then on. Until this is first called, every peer counts
    /// as on the link.
    pub fn set_interfaces(&mut self, now: Instant, interfaces: &[Interface]) {
        let _ = now;
        self.unicast.set_interfaces(interfaces);
        if interfaces.len() > 1 {
            // Copies of one datagram may come by two of them.
            self.dedupe.turn_on();
        }
    }

    /// Tells the core the seeds' addresses (after each resolution of their
    /// names). Literal addresses among [`Config::seeds`] are known from the
    /// start; the driver resolves names and passes every address here.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use shoal::protocol::{Protocol, Sender};
    /// # let config = shoal::Config::builder().build().unwrap();
    /// # let sender = Sender { pid: "p".repeat(32), iid: "a".repeat(32), host_name: "h".into() };
    /// let mut node = Protocol::new(&config, sender, Instant::now(), 7);
    /// node.set_seeds(Instant::now(), &["10.0.1.7:12345".parse().unwrap()]);
    /// ```
    ///
    /// The list replaces the previous one. A seed not in it before gets a
    /// hello within milliseconds (an early hello, subject to the same
    /// spacing and burst limit as those that answer newcomers), not at the
    /// next interval.
    pub fn set_seeds(&mut self, now: Instant, seeds: &[SocketAddr]) {
        if self.unicast.set_seeds(seeds) {
            self.schedule_early_hello(now);
        }
    }

    /// Runs whatever timers are due at `now`: peer deadlines, the election
    /// check, hellos, expiry of incomplete messages. Call it when
    /// [`poll_timeout`](Self::poll_timeout) passes.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
        self.registry.handle_timeout(now, &mut self.stats);
        self.flush_registry(now);
        // Check before hello: a promotion says hello itself, and one hello
        // carrying the new state beats two a network could deliver out of order.
        if now >= self.next_check {
            self.check(now);
            self.next_check = next_tick(self.next_check, self.config.check_interval, now);
        } else if self.masters_gone.iter().any(|until| *until <= now) {
            // A removed master stops counting: check without waiting for the tick.
            self.check(now);
        }
        if self.early_hello.is_some_and(|at| now >= at) {
            if self.early_sent.len() >= EARLY_HELLO_BURST {
                self.early_sent.pop_front();
            }
            self.early_sent.push_back(now);
            self.send_hello(now);
        } else if now >= self.next_hello {
            self.send_hello(now);
        }
        let mut expired = Vec::new(); // allocates only when something expired
        self.codec.expire(now, |error| expired.push(error));
        for error in expired {
            self.drop_error(None, error);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.early_hello,
            self.peers.next_deadline(),
            self.codec.next_deadline(),
            self.registry.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .chain(self.masters_gone.iter().copied())
        .chain([self.next_hello, self.next_check])
        .min()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- commands -----------------------------------------------------

    /// Sets the value carried by every later hello, and says hello at once
    /// so peers learn it without waiting for the next interval. A value whose
    /// hello would exceed the maximum message size is refused, and the
    /// previous value stays.
    ///
    /// A [`serde_json::Value`] holds no NaN or infinity: building one
    /// (`json!`, `to_value`) has already turned them into `null`. To have
    /// them refused, advertise through
    /// [`Discovery::advertise`](crate::Discovery::advertise), which takes
    /// any `Serialize` value and checks it first.
    pub fn advertise(&mut self, now: Instant, info: serde_json::Value) -> Result<(), Error> {
        if self.me.info.as_ref() == Some(&info) {
            return Ok(());
        }
        let previous = self.me.info.replace(info);
        let said = self.say_hello(now);
        if said.is_err() {
            self.me.info = previous;
        }
        said
    }

    /// Makes this node a master (and eligible, as node-discovery's
    /// `promote` does), says hello at once, and emits [`Event::Promotion`].
    /// Does nothing if it already is master. A node that was demoted
    /// permanently ([`demote`](Self::demote) with `permanent`) stays
    /// demoted: this returns [`Error::PermanentlyDemoted`] and changes
    /// nothing.
    pub fn promote(&mut self, now: Instant) -> Result<(), Error> {
        if self.permanently_demoted {
            return Err(Error::PermanentlyDemoted);
        }
        self.become_master(now);
        Ok(())
    }

    fn become_master(&mut self, now: Instant) {
        if self.me.is_master {
            return;
        }
        self.me.is_master = true;
        self.me.is_master_eligible = true;
        self.claim_epoch();
        self.events.push_back(Event::Promotion(self.local()));
        self.send_hello(now);
    }

    /// Takes a new epoch, one above the highest seen, in our name.
    fn claim_epoch(&mut self) {
        let n = self.epoch.as_ref().map_or(0, |e| e.n).saturating_add(1);
        self.adopt_epoch(Epoch {
            n,
            master: self.id.clone(),
        });
    }

    /// Gives up mastership; with `permanent`, eligibility too, for good:
    /// neither the election nor [`promote`](Self::promote) makes this node
    /// master again. Says hello at once and emits [`Event::Demotion`] if
    /// anything changed.
    pub fn demote(&mut self, now: Instant, permanent: bool) {
        self.permanently_demoted |= permanent;
        let eligible = self.me.is_master_eligible && !permanent;
        if !self.me.is_master && eligible == self.me.is_master_eligible {
            return;
        }
        self.me.is_master = false;
        self.me.is_master_eligible = eligible;
        self.events.push_back(Event::Demotion(self.local()));
        self.send_hello(now);
    }

    /// Starts delivering messages on `channel` as [`Event::Message`].
    pub fn join(&mut self, channel: &str) -> Result<(), Error> {
        check_channel(channel)?;
        self.joined.insert(channel.to_owned());
        Ok(())
    }

    /// Stops delivering messages on `channel`.
    pub fn leave(&mut self, channel: &str) {
        self.joined.remove(channel);
    }

    /// Says goodbye: peers remove this node at once instead of waiting for
    /// its deadline, and a master's successor takes over without waiting for
    /// the master timeout. The driver sends it on shutdown and drop.
    pub fn goodbye(&mut self, now: Instant) {
        if let Ok(json) = envelope::encode(GOODBYE, &serde_json::json!({}), &self.sender) {
            let _ = self.transmit(now, json);
        }
    }

    /// Broadcasts `data` on `channel`. A NaN or infinite number anywhere in
    /// `data` is refused ([`Error::NonFiniteNumber`]): JSON cannot carry it.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        now: Instant,
        channel: &str,
        data: &T,
    ) -> Result<(), Error> {
        check_channel(channel)?;
        check_finite("data", data)?;
        let json = envelope::encode(channel, data, &self.sender).map_err(Error::Encode)?;
        self.transmit(now, json)
    }

    // ----- the registry -------------------------------------------------

    /// Registers `registration`, owned by this node, on every node of the
    /// cluster, for `ttl` unless refreshed ([`refresh`](Self::refresh)) or
    /// registered again. Registering an id again refreshes it, and
    /// replaces its metadata if that changed. See [`crate::registry`].
    pub fn register(
        &mut self,
        now: Instant,
        registration: Registration,
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        self.registry.register(now, registration, ttl)?;
        self.flush_registry(now);
        Ok(())
    }

    /// Starts the time to live of our registration `id` again.
    pub fn refresh(&mut self, now: Instant, id: &str) -> Result<(), RegistryError> {
        self.registry.refresh(now, id)
    }

    /// Removes our registration `id` from every node.
    pub fn deregister(&mut self, now: Instant, id: &str) -> Result<(), RegistryError> {
        self.registry.deregister(id)?;
        self.flush_registry(now);
        Ok(())
    }

    /// The live registrations `filter` covers, one per id, in id order.
    pub fn registrations(&self, filter: &Filter) -> Vec<Registration> {
        self.registry.registrations(filter)
    }

    /// One live registration, by id (`/name/version/host/port`).
    pub fn registration(&self, id: &str) -> Option<Registration> {
        self.registry.registration(id)
    }

    /// The node whose copy of registration `id` counts: its owner (this
    /// node's id for our own).
    #[cfg(feature = "runtime")]
    pub(crate) fn registration_owner(&self, id: &str) -> Option<&NodeId> {
        self.registry.owner(id)
    }

    /// How many registrations (ids) are live.
    pub fn registration_count(&self) -> usize {
        self.registry.len()
    }

    /// The next registry event, if any.
    pub fn poll_registry_event(&mut self) -> Option<RegistryEvent> {
        self.registry.poll_event()
    }

    /// Sends what the registry queued: deltas to the cluster, pulls and
    /// repairs to one peer. Says hello too if our table's version moved,
    /// so that a node that missed the delta pulls without waiting.
    fn flush_registry(&mut self, now: Instant) {
        while let Some(out) = self.registry.poll_outgoing() {
            let json = match envelope::encode(replica::CHANNEL, &out.data, &self.sender) {
                Ok(json) => json,
                Err(error) => {
                    tracing::warn!(%error, "registry message not encoded");
                    continue;
                }
            };
            let sent = match out.to {
                Destination::Cluster => self.transmit(now, json),
                to => self.transmit_to(now, to, json),
            };
            if let Err(error) = sent {
                tracing::warn!(%error, "registry message not sent");
            }
        }
    }

    /// A message on the registry channel.
    fn on_registry(&mut self, now: Instant, from: SocketAddr, iid: &str, data: &str) {
        // Only nodes in the table, at their address, are heard: their
        // number is bounded, and a forged sender must also forge the source.
        let known = self.peers.is_at(iid, from);
        let result = self
            .registry
            .on_message(now, iid, known, data, &mut self.stats);
        match result {
            Ok(()) => {}
            Err(Refusal::Invalid) => self.stats.dropped.registry_invalid += 1,
            Err(Refusal::UnknownOwner) => self.stats.dropped.registry_unknown += 1,
        }
        self.flush_registry(now);
    }

    // ----- internals ----------------------------------------------------

    /// Handles one whole message (JSON envelope bytes). `sealed_by` is the
    /// authenticated sender id of a sealed message, which must match the
    /// envelope's instance id.
    fn handle_envelope(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Option<&Via>,
        plain: &[u8],
        sealed_by: Option<[u8; 16]>,
    ) {
        // Most datagrams are hellos in the common shape: one pass, no allocation.
        if let Some(fast) = fast_hello::decode(plain) {
            if self.accept_sender(from, fast.iid, fast.pid, sealed_by) {
                let sender = (fast.iid, fast.pid, fast.host_name);
                self.on_hello(now, from, via, sender, &fast.hello);
            }
            return;
        }
        let env = match envelope::decode(plain) {
            Ok(env) => env,
            Err(error) => return self.drop_packet(from, error),
        };
        if !self.accept_sender(from, &env.iid, &env.pid, sealed_by) {
            return;
        }
        let Some(data) = env.data else {
            return self.drop_packet(from, DecodeError::Envelope(EnvelopeError::NoData));
        };
        match &*env.event {
            "hello" => match envelope::decode_hello_ref(data) {
                Ok(hello) => {
                    let sender = (&*env.iid, &*env.pid, &*env.host_name);
                    self.on_hello(now, from, via, sender, &hello)
                }
                Err(error) => self.drop_packet(from, error),
            },
            GOODBYE => self.on_goodbye(now, &env.iid),
            replica::CHANNEL => self.on_registry(now, from, &env.iid, data.get()),
            name if RESERVED_CHANNELS.contains(&name) => self.stats.dropped.reserved += 1,
            name if !self.joined.contains(name) => self.stats.dropped.not_joined += 1,
            name => match serde_json::from_str(data.get()) {
                Ok(data) => self.events.push_back(Event::Message(ChannelMessage {
                    channel: name.to_owned(),
                    data,
                    from: NodeId::new(&env.iid),
                    addr: from,
                })),
                Err(_) => self.drop_packet(from, DecodeError::Envelope(EnvelopeError::BadData)),
            },
        }
    }

    /// The checks on an envelope's sender, counted: `false` if the message
    /// is to be dropped (forged sealed sender, over-long ids, our own).
    fn accept_sender(
        &mut self,
        from: SocketAddr,
        iid: &str,
        pid: &str,
        sealed_by: Option<[u8; 16]>,
    ) -> bool {
        if sealed_by.is_some_and(|id| !packet::is_sender_id(iid, &id)) {
            self.drop_packet(from, DecodeError::Envelope(EnvelopeError::SenderMismatch));
            return false;
        }
        if iid.len() > NodeId::MAX_LEN || pid.len() > NodeId::MAX_LEN {
            self.drop_packet(from, DecodeError::Envelope(EnvelopeError::IdTooLong));
            return false;
        }
        self.stats.messages_in += 1;
        let own = match self.config.ignore {
            Ignore::OwnInstance => iid == self.sender.iid,
            Ignore::OwnProcess => pid == self.sender.pid,
            Ignore::Nothing => false,
        };
        if own {
            self.stats.dropped.own += 1;
        }
        !own
    }

    /// A hello from `(iid, pid, host name)`.
    fn on_hello(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Option<&Via>,
        (iid, pid, host_name): (&str, &str, &str),
        hello: &HelloRef<'_>,
    ) {
        self.stats.hellos_in += 1;
        let (observed, peer) = self
            .peers
            .observe(now, iid, pid, host_name, from, via, hello);
        let (new, was_master, info_changed, moved) = match observed {
            Observed::Refused => {
                self.stats.dropped.table_full += 1;
                return;
            }
            Observed::BadInfo => {
                return self.drop_packet(from, DecodeError::Envelope(EnvelopeError::BadInfo));
            }
            Observed::Stale => {
                if peer.is_some_and(|p| p.addr != from || p.via.as_ref() != via) {
                    // The copy of a hello by a second path.
                    self.dedupe.turn_on();
                }
                return;
            }
            Observed::New => (true, false, false, false),
            Observed::Known {
                was_master,
                info_changed,
                moved,
            } => (false, was_master, info_changed, moved),
        };
        let Some(peer) = peer else { return };
        if self.dedupe.is_on() {
            self.hello_from = Some(peer.id.clone());
        }
        if peer.addr != from || peer.via.as_ref() != via {
            // Heard by a second path (and kept on the first).
            self.dedupe.turn_on();
        }
        if new || moved {
            self.unicast
                .peer_seen(&peer.id, peer.addr, peer.target(), peer.via.as_ref());
        }
        let is_master = peer.is_master;
        let became_master = is_master && !was_master;
        // The epoch only matters if it is newer than ours: compare before cloning.
        let epoch = peer
            .epoch
            .as_ref()
            .filter(|e| self.epoch.as_ref().map_or(true, |mine| *e > mine))
            .cloned();
        // Clone the peer only when an event needs it: most hellos change nothing.
        let snapshot = (new || info_changed || became_master).then(|| peer.clone());
        match &snapshot {
            Some(peer) if new => self.events.push_back(Event::Added(peer.clone())),
            Some(peer) if info_changed => self.events.push_back(Event::Updated(peer.clone())),
            _ => {}
        }
        if new {
            // Make ourselves known to the newcomer now rather than at our
            // next interval.
            self.schedule_early_hello(now);
        }
        if let Some(epoch) = epoch {
            self.adopt_epoch(epoch);
        }
        if is_master {
            // node-discovery order: step down first, then report the new master.
            if self.me.is_master && self.too_many_masters() {
                self.demote(now, false);
            }
            // (Not matched as a tuple: that would move the whole
            // `Option<Peer>` for every master hello.)
            if became_master {
                if let Some(peer) = snapshot {
                    self.events.push_back(Event::Master(peer));
                }
            }
        }
        if let Some(listed) = hello.peers {
            self.unicast.learn(now, from, listed);
        }
        if hello.reg.is_some() {
            self.registry.on_hello(now, iid, hello.reg, &mut self.stats);
            self.flush_registry(now);
        }
    }

    fn my_rank(&self) -> Rank<'_> {
        Rank {
            weight: self.me.weight,
            id: self.id.as_str(),
        }
    }

    fn too_many_masters(&self) -> bool {
        // The table's master index, highest rank first: this runs on every
        // master hello while we are master, so it reads O(log n +
        // masters_required) entries, not every peer.
        let masters = self
            .peers
            .masters_by_rank()
            .filter(|m| m.id != self.id.as_str());
        election::should_demote(self.my_rank(), masters, self.config.masters_required)
    }

    /// Removes the peers whose deadline has come. A removed master still
    /// counts as one until `master_timeout` after it was last heard; the
    /// election is checked again at that moment.
    fn expire(&mut self, now: Instant) {
        for peer in self.peers.expire(now) {
            if peer.is_master {
                let until = (peer.last_seen + self.config.master_timeout).max(now);
                self.masters_gone.push(until);
            }
            self.registry.owner_removed(peer.id.as_str());
            self.unicast.peer_gone(peer.id.as_str());
            self.events
                .push_back(Event::Removed(peer, Removal::Timeout));
        }
    }

    fn on_goodbye(&mut self, now: Instant, id: &str) {
        if let Some(peer) = self.peers.remove(id) {
            self.registry.owner_removed(id);
            self.unicast.peer_gone(id);
            let was_master = peer.is_master;
            self.events
                .push_back(Event::Removed(peer, Removal::Goodbye));
            if was_master {
                // It left on purpose: no need to wait for the master timeout.
                self.check(now);
            }
        }
    }

    fn schedule_early_hello(&mut self, now: Instant) {
        if self.early_hello.is_some() {
            return; // one early hello answers every newcomer heard before it
        }
        let jitter = self.rng.gen_range(Duration::ZERO..=EARLY_HELLO_JITTER);
        let mut at = now + jitter;
        if let Some(last) = self.early_sent.back() {
            at = at.max(*last + EARLY_HELLO_SPACING);
        }
        if self.early_sent.len() >= EARLY_HELLO_BURST {
            if let Some(oldest) = self.early_sent.front() {
                at = at.max(*oldest + EARLY_HELLO_WINDOW);
            }
        }
        self.early_hello = Some(at);
    }

    fn adopt_epoch(&mut self, epoch: Epoch) {
        if self.epoch.as_ref().is_some_and(|e| *e >= epoch) {
            return;
        }
        self.me.epoch = Some(epoch.n);
        self.me.epoch_master = Some(epoch.master.as_str().to_owned());
        self.epoch = Some(epoch);
    }

    /// Promote or demote as the election rules say.
    fn check(&mut self, now: Instant) {
        self.codec.forget_silent_senders(now);
        self.masters_gone.retain(|until| *until > now);
        let masters = self.masters_gone.len() + self.peers.master_count();
        let me = self.my_rank();
        // A walk over every peer, but once per check tick, not per packet.
        let higher = self
            .peers
            .iter()
            .filter(|p| !p.is_master && p.is_master_eligible && rank(p).outranks(&me))
            .count();
        if !self.me.is_master
            && self.me.is_master_eligible
            && now >= self.promote_after
            && election::should_promote(masters, higher, self.config.masters_required)
        {
            self.become_master(now);
        } else if self.me.is_master && self.too_many_masters() {
            self.demote(now, false);
        } else if self.me.is_master && self.epoch_names_a_non_master() {
            // A master elsewhere drew the same epoch number and wins the tie
            // by id but is gone, or a partition healed and the master of the
            // newer epoch stepped down: claim a newer epoch, so that the
            // newest one always names a current master.
            self.claim_epoch();
            self.send_hello(now);
        }
    }

    /// Whether the highest epoch we know names another node that is not,
    /// as far as we know, a master now.
    fn epoch_names_a_non_master(&self) -> bool {
        self.epoch.as_ref().is_some_and(|e| {
            e.master != self.id
                && !self
                    .peers
                    .get(e.master.as_str())
                    .is_some_and(|p| p.is_master)
        })
    }

    /// Says hello now; the periodic hello restarts its interval from here.
    fn send_hello(&mut self, now: Instant) {
        if let Err(error) = self.say_hello(now) {
            // Only an advertised value too large for a message can cause
            // this, and advertise() refuses those.
            tracing::warn!(%error, "hello not sent");
        }
    }

    fn say_hello(&mut self, now: Instant) -> Result<(), Error> {
        self.next_hello = now + self.config.hello_interval;
        self.early_hello = None;
        self.me.seq = self.me.seq.map(|seq| seq.wrapping_add(1));
        self.me.reg = self.registry.version();
        self.me.peers = self.unicast.listed();
        let json = envelope::encode("hello", &self.me, &self.sender).map_err(Error::Encode)?;
        let targets = self.unicast.targets(now, true);
        self.transmit_all(now, json, targets)
    }

    /// Protects one message and queues its datagrams for the whole cluster:
    /// the cluster address (unless unicast only) and the unicast targets
    /// the latest hello went to.
    fn transmit(&mut self, now: Instant, json: Vec<u8>) -> Result<(), Error> {
        let targets = self.unicast.targets(now, false);
        self.transmit_all(now, json, targets)
    }

    /// Protects one message once and queues each datagram for the cluster
    /// address (unless unicast only) and for each of `targets`: every
    /// destination gets the same bytes, so that a node reached both ways
    /// can tell the copies apart from new messages.
    fn transmit_all(
        &mut self,
        now: Instant,
        json: Vec<u8>,
        targets: Vec<SocketAddr>,
    ) -> Result<(), Error> {
        let cluster = !self.config.unicast_only;
        let (stats, transmits) = (&mut self.stats, &mut self.transmits);
        self.codec.encode(now, json, &mut self.rng, |payload| {
            for to in &targets {
                stats.packets_out += 1;
                stats.bytes_out += payload.len() as u64;
                transmits.push_back(Transmit {
                    destination: Destination::Peer(*to),
                    payload: payload.clone(),
                });
            }
            if cluster {
                stats.packets_out += 1;
                stats.bytes_out += payload.len() as u64;
                transmits.push_back(Transmit {
                    destination: Destination::Cluster,
                    payload,
                });
            }
        })?;
        self.stats.messages_out += 1;
        Ok(())
    }

    /// Protects one message and queues its datagrams for `destination`.
    fn transmit_to(
        &mut self,
        now: Instant,
        destination: Destination,
        json: Vec<u8>,
    ) -> Result<(), Error> {
        let (stats, transmits) = (&mut self.stats, &mut self.transmits);
        self.codec.encode(now, json, &mut self.rng, |payload| {
            stats.packets_out += 1;
            stats.bytes_out += payload.len() as u64;
            transmits.push_back(Transmit {
                destination,
                payload,
            });
        })?;
        self.stats.messages_out += 1;
        Ok(())
    }

    fn drop_packet(&mut self, from: SocketAddr, error: DecodeError) {
        self.drop_error(Some(from), error);
    }

    fn drop_error(&mut self, from: Option<SocketAddr>, error: DecodeError) {
        self.stats.dropped.count(&error);
        if !self.config.ignore_data_errors {
            let from = from.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            self.events.push_back(Event::DataError { from, error });
        }
    }
}

/// The `address` field of our hellos: the advertised address, or
/// node-discovery's constant `127.0.0.1` (receivers then use the source).
fn advertised(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "127.0.0.1".to_owned(), |a| a.to_string())
}

fn rank(peer: &Peer) -> Rank<'_> {
    Rank {
        weight: peer.weight,
        id: peer.id.as_str(),
    }
}

/// The next periodic deadline after `now`, skipping missed ticks rather than bursting.
fn next_tick(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let next = previous + interval;
    if next > now {
        next
    } else {
        now + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(t0: Instant) -> Protocol {
        let config = Config::builder().weight(0.5).build().unwrap();
        let sender = Sender {
            pid: "p".repeat(32),
            iid: "a".repeat(32),
            host_name: "h".into(),
        };
        Protocol::new(&config, sender, t0, 1)
    }

    fn promotions(node: &mut Protocol) -> usize {
        std::iter::from_fn(|| node.poll_event())
            .filter(|e| matches!(e, Event::Promotion(_)))
            .count()
    }

    #[test]
    fn a_permanent_demotion_is_final_and_a_plain_one_is_not() {
        let t0 = Instant::now();
        let mut node = node(t0);
        node.promote(t0).unwrap();
        node.demote(t0, false);
        node.promote(t0).unwrap();
        assert!(node.local().is_master);
        assert_eq!(promotions(&mut node), 2);

        node.demote(t0, true);
        let local = node.local();
        assert!(!local.is_master && !local.is_master_eligible);
        assert!(matches!(node.promote(t0), Err(Error::PermanentlyDemoted)));
        // Alone for a minute of checks: the election does not pick it either.
        for s in 1..=60 {
            node.handle_timeout(t0 + Duration::from_secs(s));
        }
        assert!(!node.local().is_master && !node.local().is_master_eligible);
        assert_eq!(promotions(&mut node), 0);
    }

    #[test]
    fn channel_names_are_one_to_255_bytes_without_control_characters() {
        let t0 = Instant::now();
        let mut node = node(t0);
        for name in ["", &"c".repeat(256), &"c".repeat(5000), "tab\there", "nl\n"] {
            let err = node.join(name).unwrap_err();
            assert!(
                matches!(err, Error::InvalidChannel { .. }),
                "{name:?}: {err}"
            );
            let err = node.send(t0, name, &1).unwrap_err();
            assert!(
                matches!(err, Error::InvalidChannel { .. }),
                "{name:?}: {err}"
            );
        }
        for name in ["c", &"c".repeat(255), "jobs.eu-west/1", "café"] {
            node.join(name).unwrap();
            node.send(t0, name, &1).unwrap();
        }
        assert!(matches!(
            node.join("master"),
            Err(Error::ReservedChannel(_))
        ));
    }

    /// serde_json would send NaN and infinities as `null`: refused, with
    /// where they are, and nothing is sent.
    #[test]
    fn non_finite_numbers_are_refused_and_nothing_is_sent() {
        #[derive(Serialize)]
        struct Job {
            id: u32,
            weights: Vec<f32>,
        }
        fn refused<T: Serialize>(node: &mut Protocol, data: &T) -> (String, String) {
            let now = Instant::now();
            match node.send(now, "jobs", data) {
                Err(Error::NonFiniteNumber { path, value }) => {
                    assert!(node.poll_transmit().is_none(), "{path}");
                    (path, value.to_string())
                }
                other => panic!("{other:?}"),
            }
        }
        let t0 = Instant::now();
        let mut node = node(t0);
        let n = &mut node;
        let s = |p: &str, v: &str| (p.to_owned(), v.to_owned());
        assert_eq!(refused(n, &f64::NAN), s("data", "NaN"));
        assert_eq!(refused(n, &f64::INFINITY), s("data", "inf"));
        assert_eq!(refused(n, &f64::NEG_INFINITY), s("data", "-inf"));
        assert_eq!(refused(n, &f32::NAN), s("data", "NaN"));
        assert_eq!(refused(n, &f32::INFINITY), s("data", "inf"));
        let job = Job {
            id: 1,
            weights: vec![0.5, f32::NEG_INFINITY],
        };
        assert_eq!(refused(n, &job), s("data.weights[1]", "-inf"));
        let nested = std::collections::BTreeMap::from([("a", vec![Some(1.0), Some(f64::NAN)])]);
        assert_eq!(refused(n, &nested), s("data.a[1]", "NaN"));
        let err = node.send(t0, "jobs", &f64::NAN).unwrap_err();
        assert_eq!(
            err.to_string(),
            "data is NaN: JSON has no NaN or infinity (serde_json would send null)"
        );
        // The largest finite numbers, and null itself, are sent.
        for data in [f64::MAX, f64::MIN, f64::from(f32::MAX), -0.0] {
            node.send(t0, "jobs", &data).unwrap();
            assert!(node.poll_transmit().is_some());
        }
        node.send(t0, "jobs", &Option::<f64>::None).unwrap();
        let job = Job {
            id: 2,
            weights: vec![1.0],
        };
        node.send(t0, "jobs", &job).unwrap();
    }

    #[test]
    fn promote_makes_a_node_configured_ineligible_eligible_as_node_discovery_does() {
        let t0 = Instant::now();
        let config = Config::builder().master_eligible(false).build().unwrap();
        let sender = Sender {
            pid: "p".repeat(32),
            iid: "b".repeat(32),
            host_name: "h".into(),
        };
        let mut node = Protocol::new(&config, sender, t0, 1);
        node.promote(t0).unwrap();
        assert!(node.local().is_master && node.local().is_master_eligible);
    }
}
