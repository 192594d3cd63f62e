//! ServiceDiscovery: wait for the services a process depends on.
//!
//! A process says which services it needs ([`ServiceBuilder::need`]) and how
//! to set each one up ([`ServiceBuilder::setup`]); it is told when every
//! need has at least one live, set-up instance ([`ServiceEvent::Ready`],
//! [`ServiceDiscovery::ready`]) and when one is lost ([`ServiceEvent::NotReady`]).
//! A service is whatever a node advertises with a string `name`:
//! `{"name": "kv", "port": 7000}`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shoal::Error> {
//! use shoal::{Config, ServiceDiscovery, ServiceEvent};
//!
//! # let config = || Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_631);
//! # let kv = shoal::Discovery::start(config().advertise(serde_json::json!({"name": "kv", "port": 7000})).build()?).await?;
//! # let queue = shoal::Discovery::start(config().advertise(serde_json::json!({"name": "queue"})).build()?).await?;
//! let web = ServiceDiscovery::builder(config().build()?)
//!     .advertise(serde_json::json!({"name": "web", "ready": false}))
//!     .need("queue")
//!     .setup("kv", |kv| async move {
//!         let port = kv.info()["port"].as_u64().ok_or("no port")?;
//!         println!("connecting to kv at {}:{port}", kv.addr().ip());
//!         Ok::<(), &str>(())
//!     })
//!     .start()
//!     .await?;
//! let services = web.ready().await?;      // both kv (set up) and queue are live
//! println!("ready with {:?}", services.keys().collect::<Vec<_>>());
//! web.advertise(&serde_json::json!({"name": "web", "ready": true}))?;
//! let mut events = web.events();
//! # queue.shutdown().await;
//! while let Some(event) = events.recv().await {
//!     if let ServiceEvent::NotReady(name) = event {
//!         println!("lost every {name}: stop taking new work");
//!         # break;
//!     }
//! }
//! # kv.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! **Registrations are instances too.** A need is also met by a live
//! registration of that name in the node's [registry](crate::registry),
//! whoever owns it: another node (a sidecar that registered a legacy app
//! on its behalf, say) or this process. A setup hook reads where to
//! connect from [`ServiceInstance::host`] and [`ServiceInstance::port`],
//! whichever kind the instance is (for a node, its address's IP and the
//! `port` it advertises), and the registration itself from
//! [`ServiceInstance::registration`]. A node instance is keyed by its node,
//! a registration instance by the registration's id, so a node that
//! advertises `kv` and owns registrations of `kv` gives one instance for
//! each. A registration that goes offline (deregistered, expired, or its
//! owner gone) is [`ServiceEvent::InstanceGone`], then
//! [`ServiceEvent::NotReady`] if it was the last.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shoal::Error> {
//! use std::time::Duration;
//! use shoal::{Config, Discovery, Registration, ServiceDiscovery};
//!
//! # let config = || Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_650);
//! let web = ServiceDiscovery::builder(config().build()?)
//!     .setup("kv", |kv| async move {
//!         let port = kv.port().ok_or("no port")?;
//!         println!("connecting to kv at {}:{port}", kv.host());
//!         Ok::<(), &str>(())
//!     })
//!     .start()
//!     .await?;
//!
//! // Elsewhere on the LAN, a sidecar registers a kv it runs.
//! let sidecar = Discovery::start(config().build()?).await?;
//! # // On one host the nodes share a port, and a pull (unicast) for a delta
//! # // missed may reach the wrong one: register once web knows the sidecar.
//! # while web.discovery().nodes().is_empty() { tokio::time::sleep(Duration::from_millis(10)).await; }
//! let kv = Registration::builder("kv", "1.0.0", "127.0.0.1", 7000).build()?;
//! sidecar.registry().register(kv.clone(), Duration::from_secs(30)).await?;
//!
//! let services = web.ready().await?;
//! assert_eq!(services["kv"][0].port(), Some(7000));
//! assert_eq!(services["kv"][0].registration().map(|r| r.id()), Some(kv.id()));
//! # sidecar.shutdown().await;
//! # web.shutdown().await;
//! # Ok(()) }
//! ```

#[cfg(feature = "runtime")]
mod discovery;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod tracker;
// Its `pub` items are the internals' API; without that feature some of them
// serve only the crate's own tests.
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code)]
mod tracker;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use crate::event::{write_lagged, write_local, LocalState};
use crate::membership::{write_quoted, write_text, NodeId, Peer};
use crate::registry::Registration;

#[cfg(feature = "runtime")]
pub use discovery::{ServiceBuilder, ServiceDiscovery};

/// One instance of a service: a node advertising `{"name": <name>, ...}`,
/// or a live registration named `<name>` in the node's
/// [registry](crate::registry).
///
/// A setup hook connects to [`host`](Self::host) and [`port`](Self::port),
/// whichever kind the instance is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServiceInstance {
    /// The service name.
    pub name: String,
    /// The node, with everything it advertises in `peer.info`: the node
    /// advertising the service, or the owner of the registration as the
    /// peer table knows it. `None` only for a registration this process
    /// owns (it is not in its own peer table).
    pub peer: Option<Peer>,
    node: NodeId,
    addr: SocketAddr,
    host: String,
    registration: Option<Registration>,
}

