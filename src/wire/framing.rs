//! node-discovery's `WRAP` framing: a payload cut into blocks of at most
//! 1500 bytes, each a 36-byte header followed by data, and the bounded
//! reassembly of incoming blocks.
//!
//! Header layout (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | ASCII `WRAP` |
//! | 4 | 16 | message id, random, the same for every block of one message |
//! | 20 | 4 | CRC-32 of the whole payload (node writes it as a signed i32) |
//! | 24 | 4 | total payload length |
//! | 28 | 4 | this block's length, header included |
//! | 32 | 4 | offset of this block's data within the payload |

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::DecodeError;

/// The block magic.
pub const MAGIC: [u8; 4] = *b"WRAP";
/// Size of a block header.
pub const HEADER_LEN: usize = 36;
/// Largest block node-discovery sends, header included.
pub const BLOCK_SIZE: usize = 1500;
/// Data bytes in a full block.
pub const BLOCK_DATA: usize = BLOCK_SIZE - HEADER_LEN;

/// A parsed block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Message id shared by all blocks of one message.
    pub id: [u8; 16],
    /// CRC-32 (IEEE) of the whole payload.
    pub crc: u32,
    /// Length of the whole payload.
    pub total_len: u32,
    /// Length of this block, header included.
    pub block_len: u32,
    /// Offset of this block's data in the payload.
    pub offset: u32,
}

/// Cuts `payload` into blocks, calling `emit` with each finished block.
///
/// Unlike node-discovery's encoder, this is right at every size: a payload
/// that is an exact multiple of [`BLOCK_DATA`] gets no empty trailing block.
pub fn encode(payload: &[u8], id: [u8; 16], mut emit: impl FnMut(Vec<u8>)) {
    todo!()
}

/// Parses the first block of `datagram`, returning its header, its data and
/// whatever follows it in the datagram (node-discovery's receiver accepts
/// several blocks back to back in one buffer).
pub fn parse_block(datagram: &[u8]) -> Result<(BlockHeader, &[u8], &[u8]), DecodeError> {
    todo!()
}

/// Memory limits for [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Largest payload accepted, in bytes (checked against the declared length).
    pub max_message: usize,
    /// Most incomplete messages held at once.
    pub max_pending: usize,
    /// Most bytes of block data held for incomplete messages.
    pub max_pending_bytes: usize,
    /// Incomplete messages are dropped this long after their last block.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_message: 1 << 20,
            max_pending: 256,
            max_pending_bytes: 4 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Reassembles multi-block messages, keyed by (source address, message id).
#[derive(Debug)]
pub struct Reassembler {
    limits: ReassemblyLimits,
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        todo!()
    }

    /// Feeds one block. Returns the whole payload (CRC checked) when this
    /// block completes a message; a single-block message is returned borrowed,
    /// without copying.
    pub fn push<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &BlockHeader,
        data: &'a [u8],
    ) -> Result<Option<Cow<'a, [u8]>>, DecodeError> {
        todo!()
    }

    /// Drops incomplete messages whose deadline has passed; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        todo!()
    }

    /// The earliest deadline of an incomplete message.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }

    /// Incomplete messages held, and the block bytes they hold.
    pub fn pending(&self) -> (usize, usize) {
        todo!()
    }
}
