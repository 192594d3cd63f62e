//! shoal: zero-config discovery on a LAN.
#![warn(missing_docs)]

mod config;
pub mod crypto;
mod discovery;
mod election;
mod error;
mod event;
mod membership;
pub mod protocol;
pub mod sim;
mod stats;
mod transport;
pub mod wire;

pub use config::{Config, ConfigBuilder, ConfigError, Ignore};
pub use discovery::{Discovery, EventStream, Subscription};
pub use error::Error;
pub use event::{ChannelMessage, Event, LocalState};
pub use membership::{NodeId, Peer};
pub use stats::{Drops, Stats};
