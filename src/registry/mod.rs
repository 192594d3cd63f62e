//! A service registry with no server: Thalassa's registrations, replicated
//! on every node of the LAN.
//!
//! A [`Registration`] is a name, a version, a host, a port and a JSON
//! object of metadata; its id is Thalassa's `/name/version/host/port`. The
//! node that registers one owns it and keeps it alive by refreshing it
//! within its time to live; every node holds every live registration, so
//! any node answers any query and fires `Online` / `Offline` for it.
//!
//! A registration leaves every node when
//! - its time to live lapses at its owner ([`OfflineReason::Expired`]),
//! - its owner deregisters it ([`OfflineReason::Deregistered`]),
//! - or its owner leaves the cluster ([`OfflineReason::OwnerGone`]): at
//!   once on a goodbye, within the node timeout after a crash.
//!
//! **The same id from two owners.** Two nodes may register the same id
//! (two sidecars for one app, say). The id is then online while at least
//! one owner holds it: `Online` when the first owner registers it,
//! `Offline` only when the last one lets it go, with that owner's reason.
//! Queries return the id once, with the metadata of the registration
//! registered last (`meta.registered`, then the owner id, break ties), and
//! an [`Updated`](RegistryEvent::Updated) event says when that changes.
//!
//! **How it replicates** (the `replica` module, sans-IO like the rest of
//! the core). Each owner numbers the states of its own table: a version
//! that grows with every change. Its hellos carry that version (one
//! number: a hello stays one datagram whatever the number of
//! registrations). A change is broadcast at once as a delta on the
//! reserved channel `shoal.registry`; deltas that arrive out of order are
//! held (64 and 64 KiB per owner, 4 MiB in all) until the one before them
//! comes. A node whose copy
//! of an owner's table is not at the version the owner's hello announces,
//! or that has had a gap in the owner's deltas for 20 ms, asks the owner
//! for what it misses (a *pull*): the owner answers with the deltas since,
//! from a log of its last 64, or with its whole table in pages of about a
//! kilobyte (one datagram each), which a node applies in any order. Pulls
//! and answers are broadcast like everything else: processes on one host
//! share the port, so a unicast answer could reach the wrong one, and one
//! answer serves every node that missed the same thing.
//!
//! So a lost delta is repaired within one hello interval, a newcomer gets
//! every table within milliseconds of its first hellos, and in steady
//! state the registry costs one number in each hello, whatever the number
//! of registrations. Repair is bounded: a node pulls from one owner at
//! most every 100 ms, and while it stays behind with nothing coming it
//! pulls again after 150 ms, then twice as late each time up to 5 s; an
//! owner paces its answers at 2,000 datagrams per second (bursts of 32, so
//! that a newcomer pulling from every owner at once does not overflow the
//! LAN's socket buffers), queues at most 4,096, and does not repeat a
//! delta or page it broadcast in the last 20 ms. A node
//! that missed more than 64 changes of one owner resyncs from pages and
//! reports the registrations it lost that way as deregistered (the pages
//! do not say whether they expired).
//!
//! node-discovery peers ignore all of it: they have no listener for
//! `shoal.registry`, and ignore the unknown `reg` field of a hello.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shoal::registry::{Filter, Registration, RegistryEvent};
//! use shoal::protocol::{Protocol, Sender};
//!
//! let config = shoal::Config::builder().build().unwrap();
//! let me = Sender { pid: "p".repeat(32), iid: "a".repeat(32), host_name: "h".into() };
//! let now = Instant::now();
//! let mut node = Protocol::new(&config, me, now, 1);
//!
//! let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000)
//!     .meta("zone", "eu")
//!     .build()
//!     .unwrap();
//! assert_eq!(kv.id(), "/kv/1.0.0/10.0.0.5/7000");
//! node.register(now, kv.clone(), Duration::from_secs(30)).unwrap();
//! assert!(matches!(node.poll_registry_event(), Some(RegistryEvent::Online(r)) if r.id() == kv.id()));
//! assert_eq!(node.registrations(&Filter::name("kv")).len(), 1);
//!
//! // Not refreshed within its time to live: it expires.
//! node.handle_timeout(now + Duration::from_secs(30));
//! assert!(matches!(node.poll_registry_event(), Some(RegistryEvent::Offline { .. })));
//! assert!(node.registrations(&Filter::All).is_empty());
//! ```

