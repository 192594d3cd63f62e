//! Replay protection for sealed packets: a sliding window over each
//! sender's packet counters, plus a timestamp check for senders not yet
//! known.
//!
//! Every sealed packet carries its sender's id, a counter the sender never
//! repeats, and the sender's wall-clock time (see [`crate::crypto::secure`]);
//! all three are authenticated. The receiver keeps a [`ReplayWindow`] per
//! sender in a [`ReplayGuard`]:
//!
//! - from a **known** sender, a counter already seen, or more than
//!   [`WINDOW`] behind the highest seen, is a [`SecureError::Replay`];
//! - from an **unknown** sender (first contact) there is nothing to compare
//!   the counter with, so the packet's timestamp must be within
//!   [`ReplayConfig::tolerance_ms`] (default 30 s) of the receiver's clock,
//!   else it is [`SecureError::Stale`]. The same check applies to a known
//!   sender's counters below the first one seen from it, which the window
//!   knows nothing about.
//!
//! So **nodes' clocks must agree within the tolerance** (NTP is plenty): a
//! node whose clock is further off is refused by every node that has not
//! heard from it yet.
//!
//! What remains possible: a packet captured less than the tolerance ago can
//! be replayed *once* to a node that has no window for its sender (a node
//! that has just started, or that evicted the window). Windows are bounded
//! ([`ReplayConfig::max_senders`], least recently seen evicted first, each
//! eviction counted in [`ReplayGuard::evictions`]); an evicted sender's old
//! packets are then stopped only by the timestamp check. Windows are kept
//! after a sender's last packet until every packet accepted from it would
//! fail the timestamp check (at least the tolerance, see
//! [`ReplayGuard::expire`]), so a replay right after a node leaves is still
//! caught.
//!
//! The guard is called twice per packet, around the AEAD open:
//! [`ReplayGuard::precheck`] (no mutation, so forged packets cannot disturb
//! it) and [`ReplayGuard::accept`] (after authentication).

use std::collections::HashMap;

use super::secure::SecureError;

/// How far behind the highest counter seen a [`ReplayWindow`] still
/// remembers counters individually (older ones are refused).
pub const WINDOW: u64 = 1024;

/// Words in the ring bitmap: one more than `WINDOW / 64`, so that every
/// counter within [`WINDOW`] of the highest has its own bit (RFC 6479).
const WORDS: usize = (WINDOW / 64) as usize + 1;

