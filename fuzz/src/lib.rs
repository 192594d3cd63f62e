//! The drivers behind shoal's fuzz targets: one function per decoder, each
//! taking arbitrary bytes, never panicking on any input, and asserting the
//! decoder's invariants (round trips, limits). A panic is a finding.
//!
//! This file is compiled twice: as the library of the cargo-fuzz crate
//! (`fuzz/fuzz_targets/*.rs` call it under libFuzzer), and as a module of
//! `tests/fuzz_corpus.rs`, which replays `fuzz/corpus/<target>/*` through
//! the same functions on stable Rust. So it uses only `shoal`, `serde_json`,
//! `crc32fast` and `std`.
//!
//! Targets whose input is a *sequence* of datagrams (`reassembly`, `sealed`,
//! `protocol_*`) read it as [`records`]: `[op: u8][len: u16 BE][len bytes]`
//! repeated, where `op` says where a datagram comes from and when (see
//! [`Record`]). [`encode_records`] writes that format, for seeds.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal::crypto::keyring::Keyring;
use shoal::crypto::legacy::LegacyCipher;
use shoal::crypto::replay::{ReplayConfig, ReplayGuard};
use shoal::crypto::secure::{
    self, AssemblyLimits, FragmentAssembler, Opener, SealedHeader, SecureError,
};
use shoal::protocol::Protocol;
use shoal::wire::envelope::{self, Sender};
use shoal::wire::framing::{self, Reassembler, ReassemblyLimits};
use shoal::Key;
use shoal::{Config, Encryption, Event};

/// The fuzz targets, as named in `fuzz/Cargo.toml` and `fuzz/corpus/`.
pub const TARGETS: [&str; 9] = [
    "envelope",
    "framing",
    "reassembly",
    "secure_header",
    "sealed",
    "legacy",
    "protocol_plain",
    "protocol_keyed",
    "protocol_legacy",
];

/// Runs `target`'s driver on `data` (for corpus replay).
///
/// # Panics
///
/// On an unknown target name, and wherever the driver finds a bug.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "envelope" => envelope(data),
        "framing" => framing(data),
        "reassembly" => reassembly(data),
        "secure_header" => secure_header(data),
        "sealed" => sealed(data),
        "legacy" => legacy(data),
        "protocol_plain" => protocol(Mode::Plain, data),
        "protocol_keyed" => protocol(Mode::Keyed, data),
        "protocol_legacy" => protocol(Mode::Legacy, data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// The secure-mode key of the `sealed` and `protocol_keyed` targets (the
/// bytes of [`KEY_HEX`]); seeds are sealed under it.
pub const KEY: [u8; 32] = [0x5a; 32];
/// [`KEY`] as hex, the text [`ConfigBuilder::secret_key`](shoal::ConfigBuilder::secret_key) reads.
pub const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
/// A second key in the `sealed` target's keyring.
pub const SECOND_KEY: [u8; 32] = [0xa5; 32];
/// node-discovery's key string of `legacy`, `protocol_legacy` and the
/// encrypted vectors in `tests/vectors/node_discovery.json`.
pub const LEGACY_KEY: &str = "shoal-test-key";
/// The wall clock (ms since the Unix epoch) at the start of every run; seeds
/// are sealed with timestamps near it.
pub const WALL_MS: u64 = 1_700_000_000_000;
/// Channels the `protocol_*` targets join (the vectors use `news` and `bulk`).
pub const CHANNELS: [&str; 3] = ["chat", "news", "bulk"];
/// Peer-table size of the `protocol_*` targets.
pub const MAX_NODES: usize = 8;

/// Limits of the `reassembly` target and the `protocol_*` targets: small, so
/// the fuzzer reaches them.
pub const REASSEMBLY: ReassemblyLimits = ReassemblyLimits {
    max_message: 16 * 1024,
    max_pending: 4,
    max_pending_bytes: 8 * 1024,
    max_pending_per_source: 2,
    timeout: Duration::from_secs(5),
};

/// Limits of the `sealed` target.
pub const ASSEMBLY: AssemblyLimits = AssemblyLimits {
    max_message: 16 * 1024,
    max_pending: 4,
    max_pending_bytes: 8 * 1024,
    max_pending_per_sender: 2,
    timeout: Duration::from_secs(5),
};

/// One datagram of a sequence, and what happens around it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// - bits 0-1: source address, `10.250.0.(1 + bits):12345`;
    /// - bit 2: run timers after the datagram (`expire`, `handle_timeout`);
    /// - bit 3: (`sealed` only) also push the body into the assembler as if
    ///   it had authenticated, so the fuzzer reaches the assembler without
    ///   forging a tag;
    /// - bits 4-7: advance the clock by that many × 250 ms before it.
    pub op: u8,
    /// The datagram.
    pub bytes: &'a [u8],
}

