//! Configuration: a builder with node-discovery's options (and shoal's
//! own), documented defaults and limits, and validation that names the
//! offending field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::interface::IfKind;
use std::time::Duration;

use crate::crypto::key::{Key, KeyError, SecretText};
use crate::membership::silence_budget;
use crate::wire::framing::ReassemblyLimits;

/// Which of our own packets a node ignores when they come back to it.
///
/// Broadcast and multicast loop back to the sender, so a node always hears
/// itself; node-discovery calls this option `ignore`.
///
/// ```
/// use shoal::{Config, Ignore};
/// // Several nodes in one process that should not see each other:
/// let config = Config::builder().ignore(Ignore::OwnProcess).build().unwrap();
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Ignore {
    /// Ignore packets from this Discovery instance (node-discovery's `'self'`, the default).
    #[default]
    OwnInstance,
    /// Ignore packets from every instance in this OS process (`'process'`).
    OwnProcess,
    /// Ignore nothing: a node sees itself as a peer.
    Nothing,
}

/// How packets are protected. Chosen with [`ConfigBuilder::encryption`];
/// with no key everything is plaintext node-discovery format.
///
/// The secure modes need a secure-mode key
/// ([`secret_key`](ConfigBuilder::secret_key) or
/// [`passphrase`](ConfigBuilder::passphrase)), the legacy mode
/// node-discovery's key string ([`legacy_key`](ConfigBuilder::legacy_key)).
///
/// The two mixed modes exist for switching a running cluster between
/// plaintext and secure mode node by node, with no node ever unable to hear
/// another: see SECURITY.md for the procedure.
///
/// ```
/// use shoal::{Config, Encryption};
/// // Talk to node-discovery peers that use `key: "s3cret"`:
/// let config = Config::builder()
///     .legacy_key("s3cret")
///     .encryption(Encryption::LegacyNodeDiscovery)
///     .build()
///     .unwrap();
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Encryption {
    /// Authenticated encryption (AES-256-GCM, per-sender keys, replay
    /// protection); plaintext is refused. The default whenever a key is given.
    #[default]
    Secure,
    /// Send secure, also accept plaintext: the second step of a rolling enablement.
    SecureAcceptPlaintext,
    /// Send plaintext, also accept secure: the first step of a rolling enablement.
    PlaintextAcceptSecure,
    /// node-discovery's cipher (AES-256-CBC, fixed IV, no integrity, no
    /// replay protection), only to talk to node-discovery peers that use a key.
    LegacyNodeDiscovery,
}

impl Encryption {
    /// Whether this mode sends sealed (secure) packets.
    pub fn sends_secure(self) -> bool {
        matches!(self, Encryption::Secure | Encryption::SecureAcceptPlaintext)
    }

    /// Whether this mode accepts sealed (secure) packets.
    pub fn accepts_secure(self) -> bool {
        !matches!(self, Encryption::LegacyNodeDiscovery)
    }

    /// Whether this mode accepts plaintext node-discovery packets.
    pub fn accepts_plaintext(self) -> bool {
        matches!(
            self,
            Encryption::SecureAcceptPlaintext | Encryption::PlaintextAcceptSecure
        )
    }
}

/// A validated configuration; build one with [`Config::builder`].
///
/// ```
/// use std::time::Duration;
/// let config = shoal::Config::builder()
///     .port(40_000)
///     .broadcast("127.255.255.255".parse().unwrap())
///     .hello_interval(Duration::from_millis(500))
///     .weight(0.7)
///     .build()
///     .expect("valid config");
/// assert_eq!(config.port(), 40_000);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) hello_interval: Duration,
    pub(crate) check_interval: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) master_timeout: Duration,
    pub(crate) missed_hellos: u32,
    pub(crate) promotion_delay: Duration,
    pub(crate) masters_required: usize,
    pub(crate) weight: Option<f64>,
    pub(crate) master_eligible: bool,
    /// Where the node listens and how it reaches the cluster.
    pub(crate) transport: TransportConfig,
    /// The secure-mode key (set by `build`, from `secret_key` or `passphrase`).
    pub(crate) secure_key: Option<Key>,
    /// node-discovery's key string, for its legacy cipher.
    pub(crate) legacy_key: Option<SecretText>,
    pub(crate) encryption: Encryption,
    pub(crate) max_datagram_size: usize,
    pub(crate) replay_tolerance: Duration,
    pub(crate) ignore: Ignore,
    pub(crate) ignore_data_errors: bool,
    pub(crate) reassembly: ReassemblyLimits,
    pub(crate) max_nodes: usize,
    pub(crate) event_capacity: usize,
    pub(crate) host_name: Option<String>,
    pub(crate) info: Option<serde_json::Value>,
    pub(crate) registry: crate::registry::RegistryLimits,
    /// Send nothing to the cluster address: peers are reached by unicast
    /// only (seeds and the peers they lead to).
    pub(crate) unicast_only: bool,
    /// At most this many peers are sent hellos and messages by unicast.
    pub(crate) max_unicast_peers: usize,
    /// The address peers should use for us, when it is not the one our
    /// datagrams come from.
    pub(crate) advertise_addr: Option<IpAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hello_interval: Duration::from_millis(400),
            check_interval: Duration::from_millis(400),
            node_timeout: Duration::from_millis(2600),
            master_timeout: Duration::from_millis(2600),
            missed_hellos: 5,
            promotion_delay: Duration::from_millis(1200),
            masters_required: 1,
            weight: None,
            master_eligible: true,
            transport: TransportConfig::default(),
            secure_key: None,
            legacy_key: None,
            encryption: Encryption::Secure,
            max_datagram_size: 1400,
            replay_tolerance: Duration::from_secs(30),
            ignore: Ignore::OwnInstance,
            ignore_data_errors: true,
            reassembly: ReassemblyLimits::default(),
            max_nodes: 10_000,
            event_capacity: 1024,
            host_name: None,
            info: None,
            registry: crate::registry::RegistryLimits::default(),
            unicast_only: false,
            max_unicast_peers: 128,
            advertise_addr: None,
        }
    }
}

const MAX_UNICAST_PEERS: usize = 4096;
const MAX_SEEDS: usize = 64;

/// A seed as `(host, port)`: `host:port`, `[v6]:port`, a bare address or a
/// bare host name (with the node's port).
fn parse_seed(text: &str, port: u16) -> Result<(String, u16), &'static str> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Ok((addr.ip().to_string(), addr.port()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip.to_string(), port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, p)) => match p.parse::<u16>() {
            Ok(p) if p != 0 => (host, p),
            _ => return Err("a seed's port must be 1 to 65535"),
        },
        None => (text, port),
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.len() <= 63)
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !name_ok {
        return Err("a seed is host:port, where host is an IP address or a DNS name");
    }
    Ok((host.to_owned(), port))
}

/// The limits of [`ConfigBuilder::interfaces`] (and of
/// `Discovery::set_interfaces`): at least one kind, no empty name, no
/// index 0.
pub(crate) fn check_interfaces(kinds: &[IfKind]) -> Result<(), ConfigError> {
    let limit = |reason| {
        Err(ConfigError::Limit {
            field: "interfaces",
            reason,
        })
    };
    if kinds.is_empty() {
        return limit("at least one IfKind (leave it unset for the default rule)");
    }
    for kind in kinds {
        match kind {
            IfKind::Name(name) if name.is_empty() => {
                return limit("an interface name is not empty")
            }
            IfKind::Index(0) => return limit("interface index 0 names no interface"),
            _ => {}
        }
    }
    Ok(())
}

/// Shortest and longest hello and check intervals.
const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// Longest node timeout, master timeout and promotion delay.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
const MAX_MISSED_HELLOS: u32 = 100;
const MAX_MASTERS: usize = 64;
const MAX_NODES: usize = 1_000_000;
const MAX_EVENT_CAPACITY: usize = 1_000_000;

/// The transport settings, grouped: where a node listens and how its
/// datagrams reach the cluster. Only the driver's transport reads them (the
/// protocol core addresses [`Destination`](crate::protocol::Destination)s),
/// so a new kind of transport adds its settings here and changes no core
/// code.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TransportConfig {
    pub(crate) bind: IpAddr,
    pub(crate) port: u16,
    pub(crate) broadcast: Ipv4Addr,
    pub(crate) multicast: Option<Ipv4Addr>,
    pub(crate) multicast_ttl: u32,
    pub(crate) multicast_interface: Ipv4Addr,
    /// Whether `broadcast` was set: then datagrams for the cluster go to
    /// that one address, not to each chosen interface's own.
    pub(crate) broadcast_set: bool,
    /// Which interfaces to use; `None`: the default rule (see
    /// [`ConfigBuilder::interfaces`]).
    pub(crate) interfaces: Option<Vec<IfKind>>,
    /// Also speak IPv6, on this link-local multicast group.
    pub(crate) ipv6: bool,
    pub(crate) ipv6_group: Ipv6Addr,
    /// How often the host's interfaces are listed again.
    pub(crate) rescan_interval: Duration,
    /// Seeds as given: host (name or address) and port.
    pub(crate) seeds: Vec<(String, u16)>,
    /// How often seed host names are resolved again.
    pub(crate) seed_refresh: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 12345,
            broadcast: Ipv4Addr::BROADCAST,
            multicast: None,
            multicast_ttl: 1,
            multicast_interface: Ipv4Addr::UNSPECIFIED,
            broadcast_set: false,
            interfaces: None,
            ipv6: false,
            ipv6_group: DEFAULT_IPV6_GROUP,
            rescan_interval: Duration::from_secs(5),
            seeds: Vec::new(),
            seed_refresh: Duration::from_secs(60),
        }
    }
}

/// The IPv6 link-local multicast group shoal uses by default: `ff02::5ea1`
/// (link-local scope, not assigned by IANA).
pub const DEFAULT_IPV6_GROUP: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x5ea1);

