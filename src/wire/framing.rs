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
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::DecodeError;
use crate::reassembly::{Expiry, Limits, Partial, Reassembly, Refused};

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
/// ```
/// use std::time::Instant;
/// use shoal::wire::framing::{encode, parse_block, Reassembler, ReassemblyLimits};
///
/// let payload = vec![42u8; 4000];
/// let mut blocks = Vec::new();
/// encode(&payload, [7; 16], |block| blocks.push(block));
/// assert_eq!(blocks.len(), 3); // 1464 + 1464 + 1072 data bytes
///
/// let mut r = Reassembler::new(ReassemblyLimits::default());
/// let from = "10.0.0.2:12345".parse().unwrap();
/// let mut out = None;
/// for block in blocks.iter().rev() { // any order
///     let (header, data, rest) = parse_block(block).unwrap();
///     assert!(rest.is_empty());
///     if let Some(whole) = r.push(Instant::now(), from, &header, data).unwrap() {
///         out = Some(whole.into_owned());
///     }
/// }
/// assert_eq!(out.unwrap(), payload);
/// ```
///
/// Unlike node-discovery's encoder, this is right at every size: a payload
/// that is an exact multiple of [`BLOCK_DATA`] gets no empty trailing block.
///
/// An empty payload gives one block with no data (node-discovery sends
/// nothing at all for one, and its receiver would drop such a block).
///
/// # Panics
///
/// If `payload` is longer than `u32::MAX` bytes, which the header cannot
/// describe.
pub fn encode(payload: &[u8], id: [u8; 16], mut emit: impl FnMut(Vec<u8>)) {
    let total_len = u32::try_from(payload.len())
        .unwrap_or_else(|_| panic!("payload of {} bytes is too long to frame", payload.len()));
    let crc = crc32fast::hash(payload);
    let mut header = BlockHeader {
        id,
        crc,
        total_len,
        block_len: 0,
        offset: 0,
    };
    let mut emit_block = |offset: usize, data: &[u8]| {
        // Both fit in u32: offset + data.len() <= total_len <= u32::MAX.
        header.offset = offset as u32;
        header.block_len = (HEADER_LEN + data.len()) as u32;
        let mut block = Vec::with_capacity(HEADER_LEN + data.len());
        write_header(&header, &mut block);
        block.extend_from_slice(data);
        emit(block);
    };
    if payload.is_empty() {
        emit_block(0, payload);
        return;
    }
    for (i, data) in payload.chunks(BLOCK_DATA).enumerate() {
        emit_block(i * BLOCK_DATA, data);
    }
}

/// Appends the 36 header bytes of `header` to `out`.
fn write_header(header: &BlockHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&header.id);
    out.extend_from_slice(&header.crc.to_be_bytes());
    out.extend_from_slice(&header.total_len.to_be_bytes());
    out.extend_from_slice(&header.block_len.to_be_bytes());
    out.extend_from_slice(&header.offset.to_be_bytes());
}

/// Reads the big-endian `u32` at `AT` of a header (an out-of-range `AT`
/// fails to compile).
fn be32<const AT: usize>(header: &[u8; HEADER_LEN]) -> u32 {
    u32::from_be_bytes([header[AT], header[AT + 1], header[AT + 2], header[AT + 3]])
}

/// Parses the first block of `datagram`, returning its header, its data and
/// whatever follows it in the datagram (node-discovery's receiver accepts
/// several blocks back to back in one buffer).
///
/// A block may carry no data at all: node-discovery's encoder ends a payload
/// that is an exact multiple of [`BLOCK_DATA`] with such a block.
/// [`Reassembler::push`] ignores it.
pub fn parse_block(datagram: &[u8]) -> Result<(BlockHeader, &[u8], &[u8]), DecodeError> {
    let Some(raw) = datagram.first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::TooShort {
            len: datagram.len(),
        });
    };
    if raw[..4] != MAGIC {
        return Err(DecodeError::NotWrapped);
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&raw[4..20]);
    let header = BlockHeader {
        id,
        crc: be32::<20>(raw),
        total_len: be32::<24>(raw),
        block_len: be32::<28>(raw),
        offset: be32::<32>(raw),
    };
    let bad_length = DecodeError::BadBlockLength {
        block_len: header.block_len,
        len: datagram.len(),
    };
    let block_len = usize::try_from(header.block_len).map_err(|_| bad_length.clone())?;
    if block_len < HEADER_LEN {
        return Err(bad_length);
    }
    let (Some(data), Some(rest)) = (
        datagram.get(HEADER_LEN..block_len),
        datagram.get(block_len..),
    ) else {
        return Err(bad_length);
    };
    Ok((header, data, rest))
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
    /// Most incomplete messages from one source address, so that one
    /// sender cannot take the whole budget from the others.
    pub max_pending_per_source: usize,
    /// Incomplete messages are dropped this long after their last block.
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_message: 1 << 20,
            max_pending: 256,
            max_pending_bytes: 4 << 20,
            max_pending_per_source: 32,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Reassembles multi-block messages, keyed by (source address, message id).