/// The counters seen from one sender: the highest, and which of the
/// [`WINDOW`] before it.
///
/// Counter 0 is never valid (senders start at 1): a new window treats it
/// as seen.
///
/// ```
/// use shoal::crypto::replay::{ReplayWindow, WINDOW};
///
/// let mut w = ReplayWindow::new();
/// for c in [1, 3, 2, 10] {
///     assert!(w.check(c));
///     w.update(c);
///     assert!(!w.check(c)); // now a replay
/// }
/// assert!(w.check(9)); // late but within the window: fine once
/// w.update(5000);
/// assert!(!w.check(5000 - WINDOW)); // too old
/// assert!(w.check(5000 - WINDOW + 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest counter seen.
    highest: u64,
    /// Bit `c % 64` of word `(c / 64) % WORDS` is set when counter `c`,
    /// within [`WINDOW`] of `highest`, has been seen.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow::new()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing (but counter 0).
    ///
    /// ```
    /// use shoal::crypto::replay::ReplayWindow;
    ///
    /// let w = ReplayWindow::new();
    /// assert!(!w.check(0));
    /// assert!(w.check(1) && w.check(u64::MAX));
    /// ```
    pub fn new() -> ReplayWindow {
        let mut bits = [0; WORDS];
        bits[0] = 1; // counter 0
        ReplayWindow { highest: 0, bits }
    }

    /// The highest counter seen (0 if none).
    ///
    /// ```
    /// use shoal::crypto::replay::ReplayWindow;
    ///
    /// let mut w = ReplayWindow::new();
    /// w.update(7);
    /// w.update(3);
    /// assert_eq!(w.highest(), 7);
    /// ```
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Whether `counter` would be new: above the highest seen, or within
    /// [`WINDOW`] below it and not seen yet. Changes nothing.
    ///
    /// ```
    /// use shoal::crypto::replay::ReplayWindow;
    ///
    /// let mut w = ReplayWindow::new();
    /// w.update(2);
    /// assert!(w.check(1) && !w.check(2) && w.check(3));
    /// ```
    pub fn check(&self, counter: u64) -> bool {
        if counter > self.highest {
            return true;
        }
        if self.highest - counter >= WINDOW {
            return false;
        }
        let (word, bit) = locate(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter` as seen. Call it only once the packet is
    /// authenticated. A counter that [`check`](Self::check) refuses changes
    /// nothing.
    ///
    /// ```
    /// use shoal::crypto::replay::ReplayWindow;
    ///
    /// let mut w = ReplayWindow::new();
    /// w.update(u64::MAX);
    /// assert!(!w.check(u64::MAX) && w.check(u64::MAX - 1));
    /// ```
    pub fn update(&mut self, counter: u64) {
        if counter > self.highest {
            // Clear the words between the old highest's and the new one's,
            // all of them if the jump is at least the whole ring.
            let old_word = self.highest / 64;
            let new_word = counter / 64;
            let clear = (new_word - old_word).min(WORDS as u64);
            for i in 1..=clear {
                self.bits[((old_word + i) % WORDS as u64) as usize] = 0;
            }
            self.highest = counter;
        } else if self.highest - counter >= WINDOW {
            return;
        }
        let (word, bit) = locate(counter);
        self.bits[word] |= bit;
    }
}

/// The word index (always `< WORDS`) and bit mask of `counter`.
fn locate(counter: u64) -> (usize, u64) {
    (
        ((counter / 64) % WORDS as u64) as usize,
        1u64 << (counter % 64),
    )
}

/// Settings of a [`ReplayGuard`].
///
/// ```
/// use shoal::crypto::replay::ReplayConfig;
///
/// let config = ReplayConfig { tolerance_ms: 10_000, ..ReplayConfig::default() };
/// assert_eq!(config.max_senders, 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// Most senders whose windows are kept (about 200 bytes each). When a
    /// new sender is accepted beyond this, the least recently seen is
    /// forgotten. 0 keeps no windows at all (only the timestamp check).
    pub max_senders: usize,
    /// How far, in milliseconds, a first-contact packet's timestamp may be
    /// from the receiver's clock, either way.
    pub tolerance_ms: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            max_senders: 1024,
            tolerance_ms: 30_000,
        }
    }
}

/// What the guard knows about one sender.
#[derive(Debug, Clone)]
struct SenderState {
    window: ReplayWindow,
    /// The first counter accepted from this sender: counters below it were
    /// possibly seen before the window existed, so they also need a fresh
    /// timestamp.
    floor: u64,
    /// Receiver time of the last accepted packet.
    last_seen_ms: u64,
    /// The newest timestamp accepted from this sender.
    newest_ts_ms: u64,
}

/// Replay windows for many senders, bounded, with a timestamp check on
/// first contact.
///
/// Times are milliseconds since the Unix epoch: `timestamp_ms` is the
/// sender's clock from the packet, `now_ms` the receiver's, passed in by the
/// caller.
///
/// ```
/// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
/// use shoal::crypto::secure::SecureError;
///
/// let mut guard = ReplayGuard::new(ReplayConfig::default());
/// let (alice, now) = ([1; 16], 1_700_000_000_000);
/// // First contact: the timestamp must be close to ours.
/// assert_eq!(guard.precheck(&alice, 1, now - 60_000, now), Err(SecureError::Stale));
/// guard.precheck(&alice, 1, now - 500, now).unwrap();
/// // ... the AEAD open succeeds ...
/// guard.accept(&alice, 1, now - 500, now).unwrap();
/// // The same packet again:
/// assert_eq!(guard.precheck(&alice, 1, now - 500, now + 10), Err(SecureError::Replay));
/// // Later packets are judged by their counter, not their timestamp.
/// guard.accept(&alice, 2, now - 400, now + 10).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    config: ReplayConfig,
    /// Looked up at every sealed datagram: foldhash, not SipHash.
    senders: HashMap<[u8; 16], SenderState, foldhash::fast::RandomState>,
    evictions: u64,
}