impl TransportConfig {
    /// Where datagrams for the whole cluster go: the multicast group if
    /// set, else the broadcast address, on the port.
    pub(crate) fn cluster(&self) -> std::net::SocketAddr {
        let ip = self.multicast.unwrap_or(self.broadcast);
        std::net::SocketAddr::from((ip, self.port))
    }
}

/// A configuration field that failed validation: [`ConfigBuilder::build`]
/// returned it and made no [`Config`]. The message names the field and the
/// values allowed.
///
/// ```
/// let err = shoal::Config::builder().masters_required(0).build().unwrap_err();
/// assert_eq!(err.field(), "masters_required");
/// assert_eq!(err.to_string(), "masters_required must be greater than zero");
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An interval or timeout is zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The field's builder name.
        field: &'static str,
    },
    /// `node_timeout` is shorter than `check_interval`.
    #[error(
        "node_timeout ({node_timeout:?}) must be at least check_interval ({check_interval:?})"
    )]
    NodeTimeoutBelowCheckInterval {
        /// The configured node timeout.
        node_timeout: Duration,
        /// The configured check interval.
        check_interval: Duration,
    },
    /// `master_timeout` is shorter than `node_timeout`.
    #[error(
        "master_timeout ({master_timeout:?}) must be at least node_timeout ({node_timeout:?})"
    )]
    MasterTimeoutBelowNodeTimeout {
        /// The configured master timeout.
        master_timeout: Duration,
        /// The configured node timeout.
        node_timeout: Duration,
    },
    /// An explicitly set `node_timeout` or `master_timeout` is shorter
    /// than the silence a peer that says hello as often as this node must
    /// survive, `hello_interval × (missed_hellos + 1.5)`: the timeout and
    /// `missed_hellos` contradict each other. (`missed_hellos` is 0 here
    /// unless it was set too.)
    #[error(
        "{field} ({timeout:?}) is shorter than hello_interval ({hello_interval:?}) × \
         (missed_hellos ({missed_hellos}) + 1.5) = {needed:?}, the silence a peer that says \
         hello as often as this node must survive: lengthen {field}, or lower \
         missed_hellos or hello_interval"
    )]
    TimeoutBelowMissedHellos {
        /// `"node_timeout"` or `"master_timeout"`.
        field: &'static str,
        /// The configured timeout.
        timeout: Duration,
        /// The configured hello interval.
        hello_interval: Duration,
        /// The lost hellos a peer must survive (0 unless set explicitly).
        missed_hellos: u32,
        /// `hello_interval × (missed_hellos + 1.5)`: the shortest timeout allowed.
        needed: Duration,
    },
    /// `multicast` is not an IPv4 multicast address (224.0.0.0/4).
    #[error("multicast: {0} is not a multicast address")]
    NotMulticast(Ipv4Addr),
    /// `weight` is NaN or infinite (JSON cannot carry it).
    #[error("weight must be a finite number, got {0}")]
    WeightNotFinite(f64),
    /// `port` is 0: every node must send to and listen on one known port.
    #[error("port must not be 0")]
    PortZero,
    /// `bind` is an IPv6 address; node-discovery's transport is IPv4 only.
    #[error("bind: {0} is not an IPv4 address")]
    BindNotIpv4(IpAddr),
    /// An [`encryption`](ConfigBuilder::encryption) mode needs a key that
    /// was not given: a secure mode needs
    /// [`secret_key`](ConfigBuilder::secret_key) or
    /// [`passphrase`](ConfigBuilder::passphrase),
    /// [`Encryption::LegacyNodeDiscovery`] needs
    /// [`legacy_key`](ConfigBuilder::legacy_key). Security settings never
    /// fail open: the node does not start in plaintext instead.
    #[error("{}", no_key_message(*.0))]
    NoKey(Encryption),
    /// A key ([`secret_key`](ConfigBuilder::secret_key)), passphrase or
    /// legacy key is unusable: empty, or text that is not a key (such as
    /// 63 hex digits). Nothing about the key is in the message.
    #[error("{field}: {error}")]
    Key {
        /// The builder method given it: `secret_key`, `passphrase` or `legacy_key`.
        field: &'static str,
        /// What is wrong with it.
        error: KeyError,
    },
    /// Both [`secret_key`](ConfigBuilder::secret_key) and
    /// [`passphrase`](ConfigBuilder::passphrase) were given: they are two
    /// ways to give the one secure-mode key.
    #[error("passphrase: secret_key is set too; give the secure-mode key one way")]
    KeyGivenTwice,
    /// A size limit is out of range.
    #[error("{field}: {reason}")]
    Limit {
        /// The field's builder name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The name of the builder method (field) at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::Zero { field }
            | ConfigError::Limit { field, .. }
            | ConfigError::TimeoutBelowMissedHellos { field, .. } => field,
            ConfigError::NodeTimeoutBelowCheckInterval { .. } => "node_timeout",
            ConfigError::MasterTimeoutBelowNodeTimeout { .. } => "master_timeout",
            ConfigError::NotMulticast(_) => "multicast",
            ConfigError::WeightNotFinite(_) => "weight",
            ConfigError::PortZero => "port",
            ConfigError::BindNotIpv4(_) => "bind",
            ConfigError::Key { field, .. } => field,
            ConfigError::KeyGivenTwice => "passphrase",
            ConfigError::NoKey(_) => "encryption",
        }
    }
}

/// [`ConfigError::NoKey`]'s message: which key the mode needs.
fn no_key_message(mode: Encryption) -> String {
    let needs = match mode {
        Encryption::LegacyNodeDiscovery => "legacy_key(..) (node-discovery's key)",
        _ => "secret_key(..) or passphrase(..) (legacy_key(..) is for LegacyNodeDiscovery only)",
    };
    format!("encryption {mode:?} needs {needs}")
}

/// Builds a [`Config`]. Every setter is optional; each one's documentation
/// gives its default, what changing it trades, and the values
/// [`build`](Self::build) accepts. The defaults suit a LAN of shoal nodes;
/// [`node_discovery_timings`](Self::node_discovery_timings) matches
/// node-discovery 0.2.1.
///
/// ```
/// use std::time::Duration;
/// let err = shoal::Config::builder()
///     .check_interval(Duration::from_secs(3))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "node_timeout");
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
    /// Whether [`encryption`](Self::encryption) was called: a mode asked
    /// for without a key is an error, never a silent plaintext node.
    encryption_set: bool,
    /// What [`secret_key`](Self::secret_key) was given; an error is
    /// reported by `build`, naming the field.
    secret_key: Option<Result<Key, KeyError>>,
    /// Stretched into the secure key by `build` (last: it costs ~35 ms).
    passphrase: Option<SecretText>,
    /// Which timings were set explicitly: a timeout the user chose is the
    /// deadline, not a floor that `missed_hellos` stretches.
    timings_set: TimingsSet,
    /// What [`seeds`](Self::seeds) was given, parsed by `build`.
    seeds_text: Vec<String>,
}

