//! shoal's secure mode: sealed (encrypted and authenticated) datagrams,
//! replacing node-discovery's weak cipher ([`crate::crypto::legacy`]) and
//! `WRAP` framing between shoal nodes.
//!
//! Sans-IO: nothing here reads a clock or touches a socket; callers pass
//! times in.
//!
//! # Packet format
//!
//! Every datagram is one *sealed fragment*: a 46-byte header, the
//! ciphertext (as long as the plaintext), and the 16-byte AES-GCM tag.
//! Integers are big-endian. The whole header is the AEAD's associated
//! data, so every field is authenticated.
//!
//! | offset | size | field | meaning |
//! |---|---|---|---|
//! | 0 | 4 | magic | ASCII `SHOL` ([`MAGIC`]); anything else is another protocol |
//! | 4 | 1 | version | [`VERSION`] = 1 |
//! | 5 | 1 | algorithm | [`ALG_AES_256_GCM`] = 1 |
//! | 6 | 2 | frag_index | this fragment's index, `< frag_count` |
//! | 8 | 2 | frag_count | fragments in the message, `>= 1` |
//! | 10 | 4 | key_id | [`KeyId`] of the key that sealed it |
//! | 14 | 16 | sender | the sender's id for this run (shoal: its random instance id) |
//! | 30 | 8 | counter | the sender's packet counter: starts at 1, never repeats |
//! | 38 | 8 | timestamp_ms | the sender's wall clock, ms since the Unix epoch |
//! | 46 | n | ciphertext | |
//! | 46 + n | 16 | tag | |
//!
//! So a datagram is [`OVERHEAD`] = 62 bytes longer than the plaintext it
//! carries. The fragments of one message have consecutive counters, so
//! `counter - frag_index` (the first fragment's counter) identifies the
//! message within its sender.
//!
//! # Keys and nonces
//!
//! Each sender seals with its own subkey,
//! `HKDF-SHA256(ikm = key, salt = none, info = "shoal sender v1" || sender)`,
//! and the 12-byte AES-GCM nonce is `[0; 4] || counter` (big-endian). A
//! nonce is therefore never reused under one AES key: different senders use
//! different subkeys, and one sender's counter never repeats. Unlike random
//! nonces, this has no birthday bound: a sender may seal 2^64 - 1 packets.
//!
//! This holds only if a sender never restarts its counter under the same
//! sender id: **a sender MUST use a fresh random sender id whenever its
//! counter could restart** (shoal draws a new random instance id at every
//! start, and [`Sealer::new`] starts at counter 1). Two running nodes must
//! never share a sender id.
//!
//! # Receiving
//!
//! The checks run cheapest first. A forged packet allocates nothing,
//! except that the first failed open after a successful one allocates the
//! [`Opener`]'s scratch buffer, which later failures reuse:
//!
//! 1. [`SealedHeader::parse`]: length, magic, version, algorithm, fragment
//!    fields (a few comparisons);
//! 2. the key id must be in the [`Keyring`] ([`SecureError::UnknownKey`]);
//! 3. [`ReplayGuard::precheck`]: counter window or first-contact timestamp;
//! 4. [`Opener::open`]: the AEAD (about 0.5 µs for a 200-byte hello,
//!    1.7 µs for 1400 bytes, on one x86-64 core with AES-NI);
//! 5. [`ReplayGuard::accept`]: only authenticated packets move the window;
//! 6. [`FragmentAssembler::push`]: reassembly of authenticated fragments;
//! 7. the plaintext is the JSON envelope.
//!
//! ```
//! use std::time::Instant;
//! use shoal::crypto::key::Key;
//! use shoal::crypto::keyring::Keyring;
//! use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
//! use shoal::crypto::secure::{
//!     AssemblyLimits, FragmentAssembler, Opener, SealedHeader, Sealer, SecureError,
//! };
//!
//! let key = Key::from_bytes([7; 32]);
//! let now_ms = 1_700_000_000_000;
//!
//! // Sending: one Sealer per run, with a fresh random sender id.
//! let mut sealer = Sealer::new(rand::random());
//! let message = vec![b'x'; 3000];
//! let datagrams = sealer.seal_message(&key, now_ms, &message, 1400).unwrap();
//! assert_eq!(datagrams.len(), 3);
//!
//! // Receiving.
//! let keyring = Keyring::new(key);
//! let mut opener = Opener::default();
//! let mut guard = ReplayGuard::new(ReplayConfig::default());
//! let mut assembler = FragmentAssembler::new(AssemblyLimits::default());
//! let mut receive = |datagram: &[u8]| -> Result<Option<Vec<u8>>, SecureError> {
//!     let h = SealedHeader::parse(datagram)?;
//!     if keyring.get(h.key_id).is_none() {
//!         return Err(SecureError::UnknownKey(h.key_id)); // (open checks this too)
//!     }
//!     guard.precheck(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
//!     let plaintext = opener.open(&keyring, &h, datagram)?;
//!     guard.accept(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
//!     assembler.push(Instant::now(), &h, plaintext)
//! };
//! let mut got = None;
//! for d in datagrams.iter().rev() {
//!     if let Some(whole) = receive(d).unwrap() {
//!         got = Some(whole);
//!     }
//! }
//! assert_eq!(got.unwrap(), message);
//! assert_eq!(receive(&datagrams[0]), Err(SecureError::Replay));
//! let mut forged = datagrams[1].clone();
//! forged[30..38].copy_from_slice(&99u64.to_be_bytes()); // a fresh counter
//! assert_eq!(receive(&forged), Err(SecureError::AuthFailed));
//! ```
//!
//! [`ReplayGuard::precheck`]: super::replay::ReplayGuard::precheck
//! [`ReplayGuard::accept`]: super::replay::ReplayGuard::accept

use lru::LruCache;
use std::time::{Duration, Instant};

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::key::{Key, KeyId, KEY_LEN};
use super::keyring::{Keyring, MAX_KEYS};
use crate::reassembly::{Expiry, Limits, Partial, Reassembly, Refused};

/// The first 4 bytes of every sealed datagram.
pub const MAGIC: [u8; 4] = *b"SHOL";
/// The packet format version this module reads and writes.
pub const VERSION: u8 = 1;
/// Algorithm number of AES-256-GCM with per-sender HKDF-SHA256 subkeys and
/// counter nonces, the only one defined.
pub const ALG_AES_256_GCM: u8 = 1;
/// Size of the header.
pub const HEADER_LEN: usize = 46;
/// Size of the AES-GCM tag at the end of each datagram.
pub const TAG_LEN: usize = 16;
/// Bytes a datagram adds to the plaintext it carries.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// HKDF info prefix of the per-sender subkey.
const SENDER_INFO: &[u8] = b"shoal sender v1";

/// Why a sealed datagram was refused, or a message could not be sealed.
///
/// None of these is fatal: the datagram is dropped (and counted).
///
/// ```
/// use shoal::crypto::secure::{SealedHeader, SecureError};
///
/// assert_eq!(SealedHeader::parse(b"SHOL"), Err(SecureError::TooShort));
/// assert_eq!(SecureError::AuthFailed.to_string(), "authentication failed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecureError {
    /// The datagram is shorter than a header and a tag (62 bytes).
    #[error("datagram too short to be sealed")]
    TooShort,
    /// The datagram does not start with `SHOL`: it is another protocol
    /// (a node-discovery `WRAP` block, plain JSON, ...).
    #[error("not a sealed datagram")]
    NotSecure,
    /// Unknown format version.
    #[error("unknown sealed format version {0}")]
    UnknownVersion(u8),
    /// Unknown algorithm number.
    #[error("unknown algorithm {0}")]
    UnknownAlgorithm(u8),
    /// Fragment fields that make no sense.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// Sealed with a key this node does not hold.
    #[error("unknown key {0}")]
    UnknownKey(KeyId),
    /// A sealed datagram reached a node that holds no key, or whose
    /// encryption mode ([`crate::Encryption::LegacyNodeDiscovery`]) does
    /// not accept sealed datagrams. Counted with [`UnknownKey`](Self::UnknownKey).
    #[error("sealed datagrams are not accepted (no key, or a mode without them)")]
    NotAccepted,
    /// The AEAD refused it: forged, corrupted, or sealed with a different
    /// key that has the same id.
    #[error("authentication failed")]
    AuthFailed,
    /// This sender's counter was already seen, or is too far behind.
    #[error("replayed datagram")]
    Replay,
    /// First contact with a sender, and the timestamp is too far from our clock.
    #[error("stale timestamp")]
    Stale,
    /// The message is larger than allowed (receiving), or cannot be cut into
    /// at most 65535 fragments of the given datagram size (sending).
    #[error("message too large")]
    TooLarge,
    /// Too many incomplete messages pending (in total, in bytes, or from
    /// this sender): the fragment was dropped.
    #[error("reassembly buffer full")]
    ReassemblyFull,
    /// An incomplete message was dropped after its reassembly timeout
    /// (never returned by a decoder: counted when the timeout passes).
    #[error("incomplete message timed out")]
    ReassemblyTimeout,
}

/// Whether `datagram` starts with [`MAGIC`]: a cheap way to tell sealed
/// datagrams from node-discovery's (which start with `WRAP`) before
/// choosing a decoder.
///
/// ```
/// use shoal::crypto::secure::is_sealed;
///
/// assert!(is_sealed(b"SHOL..."));
/// assert!(!is_sealed(b"WRAP..."));
/// assert!(!is_sealed(b"SH"));
/// ```
pub fn is_sealed(datagram: &[u8]) -> bool {
    datagram.starts_with(&MAGIC)
}

