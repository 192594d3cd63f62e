//! The tokio driver: owns the socket and the timers, feeds the
//! [`Protocol`](crate::protocol::Protocol) core, and hands events and channel
//! messages to the user without ever blocking the protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{broadcast, Notify};

use crate::handle::{lock, Events, Handle, StopSignal};
use crate::stream::{EventStream, Subscription};

use crate::event::{ChannelMessage, Event, LocalState};
use crate::interface::{IfKind, Interface};
use crate::membership::{NodeId, Peer};
use crate::protocol::{check_channel, Protocol};
use crate::registry::{Filter, Registration, Registry, RegistryEvent};
use crate::transport::{Family, Incoming, Seeds, UdpTransport};
use crate::wire::envelope::Sender;
use crate::{Config, Error, Stats};

/// One node-discovery `pid` per OS process, as the Node package does.
fn process_id() -> &'static str {
    static PID: OnceLock<String> = OnceLock::new();
    PID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

struct Shared {
    core: Mutex<Protocol>,
    /// Wakes the driver after a command queued something to send.
    wake: Notify,
    /// Closed when the driver stops, so that every event stream ends.
    events: Events<Event>,
    /// Registry events, for watches (published under the core lock, so
    /// that a watch's snapshot and its first event never overlap).
    registry_events: Events<RegistryEvent>,
    channels: Mutex<HashMap<String, broadcast::Sender<ChannelMessage>>>,
    capacity: usize,
    local_addr: SocketAddr,
    /// The interfaces in use, as of the last rescan.
    interfaces: Mutex<Vec<Interface>>,
    /// A new selection from [`Discovery::set_interfaces`], for the driver
    /// to apply (`Some(None)`: back to the default rule).
    new_selection: Mutex<Option<Option<Vec<IfKind>>>>,
    /// Wakes the driver to list the interfaces now.
    rescan: Notify,
    /// Datagrams dropped because they came in on an interface the node
    /// does not use.
    foreign_drops: AtomicU64,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Protocol> {
        lock(&self.core)
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, broadcast::Sender<ChannelMessage>>> {
        lock(&self.channels)
    }
}

/// A running node: discovers peers, takes part in the election, sends and
/// receives channel messages.
///
/// A `Discovery` is a handle: cloning it is cheap, and every clone drives
/// the same node, so give each task its own clone. Dropping the last clone
/// stops the node (it says goodbye, its task ends and the socket closes).
/// [`shutdown`](Self::shutdown), from any clone, stops it and waits for that;
/// afterwards the commands of every clone return [`Error::Closed`] and every
/// stream ends.
///
/// # Which networks
///
/// By default a node uses every interface that is up, multicast-capable
/// and neither loopback, point-to-point, a tunnel, nor a bridge to this
/// host's containers such as docker0 (loopback if there is nothing else):
/// on each it broadcasts to that subnet's broadcast address
/// (or multicasts with that interface as the outgoing one), and it drops
/// datagrams that arrive on any other interface. To choose:
/// - name them: [`ConfigBuilder::interfaces`](crate::ConfigBuilder::interfaces)
///   with [`IfKind::Name`]`("eth0")`, an address, an index, IPv4 or IPv6
///   only, or a [`Predicate`](crate::Predicate); change the choice while the node
///   runs with [`set_interfaces`](Self::set_interfaces), and see it with
///   [`interfaces`](Self::interfaces);
/// - add IPv6 ([`ipv6`](crate::ConfigBuilder::ipv6)): link-local multicast
///   on `ff02::5ea1` on the same interfaces;
/// - where broadcast does not reach (cloud networks, another subnet),
///   give [`seeds`](crate::ConfigBuilder::seeds), and with
///   [`unicast_only`](crate::ConfigBuilder::unicast_only) send no
///   broadcast at all;
/// - one fixed destination, as node-discovery has it: an explicit
///   [`broadcast`](crate::ConfigBuilder::broadcast) address (what the
///   examples below use to stay on this host) or
///   [`multicast_interface`](crate::ConfigBuilder::multicast_interface).
///
/// [`Peer::via`] says on which interface and local address each peer was
/// last heard.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shoal::Error> {
/// use shoal::{Config, Discovery, Event};
///
/// // This host only; on a real LAN, `Config::builder().build()?`.
/// let config = || Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(40_001);
/// let node = Discovery::start(config().build()?).await?;
/// node.advertise(&serde_json::json!({"role": "worker"}))?;
/// let mut events = node.events();
/// # let other = Discovery::start(config().build()?).await?;
/// while let Some(event) = events.recv().await {
///     if let Event::Added(peer) = event {
///         println!("found {} at {}", peer.id, peer.addr);
///         # break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Discovery {
    handle: Handle<Shared>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("id", &self.id())
            .field("local_addr", &self.shared().local_addr)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Binds the socket and starts the node. Its first hello goes out at once.
    ///
    /// Must be called from within a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// // On a real LAN: shoal::Config::builder().build()? (255.255.255.255:12345).
    /// let config = shoal::Config::builder()
    ///     .broadcast("127.255.255.255".parse().unwrap()) // this host only
    ///     .port(47_610)
    ///     .build()?;
    /// let node = shoal::Discovery::start(config).await?;
    /// println!("listening on {}", node.local_addr());
    /// assert_eq!(node.local_addr().port(), 47_610);
    /// # Ok(()) }
    /// ```
    pub async fn start(config: Config) -> Result<Discovery, Error> {
        let transport = UdpTransport::open(&config.transport, config.unicast_only)?;
        let local_addr = transport.local_addr();
        let seeds = Seeds::new(&config.transport.seeds);
        let host_name = match &config.host_name {
            Some(name) => name.clone(),
            None => hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let sender = Sender {
            pid: process_id().to_owned(),
            iid: uuid::Uuid::new_v4().simple().to_string(),
            host_name,
        };
        let now = Instant::now();
        let mut core = Protocol::new(&config, sender, now, rand::random());
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        core.set_wall_clock(now, unix_ms);
        // Before the first flush, so that the first hello already goes to
        // every interface and every literal seed.
        core.set_interfaces(now, transport.chosen());
        core.set_seeds(now, &seeds.addresses());
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            wake: Notify::new(),
            events: Events::new(config.event_capacity),
            registry_events: {
                let events = Events::new(config.event_capacity);
                // Watches start from a snapshot, not from the node's start.
                drop(events.stream());
                events
            },
            channels: Mutex::new(HashMap::new()),
            capacity: config.event_capacity,
            local_addr,
            interfaces: Mutex::new(transport.chosen().to_vec()),
            new_selection: Mutex::new(None),
            rescan: Notify::new(),
            foreign_drops: AtomicU64::new(0),
        });
        let timers = Timers {
            rescan: config.transport.rescan_interval,
            seed_refresh: config.transport.seed_refresh,
        };
        let handle = Handle::spawn(shared, move |shared, stop| {
            run(shared, transport, seeds, timers, stop)
        });
        Ok(Discovery { handle })
    }

    fn shared(&self) -> &Shared {
        self.handle.shared()
    }

    /// Events buffered per stream.
    pub(crate) fn capacity(&self) -> usize {
        self.shared().capacity
    }

    /// Our instance id (node-discovery's `iid`), as peers see it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47623).build()?).await?;
    /// println!("I am {}", node.id());
    /// assert_eq!(node.me().id, node.id());
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> NodeId {
        self.shared().core().id().clone()
    }

    /// The local address the socket is bound to.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47624).build()?).await?;
    /// assert_eq!(node.local_addr().port(), 47_624);
    /// # Ok(()) }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.shared().local_addr
    }

    /// The network interfaces (one entry per address) the node uses now:
    /// where it sends to the cluster and the only ones it hears. The
    /// driver lists the host's interfaces again every
    /// [`rescan_interval`](crate::ConfigBuilder::rescan_interval), so an
    /// interface that appears, goes or changes address shows here within
    /// that time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// use shoal::IfKind;
    /// let config = shoal::Config::builder()
    ///     .interfaces([IfKind::Loopback]) // this host only
    ///     .port(47_630)
    ///     .build()?;
    /// let node = shoal::Discovery::start(config).await?;
    /// for i in node.interfaces() {
    ///     println!("{} ({}) {}/{}", i.name, i.index, i.addr, i.prefix_len);
    /// }
    /// assert!(node.interfaces().iter().all(|i| i.is_loopback));
    /// # Ok(()) }
    /// ```
    pub fn interfaces(&self) -> Vec<Interface> {
        lock(&self.shared().interfaces).clone()
    }

    /// Changes which interfaces the node uses, while it runs: those any of
    /// `kinds` matches, as [`ConfigBuilder::interfaces`](crate::ConfigBuilder::interfaces)
    /// chooses them (`None`: back to the default rule). The driver applies
    /// it at once: it joins the multicast groups on the new interfaces,
    /// leaves those on the old, and from then on sends and hears on the
    /// new ones only. [`interfaces`](Self::interfaces) shows the result
    /// shortly after. Refused as the builder refuses it
    /// ([`Error::Config`]): an empty list, an empty name, index 0.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// use shoal::IfKind;
    /// # let config = shoal::Config::builder().interfaces([IfKind::Loopback]).port(47_631).build()?;
    /// let node = shoal::Discovery::start(config).await?;
    /// // Only the loopback interface's IPv4 addresses, chosen by a predicate:
    /// let v4_loopback = shoal::Predicate::new(|i: &shoal::Interface| i.is_loopback && i.addr.is_ipv4());
    /// node.set_interfaces(Some(vec![IfKind::Predicate(v4_loopback)]))?;
    /// # for _ in 0..500 {
    /// #     if node.interfaces().iter().all(|i| i.addr.is_ipv4()) { break }
    /// #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    /// # }
    /// assert!(node.interfaces().iter().all(|i| i.is_loopback && i.addr.is_ipv4()));
    /// assert!(node.set_interfaces(Some(vec![])).is_err()); // deaf: refused
    /// # Ok(()) }
    /// ```
    pub fn set_interfaces(&self, kinds: Option<Vec<IfKind>>) -> Result<(), Error> {
        if let Some(kinds) = &kinds {
            crate::config::check_interfaces(kinds)?;
        }
        self.handle.ensure_running()?;
        *lock(&self.shared().new_selection) = Some(kinds);
        self.shared().rescan.notify_one();
        Ok(())
    }

    /// Our own election state and advertised value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47625).build()?).await?;
    /// let me = node.me();
    /// println!("{me}");
    /// assert!(me.is_master_eligible);
    /// # Ok(()) }
    /// ```
    pub fn me(&self) -> LocalState {
        self.shared().core().local()
    }

    /// A snapshot of the live peer table.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47611).build()?).await?;
    /// let masters = node.nodes().into_iter().filter(|p| p.is_master).count();
    /// println!("{masters} master(s), we are master: {}", node.me().is_master);
    /// # Ok(()) }
    /// ```
    pub fn nodes(&self) -> Vec<Peer> {
        self.shared().core().peers().cloned().collect()
    }

    /// Traffic and drop counters.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47626).build()?).await?;
    /// let stats = node.stats();
    /// println!("{} packets out, {} dropped", stats.packets_out, stats.dropped.total());
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared().core().stats().clone();
        stats.events_lost += self.shared().events.lost().load(Ordering::Relaxed);
        stats.events_lost += self.shared().registry_events.lost().load(Ordering::Relaxed);
        stats.dropped.other_interface += self.shared().foreign_drops.load(Ordering::Relaxed);
        stats
    }

    /// A stream of events ([`Event`]): `Added`, `Removed`, `Master`, `Promotion`, `Demotion`, ...
    ///
    /// The first call (on any clone) gets every event since
    /// [`start`](Self::start); later calls get events from the moment of the
    /// call. After shutdown the stream ends at once. Each stream buffers
    /// `event_capacity` events: a consumer that falls further behind loses
    /// the oldest ones and is told so with [`Event::Lagged`]. The protocol
    /// never waits for a consumer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47612).build()?).await?;
    /// use tokio_stream::StreamExt; // or call events.recv().await
    /// let mut events = node.events();
    /// # let closer = node.clone();
    /// # tokio::spawn(async move { closer.shutdown().await });
    /// while let Some(event) = events.next().await { // ends when the node shuts down
    ///     println!("{event}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> EventStream {
        self.shared().events.stream()
    }

    /// Sets the value advertised in every hello (node-discovery's `info`) and
    /// says hello at once. A NaN or infinite number in it is refused
    /// ([`Error::NonFiniteNumber`], path from `info`), as in
    /// [`send`](Self::send).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47613).build()?).await?;
    /// node.advertise(&serde_json::json!({"name": "web", "port": 8080, "ready": true}))?;
    /// # Ok(()) }
    /// ```
    pub fn advertise<T: Serialize + ?Sized>(&self, info: &T) -> Result<(), Error> {
        // Before to_value, which would turn a NaN into null.
        crate::protocol::check_finite("info", info)?;
        let value = serde_json::to_value(info).map_err(Error::Encode)?;
        self.command(|core| core.advertise(Instant::now(), value))
    }

    /// Makes this node a master now. A node demoted permanently
    /// ([`demote(true)`](Self::demote)) refuses with
    /// [`Error::PermanentlyDemoted`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47614).build()?).await?;
    /// node.promote()?;
    /// assert!(node.me().is_master);
    /// # Ok(()) }
    /// ```
    pub fn promote(&self) -> Result<(), Error> {
        self.command(|core| core.promote(Instant::now()))
    }

    /// Gives up mastership; with `permanent`, also stops being eligible, for
    /// good: neither the election nor [`promote`](Self::promote) makes it
    /// master again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47615).build()?).await?;
    /// node.demote(true)?; // never be elected again
    /// assert!(!node.me().is_master_eligible);
    /// # Ok(()) }
    /// ```
    pub fn demote(&self, permanent: bool) -> Result<(), Error> {
        self.command(|core| {
            core.demote(Instant::now(), permanent);
            Ok(())
        })
    }

    /// Broadcasts `data` (any JSON-serialisable value) on `channel`.
    ///
    /// JSON has no NaN or infinity, and serde_json would send them as
    /// `null`: a NaN or infinite `f64` or `f32` anywhere in `data` is
    /// refused with [`Error::NonFiniteNumber`], which says where it is,
    /// and nothing is sent. A `serde_json::Value` cannot hold one:
    /// `json!({"x": f64::NAN})` is already `{"x": null}` before `send` sees
    /// it, so send your own types (or maps, tuples, numbers) to have NaN
    /// caught.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47616).build()?).await?;
    /// node.send("jobs", &serde_json::json!({"task": 7}))?;
    /// # Ok(()) }
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, channel: &str, data: &T) -> Result<(), Error> {
        self.command(|core| core.send(Instant::now(), channel, data))
    }

    /// How packets are protected now (`None`: plaintext, no key).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47620).build()?).await?;
    /// assert_eq!(node.encryption(), None); // built without a key
    /// # Ok(()) }
    /// ```
    pub fn encryption(&self) -> Option<crate::Encryption> {
        self.shared().core().encryption()
    }

    /// Switches protection at run time: the steps of a rolling enablement
    /// (see SECURITY.md). Secure modes need a key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47621).build()?).await?;
    /// use shoal::{Encryption, Key};
    /// node.install_key(Key::from_hex(&"5e".repeat(32))?)?;
    /// node.set_encryption(Some(Encryption::PlaintextAcceptSecure))?; // on every node, then:
    /// node.set_encryption(Some(Encryption::SecureAcceptPlaintext))?; // on every node, then:
    /// node.set_encryption(Some(Encryption::Secure))?;
    /// assert_eq!(node.encryption(), Some(Encryption::Secure));
    /// # Ok(()) }
    /// ```
    pub fn set_encryption(&self, mode: Option<crate::Encryption>) -> Result<(), Error> {
        self.command(|core| core.set_encryption(mode))
    }

    /// Adds a key to the keyring (accepted at once; with no keyring yet it
    /// becomes the sending key). Key rotation: install the new key on every
    /// node, then [`use_key`](Self::use_key) it on every node, then
    /// [`remove_key`](Self::remove_key) the old one on every node.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47622).build()?).await?;
    /// use shoal::Key;
    /// # node.install_key(Key::from_hex(&"cd".repeat(32))?)?;
    /// let new = Key::from_hex(&"ab".repeat(32))?;
    /// let (new_id, old_id) = (new.id(), node.key_ids()[0]);
    /// node.install_key(new)?; // 1. everywhere
    /// node.use_key(new_id)?; // 2. everywhere
    /// node.remove_key(old_id)?; // 3. everywhere
    /// assert_eq!(node.key_ids(), vec![new_id]);
    /// # Ok(()) }
    /// ```
    pub fn install_key(&self, key: crate::crypto::key::Key) -> Result<(), Error> {
        self.command(|core| core.install_key(key))
    }

    /// Sends under an installed key from now on; see
    /// [`install_key`](Self::install_key) for a whole rotation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47627).build()?).await?;
    /// let key = shoal::Key::from_hex(&"ab".repeat(32))?;
    /// let id = key.id();
    /// node.install_key(key)?;
    /// node.use_key(id)?;
    /// assert_eq!(node.key_ids()[0], id);
    /// # Ok(()) }
    /// ```
    pub fn use_key(&self, id: crate::crypto::key::KeyId) -> Result<(), Error> {
        self.command(|core| core.use_key(id))
    }

    /// Stops accepting a (non-primary) key; see
    /// [`install_key`](Self::install_key) for a whole rotation.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47628).build()?).await?;
    /// use shoal::Key;
    /// let (old, new) = (Key::from_hex(&"ab".repeat(32))?, Key::from_hex(&"cd".repeat(32))?);
    /// let (old_id, new_id) = (old.id(), new.id());
    /// node.install_key(old)?; // the first key installed is the sending key
    /// node.install_key(new)?;
    /// assert!(node.remove_key(old_id).is_err()); // still the sending key
    /// node.use_key(new_id)?;
    /// node.remove_key(old_id)?;
    /// # Ok(()) }
    /// ```
    pub fn remove_key(&self, id: crate::crypto::key::KeyId) -> Result<(), Error> {
        self.command(|core| core.remove_key(id))
    }

    /// The installed key ids, primary (the sending key) first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47629).build()?).await?;
    /// assert!(node.key_ids().is_empty()); // built without a key
    /// # Ok(()) }
    /// ```
    pub fn key_ids(&self) -> Vec<crate::crypto::key::KeyId> {
        self.shared().core().key_ids()
    }

    /// Subscribes to `channel`: the returned stream yields every message
    /// received on it, until [`leave`](Self::leave) or shutdown. Several
    /// subscriptions to one channel each get every message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47617).build()?).await?;
    /// let mut jobs = node.join("jobs")?;
    /// # let closer = node.clone();
    /// # tokio::spawn(async move { closer.shutdown().await });
    /// while let Some(message) = jobs.recv().await { // ends when the node shuts down
    ///     println!("{} from {}: {}", message.channel, message.from, message.data);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn join(&self, channel: &str) -> Result<Subscription, Error> {
        check_channel(channel)?;
        self.handle.ensure_running()?;
        let shared = self.shared();
        let rx = {
            let mut channels = shared.channels();
            let sender = channels
                .entry(channel.to_owned())
                .or_insert_with(|| broadcast::channel(shared.capacity).0);
            sender.subscribe()
        };
        shared.core().join(channel)?;
        Ok(Subscription::new(rx, shared.events.lost().clone()))
    }

    /// Unsubscribes from `channel`: every subscription to it ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47618).build()?).await?;
    /// let mut jobs = node.join("jobs")?;
    /// node.leave("jobs");
    /// assert!(jobs.recv().await.is_none());
    /// # Ok(()) }
    /// ```
    pub fn leave(&self, channel: &str) {
        self.shared().core().leave(channel);
        self.shared().channels().remove(channel);
    }

    /// Stops the node for every clone: says goodbye (peers remove it at
    /// once), then timers stop, the socket closes and every stream ends.
    /// Returns once all that is done. Any clone may call it, any number of
    /// times; afterwards commands on every clone return [`Error::Closed`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47619).build()?).await?;
    /// let worker = node.clone();
    /// tokio::spawn(async move {
    ///     while worker.send("jobs", &serde_json::json!({"task": 7})).is_ok() {
    ///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ///     }
    ///     // Err(Error::Closed): the node was shut down.
    /// });
    /// node.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
    }

    /// The service registry replicated by this node: see [`Registry`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47649).build()?).await?;
    /// let kv = shoal::Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).build()?;
    /// node.registry().register(kv, std::time::Duration::from_secs(30)).await?;
    /// # Ok(()) }
    /// ```
    pub fn registry(&self) -> Registry {
        Registry::lan(self)
    }

    /// Reads the core if the node runs.
    pub(crate) fn query<R>(&self, f: impl FnOnce(&Protocol) -> R) -> Result<R, Error> {
        let core = self.shared().core();
        self.handle.ensure_running()?;
        Ok(f(&core))
    }

    /// The registrations `filter` covers and a stream of registry events
    /// from that very moment.
    pub(crate) fn registry_watch(
        &self,
        filter: &Filter,
    ) -> Result<(Vec<Registration>, EventStream<RegistryEvent>), Error> {
        let mut core = self.shared().core();
        self.handle.ensure_running()?;
        // Events a command queued that the driver has not yet handed out
        // are already in the snapshot: out now, before we subscribe.
        publish_registry_events(self.shared(), &mut core);
        Ok((
            core.registrations(filter),
            self.shared().registry_events.stream(),
        ))
    }

    pub(crate) fn command<R>(
        &self,
        f: impl FnOnce(&mut Protocol) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let shared = self.shared();
        let result = {
            let mut core = shared.core();
            // Checked under the core lock: the driver says goodbye under it
            // after the stop is set, so nothing a command queues can follow
            // the goodbye onto the wire.
            self.handle.ensure_running()?;
            f(&mut core)
        };
        shared.wake.notify_one();
        result
    }
}

