//! Payload encryption.
//!
//! - [`legacy`]: node-discovery's cipher, kept for interoperability with
//!   Node peers. It is weak (fixed IV, no integrity, no replay protection):
//!   see its module docs.
//! - shoal's *secure mode*, for clusters of shoal nodes only, built from
//!   sans-IO pieces (no sockets, no clocks: times are passed in):
//!   - [`key`]: 32-byte keys given as hex or base64, or derived from a
//!     passphrase (Argon2id), each with a public 4-byte [`key::KeyId`];
//!   - [`keyring`]: one primary key for sending, secondary keys accepted on
//!     receipt, for rotating keys without a flag day;
//!   - [`secure`]: the sealed datagram format (AES-256-GCM under per-sender
//!     subkeys with counter nonces, the header authenticated), sealing,
//!     opening and bounded fragment reassembly;
//!   - [`replay`]: per-sender sliding counter windows, with a timestamp
//!     check for senders not yet known.
//!
//!   [`secure`]'s module docs describe the packet format and the order of
//!   the receive checks.

pub mod key;
pub mod keyring;
pub mod legacy;
pub mod replay;
pub mod secure;