#[cfg(feature = "runtime")]
mod backend;
#[cfg(feature = "runtime")]
mod lan;
mod registration;
pub(crate) mod replica;
#[cfg(feature = "runtime")]
mod watch;

#[cfg(feature = "runtime")]
pub use backend::{BoxFuture, RegistryBackend};
pub use registration::{Registration, RegistrationBuilder, RegistrationError};
#[cfg(feature = "runtime")]
pub use watch::Watch;

use std::fmt;
#[cfg(feature = "runtime")]
use std::sync::Arc;
#[cfg(feature = "runtime")]
use std::time::Duration;

/// The registry: register, refresh and deregister this process's
/// registrations, query and watch everyone's.
///
/// [`Registry::lan`] (or [`Discovery::registry`](crate::Discovery::registry))
/// gives the registry replicated by a running node, shoal's own; another
/// store plugs in through [`RegistryBackend`] and [`Registry::new`] with
/// the same API. A `Registry` is a cheap handle: clones share the backend.
///
/// Registrations are leases, as in Thalassa and hera: one that is not
/// refreshed ([`refresh`](Self::refresh), or registered again) within its
/// time to live expires everywhere. Tie refreshing to the health of what
/// is registered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shoal::Error> {
/// use std::time::Duration;
/// use shoal::registry::{Filter, Registration, RegistryEvent};
/// use shoal::{Config, Discovery};
///
/// # let config = || Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_640);
/// let node = Discovery::start(config().build()?).await?; // on a LAN: Config::builder().build()?
/// let registry = node.registry();
/// let mut watch = registry.watch(Filter::name("kv")).await?;
///
/// let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).build()?;
/// registry.register(kv.clone(), Duration::from_secs(30)).await?;
/// assert!(matches!(watch.recv().await, Some(RegistryEvent::Online(r)) if r.id() == kv.id()));
///
/// let found = registry.query(&Filter::version("kv", "1.0.0")).await?;
/// assert_eq!(found[0].port(), 7000);
/// registry.refresh(kv.id()).await?; // within every 30 s, while kv is healthy
/// registry.deregister(kv.id()).await?;
/// assert!(matches!(watch.recv().await, Some(RegistryEvent::Offline { .. })));
/// # node.shutdown().await;
/// # Ok(()) }
/// ```
#[cfg(feature = "runtime")]
#[derive(Clone)]
pub struct Registry {
    backend: Arc<dyn RegistryBackend>,
}

#[cfg(feature = "runtime")]
impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