/// Datagrams handled under one lock before the driver gives other tasks a
/// turn; the rest of a burst is read on the next turn.
const RECV_BURST: usize = 64;

/// A deadline for the pinned sleep when the core has none (it is never
/// polled then): far enough never to fire, near enough not to overflow.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
}

/// The driver's periodic work besides the core's timers.
struct Timers {
    /// How often the host's interfaces are listed again.
    rescan: std::time::Duration,
    /// How often seed names are resolved again.
    seed_refresh: std::time::Duration,
}

async fn run(
    shared: Arc<Shared>,
    mut transport: UdpTransport,
    mut seeds: Seeds,
    timers: Timers,
    mut stop: StopSignal,
) {
    let mut buf = vec![0u8; 65_536];
    let mut outbox = Outbox::default();
    // One timer for the driver's life, moved only when the core's next
    // deadline changes: re-creating it every turn costs a timer-wheel
    // insertion and removal per datagram.
    let mut deadline = shared.core().poll_timeout();
    let sleep = tokio::time::sleep_until(deadline.map_or_else(far_future, Into::into));
    tokio::pin!(sleep);
    // The first listing was at start.
    let mut rescan =
        tokio::time::interval_at(tokio::time::Instant::now() + timers.rescan, timers.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut foreign_logged = 0;
    // Seed names resolve on tokio's blocking pool, in a task of their own:
    // a slow resolver never holds up the protocol.
    let mut lookup = seeds.has_names().then(|| tokio::spawn(seeds.lookups()));
    let next_lookup = tokio::time::sleep(far_future() - tokio::time::Instant::now());
    tokio::pin!(next_lookup);
    // A burst was cut short: the socket still holds datagrams.
    let mut more = false;
    loop {
        if more {
            // Let the consumers drain what the last burst handed them (on a
            // current-thread runtime they share our thread) before reading
            // on: the socket stays readable, so without this the driver
            // would run until tokio's budget stops it and overflow their
            // buffers in a flood.
            tokio::task::yield_now().await;
            more = false;
        }
        tokio::select! {
            biased;
            () = stop.requested() => {
                if let Some(lookup) = lookup.take() {
                    lookup.abort();
                }
                // Leave politely: peers drop us now, not at our deadline.
                shared.core().goodbye(Instant::now());
                flush(&shared, &transport, &mut outbox).await;
                break;
            }
            (family, ready) = transport.readable() => match ready {
                Ok(()) => match receive(&shared, &transport, family, &mut buf) {
                    Ok(cut_short) => more = cut_short,
                    // Readiness is still set: pause rather than spin on
                    // an error that repeats.
                    Err(()) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
                },
                Err(error) => {
                    tracing::debug!(%error, "waiting for the socket failed");
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            },
            _ = &mut sleep, if deadline.is_some() => shared.core().handle_timeout(Instant::now()),
            _ = shared.wake.notified() => {}
            _ = rescan.tick() => {
                apply_rescan(&shared, &mut transport);
                let dropped = shared.foreign_drops.load(Ordering::Relaxed);
                if dropped != foreign_logged {
                    // At most once per rescan period, however many.
                    tracing::debug!(
                        dropped = dropped - foreign_logged,
                        total = dropped,
                        "datagrams from interfaces not chosen were dropped"
                    );
                    foreign_logged = dropped;
                }
            }
            _ = shared.rescan.notified() => {
                if let Some(kinds) = lock(&shared.new_selection).take() {
                    transport.set_kinds(kinds);
                }
                apply_rescan(&shared, &mut transport);
            }
            resolved = async { lookup.as_mut().expect("guarded").await }, if lookup.is_some() => {
                lookup = None;
                match resolved {
                    Ok(resolved) => {
                        if seeds.apply(resolved) {
                            shared.core().set_seeds(Instant::now(), &seeds.addresses());
                        }
                    }
                    Err(error) => tracing::debug!(%error, "the seed lookup task failed"),
                }
                next_lookup.as_mut().reset(tokio::time::Instant::now() + timers.seed_refresh);
            }
            () = &mut next_lookup, if lookup.is_none() && seeds.has_names() => {
                lookup = Some(tokio::spawn(seeds.lookups()));
                next_lookup.as_mut().reset(far_future());
            }
        }
        let next = flush(&shared, &transport, &mut outbox).await;
        if next != deadline {
            deadline = next;
            if let Some(at) = deadline {
                sleep.as_mut().reset(at.into());
            }
        }
    }
    // Streams end when their senders go.
    shared.channels().clear();
    shared.events.close();
    shared.registry_events.close();
}

/// Lists the interfaces again and, if the choice changed, tells the core
/// and [`Discovery::interfaces`].
fn apply_rescan(shared: &Shared, transport: &mut UdpTransport) {
    if transport.rescan() {
        let chosen = transport.chosen();
        shared.core().set_interfaces(Instant::now(), chosen);
        *lock(&shared.interfaces) = chosen.to_vec();
    }
}

/// Reads what the socket holds, under one lock, until it would block (which
/// also clears tokio's readiness, so the next `readable` waits for a new
/// datagram) or a burst's worth has been handled. Returns whether the burst
/// was cut short (the socket may hold more), or `Err` after a failed read.
fn receive(
    shared: &Shared,
    transport: &UdpTransport,
    family: Family,
    buf: &mut [u8],
) -> Result<bool, ()> {
    let mut core = shared.core();
    let now = Instant::now();
    for _ in 0..RECV_BURST {
        match transport.try_recv(family, buf) {
            Ok(Incoming::Datagram { len, from, via }) => {
                core.handle_datagram_via(now, from, via.as_ref(), &buf[..len])
            }
            Ok(Incoming::Foreign) => {
                shared.foreign_drops.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => {
                // E.g. ECONNREFUSED from an earlier send: nothing was
                // consumed that the next read cannot get.
                tracing::debug!(%error, "recvmsg failed");
                return Err(());
            }
        }
    }
    Ok(true)
}

/// The driver's reusable buffers for what the core hands out.
#[derive(Default)]
struct Outbox {
    transmits: Vec<crate::protocol::Transmit>,
    events: Vec<Event>,
}

/// Hands the core's registry events to the watches. Called under the core
/// lock, so that a watch's snapshot and its events never overlap (see
/// `Discovery::registry_watch`).
fn publish_registry_events(shared: &Shared, core: &mut Protocol) {
    if let Some(first) = core.poll_registry_event() {
        let sender = shared.registry_events.sender();
        if let Some(sender) = &*sender {
            let _ = sender.send(first);
            while let Some(event) = core.poll_registry_event() {
                let _ = sender.send(event);
            }
        } else {
            while core.poll_registry_event().is_some() {}
        }
    }
}

/// Sends what the core queued and hands out its events; returns the core's
/// next deadline (read under the same lock).
async fn flush(shared: &Shared, transport: &UdpTransport, outbox: &mut Outbox) -> Option<Instant> {
    let deadline = {
        let mut core = shared.core();
        outbox
            .transmits
            .extend(std::iter::from_fn(|| core.poll_transmit()));
        outbox
            .events
            .extend(std::iter::from_fn(|| core.poll_event()));
        publish_registry_events(shared, &mut core);
        core.poll_timeout()
    };
    for transmit in outbox.transmits.drain(..) {
        transport.send(&transmit).await;
    }
    if outbox.events.is_empty() {
        return deadline;
    }
    let mut messages = None;
    let mut events = None;
    for event in outbox.events.drain(..) {
        match event {
            Event::Message(message) => {
                let channels = messages.get_or_insert_with(|| shared.channels());
                if let Some(sender) = channels.get(&message.channel) {
                    let _ = sender.send(message);
                }
            }
            other => {
                if let Event::Unauthenticated { .. } = &other {
                    // Two nodes with different keys are deaf to each other:
                    // say so in the log too, where an operator looks first.
                    tracing::warn!("{other}; is its key the same as ours?");
                }
                let events = events.get_or_insert_with(|| shared.events.sender());
                if let Some(sender) = &**events {
                    let _ = sender.send(other);
                }
            }
        }
    }
    deadline
}
