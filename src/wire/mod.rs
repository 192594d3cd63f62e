//! The wire format of node-discovery 0.2.1: everything that turns protocol
//! values into bytes and back, with no sockets, no clocks and no keys.
//!
//! A plaintext node-discovery datagram has two layers, outermost last:
//!
//! 1. [`envelope`]: the UTF-8 JSON object `{"data", "event", "pid", "iid", "hostName"}`
//!    ([`fast_hello`] reads the common hello shape in one pass);
//! 2. [`framing`]: that payload cut into `WRAP` blocks of at most 1500 bytes.
//!
//! Protection sits between the two, and is not this module's business: the
//! crate's packet codec either encrypts the envelope with node-discovery's
//! legacy cipher before framing ([`crate::crypto::legacy`]), or replaces
//! framing altogether with shoal's sealed datagrams
//! ([`crate::crypto::secure`]). Decoding peels the layers in the reverse
//! order. Every decoder here returns a [`DecodeError`] for bad input and
//! never panics; limits are checked before any allocation sized from the
//! wire.

pub mod envelope;
pub mod fast_hello;
pub mod finite;
pub mod framing;

/// Why an incoming datagram (or one block of it) was dropped.
///
/// Every variant is counted in [`crate::Stats`]; none of them is fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is shorter than a block header.
    #[error("block is too small ({len} bytes)")]
    TooShort {
        /// Length of what was received.
        len: usize,
    },
    /// The datagram does not start with `WRAP` (for example node-discover's plain JSON dialect).
    #[error("not a WRAP block")]
    NotWrapped,
    /// The block-length field is smaller than the header or larger than the datagram.
    #[error("bad block length {block_len} in a datagram of {len} bytes")]
    BadBlockLength {
        /// Declared block length, header included.
        block_len: u32,
        /// Bytes actually left in the datagram.
        len: usize,
    },
    /// The declared message length exceeds the configured maximum message size.
    #[error("declared message length {declared} exceeds the limit {max}")]
    TooLarge {
        /// Length the sender declared.
        declared: u32,
        /// Configured maximum.
        max: usize,
    },
    /// A block's data does not fit in the declared message, overlaps another block,
    /// or disagrees with earlier blocks of the same message about its length or checksum.
    #[error("inconsistent block: {0}")]
    BadBlock(&'static str),
    /// The reassembled payload's CRC-32 does not match the header.
    #[error("checksum mismatch")]
    Checksum,
    /// Too many incomplete messages are pending (in count or bytes); the block was refused.
    #[error("reassembly buffer full")]
    ReassemblyFull,
    /// An incomplete message was dropped after its reassembly timeout.
    #[error("incomplete message timed out")]
    ReassemblyTimeout,
    /// Decryption failed (wrong key, bad padding or a bad length).
    #[error("decryption failed")]
    Decrypt,
    /// The payload is not a JSON envelope of the expected shape.
    #[error("bad envelope: {0}")]
    Envelope(EnvelopeError),
    /// A secure-mode (sealed) packet was refused: see [`crate::crypto::secure::SecureError`].
    #[error("sealed packet refused: {0}")]
    Secure(crate::crypto::secure::SecureError),
    /// A plaintext packet, refused because only sealed packets are accepted.
    #[error("plaintext packet refused in secure mode")]
    Unauthenticated,
}

/// What is wrong with a message that passed framing and protection but is
/// not a usable node-discovery envelope. A plain value: building one
/// allocates nothing, so a flood of bad packets costs no heap.
///
/// ```
/// use shoal::wire::{envelope, DecodeError, EnvelopeError};
///
/// assert_eq!(envelope::decode(b"[1]").unwrap_err(), DecodeError::Envelope(EnvelopeError::NotAnObject));
/// assert_eq!(EnvelopeError::NotAnObject.to_string(), "not a JSON object");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The payload is empty or only white space.
    #[error("empty payload")]
    Empty,
    /// The payload (or a hello's `data`) is not a JSON object.
    #[error("not a JSON object")]
    NotAnObject,
    /// The JSON is malformed or truncated.
    #[error("malformed JSON")]
    Syntax,
    /// The JSON is well formed, but a field is missing or has the wrong type.
    #[error("a field is missing or has the wrong type")]
    Shape,
    /// The envelope has no `data`.
    #[error("no data")]
    NoData,
    /// A hello's weight is not a finite number.
    #[error("hello weight is not finite")]
    WeightNotFinite,
    /// The instance or process id is longer than [`crate::NodeId::MAX_LEN`].
    #[error("id too long")]
    IdTooLong,
    /// A sealed message's envelope names another instance than the sealed sender.
    #[error("instance id differs from the sealed sender")]
    SenderMismatch,
    /// A hello's advertised `info` could not be parsed.
    #[error("bad info")]
    BadInfo,
    /// A channel message's `data` could not be parsed (for example, nested too deeply).
    #[error("bad message data")]
    BadData,
}

impl EnvelopeError {
    /// Sorts a serde error without keeping (or formatting) it.
    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        if error.is_syntax() || error.is_eof() {
            EnvelopeError::Syntax
        } else {
            EnvelopeError::Shape
        }
    }
}