impl ReplayGuard {
    /// A guard that knows no sender yet.
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    ///
    /// assert_eq!(ReplayGuard::new(ReplayConfig::default()).len(), 0);
    /// ```
    pub fn new(config: ReplayConfig) -> ReplayGuard {
        ReplayGuard {
            config,
            senders: HashMap::default(),
            evictions: 0,
        }
    }

    /// Whether a packet could be fresh, before spending an AEAD open on it.
    /// Changes nothing.
    ///
    /// - known sender: a counter its window refuses → [`SecureError::Replay`];
    ///   a counter below the first accepted from it whose timestamp is
    ///   outside the tolerance → [`SecureError::Stale`];
    /// - unknown sender: timestamp outside the tolerance →
    ///   [`SecureError::Stale`]; counter 0 (never sent) →
    ///   [`SecureError::Replay`].
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    /// use shoal::crypto::secure::SecureError;
    ///
    /// let guard = ReplayGuard::new(ReplayConfig { tolerance_ms: 1000, ..Default::default() });
    /// assert!(guard.precheck(&[0; 16], 1, 5_000, 6_000).is_ok());
    /// assert_eq!(guard.precheck(&[0; 16], 1, 5_000, 6_001), Err(SecureError::Stale));
    /// assert_eq!(guard.precheck(&[0; 16], 1, 7_001, 6_000), Err(SecureError::Stale));
    /// ```
    pub fn precheck(
        &self,
        sender: &[u8; 16],
        counter: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), SecureError> {
        let stale = timestamp_ms.abs_diff(now_ms) > self.config.tolerance_ms;
        match self.senders.get(sender) {
            Some(s) => {
                if !s.window.check(counter) {
                    Err(SecureError::Replay)
                } else if counter < s.floor && stale {
                    Err(SecureError::Stale)
                } else {
                    Ok(())
                }
            }
            None if counter == 0 => Err(SecureError::Replay),
            None if stale => Err(SecureError::Stale),
            None => Ok(()),
        }
    }

    /// Records an authenticated packet. Runs [`precheck`](Self::precheck)
    /// again first and records nothing if it fails, so it is also safe to
    /// call alone.
    ///
    /// A new sender beyond [`ReplayConfig::max_senders`] evicts the sender
    /// seen least recently.
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    /// use shoal::crypto::secure::SecureError;
    ///
    /// let mut guard = ReplayGuard::new(ReplayConfig::default());
    /// guard.accept(&[9; 16], 42, 1_000, 1_000).unwrap();
    /// assert_eq!(guard.accept(&[9; 16], 42, 1_000, 1_000), Err(SecureError::Replay));
    /// ```
    pub fn accept(
        &mut self,
        sender: &[u8; 16],
        counter: u64,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), SecureError> {
        self.precheck(sender, counter, timestamp_ms, now_ms)?;
        if let Some(s) = self.senders.get_mut(sender) {
            s.window.update(counter);
            s.last_seen_ms = s.last_seen_ms.max(now_ms);
            s.newest_ts_ms = s.newest_ts_ms.max(timestamp_ms);
            return Ok(());
        }
        if self.config.max_senders == 0 {
            return Ok(());
        }
        if self.senders.len() >= self.config.max_senders {
            self.evict_one();
        }
        let mut window = ReplayWindow::new();
        window.update(counter);
        self.senders.insert(
            *sender,
            SenderState {
                window,
                floor: counter,
                last_seen_ms: now_ms,
                newest_ts_ms: timestamp_ms,
            },
        );
        Ok(())
    }