///
/// Memory held is bounded by [`ReassemblyLimits`]: nothing is ever allocated
/// from a declared length, only from block data actually received.
#[derive(Debug)]
pub struct Reassembler {
    core: Reassembly<SocketAddr, [u8; 16], Declared, u32>,
}

/// What a message's first block declared, which its other blocks must repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Declared {
    total_len: u32,
    crc: u32,
}

/// Whether `[offset, end)` overlaps a held piece (other than one at exactly
/// `offset`, which the caller has handled).
fn overlaps(pieces: &BTreeMap<u32, Vec<u8>>, offset: u32, end: u64) -> bool {
    let before = pieces
        .range(..offset)
        .next_back()
        .is_some_and(|(&o, p)| u64::from(o) + p.len() as u64 > u64::from(offset));
    let after = pieces
        .range(offset..)
        .next()
        .is_some_and(|(&o, _)| u64::from(o) < end);
    before || after
}

/// The payload if its CRC matches.
fn checked<'a>(payload: Cow<'a, [u8]>, crc: u32) -> Result<Option<Cow<'a, [u8]>>, DecodeError> {
    if crc32fast::hash(&payload) == crc {
        Ok(Some(payload))
    } else {
        Err(DecodeError::Checksum)
    }
}

impl Reassembler {
    /// An empty reassembler.
    pub fn new(limits: ReassemblyLimits) -> Self {
        Reassembler {
            core: Reassembly::new(Limits {
                max_message: limits.max_message,
                max_pending: limits.max_pending,
                max_pending_bytes: limits.max_pending_bytes,
                max_pending_per_source: limits.max_pending_per_source,
                // Blocks are full-sized (see `push`), so their data alone
                // stands for the memory they take.
                piece_cost: 0,
                timeout: limits.timeout,
                expiry: Expiry::AfterLastPiece,
            }),
        }
    }

