//! The driver: a thread of its own that owns the sockets and the timers,
//! feeds the [`Protocol`](crate::protocol::Protocol) core, and hands events
//! and channel messages to the user's tasks without ever blocking the
//! protocol.
//!
//! It waits in poll(2) for its sockets, its wake-up pipe and the core's next
//! deadline, and nothing else: an idle node wakes once per datagram and per
//! timer, as a minimal C program would, with no async runtime between the
//! kernel and the core. Under load, and for bursts, it lets datagrams
//! gather for a moment ([`GATHER_MAX`]) and reads them all at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::handle::{lock, Events, Handle, StopSignal};
use crate::stream::{EventStream, Subscription};

use crate::event::{ChannelMessage, Event, LocalState};
use crate::interface::{IfKind, Interface};
use crate::membership::{NodeId, Peer};
use crate::protocol::{check_channel, Protocol};
use crate::registry::{Filter, Registration, Registry, RegistryEvent};
use crate::transport::{Batch, Family, Incoming, Resolved, Seeds, UdpTransport, Wake, BATCH};
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
    wake: Wake,
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
    /// The last round of seed lookups, for the driver to apply.
    resolved: Mutex<Option<Resolved>>,
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
            wake: Wake::new().map_err(crate::transport::op("create the wake-up pipe"))?,
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
            resolved: Mutex::new(None),
            foreign_drops: AtomicU64::new(0),
        });
        let timers = Timers {
            rescan: config.transport.rescan_interval,
            seed_refresh: config.transport.seed_refresh,
        };
        let for_waker = shared.clone();
        let waker = Arc::new(move || for_waker.wake.wake());
        let handle = Handle::spawn_thread(shared, "shoal-driver", waker, move |shared, stop| {
            run(shared, transport, seeds, timers, stop)
        })?;
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
        self.shared().wake.wake();
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
        shared.wake.wake();
        result
    }
}

/// Datagrams read from one socket per wake-up before the driver looks at
/// its timers and commands again (the rest are read at once after).
const RECV_BURST: usize = 256;

/// When datagrams come in bursts or fast, the driver does not wake for
/// each: after a wake-up that found more than one datagram, or came within
/// [`BURST_GAP`] of the last read, it lets the next ones gather and reads
/// them all at once. A wake-up costs several times more than handling a
/// hello, so this is what makes a datagram cheap at thousands per second,
/// and what makes a cluster whose hellos arrive together (nodes started at
/// the same moment keep their phase) cost one wake-up per burst. It waits
/// long enough for about [`GATHER_TARGET`] datagrams at the rate just seen,
/// and at most this long: the price, in latency, for those datagrams only.
/// A datagram that comes alone is read as soon as it arrives.
const GATHER_MAX: Duration = Duration::from_millis(4);

/// Datagrams closer together than this are a burst (see [`GATHER_MAX`]).
const BURST_GAP: Duration = Duration::from_millis(1);

/// How many datagrams a gathering wait aims to collect: enough to make the
/// wake-up cheap per datagram, few enough that a flood (tens of thousands a
/// second) never fills the socket's buffer while the driver waits.
const GATHER_TARGET: u32 = 64;

/// When the driver reads next (see [`GATHER_MAX`]).
struct Gather {
    last_read: Instant,
    /// Sleep until then before waiting on the sockets (`None`: wait now).
    until: Option<Instant>,
}

impl Gather {
    fn new(now: Instant) -> Gather {
        Gather {
            last_read: now,
            until: None,
        }
    }

    /// After a wake-up that read `read` datagrams at `now`.
    fn after_read(&mut self, now: Instant, read: usize) {
        if read == 0 {
            self.until = None;
            return;
        }
        let since = now.saturating_duration_since(self.last_read);
        self.last_read = now;
        // A burst cut short has more waiting: no pause then.
        let burst = read < RECV_BURST && (read > 1 || since < BURST_GAP);
        self.until = burst.then(|| {
            // GATHER_TARGET datagrams at `read` per `since`.
            let span = since
                .saturating_mul(GATHER_TARGET)
                .checked_div(read as u32)
                .unwrap_or(GATHER_MAX);
            now + span.min(GATHER_MAX)
        });
    }
}

