//! Packet protection: whole messages (JSON envelope bytes) in, datagrams
//! out, and back, in whichever mode the node runs.
//!
//! | mode | a message on the wire |
//! |---|---|
//! | plaintext | node-discovery's `WRAP` blocks around the JSON |
//! | [`Encryption::LegacyNodeDiscovery`] | `WRAP` blocks around node-discovery's AES-256-CBC of the JSON |
//! | [`Encryption::Secure`] (and the two mixed modes) | shoal's sealed datagrams ([`crate::crypto::secure`]) |
//!
//! [`PacketCodec`] owns every piece of that: the legacy cipher, the secure
//! keyring, sealer, opener and replay guard, both reassemblers, and the
//! wall clock that sealed timestamps need. The protocol above it sees whole
//! authenticated messages and never a cipher, a fragment or a key.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;

use crate::config::{Config, Encryption, Ignore};
use crate::crypto::key::{Key, KeyError, KeyId};
use crate::crypto::keyring::Keyring;
use crate::crypto::legacy::LegacyCipher;
use crate::crypto::replay::{ReplayConfig, ReplayGuard};
use crate::crypto::secure::{
    self, AssemblyLimits, FragmentAssembler, Opener, SealedHeader, Sealer, SecureError,
    DEFAULT_CIPHER_CACHE,
};
use crate::wire::framing::{self, Reassembler};
use crate::wire::DecodeError;
use crate::Error;

/// Wall-clock origin until [`PacketCodec::set_wall_clock`] is called.
const DEFAULT_WALL_MS: u64 = 1_700_000_000_000;

/// One whole message taken out of a datagram.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    /// The JSON envelope bytes, borrowed from the datagram when it carried
    /// the whole message in the clear. `sealed_by` is the authenticated
    /// sender id of a sealed message, which the envelope's instance id must
    /// match ([`sender_id`]).
    Message {
        bytes: Cow<'a, [u8]>,
        sealed_by: Option<[u8; 16]>,
    },
    /// A fragment or block held until the rest of its message arrives.
    Pending,
    /// One of our own sealed datagrams, looped back (not worth an AEAD open).
    Own,
}

/// What is left of a received datagram: node-discovery's receiver accepts
/// several `WRAP` blocks back to back, so one datagram may carry several
/// messages. Built by [`Incoming::new`], drained by [`PacketCodec::decode`].
#[derive(Debug)]
pub(crate) struct Incoming<'a> {
    /// `None` once everything has been read.
    rest: Option<&'a [u8]>,
    from: SocketAddr,
    /// Past the first `WRAP` block: what follows can only be more blocks.
    in_blocks: bool,
}

impl<'a> Incoming<'a> {
    pub(crate) fn new(from: SocketAddr, datagram: &'a [u8]) -> Self {
        Incoming {
            rest: Some(datagram),
            from,
            in_blocks: false,
        }
    }
}

/// The protection of one node's packets. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct PacketCodec {
    /// How packets are protected now; `None`: plaintext only.
    mode: Option<Encryption>,
    /// node-discovery's cipher, built when a legacy key is configured.
    legacy: Option<LegacyCipher>,
    /// Secure-mode state, present once there is a key.
    secure: Option<Secure>,
    /// `WRAP` blocks of plaintext and legacy messages.
    reassembler: Reassembler,
    /// Our id in sealed headers.
    sender_id: [u8; 16],
    ignore_own: bool,
    max_message: usize,
    max_datagram: usize,
    /// What a keyring installed at run time is built with.
    secure_limits: SecureLimits,
    /// Maps `Instant`s to wall-clock ms for sealed timestamps.
    wall: (Instant, u64),
}

/// The configuration a [`Secure`] state is built from.
#[derive(Debug, Clone, Copy)]
struct SecureLimits {
    assembly: AssemblyLimits,
    replay: ReplayConfig,
    cipher_cache: usize,
}