impl Record<'_> {
    /// The datagram's source address.
    pub fn from(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 250, 0, 1 + (self.op & 3)), 12345))
    }

    /// Whether timers run after it.
    pub fn timers(&self) -> bool {
        self.op & 4 != 0
    }

    /// Whether (`sealed`) it is also pushed into the assembler unopened.
    pub fn as_authenticated(&self) -> bool {
        self.op & 8 != 0
    }

    /// How far the clock moves before it.
    pub fn advance(&self) -> Duration {
        Duration::from_millis(250 * u64::from(self.op >> 4))
    }
}

/// Reads `data` as records; a length beyond the end takes what is left.
pub fn records(mut data: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&op, rest) = data.split_first()?;
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (bytes, rest) = rest.split_at(len.min(rest.len()));
        data = rest;
        Some(Record { op, bytes })
    })
}

/// Writes `(op, datagram)` pairs in the [`records`] format (datagrams
/// longer than 65535 bytes are cut).
pub fn encode_records<'a>(items: impl IntoIterator<Item = (u8, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, bytes) in items {
        let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
        out.push(op);
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// JSON equality that allows floats to differ in the last bits: serde_json
/// parses floats on a best-effort basis (no `float_roundtrip` feature).
pub fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x == y {
                return true;
            }
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

/// `wire::envelope::decode`, then `decode_hello` (or the channel data as
/// JSON); whatever decodes must encode again and decode to the same thing.
/// Whatever the one-pass hello decoder accepts, the general decoder accepts
/// with the same meaning.
fn fast_agrees(data: &[u8]) {
    let Some(fast) = shoal::wire::fast_hello::decode(data) else {
        return;
    };
    let env = envelope::decode(data).expect("the general path takes a fast-path hello");
    assert_eq!(&*env.event, "hello");
    assert_eq!(
        (&*env.pid, &*env.iid, &*env.host_name),
        (fast.pid, fast.iid, fast.host_name)
    );
    let slow = envelope::decode_hello(env.data.expect("data")).expect("a hello");
    let f = &fast.hello;
    assert_eq!(slow.weight.to_bits(), f.weight.to_bits(), "weight");
    assert_eq!(
        (slow.is_master, slow.is_master_eligible),
        (f.is_master, f.is_master_eligible)
    );
    assert_eq!(slow.address, f.address);
    let info = f
        .info
        .map(|raw| serde_json::from_str::<Value>(raw.get()).expect("raw info parses"));
    assert_eq!(slow.info, info, "info");
    assert_eq!(
        (slow.interval, slow.seq, slow.epoch),
        (f.interval, f.seq, f.epoch)
    );
    assert_eq!(slow.epoch_master.as_deref(), f.epoch_master.as_deref());
}