impl ServiceInstance {
    /// An instance advertised by `peer`.
    pub(crate) fn advertised(name: String, peer: Peer) -> ServiceInstance {
        ServiceInstance {
            name,
            node: peer.id.clone(),
            addr: peer.addr,
            host: peer.addr.ip().to_string(),
            peer: Some(peer),
            registration: None,
        }
    }

    /// An instance registered in the registry, owned by `owner`.
    pub(crate) fn registered(registration: Registration, owner: tracker::Owner) -> ServiceInstance {
        ServiceInstance {
            name: registration.name().to_owned(),
            node: owner.id,
            addr: owner.addr,
            host: registration.host().to_owned(),
            peer: owner.peer,
            registration: Some(registration),
        }
    }

    /// The node's id: the node advertising the service, or the owner of
    /// the registration (this node's own id for one this process owns).
    pub fn id(&self) -> &NodeId {
        &self.node
    }

    /// The node's address (the source of its hellos), as [`id`](Self::id)
    /// names the node; for a registration this process owns, this node's
    /// socket address. To connect to the service, use [`host`](Self::host)
    /// and [`port`](Self::port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the node advertises (for an advertised service, an object
    /// with at least `name`); `Null` for a registration this process owns.
    pub fn info(&self) -> &serde_json::Value {
        self.peer
            .as_ref()
            .and_then(|p| p.info.as_ref())
            .unwrap_or(&serde_json::Value::Null)
    }

    /// Where the service is served: the registration's host, or the IP
    /// address of the node advertising it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port the service is served at: the registration's, or the
    /// `port` the node advertises if it is a number that fits (`None`
    /// otherwise).
    pub fn port(&self) -> Option<u16> {
        match &self.registration {
            Some(r) => Some(r.port()),
            None => self
                .info()
                .get("port")
                .and_then(serde_json::Value::as_u64)
                .and_then(|p| u16::try_from(p).ok()),
        }
    }

    /// The registration this instance is, if it is one.
    pub fn registration(&self) -> Option<&Registration> {
        self.registration.as_ref()
    }

    /// Writes where the instance is, as [`ServiceEvent`]'s `Display` does:
    /// the node, or the registration's id.
    fn write_where(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.registration, &self.peer) {
            // Parts of an id hold no space or control character: one line.
            (Some(r), _) => write!(f, "registration {}", r.id()),
            (None, Some(peer)) => fmt::Display::fmt(peer, f),
            (None, None) => fmt::Display::fmt(&self.node, f),
        }
    }
}

/// Active instances by service name.
pub type Services = BTreeMap<String, Vec<ServiceInstance>>;

/// What the service layer tells its user.
///
/// It prints as one line for a log (see its `Display`), and in full with
/// `{:?}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// An instance passed all its setup hooks and is now active.
    Service(ServiceInstance),
    /// An active instance went away: its node was removed (goodbye or
    /// timeout), stopped advertising the service, or advertised another
    /// name. Comes before [`NotReady`](Self::NotReady) when it was the last
    /// one, so that a user can rebalance on every change.
    InstanceGone(ServiceInstance),
    /// Every need has at least one active instance. Carries all active instances.
    Ready(Services),
    /// The last active instance of this needed service is gone.
    NotReady(String),
    /// A setup hook failed (or timed out); the instance is not active. It is
    /// set up again if it is removed and seen again.
    SetupFailed {
        /// The instance.
        instance: ServiceInstance,
        /// The hook's error, as text.
        error: String,
    },
    /// A node became master.
    Master(Peer),
    /// This node became master.
    Promotion(LocalState),
    /// This node stopped being master.
    Demotion(LocalState),
    /// This stream fell behind and lost this many events.
    Lagged(u64),
}

