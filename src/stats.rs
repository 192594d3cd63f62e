//! Counters a node keeps about its traffic.

/// Traffic and drop counters; read them with [`crate::Discovery::stats`].
///
/// ```
/// use std::time::Duration;
/// use shoal::sim::SimNet;
///
/// let mut net = SimNet::new(1);
/// let a = net.add_node(shoal::Config::builder().weight(0.9).build().unwrap());
/// let b = net.add_node(shoal::Config::builder().weight(0.1).build().unwrap());
/// net.run_for(Duration::from_secs(3));
/// let stats = net.node(a).protocol.stats();
/// assert!(stats.hellos_in >= 3 && stats.messages_out >= 3);
/// assert_eq!(stats.dropped.total(), stats.dropped.own); // only its own hellos
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent (blocks).
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Whole messages (envelopes) decoded.
    pub messages_in: u64,
    /// Whole messages (envelopes) sent.
    pub messages_out: u64,
    /// Hellos processed.
    pub hellos_in: u64,
    /// Drops by reason.
    pub dropped: Drops,
    /// Events a slow consumer lost (summed over event streams and subscriptions).
    pub events_lost: u64,
    /// Registry: pulls sent (a copy of an owner's table was behind).
    pub registry_pulls: u64,
    /// Registry: datagrams sent answering other nodes' pulls.
    pub registry_repairs: u64,
    /// Registry: answers to pulls cut short by the repair budget (the
    /// puller asks again).
    pub registry_repairs_deferred: u64,
}

/// Dropped packets, by reason.
///
/// ```
/// use shoal::protocol::Protocol;
/// use shoal::protocol::Sender;
///
/// let config = shoal::Config::builder().build().unwrap();
/// let me = Sender { pid: "p".into(), iid: "i".into(), host_name: "h".into() };
/// let now = std::time::Instant::now();
/// let mut node = Protocol::new(&config, me, now, 1);
/// node.handle_datagram(now, "10.0.0.2:12345".parse().unwrap(), br#"{"event":"hello","data":{},"iid":"node-discover dialect"}"#);
/// assert_eq!(node.stats().dropped.not_wrapped, 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Drops {
    /// Not a `WRAP` block (for example node-discover's plain JSON dialect).
    pub not_wrapped: u64,
    /// Malformed block: too short, bad length, inconsistent with its message.
    pub malformed: u64,
    /// Declared or actual message size above the limit.
    pub too_large: u64,
    /// CRC mismatch.
    pub checksum: u64,
    /// Refused because incomplete messages already use the reassembly budget.
    pub reassembly_full: u64,
    /// Incomplete messages that timed out.
    pub reassembly_timeout: u64,
    /// Decryption failed (wrong key or not encrypted).
    pub decrypt: u64,
    /// Not a valid envelope or hello.
    pub envelope: u64,
    /// Our own packets (per the ignore rule).
    pub own: u64,
    /// New nodes refused because the peer table is full.
    pub table_full: u64,
    /// Messages on reserved event names other than `hello`.
    pub reserved: u64,
    /// Messages on channels nobody joined.
    pub not_joined: u64,
    /// Secure mode: sealed packets that failed authentication (forged,
    /// corrupted, or sealed under a key with a colliding id).
    pub auth_failed: u64,
    /// Secure mode: replayed or stale sealed packets.
    pub replay: u64,
    /// Secure mode: sealed under a key we do not hold (or secure packets
    /// while we accept only legacy ones).
    pub unknown_key: u64,
    /// Secure mode: a sealed-packet version or algorithm we do not know.
    pub unknown_version: u64,
    /// Secure mode: plaintext packets refused because we accept only sealed ones.
    pub unauthenticated: u64,
    /// Registry: remote registrations refused by a
    /// [`RegistryLimits`](crate::registry::RegistryLimits) limit.
    pub registry_limit: u64,
    /// Registry: malformed registry messages or registrations.
    pub registry_invalid: u64,
    /// Registry: messages from a node not in the peer table (or not at its
    /// address).
    pub registry_unknown: u64,
    /// Benign: a copy of a datagram that already arrived by another path
    /// within the last half second (a node heard over IPv4 and IPv6, or over two
    /// interfaces, or a seed hearing both our broadcast and our unicast).
    /// Dropped so that a message is handled once; not a sign of attack,
    /// though a replay from another address within that time lands here
    /// rather than in `replay`.
    pub duplicate: u64,
    /// Arrived on an interface this node did not choose (see
    /// [`ConfigBuilder::interfaces`](crate::ConfigBuilder::interfaces)):
    /// dropped before decoding. Counted by the driver.
    pub other_interface: u64,
}

impl Drops {
    /// Total drops.
    pub fn total(&self) -> u64 {
        self.not_wrapped
            + self.malformed
            + self.too_large
            + self.checksum
            + self.reassembly_full
            + self.reassembly_timeout
            + self.decrypt
            + self.envelope
            + self.own
            + self.table_full
            + self.reserved
            + self.not_joined
            + self.auth_failed
            + self.replay
            + self.unknown_key
            + self.unknown_version
            + self.unauthenticated
            + self.registry_limit
            + self.registry_invalid
            + self.registry_unknown
            + self.duplicate
            + self.other_interface
    }

    pub(crate) fn count_secure(&mut self, error: &crate::crypto::secure::SecureError) {
        use crate::crypto::secure::SecureError as E;
        let counter = match error {
            E::TooShort | E::Malformed(_) => &mut self.malformed,
            E::NotSecure => &mut self.not_wrapped,
            E::UnknownVersion(_) | E::UnknownAlgorithm(_) => &mut self.unknown_version,
            E::UnknownKey(_) | E::NotAccepted => &mut self.unknown_key,
            E::AuthFailed => &mut self.auth_failed,
            E::Replay | E::Stale => &mut self.replay,
            E::TooLarge => &mut self.too_large,
            E::ReassemblyFull => &mut self.reassembly_full,
            E::ReassemblyTimeout => &mut self.reassembly_timeout,
        };
        *counter += 1;
    }

    pub(crate) fn count(&mut self, error: &crate::wire::DecodeError) {
        use crate::wire::DecodeError as E;
        let counter = match error {
            E::NotWrapped => &mut self.not_wrapped,
            E::TooShort { .. } | E::BadBlockLength { .. } | E::BadBlock(_) => &mut self.malformed,
            E::TooLarge { .. } => &mut self.too_large,
            E::Checksum => &mut self.checksum,
            E::ReassemblyFull => &mut self.reassembly_full,
            E::ReassemblyTimeout => &mut self.reassembly_timeout,
            E::Decrypt => &mut self.decrypt,
            E::Envelope(_) => &mut self.envelope,
            E::Unauthenticated => &mut self.unauthenticated,
            E::Secure(error) => return self.count_secure(error),
        };
        *counter += 1;
    }
}