    /// Forgets the least recently seen sender.
    fn evict_one(&mut self) {
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, s)| s.last_seen_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.senders.remove(&id);
            self.evictions += 1;
        }
    }

    /// Forgets senders whose windows are no longer needed at `now_ms`: at
    /// least the tolerance after their last packet, *and* more than the
    /// tolerance after the newest timestamp accepted from them, so that
    /// replaying any packet accepted from them fails the first-contact
    /// timestamp check. Returns how many were forgotten. Call it now and
    /// then (every few seconds); it scans every sender.
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    /// use shoal::crypto::secure::SecureError;
    ///
    /// let mut guard = ReplayGuard::new(ReplayConfig { tolerance_ms: 1000, ..Default::default() });
    /// guard.accept(&[1; 16], 1, 10_000, 10_000).unwrap();
    /// assert_eq!(guard.expire(10_999), 0);
    /// // Still a replay, not a first contact:
    /// assert_eq!(guard.precheck(&[1; 16], 1, 10_000, 10_999), Err(SecureError::Replay));
    /// assert_eq!(guard.expire(11_001), 1);
    /// // Now the timestamp check catches it.
    /// assert_eq!(guard.precheck(&[1; 16], 1, 10_000, 11_001), Err(SecureError::Stale));
    /// ```
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let tolerance = self.config.tolerance_ms;
        let before = self.senders.len();
        self.senders.retain(|_, s| {
            let quiet = now_ms >= s.last_seen_ms.saturating_add(tolerance);
            let all_stale = now_ms > s.newest_ts_ms.saturating_add(tolerance);
            !(quiet && all_stale)
        });
        before - self.senders.len()
    }

    /// How many senders have been evicted to make room for new ones (each
    /// one's packets younger than the tolerance could then be replayed once).
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    ///
    /// let mut guard = ReplayGuard::new(ReplayConfig { max_senders: 1, ..Default::default() });
    /// guard.accept(&[1; 16], 1, 0, 0).unwrap();
    /// guard.accept(&[2; 16], 1, 0, 0).unwrap();
    /// assert_eq!((guard.len(), guard.evictions()), (1, 1));
    /// ```
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// How many senders have a window.
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    ///
    /// assert_eq!(ReplayGuard::new(ReplayConfig::default()).len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    /// Whether no sender has a window.
    ///
    /// ```
    /// use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
    ///
    /// assert!(ReplayGuard::new(ReplayConfig::default()).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(0));
        for c in 1..5000 {
            assert!(w.check(c), "{c}");
            w.update(c);
            assert!(!w.check(c), "{c}");
            assert!(!w.check(c - 1), "{c}");
        }
        assert_eq!(w.highest(), 4999);
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new();
        w.update(2000);
        // Everything within the window, in reverse, once each.
        for c in (2000 - WINDOW + 1..2000).rev() {
            assert!(w.check(c), "{c}");
            w.update(c);
            assert!(!w.check(c), "{c}");
        }
        assert!(!w.check(2000 - WINDOW));
        assert!(!w.check(1));
        // Updating with a too-old counter is a no-op.
        let before = w.clone();
        w.update(5);
        assert_eq!(w, before);
    }

    #[test]
    fn too_old_and_big_jumps() {
        let mut w = ReplayWindow::new();
        w.update(10);
        w.update(10 + WINDOW);
        assert!(!w.check(10)); // both seen and too old
        assert!(!w.check(11 - 1));
        assert!(w.check(11));
        // A jump larger than the ring clears it all.
        w.update(1_000_000);
        for c in 1_000_000 - WINDOW + 1..1_000_000 {
            assert!(w.check(c), "{c}");
        }
        assert!(!w.check(1_000_000 - WINDOW));
        // Near the top of u64.
        w.update(u64::MAX - 1);
        assert!(w.check(u64::MAX) && w.check(u64::MAX - 2));
        w.update(u64::MAX);
        assert!(!w.check(u64::MAX) && !w.check(u64::MAX - 1));
        assert!(w.check(u64::MAX - WINDOW + 1) && !w.check(u64::MAX - WINDOW));
    }

    #[test]
    fn first_contact_tolerance() {
        let g = ReplayGuard::new(ReplayConfig::default());
        let s = [1; 16];
        assert!(g.precheck(&s, 1, NOW, NOW).is_ok());
        assert!(g.precheck(&s, 1, NOW - 30_000, NOW).is_ok());
        assert!(g.precheck(&s, 1, NOW + 30_000, NOW).is_ok());
        assert_eq!(
            g.precheck(&s, 1, NOW - 30_001, NOW),
            Err(SecureError::Stale)
        );
        assert_eq!(
            g.precheck(&s, 1, NOW + 30_001, NOW),
            Err(SecureError::Stale)
        );
        assert_eq!(g.precheck(&s, 1, 0, NOW), Err(SecureError::Stale));
        assert_eq!(g.precheck(&s, 1, u64::MAX, NOW), Err(SecureError::Stale));
        assert_eq!(g.precheck(&s, 0, NOW, NOW), Err(SecureError::Replay));
        // Configurable.
        let g = ReplayGuard::new(ReplayConfig {
            tolerance_ms: 5,
            ..ReplayConfig::default()
        });
        assert!(g.precheck(&s, 1, NOW - 5, NOW).is_ok());
        assert_eq!(g.precheck(&s, 1, NOW - 6, NOW), Err(SecureError::Stale));
    }

    #[test]
    fn known_senders_are_judged_by_counter() {
        let mut g = ReplayGuard::new(ReplayConfig::default());
        let s = [1; 16];
        g.accept(&s, 100, NOW, NOW).unwrap();
        // The sender's clock may drift afterwards; its counters still count.
        g.accept(&s, 101, NOW - 3_600_000, NOW + 1).unwrap();
        g.accept(&s, 150, NOW + 3_600_000, NOW + 2).unwrap();
        g.accept(&s, 120, NOW, NOW + 3).unwrap();
        for c in [100, 101, 120, 150] {
            assert_eq!(g.precheck(&s, c, NOW, NOW + 4), Err(SecureError::Replay));
            assert_eq!(g.accept(&s, c, NOW, NOW + 4), Err(SecureError::Replay));
        }
        // Below the first counter accepted: the window does not know
        // whether it was seen before, so the timestamp must be fresh.
        assert!(g.precheck(&s, 99, NOW, NOW + 4).is_ok());
        assert_eq!(
            g.precheck(&s, 99, NOW - 60_000, NOW + 4),
            Err(SecureError::Stale)
        );
        assert_eq!(
            g.accept(&s, 99, NOW - 60_000, NOW + 4),
            Err(SecureError::Stale)
        );
        g.accept(&s, 99, NOW, NOW + 4).unwrap();
        assert_eq!(g.precheck(&s, 99, NOW, NOW + 4), Err(SecureError::Replay));
        // Another sender is unaffected.
        assert!(g.precheck(&[2; 16], 100, NOW, NOW).is_ok());
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn eviction_bound() {
        let mut g = ReplayGuard::new(ReplayConfig {
            max_senders: 3,
            ..ReplayConfig::default()
        });
        for (i, t) in [(1u8, 0u64), (2, 1), (3, 2)] {
            g.accept(&[i; 16], 1, NOW, NOW + t).unwrap();
        }
        // Sender 1 is seen again, so 2 is now the least recently seen.
        g.accept(&[1; 16], 2, NOW, NOW + 3).unwrap();
        g.accept(&[4; 16], 1, NOW, NOW + 4).unwrap();
        assert_eq!((g.len(), g.evictions()), (3, 1));
        assert_eq!(
            g.precheck(&[1; 16], 2, NOW, NOW + 5),
            Err(SecureError::Replay)
        );
        assert_eq!(
            g.precheck(&[3; 16], 1, NOW, NOW + 5),
            Err(SecureError::Replay)
        );
        assert_eq!(
            g.precheck(&[4; 16], 1, NOW, NOW + 5),
            Err(SecureError::Replay)
        );
        // Sender 2 was forgotten: its old packet passes while fresh...
        assert!(g.precheck(&[2; 16], 1, NOW, NOW + 5).is_ok());
        // ...and is stopped by the timestamp once stale.
        assert_eq!(
            g.precheck(&[2; 16], 1, NOW, NOW + 30_001),
            Err(SecureError::Stale)
        );
        for i in 5..100u8 {
            g.accept(&[i; 16], 1, NOW, NOW + u64::from(i)).unwrap();
            assert!(g.len() <= 3);
        }
        // No windows at all.
        let mut g = ReplayGuard::new(ReplayConfig {
            max_senders: 0,
            ..ReplayConfig::default()
        });
        g.accept(&[1; 16], 1, NOW, NOW).unwrap();
        assert!(g.is_empty());
    }

    #[test]
    fn windows_outlive_the_tolerance() {
        let tol = 30_000;
        let mut g = ReplayGuard::new(ReplayConfig::default());
        let s = [1; 16];
        // The sender's clock is 20 s ahead of ours.
        g.accept(&s, 1, NOW + 20_000, NOW).unwrap();
        // A node that leaves: its last packet is replayed while fresh.
        for later in [1, 10_000, tol - 1] {
            assert_eq!(g.expire(NOW + later), 0);
            assert_eq!(
                g.precheck(&s, 1, NOW + 20_000, NOW + later),
                Err(SecureError::Replay)
            );
        }
        // 30 s after its last packet the window is kept while the packet's
        // timestamp would still pass as a first contact...
        assert_eq!(g.expire(NOW + tol), 0);
        assert_eq!(g.expire(NOW + 20_000 + tol), 0);
        assert_eq!(
            g.precheck(&s, 1, NOW + 20_000, NOW + 20_000 + tol),
            Err(SecureError::Replay)
        );
        // ...and dropped once it would not.
        assert_eq!(g.expire(NOW + 20_001 + tol), 1);
        assert_eq!(
            g.precheck(&s, 1, NOW + 20_000, NOW + 20_001 + tol),
            Err(SecureError::Stale)
        );
        // A sender that keeps talking keeps its window.
        g.accept(&s, 5, NOW, NOW).unwrap();
        for i in 1..100 {
            g.accept(&s, 5 + i, NOW + i * 1000, NOW + i * 1000).unwrap();
            assert_eq!(g.expire(NOW + i * 1000), 0);
        }
    }

    proptest! {
        /// The window against a model: a set of seen counters.
        #[test]
        fn window_matches_model(ops in proptest::collection::vec((0u64..3000, any::<bool>()), 1..400),
                                base in prop_oneof![Just(0u64), Just(u64::MAX - 4000), any::<u64>()]) {
            let base = base.min(u64::MAX - 4000);
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut highest = 0u64;
            if base > 0 {
                // Start somewhere else: as if `base` was the first counter.
                w.update(base);
                seen.insert(base);
                highest = base;
            }
            for (off, do_update) in ops {
                let c = base + off;
                let fresh = c != 0 && !seen.contains(&c) && (c > highest || highest - c < WINDOW);
                prop_assert_eq!(w.check(c), fresh, "counter {}", c);
                if do_update && fresh {
                    w.update(c);
                    seen.insert(c);
                    highest = highest.max(c);
                    prop_assert!(!w.check(c));
                }
                prop_assert_eq!(w.highest(), highest);
            }
        }

        #[test]
        fn guard_never_panics(ops in proptest::collection::vec(
            (0u8..8, any::<u64>(), any::<u64>(), any::<u64>()), 1..200)) {
            let mut g = ReplayGuard::new(ReplayConfig { max_senders: 4, tolerance_ms: 1000 });
            for (s, counter, ts, now) in ops {
                let sender = [s; 16];
                let pre = g.precheck(&sender, counter, ts, now);
                let acc = g.accept(&sender, counter, ts, now);
                prop_assert_eq!(pre, acc);
                if acc.is_ok() {
                    prop_assert_eq!(g.precheck(&sender, counter, ts, now), Err(SecureError::Replay));
                }
                prop_assert!(g.len() <= 4);
                g.expire(now);
            }
        }
    }
}
