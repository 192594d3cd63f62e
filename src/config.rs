//! Configuration: a builder with node-discovery's options and defaults, and
//! validation that names the offending field.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

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
/// The two mixed modes exist for switching a running cluster between
/// plaintext and secure mode node by node, with no node ever unable to hear
/// another: see SECURITY.md for the procedure.
///
/// ```
/// use shoal::{Config, Encryption};
/// // Talk to node-discovery peers that use `key: "s3cret"`:
/// let config = Config::builder()
///     .key("s3cret")
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
    pub(crate) key: Option<String>,
    /// The parsed secure-mode key (set by `build`).
    pub(crate) secure_key: Option<crate::crypto::key::Key>,
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
            key: None,
            secure_key: None,
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
        }
    }
}

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
        }
    }
}

impl TransportConfig {
    /// Where datagrams for the whole cluster go: the multicast group if
    /// set, else the broadcast address, on the port.
    pub(crate) fn cluster(&self) -> std::net::SocketAddr {
        let ip = self.multicast.unwrap_or(self.broadcast);
        std::net::SocketAddr::from((ip, self.port))
    }
}

/// A configuration field that failed validation. The message names the field.
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
    /// `key` is the empty string.
    #[error("key must not be empty")]
    EmptyKey,
    /// `key` could not be parsed.
    #[error("key: {0}")]
    Key(crate::crypto::key::KeyError),
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
            ConfigError::Zero { field } | ConfigError::Limit { field, .. } => field,
            ConfigError::NodeTimeoutBelowCheckInterval { .. } => "node_timeout",
            ConfigError::MasterTimeoutBelowNodeTimeout { .. } => "master_timeout",
            ConfigError::NotMulticast(_) => "multicast",
            ConfigError::WeightNotFinite(_) => "weight",
            ConfigError::PortZero => "port",
            ConfigError::BindNotIpv4(_) => "bind",
            ConfigError::EmptyKey | ConfigError::Key(_) => "key",
        }
    }
}