    /// Feeds one block. Returns the whole payload (CRC checked) when this
    /// block completes a message; a single-block message is returned borrowed,
    /// without copying.
    ///
    /// A block that carries no data is ignored (`Ok(None)`), unless it is the
    /// whole of an empty message. A block at an offset already held for its
    /// message is ignored as a duplicate. A block of a message not yet held is
    /// refused with [`DecodeError::ReassemblyFull`] when holding it would
    /// exceed [`ReassemblyLimits::max_pending`],
    /// [`ReassemblyLimits::max_pending_per_source`] or
    /// [`ReassemblyLimits::max_pending_bytes`]; so is a block of a held
    /// message that would exceed the byte limit without completing it.
    pub fn push<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        header: &BlockHeader,
        data: &'a [u8],
    ) -> Result<Option<Cow<'a, [u8]>>, DecodeError> {
        let max_message = self.core.limits().max_message;
        if u64::from(header.total_len) > max_message as u64 {
            return Err(DecodeError::TooLarge {
                declared: header.total_len,
                max: max_message,
            });
        }
        let end = u64::from(header.offset) + data.len() as u64;
        if end > u64::from(header.total_len) {
            return Err(DecodeError::BadBlock("block data beyond the message end"));
        }
        if header.offset == 0 && end == u64::from(header.total_len) {
            // The whole message in one block (possibly an empty one).
            return checked(Cow::Borrowed(data), header.crc);
        }
        if data.is_empty() {
            // node-discovery's empty trailing block: it carries nothing.
            return Ok(None);
        }
        // Every encoder that node-discovery can read cuts full blocks of
        // BLOCK_DATA bytes (its receiver counts blocks), so refuse anything
        // else: tiny blocks would make the bookkeeping per piece outweigh
        // the data counted against max_pending_bytes.
        if header.offset as usize % BLOCK_DATA != 0 {
            return Err(DecodeError::BadBlock(
                "block offset not on a block boundary",
            ));
        }
        if data.len() != BLOCK_DATA && end != u64::from(header.total_len) {
            return Err(DecodeError::BadBlock(
                "short block before the end of the message",
            ));
        }

        let declared = Declared {
            total_len: header.total_len,
            crc: header.crc,
        };
        let check = |p: &Partial<Declared, u32>| {
            if p.meta().total_len != header.total_len {
                return Err(DecodeError::BadBlock(
                    "message length differs from earlier blocks",
                ));
            }
            if p.meta().crc != header.crc {
                return Err(DecodeError::BadBlock(
                    "message checksum differs from earlier blocks",
                ));
            }
            if let Some(held) = p.pieces().get(&header.offset) {
                // Same length: a duplicate, which the core ignores whatever
                // this says.
                return if held.len() == data.len() {
                    Ok(false)
                } else {
                    Err(DecodeError::BadBlock("block overlaps another block"))
                };
            }
            if overlaps(p.pieces(), header.offset, end) {
                return Err(DecodeError::BadBlock("block overlaps another block"));
            }
            Ok(p.data_len() + data.len() == header.total_len as usize)
        };
        let key = (from, header.id);
        match self
            .core
            .admit(now, key, declared, header.offset, data, check)
        {
            Ok(Some(whole)) => checked(Cow::Owned(whole), header.crc),
            Ok(None) => Ok(None),
            Err(Refused::Format(error)) => Err(error),
            Err(Refused::Full) => Err(DecodeError::ReassemblyFull),
            // Unreachable: the declared length was checked, and the blocks
            // of a message never overlap nor pass its end.
            Err(Refused::TooLarge) => Err(DecodeError::TooLarge {
                declared: header.total_len,
                max: max_message,
            }),
        }
    }

    /// Drops incomplete messages whose deadline ([`ReassemblyLimits::timeout`]
    /// after their last block) has come; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.core.expire(now)
    }

    /// The earliest deadline of an incomplete message.
    ///
    /// `None` when nothing is pending (or the deadline is too far in the
    /// future for an [`Instant`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.core.next_deadline()
    }

    /// Incomplete messages held, and the block bytes they hold.
    pub fn pending(&self) -> (usize, usize) {
        self.core.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: [u8; 16] = *b"0123456789abcdef";

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn blocks(payload: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        encode(payload, ID, |b| out.push(b));
        out
    }

    fn limits() -> ReassemblyLimits {
        ReassemblyLimits::default()
    }

    /// Pushes whole datagrams; returns the delivered payloads.
    fn push_all(
        r: &mut Reassembler,
        now: Instant,
        from: SocketAddr,
        dgs: &[Vec<u8>],
    ) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for dg in dgs {
            let (h, data, rest) = parse_block(dg).unwrap();
            assert!(rest.is_empty());
            if let Some(p) = r.push(now, from, &h, data).unwrap() {
                out.push(p.into_owned());
            }
        }
        out
    }

    fn header(total_len: u32, offset: u32, data_len: usize, crc: u32) -> BlockHeader {
        BlockHeader {
            id: ID,
            crc,
            total_len,
            block_len: (HEADER_LEN + data_len) as u32,
            offset,
        }
    }

    #[test]
    fn header_layout() {
        let p = payload(10);
        let b = blocks(&p);
        assert_eq!(b.len(), 1);
        let b = &b[0];
        assert_eq!(b.len(), HEADER_LEN + 10);
        assert_eq!(&b[..4], b"WRAP");
        assert_eq!(&b[4..20], &ID);
        assert_eq!(&b[20..24], &crc32fast::hash(&p).to_be_bytes());
        assert_eq!(&b[24..28], &10u32.to_be_bytes());
        assert_eq!(&b[28..32], &46u32.to_be_bytes());
        assert_eq!(&b[32..36], &0u32.to_be_bytes());
        assert_eq!(&b[36..], &p[..]);
    }

    #[test]
    fn block_counts_and_sizes() {
        for (len, sizes) in [
            (0usize, vec![0usize]),
            (1, vec![1]),
            (1463, vec![1463]),
            (1464, vec![1464]),
            (1465, vec![1464, 1]),
            (2928, vec![1464, 1464]),
            (4000, vec![1464, 1464, 1072]),
        ] {
            let p = payload(len);
            let b = blocks(&p);
            let got: Vec<usize> = b.iter().map(|b| b.len() - HEADER_LEN).collect();
            assert_eq!(got, sizes, "payload of {len}");
            for (i, block) in b.iter().enumerate() {
                assert!(block.len() <= BLOCK_SIZE);
                let (h, data, rest) = parse_block(block).unwrap();
                assert_eq!(h.offset as usize, i * BLOCK_DATA);
                assert_eq!(h.block_len as usize, block.len());
                assert_eq!(h.total_len as usize, len);
                assert_eq!(h.id, ID);
                assert!(rest.is_empty());
                assert_eq!(data, &p[i * BLOCK_DATA..i * BLOCK_DATA + data.len()]);
            }
            let mut r = Reassembler::new(limits());
            assert_eq!(push_all(&mut r, Instant::now(), addr(1), &b), vec![p]);
            assert_eq!(r.pending(), (0, 0));
        }
    }

    #[test]
    fn single_block_is_borrowed() {
        let p = payload(100);
        let b = blocks(&p);
        let (h, data, _) = parse_block(&b[0]).unwrap();
        let mut r = Reassembler::new(limits());
        let got = r.push(Instant::now(), addr(1), &h, data).unwrap().unwrap();
        assert!(matches!(got, Cow::Borrowed(_)));
        assert_eq!(&*got, &p[..]);
        assert_eq!(r.pending(), (0, 0));
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn multi_block_is_owned_out_of_order_with_duplicates() {
        let p = payload(5000);
        let b = blocks(&p);
        assert_eq!(b.len(), 4);
        let order = [3, 1, 1, 3, 0, 0, 2];
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        let mut delivered = None;
        for (n, &i) in order.iter().enumerate() {
            let (h, data, _) = parse_block(&b[i]).unwrap();
            let got = r.push(now, addr(1), &h, data).unwrap();
            if n + 1 < order.len() {
                assert!(got.is_none());
            } else {
                assert!(matches!(got, Some(Cow::Owned(_))));
                delivered = got.map(Cow::into_owned);
            }
        }
        assert_eq!(delivered.unwrap(), p);
        assert_eq!(r.pending(), (0, 0));
        // A duplicate arriving after completion starts a new, incomplete message.
        let (h, data, _) = parse_block(&b[1]).unwrap();
        assert!(r.push(now, addr(1), &h, data).unwrap().is_none());
        assert_eq!(r.pending(), (1, BLOCK_DATA));
    }

    #[test]
    fn pending_accounting() {
        let p = payload(4000);
        let b = blocks(&p);
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        push_all(&mut r, now, addr(1), &b[..1]);
        assert_eq!(r.pending(), (1, 1464));
        push_all(&mut r, now, addr(1), &b[2..]);
        assert_eq!(r.pending(), (1, 1464 + 1072));
        // Same id from another source is another message.
        push_all(&mut r, now, addr(2), &b[..1]);
        assert_eq!(r.pending(), (2, 2 * 1464 + 1072));
        assert_eq!(push_all(&mut r, now, addr(1), &b[1..2]), vec![p]);
        assert_eq!(r.pending(), (1, 1464));
    }

    #[test]
    fn checksum_mismatch() {
        let p = payload(100);
        let mut b = blocks(&p);
        b[0][50] ^= 1;
        let (h, data, _) = parse_block(&b[0]).unwrap();
        let mut r = Reassembler::new(limits());
        assert_eq!(
            r.push(Instant::now(), addr(1), &h, data),
            Err(DecodeError::Checksum)
        );

        let p = payload(3000);
        let mut b = blocks(&p);
        b[1][HEADER_LEN] ^= 0x80;
        let now = Instant::now();
        for blk in &b[..2] {
            let (h, data, _) = parse_block(blk).unwrap();
            assert_eq!(r.push(now, addr(1), &h, data), Ok(None));
        }
        let (h, data, _) = parse_block(&b[2]).unwrap();
        assert_eq!(r.push(now, addr(1), &h, data), Err(DecodeError::Checksum));
        assert_eq!(r.pending(), (0, 0));
    }

    #[test]
    fn parse_errors() {
        let b = blocks(&payload(100)).remove(0);
        for len in [0, 1, 35] {
            assert_eq!(parse_block(&b[..len]), Err(DecodeError::TooShort { len }));
        }
        // Truncated: the header says 136 bytes.
        assert_eq!(
            parse_block(&b[..100]),
            Err(DecodeError::BadBlockLength {
                block_len: 136,
                len: 100
            })
        );
        assert_eq!(
            parse_block(&b[..36]),
            Err(DecodeError::BadBlockLength {
                block_len: 136,
                len: 36
            })
        );
        let mut bad = b.clone();
        bad[0] = b'w';
        assert_eq!(parse_block(&bad), Err(DecodeError::NotWrapped));
        assert_eq!(parse_block(&[b'{'; 64]), Err(DecodeError::NotWrapped));
        for block_len in [0u32, 1, 35, 137, u32::MAX] {
            let mut bad = b.clone();
            bad[28..32].copy_from_slice(&block_len.to_be_bytes());
            assert_eq!(
                parse_block(&bad),
                Err(DecodeError::BadBlockLength {
                    block_len,
                    len: 136
                })
            );
        }
    }

    #[test]
    fn back_to_back_blocks() {
        let p = payload(3000);
        let b = blocks(&p);
        let dg: Vec<u8> = b.concat();
        let mut r = Reassembler::new(limits());
        let mut rest: &[u8] = &dg;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (h, data, more) = parse_block(rest).unwrap();
            if let Some(m) = r.push(Instant::now(), addr(1), &h, data).unwrap() {
                out.push(m.into_owned());
            }
            rest = more;
        }
        assert_eq!(out, vec![p]);
    }

    #[test]
    fn header_only_block_parses() {
        let mut b = blocks(&payload(10)).remove(0);
        b[28..32].copy_from_slice(&36u32.to_be_bytes());
        let (h, data, rest) = parse_block(&b).unwrap();
        assert_eq!(h.block_len, 36);
        assert!(data.is_empty());
        assert_eq!(rest.len(), 10);
    }

    #[test]
    fn too_large_is_refused_without_allocation() {
        let mut r = Reassembler::new(limits());
        // Would be a 4 GiB allocation if it were preallocated.
        let h = header(u32::MAX, 0, 100, 0);
        assert_eq!(
            r.push(Instant::now(), addr(1), &h, &[0; 100]),
            Err(DecodeError::TooLarge {
                declared: u32::MAX,
                max: 1 << 20
            })
        );
        // Just under the limit: accepted, holding only what arrived.
        let h = header(1 << 20, 0, BLOCK_DATA, 0);
        assert_eq!(
            r.push(Instant::now(), addr(1), &h, &[0; BLOCK_DATA]),
            Ok(None)
        );
        assert_eq!(r.pending(), (1, BLOCK_DATA));
        let h = header((1 << 20) + 1, 0, BLOCK_DATA, 0);
        assert!(matches!(
            r.push(Instant::now(), addr(1), &h, &[0; BLOCK_DATA]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn beyond_total_is_refused() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        for (total, offset, len) in [
            (100u32, 1u32, 100usize),
            (100, 100, 1),
            (100, u32::MAX, 10),
            (0, 0, 1),
        ] {
            let h = header(total, offset, len, 0);
            assert!(
                matches!(
                    r.push(now, addr(1), &h, &vec![0; len]),
                    Err(DecodeError::BadBlock(_))
                ),
                "{total} {offset} {len}"
            );
        }
        assert_eq!(r.pending(), (0, 0));
    }

    #[test]
    fn misaligned_short_and_overlapping_blocks_are_refused() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        let total = 3 * BLOCK_DATA + 100;
        let p = payload(total);
        let crc = crc32fast::hash(&p);
        let push = |r: &mut Reassembler, off: usize, len: usize| {
            r.push(
                now,
                addr(1),
                &header(total as u32, off as u32, len, crc),
                &p[off..off + len],
            )
        };
        assert_eq!(push(&mut r, BLOCK_DATA, BLOCK_DATA), Ok(None));
        for (off, len) in [
            (100, BLOCK_DATA),    // not on a block boundary
            (BLOCK_DATA + 1, 10), // overlapping, misaligned
            (2 * BLOCK_DATA, 10), // short, and not the last block
            (0, 1),               // one-byte pieces: refused
        ] {
            assert!(
                matches!(push(&mut r, off, len), Err(DecodeError::BadBlock(_))),
                "{off} {len}"
            );
        }
        // The right blocks, the short one last, still complete the message.
        assert_eq!(push(&mut r, 3 * BLOCK_DATA, 100), Ok(None));
        assert_eq!(push(&mut r, 0, BLOCK_DATA), Ok(None));
        let whole = push(&mut r, 2 * BLOCK_DATA, BLOCK_DATA).unwrap().unwrap();
        assert_eq!(whole.as_ref(), &p[..]);
        assert_eq!(r.pending(), (0, 0));
    }

    #[test]
    fn disagreeing_blocks_are_refused() {
        let p = payload(3000);
        let b = blocks(&p);
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        push_all(&mut r, now, addr(1), &b[..1]);
        let (h, data, _) = parse_block(&b[1]).unwrap();
        let other_len = BlockHeader {
            total_len: 3001,
            ..h
        };
        assert!(matches!(
            r.push(now, addr(1), &other_len, data),
            Err(DecodeError::BadBlock(_))
        ));
        let other_crc = BlockHeader {
            crc: h.crc ^ 1,
            ..h
        };
        assert!(matches!(
            r.push(now, addr(1), &other_crc, data),
            Err(DecodeError::BadBlock(_))
        ));
        assert_eq!(r.pending(), (1, 1464));
        assert_eq!(push_all(&mut r, now, addr(1), &b[1..]), vec![p]);
    }

    #[test]
    fn one_source_cannot_take_the_whole_budget() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_pending_per_source: 2,
            ..limits()
        });
        let now = Instant::now();
        let p = payload(3000);
        let attacker = addr(9);
        for n in 0..3u8 {
            let mut id = ID;
            id[0] = n;
            let mut dgs = Vec::new();
            encode(&p, id, |b| dgs.push(b));
            let (h, d, _) = parse_block(&dgs[0]).unwrap();
            let result = r.push(now, attacker, &h, d);
            if n < 2 {
                assert_eq!(result, Ok(None));
            } else {
                assert_eq!(result, Err(DecodeError::ReassemblyFull));
            }
        }
        // Another source still gets its share.
        let others = blocks(&p);
        let (h, d, _) = parse_block(&others[0]).unwrap();
        assert_eq!(r.push(now, addr(10), &h, d), Ok(None));
    }

    #[test]
    fn pending_count_limit() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_pending: 3,
            ..limits()
        });
        let now = Instant::now();
        let p = payload(3000);
        let b = blocks(&p);
        for port in 1..=3 {
            push_all(&mut r, now, addr(port), &b[..1]);
        }
        assert_eq!(r.pending(), (3, 3 * 1464));
        let (h, data, _) = parse_block(&b[0]).unwrap();
        for _ in 0..10 {
            assert_eq!(
                r.push(now, addr(4), &h, data),
                Err(DecodeError::ReassemblyFull)
            );
        }
        assert_eq!(r.pending(), (3, 3 * 1464));
        // Messages already held still progress and complete, freeing a slot.
        assert_eq!(push_all(&mut r, now, addr(1), &b[1..]), vec![p.clone()]);
        assert_eq!(r.pending(), (2, 2 * 1464));
        assert_eq!(r.push(now, addr(4), &h, data), Ok(None));
        // Single-block messages never need a slot.
        let small = payload(10);
        assert_eq!(push_all(&mut r, now, addr(5), &blocks(&small)), vec![small]);
    }

    #[test]
    fn pending_bytes_limit() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_pending_bytes: 4000,
            ..limits()
        });
        let now = Instant::now();
        let p = payload(5000);
        let b = blocks(&p); // 1464, 1464, 1464, 608
        push_all(&mut r, now, addr(1), &b[..2]);
        assert_eq!(r.pending(), (1, 2928));
        let (h, data, _) = parse_block(&b[0]).unwrap();
        // A new message would exceed the bytes.
        assert_eq!(
            r.push(now, addr(2), &h, data),
            Err(DecodeError::ReassemblyFull)
        );
        // So would a non-completing block of a held one.
        let (h2, data2, _) = parse_block(&b[2]).unwrap();
        assert_eq!(
            r.push(now, addr(1), &h2, data2),
            Err(DecodeError::ReassemblyFull)
        );
        assert_eq!(r.pending(), (1, 2928));
        // A small block still fits.
        push_all(&mut r, now, addr(1), &b[3..]);
        assert_eq!(r.pending(), (1, 2928 + 608));
        // The completing block is accepted even though it would not fit.
        assert_eq!(push_all(&mut r, now, addr(1), &b[2..3]), vec![p]);
        assert_eq!(r.pending(), (0, 0));
    }

    #[test]
    fn zero_limits_refuse_everything_multi_block() {
        let mut r = Reassembler::new(ReassemblyLimits {
            max_pending: 0,
            ..limits()
        });
        let b = blocks(&payload(2000));
        let (h, data, _) = parse_block(&b[0]).unwrap();
        assert_eq!(
            r.push(Instant::now(), addr(1), &h, data),
            Err(DecodeError::ReassemblyFull)
        );
        let mut r = Reassembler::new(ReassemblyLimits {
            max_pending_bytes: 0,
            ..limits()
        });
        assert_eq!(
            r.push(Instant::now(), addr(1), &h, data),
            Err(DecodeError::ReassemblyFull)
        );
        assert_eq!(r.pending(), (0, 0));
    }

    #[test]
    fn expiry() {
        let timeout = Duration::from_secs(5);
        let mut r = Reassembler::new(ReassemblyLimits {
            timeout,
            ..limits()
        });
        let t0 = Instant::now();
        let b = blocks(&payload(5000));
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expire(t0), 0);
        push_all(&mut r, t0, addr(1), &b[..1]);
        assert_eq!(r.next_deadline(), Some(t0 + timeout));
        let t1 = t0 + Duration::from_secs(2);
        push_all(&mut r, t1, addr(2), &b[..1]);
        assert_eq!(r.next_deadline(), Some(t0 + timeout));
        // A later block pushes the deadline back.
        let t2 = t0 + Duration::from_secs(3);
        push_all(&mut r, t2, addr(1), &b[1..2]);
        assert_eq!(r.next_deadline(), Some(t1 + timeout));
        assert_eq!(r.pending(), (2, 3 * 1464));
        assert_eq!(r.expire(t1 + timeout - Duration::from_millis(1)), 0);
        assert_eq!(r.expire(t1 + timeout), 1);
        assert_eq!(r.pending(), (1, 2 * 1464));
        assert_eq!(r.next_deadline(), Some(t2 + timeout));
        assert_eq!(r.expire(t2 + timeout * 10), 1);
        assert_eq!(r.pending(), (0, 0));
        assert_eq!(r.next_deadline(), None);
        // The expired message's remaining blocks do not complete anything.
        push_all(&mut r, t2, addr(1), &b[2..]);
        assert_eq!(r.pending(), (1, 1464 + 608));
    }

    #[test]
    fn huge_timeout_does_not_panic() {
        let mut r = Reassembler::new(ReassemblyLimits {
            timeout: Duration::MAX,
            ..limits()
        });
        let b = blocks(&payload(2000));
        push_all(&mut r, Instant::now(), addr(1), &b[..1]);
        assert_eq!(r.next_deadline(), None);
        assert_eq!(r.expire(Instant::now()), 0);
        assert_eq!(r.pending().0, 1);
    }

    /// Blocks as node-discovery's WrapStream cuts a payload, including its
    /// empty trailing block when the length is a multiple of 1464.
    fn node_blocks(p: &[u8]) -> Vec<Vec<u8>> {
        let count = p.len().div_ceil(BLOCK_DATA);
        (0..count)
            .map(|i| {
                let len = if i + 1 == count {
                    p.len() % BLOCK_DATA
                } else {
                    BLOCK_DATA
                };
                let off = i * BLOCK_DATA;
                let h = header(p.len() as u32, off as u32, len, crc32fast::hash(p));
                let mut b = Vec::new();
                write_header(&h, &mut b);
                b.extend_from_slice(&p[off..off + len]);
                b
            })
            .collect()
    }

    #[test]
    fn node_zero_data_trailing_block() {
        for len in [1464, 2928, 4392] {
            let p = payload(len);
            let b = node_blocks(&p);
            assert_eq!(b.len(), len / BLOCK_DATA);
            assert_eq!(b.last().unwrap().len(), HEADER_LEN);
            let mut r = Reassembler::new(limits());
            let now = Instant::now();
            // In any order, and repeated: never delivers, never panics.
            for blk in b.iter().chain(b.iter().rev()) {
                let (h, data, rest) = parse_block(blk).unwrap();
                assert!(rest.is_empty());
                assert_eq!(r.push(now, addr(1), &h, data), Ok(None));
            }
            assert_eq!(r.pending(), (usize::from(len > 1464), len - 1464));
            assert_eq!(
                r.expire(now + Duration::from_secs(60)),
                usize::from(len > 1464)
            );
        }
        // Node's sizes that are not multiples are fine.
        let p = payload(4000);
        let mut r = Reassembler::new(limits());
        assert_eq!(
            push_all(&mut r, Instant::now(), addr(1), &node_blocks(&p)),
            vec![p]
        );
    }

    #[test]
    fn garbage() {
        let mut r = Reassembler::new(limits());
        let now = Instant::now();
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            b"WRAP".to_vec(),
            vec![0xff; 1500],
            b"{\"event\":\"hello\"}".to_vec(),
        ];
        let mut wrapped = b"WRAP".to_vec();
        wrapped.extend_from_slice(&[0xff; 60]);
        junk.push(wrapped);
        let mut wrapped = b"WRAP".to_vec();
        wrapped.extend_from_slice(&[0x00; 60]);
        junk.push(wrapped);
        for dg in &junk {
            if let Ok((h, data, _)) = parse_block(dg) {
                let _ = r.push(now, addr(1), &h, data);
            }
        }
        assert!(r.pending().1 <= limits().max_pending_bytes);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(dgs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 1..20)) {
            let mut r = Reassembler::new(ReassemblyLimits {
                max_message: 300, max_pending: 4, max_pending_bytes: 500, ..limits()
            });
            let now = Instant::now();
            for mut dg in dgs {
                // Often make it look like a block, to get past the magic check.
                if dg.len() >= 4 && dg[0] & 1 == 0 {
                    dg[..4].copy_from_slice(b"WRAP");
                }
                let mut rest: &[u8] = &dg;
                while let Ok((h, data, more)) = parse_block(rest) {
                    let _ = r.push(now, addr(u16::from(dg.len() as u8 & 3)), &h, data);
                    let (count, bytes) = r.pending();
                    prop_assert!(count <= 4 && bytes <= 500);
                    if more.len() == rest.len() { break; }
                    rest = more;
                }
            }
            r.expire(now + Duration::from_secs(10));
            prop_assert_eq!(r.pending(), (0, 0));
        }

        #[test]
        fn random_headers_never_panic(total in any::<u32>(), offset in any::<u32>(),
                                      crc in any::<u32>(), len in 0usize..3000, n in 1usize..5) {
            let mut r = Reassembler::new(ReassemblyLimits { max_message: 10_000, ..limits() });
            let data = vec![7u8; len];
            for i in 0..n {
                let h = BlockHeader { offset: offset.wrapping_add(i as u32 * 997), ..header(total, offset, len, crc) };
                let _ = r.push(Instant::now(), addr(1), &h, &data);
            }
        }

        #[test]
        fn round_trip_shuffled(p in proptest::collection::vec(any::<u8>(), 1..10000),
                               id in any::<[u8; 16]>(),
                               seed in any::<u64>(), dup in any::<bool>()) {
            let mut b = Vec::new();
            encode(&p, id, |blk| b.push(blk));
            prop_assert_eq!(b.len(), p.len().div_ceil(BLOCK_DATA));
            if dup {
                let extra = b[(seed % b.len() as u64) as usize].clone();
                b.push(extra);
            }
            // Fisher-Yates with a small LCG.
            let mut s = seed;
            for i in (1..b.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = ((s >> 33) % (i as u64 + 1)) as usize;
                b.swap(i, j);
            }
            let mut r = Reassembler::new(limits());
            let mut got = Vec::new();
            for blk in &b {
                let (h, data, rest) = parse_block(blk).unwrap();
                prop_assert!(rest.is_empty());
                prop_assert!(blk.len() <= BLOCK_SIZE);
                prop_assert_eq!(h.id, id);
                if let Some(m) = r.push(Instant::now(), addr(9), &h, data).unwrap() {
                    got.push(m.into_owned());
                }
            }
            // A repeated single-block message is delivered again (there is
            // no state to remember it by); a repeated block of a multi-block
            // message is ignored, or starts a new incomplete message when it
            // arrives after completion.
            let single = p.len() <= BLOCK_DATA;
            prop_assert_eq!(got.len(), if single && dup { 2 } else { 1 });
            for m in &got {
                prop_assert_eq!(m, &p);
            }
        }
    }
}
