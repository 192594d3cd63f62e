//! # shoal — zero-config discovery on a LAN
//!
//! Processes that link shoal find each other with no server and no
//! configuration. Each node broadcasts (or multicasts) a small *hello*
//! (every 400 ms by default) carrying its election weight and whatever it
//! advertises; every node
//! keeps a table of live peers and drops those silent for the node timeout
//! (2.6 s by default; a timeout you set is the deadline, see
//! [`ConfigBuilder::node_timeout`]); the nodes
//! elect one master (or `masters_required` of them) by weight; and they
//! exchange JSON messages on named channels.
//!
//! shoal speaks the wire format of the Node.js package
//! [`node-discovery`](https://www.npmjs.com/package/node-discovery) 0.2.1, so a
//! Rust process can join an existing Node cluster, plain or encrypted.
//!
//! ```text
//!   node A (weight 0.9)          LAN (UDP :12345)          node B (weight 0.4)
//!        |                                                       |
//!        |---- hello {weight 0.9} ------------------------------>|  B: Added(A)
//!  A: Added(B) <-------------------------- hello {weight 0.4} ---|
//!        |            ... one check interval later ...           |
//!  A: nobody outranks me, no master known -> Promotion           |
//!        |---- hello {isMaster: true} -------------------------->|  B: Master(A)
//!        |---- "jobs" {"n": 1} --------------------------------->|  B: subscription yields it
//!        x  A crashes                                            |
//!        |            ... node timeout ...                       |  B: Removed(A, Timeout), Promotion
//! ```
//!
//! ## Example
//!
//! Two nodes in one process, on the loopback interface only:
//!
//! ```
//! use std::time::Duration;
//! use shoal::{Config, Discovery, Event};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shoal::Error> {
//! let config = |weight| {
//!     Config::builder()
//!         .port(47_300)
//!         .broadcast("127.255.255.255".parse().unwrap()) // this host only
//!         .weight(weight)
//!         .build()
//! };
//! let a = Discovery::start(config(0.9)?).await?;
//! let b = Discovery::start(config(0.4)?).await?;
//! let mut jobs = b.join("jobs")?;
//!
//! let mut events = a.events();
//! while let Some(event) = events.recv().await {
//!     if let Event::Added(peer) = event {
//!         assert_eq!(peer.id, b.id());
//!         break;
//!     }
//! }
//! a.send("jobs", &serde_json::json!({"n": 1}))?;
//! let message = tokio::time::timeout(Duration::from_secs(5), jobs.recv()).await.unwrap().unwrap();
//! assert_eq!(message.data["n"], 1);
//!
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//!
//! The sans-IO core takes `(now, input)` and returns datagrams and events;
//! it has no sockets, no clock reads and no tokio (the crate builds without
//! its `runtime` feature, and CI checks that it does):
//!
//! - [`protocol`]: the state machine a node is: hellos, the peer table
//!   (`membership`), the election (`election`) and channels. Its
//!   [`Transmit`](protocol::Transmit)s name a
//!   [`Destination`](protocol::Destination) (the cluster, or one peer),
//!   never a socket address.
//! - `packet`: packet protection, between the protocol and the wire: plain
//!   or legacy-encrypted `WRAP` blocks, or shoal's sealed datagrams, with
//!   the keys, replay windows and reassembly behind one codec.
//! - `wire` (node-discovery's envelope and `WRAP` framing) and `crypto`
//!   (secure mode and node-discovery's legacy cipher): the formats
//!   themselves. They are internal; what a user needs of them ([`Key`],
//!   [`DecodeError`], [`SecureError`]) is exported here.
//! - [`service`]: the readiness tracker behind [`ServiceDiscovery`].
//! - `sim` (feature `sim`): a deterministic simulated LAN that runs
//!   thousands of nodes through the core in simulated time.
//!
//! The driver (feature `runtime`, on by default) is thin: [`Discovery`] owns
//! the UDP transport, the timers and one task, and hands events and channel
//! messages to [`EventStream`]s and [`Subscription`]s without ever making
//! the protocol wait; [`ServiceDiscovery`] runs the readiness tracker and
//! the setup hooks on top of it. Both handles are cheap to clone and shut
//! down from any clone.
//!
//! ## Security
//!
//! Without a key, anyone on the LAN can read every packet and forge hellos
//! (claim mastership, inject channel messages). With a key
//! ([`ConfigBuilder::secret_key`], or [`ConfigBuilder::passphrase`]) a node
//! runs in secure mode: every datagram is
//! sealed with AES-256-GCM under a per-sender subkey, with replay windows
//! and key rotation ([`Discovery::install_key`]). node-discovery's own
//! cipher ([`Encryption::LegacyNodeDiscovery`]: a fixed IV, no integrity,
//! no replay protection, [`ConfigBuilder::legacy_key`]) is only there to
//! talk to Node peers that use a key. See SECURITY.md.
#![deny(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
// Without the driver, the docs' links to it have nothing to point at.
#![cfg_attr(not(feature = "runtime"), allow(rustdoc::broken_intra_doc_links))]

// The sans-IO core: no sockets, no clocks, no tokio (CI builds it with
// `--no-default-features` to prove it).
mod config;
mod dedupe;
mod election;
mod error;
mod event;
pub mod interface;
mod membership;
mod packet;
pub mod protocol;
mod reassembly;
pub mod registry;
pub mod service;
#[cfg(feature = "sim")]
pub mod sim;
mod stats;
mod unauthenticated;
mod unicast;

// The driver: a thread per node, and the tokio streams and handles around it.
#[cfg(feature = "runtime")]
mod discovery;
#[cfg(feature = "runtime")]
mod handle;
#[cfg(feature = "runtime")]
mod stream;
#[cfg(feature = "runtime")]
mod transport;

// The codec internals: public only with the hidden `internals` feature, for
// shoal's own benches and fuzz targets; what users need of them is
// re-exported below. Without the feature their `pub` items are the
// internals' API, unreachable on purpose, and some serve only tests.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod crypto;
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code)]
mod crypto;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod wire;
#[cfg(not(feature = "internals"))]
#[allow(unreachable_pub, dead_code)]
mod wire;

pub use config::{Config, ConfigBuilder, ConfigError, Encryption, Ignore, DEFAULT_IPV6_GROUP};
pub use crypto::key::{Key, KeyError, KeyId};
pub use crypto::secure::SecureError;
pub use error::{AdvertiseError, Error};
pub use event::{ChannelMessage, Event, LocalState, Removal};
pub use interface::{IfKind, Interface, Predicate, Via};
pub use membership::{Epoch, NodeId, Peer};
pub use registry::{Registration, RegistryEvent};
pub use service::{ServiceEvent, ServiceInstance, Services};
pub use stats::{Drops, Stats};
pub use wire::{DecodeError, EnvelopeError};

#[cfg(feature = "runtime")]
pub use discovery::Discovery;
#[cfg(feature = "runtime")]
pub use registry::Registry;
#[cfg(feature = "runtime")]
pub use service::{ServiceBuilder, ServiceDiscovery};
#[cfg(feature = "runtime")]
pub use stream::{EventStream, StreamEvent, Subscription};

/// Runs the README's Rust snippets as doctests (on loopback, to the end), so
/// the first code a newcomer reads compiles, runs and finishes.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
