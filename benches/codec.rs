//! Encode and decode of one typical hello in each wire mode: plain `WRAP`,
//! node-discovery's legacy cipher, and shoal's sealed datagrams.
//!
//! `cargo bench --bench codec` (see BENCHMARKS.md). Under `cargo test
//! --benches` each case runs once, as a smoke test.
//!
//! - encode: hello body -> envelope JSON -> (cipher) -> datagram, as
//!   `Protocol` builds one (framing with a fresh 16-byte id; sealing with the
//!   next counter);
//! - decode: datagram -> block / sealed header -> CRC or AEAD -> envelope ->
//!   hello body, every check the receive path makes before the peer table
//!   (the replay window is in the `core` bench), with the one-pass hello
//!   decoder the receive path uses (`shoal::wire::fast_hello`);
//! - decode_general: the general envelope decoder on the same hello, for
//!   comparison (what every hello cost before the one-pass decoder).
//! - reassembly: multi-piece messages through `framing::Reassembler` and
//!   `secure::FragmentAssembler` (pieces already parsed or opened), and a new
//!   incomplete message beside many others, then its expiry: what a flood of
//!   first blocks costs each reassembler.

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ThreadCpu;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shoal::crypto::keyring::Keyring;
use shoal::crypto::legacy::LegacyCipher;
use shoal::crypto::secure::{
    AssemblyLimits, FragmentAssembler, Opener, SealedHeader, Sealer, ALG_AES_256_GCM, OVERHEAD,
    VERSION,
};
use shoal::wire::envelope::{self, Hello, Sender};
use shoal::wire::fast_hello;
use shoal::wire::framing::{self, Reassembler, ReassemblyLimits};
use shoal::{Key, KeyId};

use common::{typical_hello, Mode, LEGACY_KEY, SECURE_KEY, WALL_MS};

/// Max datagram size in secure mode (shoal's default).
const MAX_DATAGRAM: usize = 1400;

struct Fixture {
    hello: Hello,
    sender: Sender,
    legacy: LegacyCipher,
    key: Key,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            hello: typical_hello(),
            sender: common::sender(7),
            legacy: LegacyCipher::new(LEGACY_KEY.as_bytes()),
            key: Key::from_hex(SECURE_KEY).expect("hex key"),
        }
    }

    /// One datagram in `mode` (the sealer advances its counter).
    fn encode(&self, mode: Mode, sealer: &mut Sealer, id: [u8; 16]) -> Vec<u8> {
        let json = envelope::encode("hello", &self.hello, &self.sender).expect("encodes");
        match mode {
            Mode::Plain | Mode::Legacy => {
                let payload = if mode == Mode::Legacy {
                    self.legacy.encrypt(&json)
                } else {
                    json
                };
                let mut out = Vec::new();
                framing::encode(&payload, id, |block| out = block);
                out
            }
            Mode::Secure => {
                let mut parts = sealer
                    .seal_message(&self.key, WALL_MS, &json, MAX_DATAGRAM)
                    .expect("fits");
                parts.pop().expect("one datagram")
            }
        }
    }
}

/// The receive path's decoders, with their state.
struct Decoder {
    reassembler: Reassembler,
    legacy: LegacyCipher,
    keyring: Keyring,
    opener: Opener,
    assembler: FragmentAssembler,
    from: std::net::SocketAddr,
}

impl Decoder {
    fn new(fixture: &Fixture) -> Self {
        Decoder {
            reassembler: Reassembler::new(ReassemblyLimits::default()),
            legacy: fixture.legacy.clone(),
            keyring: Keyring::new(fixture.key.clone()),
            opener: Opener::default(),
            assembler: FragmentAssembler::new(AssemblyLimits::default()),
            from: "10.0.0.7:12345".parse().expect("addr"),
        }
    }

    /// What the receive path does with the envelope: the one-pass decoder
    /// (the general one is the `hello_decode_general` group). Returns the
    /// hello's sequence number and weight, so nothing is optimised away.
    fn hello_of(json: &[u8]) -> (Option<u64>, f64) {
        let fast = fast_hello::decode(json).expect("a hello in the common shape");
        (fast.hello.seq, fast.hello.weight)
    }

    fn decode(&mut self, mode: Mode, now: Instant, datagram: &[u8]) -> (Option<u64>, f64) {
        match mode {
            Mode::Plain | Mode::Legacy => {
                let (header, data, _) = framing::parse_block(datagram).expect("block");
                let payload = self
                    .reassembler
                    .push(now, self.from, &header, data)
                    .expect("whole block")
                    .expect("one-block message");
                if mode == Mode::Legacy {
                    Self::hello_of(&self.legacy.decrypt(&payload).expect("decrypts"))
                } else {
                    Self::hello_of(&payload)
                }
            }
            Mode::Secure => {
                let header = SealedHeader::parse(datagram).expect("sealed header");
                let plain = self
                    .opener
                    .open(&self.keyring, &header, datagram)
                    .expect("authentic");
                let message = self
                    .assembler
                    .push(now, &header, plain)
                    .expect("fragment")
                    .expect("one-fragment message");
                Self::hello_of(&message)
            }
        }
    }
}

const MODES: [Mode; 3] = [Mode::Plain, Mode::Legacy, Mode::Secure];