pub fn envelope(data: &[u8]) {
    fast_agrees(data);
    let Ok(env) = envelope::decode(data) else {
        return;
    };
    let sender = Sender {
        pid: env.pid.to_string(),
        iid: env.iid.to_string(),
        host_name: env.host_name.to_string(),
    };
    let Some(raw) = env.data else {
        return;
    };
    let (bytes, hello) = if let Ok(hello) = envelope::decode_hello(raw) {
        assert!(hello.weight.is_finite(), "non-finite weight accepted");
        let bytes = envelope::encode(&env.event, &hello, &sender).expect("a hello encodes");
        (bytes, Some(hello))
    } else if let Ok(value) = serde_json::from_str::<Value>(raw.get()) {
        let bytes = envelope::encode(&env.event, &value, &sender).expect("a value encodes");
        (bytes, None)
    } else {
        return;
    };
    let again = envelope::decode(&bytes).expect("a re-encoded envelope decodes");
    assert_eq!(again.event, env.event);
    assert_eq!(again.pid, env.pid);
    assert_eq!(again.iid, env.iid);
    assert_eq!(again.host_name, env.host_name);
    let raw_again = again.data.expect("data survives");
    match hello {
        Some(hello) => {
            let h = envelope::decode_hello(raw_again).expect("a re-encoded hello decodes");
            assert_eq!(
                (
                    h.is_master,
                    h.is_master_eligible,
                    &h.address,
                    h.interval,
                    h.seq
                ),
                (
                    hello.is_master,
                    hello.is_master_eligible,
                    &hello.address,
                    hello.interval,
                    hello.seq
                )
            );
            assert_eq!(
                (h.epoch, &h.epoch_master),
                (hello.epoch, &hello.epoch_master)
            );
            assert!(json_close(
                &Value::from(h.weight),
                &Value::from(hello.weight)
            ));
            match (&h.info, &hello.info) {
                (Some(a), Some(b)) => assert!(json_close(a, b), "{a} != {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
        None => {
            let before: Value = serde_json::from_str(raw.get()).expect("parsed before");
            let after: Value = serde_json::from_str(raw_again.get()).expect("re-encoded parses");
            assert!(json_close(&before, &after), "{before} != {after}");
        }
    }
}

/// `wire::framing::parse_block` over every block of a datagram, checking
/// what it returns against the bytes; then `data` as a payload, framed and
/// reassembled.
pub fn framing(data: &[u8]) {
    let mut rest = data;
    while let Ok((h, body, tail)) = framing::parse_block(rest) {
        assert_eq!(&rest[..4], b"WRAP");
        assert_eq!(body.len() + framing::HEADER_LEN, h.block_len as usize);
        assert_eq!(framing::HEADER_LEN + body.len() + tail.len(), rest.len());
        assert_eq!(&rest[4..20], &h.id);
        assert_eq!(
            &rest[20..36],
            [h.crc, h.total_len, h.block_len, h.offset]
                .map(u32::to_be_bytes)
                .concat()
        );
        if tail.is_empty() {
            break;
        }
        rest = tail;
    }

    let mut blocks = Vec::new();
    framing::encode(data, [7; 16], |b| blocks.push(b));
    assert_eq!(
        blocks.len(),
        data.len().div_ceil(framing::BLOCK_DATA).max(1)
    );
    let mut r = Reassembler::new(ReassemblyLimits {
        max_message: data.len().max(1),
        ..ReassemblyLimits::default()
    });
    let from = SocketAddr::from(([10, 250, 0, 1], 12345));
    let now = Instant::now();
    let mut got = None;
    for block in blocks.iter().rev() {
        assert!(block.len() <= framing::BLOCK_SIZE);
        let (h, body, tail) = framing::parse_block(block).expect("our block parses");
        assert!(tail.is_empty());
        if let Some(whole) = r.push(now, from, &h, body).expect("our block is accepted") {
            assert!(got.is_none(), "delivered twice");
            got = Some(whole.into_owned());
        }
    }
    assert_eq!(got.as_deref(), Some(data));
    assert_eq!(r.pending(), (0, 0));
}

/// A sequence of datagrams, each cut into blocks by `parse_block`, into one
/// `wire::framing::Reassembler` with small limits ([`REASSEMBLY`]): what it
/// delivers has the declared length and checksum, what it holds stays within
/// the limits, and everything expires.
pub fn reassembly(data: &[u8]) {
    let limits = REASSEMBLY;
    let mut r = Reassembler::new(limits);
    let mut now = Instant::now();
    for record in records(data) {
        now += record.advance();
        let mut rest = record.bytes;
        while let Ok((h, body, tail)) = framing::parse_block(rest) {
            if let Ok(Some(whole)) = r.push(now, record.from(), &h, body) {
                assert_eq!(whole.len(), h.total_len as usize);
                assert_eq!(crc32fast::hash(&whole), h.crc);
                assert!(whole.len() <= limits.max_message);
            }
            let (count, bytes) = r.pending();
            assert!(count <= limits.max_pending, "{count} pending");
            assert!(bytes <= limits.max_pending_bytes, "{bytes} bytes pending");
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
        if record.timers() {
            r.expire(now);
        }
    }
    let held = r.pending().0;
    assert_eq!(r.expire(now + limits.timeout), held);
    assert_eq!(r.pending(), (0, 0));
    assert_eq!(r.next_deadline(), None);
}

/// `crypto::secure::SealedHeader::parse`: the checks come in the documented
/// order, and a parsed header encodes back to the same bytes.
pub fn secure_header(data: &[u8]) {
    match SealedHeader::parse(data) {
        Ok(h) => {
            assert!(data.len() >= secure::OVERHEAD);
            assert!(secure::is_sealed(data));
            assert_eq!(&h.encode()[..], &data[..secure::HEADER_LEN]);
            assert!(h.frag_count >= 1 && h.frag_index < h.frag_count);
            assert_eq!(
                h.first_counter(),
                h.counter.checked_sub(u64::from(h.frag_index))
            );
        }
        Err(SecureError::TooShort) => assert!(data.len() < secure::OVERHEAD),
        Err(SecureError::NotSecure) => assert!(!secure::is_sealed(data)),
        Err(SecureError::UnknownVersion(v)) => assert_eq!(v, data[4]),
        Err(SecureError::UnknownAlgorithm(a)) => assert_eq!(a, data[5]),
        Err(SecureError::Malformed(_)) => {}
        Err(other) => panic!("parse returned {other:?}"),
    }
}

/// A sequence of datagrams through secure mode's receive path with a fixed
/// keyring ([`KEY`], [`SECOND_KEY`]): parse, key lookup, replay precheck,
/// `Opener::open`, replay accept, `FragmentAssembler::push` with small limits
/// ([`ASSEMBLY`]). Records with [`Record::as_authenticated`] also push their
/// body into a second assembler unopened. Checks the limits, that only
/// authentic senders are cached, and that everything expires.
pub fn sealed(data: &[u8]) {
    let mut keyring = Keyring::new(Key::from_bytes(KEY));
    keyring
        .install(Key::from_bytes(SECOND_KEY))
        .expect("a second key");
    let mut opener = Opener::new(4);
    let mut guard = ReplayGuard::new(ReplayConfig {
        max_senders: 4,
        ..ReplayConfig::default()
    });
    let mut assembler = FragmentAssembler::new(ASSEMBLY);
    let mut raw_assembler = FragmentAssembler::new(ASSEMBLY);
    let start = Instant::now();
    let mut now = start;
    let mut authentic = 0usize;
    for record in records(data) {
        now += record.advance();
        let now_ms = WALL_MS + now.duration_since(start).as_millis() as u64;
        let datagram = record.bytes;
        let mut receive = || -> Result<Option<Vec<u8>>, SecureError> {
            let h = SealedHeader::parse(datagram)?;
            if keyring.get(h.key_id).is_none() {
                return Err(SecureError::UnknownKey(h.key_id));
            }
            guard.precheck(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
            let plain = opener.open(&keyring, &h, datagram)?;
            assert_eq!(plain.len() + secure::OVERHEAD, datagram.len());
            authentic += 1;
            guard.accept(&h.sender, h.counter, h.timestamp_ms, now_ms)?;
            assembler.push(now, &h, plain)
        };
        if let Ok(Some(message)) = receive() {
            assert!(message.len() <= ASSEMBLY.max_message);
        }
        if record.as_authenticated() {
            if let Ok(h) = SealedHeader::parse(datagram) {
                let body = datagram[secure::HEADER_LEN..].to_vec();
                if let Ok(Some(message)) = raw_assembler.push(now, &h, body) {
                    assert!(message.len() <= ASSEMBLY.max_message);
                }
            }
        }
        for a in [&assembler, &raw_assembler] {
            let (count, bytes) = a.pending();
            assert!(count <= ASSEMBLY.max_pending, "{count} pending");
            assert!(bytes <= ASSEMBLY.max_pending_bytes, "{bytes} bytes pending");
        }
        assert!(opener.cached() <= 4 && opener.cached() <= authentic);
        assert!(guard.len() <= 4);
        if record.timers() {
            assembler.expire(now);
            raw_assembler.expire(now);
            guard.expire(now_ms);
        }
    }
    for mut a in [assembler, raw_assembler] {
        let held = a.pending().0;
        assert_eq!(a.expire(now + ASSEMBLY.timeout), held);
        assert_eq!(a.pending(), (0, 0));
    }
}

/// `crypto::legacy::LegacyCipher::decrypt` under [`LEGACY_KEY`]: what
/// decrypts encrypts back to the same bytes (fixed IV, strict padding), and
/// `data` as plaintext round-trips.
pub fn legacy(data: &[u8]) {
    let cipher = LegacyCipher::new(LEGACY_KEY.as_bytes());
    if let Ok(plain) = cipher.decrypt(data) {
        assert!(plain.len() < data.len());
        assert_eq!(cipher.encrypt(&plain), data);
    }
    let sealed = cipher.encrypt(data);
    assert_eq!(sealed.len(), (data.len() / 16 + 1) * 16);
    assert_eq!(cipher.decrypt(&sealed).as_deref(), Ok(data));
}

/// How the `protocol_*` targets' node protects packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No key: plaintext node-discovery packets.
    Plain,
    /// Secure mode with [`KEY_HEX`] (the default with a key).
    Keyed,
    /// node-discovery's cipher with [`LEGACY_KEY`].
    Legacy,
}

/// The configuration of the `protocol_*` targets' node.
pub fn protocol_config(mode: Mode) -> Config {
    static CONFIGS: [OnceLock<Config>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    CONFIGS[mode as usize]
        .get_or_init(|| build_config(mode))
        .clone()
}

fn build_config(mode: Mode) -> Config {
    let builder = Config::builder()
        .weight(0.5)
        .max_nodes(MAX_NODES)
        .max_message_size(REASSEMBLY.max_message)
        .reassembly_limits(REASSEMBLY.max_pending, REASSEMBLY.max_pending_bytes);
    match mode {
        Mode::Plain => builder,
        Mode::Keyed => builder.secret_key(KEY_HEX),
        Mode::Legacy => builder
            .legacy_key(LEGACY_KEY)
            .encryption(Encryption::LegacyNodeDiscovery),
    }
    .build()
    .expect("a valid fuzz config")
}

/// The fuzzed node's own sender (seeds use other ids).
pub fn protocol_sender() -> Sender {
    Sender {
        pid: "f".repeat(32),
        iid: "e".repeat(32),
        host_name: "fuzz".into(),
    }
}

/// A sequence of datagrams into `protocol::Protocol::handle_datagram` of a
/// node in `mode`, driven like the tokio driver drives it (timers when due,
/// transmits and events drained). Checks the counters, the peer-table limit,
/// that messages arrive only on joined channels, that a secure node never
/// accepts a message from a datagram that is not sealed, and that every
/// peer expires.
pub fn protocol(mode: Mode, data: &[u8]) {
    let config = protocol_config(mode);
    let start = Instant::now();
    let mut node = Protocol::new(&config, protocol_sender(), start, 1);
    node.set_wall_clock(start, WALL_MS);
    for channel in CHANNELS {
        node.join(channel).expect("not reserved");
    }
    let mut now = start;
    let mut fed = 0u64;
    let drain = |node: &mut Protocol| {
        while node.poll_transmit().is_some() {}
        while let Some(event) = node.poll_event() {
            if let Event::Message(m) = event {
                assert!(CHANNELS.contains(&m.channel.as_str()), "{}", m.channel);
            }
        }
    };
    node.handle_timeout(now);
    drain(&mut node);
    for record in records(data) {
        now += record.advance();
        let before = node.stats().messages_in;
        node.handle_datagram(now, record.from(), record.bytes);
        fed += 1;
        if mode == Mode::Keyed && !secure::is_sealed(record.bytes) {
            assert_eq!(
                node.stats().messages_in,
                before,
                "secure mode accepted a plaintext datagram"
            );
        }
        if record.timers() || node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        drain(&mut node);
        assert!(node.peers().count() <= MAX_NODES);
    }
    let stats = node.stats();
    assert_eq!(stats.packets_in, fed);
    // The longest a peer can live: 60 s (the largest interval it may
    // announce) times (missed_hellos + 1.5).
    now += Duration::from_secs(400);
    node.handle_timeout(now);
    drain(&mut node);
    assert_eq!(node.peers().count(), 0, "a peer outlived every deadline");
}