/// The driver's periodic work besides the core's timers.
struct Timers {
    /// How often the host's interfaces are listed again.
    rescan: Duration,
    /// How often seed names are resolved again.
    seed_refresh: Duration,
}

/// Which of the driver's file descriptors were ready.
#[derive(Default)]
struct Ready {
    wake: bool,
    v4: bool,
    v6: bool,
}

/// Waits until a socket or the wake-up pipe is readable, or `timeout`
/// (`None`: forever) has passed. Rounds the timeout up to poll's
/// millisecond, so that a deadline is never met early and spun on.
fn wait(transport: &UdpTransport, wake: &Wake, timeout: Option<Duration>) -> Ready {
    let (v4, v6) = transport.fds();
    let mut fds = [
        PollFd::new(wake.fd(), PollFlags::POLLIN),
        PollFd::new(v4, PollFlags::POLLIN),
        PollFd::new(v6.unwrap_or(v4), PollFlags::POLLIN),
    ];
    let n = if v6.is_some() { 3 } else { 2 };
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    };
    match poll(&mut fds[..n], timeout) {
        Ok(0) => return Ready::default(),
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ready::default(),
        Err(error) => {
            // Nothing poll can fail with here is lasting; pause rather
            // than spin if it were.
            tracing::debug!(%error, "poll failed");
            std::thread::sleep(Duration::from_millis(1));
            return Ready::default();
        }
    }
    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    Ready {
        wake: ready(&fds[0]),
        v4: ready(&fds[1]),
        v6: n == 3 && ready(&fds[2]),
    }
}