/// Builds a [`Config`]; every setter is optional and defaults to node-discovery's value.
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
        /// How often a hello is broadcast. Default 400 ms (node-discovery: 1000 ms).
        hello_interval: Duration
    );
    setter!(
        /// How often the election is checked (promote when no master is known).
        /// Default 400 ms (node-discovery: 2000 ms). Peers expire at their own
        /// deadlines, not at these ticks.
        check_interval: Duration
    );
    setter!(
        /// The shortest silence after which a peer is removed. Default 2600 ms
        /// (node-discovery: 2000 ms); at least `check_interval`. A peer that
        /// says hello less often gets longer: see [`missed_hellos`](Self::missed_hellos).
        node_timeout: Duration
    );
    setter!(
        /// A removed master still counts as a master (no one promotes) until it has
        /// been silent this long. Default 2600 ms (node-discovery: 2000 ms); at least `node_timeout`.
        master_timeout: Duration
    );
    setter!(
        /// How many consecutive lost hellos a peer survives: each peer's
        /// deadline is at least `(missed_hellos + 1.5) x` the interval *that peer*
        /// says hello at (node-discovery peers: 1 s). Default 5, which with
        /// 400 ms hellos gives the 2.6 s node timeout; with 5 % i.i.d. loss that
        /// is about 1e-4 false removals per peer-hour (node-discovery's
        /// timings: about 4.6). Set 0 for node-discovery's behaviour.
        missed_hellos: u32
    );
    setter!(
        /// A newly started node does not promote itself for this long, so it
        /// hears its peers first (shoal peers answer a newcomer within
        /// milliseconds; node-discovery peers within 1 s). Default 1200 ms; zero
        /// allows promotion at the first check.
        promotion_delay: Duration
    );
    setter!(
        /// How many masters the cluster elects. Default 1.
        masters_required: usize
    );
    setter!(
        /// Whether this node may become master. Default true.
        master_eligible: bool
    );
    setter!(
        /// Local address to bind. Default 0.0.0.0.
        transport.bind: IpAddr
    );
    setter!(
        /// UDP port every node listens on and sends to. Default 12345.
        transport.port: u16
    );
    setter!(
        /// Broadcast destination, used when no multicast address is set. Default
        /// 255.255.255.255; a directed broadcast such as 192.168.1.255 (or
        /// 127.255.255.255 for one host) also works.
        transport.broadcast: Ipv4Addr
    );
    setter!(
        /// Multicast TTL. Default 1 (the local network only).
        transport.multicast_ttl: u32
    );
    setter!(
        /// Local interface address for multicast (join and send). Default 0.0.0.0: the kernel picks.
        transport.multicast_interface: Ipv4Addr
    );
    setter!(
        /// Which of our own packets to ignore. Default [`Ignore::OwnInstance`].
        ignore: Ignore
    );
    setter!(
        /// Count and drop undecodable packets silently (default true); when false,
        /// each one is also reported as [`crate::Event::DataError`].
        ignore_data_errors: bool
    );
    setter!(
        /// Most peers kept in the table; hellos from further new nodes are dropped and counted. Default 10 000.
        max_nodes: usize
    );
    setter!(
        /// Items buffered per event stream and per channel subscription before a slow consumer starts losing the oldest. Default 1024.
        event_capacity: usize
    );

    /// node-discovery 0.2.1's exact timings, for clusters that mix shoal and
    /// node-discovery nodes and want both to expire peers alike: hello 1 s,
    /// check 2 s, node and master timeouts 2 s, `missed_hellos` 0, no promotion delay.
    /// They drop a peer after two lost hellos.
    ///
    /// ```
    /// let config = shoal::Config::builder().node_discovery_timings().build().unwrap();
    /// assert_eq!(config.node_timeout(), std::time::Duration::from_secs(2));
    /// ```
    pub fn node_discovery_timings(mut self) -> Self {
        let ms = Duration::from_millis;
        self.config.hello_interval = ms(1000);
        self.config.check_interval = ms(2000);
        self.config.node_timeout = ms(2000);
        self.config.master_timeout = ms(2000);
        self.config.missed_hellos = 0;
        self.config.promotion_delay = Duration::ZERO;
        self
    }

    /// Election weight: the highest eligible node becomes master. Default: random in [0, 1).
    pub fn weight(mut self, weight: f64) -> Self {
        self.config.weight = Some(weight);
        self
    }

    /// Send to this multicast group instead of broadcasting. Default: none.
    pub fn multicast(mut self, group: Ipv4Addr) -> Self {
        self.config.transport.multicast = Some(group);
        self
    }

    /// Protect packets with this key. Default: none (plaintext).
    ///
    /// In secure mode (the default with a key) the string is read by
    /// [`Key::parse`](crate::crypto::key::Key::parse): 64 hex characters or
    /// base64 of 32 bytes is the key itself; anything else is a passphrase,
    /// stretched with Argon2id once, in `build` (about 40 ms). In
    /// [`Encryption::LegacyNodeDiscovery`] the string is node-discovery's `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.config.key = Some(key.into());
        self
    }

    /// How packets are protected when a key is set. Default [`Encryption::Secure`].
    pub fn encryption(mut self, mode: Encryption) -> Self {
        self.config.encryption = mode;
        self
    }

    /// Largest datagram sent in secure mode; larger messages are split into
    /// authenticated fragments. Default 1400 bytes (fits a 1500-byte MTU).
    pub fn max_datagram_size(mut self, bytes: usize) -> Self {
        self.config.max_datagram_size = bytes;
        self
    }

    /// Secure mode: how far a sender's clock may be from ours when we hear it
    /// for the first time (older packets are refused as replays). Default 30 s.
    pub fn replay_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.replay_tolerance = tolerance;
        self
    }

    /// Value advertised from the very first hello on (node-discovery's `info`;
    /// change it later with [`crate::Discovery::advertise`]). Default: none.
    pub fn advertise(mut self, info: serde_json::Value) -> Self {
        self.config.info = Some(info);
        self
    }

    /// Host name sent in every envelope. Default: the OS host name.
    pub fn host_name(mut self, name: impl Into<String>) -> Self {
        self.config.host_name = Some(name.into());
        self
    }

    /// Largest message accepted or sent, in bytes (checked before any allocation). Default 1 MiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.reassembly.max_message = bytes;
        self
    }

    /// Most incomplete multi-block messages held at once, and the bytes they may hold.
    /// Defaults 256 and 4 MiB.
    pub fn reassembly_limits(mut self, messages: usize, bytes: usize) -> Self {
        self.config.reassembly.max_pending = messages;
        self.config.reassembly.max_pending_bytes = bytes;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
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
        if c.masters_required == 0 {
            return Err(ConfigError::Zero {
                field: "masters_required",
            });
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
        if !c.transport.bind.is_ipv4() {
            return Err(ConfigError::BindNotIpv4(c.transport.bind));
        }
        if c.key.as_deref() == Some("") {
            return Err(ConfigError::EmptyKey);
        }
        let mut c = c;
        if let Some(key) = &c.key {
            if c.encryption != Encryption::LegacyNodeDiscovery {
                c.secure_key = Some(crate::crypto::key::Key::parse(key).map_err(ConfigError::Key)?);
            }
        }
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
        Ok(c)
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Hello interval.
    pub fn hello_interval(&self) -> Duration {
        self.hello_interval
    }
    /// Check interval.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }
    /// Node timeout.
    pub fn node_timeout(&self) -> Duration {
        self.node_timeout
    }
    /// Master timeout.
    pub fn master_timeout(&self) -> Duration {
        self.master_timeout
    }
    /// Masters required.
    pub fn masters_required(&self) -> usize {
        self.masters_required
    }
    /// The configured weight, if one was set (otherwise each node draws one at random).
    pub fn weight(&self) -> Option<f64> {
        self.weight
    }
    /// UDP port.
    pub fn port(&self) -> u16 {
        self.transport.port
    }
    /// Bind address.
    pub fn bind(&self) -> IpAddr {
        self.transport.bind
    }
    /// Broadcast destination.
    pub fn broadcast(&self) -> Ipv4Addr {
        self.transport.broadcast
    }
    /// Multicast group, if any.
    pub fn multicast(&self) -> Option<Ipv4Addr> {
        self.transport.multicast
    }
    /// Where datagrams are sent: the multicast group if set, else the broadcast address.
    pub fn destination(&self) -> std::net::SocketAddr {
        self.transport.cluster()
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
            (Config::builder().key(""), "key"),
            (Config::builder().max_message_size(1), "max_message_size"),
            (Config::builder().max_nodes(0), "max_nodes"),
        ];
        for (builder, field) in cases {
            let err = builder.build().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(field), "{err}");
        }
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