/// One line for a log, starting with what happened:
///
/// - `service "kv" active on 3f2a1b9c… (db-1 at 10.0.0.2:12345, weight 0.90)`,
///   with the node as [`Peer`]'s [`Display`](Peer#impl-Display-for-Peer)
///   prints it, or `service "kv" active on registration /kv/1.0.0/10.0.0.5/7000`
///   for a registration;
/// - `ready: "kv" (2 instances), "queue" (1 instance)` (just `ready` when
///   nothing is needed);
/// - `not ready: lost every "kv"`;
/// - `setup of "kv" failed on 3f2a1b9c… (db-1 at 10.0.0.2:12345, weight 0.90): connection refused`;
/// - `master …`, `promotion (this node …)`, `demotion (…)` and
///   `lagged: 12 events lost`, as [`Event`](crate::Event) prints them.
///
/// Ids are shortened as [`Event`](crate::Event)'s `Display` explains, and
/// printed whole by the alternate form, `{:#}`. Names and errors are
/// escaped so that every event stays on one line.
///
/// ```
/// use shoal::ServiceEvent;
///
/// assert_eq!(ServiceEvent::NotReady("kv".into()).to_string(), r#"not ready: lost every "kv""#);
/// assert_eq!(ServiceEvent::Lagged(1).to_string(), "lagged: 1 event lost");
/// ```
impl fmt::Display for ServiceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner values are handed this formatter, so `{:#}` reaches the ids.
        match self {
            ServiceEvent::Service(instance) => {
                f.write_str("service ")?;
                write_quoted(f, &instance.name)?;
                f.write_str(" active on ")?;
                instance.write_where(f)
            }
            ServiceEvent::InstanceGone(instance) => {
                f.write_str("service ")?;
                write_quoted(f, &instance.name)?;
                f.write_str(" gone from ")?;
                instance.write_where(f)
            }
            ServiceEvent::Ready(services) => {
                f.write_str("ready")?;
                for (i, (name, instances)) in services.iter().enumerate() {
                    f.write_str(if i == 0 { ": " } else { ", " })?;
                    write_quoted(f, name)?;
                    let n = instances.len();
                    let s = if n == 1 { "" } else { "s" };
                    write!(f, " ({n} instance{s})")?;
                }
                Ok(())
            }
            ServiceEvent::NotReady(name) => {
                f.write_str("not ready: lost every ")?;
                write_quoted(f, name)
            }
            ServiceEvent::SetupFailed { instance, error } => {
                f.write_str("setup of ")?;
                write_quoted(f, &instance.name)?;
                f.write_str(" failed on ")?;
                instance.write_where(f)?;
                f.write_str(": ")?;
                write_text(f, error)
            }
            ServiceEvent::Master(peer) => {
                f.write_str("master ")?;
                fmt::Display::fmt(peer, f)
            }
            ServiceEvent::Promotion(me) => write_local(f, "promotion", me),
            ServiceEvent::Demotion(me) => write_local(f, "demotion", me),
            ServiceEvent::Lagged(n) => write_lagged(f, *n),
        }
    }
}

#[cfg(test)]
mod display_tests {
    use super::*;
    use crate::membership::display_tests::{peer, LONG_ID};

    fn db() -> ServiceInstance {
        let mut peer = peer(LONG_ID, false, true, 0.9);
        peer.host_name = "db-1".into();
        ServiceInstance::advertised("kv".into(), peer)
    }

    fn me() -> LocalState {
        LocalState {
            id: NodeId::new("77aa0011bb22cc33dd44ee55ff667788"),
            is_master: true,
            is_master_eligible: true,
            weight: 0.9,
            info: None,
            epoch: Some(crate::Epoch {
                n: 4,
                master: NodeId::new("77aa0011bb22cc33dd44ee55ff667788"),
            }),
        }
    }

    #[test]
    fn every_service_event_prints_on_one_line() {
        let services: Services = [
            ("kv".to_owned(), vec![db(), db()]),
            ("queue".to_owned(), vec![db()]),
        ]
        .into();
        let mut master = db().peer.unwrap();
        master.is_master = true;
        let cases = [
            (
                ServiceEvent::Service(db()),
                r#"service "kv" active on 3f2a1b9c… (db-1 at 10.0.0.2:12345, weight 0.90)"#,
            ),
            (
                ServiceEvent::InstanceGone(db()),
                r#"service "kv" gone from 3f2a1b9c… (db-1 at 10.0.0.2:12345, weight 0.90)"#,
            ),
            (
                ServiceEvent::Ready(services),
                r#"ready: "kv" (2 instances), "queue" (1 instance)"#,
            ),
            (ServiceEvent::Ready(Services::new()), "ready"),
            (
                ServiceEvent::NotReady("kv".into()),
                r#"not ready: lost every "kv""#,
            ),
            (
                ServiceEvent::SetupFailed {
                    instance: db(),
                    error: "connection refused\nretrying".into(),
                },
                r#"setup of "kv" failed on 3f2a1b9c… (db-1 at 10.0.0.2:12345, weight 0.90): connection refused\nretrying"#,
            ),
            (
                ServiceEvent::Master(master),
                "master 3f2a1b9c… (db-1 at 10.0.0.2:12345, master, weight 0.90)",
            ),
            (
                ServiceEvent::Promotion(me()),
                "promotion (this node 77aa0011…, master, weight 0.90, epoch 4)",
            ),
            (
                ServiceEvent::Demotion(me()),
                "demotion (this node 77aa0011…, master, weight 0.90, epoch 4)",
            ),
            (ServiceEvent::Lagged(12), "lagged: 12 events lost"),
        ];
        for (event, line) in cases {
            assert_eq!(event.to_string(), line);
        }
        assert_eq!(
            format!("{:#}", ServiceEvent::Service(db())),
            format!(r#"service "kv" active on {LONG_ID} (db-1 at 10.0.0.2:12345, weight 0.90)"#)
        );
    }
}