impl PacketCodec {
    /// The codec of a node whose instance id is `iid`, at `now`.
    pub(crate) fn new(config: &Config, iid: &str, now: Instant) -> Self {
        let mode = config.encryption();
        if mode == Some(Encryption::LegacyNodeDiscovery) {
            tracing::warn!(
                "legacy node-discovery encryption: no integrity, no replay protection, \
                 a fixed IV; use it only to talk to node-discovery peers"
            );
        }
        let limits = config.reassembly;
        let secure_limits = SecureLimits {
            assembly: AssemblyLimits {
                max_message: limits.max_message,
                max_pending: limits.max_pending,
                max_pending_bytes: limits.max_pending_bytes,
                timeout: limits.timeout,
                ..AssemblyLimits::default()
            },
            replay: ReplayConfig {
                tolerance_ms: u64::try_from(config.replay_tolerance.as_millis())
                    .unwrap_or(u64::MAX),
                max_senders: config.max_nodes.max(16),
            },
            // One cached cipher per peer the table may hold (and us), so a
            // large cluster does not thrash the cache on every packet.
            cipher_cache: config.max_nodes.saturating_add(1).max(DEFAULT_CIPHER_CACHE),
        };
        let sender_id = sender_id(iid);
        PacketCodec {
            mode,
            legacy: config
                .legacy_key
                .as_ref()
                .map(|key| LegacyCipher::new(key.as_str().as_bytes())),
            secure: config
                .secure_key
                .clone()
                .map(|key| Secure::new(key, sender_id, secure_limits)),
            reassembler: Reassembler::new(limits),
            sender_id,
            ignore_own: config.ignore == Ignore::OwnInstance,
            max_message: limits.max_message,
            max_datagram: config.max_datagram_size,
            secure_limits,
            wall: (now, DEFAULT_WALL_MS),
        }
    }