fn encode(c: &mut Criterion<ThreadCpu>) {
    let fixture = Fixture::new();
    let mut group = c.benchmark_group("hello_encode");
    group.throughput(Throughput::Elements(1));
    for mode in MODES {
        let mut sealer = Sealer::new([0x11; 16]);
        let mut id = 0u128;
        let bytes = fixture.encode(mode, &mut sealer, [0; 16]).len();
        group.bench_function(format!("{} ({bytes} B)", mode.name()), |b| {
            b.iter(|| {
                id += 1;
                black_box(fixture.encode(mode, &mut sealer, id.to_le_bytes()))
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion<ThreadCpu>) {
    let fixture = Fixture::new();
    let mut group = c.benchmark_group("hello_decode");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    for mode in MODES {
        let datagram = fixture.encode(mode, &mut Sealer::new([0x22; 16]), [9; 16]);
        let mut decoder = Decoder::new(&fixture);
        let expected = (fixture.hello.seq, fixture.hello.weight);
        assert_eq!(decoder.decode(mode, now, &datagram), expected);
        group.bench_function(format!("{} ({} B)", mode.name(), datagram.len()), |b| {
            b.iter(|| black_box(decoder.decode(mode, now, black_box(&datagram))))
        });
    }
    group.finish();
}

/// The general decoder (envelope, then the hello body into an owned
/// `Hello`), which the receive path takes for anything but the common shape.
fn decode_general(c: &mut Criterion<ThreadCpu>) {
    let fixture = Fixture::new();
    let json = envelope::encode("hello", &fixture.hello, &fixture.sender).expect("encodes");
    let mut group = c.benchmark_group("hello_decode_general");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("envelope ({} B)", json.len()), |b| {
        b.iter(|| {
            let env = envelope::decode(black_box(&json)).expect("envelope");
            black_box(envelope::decode_hello(env.data.expect("data")).expect("hello"))
        })
    });
    group.finish();
}

/// Reassembly alone: the pieces are parsed (WRAP) or opened (sealed) once,
/// outside the loop.
fn reassembly(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("reassembly");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let from: SocketAddr = "10.0.0.7:12345".parse().expect("addr");

    // A 4000-byte WRAP message in 3 blocks, last block first.
    let payload: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let mut blocks = Vec::new();
    framing::encode(&payload, [3; 16], |b| blocks.push(b));
    blocks.reverse();
    let mut r = Reassembler::new(ReassemblyLimits::default());
    group.bench_function("wrap 3 blocks (4000 B)", |b| {
        b.iter(|| {
            let mut whole = 0;
            for block in &blocks {
                let (header, data, _) = framing::parse_block(block).expect("block");
                if let Some(p) = r.push(now, from, &header, data).expect("accepted") {
                    whole = p.len();
                }
            }
            black_box(whole)
        })
    });

    // The same message as 3 sealed fragments, already opened.
    let header = |index: u16, count: u16, sender: [u8; 16], counter: u64| SealedHeader {
        version: VERSION,
        algorithm: ALG_AES_256_GCM,
        frag_index: index,
        frag_count: count,
        key_id: KeyId([0; 4]),
        sender,
        counter,
        timestamp_ms: WALL_MS,
    };
    let fragments: Vec<(SealedHeader, Vec<u8>)> = payload
        .chunks(MAX_DATAGRAM - OVERHEAD)
        .enumerate()
        .map(|(i, piece)| (header(i as u16, 3, [5; 16], 10 + i as u64), piece.to_vec()))
        .rev()
        .collect();
    let mut a = FragmentAssembler::new(AssemblyLimits::default());
    group.bench_function("sealed 3 fragments (4000 B)", |b| {
        b.iter(|| {
            let mut whole = 0;
            for (h, plain) in &fragments {
                if let Some(m) = a.push(now, h, plain.clone()).expect("accepted") {
                    whole = m.len();
                }
            }
            black_box(whole)
        })
    });

    // A reassembler holding `held` incomplete messages (one block each, one
    // per source, due late); each iteration adds the first block of one more
    // message, due first, then expires it.
    let held = ReassemblyLimits::default().max_pending - 1;
    let first_block = |id: [u8; 16]| {
        let mut out = None;
        framing::encode(&payload, id, |b| {
            out.get_or_insert(b);
        });
        out.expect("a block")
    };
    let source = |n: usize| SocketAddr::from(([10, 1, (n >> 8) as u8, n as u8], 12345));
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let late = now + Duration::from_secs(1);
    for n in 0..held {
        let block = first_block([1; 16]);
        let (h, data, _) = framing::parse_block(&block).expect("block");
        assert_eq!(r.push(late, source(n), &h, data), Ok(None));
    }
    let block = first_block([2; 16]);
    let timeout = ReassemblyLimits::default().timeout;
    group.bench_function(format!("wrap new + expire ({held} pending)"), |b| {
        b.iter(|| {
            let (h, data, _) = framing::parse_block(&block).expect("block");
            assert_eq!(r.push(now, from, &h, data), Ok(None));
            black_box(r.next_deadline());
            black_box(r.expire(now + timeout))
        })
    });
    assert_eq!(r.pending().0, held);

    let held = AssemblyLimits::default().max_pending - 1;
    let mut a = FragmentAssembler::new(AssemblyLimits::default());
    for n in 0..held {
        let mut sender = [0; 16];
        sender[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let h = header(0, 2, sender, 1);
        assert_eq!(a.push(late, &h, vec![0; 100]), Ok(None));
    }
    let h = header(0, 2, [0xee; 16], 1);
    let timeout = AssemblyLimits::default().timeout;
    group.bench_function(format!("sealed new + expire ({held} pending)"), |b| {
        b.iter(|| {
            assert_eq!(a.push(now, &h, vec![0; 100]), Ok(None));
            black_box(a.next_deadline());
            black_box(a.expire(now + timeout))
        })
    });
    assert_eq!(a.pending().0, held);
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = encode, decode, decode_general, reassembly
}
criterion_main!(benches);