#[cfg(feature = "runtime")]
impl Registry {
    /// The registry replicated over the LAN by `node` (the same as
    /// [`Discovery::registry`](crate::Discovery::registry)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_642).build()?;
    /// let node = shoal::Discovery::start(config).await?;
    /// let registry = shoal::registry::Registry::lan(&node);
    /// assert!(registry.query(&shoal::registry::Filter::All).await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn lan(node: &crate::Discovery) -> Registry {
        Registry::new(lan::Lan { node: node.clone() })
    }

    /// A registry kept by another store (see [`RegistryBackend`]).
    pub fn new(backend: impl RegistryBackend) -> Registry {
        Registry {
            backend: Arc::new(backend),
        }
    }

    /// Registers `registration`, owned by this process, for `ttl` (1 ms to
    /// 24 h) unless refreshed. Registering an id again refreshes it and
    /// replaces its metadata. Fails with [`Error::Registry`](crate::Error::Registry) (an invalid
    /// registration, a [`RegistryLimits`] limit) or [`Error::Closed`](crate::Error::Closed).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_643).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// use std::time::Duration;
    /// let web = shoal::Registration::builder("web", "2.1.0", "10.0.0.7", 8080).meta("zone", "eu").build()?;
    /// node.registry().register(web, Duration::from_secs(60)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register(
        &self,
        registration: Registration,
        ttl: Duration,
    ) -> Result<(), crate::Error> {
        self.backend.register(registration, ttl).await
    }

    /// Starts the time to live of our registration `id` again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_644).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// let registry = node.registry();
    /// assert!(registry.refresh("/web/2.1.0/10.0.0.7/8080").await.is_err()); // not registered here
    /// # Ok(()) }
    /// ```
    pub async fn refresh(&self, id: &str) -> Result<(), crate::Error> {
        self.backend.refresh(id).await
    }

    /// Removes our registration `id` everywhere ([`OfflineReason::Deregistered`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_645).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// let registry = node.registry();
    /// let web = shoal::Registration::builder("web", "2.1.0", "10.0.0.7", 8080).build()?;
    /// registry.register(web.clone(), std::time::Duration::from_secs(60)).await?;
    /// registry.deregister(web.id()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn deregister(&self, id: &str) -> Result<(), crate::Error> {
        self.backend.deregister(id).await
    }

    /// The live registrations `filter` covers, one per id, in id order:
    /// everyone's, this process's included.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_646).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// use shoal::registry::Filter;
    /// for r in node.registry().query(&Filter::name("kv")).await? {
    ///     println!("kv {} at {}:{}", r.version(), r.host(), r.port());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn query(&self, filter: &Filter) -> Result<Vec<Registration>, crate::Error> {
        self.backend.query(filter).await
    }

    /// The registrations `filter` covers, then their changes: see [`Watch`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_647).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// use shoal::registry::{Filter, RegistryEvent};
    /// let mut watch = node.registry().watch(Filter::All).await?;
    /// # let closer = node.clone();
    /// # tokio::spawn(async move { closer.shutdown().await });
    /// while let Some(event) = watch.recv().await { // ends when the node shuts down
    ///     println!("{event}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch(&self, filter: Filter) -> Result<Watch, crate::Error> {
        self.backend.watch(filter).await
    }

    /// Stops the backend; for the LAN's, shuts the node down (its
    /// registrations go offline everywhere at once: [`OfflineReason::OwnerGone`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_648).build()?;
    /// # let node = shoal::Discovery::start(config).await?;
    /// let registry = node.registry();
    /// registry.shutdown().await;
    /// assert!(matches!(registry.query(&shoal::registry::Filter::All).await, Err(shoal::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(&self) {
        self.backend.shutdown().await
    }
}

/// Why a registration went offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum OfflineReason {
    /// Its owner deregistered it.
    Deregistered,
    /// Its owner did not refresh it within its time to live.
    Expired,
    /// Its owner left the cluster: said goodbye, or was not heard for the
    /// node timeout.
    OwnerGone,
}

impl fmt::Display for OfflineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OfflineReason::Deregistered => "deregistered",
            OfflineReason::Expired => "expired",
            OfflineReason::OwnerGone => "owner gone",
        })
    }
}

/// What a registry watch yields.
///
/// ```
/// use shoal::registry::{OfflineReason, Registration, RegistryEvent};
///
/// let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).build().unwrap();
/// let event = RegistryEvent::Offline { registration: kv, reason: OfflineReason::Expired };
/// assert_eq!(event.to_string(), "offline /kv/1.0.0/10.0.0.5/7000 (expired)");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A registration is live on the LAN (its first owner registered it).
    Online(Registration),
    /// A live registration changed: new metadata, or, for an id held by
    /// two owners, the one that counts changed.
    Updated(Registration),
    /// A registration left: the last owner holding it let it go.
    Offline {
        /// The registration, as it was last known.
        registration: Registration,
        /// Why.
        reason: OfflineReason,
    },
    /// This watch fell behind and lost `n` events: query again to resync.
    Lagged(u64),
}

impl RegistryEvent {
    /// The registration the event is about (`None` for `Lagged`).
    pub fn registration(&self) -> Option<&Registration> {
        match self {
            RegistryEvent::Online(r) | RegistryEvent::Updated(r) => Some(r),
            RegistryEvent::Offline { registration, .. } => Some(registration),
            RegistryEvent::Lagged(_) => None,
        }
    }
}

impl fmt::Display for RegistryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryEvent::Online(r) => write!(f, "online {}", r.id()),
            RegistryEvent::Updated(r) => write!(f, "updated {}", r.id()),
            RegistryEvent::Offline {
                registration,
                reason,
            } => write!(f, "offline {} ({reason})", registration.id()),
            RegistryEvent::Lagged(n) => write!(f, "lagged: {n} events lost"),
        }
    }
}