/// The header of a sealed datagram. See the [module docs](self) for the
/// layout.
///
/// ```
/// use shoal::crypto::key::Key;
/// use shoal::crypto::secure::{SealedHeader, Sealer, OVERHEAD};
///
/// let key = Key::from_bytes([1; 32]);
/// let mut sealer = Sealer::new([9; 16]);
/// let datagram = sealer.seal(&key, 0, 1, 1234, b"hi");
/// assert_eq!(datagram.len(), 2 + OVERHEAD);
/// let h = SealedHeader::parse(&datagram).unwrap();
/// assert_eq!((h.sender, h.counter, h.timestamp_ms), ([9; 16], 1, 1234));
/// assert_eq!(h.key_id, key.id());
/// assert_eq!(&h.encode()[..], &datagram[..46]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealedHeader {
    /// Format version ([`VERSION`]).
    pub version: u8,
    /// Algorithm number ([`ALG_AES_256_GCM`]).
    pub algorithm: u8,
    /// Index of this fragment in its message.
    pub frag_index: u16,
    /// Number of fragments in the message.
    pub frag_count: u16,
    /// Id of the key that sealed it.
    pub key_id: KeyId,
    /// The sender's id.
    pub sender: [u8; 16],
    /// The sender's packet counter.
    pub counter: u64,
    /// The sender's wall clock when sealing, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

/// Big-endian `u16` at `AT` of a header (out of range fails to compile).
fn be16<const AT: usize>(h: &[u8; HEADER_LEN]) -> u16 {
    u16::from_be_bytes([h[AT], h[AT + 1]])
}

/// Big-endian `u64` at `AT` of a header (out of range fails to compile).
fn be64<const AT: usize>(h: &[u8; HEADER_LEN]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[AT..AT + 8]);
    u64::from_be_bytes(b)
}

impl SealedHeader {
    /// Reads the header of a sealed datagram with cheap checks only, in
    /// this order: length at least [`OVERHEAD`] ([`SecureError::TooShort`]),
    /// magic ([`SecureError::NotSecure`]), version
    /// ([`SecureError::UnknownVersion`]), algorithm
    /// ([`SecureError::UnknownAlgorithm`]), `frag_count >= 1` and
    /// `frag_index < frag_count` ([`SecureError::Malformed`]). Allocates
    /// nothing. Nothing is authenticated yet.
    ///
    /// ```
    /// use shoal::crypto::secure::{SealedHeader, SecureError};
    ///
    /// let mut d = vec![0u8; 62];
    /// assert_eq!(SealedHeader::parse(&d), Err(SecureError::NotSecure));
    /// d[..4].copy_from_slice(b"SHOL");
    /// assert_eq!(SealedHeader::parse(&d), Err(SecureError::UnknownVersion(0)));
    /// d[4] = 1;
    /// assert_eq!(SealedHeader::parse(&d), Err(SecureError::UnknownAlgorithm(0)));
    /// d[5] = 1;
    /// assert!(matches!(SealedHeader::parse(&d), Err(SecureError::Malformed(_))));
    /// d[9] = 1; // frag_count = 1
    /// assert!(SealedHeader::parse(&d).is_ok());
    /// ```
    pub fn parse(datagram: &[u8]) -> Result<SealedHeader, SecureError> {
        if datagram.len() < OVERHEAD {
            return Err(SecureError::TooShort);
        }
        let Some(h) = datagram.first_chunk::<HEADER_LEN>() else {
            return Err(SecureError::TooShort);
        };
        if h[..4] != MAGIC {
            return Err(SecureError::NotSecure);
        }
        if h[4] != VERSION {
            return Err(SecureError::UnknownVersion(h[4]));
        }
        if h[5] != ALG_AES_256_GCM {
            return Err(SecureError::UnknownAlgorithm(h[5]));
        }
        let frag_index = be16::<6>(h);
        let frag_count = be16::<8>(h);
        if frag_count == 0 {
            return Err(SecureError::Malformed("fragment count is 0"));
        }
        if frag_index >= frag_count {
            return Err(SecureError::Malformed("fragment index beyond the count"));
        }
        let mut sender = [0u8; 16];
        sender.copy_from_slice(&h[14..30]);
        Ok(SealedHeader {
            version: h[4],
            algorithm: h[5],
            frag_index,
            frag_count,
            key_id: KeyId([h[10], h[11], h[12], h[13]]),
            sender,
            counter: be64::<30>(h),
            timestamp_ms: be64::<38>(h),
        })
    }

    /// The header's wire form.
    ///
    /// ```
    /// use shoal::crypto::key::KeyId;
    /// use shoal::crypto::secure::{SealedHeader, VERSION, ALG_AES_256_GCM};
    ///
    /// let h = SealedHeader {
    ///     version: VERSION, algorithm: ALG_AES_256_GCM, frag_index: 0, frag_count: 1,
    ///     key_id: KeyId([1, 2, 3, 4]), sender: [5; 16], counter: 6, timestamp_ms: 7,
    /// };
    /// let bytes = h.encode();
    /// assert_eq!(&bytes[..4], b"SHOL");
    /// let mut datagram = bytes.to_vec();
    /// datagram.extend_from_slice(&[0; 16]); // a (bogus) tag
    /// assert_eq!(SealedHeader::parse(&datagram), Ok(h));
    /// ```
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = self.version;
        out[5] = self.algorithm;
        out[6..8].copy_from_slice(&self.frag_index.to_be_bytes());
        out[8..10].copy_from_slice(&self.frag_count.to_be_bytes());
        out[10..14].copy_from_slice(&self.key_id.0);
        out[14..30].copy_from_slice(&self.sender);
        out[30..38].copy_from_slice(&self.counter.to_be_bytes());
        out[38..46].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out
    }

    /// The counter of the message's first fragment (`counter - frag_index`),
    /// which identifies the message within its sender; `None` if the
    /// subtraction would go below zero (no honest sender produces that).
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::secure::{SealedHeader, Sealer};
    ///
    /// let mut sealer = Sealer::new([1; 16]);
    /// let key = Key::from_bytes([2; 32]);
    /// let parts = sealer.seal_message(&key, 0, &[0; 500], 262).unwrap();
    /// for p in &parts {
    ///     assert_eq!(SealedHeader::parse(p).unwrap().first_counter(), Some(1));
    /// }
    /// ```
    pub fn first_counter(&self) -> Option<u64> {
        self.counter.checked_sub(u64::from(self.frag_index))
    }
}

/// The AES-GCM nonce for `counter`: 4 zero bytes, then the counter.
fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

/// Derives the per-sender ciphers of one key, with HKDF's extract step
/// done once.
#[derive(Clone)]
struct SubkeyDeriver {
    /// The key's fingerprint.
    fingerprint: [u8; 16],
    hkdf: Hkdf<Sha256>,
}

impl SubkeyDeriver {
    fn new(key: &Key) -> SubkeyDeriver {
        SubkeyDeriver {
            fingerprint: *key.fingerprint(),
            hkdf: Hkdf::<Sha256>::new(None, key.as_bytes()),
        }
    }