fn run(
    shared: Arc<Shared>,
    mut transport: UdpTransport,
    mut seeds: Seeds,
    timers: Timers,
    stop: StopSignal,
) {
    let mut batch = Batch::new();
    let mut outbox = Outbox::default();
    let mut deadline = shared.core().poll_timeout();
    // The first listing was at start.
    let mut next_rescan = Instant::now() + timers.rescan;
    let mut foreign_logged = 0;
    // When seed names are next resolved (`None`: a round is under way, or
    // there are no names).
    let mut next_lookup = seeds.has_names().then(Instant::now);
    let mut gather = Gather::new(Instant::now());
    loop {
        if let Some(until) = gather.until {
            // A timer due earlier cuts the gathering short.
            let until = deadline.map_or(until, |d| d.min(until));
            let now = Instant::now();
            if until > now {
                std::thread::sleep(until - now);
            }
        }
        let wake_at = [deadline, Some(next_rescan), next_lookup]
            .into_iter()
            .flatten()
            .min();
        let timeout = wake_at.map(|at| at.saturating_duration_since(Instant::now()));
        let ready = wait(&transport, &shared.wake, timeout);
        if ready.wake {
            shared.wake.clear();
        }
        if stop.is_requested() {
            // Leave politely: peers drop us now, not at our deadline.
            shared.core().goodbye(Instant::now());
            flush(&shared, &transport, &mut outbox);
            break;
        }
        let now = Instant::now();
        let mut read = 0;
        if ready.v4 {
            read += receive(&shared, &transport, Family::V4, &mut batch);
        }
        if ready.v6 {
            read += receive(&shared, &transport, Family::V6, &mut batch);
        }
        gather.after_read(now, read);
        if deadline.is_some_and(|d| d <= now) {
            shared.core().handle_timeout(now);
        }
        let new_selection = lock(&shared.new_selection).take();
        if let Some(kinds) = new_selection {
            transport.set_kinds(kinds);
            apply_rescan(&shared, &mut transport);
        }
        if now >= next_rescan {
            next_rescan = now + timers.rescan;
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
        let resolved = lock(&shared.resolved).take();
        if let Some(resolved) = resolved {
            if seeds.apply(resolved) {
                shared.core().set_seeds(now, &seeds.addresses());
            }
            next_lookup = Some(now + timers.seed_refresh);
        }
        if next_lookup.is_some_and(|at| at <= now) {
            next_lookup = None;
            start_lookups(&shared, &seeds);
        }
        deadline = flush(&shared, &transport, &mut outbox);
    }
    // Streams end when their senders go.
    shared.channels().clear();
    shared.events.close();
    shared.registry_events.close();
}

/// Resolves the seed names on a thread of its own (a slow resolver never
/// holds up the protocol), which hands the result to the driver and wakes
/// it.
fn start_lookups(shared: &Arc<Shared>, seeds: &Seeds) {
    let lookups = seeds.lookups();
    // A weak reference: a lookup that outlives the node keeps nothing alive.
    let shared = Arc::downgrade(shared);
    let started = std::thread::Builder::new()
        .name("shoal-seeds".into())
        .spawn(move || {
            let resolved = lookups();
            if let Some(shared) = shared.upgrade() {
                *lock(&shared.resolved) = Some(resolved);
                shared.wake.wake();
            }
        });
    if let Err(error) = started {
        tracing::warn!(%error, "could not start the seed lookups");
    }
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

/// Reads what `family`'s socket holds, [`BATCH`] datagrams per system
/// call and one core lock per batch, until a read comes back short (the
/// socket is then most likely empty; poll says if not) or [`RECV_BURST`]
/// datagrams have been handled; returns how many were read.
fn receive(shared: &Shared, transport: &UdpTransport, family: Family, batch: &mut Batch) -> usize {
    let mut read = 0;
    while read < RECV_BURST {
        let n = match transport.recv(family, batch) {
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(error) => {
                // E.g. ECONNREFUSED from an earlier send: nothing was
                // consumed that the next read cannot get.
                tracing::debug!(%error, "recvmmsg failed");
                break;
            }
        };
        let mut core = shared.core();
        let now = Instant::now();
        for incoming in transport.incoming(family, batch) {
            match incoming {
                Incoming::Datagram { data, from, via } => {
                    core.handle_datagram_via(now, from, via.as_ref(), data)
                }
                Incoming::Foreign => {
                    shared.foreign_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        read += n;
        if n < BATCH {
            break;
        }
    }
    read
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
fn flush(shared: &Shared, transport: &UdpTransport, outbox: &mut Outbox) -> Option<Instant> {
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
    transport.send_all(&outbox.transmits);
    outbox.transmits.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gathered(since_ms: f64, read: usize) -> Option<Duration> {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs_f64(since_ms / 1000.0);
        let mut gather = Gather::new(t0);
        gather.after_read(now, read);
        gather.until.map(|until| until - now)
    }

    #[test]
    fn a_lone_datagram_is_read_at_once() {
        assert_eq!(gathered(20.0, 1), None, "an idle node's datagram");
        assert_eq!(gathered(3.0, 0), None, "woken by a timer");
    }

    #[test]
    fn bursts_and_fast_datagrams_gather_up_to_the_cap() {
        // Two at once after a quiet spell: a burst, gathered for the cap.
        assert_eq!(gathered(20.0, 2), Some(GATHER_MAX));
        // One 0.2 ms after the last (5,000/s): the cap too.
        assert_eq!(gathered(0.2, 1), Some(GATHER_MAX));
        // 240 in 4 ms (60,000/s): about GATHER_TARGET datagrams' worth.
        let span = gathered(4.0, 240).unwrap();
        assert!(span > Duration::from_micros(1000) && span < Duration::from_micros(1100));
    }

    #[test]
    fn a_read_cut_short_is_followed_at_once() {
        assert_eq!(gathered(1.0, RECV_BURST), None);
    }
}