/// Which registrations a query or a watch covers: all, one name, or one
/// name and version (Thalassa's three).
///
/// ```
/// use shoal::registry::{Filter, Registration};
///
/// let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).build().unwrap();
/// assert!(Filter::All.matches(&kv));
/// assert!(Filter::name("kv").matches(&kv));
/// assert!(!Filter::version("kv", "2.0.0").matches(&kv));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Filter {
    /// Every registration.
    #[default]
    All,
    /// Registrations with this name.
    Name(String),
    /// Registrations with this name and version.
    NameVersion(String, String),
}

impl Filter {
    /// Registrations named `name`.
    pub fn name(name: impl Into<String>) -> Filter {
        Filter::Name(name.into())
    }

    /// Registrations named `name` at `version`.
    pub fn version(name: impl Into<String>, version: impl Into<String>) -> Filter {
        Filter::NameVersion(name.into(), version.into())
    }

    /// Whether `registration` is covered.
    pub fn matches(&self, registration: &Registration) -> bool {
        match self {
            Filter::All => true,
            Filter::Name(n) => registration.name() == n,
            Filter::NameVersion(n, v) => registration.name() == n && registration.version() == v,
        }
    }

    /// The id prefix every covered registration has (ids are
    /// `/name/version/host/port` and no part holds a `/`).
    pub(crate) fn id_prefix(&self) -> String {
        match self {
            Filter::All => "/".to_owned(),
            Filter::Name(n) => format!("/{n}/"),
            Filter::NameVersion(n, v) => format!("/{n}/{v}/"),
        }
    }
}

/// How much of the registry one node holds at most. Beyond these, a local
/// `register` fails with an error naming the limit, and a remote
/// registration is refused and counted ([`Drops::registry_limit`](crate::Drops::registry_limit)).
///
/// The defaults bound a node's registry memory to about 100 MB in the
/// worst case (every registration at the metadata limit) and about
/// 10 MB for 20,000 typical ones.
///
/// ```
/// use shoal::registry::RegistryLimits;
///
/// let limits = RegistryLimits { per_owner: 500, ..RegistryLimits::default() };
/// let config = shoal::Config::builder().registry_limits(limits).build().unwrap();
/// assert_eq!(config.registry_limits().per_owner, 500);
/// assert_eq!(config.registry_limits().total, 20_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Registrations one owner may hold (1,000).
    pub per_owner: usize,
    /// Registrations held in all, every owner's together (20,000).
    pub total: usize,
    /// Bytes of one registration's metadata, as JSON (4,096).
    pub meta_bytes: usize,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        RegistryLimits {
            per_owner: 1_000,
            total: 20_000,
            meta_bytes: 4_096,
        }
    }
}

/// Why the registry refused a local command.
///
/// ```
/// use std::time::{Duration, Instant};
/// use shoal::protocol::{Protocol, Sender};
/// use shoal::registry::{Registration, RegistryError, RegistryLimits};
///
/// let limits = RegistryLimits { per_owner: 1, ..RegistryLimits::default() };
/// let config = shoal::Config::builder().registry_limits(limits).build().unwrap();
/// let me = Sender { pid: "p".into(), iid: "i".into(), host_name: "h".into() };
/// let now = Instant::now();
/// let mut node = Protocol::new(&config, me, now, 1);
/// let reg = |port| Registration::builder("kv", "1", "10.0.0.5", port).build().unwrap();
/// node.register(now, reg(1), Duration::from_secs(9)).unwrap();
/// let err = node.register(now, reg(2), Duration::from_secs(9)).unwrap_err();
/// assert!(matches!(err, RegistryError::TooMany { limit: "per_owner", max: 1 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registration is not valid (see [`RegistrationError`]).
    #[error(transparent)]
    Invalid(#[from] RegistrationError),
    /// Registering it would go over a [`RegistryLimits`] count.
    #[error("registry full: {limit} is {max} registrations")]
    TooMany {
        /// `per_owner` or `total`.
        limit: &'static str,
        /// The limit.
        max: usize,
    },
    /// Its metadata is over [`RegistryLimits::meta_bytes`].
    #[error("metadata of {bytes} bytes is over the limit of {max} (registry_limits.meta_bytes)")]
    MetaTooLarge {
        /// The metadata's size as JSON.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The time to live is zero, or over a day.
    #[error("ttl must be between 1 ms and 24 h")]
    Ttl,
    /// This node holds no registration with this id (to refresh or
    /// deregister).
    #[error("not registered here: {0}")]
    NotRegistered(String),
}