    /// Tells the codec the wall-clock time (ms since the Unix epoch) at `now`.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall = (now, unix_ms);
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let (at, ms) = self.wall;
        match now.checked_duration_since(at) {
            Some(ahead) => ms.saturating_add(ahead.as_millis() as u64),
            None => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
        }
    }

    // ----- keys and modes -------------------------------------------------

    /// How packets are protected now (`None`: plaintext only).
    pub(crate) fn mode(&self) -> Option<Encryption> {
        self.mode
    }

    /// Switches protection. The legacy mode needs a configured legacy key,
    /// the secure modes an installed key; on error nothing changes.
    pub(crate) fn set_mode(&mut self, mode: Option<Encryption>) -> Result<(), Error> {
        match mode {
            Some(Encryption::LegacyNodeDiscovery) if self.legacy.is_none() => {
                return Err(Error::NoKey(Encryption::LegacyNodeDiscovery))
            }
            Some(m) if m != Encryption::LegacyNodeDiscovery && self.secure.is_none() => {
                return Err(Error::NoKey(m))
            }
            _ => {}
        }
        self.mode = mode;
        Ok(())
    }

    /// Adds a key: accepted from now on; with no keyring yet, it becomes the
    /// primary (sending) key.
    pub(crate) fn install_key(&mut self, key: Key) -> Result<(), Error> {
        match &mut self.secure {
            Some(secure) => secure.keyring.install(key).map_err(Error::Key),
            None => {
                self.secure = Some(Secure::new(key, self.sender_id, self.secure_limits));
                Ok(())
            }
        }
    }

    /// Makes an installed key the primary.
    pub(crate) fn use_key(&mut self, id: KeyId) -> Result<(), Error> {
        self.keyring_mut(id)?.use_key(id).map_err(Error::Key)
    }

    /// Removes a secondary key.
    pub(crate) fn remove_key(&mut self, id: KeyId) -> Result<(), Error> {
        self.keyring_mut(id)?.remove(id).map_err(Error::Key)
    }

    fn keyring_mut(&mut self, id: KeyId) -> Result<&mut Keyring, Error> {
        match &mut self.secure {
            Some(secure) => Ok(&mut secure.keyring),
            None => Err(Error::Key(KeyError::UnknownKey(id))),
        }
    }

    /// The installed key ids, primary first.
    pub(crate) fn key_ids(&self) -> Vec<KeyId> {
        self.secure
            .as_ref()
            .map(|s| s.keyring.ids())
            .unwrap_or_default()
    }

    // ----- receiving ------------------------------------------------------

    /// The next message (or the reason to drop the next part) of a received
    /// datagram; `None` once it is used up. A datagram that cannot be
    /// parsed further yields its error and ends.
    pub(crate) fn decode<'a>(
        &mut self,
        now: Instant,
        incoming: &mut Incoming<'a>,
    ) -> Option<Result<Decoded<'a>, DecodeError>> {
        let datagram = incoming.rest.take()?;
        if !incoming.in_blocks {
            if secure::is_sealed(datagram) {
                return Some(self.open(now, datagram).map_err(DecodeError::Secure));
            }
            if self.mode == Some(Encryption::Secure) {
                return Some(Err(DecodeError::Unauthenticated));
            }
            incoming.in_blocks = true;
        }
        let (header, data, tail) = match framing::parse_block(datagram) {
            Ok(parsed) => parsed,
            Err(error) => return Some(Err(error)),
        };
        if !tail.is_empty() {
            incoming.rest = Some(tail);
        }
        Some(
            match self.reassembler.push(now, incoming.from, &header, data) {
                Ok(Some(payload)) => self.decrypt(payload),
                Ok(None) => Ok(Decoded::Pending),
                Err(error) => Err(error),
            },
        )
    }

    /// Whether `error`, met decoding `datagram`, means that its sender and
    /// this node do not share a key (or that it was forged): `Some` with
    /// the id of the key it was sealed under (`None` inside when it was not
    /// sealed), or `None` for every other reason to drop a packet. This is
    /// what [`crate::Event::Unauthenticated`] reports.
    pub(crate) fn auth_failure(
        &self,
        datagram: &[u8],
        error: &DecodeError,
    ) -> Option<Option<KeyId>> {
        let sealed_under = || SealedHeader::parse(datagram).ok().map(|h| h.key_id);
        match error {
            DecodeError::Secure(SecureError::UnknownKey(id)) => Some(Some(*id)),
            DecodeError::Secure(SecureError::AuthFailed) => Some(sealed_under()),
            DecodeError::Secure(SecureError::NotAccepted) => {
                // Refused before the own-packet check: our own packets
                // looping back just after a switch away from secure mode
                // are no news.
                let header = SealedHeader::parse(datagram).ok();
                match header {
                    Some(h) if h.sender == self.sender_id => None,
                    header => Some(header.map(|h| h.key_id)),
                }
            }
            DecodeError::Unauthenticated | DecodeError::Decrypt => Some(None),
            _ => None,
        }
    }

    /// A whole `WRAP` payload: node-discovery's cipher undone if it is on.
    fn decrypt<'a>(&self, payload: Cow<'a, [u8]>) -> Result<Decoded<'a>, DecodeError> {
        let bytes = match (&self.legacy, self.mode) {
            (Some(cipher), Some(Encryption::LegacyNodeDiscovery)) => {
                Cow::Owned(cipher.decrypt(&payload).map_err(|_| DecodeError::Decrypt)?)
            }
            _ => payload,
        };
        Ok(Decoded::Message {
            bytes,
            sealed_by: None,
        })
    }

    /// Takes back the bytes of a [`Decoded::Message`] once handled, so that
    /// the next sealed datagram is decrypted into them, not into a new
    /// allocation.
    pub(crate) fn recycle(&mut self, bytes: Cow<'_, [u8]>) {
        if let (Cow::Owned(buffer), Some(secure)) = (bytes, self.secure.as_mut()) {
            secure.opener.recycle(buffer);
        }
    }

    /// Unwraps one sealed datagram: header, key, replay window, AEAD,
    /// fragments, cheapest check first (see [`crate::crypto::secure`]).
    fn open<'a>(&mut self, now: Instant, datagram: &[u8]) -> Result<Decoded<'a>, SecureError> {
        let now_ms = self.unix_ms(now);
        let accepts = self.mode.is_some_and(Encryption::accepts_secure);
        let Some(secure) = self.secure.as_mut().filter(|_| accepts) else {
            return Err(SecureError::NotAccepted);
        };
        let header = SealedHeader::parse(datagram)?;
        if self.ignore_own && header.sender == secure.sealer.sender() {
            return Ok(Decoded::Own);
        }
        if secure.keyring.get(header.key_id).is_none() {
            return Err(SecureError::UnknownKey(header.key_id));
        }
        secure
            .guard
            .precheck(&header.sender, header.counter, header.timestamp_ms, now_ms)?;
        let plain = secure.opener.open(&secure.keyring, &header, datagram)?;
        secure
            .guard
            .accept(&header.sender, header.counter, header.timestamp_ms, now_ms)?;
        Ok(match secure.assembler.push(now, &header, plain)? {
            Some(message) => Decoded::Message {
                bytes: Cow::Owned(message),
                sealed_by: Some(header.sender),
            },
            None => Decoded::Pending,
        })
    }

    // ----- sending --------------------------------------------------------

    /// Protects one message as the current mode says and hands each
    /// datagram to `emit`. `rng` draws the `WRAP` message id (sealed
    /// datagrams need none). A message over the maximum message size is
    /// refused whole: nothing is emitted.
    pub(crate) fn encode(
        &mut self,
        now: Instant,
        json: Vec<u8>,
        rng: &mut impl Rng,
        mut emit: impl FnMut(Vec<u8>),
    ) -> Result<(), Error> {
        let max = self.max_message;
        let too_large = |size| Error::MessageTooLarge { size, max };
        let now_ms = self.unix_ms(now);
        if let (Some(mode), Some(secure)) = (self.mode, self.secure.as_mut()) {
            if mode.sends_secure() {
                if json.len() > max {
                    return Err(too_large(json.len()));
                }
                let key = secure.keyring.primary().clone();
                let datagrams = secure
                    .sealer
                    .seal_message(&key, now_ms, &json, self.max_datagram)
                    .map_err(|_| too_large(json.len()))?;
                datagrams.into_iter().for_each(emit);
                return Ok(());
            }
        }
        let payload = match (self.mode, &self.legacy) {
            (Some(Encryption::LegacyNodeDiscovery), Some(cipher)) => cipher.encrypt(&json),
            _ => json,
        };
        if payload.len() > max {
            return Err(too_large(payload.len()));
        }
        framing::encode(&payload, rng.gen(), &mut emit);
        Ok(())
    }

    // ----- time -----------------------------------------------------------

    /// Drops incomplete messages whose time is up, reporting each.
    pub(crate) fn expire(&mut self, now: Instant, mut dropped: impl FnMut(DecodeError)) {
        for _ in 0..self.reassembler.expire(now) {
            dropped(DecodeError::ReassemblyTimeout);
        }
        let timed_out = self.secure.as_mut().map_or(0, |s| s.assembler.expire(now));
        for _ in 0..timed_out {
            dropped(DecodeError::Secure(SecureError::ReassemblyTimeout));
        }
    }

    /// Forgets replay state of senders silent for longer than the replay
    /// tolerance (they are checked by timestamp again when they come back).
    pub(crate) fn forget_silent_senders(&mut self, now: Instant) {
        let now_ms = self.unix_ms(now);
        if let Some(secure) = &mut self.secure {
            secure.guard.expire(now_ms);
        }
    }

    /// When [`expire`](Self::expire) has work next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let secure = self
            .secure
            .as_ref()
            .and_then(|s| s.assembler.next_deadline());
        match (self.reassembler.next_deadline(), secure) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A node's id in sealed headers: the 16 bytes of a 32-hex-digit instance
