//! Telling the user that a sender's packets fail authentication.
//!
//! Two nodes with different keys sit deaf beside each other: each drops
//! everything the other sends, and a drop counter alone tells nobody. So
//! the first such packet from an address is reported at once, as an
//! [`Event::Unauthenticated`], and later ones from that address at most
//! once per [`REPORT_INTERVAL`], with the number dropped in between.
//!
//! The table of addresses is capped at [`MAX_SENDERS`]: source addresses
//! cost an attacker nothing to forge, so neither memory nor the number of
//! events may grow with them. When the table is full of addresses
//! reported within the interval, a new address is not reported (its
//! packets are still counted in [`crate::Drops`]) until an entry ages out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::crypto::key::KeyId;
use crate::event::Event;
use crate::wire::DecodeError;

/// Reports for one address are at least this far apart.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Most addresses tracked at once: also the most reports per interval.
pub(crate) const MAX_SENDERS: usize = 256;

/// One address's packets since its last report.
#[derive(Debug, Clone, Copy)]
struct Sender {
    reported_at: Instant,
    /// Dropped since that report, not counting the one it was about.
    dropped: u64,
}

/// The addresses whose unauthenticated packets were reported lately. See
/// the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct UnauthenticatedSenders {
    senders: HashMap<SocketAddr, Sender>,
    /// No entry ages out before this: a full table is not scanned again
    /// until then, so a flood of new addresses costs one lookup each.
    next_expiry: Option<Instant>,
}

impl UnauthenticatedSenders {
    /// Records one packet from `from` that failed authentication (`key_id`:
    /// the key it was sealed under, if it was sealed; `error`: why it was
    /// refused) and returns the event to emit, if one is due.
    pub(crate) fn record(
        &mut self,
        now: Instant,
        from: SocketAddr,
        key_id: Option<KeyId>,
        error: DecodeError,
    ) -> Option<Event> {
        let report = |dropped| Event::Unauthenticated {
            from,
            key_id,
            dropped,
            error,
        };
        if let Some(sender) = self.senders.get_mut(&from) {
            if now < sender.reported_at + REPORT_INTERVAL {
                sender.dropped += 1;
                return None;
            }
            let dropped = sender.dropped + 1;
            *sender = Sender {
                reported_at: now,
                dropped: 0,
            };
            return Some(report(dropped));
        }
        if self.senders.len() >= MAX_SENDERS && !self.make_room(now) {
            return None;
        }
        self.senders.insert(
            from,
            Sender {
                reported_at: now,
                dropped: 0,
            },
        );
        Some(report(1))
    }

    /// Forgets the addresses last reported an interval ago or more, if that
    /// can have freed anything; `true` if there is room now.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.next_expiry.is_some_and(|at| now < at) {
            return false;
        }
        self.senders
            .retain(|_, s| now < s.reported_at + REPORT_INTERVAL);
        // Entries only age from here (a report moves one later), so the
        // oldest one now bounds when the next scan can free anything.
        self.next_expiry = self
            .senders
            .values()
            .map(|s| s.reported_at + REPORT_INTERVAL)
            .min();
        self.senders.len() < MAX_SENDERS
    }

    /// Addresses tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::secure::SecureError;

    fn addr(n: u32) -> SocketAddr {
        SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + n), 12345))
    }

    const ERROR: DecodeError = DecodeError::Secure(SecureError::AuthFailed);

    fn dropped(event: Option<Event>) -> Option<u64> {
        event.map(|e| match e {
            Event::Unauthenticated { dropped, .. } => dropped,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn the_first_packet_is_reported_then_one_report_per_interval_counts_the_rest() {
        let t0 = Instant::now();
        let mut table = UnauthenticatedSenders::default();
        let id = Some(KeyId([1, 2, 3, 4]));
        let got = table.record(t0, addr(1), id, ERROR);
        assert_eq!(
            got,
            Some(Event::Unauthenticated {
                from: addr(1),
                key_id: id,
                dropped: 1,
                error: ERROR
            })
        );
        // One packet every 100 ms for 25 s: reports at 10 s and 20 s only.
        let mut reports = Vec::new();
        for i in 1..=250 {
            let at = t0 + Duration::from_millis(100 * i);
            if let Some(n) = dropped(table.record(at, addr(1), id, ERROR)) {
                reports.push((i, n));
            }
        }
        assert_eq!(reports, vec![(100, 100), (200, 100)]);
        // Another address is reported on its own schedule.
        assert_eq!(dropped(table.record(t0, addr(2), None, ERROR)), Some(1));
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_and_the_reports_bounded() {
        let t0 = Instant::now();
        let mut table = UnauthenticatedSenders::default();
        let mut reports = 0;
        // 100,000 addresses over 50 s, 2,000 a second.
        for n in 0..100_000u32 {
            let at = t0 + Duration::from_micros(500 * u64::from(n));
            reports += usize::from(table.record(at, addr(n), None, ERROR).is_some());
            assert!(table.len() <= MAX_SENDERS);
        }
        // At most a full table per interval (plus the first one).
        assert!(reports <= MAX_SENDERS * 6, "{reports}");
        assert!(reports >= MAX_SENDERS * 5, "{reports}");
        // The flood is over: a real peer is reported again once entries age out.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(dropped(table.record(later, addr(1), None, ERROR)), Some(1));
    }

    /// The whole path, through a node: 100,000 sealed packets under
    /// another key, each from a forged address of its own, over 50 s.
    #[test]
    fn a_node_flooded_from_forged_addresses_stays_bounded() {
        use crate::crypto::key::Key;
        use crate::protocol::{Protocol, Sender};
        use crate::Config;

        let t0 = Instant::now();
        let node = |key: u8, iid: char| {
            let config = Config::builder()
                .secret_key(Key::from_bytes([key; 32]))
                .build()
                .unwrap();
            let sender = Sender {
                pid: "p".repeat(32),
                iid: iid.to_string().repeat(32),
                host_name: "h".into(),
            };
            Protocol::new(&config, sender, t0, 1)
        };
        let mut attacker = node(2, 'b');
        attacker.handle_timeout(t0);
        let sealed = attacker.poll_transmit().unwrap().payload;
        let mut victim = node(1, 'a');
        let mut reports = 0;
        for n in 0..100_000u32 {
            let at = t0 + Duration::from_micros(500 * u64::from(n));
            victim.handle_datagram(at, addr(n), &sealed);
            while let Some(event) = victim.poll_event() {
                match event {
                    Event::Unauthenticated { key_id, .. } => {
                        assert_eq!(key_id, Some(Key::from_bytes([2; 32]).id()));
                        reports += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            assert!(victim.unauthenticated_senders() <= MAX_SENDERS);
        }
        assert!(reports <= MAX_SENDERS * 6, "{reports}");
        assert_eq!(victim.stats().dropped.unknown_key, 100_000);
    }
}
