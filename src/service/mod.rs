//! ServiceDiscovery: wait for the services a process depends on.
//!
//! A process says which services it needs ([`ServiceBuilder::need`]) and how
//! to set each one up ([`ServiceBuilder::setup`]); it is told when every
//! need has at least one live, set-up instance ([`ServiceEvent::Ready`],
//! [`ServiceDiscovery::ready`]) and when one is lost ([`ServiceEvent::NotReady`]).
//! A service is whatever a node advertises with a string `name`:
//! `{"name": "kv", "port": 7000}`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal::Error> {
//! use shoal::{Config, ServiceDiscovery, ServiceEvent};
//!
//! let web = ServiceDiscovery::builder(Config::builder().build()?)
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
//! while let Some(event) = events.recv().await {
//!     if let ServiceEvent::NotReady(name) = event {
//!         println!("lost every {name}: stop taking new work");
//!     }
//! }
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
use std::net::SocketAddr;

use crate::event::LocalState;
use crate::membership::{NodeId, Peer};

#[cfg(feature = "runtime")]
pub use discovery::{ServiceBuilder, ServiceDiscovery};

/// One instance of a service: a node advertising `{"name": <name>, ...}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServiceInstance {
    /// The service name.
    pub name: String,
    /// The node, with everything it advertises in `peer.info`.
    pub peer: Peer,
}

impl ServiceInstance {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.peer.id
    }

    /// The node's address (the source of its hellos).
    pub fn addr(&self) -> SocketAddr {
        self.peer.addr
    }

    /// What the node advertises (an object with at least `name`).
    pub fn info(&self) -> &serde_json::Value {
        self.peer.info.as_ref().unwrap_or(&serde_json::Value::Null)
    }
}

/// Active instances by service name.
pub type Services = BTreeMap<String, Vec<ServiceInstance>>;

/// What the service layer tells its user.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// An instance passed all its setup hooks and is now active.
    Service(ServiceInstance),
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
