//! shoal: zero-config discovery on a LAN.
#![warn(missing_docs)]

pub mod crypto;
pub mod wire;
