//! Shared helpers for shoal's integration tests. Include with `mod support;`
//! from a test file at `tests/<name>.rs`.
//!
//! * [`netns`]: a private virtual LAN (one bridge, N hosts) built from Linux
//!   network namespaces, so broadcast/multicast tests never touch a real
//!   interface. Needs root; use [`require_netns!`](crate::require_netns) to
//!   skip elsewhere.
//! * [`proc`]: spawn a peer process and collect its JSON-lines stdout.
//! * [`peer`]: build commands for the Node (`tests/node/peer.js`) and Rust
//!   (`examples/node.rs`) peers, which take the same flags.
// Each test binary uses only part of this module.
#![allow(dead_code, unused_imports)]

pub mod netns;
pub mod node_install;
pub mod peer;
pub mod proc;

pub use netns::{netns_available, skip_unless_netns, Host, Lan, Net, Segment};
pub use peer::{node_available, node_peer, rust_peer, skip_unless_node};
pub use proc::Proc;

/// Returns from the calling test (after printing "skipping: needs root and ip
/// netns") when network namespaces are unavailable; panics instead when
/// `SHOAL_REQUIRE_NETNS=1` is set (CI).
#[macro_export]
macro_rules! require_netns {
    () => {
        if $crate::support::skip_unless_netns() {
            return;
        }
    };
}

/// Returns from the calling test when `node` or the pinned node-discovery
/// (`tests/node/node_modules`) is missing; panics instead when
/// `SHOAL_REQUIRE_NODE=1` is set.
#[macro_export]
macro_rules! require_node {
    () => {
        if $crate::support::skip_unless_node() {
            return;
        }
    };
}
