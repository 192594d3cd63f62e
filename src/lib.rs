//! # shoal — zero-config discovery on a LAN
//!
//! Processes that link shoal find each other with no server and no
//! configuration. Each node broadcasts (or multicasts) a small *hello* every
//! second carrying its election weight and whatever it advertises; every node
//! keeps a table of live peers and drops those that fall silent; the nodes
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
//!        |            ... node timeout ...                       |  B: Removed(A), Promotion
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
//! - [`protocol`]: the sans-IO state machine: `(now, datagram | timer | command)`
//!   in, datagrams and [`Event`]s out. No sockets, no clock.
//! - [`Discovery`]: the tokio driver that owns the socket and the timers.
//! - [`wire`]: the envelope and `WRAP` framing; [`crypto`]: node-discovery's legacy cipher.
//! - [`sim`]: a deterministic simulated LAN for testing clusters in simulated time.
//!
//! ## Security
//!
//! Without a key, anyone on the LAN can read every packet and forge hellos
//! (claim mastership, inject channel messages). With a key, packets use
//! node-discovery's legacy cipher, which hides contents from casual
//! observers but has a fixed IV, no integrity check and no replay
//! protection: see [`crypto::legacy`].
#![warn(missing_docs)]

mod config;
pub mod crypto;
mod discovery;
mod election;
mod error;
mod event;
mod handle;
mod membership;
mod packet;
pub mod protocol;
mod reassembly;
pub mod service;
pub mod sim;
mod stats;
mod stream;
mod transport;
pub mod wire;

pub use config::{Config, ConfigBuilder, ConfigError, Encryption, Ignore};
pub use discovery::Discovery;
pub use error::{AdvertiseError, Error};
pub use event::{ChannelMessage, Event, LocalState};
pub use membership::{Epoch, NodeId, Peer};
pub use service::{ServiceBuilder, ServiceDiscovery, ServiceEvent, ServiceInstance, Services};
pub use stats::{Drops, Stats};
pub use stream::{EventStream, StreamEvent, Subscription};

/// Compiles the README's Rust examples as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