    /// The AES-256-GCM instance for `sender`'s subkey.
    fn cipher(&self, sender: &[u8; 16]) -> Aes256Gcm {
        let mut subkey = Zeroizing::new([0u8; KEY_LEN]);
        self.hkdf
            .expand_multi_info(&[SENDER_INFO, sender], &mut subkey[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Aes256Gcm::new(&(*subkey).into())
    }
}

/// A cipher for one sender's subkey of one key.
struct CachedCipher {
    /// The key's fingerprint, to notice a different key with the same id.
    fingerprint: [u8; 16],
    cipher: Aes256Gcm,
}

/// Seals this node's outgoing datagrams: holds its sender id, its next
/// counter, and the AES instance for its subkey of the current key.
///
/// Create one per run with a fresh random sender id (see the [module
/// docs](self#keys-and-nonces)), and never clone its state into another
/// sealer: a counter used twice under one sender id and key reuses a nonce.
///
/// ```
/// use shoal::crypto::key::Key;
/// use shoal::crypto::keyring::Keyring;
/// use shoal::crypto::secure::{Opener, SealedHeader, Sealer};
///
/// let key = Key::from_bytes([3; 32]);
/// let mut sealer = Sealer::new(rand::random());
/// let datagram = sealer.seal(&key, 0, 1, 1_700_000_000_000, br#"{"event":"hello"}"#);
/// assert_eq!(sealer.next_counter(), 2);
///
/// let keyring = Keyring::new(key);
/// let h = SealedHeader::parse(&datagram).unwrap();
/// let plain = Opener::default().open(&keyring, &h, &datagram).unwrap();
/// assert_eq!(plain, br#"{"event":"hello"}"#);
/// ```
pub struct Sealer {
    sender: [u8; 16],
    next_counter: u64,
    cached: Option<CachedCipher>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("sender", &hex::encode(self.sender))
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer for `sender` (use a fresh random id per run), starting at
    /// counter 1.
    ///
    /// ```
    /// use shoal::crypto::secure::Sealer;
    ///
    /// let sealer = Sealer::new([0xaa; 16]);
    /// assert_eq!((sealer.sender(), sealer.next_counter()), ([0xaa; 16], 1));
    /// ```
    pub fn new(sender: [u8; 16]) -> Sealer {
        Sealer {
            sender,
            next_counter: 1,
            cached: None,
        }
    }

    /// This sealer's sender id.
    ///
    /// ```
    /// use shoal::crypto::secure::Sealer;
    ///
    /// assert_eq!(Sealer::new([1; 16]).sender(), [1; 16]);
    /// ```
    pub fn sender(&self) -> [u8; 16] {
        self.sender
    }

    /// The counter the next datagram will carry.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::secure::Sealer;
    ///
    /// let mut sealer = Sealer::new([1; 16]);
    /// sealer.seal(&Key::from_bytes([0; 32]), 0, 1, 0, b"");
    /// assert_eq!(sealer.next_counter(), 2);
    /// ```
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// The cipher for `key`, derived again only when the key changed.
    fn cipher(&mut self, key: &Key) -> &Aes256Gcm {
        let current = matches!(&self.cached, Some(c) if &c.fingerprint == key.fingerprint());
        if !current {
            self.cached = None;
        }
        let sender = self.sender;
        &self
            .cached
            .get_or_insert_with(|| CachedCipher {
                fingerprint: *key.fingerprint(),
                cipher: SubkeyDeriver::new(key).cipher(&sender),
            })
            .cipher
    }

    /// Seals one datagram: header, then `plaintext` encrypted, then the
    /// tag; [`OVERHEAD`] bytes longer than `plaintext`. Uses the next
    /// counter and advances it.
    ///
    /// `frag_index < frag_count` is the caller's business (receivers refuse
    /// other values); [`seal_message`](Self::seal_message) gets it right.
    ///
    /// # Panics
    ///
    /// After 2^64 - 2 datagrams (the counter is exhausted; at a million
    /// datagrams a second that takes half a million years), or if
    /// `plaintext` exceeds AES-GCM's limit of 2^36 - 32 bytes.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::secure::{Sealer, OVERHEAD};
    ///
    /// let mut sealer = Sealer::new([1; 16]);
    /// let key = Key::from_bytes([0; 32]);
    /// let a = sealer.seal(&key, 0, 1, 0, b"same");
    /// let b = sealer.seal(&key, 0, 1, 0, b"same");
    /// assert_eq!(a.len(), 4 + OVERHEAD);
    /// assert_ne!(a[46..], b[46..]); // a new counter, so a new nonce
    /// ```
    pub fn seal(
        &mut self,
        key: &Key,
        frag_index: u16,
        frag_count: u16,
        timestamp_ms: u64,
        plaintext: &[u8],
    ) -> Vec<u8> {
        debug_assert!(frag_index < frag_count, "fragment index beyond the count");
        let counter = self.next_counter;
        assert!(counter < u64::MAX, "sealer counter exhausted");
        self.next_counter = counter + 1;
        let header = SealedHeader {
            version: VERSION,
            algorithm: ALG_AES_256_GCM,
            frag_index,
            frag_count,
            key_id: key.id(),
            sender: self.sender,
            counter,
            timestamp_ms,
        }
        .encode();
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher(key)
            .encrypt_in_place_detached(&nonce(counter), &header, &mut out[HEADER_LEN..])
            .expect("plaintext within AES-GCM's length limit");
        out.extend_from_slice(&tag);
        out
    }

    /// Seals a whole message as one or more datagrams of at most
    /// `max_datagram` bytes each: the plaintext is cut into pieces of
    /// `max_datagram - OVERHEAD` bytes (the last may be shorter; an empty
    /// message is one empty fragment), sealed with consecutive counters and
    /// the same timestamp.
    ///
    /// [`SecureError::TooLarge`] if that needs more than 65535 fragments, or
    /// `max_datagram` leaves no room for data; nothing is sealed then.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::secure::{Sealer, SecureError, OVERHEAD};
    ///
    /// let mut sealer = Sealer::new([1; 16]);
    /// let key = Key::from_bytes([0; 32]);
    /// let parts = sealer.seal_message(&key, 0, &[7; 2500], 1062).unwrap();
    /// assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [1062, 1062, 500 + OVERHEAD]);
    /// assert_eq!(sealer.seal_message(&key, 0, b"x", OVERHEAD), Err(SecureError::TooLarge));
    /// ```
    pub fn seal_message(
        &mut self,
        key: &Key,
        timestamp_ms: u64,
        plaintext: &[u8],
        max_datagram: usize,
    ) -> Result<Vec<Vec<u8>>, SecureError> {
        let piece = max_datagram
            .checked_sub(OVERHEAD)
            .ok_or(SecureError::TooLarge)?;
        if plaintext.is_empty() {
            return Ok(vec![self.seal(key, 0, 1, timestamp_ms, plaintext)]);
        }
        if piece == 0 {
            return Err(SecureError::TooLarge);
        }
        let count =
            u16::try_from(plaintext.len().div_ceil(piece)).map_err(|_| SecureError::TooLarge)?;
        Ok(plaintext
            .chunks(piece)
            .zip(0..count)
            .map(|(data, index)| self.seal(key, index, count, timestamp_ms, data))
            .collect())
    }

    /// A sealer that continues at `next_counter`, to test exhaustion.
    #[cfg(test)]
    fn at_counter(sender: [u8; 16], next_counter: u64) -> Sealer {
        Sealer {
            next_counter,
            ..Sealer::new(sender)
        }
    }
}

/// How many per-sender ciphers an [`Opener`] keeps by default (about 1 KiB
/// each).
pub const DEFAULT_CIPHER_CACHE: usize = 256;

/// Opens received datagrams, keeping the AES instances of recently heard
/// senders so that each packet costs one AEAD and no key derivation.
///
/// The cache holds at most [`DEFAULT_CIPHER_CACHE`] (or the number given to
/// [`Opener::new`]) entries, keyed by (key id, sender); when full, the least
/// recently used entry is evicted. Only a datagram that authenticates adds
/// an entry, so forged packets cannot push real senders out; each one from
/// an unknown sender costs a subkey derivation (about 0.4 µs) on top of
/// the AEAD instead.
///
/// ```
/// use shoal::crypto::key::Key;
/// use shoal::crypto::keyring::Keyring;
/// use shoal::crypto::secure::{Opener, SealedHeader, Sealer, SecureError};
///
/// let key = Key::from_bytes([3; 32]);
/// let mut sealer = Sealer::new([1; 16]);
/// let datagram = sealer.seal(&key, 0, 1, 0, b"hi");
/// let h = SealedHeader::parse(&datagram).unwrap();
///
/// let mut opener = Opener::new(16);
/// let other = Keyring::new(Key::from_bytes([4; 32]));
/// assert_eq!(opener.open(&other, &h, &datagram), Err(SecureError::UnknownKey(key.id())));
/// let keyring = Keyring::new(key);
/// assert_eq!(opener.open(&keyring, &h, &datagram).unwrap(), b"hi");
/// assert_eq!(opener.cached(), 1);
/// ```
pub struct Opener {
    max_cached: usize,
    /// Least recently used first out, in O(1); `None` when `max_cached` is 0.
    /// Looked up at every sealed datagram: foldhash, not SipHash.
    ciphers: Option<LruCache<(KeyId, [u8; 16]), CachedCipher, foldhash::fast::RandomState>>,
    /// Subkey derivers of the keys seen lately, at most [`MAX_KEYS`].
    derivers: Vec<SubkeyDeriver>,
    /// The buffer the next open decrypts into: kept across failed opens, so
    /// that forged packets allocate nothing once it has grown.
    scratch: Vec<u8>,
}

/// The largest buffer [`Opener::recycle`] keeps, in bytes: more than a
/// sealed datagram on any usual link.
pub const MAX_RECYCLED: usize = 4096;

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("max_cached", &self.max_cached)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl Default for Opener {
    fn default() -> Self {
        Opener::new(DEFAULT_CIPHER_CACHE)
    }
}

impl Opener {
    /// An opener that caches at most `max_cached` per-sender ciphers (0:
    /// none, deriving a subkey for every packet).
    ///
    /// ```
    /// use shoal::crypto::secure::Opener;
    ///
    /// assert_eq!(Opener::new(8).cached(), 0);
    /// ```
    pub fn new(max_cached: usize) -> Opener {
        Opener {
            max_cached,
            // Unbounded in type, bounded by `remember`: nothing is allocated
            // up front for a large limit that a small cluster never reaches.
            ciphers: (max_cached > 0).then(|| LruCache::unbounded_with_hasher(Default::default())),
            derivers: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Authenticates and decrypts `datagram`, whose header `header` is (as
    /// returned by [`SealedHeader::parse`] for this same datagram).
    ///
    /// - [`SecureError::UnknownKey`] if `header.key_id` is not in `keyring`,
    ///   before any cryptography;
    /// - [`SecureError::TooShort`] if `datagram` is shorter than [`OVERHEAD`];
    /// - [`SecureError::AuthFailed`] if the tag does not match (anything
    ///   changed in header or body, a different key with that id, or a
    ///   `header` that is not this datagram's).
    ///
    /// Returns the plaintext. Replay checks are the caller's, around this
    /// call (see the [module docs](self#receiving)). Never panics.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    /// use shoal::crypto::secure::{Opener, SealedHeader, Sealer, SecureError};
    ///
    /// let keyring = Keyring::new(Key::from_bytes([3; 32]));
    /// let mut datagram = Sealer::new([1; 16]).seal(keyring.primary(), 0, 1, 0, b"hi");
    /// let last = datagram.len() - 1;
    /// datagram[last] ^= 1;
    /// let h = SealedHeader::parse(&datagram).unwrap();
    /// assert_eq!(Opener::default().open(&keyring, &h, &datagram), Err(SecureError::AuthFailed));
    /// ```
    pub fn open(
        &mut self,
        keyring: &Keyring,
        header: &SealedHeader,
        datagram: &[u8],
    ) -> Result<Vec<u8>, SecureError> {
        let key = keyring
            .get(header.key_id)
            .ok_or(SecureError::UnknownKey(header.key_id))?;
        let Some((aad, body)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(SecureError::TooShort);
        };
        let Some((ciphertext, tag)) = body.split_last_chunk::<TAG_LEN>() else {
            return Err(SecureError::TooShort);
        };
        let tag = Tag::from(*tag);
        let nonce = nonce(header.counter);
        self.scratch.clear();
        self.scratch.extend_from_slice(ciphertext);

        let slot = (header.key_id, header.sender);
        let cached = self.ciphers.as_mut().and_then(|c| c.get_mut(&slot));
        let opened = match cached {
            Some(entry) if &entry.fingerprint == key.fingerprint() => entry
                .cipher
                .decrypt_in_place_detached(&nonce, aad, &mut self.scratch, &tag)
                .is_ok(),
            _ => {
                let cipher = self.deriver(key).cipher(&header.sender);
                let ok = cipher
                    .decrypt_in_place_detached(&nonce, aad, &mut self.scratch, &tag)
                    .is_ok();
                if ok {
                    self.remember(slot, key, cipher);
                }
                ok
            }
        };
        if !opened {
            self.scratch.clear();
            return Err(SecureError::AuthFailed);
        }
        let mut plaintext = std::mem::take(&mut self.scratch);
        // The scratch may have grown for a larger (forged) datagram, or
        // been recycled from a larger message. (Nothing to do in the steady
        // state: a recycled buffer of the size of the datagram before.)
        plaintext.shrink_to_fit();
        Ok(plaintext)
    }

    /// Takes back a plaintext [`open`](Self::open) returned, once read, to
    /// decrypt the next datagram into: a steady stream of datagrams then
    /// allocates nothing. Kept only if no buffer is held already and it is
    /// at most [`MAX_RECYCLED`] bytes large.
    ///
    /// ```
    /// use shoal::crypto::key::Key;
    /// use shoal::crypto::keyring::Keyring;
    /// use shoal::crypto::secure::{Opener, SealedHeader, Sealer};
    ///
    /// let keyring = Keyring::new(Key::from_bytes([3; 32]));
    /// let mut sealer = Sealer::new([1; 16]);
    /// let mut opener = Opener::default();
    /// for _ in 0..3 {
    ///     let datagram = sealer.seal(keyring.primary(), 0, 1, 0, b"hi");
    ///     let h = SealedHeader::parse(&datagram).unwrap();
    ///     let plaintext = opener.open(&keyring, &h, &datagram).unwrap();
    ///     assert_eq!(plaintext, b"hi");
    ///     opener.recycle(plaintext);
    /// }
    /// ```
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        if self.scratch.capacity() == 0 && buffer.capacity() <= MAX_RECYCLED {
            buffer.clear();
            self.scratch = buffer;
        }
    }

    /// The subkey deriver for `key`, made (and kept) if need be.
    fn deriver(&mut self, key: &Key) -> &SubkeyDeriver {
        let at = match self
            .derivers
            .iter()
            .position(|d| &d.fingerprint == key.fingerprint())
        {
            Some(at) => at,
            None => {
                // Only keys of the keyring get here, so this rarely evicts.
                if self.derivers.len() >= MAX_KEYS {
                    self.derivers.remove(0);
                }
                self.derivers.push(SubkeyDeriver::new(key));
                self.derivers.len() - 1
            }
        };
        &self.derivers[at]
    }

    /// Caches an authenticated sender's cipher, evicting the least recently
    /// used entry if full (in O(1)).
    fn remember(&mut self, slot: (KeyId, [u8; 16]), key: &Key, cipher: Aes256Gcm) {
        if let Some(ciphers) = &mut self.ciphers {
            if ciphers.len() >= self.max_cached && !ciphers.contains(&slot) {
                ciphers.pop_lru();
            }
            ciphers.put(
                slot,
                CachedCipher {
                    fingerprint: *key.fingerprint(),
                    cipher,
                },
            );
        }
    }

    /// How many per-sender ciphers are cached.
    ///
    /// ```
    /// use shoal::crypto::secure::Opener;
    ///
    /// assert_eq!(Opener::default().cached(), 0);
    /// ```
    pub fn cached(&self) -> usize {
        self.ciphers.as_ref().map_or(0, LruCache::len)
    }
}

/// Limits of a [`FragmentAssembler`].
///
/// ```
/// use std::time::Duration;
/// use shoal::crypto::secure::AssemblyLimits;
///
/// let limits = AssemblyLimits { timeout: Duration::from_secs(2), ..AssemblyLimits::default() };
/// assert_eq!(limits.max_message, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssemblyLimits {
    /// Largest message accepted, in plaintext bytes.
    pub max_message: usize,
    /// Most incomplete messages held at once.
    pub max_pending: usize,
    /// Most bytes held for incomplete messages, each fragment counted as its
    /// length plus [`FRAGMENT_COST`].
    pub max_pending_bytes: usize,
    /// Most incomplete messages held for one sender.
    pub max_pending_per_sender: usize,
    /// An incomplete message is dropped this long after its first fragment
    /// arrived.
    pub timeout: Duration,
}

impl Default for AssemblyLimits {
    fn default() -> Self {
        AssemblyLimits {
            max_message: 1 << 20,
            max_pending: 64,
            max_pending_bytes: 4 << 20,
            max_pending_per_sender: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Bytes charged per held fragment on top of its length, for the memory a
/// fragment takes beyond its data, so that many tiny fragments cannot hold
/// much more memory than [`AssemblyLimits::max_pending_bytes`].
pub const FRAGMENT_COST: usize = 64;

/// Reassembles authenticated fragments into messages.
///
/// Fragments are grouped by (sender, first counter = `counter -
/// frag_index`). Feed it only fragments that [`Opener::open`]
/// authenticated: the header fields are trusted here. Memory is bounded by
/// [`AssemblyLimits`], and nothing is allocated from a declared size.
///
/// ```
/// use std::time::Instant;
/// use shoal::crypto::key::Key;
/// use shoal::crypto::keyring::Keyring;
/// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler, Opener, SealedHeader, Sealer};
///
/// let keyring = Keyring::new(Key::from_bytes([5; 32]));
/// let message: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
/// let parts = Sealer::new([1; 16]).seal_message(keyring.primary(), 0, &message, 1500).unwrap();
/// let mut opener = Opener::default();
/// let mut assembler = FragmentAssembler::new(AssemblyLimits::default());
/// let mut out = None;
/// for p in parts.iter().rev() {
///     let h = SealedHeader::parse(p).unwrap();
///     let plain = opener.open(&keyring, &h, p).unwrap();
///     out = assembler.push(Instant::now(), &h, plain).unwrap().or(out);
/// }
/// assert_eq!(out.unwrap(), message);
/// assert_eq!(assembler.pending(), (0, 0));
/// ```
pub struct FragmentAssembler {
    /// Messages keyed by (sender, first counter), recording their
    /// `frag_count`, with pieces by `frag_index`.
    core: Reassembly<[u8; 16], u64, u16, u16>,
}

/// Shows the limits and what is pending, not the plaintext held.
impl std::fmt::Debug for FragmentAssembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragmentAssembler")
            .field("limits", self.core.limits())
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl FragmentAssembler {
    /// An empty assembler.
    ///
    /// ```
    /// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler};
    ///
    /// let a = FragmentAssembler::new(AssemblyLimits::default());
    /// assert_eq!(a.pending(), (0, 0));
    /// ```
    pub fn new(limits: AssemblyLimits) -> FragmentAssembler {
        FragmentAssembler {
            core: Reassembly::new(Limits {
                max_message: limits.max_message,
                max_pending: limits.max_pending,
                max_pending_bytes: limits.max_pending_bytes,
                max_pending_per_source: limits.max_pending_per_sender,
                piece_cost: FRAGMENT_COST,
                timeout: limits.timeout,
                expiry: Expiry::AfterFirstPiece,
            }),
        }
    }

    /// Feeds one authenticated fragment; returns the whole message when this
    /// fragment completes it (at once for a single-fragment message).
    ///
    /// - a fragment already held is ignored (`Ok(None)`);
    /// - a `frag_count` different from the message's earlier fragments, an
    ///   invalid index, or an index above the counter →
    ///   [`SecureError::Malformed`] (the message is kept);
    /// - a message growing beyond [`AssemblyLimits::max_message`] →
    ///   [`SecureError::TooLarge`] (and the message is dropped);
    /// - a new message beyond [`AssemblyLimits::max_pending`] or
    ///   [`AssemblyLimits::max_pending_per_sender`], or a fragment that
    ///   would exceed [`AssemblyLimits::max_pending_bytes`] without
    ///   completing its message → [`SecureError::ReassemblyFull`].
    ///
    /// ```
    /// use std::time::Instant;
    /// use shoal::crypto::key::KeyId;
    /// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler, SealedHeader};
    ///
    /// let h = SealedHeader {
    ///     version: 1, algorithm: 1, frag_index: 0, frag_count: 1,
    ///     key_id: KeyId([0; 4]), sender: [1; 16], counter: 1, timestamp_ms: 0,
    /// };
    /// let mut a = FragmentAssembler::new(AssemblyLimits::default());
    /// assert_eq!(a.push(Instant::now(), &h, b"whole".to_vec()).unwrap(), Some(b"whole".to_vec()));
    /// ```
    pub fn push(
        &mut self,
        now: Instant,
        header: &SealedHeader,
        plaintext: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, SecureError> {
        if header.frag_count == 0 || header.frag_index >= header.frag_count {
            return Err(SecureError::Malformed("fragment index beyond the count"));
        }
        if plaintext.len() > self.core.limits().max_message {
            return Err(SecureError::TooLarge);
        }
        if header.frag_count == 1 {
            return Ok(Some(plaintext));
        }
        let first = header
            .first_counter()
            .ok_or(SecureError::Malformed("fragment index above the counter"))?;
        let check = |p: &Partial<u16, u16>| {
            if *p.meta() != header.frag_count {
                return Err(SecureError::Malformed(
                    "fragment count differs from earlier fragments",
                ));
            }
            // Wrong for a fragment already held, which the core then ignores.
            Ok(p.pieces().len() + 1 == usize::from(header.frag_count))
        };
        let slot = (header.sender, first);
        self.core
            .admit(
                now,
                slot,
                header.frag_count,
                header.frag_index,
                plaintext,
                check,
            )
            .map_err(|refused| match refused {
                Refused::Format(error) => error,
                Refused::Full => SecureError::ReassemblyFull,
                Refused::TooLarge => SecureError::TooLarge,
            })
    }

    /// Drops incomplete messages whose first fragment arrived at least the
    /// timeout before `now`; returns how many (count each as a
    /// [`SecureError::ReassemblyTimeout`]).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use shoal::crypto::key::KeyId;
    /// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler, SealedHeader};
    ///
    /// let mut a = FragmentAssembler::new(AssemblyLimits::default());
    /// let t0 = Instant::now();
    /// let h = SealedHeader {
    ///     version: 1, algorithm: 1, frag_index: 0, frag_count: 2,
    ///     key_id: KeyId([0; 4]), sender: [1; 16], counter: 1, timestamp_ms: 0,
    /// };
    /// a.push(t0, &h, vec![0; 10]).unwrap();
    /// assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(5)));
    /// assert_eq!(a.expire(t0 + Duration::from_secs(5)), 1);
    /// assert_eq!(a.pending(), (0, 0));
    /// ```
    pub fn expire(&mut self, now: Instant) -> usize {
        self.core.expire(now)
    }

    /// When the oldest incomplete message times out; `None` if nothing is
    /// pending (or the deadline is beyond what an [`Instant`] can hold).
    ///
    /// ```
    /// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler};
    ///
    /// assert_eq!(FragmentAssembler::new(AssemblyLimits::default()).next_deadline(), None);
    /// ```
    pub fn next_deadline(&self) -> Option<Instant> {
        self.core.next_deadline()
    }

    /// Incomplete messages held, and the bytes charged for them (data plus
    /// [`FRAGMENT_COST`] per fragment).
    ///
    /// ```
    /// use shoal::crypto::secure::{AssemblyLimits, FragmentAssembler};
    ///
    /// assert_eq!(FragmentAssembler::new(AssemblyLimits::default()).pending(), (0, 0));
    /// ```
    pub fn pending(&self) -> (usize, usize) {
        self.core.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::replay::{ReplayConfig, ReplayGuard};
    use proptest::prelude::*;

    const SENDER: [u8; 16] = [
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae,
        0xaf,
    ];

    fn key(n: u8) -> Key {
        Key::from_bytes([n; 32])
    }

    fn counting_key() -> Key {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        Key::from_bytes(b)
    }

    fn open(ring: &Keyring, datagram: &[u8]) -> Result<Vec<u8>, SecureError> {
        let h = SealedHeader::parse(datagram)?;
        Opener::default().open(ring, &h, datagram)
    }

    fn header(sender: [u8; 16], counter: u64, index: u16, count: u16) -> SealedHeader {
        SealedHeader {
            version: VERSION,
            algorithm: ALG_AES_256_GCM,
            frag_index: index,
            frag_count: count,
            key_id: KeyId([0; 4]),
            sender,
            counter,
            timestamp_ms: 0,
        }
    }

    #[test]
    fn known_vector() {
        // Computed independently with Python's `cryptography` (OpenSSL):
        // HKDF(SHA256, salt=None, info=b"shoal sender v1"+sender) of the key
        // 00 01 .. 1f, AESGCM(subkey).encrypt(b"\0"*4 + counter, plain, header).
        let want = hex::decode(
            "53484f4c010100000001f418c63ea0a1a2a3a4a5a6a7a8a9aaabacadaeaf0102030405060708\
             0000018bcfe5687b1b438b38698cff85282869a09f9f5397fe712f1f7ef88b25b9d864af57e85cc12c",
        )
        .unwrap();
        let mut sealer = Sealer::at_counter(SENDER, 0x0102_0304_0506_0708);
        let got = sealer.seal(
            &counting_key(),
            0,
            1,
            1_700_000_000_123,
            br#"{"event":"hello"}"#,
        );
        assert_eq!(hex::encode(&got), hex::encode(&want));
        let h = SealedHeader::parse(&want).unwrap();
        assert_eq!(
            h,
            SealedHeader {
                version: 1,
                algorithm: 1,
                frag_index: 0,
                frag_count: 1,
                key_id: counting_key().id(),
                sender: SENDER,
                counter: 0x0102_0304_0506_0708,
                timestamp_ms: 1_700_000_000_123,
            }
        );
        assert_eq!(
            open(&Keyring::new(counting_key()), &want).unwrap(),
            br#"{"event":"hello"}"#
        );
    }

    #[test]
    fn parse_checks_in_order() {
        let good = Sealer::new(SENDER).seal(&key(1), 0, 1, 0, b"");
        assert_eq!(good.len(), OVERHEAD);
        assert!(SealedHeader::parse(&good).is_ok());
        // Too short comes first, whatever the bytes.
        for len in 0..OVERHEAD {
            assert_eq!(
                SealedHeader::parse(&good[..len]),
                Err(SecureError::TooShort)
            );
            assert_eq!(
                SealedHeader::parse(&vec![0xff; len]),
                Err(SecureError::TooShort)
            );
        }
        let with = |at: usize, v: &[u8]| {
            let mut d = good.clone();
            d[at..at + v.len()].copy_from_slice(v);
            SealedHeader::parse(&d)
        };
        assert_eq!(with(0, b"WRAP"), Err(SecureError::NotSecure));
        assert_eq!(with(0, b"{\"ev"), Err(SecureError::NotSecure));
        // Magic before version before algorithm before fragments.
        assert_eq!(with(0, b"shol\x09\x09"), Err(SecureError::NotSecure));
        assert_eq!(with(4, &[2, 9]), Err(SecureError::UnknownVersion(2)));
        assert_eq!(with(4, &[0, 1]), Err(SecureError::UnknownVersion(0)));
        assert_eq!(
            with(5, &[2, 0, 0, 0, 0]),
            Err(SecureError::UnknownAlgorithm(2))
        );
        assert!(matches!(
            with(6, &[0, 0, 0, 0]),
            Err(SecureError::Malformed(_))
        ));
        assert!(matches!(
            with(6, &[0, 1, 0, 1]),
            Err(SecureError::Malformed(_))
        ));
        assert!(matches!(
            with(6, &[0xff, 0xff, 0xff, 0xff]),
            Err(SecureError::Malformed(_))
        ));
        assert_eq!(
            with(6, &[0xff, 0xfe, 0xff, 0xff]).map(|h| (h.frag_index, h.frag_count)),
            Ok((0xfffe, 0xffff))
        );
        assert!(is_sealed(&good) && !is_sealed(b"WRAP"));
    }

    #[test]
    fn round_trip_sizes() {
        let ring = Keyring::new(key(1));
        let mut sealer = Sealer::new(SENDER);
        let mut opener = Opener::default();
        for len in [0, 1, 15, 16, 17, 1000, 1438, 65_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let d = sealer.seal(ring.primary(), 0, 1, 42, &plain);
            assert_eq!(d.len(), len + OVERHEAD);
            let h = SealedHeader::parse(&d).unwrap();
            let got = opener.open(&ring, &h, &d).unwrap();
            assert_eq!(got, plain);
            assert_eq!(got.capacity(), got.len());
        }
        assert_eq!(opener.cached(), 1);
    }

    #[test]
    fn a_recycled_plaintext_is_decrypted_into_again() {
        let ring = Keyring::new(key(1));
        let mut sealer = Sealer::new(SENDER);
        let mut opener = Opener::default();
        let mut open = |opener: &mut Opener, len: usize| {
            let d = sealer.seal(ring.primary(), 0, 1, 42, &vec![7; len]);
            let got = opener.open(&ring, &SealedHeader::parse(&d).unwrap(), &d);
            let got = got.unwrap();
            assert_eq!((got.len(), got.capacity()), (len, len));
            got
        };
        let first = open(&mut opener, 300);
        let at = first.as_ptr();
        opener.recycle(first);
        let second = open(&mut opener, 300);
        assert_eq!(second.as_ptr(), at);
        // Too large to keep: the next open allocates as before.
        opener.recycle(vec![0; MAX_RECYCLED + 1]);
        assert_eq!(opener.scratch.capacity(), 0);
    }

    #[test]
    fn every_bit_flip_fails() {
        let ring = Keyring::new(key(1));
        let good = Sealer::new(SENDER).seal(ring.primary(), 0, 1, 7, b"a small secret payload");
        let mut opener = Opener::default();
        for bit in 0..good.len() * 8 {
            let mut d = good.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            let got = SealedHeader::parse(&d).and_then(|h| opener.open(&ring, &h, &d));
            match got {
                Err(
                    SecureError::AuthFailed
                    | SecureError::UnknownKey(_)
                    | SecureError::NotSecure
                    | SecureError::UnknownVersion(_)
                    | SecureError::UnknownAlgorithm(_)
                    | SecureError::Malformed(_),
                ) => {}
                other => panic!("bit {bit}: {other:?}"),
            }
            // Bits of the key id give UnknownKey, other header and body bits
            // reach the AEAD.
            if (80..112).contains(&bit) {
                assert!(matches!(got, Err(SecureError::UnknownKey(_))), "bit {bit}");
            }
            if bit >= 112 {
                assert_eq!(got, Err(SecureError::AuthFailed), "bit {bit}");
            }
        }
        // Truncated or extended: fails too.
        assert_eq!(
            open(&ring, &good[..good.len() - 1]),
            Err(SecureError::AuthFailed)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(open(&ring, &longer), Err(SecureError::AuthFailed));
        assert_eq!(open(&ring, &good).unwrap(), b"a small secret payload");
        // No failure cached anything beyond the one real sender.
        assert_eq!(opener.cached(), 0);
    }

    #[test]
    fn wrong_key() {
        let d = Sealer::new(SENDER).seal(&key(1), 0, 1, 0, b"x");
        assert_eq!(
            open(&Keyring::new(key(2)), &d),
            Err(SecureError::UnknownKey(key(1).id()))
        );
        // A different key that happens to have the same id.
        let mut impostor = key(2);
        impostor.force_id_for_tests(key(1).id());
        assert_eq!(
            open(&Keyring::new(impostor), &d),
            Err(SecureError::AuthFailed)
        );
        // A secondary key opens.
        let mut ring = Keyring::new(key(2));
        ring.install(key(1)).unwrap();
        assert_eq!(open(&ring, &d).unwrap(), b"x");
    }

    #[test]
    fn cache_notices_a_different_key_with_the_same_id() {
        let mut opener = Opener::default();
        let mut sealer = Sealer::new(SENDER);
        let d1 = sealer.seal(&key(1), 0, 1, 0, b"one");
        let h1 = SealedHeader::parse(&d1).unwrap();
        assert_eq!(
            opener.open(&Keyring::new(key(1)), &h1, &d1).unwrap(),
            b"one"
        );
        let mut impostor = key(2);
        impostor.force_id_for_tests(key(1).id());
        let ring2 = Keyring::new(impostor.clone());
        // The cached cipher is for the old key: not used.
        assert_eq!(opener.open(&ring2, &h1, &d1), Err(SecureError::AuthFailed));
        let d2 = sealer.seal(&impostor, 0, 1, 0, b"two");
        let h2 = SealedHeader::parse(&d2).unwrap();
        assert_eq!(opener.open(&ring2, &h2, &d2).unwrap(), b"two");
        assert_eq!(opener.cached(), 1);
        // The sealer, too, derived a new cipher for the new key.
        assert_eq!(open(&ring2, &d2).unwrap(), b"two");
    }

    #[test]
    fn counters_increase_and_nonces_never_repeat() {
        let mut sealer = Sealer::new(SENDER);
        let mut seen = std::collections::HashSet::new();
        let mut last = 0;
        for i in 0..600u32 {
            // Switch keys now and then: the counter carries on.
            let k = key((i / 100) as u8 % 3);
            let parts = if i % 2 == 0 {
                vec![sealer.seal(&k, 0, 1, 0, b"hello")]
            } else {
                sealer.seal_message(&k, 0, &[1; 300], 200).unwrap()
            };
            for p in parts {
                let h = SealedHeader::parse(&p).unwrap();
                assert_eq!(h.counter, last + 1);
                last = h.counter;
                // The nonce is the counter; the AES key is the sender's subkey.
                assert!(seen.insert(nonce(h.counter)));
                assert!(open(&Keyring::new(k.clone()), &p).is_ok());
            }
        }
        assert_eq!(sealer.next_counter(), last + 1);
        // Different senders, same counter and plaintext: different ciphertexts.
        let a = Sealer::new([1; 16]).seal(&key(1), 0, 1, 0, b"same");
        let b = Sealer::new([2; 16]).seal(&key(1), 0, 1, 0, b"same");
        assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    }

    #[test]
    fn last_counter() {
        let mut sealer = Sealer::at_counter(SENDER, u64::MAX - 1);
        let d = sealer.seal(&key(1), 0, 1, 0, b"last");
        assert_eq!(SealedHeader::parse(&d).unwrap().counter, u64::MAX - 1);
        assert_eq!(open(&Keyring::new(key(1)), &d).unwrap(), b"last");
        assert_eq!(sealer.next_counter(), u64::MAX);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sealer.seal(&key(1), 0, 1, 0, b"one too many")
        }));
        assert!(r.is_err());
    }

    #[test]
    fn seal_message_limits() {
        let k = key(1);
        let mut sealer = Sealer::new(SENDER);
        // One byte per fragment: 65535 fragments is the most.
        let parts = sealer
            .seal_message(&k, 0, &[9; u16::MAX as usize], OVERHEAD + 1)
            .unwrap();
        assert_eq!(parts.len(), usize::from(u16::MAX));
        let last = SealedHeader::parse(parts.last().unwrap()).unwrap();
        assert_eq!((last.frag_index, last.frag_count), (u16::MAX - 1, u16::MAX));
        assert_eq!(last.first_counter(), Some(1));
        let next = sealer.next_counter();
        assert_eq!(
            sealer.seal_message(&k, 0, &[9; u16::MAX as usize + 1], OVERHEAD + 1),
            Err(SecureError::TooLarge)
        );
        for max in [0, 1, OVERHEAD] {
            assert_eq!(
                sealer.seal_message(&k, 0, b"x", max),
                Err(SecureError::TooLarge)
            );
        }
        assert_eq!(sealer.next_counter(), next, "nothing sealed on error");
        // An empty message fits in OVERHEAD bytes, not fewer.
        assert_eq!(sealer.seal_message(&k, 0, b"", OVERHEAD).unwrap().len(), 1);
        assert_eq!(
            sealer.seal_message(&k, 0, b"", OVERHEAD - 1),
            Err(SecureError::TooLarge)
        );
        // Exact multiples get no empty trailing fragment.
        let parts = sealer
            .seal_message(&k, 0, &[0; 300], OVERHEAD + 100)
            .unwrap();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.len() == OVERHEAD + 100));
    }

    #[test]
    fn opener_cache_is_bounded_and_only_caches_authentic_senders() {
        let ring = Keyring::new(key(1));
        let mut opener = Opener::new(4);
        let mut sealers: Vec<Sealer> = (0..10u8).map(|i| Sealer::new([i; 16])).collect();
        for round in 0..3 {
            for s in sealers.iter_mut() {
                let d = s.seal(ring.primary(), 0, 1, 0, b"hi");
                let h = SealedHeader::parse(&d).unwrap();
                assert_eq!(opener.open(&ring, &h, &d).unwrap(), b"hi", "{round}");
                assert!(opener.cached() <= 4);
            }
        }
        assert_eq!(opener.cached(), 4);
        // LRU: the last four senders are cached; a busy one stays.
        let mut opener = Opener::new(2);
        let mut busy = Sealer::new([0xbb; 16]);
        for s in sealers.iter_mut() {
            for d in [
                busy.seal(ring.primary(), 0, 1, 0, b"b"),
                s.seal(ring.primary(), 0, 1, 0, b"s"),
            ] {
                let h = SealedHeader::parse(&d).unwrap();
                opener.open(&ring, &h, &d).unwrap();
            }
            assert!(opener
                .ciphers
                .as_ref()
                .is_some_and(|c| c.contains(&(key(1).id(), [0xbb; 16]))));
        }
        // Forged packets from new senders add nothing.
        let mut opener = Opener::new(4);
        for i in 0..50u8 {
            let mut d = Sealer::new([i; 16]).seal(ring.primary(), 0, 1, 0, b"hi");
            d[50] ^= 1;
            let h = SealedHeader::parse(&d).unwrap();
            assert_eq!(opener.open(&ring, &h, &d), Err(SecureError::AuthFailed));
        }
        assert_eq!(opener.cached(), 0);
        // Without a cache, every open derives, and works.
        let mut opener = Opener::new(0);
        let d = sealers[0].seal(ring.primary(), 0, 1, 0, b"hi");
        let h = SealedHeader::parse(&d).unwrap();
        assert_eq!(opener.open(&ring, &h, &d).unwrap(), b"hi");
        assert_eq!(opener.cached(), 0);
    }

    #[test]
    fn subkey_derivers_are_bounded() {
        let mut opener = Opener::new(0);
        for round in 0..2 {
            for n in 0..40u8 {
                let ring = Keyring::new(key(n));
                let d = Sealer::new([n; 16]).seal(ring.primary(), 0, 1, 0, &[n]);
                let h = SealedHeader::parse(&d).unwrap();
                assert_eq!(opener.open(&ring, &h, &d).unwrap(), [n], "{round}");
                assert!(opener.derivers.len() <= MAX_KEYS);
            }
        }
    }

    #[test]
    fn forged_packets_reuse_the_scratch_buffer() {
        let ring = Keyring::new(key(1));
        let mut opener = Opener::default();
        let mut d = Sealer::new(SENDER).seal(ring.primary(), 0, 1, 0, &[0; 1000]);
        d[100] ^= 1;
        let h = SealedHeader::parse(&d).unwrap();
        assert_eq!(opener.open(&ring, &h, &d), Err(SecureError::AuthFailed));
        let (ptr, cap) = (opener.scratch.as_ptr(), opener.scratch.capacity());
        for _ in 0..100 {
            assert_eq!(opener.open(&ring, &h, &d), Err(SecureError::AuthFailed));
        }
        assert_eq!(
            (opener.scratch.as_ptr(), opener.scratch.capacity()),
            (ptr, cap)
        );
        assert!(opener.scratch.is_empty());
    }

    #[test]
    fn a_header_from_another_datagram_fails() {
        let ring = Keyring::new(key(1));
        let mut sealer = Sealer::new(SENDER);
        let a = sealer.seal(ring.primary(), 0, 1, 0, b"a");
        let b = sealer.seal(ring.primary(), 0, 1, 0, b"b");
        let ha = SealedHeader::parse(&a).unwrap();
        assert_eq!(
            Opener::default().open(&ring, &ha, &b),
            Err(SecureError::AuthFailed)
        );
        assert_eq!(
            Opener::default().open(&ring, &ha, &a[..10]),
            Err(SecureError::TooShort)
        );
    }

    #[test]
    fn full_pipeline_with_replay_guard() {
        let ring = Keyring::new(key(1));
        let mut sealer = Sealer::new(SENDER);
        let now_ms = 1_700_000_000_000;
        let parts = sealer
            .seal_message(ring.primary(), now_ms, &[5; 4000], 1500)
            .unwrap();
        let mut opener = Opener::default();
        let mut guard = ReplayGuard::new(ReplayConfig::default());
        let mut asm = FragmentAssembler::new(AssemblyLimits::default());
        let t = Instant::now();
        let mut receive = |d: &[u8]| -> Result<Option<Vec<u8>>, SecureError> {
            let h = SealedHeader::parse(d)?;
            guard.precheck(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
            let p = opener.open(&ring, &h, d)?;
            guard.accept(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
            asm.push(t, &h, p)
        };
        assert_eq!(receive(&parts[1]), Ok(None));
        assert_eq!(receive(&parts[1]), Err(SecureError::Replay));
        assert_eq!(receive(&parts[0]), Ok(None));
        assert_eq!(receive(&parts[2]).unwrap().unwrap(), vec![5; 4000]);
        for p in &parts {
            assert_eq!(receive(p), Err(SecureError::Replay));
        }
    }

    fn limits() -> AssemblyLimits {
        AssemblyLimits::default()
    }

    /// Pushes each (header, data); returns the completed messages.
    fn push_all(
        a: &mut FragmentAssembler,
        now: Instant,
        frags: &[(SealedHeader, Vec<u8>)],
    ) -> Vec<Vec<u8>> {
        frags
            .iter()
            .filter_map(|(h, d)| a.push(now, h, d.clone()).unwrap())
            .collect()
    }

    /// A message of `count` fragments of `size` bytes starting at `first`.
    fn frags(
        sender: [u8; 16],
        first: u64,
        count: u16,
        size: usize,
    ) -> Vec<(SealedHeader, Vec<u8>)> {
        (0..count)
            .map(|i| {
                (
                    header(sender, first + u64::from(i), i, count),
                    vec![i as u8; size],
                )
            })
            .collect()
    }

    #[test]
    fn assembles_in_any_order_and_ignores_duplicates() {
        let mut a = FragmentAssembler::new(limits());
        let now = Instant::now();
        let f = frags([1; 16], 10, 4, 100);
        assert!(push_all(&mut a, now, &f[2..3]).is_empty());
        assert!(push_all(&mut a, now, &f[2..3]).is_empty()); // duplicate
        assert_eq!(a.pending(), (1, 100 + FRAGMENT_COST));
        assert!(push_all(&mut a, now, &[f[0].clone(), f[3].clone(), f[0].clone()]).is_empty());
        let got = push_all(&mut a, now, &f[1..2]);
        let want: Vec<u8> = (0..4u8).flat_map(|i| vec![i; 100]).collect();
        assert_eq!(got, vec![want]);
        assert_eq!(a.pending(), (0, 0));
        // Two messages of one sender interleaved, and another sender's.
        let m1 = frags([1; 16], 100, 3, 10);
        let m2 = frags([1; 16], 103, 2, 10);
        let m3 = frags([2; 16], 100, 3, 10);
        let mut all = Vec::new();
        for i in 0..3 {
            all.push(m1[i].clone());
            all.push(m3[i].clone());
            if i < 2 {
                all.push(m2[i].clone());
            }
        }
        assert_eq!(push_all(&mut a, now, &all).len(), 3);
        assert_eq!(a.pending(), (0, 0));
    }

    #[test]
    fn inconsistent_fragments() {
        let mut a = FragmentAssembler::new(limits());
        let now = Instant::now();
        a.push(now, &header([1; 16], 10, 0, 3), vec![1; 10])
            .unwrap();
        // Counter 11 index 1, but a count of 4: same first counter (10).
        assert!(matches!(
            a.push(now, &header([1; 16], 11, 1, 4), vec![1; 10]),
            Err(SecureError::Malformed(_))
        ));
        assert!(matches!(
            a.push(now, &header([1; 16], 11, 3, 3), vec![1; 10]),
            Err(SecureError::Malformed(_))
        ));
        assert!(matches!(
            a.push(now, &header([1; 16], 11, 0, 0), vec![1; 10]),
            Err(SecureError::Malformed(_))
        ));
        assert!(matches!(
            a.push(now, &header([1; 16], 2, 5, 9), vec![1; 10]),
            Err(SecureError::Malformed(_))
        ));
        assert_eq!(a.pending(), (1, 10 + FRAGMENT_COST));
    }

    #[test]
    fn count_limits() {
        let mut a = FragmentAssembler::new(AssemblyLimits {
            max_pending: 3,
            max_pending_per_sender: 2,
            ..limits()
        });
        let now = Instant::now();
        let first = |s: u8, c: u64| frags([s; 16], c, 2, 10).remove(0);
        for (s, c) in [(1, 10), (1, 20)] {
            let (h, d) = first(s, c);
            assert_eq!(a.push(now, &h, d), Ok(None));
        }
        let (h, d) = first(1, 30);
        assert_eq!(a.push(now, &h, d), Err(SecureError::ReassemblyFull));
        let (h, d) = first(2, 10);
        assert_eq!(a.push(now, &h, d), Ok(None));
        let (h, d) = first(3, 10);
        assert_eq!(a.push(now, &h, d), Err(SecureError::ReassemblyFull));
        assert_eq!(a.pending().0, 3);
        // Held messages still complete, freeing their slots.
        let (h, d) = frags([1; 16], 10, 2, 10).remove(1);
        assert_eq!(a.push(now, &h, d).unwrap().unwrap().len(), 20);
        let (h, d) = first(1, 30);
        assert_eq!(a.push(now, &h, d), Ok(None));
        // Single-fragment messages never need a slot.
        let h = header([3; 16], 1, 0, 1);
        assert_eq!(a.push(now, &h, vec![7; 5]).unwrap(), Some(vec![7; 5]));
    }

    #[test]
    fn byte_limits() {
        let cost = 1000 + FRAGMENT_COST;
        let mut a = FragmentAssembler::new(AssemblyLimits {
            max_pending_bytes: 2 * cost,
            ..limits()
        });
        let now = Instant::now();
        let m = frags([1; 16], 1, 4, 1000);
        assert!(push_all(&mut a, now, &m[..2]).is_empty());
        assert_eq!(a.pending(), (1, 2 * cost));
        let (h, d) = m[2].clone();
        assert_eq!(a.push(now, &h, d), Err(SecureError::ReassemblyFull));
        let other = frags([2; 16], 1, 2, 1);
        let (h, d) = other[0].clone();
        assert_eq!(a.push(now, &h, d), Err(SecureError::ReassemblyFull));
        // Many tiny fragments are charged for their bookkeeping too.
        let mut a = FragmentAssembler::new(AssemblyLimits {
            max_pending_bytes: 10 * (FRAGMENT_COST + 1),
            ..limits()
        });
        let tiny = frags([1; 16], 1, 1000, 1);
        let refused = tiny
            .iter()
            .filter(|(h, d)| a.push(now, h, d.clone()).is_err())
            .count();
        assert_eq!(refused, 990);
        assert_eq!(a.pending(), (1, 10 * (FRAGMENT_COST + 1)));
    }

    #[test]
    fn message_size_limit() {
        let mut a = FragmentAssembler::new(AssemblyLimits {
            max_message: 2500,
            ..limits()
        });
        let now = Instant::now();
        assert_eq!(
            a.push(now, &header([1; 16], 1, 0, 1), vec![0; 2501]),
            Err(SecureError::TooLarge)
        );
        let m = frags([1; 16], 10, 3, 1000);
        assert!(push_all(&mut a, now, &m[..2]).is_empty());
        let (h, d) = m[2].clone();
        assert_eq!(a.push(now, &h, d), Err(SecureError::TooLarge));
        assert_eq!(a.pending(), (0, 0), "the oversized message is dropped");
        let m = frags([1; 16], 20, 3, 833);
        assert_eq!(push_all(&mut a, now, &m)[0].len(), 2499);
    }

    #[test]
    fn timeout() {
        let timeout = Duration::from_secs(5);
        let mut a = FragmentAssembler::new(limits());
        let t0 = Instant::now();
        assert_eq!((a.next_deadline(), a.expire(t0)), (None, 0));
        let m1 = frags([1; 16], 1, 3, 10);
        let m2 = frags([2; 16], 1, 3, 10);
        push_all(&mut a, t0, &m1[..1]);
        push_all(&mut a, t0 + Duration::from_secs(2), &m2[..1]);
        // A later fragment does not extend the deadline.
        push_all(&mut a, t0 + Duration::from_secs(4), &m1[1..2]);
        assert_eq!(a.next_deadline(), Some(t0 + timeout));
        assert_eq!(a.expire(t0 + timeout - Duration::from_millis(1)), 0);
        assert_eq!(a.expire(t0 + timeout), 1);
        assert_eq!(a.pending(), (1, 10 + FRAGMENT_COST));
        assert_eq!(
            a.next_deadline(),
            Some(t0 + Duration::from_secs(2) + timeout)
        );
        assert_eq!(a.expire(t0 + timeout * 10), 1);
        assert_eq!((a.pending(), a.next_deadline()), ((0, 0), None));
        assert_eq!(a.core.sources(), 0);
        // Its last fragment then starts a new incomplete message.
        assert!(push_all(&mut a, t0, &m1[2..]).is_empty());
        let shown = format!("{a:?}");
        assert!(
            shown.contains("pending: (1, ") && !shown.contains("[2, 2"),
            "{shown}"
        );
        // A huge timeout does not panic.
        let mut a = FragmentAssembler::new(AssemblyLimits {
            timeout: Duration::MAX,
            ..limits()
        });
        push_all(&mut a, t0, &m1[..1]);
        assert_eq!((a.next_deadline(), a.expire(t0)), (None, 0));
    }

    /// Rejecting forged packets, and the other per-packet costs. Run with
    /// `cargo test --release --lib crypto::secure::tests::measure -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure() {
        use std::hint::black_box;
        fn per_op(label: &str, n: u32, mut f: impl FnMut()) {
            for _ in 0..n / 10 {
                f();
            }
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
            println!("{label:<58} {ns:>10.0} ns/op");
        }
        let ring = Keyring::new(key(1));
        let hello = vec![b'h'; 200];
        let big = vec![b'b'; 1400];
        let mut sealer = Sealer::new(SENDER);
        per_op("seal 200 B", 200_000, || {
            black_box(sealer.seal(ring.primary(), 0, 1, 0, black_box(&hello)));
        });
        per_op("seal 1400 B", 100_000, || {
            black_box(sealer.seal(ring.primary(), 0, 1, 0, black_box(&big)));
        });
        let d = sealer.seal(ring.primary(), 0, 1, 0, &hello);
        let h = SealedHeader::parse(&d).unwrap();
        let mut opener = Opener::default();
        per_op("open 200 B (cached sender)", 200_000, || {
            black_box(opener.open(&ring, &h, black_box(&d)).unwrap());
        });
        let d_big = sealer.seal(ring.primary(), 0, 1, 0, &big);
        let h_big = SealedHeader::parse(&d_big).unwrap();
        per_op("open 1400 B (cached sender)", 100_000, || {
            black_box(opener.open(&ring, &h_big, black_box(&d_big)).unwrap());
        });
        let mut cold = Opener::new(0);
        per_op("open 200 B (uncached: subkey derivation)", 100_000, || {
            black_box(cold.open(&ring, &h, black_box(&d)).unwrap());
        });
        per_op("SealedHeader::parse", 1_000_000, || {
            black_box(SealedHeader::parse(black_box(&d)).unwrap());
        });
        let mut unknown = d.clone();
        unknown[10] ^= 1;
        per_op("reject unknown key id (parse + lookup)", 1_000_000, || {
            let h = SealedHeader::parse(black_box(&unknown)).unwrap();
            black_box(opener.open(&ring, &h, &unknown).unwrap_err());
        });
        // Forged: known key id, fresh counter, garbage body.
        let mut forged = d.clone();
        forged[30..38].copy_from_slice(&1_000_000u64.to_be_bytes());
        forged[60] ^= 0x55;
        per_op(
            "reject forged 200 B (known key + sender, AEAD fails)",
            200_000,
            || {
                let h = SealedHeader::parse(black_box(&forged)).unwrap();
                black_box(opener.open(&ring, &h, &forged).unwrap_err());
            },
        );
        let mut forged_big = d_big.clone();
        forged_big[30..38].copy_from_slice(&1_000_000u64.to_be_bytes());
        forged_big[60] ^= 0x55;
        per_op(
            "reject forged 1400 B (known key + sender, AEAD fails)",
            200_000,
            || {
                let h = SealedHeader::parse(black_box(&forged_big)).unwrap();
                black_box(opener.open(&ring, &h, &forged_big).unwrap_err());
            },
        );
        let mut i = 0u64;
        per_op(
            "reject forged 200 B (known key, new random sender)",
            100_000,
            || {
                i += 1;
                forged[14..22].copy_from_slice(&i.to_be_bytes());
                let h = SealedHeader::parse(black_box(&forged)).unwrap();
                black_box(opener.open(&ring, &h, &forged).unwrap_err());
            },
        );
        let mut guard = ReplayGuard::new(ReplayConfig::default());
        for i in 0..1000u64 {
            let mut s = [0u8; 16];
            s[..8].copy_from_slice(&i.to_be_bytes());
            guard.accept(&s, 1, 0, 0).unwrap();
        }
        per_op(
            "replay precheck (1000 senders known, unknown one)",
            1_000_000,
            || {
                black_box(guard.precheck(black_box(&SENDER), 5, 0, 0)).ok();
            },
        );
        let known = [0u8; 16];
        per_op(
            "replay precheck (known sender, fresh counter)",
            1_000_000,
            || {
                black_box(guard.precheck(black_box(&known), 5, 0, 0)).ok();
            },
        );
        let mut c = 1u64;
        per_op(
            "replay accept (known sender, next counter)",
            1_000_000,
            || {
                c += 1;
                black_box(guard.accept(black_box(&known), c, 0, 0)).ok();
            },
        );
        let t = Instant::now();
        let k = Key::from_passphrase("measure me");
        println!(
            "{:<58} {:>10.1} ms",
            "Key::from_passphrase (Argon2id m=19MiB t=2 p=1)",
            t.elapsed().as_secs_f64() * 1e3
        );
        black_box(k);
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(plain in proptest::collection::vec(any::<u8>(), 0..3000),
                                sender in any::<[u8; 16]>(), ts in any::<u64>(), k in any::<[u8; 32]>()) {
            let key = Key::from_bytes(k);
            let ring = Keyring::new(key.clone());
            let mut sealer = Sealer::new(sender);
            let d = sealer.seal(&key, 0, 1, ts, &plain);
            let h = SealedHeader::parse(&d).unwrap();
            prop_assert_eq!((h.sender, h.timestamp_ms, h.key_id), (sender, ts, key.id()));
            prop_assert_eq!(Opener::default().open(&ring, &h, &d).unwrap(), plain);
        }

        #[test]
        fn split_and_reassemble_in_any_order(plain in proptest::collection::vec(any::<u8>(), 0..6000),
                                             max in OVERHEAD + 1..1600usize,
                                             seed in any::<u64>(), dup in any::<bool>()) {
            let ring = Keyring::new(key(3));
            let mut sealer = Sealer::new(SENDER);
            sealer.seal(ring.primary(), 0, 1, 0, b"an earlier message");
            let mut parts = sealer.seal_message(ring.primary(), 5, &plain, max).unwrap();
            let piece = max - OVERHEAD;
            prop_assert_eq!(parts.len(), plain.len().div_ceil(piece).max(1));
            prop_assert!(parts.iter().all(|p| p.len() <= max));
            if dup {
                let extra = parts[(seed % parts.len() as u64) as usize].clone();
                parts.push(extra);
            }
            let mut s = seed;
            for i in (1..parts.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = ((s >> 33) % (i as u64 + 1)) as usize;
                parts.swap(i, j);
            }
            let mut opener = Opener::default();
            let mut asm = FragmentAssembler::new(AssemblyLimits { max_pending_bytes: 1 << 30, ..limits() });
            let mut got = Vec::new();
            for p in &parts {
                let h = SealedHeader::parse(p).unwrap();
                prop_assert_eq!(h.first_counter(), Some(2));
                let plain = opener.open(&ring, &h, p).unwrap();
                if let Some(m) = asm.push(Instant::now(), &h, plain).unwrap() {
                    got.push(m);
                }
            }
            // A duplicate of a single-fragment message is delivered twice
            // (the replay guard is what stops it); of a multi-fragment
            // message, ignored or a new incomplete message.
            let single = parts.len() - usize::from(dup) == 1;
            prop_assert_eq!(got.len(), if single && dup { 2 } else { 1 });
            for m in &got {
                prop_assert_eq!(m, &plain);
            }
        }

        #[test]
        fn random_datagrams_never_panic(dgs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..200), any::<u8>()), 1..30)) {
            let ring = Keyring::new(key(1));
            let id = key(1).id();
            let mut opener = Opener::new(4);
            let guard = ReplayGuard::new(ReplayConfig { max_senders: 4, ..ReplayConfig::default() });
            let mut asm = FragmentAssembler::new(AssemblyLimits {
                max_message: 300, max_pending: 4, max_pending_bytes: 1000, max_pending_per_sender: 2,
                ..limits()
            });
            let now = Instant::now();
            for (mut d, how) in dgs {
                // Often make it look sealed, to reach the later checks.
                if how & 1 == 1 && d.len() >= 6 {
                    d[..4].copy_from_slice(&MAGIC);
                    d[4] = VERSION;
                    d[5] = ALG_AES_256_GCM;
                }
                if how & 2 == 2 && d.len() >= 14 {
                    d[10..14].copy_from_slice(&id.0);
                }
                let _ = SealedHeader::parse(&d).and_then(|h| {
                    guard.precheck(&h.sender, h.counter, h.timestamp_ms, h.timestamp_ms)?;
                    opener.open(&ring, &h, &d)
                });
                // Feed the assembler the raw header fields as if authenticated.
                if let Ok(h) = SealedHeader::parse(&d) {
                    let body = d[HEADER_LEN..].to_vec();
                    let _ = asm.push(now, &h, body);
                    let (n, bytes) = asm.pending();
                    prop_assert!(n <= 4 && bytes <= 1000);
                }
                // Headers with arbitrary fields, unparsed.
                if let Some(raw) = d.first_chunk::<HEADER_LEN>() {
                    let h = SealedHeader {
                        frag_index: be16::<6>(raw),
                        frag_count: be16::<8>(raw),
                        counter: be64::<30>(raw),
                        ..header([how; 16], 0, 0, 1)
                    };
                    let _ = asm.push(now, &h, d.clone());
                    let _ = opener.open(&ring, &h, &d);
                    let _ = opener.open(&ring, &h, &d[..d.len() / 2]);
                }
            }
            prop_assert_eq!(opener.cached(), 0);
            asm.expire(now + Duration::from_secs(60));
            prop_assert_eq!(asm.pending(), (0, 0));
        }
    }
}