/// The timings a [`ConfigBuilder`] was given explicitly (setters or
/// [`node_discovery_timings`](ConfigBuilder::node_discovery_timings)).
#[derive(Debug, Clone, Copy, Default)]
struct TimingsSet {
    node_timeout: bool,
    master_timeout: bool,
    missed_hellos: bool,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.$name = value;
            self
        }
    };
    ($(#[$doc:meta])* transport.$name:ident: $ty:ty) => {
        $(#[$doc])*
        pub fn $name(mut self, value: $ty) -> Self {
            self.config.transport.$name = value;
            self
        }
    };
}

impl ConfigBuilder {
    setter!(
        /// How often this node says hello.
        ///
        /// Default 400 ms (node-discovery: 1 s). Shorter finds newcomers and
        /// detects silence sooner, at one datagram per interval to every node
        /// of the LAN; each node receives one hello per peer per interval.
        /// Limits: 10 ms to 60 s (peers clamp what a node announces to the
        /// same range). Peers are removed after
        /// [`node_timeout`](Self::node_timeout), so keep that a few hellos
        /// long: a node timeout set explicitly must be at least 1.5 × this
        /// (more with [`missed_hellos`](Self::missed_hellos)).
        ///
        /// ```
        /// # use std::time::Duration;
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.hello_interval(), Duration::from_millis(400));
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        hello_interval: Duration
    );
    setter!(
        /// How often the election is checked: a node with no master above it
        /// promotes itself at a check.
        ///
        /// Default 400 ms (node-discovery: 2 s). Shorter elects a new master
        /// sooner after the old one is gone, for a little CPU per tick.
        /// Peers expire at their own deadlines, not at these ticks. Limits:
        /// 10 ms to 60 s, and at most [`node_timeout`](Self::node_timeout).
        ///
        /// ```
        /// # use std::time::Duration;
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.check_interval(), Duration::from_millis(400));
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        check_interval: Duration
    );
    /// How long a peer may stay silent before it is removed.
    ///
    /// Default 2600 ms (node-discovery: 2 s). Shorter detects a crash
    /// sooner; longer survives more lost hellos.
    ///
    /// **Set explicitly, it is the deadline.** A peer that says hello at
    /// least as often as this node is removed `node_timeout` after its last
    /// hello. [`missed_hellos`](Self::missed_hellos) becomes 0 unless it is
    /// set too, and only a peer that says hello less often than this node
    /// is kept longer: 1.5 of *its* intervals, so that it is never dropped
    /// between two of its hellos (a node-discovery peer at 1 s against a
    /// node timeout of 1 s: 1.5 s). With `missed_hellos` set as well, such
    /// a peer gets `(missed_hellos + 1.5) ×` its interval, and `build`
    /// refuses a timeout that would cut short a peer saying hello as often
    /// as this node: one below `hello_interval × (missed_hellos + 1.5)`
    /// ([`ConfigError::TimeoutBelowMissedHellos`]).
    ///
    /// **Left unset** (with [`master_timeout`](Self::master_timeout)
    /// unset too), it is a floor that adapts to each peer: a peer is kept
    /// `(missed_hellos + 1.5) ×` its own interval when that is longer
    /// (`missed_hellos` defaults to 5): 2.6 s for shoal peers at 400 ms,
    /// 6.5 s for a node-discovery peer at 1 s.
    ///
    /// Limits: greater than zero, at least
    /// [`check_interval`](Self::check_interval), at most 1 hour; set
    /// explicitly, at least `hello_interval × (missed_hellos + 1.5)`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = Duration::from_secs;
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.node_timeout(), Duration::from_millis(2600));
    ///
    /// // node-discovery's timings: a silent peer goes after 2 s, not 6.5 s.
    /// let config = shoal::Config::builder()
    ///     .hello_interval(s(1))
    ///     .node_timeout(s(2))
    ///     .master_timeout(s(2))
    ///     .build()?;
    /// assert_eq!(config.missed_hellos(), 0); // the timeout alone decides
    ///
    /// // Five lost hellos of 1 s do not fit in 2 s.
    /// let err = shoal::Config::builder()
    ///     .hello_interval(s(1))
    ///     .node_timeout(s(2))
    ///     .master_timeout(s(2))
    ///     .missed_hellos(5)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "node_timeout");
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.config.node_timeout = timeout;
        self.timings_set.node_timeout = true;
        self
    }

    /// How long a master may stay silent before another node takes over:
    /// a removed master still counts as one, and nobody promotes, until it
    /// has been silent this long.
    ///
    /// Default 2600 ms (node-discovery: 2 s). Longer avoids two masters
    /// when a master is only briefly unreachable; shorter fails over
    /// sooner. A master that says goodbye is replaced at once whatever
    /// this is.
    ///
    /// A master is only replaced once it has been removed (see
    /// [`node_timeout`](Self::node_timeout)), so this is honoured the same
    /// way: **set explicitly**, it makes
    /// [`missed_hellos`](Self::missed_hellos) 0 unless that is set too,
    /// and a master that says hello at least as often as this node is
    /// replaced `master_timeout` after its last hello; **left unset** (with
    /// `node_timeout` unset too) a master is replaced at the later of this
    /// and its adaptive removal.
    ///
    /// Limits: greater than zero, at least
    /// [`node_timeout`](Self::node_timeout), at most 1 hour; set
    /// explicitly, at least `hello_interval × (missed_hellos + 1.5)`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.master_timeout(), Duration::from_millis(2600));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn master_timeout(mut self, timeout: Duration) -> Self {
        self.config.master_timeout = timeout;
        self.timings_set.master_timeout = true;
        self
    }

    /// How many consecutive lost hellos a peer survives: each peer is kept
    /// at least `(missed_hellos + 1.5) ×` the interval *that peer* says
    /// hello at (node-discovery peers: 1 s) after its last hello.
    ///
    /// Default 5, which with 400 ms hellos gives the 2.6 s node timeout;
    /// with 5 % independent loss that is about 1e-4 false removals per
    /// peer-hour (node-discovery's timings: about 4.6). Larger is more
    /// tolerant of loss and slower to notice a crash of a slow peer.
    /// 0 gives node-discovery's behaviour (the node timeout alone, but
    /// never less than 1.5 of a peer's intervals).
    ///
    /// The default applies only when neither
    /// [`node_timeout`](Self::node_timeout) nor
    /// [`master_timeout`](Self::master_timeout) is set explicitly: a
    /// timeout set explicitly makes it 0, so that the timeout means what it
    /// says. Set both to have both; `build` then checks that
    /// `hello_interval × (missed_hellos + 1.5)` fits in each timeout set.
    /// Limits: at most 100.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.missed_hellos(), 5);
    /// let config = shoal::Config::builder().node_timeout(Duration::from_secs(2)).build()?;
    /// assert_eq!(config.missed_hellos(), 0);
    /// let config = shoal::Config::builder()
    ///     .node_timeout(Duration::from_secs(2))
    ///     .missed_hellos(3) // 3 × 400 ms + 600 ms = 1.8 s fits in 2 s
    ///     .build()?;
    /// assert_eq!(config.missed_hellos(), 3);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn missed_hellos(mut self, hellos: u32) -> Self {
        self.config.missed_hellos = hellos;
        self.timings_set.missed_hellos = true;
        self
    }

    setter!(
        /// A newly started node does not promote itself for this long, so
        /// that it hears its peers (and their master) first.
        ///
        /// Default 1200 ms. shoal peers answer a newcomer within
        /// milliseconds, node-discovery peers within their hello interval
        /// (1 s). Zero allows promotion at the first check, at the risk of a
        /// brief second master when a node joins a running cluster. Limits:
        /// at most 1 hour.
        ///
        /// ```
        /// # use std::time::Duration;
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.promotion_delay(), Duration::from_millis(1200));
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        promotion_delay: Duration
    );
    setter!(
        /// How many masters the cluster elects: the `masters_required`
        /// highest-ranked eligible nodes.
        ///
        /// Default 1. Limits: 1 to 64 (beyond that, the election no longer
        /// chooses: every eligible node of an ordinary LAN is a master).
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.masters_required(), 1);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        masters_required: usize
    );
    setter!(
        /// Whether this node may become master.
        ///
        /// Default true. A node that may not still hears masters and gets
        /// [`Event::Master`](crate::Event::Master).
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert!(config.master_eligible());
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        master_eligible: bool
    );
    setter!(
        /// The local address the socket binds.
        ///
        /// Default `0.0.0.0`, every interface. Linux delivers broadcasts only
        /// to sockets bound to the wildcard (or the broadcast address), so a
        /// broadcasting node bound to one interface's address hears nothing.
        /// Limits: an IPv4 address, and either `0.0.0.0`, the
        /// [`broadcast`](Self::broadcast) address, or the
        /// [`multicast`](Self::multicast) group: `build` refuses any other,
        /// since the node would hear nothing.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.bind(), std::net::Ipv4Addr::UNSPECIFIED);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        transport.bind: IpAddr
    );
    setter!(
        /// The UDP port every node listens on and sends to. Nodes on
        /// different ports form different clusters.
        ///
        /// Default 12345, node-discovery's. Limits: not 0.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.port(), 12345);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        transport.port: u16
    );
    /// Where datagrams for the whole cluster go when no
    /// [`multicast`](Self::multicast) group is set.
    ///
    /// Default: on each chosen [interface](Self::interfaces), its own
    /// subnet's broadcast address. Set, datagrams go to this one address
    /// only: `255.255.255.255` leaves by the default route's interface
    /// only, a directed broadcast such as `192.168.1.255` picks the LAN, and `127.255.255.255` keeps every packet on this host
    /// (what the tests and examples use). Limits: not `0.0.0.0`, and not a
    /// multicast group (set [`multicast`](Self::multicast) for that).
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.broadcast(), std::net::Ipv4Addr::BROADCAST);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn broadcast(mut self, addr: Ipv4Addr) -> Self {
        self.config.transport.broadcast = addr;
        self.config.transport.broadcast_set = true;
        self
    }
    setter!(
        /// How many routers a multicast datagram may cross.
        ///
        /// Default 1, the local network only; 0 keeps it on this host.
        /// Limits: 0 to 255.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.multicast_ttl(), 1);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        transport.multicast_ttl: u32
    );
    setter!(
        /// The local interface address multicast is joined and sent on,
        /// instead of every chosen [interface](Self::interfaces).
        ///
        /// Default `0.0.0.0`: the group is joined and sent to on each
        /// chosen interface. Set, the node joins and sends on this one
        /// address only, as node-discovery does (`0.0.0.0` given together
        /// with an explicit [`broadcast`](Self::broadcast): the kernel picks,
        /// which is the default route's interface). `127.0.0.1` keeps
        /// multicast on this host. Limits: not a multicast or broadcast
        /// address.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.multicast_interface(), std::net::Ipv4Addr::UNSPECIFIED);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        transport.multicast_interface: Ipv4Addr
    );
    setter!(
        /// Which of our own packets to ignore when they loop back.
        ///
        /// Default [`Ignore::OwnInstance`] (node-discovery's `'self'`).
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.ignore(), shoal::Ignore::OwnInstance);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        ignore: Ignore
    );
    setter!(
        /// Whether undecodable packets are only counted
        /// ([`Stats::dropped`](crate::Stats::dropped)), or also reported as
        /// [`Event::DataError`](crate::Event::DataError).
        ///
        /// Default true (counted only): on a busy or hostile LAN every bad
        /// packet would otherwise be an event.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert!(config.ignore_data_errors());
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        ignore_data_errors: bool
    );
    setter!(
        /// Most peers kept in the table; hellos from further new nodes are
        /// dropped and counted (`dropped.table_full`).
        ///
        /// Default 10 000. It bounds the memory a flood of forged node ids
        /// can take (about 1.3 KB a peer), and sizes the secure mode's
        /// cipher cache and replay table. Limits: 1 to 1,000,000.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.max_nodes(), 10_000);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        max_nodes: usize
    );
    setter!(
        /// Items buffered per event stream and per channel subscription;
        /// a consumer that falls further behind loses the oldest and is told
        /// ([`Event::Lagged`](crate::Event::Lagged),
        /// [`Subscription::missed`](crate::Subscription::missed)). The
        /// protocol never waits for a consumer.
        ///
        /// Default 1024. Limits: 1 to 1,000,000.
        ///
        /// ```
        /// let config = shoal::Config::builder().build()?;
        /// assert_eq!(config.event_capacity(), 1024);
        /// # Ok::<(), shoal::ConfigError>(())
        /// ```
        event_capacity: usize
    );

    /// node-discovery 0.2.1's exact timings, for clusters that mix shoal and
    /// node-discovery nodes and want both to expire peers alike: hello 1 s,
    /// check 2 s, node and master timeouts 2 s, `missed_hellos` 0, no
    /// promotion delay. They drop a peer after two lost hellos.
    ///
    /// The timeouts and `missed_hellos` count as set explicitly (see
    /// [`node_timeout`](Self::node_timeout)): a silent peer goes after
    /// exactly 2 s, and a later `hello_interval` above 1333 ms, or
    /// `missed_hellos` above 0, is refused unless the timeouts grow too.
    ///
    /// ```
    /// let config = shoal::Config::builder().node_discovery_timings().build()?;
    /// assert_eq!(config.node_timeout(), std::time::Duration::from_secs(2));
    /// assert_eq!(config.missed_hellos(), 0);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn node_discovery_timings(mut self) -> Self {
        let ms = Duration::from_millis;
        self.config.hello_interval = ms(1000);
        self.config.check_interval = ms(2000);
        self.config.node_timeout = ms(2000);
        self.config.master_timeout = ms(2000);
        self.config.missed_hellos = 0;
        self.config.promotion_delay = Duration::ZERO;
        self.timings_set = TimingsSet {
            node_timeout: true,
            master_timeout: true,
            missed_hellos: true,
        };
        self
    }

    /// Election weight: the highest-weighted eligible node becomes master
    /// (ties go to the larger id).
    ///
    /// Default: a random number in [0, 1) drawn at start, so that the
    /// master is arbitrary but stable. Limits: finite (JSON cannot carry
    /// NaN or infinity).
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.weight(), None); // drawn at random by each node
    /// assert_eq!(shoal::Config::builder().weight(0.9).build()?.weight(), Some(0.9));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn weight(mut self, weight: f64) -> Self {
        self.config.weight = Some(weight);
        self
    }

    /// Send to this multicast group instead of broadcasting (and join it).
    ///
    /// Default: none, broadcast. Multicast crosses switches that filter
    /// broadcast and reaches only nodes that joined the group. The group
    /// is joined on each chosen [interface](Self::interfaces), by index,
    /// and each datagram for the cluster is sent once per interface with
    /// that interface as the outgoing one, [`multicast_ttl`](Self::multicast_ttl)
    /// routers far; [`multicast_interface`](Self::multicast_interface)
    /// pins one interface instead. Limits: an IPv4 multicast address
    /// (224.0.0.0/4).
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.multicast(), None);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn multicast(mut self, group: Ipv4Addr) -> Self {
        self.config.transport.multicast = Some(group);
        self
    }

    /// Which network interfaces to use: every address, of an interface
    /// that is up, that any of `kinds` matches ([`IfKind`]: all, by name,
    /// by address, by index, IPv4 only, IPv6 only, loopback, or a
    /// predicate).
    ///
    /// Default (not called): every interface that is up (administratively
    /// and with a carrier), multicast-capable, and neither loopback,
    /// point-to-point nor a tunnel (tun, WireGuard, GRE, IP-in-IP, PPP:
    /// links with no link layer, on which broadcast reaches at most one far
    /// end), nor a bridge whose ports are all virtual (docker0, virbr0,
    /// cni0: this host's containers and virtual machines, not the LAN; a
    /// bridge holding a physical port, a VM host's `br0`, is the LAN); of
    /// those, the IPv4 addresses and, with [`ipv6`](Self::ipv6), the IPv6
    /// link-local ones. If that leaves nothing, the loopback interface, so
    /// that a host with no network still finds the nodes on itself. The
    /// rule is [`interface::select`](crate::interface::select). To reach
    /// the containers on docker0 too, name it (with the LAN) or choose
    /// with a [`Predicate`](crate::Predicate).
    ///
    /// On each chosen interface the node sends where that interface's
    /// peers hear it (its IPv4 subnet's directed broadcast address, or the
    /// multicast group with that interface as the outgoing one; on IPv6,
    /// `ff02::5ea1` scoped to it), and it drops datagrams that arrive on
    /// any other interface. The host's interfaces are listed again every
    /// [`rescan_interval`](Self::rescan_interval), and
    /// [`Discovery::set_interfaces`](crate::Discovery::set_interfaces)
    /// changes the choice while the node runs.
    ///
    /// An explicit [`broadcast`](Self::broadcast) address or
    /// [`multicast_interface`](Self::multicast_interface) means one
    /// destination instead, as in node-discovery: cluster datagrams go to
    /// that address only, and (unless `interfaces` is also called)
    /// datagrams from every interface are heard.
    ///
    /// Limits: at least one kind; no empty name and no index 0.
    ///
    /// ```
    /// use shoal::IfKind;
    /// let config = shoal::Config::builder().interfaces([IfKind::Name("eth0".into())]).build()?;
    /// assert_eq!(config.interfaces(), Some(&[IfKind::Name("eth0".into())][..]));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn interfaces(mut self, kinds: impl IntoIterator<Item = IfKind>) -> Self {
        self.config.transport.interfaces = Some(kinds.into_iter().collect());
        self
    }

    /// Also speak IPv6: a second socket, `[::]:port` (IPv6 only), joined
    /// to the link-local group [`ipv6_group`](Self::ipv6_group) on each
    /// chosen interface by its index, and cluster datagrams sent to
    /// `[group%index]:port` on each. Peers' link-local addresses keep
    /// their scope (the interface index), so unicast replies leave by the
    /// right link. A node reachable on both IPv4 and IPv6 is one peer.
    ///
    /// Default off: IPv4 reaches every LAN a dual-stack host is on, and one
    /// socket is less to open. Turn it on for links with no IPv4 address,
    /// or to meet IPv6-only nodes. Limits: link-local multicast goes one
    /// link, never through a router (use [`seeds`](Self::seeds) beyond).
    ///
    /// ```
    /// let config = shoal::Config::builder().ipv6(true).build()?;
    /// assert!(config.ipv6());
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn ipv6(mut self, on: bool) -> Self {
        self.config.transport.ipv6 = on;
        self
    }

    /// The IPv6 multicast group, when [`ipv6`](Self::ipv6) is on.
    ///
    /// Default [`DEFAULT_IPV6_GROUP`](crate::DEFAULT_IPV6_GROUP),
    /// `ff02::5ea1`: link-local scope (`ff02::/16`), so it never leaves the
    /// link, and unassigned by IANA, so nothing else listens there. Choose
    /// another to keep two clusters on one link apart. Limits: an IPv6
    /// multicast address (`ff00::/8`); a wider scope than link-local still
    /// goes out of each chosen interface, but is routed only where
    /// multicast routing is set up.
    ///
    /// ```
    /// let config = shoal::Config::builder().ipv6_group("ff02::1234".parse().unwrap()).build()?;
    /// assert_eq!(config.ipv6_group(), "ff02::1234".parse::<std::net::Ipv6Addr>().unwrap());
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn ipv6_group(mut self, group: Ipv6Addr) -> Self {
        self.config.transport.ipv6_group = group;
        self
    }

    /// How often the host's interfaces are listed again, to pick up one
    /// that appeared, went or changed address: a new interface is used,
    /// and its multicast groups joined, within this time; sends to one that
    /// went stop.
    ///
    /// Default 5 s. A listing is one netlink dump (well under a
    /// millisecond), so shorter costs little; longer leaves a new link
    /// unused for longer. Limits: 100 ms to 10 min.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = shoal::Config::builder().rescan_interval(Duration::from_secs(1)).build()?;
    /// assert_eq!(config.rescan_interval(), Duration::from_secs(1));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn rescan_interval(mut self, every: Duration) -> Self {
        self.config.transport.rescan_interval = every;
        self
    }

    /// Peers to reach by unicast, for networks that carry no broadcast
    /// (cloud VPCs, most of Kubernetes) or subnets a router joins:
    /// `host:port`, `[v6]:port`, a bare address or a bare name, where
    /// host is an address or a DNS name. Without a port, the node's
    /// [`port`](Self::port). Addresses are used at once; names are
    /// resolved with the system resolver at start and again every
    /// [`seed_refresh`](Self::seed_refresh), off the protocol's task (a
    /// Kubernetes headless service works: every pod's address is a seed).
    /// A lookup that fails keeps that seed's previous addresses, and is
    /// logged (a warning once per outage). One reachable seed is enough:
    /// the peers it knows are learned from the hellos.
    ///
    /// Default none. Seeds and broadcast work together. Limits: at most
    /// 64 seeds, each an IP address or a valid DNS name with a port 1 to
    /// 65535.
    ///
    /// ```
    /// let config = shoal::Config::builder().seeds(["10.0.1.7:12345", "shoal.default.svc"]).build()?;
    /// assert_eq!(config.seeds().count(), 2);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn seeds<S: AsRef<str>>(mut self, seeds: impl IntoIterator<Item = S>) -> Self {
        self.seeds_text = seeds.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// How often seed host names are resolved again (addresses are never
    /// looked up).
    ///
    /// Default 60 s: a pod that moved is followed within a minute, at one
    /// lookup per name per minute. Shorter follows faster and asks the
    /// resolver more often. Limits: 1 s to 1 hour.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let config = shoal::Config::builder().seed_refresh(Duration::from_secs(5)).build()?;
    /// assert_eq!(config.seed_refresh(), Duration::from_secs(5));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn seed_refresh(mut self, every: Duration) -> Self {
        self.config.transport.seed_refresh = every;
        self
    }

    /// Send nothing to the broadcast or multicast address: reach peers by
    /// unicast only, from the [`seeds`](Self::seeds) on (cloud networks,
    /// where broadcast and multicast go nowhere and only cost a send per
    /// interface).
    ///
    /// Default off: broadcast (or multicast) on the chosen interfaces, and
    /// unicast to seeds and to peers that are not on those interfaces'
    /// subnets. On, every peer costs a datagram per hello and per message
    /// (see [`max_unicast_peers`](Self::max_unicast_peers)). A node with
    /// this on and no seeds is found only by nodes that have it as a seed.
    ///
    /// ```
    /// let config = shoal::Config::builder().seeds(["10.0.0.2"]).unicast_only(true).build()?;
    /// assert!(config.unicast_only());
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn unicast_only(mut self, on: bool) -> Self {
        self.config.unicast_only = on;
        self
    }

    /// At most this many peers are sent each hello and message by unicast.
    ///
    /// The cost of unicast: each hello and each channel message goes once
    /// to each peer that does not hear our broadcast (every peer, with
    /// [`unicast_only`](Self::unicast_only)), plus each seed not yet
    /// heard from. A cluster of N nodes on unicast alone sends about
    /// N × (N − 1) datagrams per [`hello_interval`](Self::hello_interval):
    /// 100 nodes at the default 400 ms, about 25 000 datagrams a second in
    /// all, 250 per node. Past the limit, each hello goes to the next
    /// `max_unicast_peers` peers in turn, so each is reached every
    /// ⌈N / limit⌉ hellos: keep ⌈N / limit⌉ × hello_interval well inside
    /// [`node_timeout`](Self::node_timeout), or peers are dropped. Beyond a
    /// few hundred nodes on unicast, a gossip protocol (SWIM, as in Serf or
    /// memberlist) scales better than shoal's all-to-all hellos.
    ///
    /// Default 128. Limits: 1 to 4096.
    ///
    /// ```
    /// let config = shoal::Config::builder().max_unicast_peers(32).build()?;
    /// assert_eq!(config.max_unicast_peers(), 32);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn max_unicast_peers(mut self, peers: usize) -> Self {
        self.config.max_unicast_peers = peers;
        self
    }

    /// The address peers should reach us at, when it is not the one our
    /// datagrams come from (behind NAT, or a container's published port).
    ///
    /// Default none: peers use the source address of our datagrams.
    ///
    /// ```
    /// let config = shoal::Config::builder().advertise_addr("203.0.113.9".parse().unwrap()).build()?;
    /// assert_eq!(config.advertise_addr(), Some("203.0.113.9".parse().unwrap()));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn advertise_addr(mut self, addr: IpAddr) -> Self {
        self.config.advertise_addr = Some(addr);
        self
    }

    /// Protect packets with this secure-mode key: 32 random bytes, given
    /// as a [`Key`] or as its text (64 hex digits or 44 characters of
    /// base64, read by [`Key::parse`]).
    ///
    /// Default: none, plaintext node-discovery packets that anyone on the
    /// LAN can read and forge. With a key the mode is
    /// [`Encryption::Secure`] unless [`encryption`](Self::encryption) says
    /// otherwise. Every node of the cluster needs the same key (or, during
    /// a rotation, a keyring that holds it: see
    /// [`Discovery::install_key`](crate::Discovery::install_key)).
    ///
    /// Limits: text that is not exactly a key (63 hex digits, base64 of 31
    /// bytes, a passphrase) makes `build` fail with [`ConfigError::Key`]
    /// naming `secret_key`; it is never taken for a passphrase. Give either
    /// this or [`passphrase`](Self::passphrase), not both.
    ///
    /// ```
    /// use shoal::{Config, ConfigError, Encryption, Key, KeyError};
    ///
    /// // A fresh key: share its text (key.to_base64()) with the other nodes.
    /// let key = Key::generate(&mut rand::rngs::OsRng);
    /// let config = Config::builder().secret_key(key).build()?;
    /// assert_eq!(config.encryption(), Some(Encryption::Secure));
    ///
    /// // The same key as text, from a file or an environment variable:
    /// let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    /// Config::builder().secret_key(hex).build()?;
    ///
    /// // One digit short: an error that names the field, not a passphrase.
    /// let err = Config::builder().secret_key(&hex[1..]).build().unwrap_err();
    /// assert_eq!(err, ConfigError::Key { field: "secret_key", error: KeyError::HexLength(63) });
    /// assert_eq!(err.to_string(), "secret_key: a hex key has 64 hex digits, not 63 characters");
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn secret_key<K>(mut self, key: K) -> Self
    where
        K: TryInto<Key>,
        K::Error: Into<KeyError>,
    {
        self.secret_key = Some(key.try_into().map_err(Into::into));
        self
    }

    /// Protect packets with a key derived from this passphrase with
    /// Argon2id ([`Key::from_passphrase`]), once, in `build` (about 35 ms
    /// and 19 MiB).
    ///
    /// Default: none. The mode is [`Encryption::Secure`] unless
    /// [`encryption`](Self::encryption) says otherwise. A passphrase is
    /// only as strong as it is hard to guess: anyone who captures one
    /// sealed packet can test guesses offline, each costing them one
    /// Argon2id. A random [`secret_key`](Self::secret_key) is the better
    /// choice. The passphrase is used exactly as given: no trimming.
    ///
    /// Limits: not empty. Give either this or
    /// [`secret_key`](Self::secret_key), not both
    /// ([`ConfigError::KeyGivenTwice`]).
    ///
    /// ```
    /// use shoal::{Config, ConfigError, Encryption, Key};
    ///
    /// let config = Config::builder().passphrase("correct horse battery staple").build()?;
    /// assert_eq!(config.encryption(), Some(Encryption::Secure));
    ///
    /// let err = Config::builder().passphrase("").build().unwrap_err();
    /// assert_eq!(err.field(), "passphrase");
    /// let err = Config::builder()
    ///     .passphrase("correct horse battery staple")
    ///     .secret_key(Key::from_bytes([7; 32]))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, ConfigError::KeyGivenTwice);
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(SecretText::new(passphrase.into()));
        self
    }

    /// node-discovery's `key` option, for its legacy cipher: needs
    /// [`encryption`](Self::encryption)`(`[`Encryption::LegacyNodeDiscovery`]`)`.
    ///
    /// Default: none. That cipher (AES-256-CBC with a key and IV from MD5
    /// of this string, no integrity, no replay protection) exists only to
    /// talk to node-discovery peers that use a key; among shoal nodes use
    /// [`secret_key`](Self::secret_key). Given with a secure-mode key too,
    /// the node can switch between the two at run time
    /// ([`Discovery::set_encryption`](crate::Discovery::set_encryption)).
    ///
    /// Limits: not empty. Without `encryption(LegacyNodeDiscovery)` (or a
    /// secure-mode key), `build` fails with [`ConfigError::NoKey`]: this
    /// string is never used as a secure-mode key.
    ///
    /// ```
    /// use shoal::{Config, ConfigError, Encryption};
    ///
    /// let config = Config::builder()
    ///     .legacy_key("s3cret")
    ///     .encryption(Encryption::LegacyNodeDiscovery)
    ///     .build()?;
    /// assert_eq!(config.encryption(), Some(Encryption::LegacyNodeDiscovery));
    ///
    /// let err = Config::builder().legacy_key("s3cret").build().unwrap_err();
    /// assert_eq!(err, ConfigError::NoKey(Encryption::Secure));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn legacy_key(mut self, key: impl Into<String>) -> Self {
        self.config.legacy_key = Some(SecretText::new(key.into()));
        self
    }

    /// How packets are protected when a key is set.
    ///
    /// Default [`Encryption::Secure`]. Security settings never fail open:
    /// asking for a mode without its key (see [`Encryption`]) makes `build`
    /// fail with [`ConfigError::NoKey`] rather than start a plaintext node.
    ///
    /// ```
    /// use shoal::{ConfigError, Encryption};
    /// let config = shoal::Config::builder()
    ///     .passphrase("correct horse battery staple")
    ///     .encryption(Encryption::SecureAcceptPlaintext)
    ///     .build()?;
    /// assert_eq!(config.encryption(), Some(Encryption::SecureAcceptPlaintext));
    ///
    /// let err = shoal::Config::builder().encryption(Encryption::Secure).build().unwrap_err();
    /// assert_eq!(err, ConfigError::NoKey(Encryption::Secure));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn encryption(mut self, mode: Encryption) -> Self {
        self.config.encryption = mode;
        self.encryption_set = true;
        self
    }

    /// Largest datagram sent in secure mode; larger messages are split into
    /// authenticated fragments.
    ///
    /// Default 1400 bytes, which fits a 1500-byte Ethernet MTU with room for
    /// IP, UDP and a tunnel header. Larger datagrams are fragmented by IP,
    /// and one lost fragment loses the datagram. Limits: 126 to 65 507
    /// bytes.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.max_datagram_size(), 1400);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn max_datagram_size(mut self, bytes: usize) -> Self {
        self.config.max_datagram_size = bytes;
        self
    }

    /// Secure mode: how far a sender's clock may be from ours when we hear
    /// it for the first time (or again after it was silent this long);
    /// older packets are refused as replays.
    ///
    /// Default 30 s. Longer tolerates worse clocks, and lets a recorded
    /// packet be replayed to a node that restarted within that window.
    /// Limits: greater than zero.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.replay_tolerance(), std::time::Duration::from_secs(30));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn replay_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.replay_tolerance = tolerance;
        self
    }

    /// The value advertised from the very first hello on
    /// (node-discovery's `info`); change it later with
    /// [`Discovery::advertise`](crate::Discovery::advertise).
    ///
    /// Default: none. Limits: its JSON, with the hello around it, fits in
    /// [`max_message_size`](Self::max_message_size). Every hello carries
    /// it, so keep it small: a value over about 1 KB makes every hello a
    /// multi-datagram message.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.advertised(), None);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn advertise(mut self, info: serde_json::Value) -> Self {
        self.config.info = Some(info);
        self
    }

    /// The host name sent in every envelope (node-discovery's `hostName`).
    ///
    /// Default: none, meaning the OS host name, read when the node starts.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.host_name(), None);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn host_name(mut self, name: impl Into<String>) -> Self {
        self.config.host_name = Some(name.into());
        self
    }

    /// Largest message accepted or sent, in bytes, checked before any
    /// allocation. A larger outgoing message is refused with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
    ///
    /// Default 1 MiB. Limits: 64 bytes to 4 GiB (the `WRAP` length field
    /// is 32 bits).
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.max_message_size(), 1 << 20);
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.reassembly.max_message = bytes;
        self
    }

    /// How much of the LAN's registry this node holds at most: see
    /// [`RegistryLimits`](crate::registry::RegistryLimits). Each must be at
    /// least 1 and `per_owner` at most `total`; a registration must also fit
    /// in one message ([`max_message_size`](Self::max_message_size)).
    ///
    /// ```
    /// use shoal::registry::RegistryLimits;
    ///
    /// let limits = RegistryLimits { total: 100_000, ..RegistryLimits::default() };
    /// let config = shoal::Config::builder().registry_limits(limits).build()?;
    /// assert_eq!(config.registry_limits().total, 100_000);
    /// let limits = RegistryLimits { per_owner: 0, ..RegistryLimits::default() };
    /// assert!(shoal::Config::builder().registry_limits(limits).build().is_err());
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn registry_limits(mut self, limits: crate::registry::RegistryLimits) -> Self {
        self.config.registry = limits;
        self
    }

    /// Most incomplete multi-datagram messages held at once, and the bytes
    /// they may hold together. Past either limit a new message's first
    /// datagram is dropped and counted (`dropped.reassembly_full`).
    ///
    /// Defaults 256 messages and 4 MiB: what a hostile sender can make a
    /// node hold. Limits: at least 1 of each.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.reassembly_limits(), (256, 4 << 20));
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn reassembly_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.config.reassembly.max_pending = messages;
        self.config.reassembly.max_pending_bytes = bytes;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut c = self.config;
        let set = self.timings_set;
        for (field, value) in [
            ("hello_interval", c.hello_interval),
            ("check_interval", c.check_interval),
            ("node_timeout", c.node_timeout),
            ("master_timeout", c.master_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero { field });
            }
        }
        let limit = |field, reason| Err(ConfigError::Limit { field, reason });
        // Peers clamp the interval a node announces to the same range.
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&c.hello_interval) {
            return limit("hello_interval", "must be between 10 ms and 60 s");
        }
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&c.check_interval) {
            return limit("check_interval", "must be between 10 ms and 60 s");
        }
        for (field, value) in [
            ("node_timeout", c.node_timeout),
            ("master_timeout", c.master_timeout),
            ("promotion_delay", c.promotion_delay),
        ] {
            if value > MAX_TIMEOUT {
                return limit(field, "must be at most 1 hour");
            }
        }
        if c.missed_hellos > MAX_MISSED_HELLOS {
            return limit("missed_hellos", "must be at most 100");
        }
        if c.node_timeout < c.check_interval {
            return Err(ConfigError::NodeTimeoutBelowCheckInterval {
                node_timeout: c.node_timeout,
                check_interval: c.check_interval,
            });
        }
        if c.master_timeout < c.node_timeout {
            return Err(ConfigError::MasterTimeoutBelowNodeTimeout {
                master_timeout: c.master_timeout,
                node_timeout: c.node_timeout,
            });
        }
        // A timeout the user chose is the deadline: the default loss
        // tolerance must not stretch it (5 lost hellos of 1 s made a 2 s
        // node timeout 6.5 s). One they also chose must fit in it.
        if (set.node_timeout || set.master_timeout) && !set.missed_hellos {
            c.missed_hellos = 0;
        }
        let needed = silence_budget(c.hello_interval, c.missed_hellos);
        for (field, timeout, explicit) in [
            ("node_timeout", c.node_timeout, set.node_timeout),
            ("master_timeout", c.master_timeout, set.master_timeout),
        ] {
            if explicit && timeout < needed {
                return Err(ConfigError::TimeoutBelowMissedHellos {
                    field,
                    timeout,
                    hello_interval: c.hello_interval,
                    missed_hellos: c.missed_hellos,
                    needed,
                });
            }
        }
        if c.masters_required == 0 {
            return Err(ConfigError::Zero {
                field: "masters_required",
            });
        }
        if c.masters_required > MAX_MASTERS {
            return limit("masters_required", "must be between 1 and 64");
        }
        let t = &c.transport;
        if t.broadcast.is_unspecified() || t.broadcast.is_multicast() {
            return limit(
                "broadcast",
                "must be a broadcast address (255.255.255.255, a subnet's directed \
                 broadcast, or 127.255.255.255 for this host), not 0.0.0.0 or a \
                 multicast group (use multicast() for a group)",
            );
        }
        if t.multicast_ttl > 255 {
            return limit("multicast_ttl", "must be between 0 and 255");
        }
        if t.multicast_interface.is_multicast() || t.multicast_interface.is_broadcast() {
            return limit(
                "multicast_interface",
                "must be a local interface's address, or 0.0.0.0 to let the kernel pick",
            );
        }
        let listens_on = |ip: IpAddr| match t.multicast {
            Some(group) => ip == IpAddr::V4(group),
            None => ip == IpAddr::V4(t.broadcast),
        };
        if !t.bind.is_unspecified() && t.bind.is_ipv4() && !listens_on(t.bind) {
            // Linux delivers a broadcast only to sockets bound to the
            // wildcard or to the broadcast address, and a multicast only to
            // sockets bound to the wildcard or to the group.
            return limit(
                "bind",
                "a socket bound to one address hears no broadcast or multicast: \
                 keep 0.0.0.0 (the default) and pick the network with a directed \
                 broadcast address or multicast_interface",
            );
        }
        if let Some(group) = c.transport.multicast {
            if !group.is_multicast() {
                return Err(ConfigError::NotMulticast(group));
            }
        }
        if let Some(w) = c.weight {
            if !w.is_finite() {
                return Err(ConfigError::WeightNotFinite(w));
            }
        }
        if c.transport.port == 0 {
            return Err(ConfigError::PortZero);
        }
        if let Some(kinds) = &c.transport.interfaces {
            check_interfaces(kinds)?;
        }
        if !c.transport.ipv6_group.is_multicast() {
            return limit("ipv6_group", "must be an IPv6 multicast address (ff00::/8)");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(600))
            .contains(&c.transport.rescan_interval)
        {
            return limit("rescan_interval", "must be between 100 ms and 10 min");
        }
        if !(Duration::from_secs(1)..=MAX_TIMEOUT).contains(&c.transport.seed_refresh) {
            return limit("seed_refresh", "must be between 1 s and 1 hour");
        }
        if !(1..=MAX_UNICAST_PEERS).contains(&c.max_unicast_peers) {
            return limit("max_unicast_peers", "must be between 1 and 4096");
        }
        if self.seeds_text.len() > MAX_SEEDS {
            return limit("seeds", "at most 64 seeds");
        }
        c.transport.seeds = self
            .seeds_text
            .iter()
            .map(|text| parse_seed(text, c.transport.port))
            .collect::<Result<_, _>>()
            .map_err(|reason| ConfigError::Limit {
                field: "seeds",
                reason,
            })?;
        if !c.transport.bind.is_ipv4() {
            return Err(ConfigError::BindNotIpv4(c.transport.bind));
        }
        let secure_key = match (self.secret_key, &self.passphrase) {
            (Some(_), Some(_)) => return Err(ConfigError::KeyGivenTwice),
            (Some(Err(error)), None) => {
                return Err(ConfigError::Key {
                    field: "secret_key",
                    error,
                })
            }
            (Some(Ok(key)), None) => Some(key),
            (None, _) => None,
        };
        for (field, text) in [
            ("passphrase", &self.passphrase),
            ("legacy_key", &c.legacy_key),
        ] {
            if text.as_ref().is_some_and(|t| t.as_str().is_empty()) {
                return Err(ConfigError::Key {
                    field,
                    error: KeyError::Empty,
                });
            }
        }
        let has_secure = secure_key.is_some() || self.passphrase.is_some();
        let has_key = match c.encryption {
            Encryption::LegacyNodeDiscovery => c.legacy_key.is_some(),
            _ => has_secure,
        };
        // A mode asked for, or implied by a key, whose key is missing.
        if !has_key && (self.encryption_set || has_secure || c.legacy_key.is_some()) {
            return Err(ConfigError::NoKey(c.encryption));
        }
        c.secure_key = secure_key;
        if c.max_datagram_size < crate::crypto::secure::OVERHEAD + 64
            || c.max_datagram_size > 65_507
        {
            return Err(ConfigError::Limit {
                field: "max_datagram_size",
                reason: "must be between 126 and 65507 bytes",
            });
        }
        if c.replay_tolerance.is_zero() {
            return Err(ConfigError::Zero {
                field: "replay_tolerance",
            });
        }
        if c.reassembly.max_message < 64 || c.reassembly.max_message > u32::MAX as usize {
            return Err(ConfigError::Limit {
                field: "max_message_size",
                reason: "must be between 64 bytes and 4 GiB (the WRAP length field is 32 bits)",
            });
        }
        if let Some(info) = &c.info {
            // The hello's other fields and the envelope take a few hundred bytes.
            let size = serde_json::to_vec(info).map_or(usize::MAX, |v| v.len());
            if size.saturating_add(400) > c.reassembly.max_message {
                return Err(ConfigError::Limit {
                    field: "advertise",
                    reason: "the advertised value does not fit in max_message_size",
                });
            }
        }
        let r = c.registry;
        if r.per_owner == 0 || r.total == 0 || r.meta_bytes == 0 || r.per_owner > r.total {
            return Err(ConfigError::Limit {
                field: "registry_limits",
                reason: "each must be at least 1, and per_owner at most total",
            });
        }
        if c.reassembly.max_pending == 0 || c.reassembly.max_pending_bytes == 0 {
            return Err(ConfigError::Limit {
                field: "reassembly_limits",
                reason: "must allow at least one message and one byte",
            });
        }
        for (field, value) in [
            ("max_nodes", c.max_nodes),
            ("event_capacity", c.event_capacity),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if c.max_nodes > MAX_NODES {
            return limit("max_nodes", "must be between 1 and 1,000,000");
        }
        if c.event_capacity > MAX_EVENT_CAPACITY {
            return limit("event_capacity", "must be between 1 and 1,000,000");
        }
        if let Some(passphrase) = &self.passphrase {
            // Last, so that a mistake elsewhere is reported without the wait.
            c.secure_key = Some(Key::from_passphrase(passphrase.as_str()));
        }
        Ok(c)
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// See [`ConfigBuilder::hello_interval`].
    pub fn hello_interval(&self) -> Duration {
        self.hello_interval
    }
    /// See [`ConfigBuilder::check_interval`].
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }
    /// See [`ConfigBuilder::node_timeout`]. The deadline of a peer that
    /// says hello at least as often as this node, when set explicitly; a
    /// floor that [`missed_hellos`](Self::missed_hellos) may stretch for
    /// slower peers.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }
    /// See [`ConfigBuilder::master_timeout`]: how long a master may be
    /// silent before another node takes over.
    pub fn master_timeout(&self) -> Duration {
        self.master_timeout
    }
    /// The lost hellos a peer survives, as in force: the value set, else 0
    /// if `node_timeout` or `master_timeout` was set, else the default 5.
    /// See [`ConfigBuilder::missed_hellos`].
    pub fn missed_hellos(&self) -> u32 {
        self.missed_hellos
    }
    /// See [`ConfigBuilder::promotion_delay`].
    pub fn promotion_delay(&self) -> Duration {
        self.promotion_delay
    }
    /// See [`ConfigBuilder::masters_required`].
    pub fn masters_required(&self) -> usize {
        self.masters_required
    }
    /// See [`ConfigBuilder::master_eligible`].
    pub fn master_eligible(&self) -> bool {
        self.master_eligible
    }
    /// The configured weight, if one was set (otherwise each node draws one
    /// at random); see [`ConfigBuilder::weight`].
    pub fn weight(&self) -> Option<f64> {
        self.weight
    }
    /// See [`ConfigBuilder::port`].
    pub fn port(&self) -> u16 {
        self.transport.port
    }
    /// See [`ConfigBuilder::bind`].
    pub fn bind(&self) -> IpAddr {
        self.transport.bind
    }
    /// See [`ConfigBuilder::broadcast`].
    pub fn broadcast(&self) -> Ipv4Addr {
        self.transport.broadcast
    }
    /// See [`ConfigBuilder::multicast`].
    pub fn multicast(&self) -> Option<Ipv4Addr> {
        self.transport.multicast
    }
    /// See [`ConfigBuilder::multicast_ttl`].
    pub fn multicast_ttl(&self) -> u32 {
        self.transport.multicast_ttl
    }
    /// See [`ConfigBuilder::multicast_interface`].
    pub fn multicast_interface(&self) -> Ipv4Addr {
        self.transport.multicast_interface
    }
    /// See [`ConfigBuilder::interfaces`]: `None` for the default rule.
    pub fn interfaces(&self) -> Option<&[IfKind]> {
        self.transport.interfaces.as_deref()
    }
    /// See [`ConfigBuilder::ipv6`].
    pub fn ipv6(&self) -> bool {
        self.transport.ipv6
    }
    /// See [`ConfigBuilder::ipv6_group`].
    pub fn ipv6_group(&self) -> Ipv6Addr {
        self.transport.ipv6_group
    }
    /// See [`ConfigBuilder::rescan_interval`].
    pub fn rescan_interval(&self) -> Duration {
        self.transport.rescan_interval
    }
    /// See [`ConfigBuilder::seeds`]: each as `(host, port)`.
    pub fn seeds(&self) -> impl Iterator<Item = (&str, u16)> {
        self.transport.seeds.iter().map(|(h, p)| (h.as_str(), *p))
    }
    /// See [`ConfigBuilder::seed_refresh`].
    pub fn seed_refresh(&self) -> Duration {
        self.transport.seed_refresh
    }
    /// See [`ConfigBuilder::unicast_only`].
    pub fn unicast_only(&self) -> bool {
        self.unicast_only
    }
    /// See [`ConfigBuilder::max_unicast_peers`].
    pub fn max_unicast_peers(&self) -> usize {
        self.max_unicast_peers
    }
    /// See [`ConfigBuilder::advertise_addr`].
    pub fn advertise_addr(&self) -> Option<IpAddr> {
        self.advertise_addr
    }
    /// Where datagrams for the whole cluster are sent: the multicast group
    /// if set, else the broadcast address, on the port.
    ///
    /// ```
    /// let config = shoal::Config::builder().build()?;
    /// assert_eq!(config.destination(), "255.255.255.255:12345".parse().unwrap());
    /// # Ok::<(), shoal::ConfigError>(())
    /// ```
    pub fn destination(&self) -> std::net::SocketAddr {
        self.transport.cluster()
    }
    /// See [`ConfigBuilder::ignore`].
    pub fn ignore(&self) -> Ignore {
        self.ignore
    }
    /// See [`ConfigBuilder::ignore_data_errors`].
    pub fn ignore_data_errors(&self) -> bool {
        self.ignore_data_errors
    }
    /// See [`ConfigBuilder::max_nodes`].
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }
    /// See [`ConfigBuilder::event_capacity`].
    pub fn event_capacity(&self) -> usize {
        self.event_capacity
    }
    /// How packets will be protected at start: `None` without a key, else
    /// the configured mode. See [`ConfigBuilder::encryption`].
    pub fn encryption(&self) -> Option<Encryption> {
        (self.secure_key.is_some() || self.legacy_key.is_some()).then_some(self.encryption)
    }
    /// See [`ConfigBuilder::max_datagram_size`].
    pub fn max_datagram_size(&self) -> usize {
        self.max_datagram_size
    }
    /// See [`ConfigBuilder::replay_tolerance`].
    pub fn replay_tolerance(&self) -> Duration {
        self.replay_tolerance
    }
    /// The value advertised from the first hello on; see [`ConfigBuilder::advertise`].
    pub fn advertised(&self) -> Option<&serde_json::Value> {
        self.info.as_ref()
    }
    /// The configured host name; see [`ConfigBuilder::host_name`].
    pub fn host_name(&self) -> Option<&str> {
        self.host_name.as_deref()
    }
    /// See [`ConfigBuilder::registry_limits`].
    pub fn registry_limits(&self) -> crate::registry::RegistryLimits {
        self.registry
    }
    /// See [`ConfigBuilder::max_message_size`].
    pub fn max_message_size(&self) -> usize {
        self.reassembly.max_message
    }
    /// Incomplete messages and bytes held at most; see [`ConfigBuilder::reassembly_limits`].
    pub fn reassembly_limits(&self) -> (usize, usize) {
        (
            self.reassembly.max_pending,
            self.reassembly.max_pending_bytes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn node_discovery_timings_preset() {
        let c = Config::builder().node_discovery_timings().build().unwrap();
        assert_eq!(c.hello_interval, ms(1000));
        assert_eq!(c.check_interval, ms(2000));
        assert_eq!(c.node_timeout, ms(2000));
        assert_eq!(c.master_timeout, ms(2000));
        assert_eq!(c.missed_hellos, 0);
    }

    #[test]
    fn defaults() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c.hello_interval, ms(400));
        assert_eq!(c.check_interval, ms(400));
        assert_eq!(c.node_timeout, ms(2600));
        assert_eq!(c.master_timeout, ms(2600));
        assert_eq!(c.missed_hellos, 5);
        assert_eq!(c.masters_required, 1);
        assert_eq!(c.transport.port, 12345);
        assert_eq!(c.transport.broadcast, Ipv4Addr::BROADCAST);
        assert_eq!(c.transport.multicast, None);
        assert_eq!(c.transport.multicast_ttl, 1);
        assert_eq!(c.ignore, Ignore::OwnInstance);
        assert!(c.ignore_data_errors);
        assert_eq!(c.weight, None);
        assert_eq!(c.destination(), "255.255.255.255:12345".parse().unwrap());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(ConfigBuilder, &str)> = vec![
            (Config::builder().hello_interval(ms(0)), "hello_interval"),
            (Config::builder().check_interval(ms(0)), "check_interval"),
            (Config::builder().check_interval(ms(3000)), "node_timeout"),
            (Config::builder().node_timeout(ms(3000)), "master_timeout"),
            (Config::builder().masters_required(0), "masters_required"),
            (
                Config::builder().multicast("10.0.0.1".parse().unwrap()),
                "multicast",
            ),
            (Config::builder().weight(f64::NAN), "weight"),
            (Config::builder().port(0), "port"),
            (Config::builder().bind("::1".parse().unwrap()), "bind"),
            (Config::builder().interfaces([]), "interfaces"),
            (
                Config::builder().interfaces([IfKind::Name(String::new())]),
                "interfaces",
            ),
            (
                Config::builder().interfaces([IfKind::Loopback, IfKind::Index(0)]),
                "interfaces",
            ),
            (Config::builder().passphrase(""), "passphrase"),
            (Config::builder().legacy_key(""), "legacy_key"),
            (Config::builder().secret_key(""), "secret_key"),
            (Config::builder().max_message_size(1), "max_message_size"),
            (Config::builder().max_nodes(0), "max_nodes"),
            (
                Config::builder().encryption(Encryption::Secure),
                "encryption",
            ),
            (
                Config::builder().encryption(Encryption::LegacyNodeDiscovery),
                "encryption",
            ),
            (Config::builder().secret_key("a".repeat(63)), "secret_key"),
            (Config::builder().secret_key("s3cret"), "secret_key"),
            // The edges of every range.
            (Config::builder().hello_interval(ms(9)), "hello_interval"),
            (
                Config::builder().hello_interval(ms(60_001)),
                "hello_interval",
            ),
            (Config::builder().check_interval(ms(9)), "check_interval"),
            (
                Config::builder()
                    .node_timeout(ms(3_600_001))
                    .master_timeout(ms(3_600_001)),
                "node_timeout",
            ),
            (
                Config::builder().master_timeout(ms(3_600_001)),
                "master_timeout",
            ),
            (
                Config::builder().promotion_delay(ms(3_600_001)),
                "promotion_delay",
            ),
            (Config::builder().missed_hellos(101), "missed_hellos"),
            (Config::builder().masters_required(65), "masters_required"),
            (Config::builder().masters_required(1000), "masters_required"),
            (Config::builder().multicast_ttl(256), "multicast_ttl"),
            (Config::builder().multicast_ttl(1000), "multicast_ttl"),
            (
                Config::builder().broadcast(Ipv4Addr::UNSPECIFIED),
                "broadcast",
            ),
            (
                Config::builder().broadcast("224.0.0.1".parse().unwrap()),
                "broadcast",
            ),
            (
                Config::builder().multicast_interface("239.1.1.1".parse().unwrap()),
                "multicast_interface",
            ),
            (Config::builder().bind("127.0.0.1".parse().unwrap()), "bind"),
            (
                Config::builder()
                    .multicast("239.1.2.3".parse().unwrap())
                    .bind("10.0.0.1".parse().unwrap()),
                "bind",
            ),
            (Config::builder().max_nodes(1_000_001), "max_nodes"),
            (
                Config::builder().event_capacity(1_000_001),
                "event_capacity",
            ),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn the_edges_of_every_range_are_accepted() {
        let ok = |b: ConfigBuilder| b.build().unwrap();
        ok(Config::builder()
            .hello_interval(ms(10))
            .check_interval(ms(10)));
        ok(Config::builder()
            .hello_interval(ms(60_000))
            .check_interval(ms(60_000))
            .node_timeout(ms(3_600_000))
            .master_timeout(ms(3_600_000))
            .promotion_delay(ms(3_600_000))
            .masters_required(64)
            .multicast_ttl(255)
            .max_nodes(1_000_000)
            .event_capacity(1_000_000));
        // 100 lost hellos fit in the adaptive default, and in an explicit
        // timeout that holds them (10 ms × 101.5).
        ok(Config::builder().missed_hellos(100));
        ok(Config::builder()
            .hello_interval(ms(10))
            .check_interval(ms(10))
            .node_timeout(ms(1015))
            .missed_hellos(100));
        ok(Config::builder().multicast_ttl(0));
        // Binding the address the node listens on is fine.
        ok(Config::builder()
            .broadcast("127.255.255.255".parse().unwrap())
            .bind("127.255.255.255".parse().unwrap()));
        ok(Config::builder()
            .multicast("239.1.2.3".parse().unwrap())
            .bind("239.1.2.3".parse().unwrap()));
        ok(Config::builder().multicast_interface("127.0.0.1".parse().unwrap()));
    }

    /// Which key each mode needs, and what `build` says when it is missing.
    #[test]
    fn every_mode_needs_its_own_key() {
        use Encryption::*;
        let raw = || Key::from_bytes([7; 32]);
        let ok = |b: ConfigBuilder, want: Option<Encryption>| {
            let c = b.build().unwrap();
            assert_eq!(c.encryption(), want);
            c
        };
        let no_key = |b: ConfigBuilder, mode: Encryption| {
            let err = b.build().unwrap_err();
            assert_eq!(err, ConfigError::NoKey(mode));
            assert_eq!(err.field(), "encryption");
            err.to_string()
        };
        let c = ok(Config::builder().secret_key(raw()), Some(Secure));
        assert_eq!(c.secure_key, Some(raw()));
        assert!(c.legacy_key.is_none());
        for mode in [Secure, SecureAcceptPlaintext, PlaintextAcceptSecure] {
            ok(
                Config::builder().secret_key(raw()).encryption(mode),
                Some(mode),
            );
            let msg = no_key(Config::builder().legacy_key("k").encryption(mode), mode);
            assert!(msg.contains("secret_key(..) or passphrase(..)"), "{msg}");
        }
        ok(
            Config::builder()
                .legacy_key("k")
                .encryption(LegacyNodeDiscovery),
            Some(LegacyNodeDiscovery),
        );
        // A legacy key alone does not become a secure-mode key...
        no_key(Config::builder().legacy_key("k"), Secure);
        // ...nor a secure-mode key a legacy one.
        let msg = no_key(
            Config::builder()
                .secret_key(raw())
                .encryption(LegacyNodeDiscovery),
            LegacyNodeDiscovery,
        );
        assert!(msg.contains("legacy_key"), "{msg}");
        // Both: either mode, switchable at run time.
        let c = ok(
            Config::builder().secret_key(raw()).legacy_key("k"),
            Some(Secure),
        );
        assert!(c.secure_key.is_some() && c.legacy_key.is_some());
        ok(Config::builder(), None);
    }

    #[test]
    fn a_mistyped_key_is_an_error_naming_secret_key() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        let b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let key = |b: ConfigBuilder| b.build().unwrap().secure_key.unwrap();
        let want = Key::from_hex(hex).unwrap();
        assert_eq!(key(Config::builder().secret_key(hex)), want);
        assert_eq!(key(Config::builder().secret_key(b64.to_owned())), want);
        assert_eq!(key(Config::builder().secret_key(want.clone())), want);
        for (text, error) in [
            (&hex[1..], KeyError::HexLength(63)),
            (&b64[1..], KeyError::InvalidBase64),
            ("correct horse battery staple", KeyError::NotAKey(28)),
        ] {
            let err = Config::builder()
                .secret_key(text)
                .encryption(Encryption::Secure)
                .build()
                .unwrap_err();
            assert_eq!(
                err,
                ConfigError::Key {
                    field: "secret_key",
                    error
                }
            );
            assert!(err.to_string().starts_with("secret_key: "), "{err}");
        }
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let builder = Config::builder()
            .passphrase("pass-phrase-words")
            .legacy_key("legacy-words")
            .secret_key("hex-words");
        let shown = format!("{builder:?}");
        for secret in ["pass-phrase-words", "legacy-words", "hex-words"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let config = Config::builder()
            .secret_key(Key::from_bytes([0xab; 32]))
            .legacy_key("legacy-words")
            .build()
            .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("legacy-words") && !shown.contains("abab"),
            "{shown}"
        );
    }

    #[test]
    fn explicit_timeouts_are_deadlines_not_floors() {
        // Neither timeout set: the adaptive default stays.
        let c = Config::builder().hello_interval(ms(1000)).build().unwrap();
        assert_eq!((c.node_timeout, c.missed_hellos), (ms(2600), 5));
        // A timeout set without missed_hellos: the timeout alone decides.
        let c = Config::builder()
            .hello_interval(ms(1000))
            .node_timeout(ms(2000))
            .master_timeout(ms(2000))
            .build()
            .unwrap();
        assert_eq!((c.node_timeout, c.missed_hellos), (ms(2000), 0));
        // The master timeout alone is honoured the same way.
        let c = Config::builder().master_timeout(ms(3000)).build().unwrap();
        assert_eq!((c.master_timeout, c.missed_hellos), (ms(3000), 0));
        // missed_hellos alone keeps the default node timeout as a floor.
        let c = Config::builder().missed_hellos(10).build().unwrap();
        assert_eq!((c.node_timeout, c.missed_hellos), (ms(2600), 10));
        // Both set and compatible: 3 × 400 ms + 600 ms = 1.8 s ≤ 1.8 s.
        let c = Config::builder()
            .node_timeout(ms(1800))
            .master_timeout(ms(1800))
            .missed_hellos(3)
            .build()
            .unwrap();
        assert_eq!((c.node_timeout, c.missed_hellos), (ms(1800), 3));
    }

    #[test]
    fn an_explicit_timeout_that_contradicts_missed_hellos_is_refused() {
        let err = Config::builder()
            .hello_interval(ms(1000))
            .node_timeout(ms(2000))
            .master_timeout(ms(2000))
            .missed_hellos(5)
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            ConfigError::TimeoutBelowMissedHellos {
                field: "node_timeout",
                timeout: ms(2000),
                hello_interval: ms(1000),
                missed_hellos: 5,
                needed: ms(6500),
            }
        );
        assert_eq!(
            err.to_string(),
            "node_timeout (2s) is shorter than hello_interval (1s) × (missed_hellos (5) + 1.5) \
             = 6.5s, the silence a peer that says hello as often as this node must survive: \
             lengthen node_timeout, or lower missed_hellos or hello_interval"
        );
        // The edge: 1.8 s is accepted above, 1 ms less is not.
        let err = Config::builder()
            .node_timeout(ms(1799))
            .master_timeout(ms(1799))
            .missed_hellos(3)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "node_timeout");
        // Without missed_hellos, a timeout must still outlast one interval
        // and its jitter (1.5 × 1 s), or peers drop between two hellos.
        let err = Config::builder()
            .hello_interval(ms(1000))
            .node_timeout(ms(1499))
            .master_timeout(ms(1499))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "node_timeout");
        assert!(Config::builder()
            .hello_interval(ms(1000))
            .node_timeout(ms(1500))
            .master_timeout(ms(1500))
            .build()
            .is_ok());
        // An explicit master timeout is checked too.
        let err = Config::builder()
            .hello_interval(ms(2000))
            .master_timeout(ms(2999))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "master_timeout");
        // The preset counts as explicit: 5 lost hellos do not fit in 2 s.
        let err = Config::builder()
            .node_discovery_timings()
            .missed_hellos(5)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "node_timeout");
    }

    #[test]
    fn multicast_sets_destination() {
        let c = Config::builder()
            .multicast("239.1.2.3".parse().unwrap())
            .port(5000)
            .build()
            .unwrap();
        assert_eq!(c.destination(), "239.1.2.3:5000".parse().unwrap());
    }
}
