//! Cross-path duplicate suppression.
//!
//! A node heard over two paths (IPv4 and IPv6, two interfaces on one LAN,
//! or a seed that hears both our broadcast and our unicast) receives each
//! of its datagrams twice, byte for byte. The second copy must not be
//! delivered again (a channel message) nor look like an attack (a sealed
//! datagram's second copy would otherwise count as a replay).
//!
//! [`PathDedupe`] remembers, for [`WINDOW`], a keyed hash of each datagram
//! that was accepted (it authenticated and decoded) and the path (source
//! address, interface, local address) it came by. The same datagram from a
//! *different* path within the window is a duplicate: dropped and counted
//! in [`Drops::duplicate`](crate::Drops::duplicate). Datagrams that were
//! refused are not remembered, so copies of a forgery sent from many
//! addresses are still each refused and counted as what they are.
//! The same datagram again on the *same* path is left alone, so that the
//! replay guard still sees (and counts) a replay, and a plaintext datagram
//! the network duplicated is handled as it always was. Two messages an
//! application sends are never byte-identical (each carries a random
//! message id or a fresh sealed counter), so both are delivered.
//!
//! The hash covers a datagram's first 64 bytes, its last 16 and its length:
//! the header of a `WRAP` block (random message id, block offset) or of a
//! sealed datagram (sender, counter) makes those unique, and the tail of a
//! sealed one is its authentication tag. Memory is bounded: at most
//! [`CAPACITY`] datagrams are remembered, the oldest forgotten first.
//!
//! It costs a hash and a table update per datagram, so it stays off (and
//! the receive path as it was) until two paths are possible: the node was
//! given two interface addresses or more, or it saw a sign of a second
//! path (a hello from a known peer by another path, or a replayed sealed
//! datagram, which is what a second copy looks like before this is on).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::interface::Via;
use crate::membership::NodeId;

/// How long a datagram is remembered: copies over two paths of one LAN
/// arrive within milliseconds of each other (a busy Wi-Fi link may add a
/// hundred). Short, so that a replay from another address after that is
/// still seen, and counted, as a replay.
pub(crate) const WINDOW: Duration = Duration::from_millis(500);

/// At most this many datagrams are remembered (about 100 kB).
pub(crate) const CAPACITY: usize = 4096;

/// See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct PathDedupe {
    /// Whether it is in use (see the module docs).
    on: bool,
    /// Keys the hashes (random per node, so a sender cannot aim collisions).
    keys: RandomState,
    /// Datagram hash → (path hash, when it arrived, the node whose hello
    /// it carried).
    seen: HashMap<u64, (u64, Instant, Option<NodeId>)>,
    /// Arrival order, for expiry.
    order: VecDeque<(Instant, u64)>,
}

/// What [`PathDedupe::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// A copy of an accepted datagram that came by another path, and the
    /// node whose hello it carried, if it was one: that node is still
    /// heard on this path.
    Duplicate(Option<NodeId>),
    /// Not a duplicate: [`PathDedupe::remember`] it if it is accepted.
    New(Fingerprint),
}

/// A datagram and its path, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    datagram: u64,
    path: u64,
}

impl PathDedupe {
    /// Starts checking datagrams: a second path is possible.
    pub(crate) fn turn_on(&mut self) {
        self.on = true;
    }

    /// Whether it checks datagrams.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Whether `datagram`, from `from` by `via`, is a copy of an accepted
    /// one that came by another path within the window.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Option<&Via>,
        datagram: &[u8],
    ) -> Check {
        self.expire(now);
        let head = datagram.get(..64).unwrap_or(datagram);
        let tail = datagram
            .get(datagram.len().saturating_sub(16)..)
            .unwrap_or_default();
        let key = self.keys.hash_one((datagram.len(), head, tail));
        let path = self.keys.hash_one((from, via.map(|v| (v.index, v.local))));
        match self.seen.get(&key) {
            Some((first_path, _, hello_of)) if *first_path != path => {
                Check::Duplicate(hello_of.clone())
            }
            _ => Check::New(Fingerprint {
                datagram: key,
                path,
            }),
        }
    }

    /// Remembers an accepted datagram (checked at `now`), and the node
    /// whose hello it carried, if it was one.
    pub(crate) fn remember(
        &mut self,
        now: Instant,
        fingerprint: Fingerprint,
        hello_of: Option<NodeId>,
    ) {
        if self.order.len() >= CAPACITY {
            self.forget_oldest();
        }
        self.seen
            .insert(fingerprint.datagram, (fingerprint.path, now, hello_of));
        self.order.push_back((now, fingerprint.datagram));
    }

    /// `check`, then `remember` what is new: for the tests.
    #[cfg(test)]
    fn is_duplicate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        via: Option<&Via>,
        datagram: &[u8],
    ) -> bool {
        match self.check(now, from, via, datagram) {
            Check::Duplicate(_) => true,
            Check::New(f) => {
                self.remember(now, f, None);
                false
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, _)) = self.order.front() {
            if now.saturating_duration_since(at) < WINDOW {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front() {
            // Only if no later arrival of the same datagram refreshed it.
            if self.seen.get(&key).is_some_and(|&(_, t, _)| t == at) {
                self.seen.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_by_another_path_is_a_duplicate_and_by_the_same_path_is_not() {
        let t0 = Instant::now();
        let mut d = PathDedupe::default();
        d.turn_on();
        let v4: SocketAddr = "10.0.0.2:12345".parse().unwrap();
        let v6: SocketAddr = "[fe80::2%2]:12345".parse().unwrap();
        let eth0 = Via::new("eth0", 2, "10.0.0.1".parse().unwrap());
        let eth0_v6 = Via::new("eth0", 2, "fe80::1".parse().unwrap());
        let a = b"WRAP datagram one".to_vec();
        assert!(!d.is_duplicate(t0, v4, Some(&eth0), &a));
        assert!(d.is_duplicate(t0, v6, Some(&eth0_v6), &a));
        // Same path again: left to the replay guard.
        assert!(!d.is_duplicate(t0, v4, Some(&eth0), &a));
        // Another datagram: not a duplicate.
        assert!(!d.is_duplicate(t0, v6, Some(&eth0_v6), b"WRAP datagram two"));
        // After the window, a copy is no longer suppressed.
        let later = t0 + WINDOW;
        assert!(!d.is_duplicate(later, v6, Some(&eth0_v6), &a));
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut d = PathDedupe::default();
        let from: SocketAddr = "10.0.0.2:1".parse().unwrap();
        for i in 0..(CAPACITY as u32 * 3) {
            d.is_duplicate(t0, from, None, &i.to_be_bytes());
        }
        assert!(d.len() <= CAPACITY);
        assert!(d.order.len() <= CAPACITY);
    }
}