/// id (as shoal and node-discovery make them), or a hash of any other string.
pub(crate) fn sender_id(iid: &str) -> [u8; 16] {
    let mut id = [0u8; 16];
    if iid.len() == 32 && hex::decode_to_slice(iid, &mut id).is_ok() {
        return id;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(iid.as_bytes());
    id.copy_from_slice(&digest[..16]);
    id
}

/// Whether `id` is [`sender_id`]`(iid)`, without decoding `iid` in the
/// common case: the lower-case hex digits of `id` (as shoal and
/// node-discovery write instance ids). Anything else is decided by
/// `sender_id` itself.
pub(crate) fn is_sender_id(iid: &str, id: &[u8; 16]) -> bool {
    let mut digits = [0u8; 32];
    let lower = hex::encode_to_slice(id, &mut digits).is_ok() && iid.as_bytes() == digits;
    lower || sender_id(iid) == *id
}

/// Secure-mode state.
#[derive(Debug)]
struct Secure {
    keyring: Keyring,
    sealer: Sealer,
    opener: Opener,
    guard: ReplayGuard,
    assembler: FragmentAssembler,
}

impl Secure {
    fn new(key: Key, sender: [u8; 16], limits: SecureLimits) -> Self {
        Secure {
            keyring: Keyring::new(key),
            sealer: Sealer::new(sender),
            opener: Opener::new(limits.cipher_cache),
            guard: ReplayGuard::new(limits.replay),
            assembler: FragmentAssembler::new(limits.assembly),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// A codec in `mode`, with its kind of key if `key`, else plaintext.
    fn codec(key: Option<&str>, mode: Encryption, iid: &str) -> PacketCodec {
        let mut builder = crate::Config::builder();
        builder = match key {
            Some(key) if mode == Encryption::LegacyNodeDiscovery => builder.legacy_key(key),
            Some(key) => builder.secret_key(Key::from_bytes([key.len() as u8; 32])),
            None => builder,
        };
        if key.is_some() {
            builder = builder.encryption(mode);
        }
        PacketCodec::new(&builder.build().unwrap(), iid, Instant::now())
    }

    fn from() -> SocketAddr {
        ([127, 0, 0, 1], 9).into()
    }

    /// Encodes `json` with `tx` and decodes every datagram with `rx`.
    fn round_trip(tx: &mut PacketCodec, rx: &mut PacketCodec, json: &[u8]) -> Vec<Vec<u8>> {
        let now = Instant::now();
        let mut datagrams = Vec::new();
        let mut rng = StdRng::seed_from_u64(1);
        tx.encode(now, json.to_vec(), &mut rng, |d| datagrams.push(d))
            .unwrap();
        let mut whole = Vec::new();
        for d in &datagrams {
            let mut incoming = Incoming::new(from(), d);
            while let Some(item) = rx.decode(now, &mut incoming) {
                if let Decoded::Message { bytes, .. } = item.unwrap() {
                    whole.push(bytes.into_owned());
                }
            }
        }
        whole
    }

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn every_mode_carries_small_and_multi_datagram_messages() {
        let big = vec![b'x'; 5000];
        for (key, mode) in [
            (None, Encryption::Secure),
            (Some("k"), Encryption::LegacyNodeDiscovery),
            (Some("k"), Encryption::Secure),
            (Some("k"), Encryption::SecureAcceptPlaintext),
            (Some("k"), Encryption::PlaintextAcceptSecure),
        ] {
            let mut tx = codec(key, mode, A);
            let mut rx = codec(key, mode, B);
            for json in [&b"{}"[..], &big] {
                assert_eq!(round_trip(&mut tx, &mut rx, json), vec![json.to_vec()]);
            }
        }
    }

    #[test]
    fn is_sender_id_is_sender_id_compared() {
        let ids = [
            A,
            B,
            "0123456789ABCDEF0123456789abcdef",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcde",
            "node-7",
            "",
        ];
        for iid in ids {
            for other in ids {
                let id = sender_id(other);
                assert_eq!(
                    is_sender_id(iid, &id),
                    sender_id(iid) == id,
                    "{iid} {other}"
                );
            }
        }
    }

    #[test]
    fn a_sealed_message_names_its_sender_and_ours_come_back_as_own() {
        let mut tx = codec(Some("k"), Encryption::Secure, A);
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let mut datagrams = Vec::new();
        tx.encode(now, b"{}".to_vec(), &mut rng, |d| datagrams.push(d))
            .unwrap();
        let mut rx = codec(Some("k"), Encryption::Secure, B);
        let got = rx.decode(now, &mut Incoming::new(from(), &datagrams[0]));
        assert!(matches!(
            got,
            Some(Ok(Decoded::Message { sealed_by: Some(id), .. })) if id == sender_id(A)
        ));
        let own = tx.decode(now, &mut Incoming::new(from(), &datagrams[0]));
        assert!(matches!(own, Some(Ok(Decoded::Own))));
    }

    #[test]
    fn secure_refuses_plaintext_and_plaintext_refuses_sealed() {
        let now = Instant::now();
        let mut plain = codec(None, Encryption::Secure, A);
        let mut secure = codec(Some("k"), Encryption::Secure, B);
        let mut rng = StdRng::seed_from_u64(1);
        let (mut p, mut s) = (Vec::new(), Vec::new());
        plain
            .encode(now, b"{}".to_vec(), &mut rng, |d| p.push(d))
            .unwrap();
        secure
            .encode(now, b"{}".to_vec(), &mut rng, |d| s.push(d))
            .unwrap();
        let got = secure.decode(now, &mut Incoming::new(from(), &p[0]));
        assert!(matches!(got, Some(Err(DecodeError::Unauthenticated))));
        let got = plain.decode(now, &mut Incoming::new(from(), &s[0]));
        assert!(matches!(
            got,
            Some(Err(DecodeError::Secure(SecureError::NotAccepted)))
        ));
    }

    #[test]
    fn blocks_back_to_back_yield_one_message_each_and_a_bad_tail_ends_the_datagram() {
        let mut tx = codec(None, Encryption::Secure, A);
        let mut rx = codec(None, Encryption::Secure, B);
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut datagram = Vec::new();
        for json in [&b"{\"a\":1}"[..], b"{\"b\":2}"] {
            tx.encode(now, json.to_vec(), &mut rng, |d| datagram.extend(d))
                .unwrap();
        }
        datagram.extend_from_slice(b"junk");
        let mut incoming = Incoming::new(from(), &datagram);
        let items: Vec<_> = std::iter::from_fn(|| rx.decode(now, &mut incoming)).collect();
        assert_eq!(items.len(), 3);
        assert!(
            matches!(&items[0], Ok(Decoded::Message { bytes, .. }) if &bytes[..] == b"{\"a\":1}")
        );
        assert!(
            matches!(&items[1], Ok(Decoded::Message { bytes, .. }) if &bytes[..] == b"{\"b\":2}")
        );
        assert!(matches!(items[2], Err(DecodeError::TooShort { len: 4 })));
    }

    #[test]
    fn an_oversized_message_emits_nothing() {
        let mut tx = PacketCodec::new(
            &crate::Config::builder()
                .max_message_size(100)
                .build()
                .unwrap(),
            A,
            Instant::now(),
        );
        let mut emitted = 0;
        let err = tx
            .encode(
                Instant::now(),
                vec![b'x'; 101],
                &mut StdRng::seed_from_u64(1),
                |_| emitted += 1,
            )
            .unwrap_err();
        assert!(matches!(
            err,
            Error::MessageTooLarge {
                size: 101,
                max: 100
            }
        ));
        assert_eq!(emitted, 0);
    }

    #[test]
    fn modes_need_their_keys() {
        let mut plain = codec(None, Encryption::Secure, A);
        assert!(matches!(
            plain.set_mode(Some(Encryption::Secure)),
            Err(Error::NoKey(Encryption::Secure))
        ));
        assert!(matches!(
            plain.set_mode(Some(Encryption::LegacyNodeDiscovery)),
            Err(Error::NoKey(Encryption::LegacyNodeDiscovery))
        ));
        plain.install_key(Key::from_bytes([1; 32])).unwrap();
        plain.set_mode(Some(Encryption::Secure)).unwrap();
        assert_eq!(plain.key_ids(), vec![Key::from_bytes([1; 32]).id()]);
    }
}
