//! The fuzzing corpus, replayed on stable Rust, and property tests of the
//! decoders and of `Protocol::handle_datagram` under hostile input.
//!
//! * [`corpus_replays_cleanly`]: every file under `fuzz/corpus/<target>/`
//!   goes through the same driver the fuzz target runs (`fuzz/src/lib.rs`,
//!   included here as a module), so CI replays what the fuzzer found without
//!   libFuzzer or a nightly toolchain.
//! * Property tests: envelope round trips of arbitrary JSON; whole messages
//!   through two `Protocol`s (sealed, plain and legacy) in any order, with
//!   duplicates and replays; arbitrary datagrams into `handle_datagram` never
//!   panic and never hold more memory than the limits allow, measured with a
//!   counting allocator.
//! * [`regenerate_seed_corpus`] (ignored) rewrites the `seed-*` files of the
//!   corpus from the node-discovery vectors and packets sealed here.

#[path = "../fuzz/src/lib.rs"]
mod drivers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drivers::{encode_records, json_close, Mode};
use proptest::prelude::*;
use serde_json::{json, Value};
use shoal::crypto::secure::{self, Sealer};
use shoal::protocol::Protocol;
use shoal::wire::envelope::{self, Hello, Sender};
use shoal::wire::framing;
use shoal::Key;
use shoal::{Config, Encryption, Event};

/// Counts the heap bytes each thread holds, so a test can measure what a
/// `Protocol` retains while it alone runs on that thread.
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        let _ = LIVE.try_with(|live| live.set(live.get() + n));
    }

    // SAFETY: forwards to the system allocator; the counters are plain
    // thread-local cells that never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc(layout);
            if !p.is_null() {
                add(layout.size() as i64);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc_zeroed(layout);
            if !p.is_null() {
                add(layout.size() as i64);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            add(-(layout.size() as i64));
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = System.realloc(ptr, layout, new_size);
            if !p.is_null() {
                add(new_size as i64 - layout.size() as i64);
            }
            p
        }
    }

    /// Bytes this thread allocated and has not freed.
    pub fn live() -> i64 {
        LIVE.with(Cell::get)
    }
}

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 250, 0, i], 12345))
}

// ----- corpus replay ----------------------------------------------------

#[test]
fn corpus_replays_cleanly() {
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut total = 0;
    for target in drivers::TARGETS {
        let dir = corpus_dir().join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(
            files.iter().any(|f| f
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))),
            "{target}: no seed files in {}",
            dir.display()
        );
        for file in &files {
            let data = std::fs::read(file).expect("read corpus file");
            total += 1;
            if let Err(panic) = std::panic::catch_unwind(|| drivers::run(target, &data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{target}/{}: {message}", file.display()));
            }
        }
    }
    eprintln!("replayed {total} corpus files in {:?}", started.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The session seeds are real traffic that each mode's node accepts (so the
/// fuzzer starts from deep paths, and a format change that would leave the
/// seeds stale shows here): regenerate them if this fails after one.
#[test]
fn session_seeds_are_accepted() {
    for (mode, target) in [
        (Mode::Plain, "protocol_plain"),
        (Mode::Keyed, "protocol_keyed"),
        (Mode::Legacy, "protocol_legacy"),
    ] {
        let path = corpus_dir().join(target).join("seed-node-session");
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t0 = Instant::now();
        let mut node = Protocol::new(
            &drivers::protocol_config(mode),
            drivers::protocol_sender(),
            t0,
            1,
        );
        node.set_wall_clock(t0, drivers::WALL_MS);
        node.join("chat").unwrap();
        node.join("bulk").unwrap();
        for record in drivers::records(&data) {
            node.handle_datagram(t0, record.from(), record.bytes);
        }
        let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
        let added = events
            .iter()
            .filter(|e| matches!(e, Event::Added(_)))
            .count();
        let messages = events
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        assert_eq!(
            (added, messages),
            (1, 2),
            "{target}: {events:?}\n{:?}",
            node.stats()
        );
        assert_eq!(
            node.peers().count(),
            0,
            "{target}: the goodbye removes the peer"
        );
    }
}

// ----- envelope round trips ---------------------------------------------

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any JSON value as channel data, any event and sender strings: decode
    /// gives back what was encoded.
    #[test]
    fn envelope_round_trips_arbitrary_json(value in json_value(), event in ".{0,16}",
                                           pid in ".{0,8}", iid in ".{0,40}", host in ".{0,16}") {
        let sender = Sender { pid, iid, host_name: host };
        let bytes = envelope::encode(&event, &value, &sender).unwrap();
        let env = envelope::decode(&bytes).unwrap();
        prop_assert_eq!(&*env.event, &*event);
        prop_assert_eq!(&*env.pid, &*sender.pid);
        prop_assert_eq!(&*env.iid, &*sender.iid);
        prop_assert_eq!(&*env.host_name, &*sender.host_name);
        let data: Value = serde_json::from_str(env.data.unwrap().get()).unwrap();
        prop_assert!(json_close(&data, &value), "{} != {}", data, value);
    }

    /// Any hello (any finite weight, any advertised value, shoal's optional
    /// fields present or not) decodes to itself.
    #[test]
    fn hello_round_trips(is_master in any::<bool>(), eligible in any::<bool>(), weight in finite(),
                         address in ".{0,16}", info in proptest::option::of(json_value()),
                         interval in any::<Option<u64>>(), seq in any::<Option<u64>>(),
                         epoch in any::<Option<u64>>(), epoch_master in proptest::option::of("[0-9a-f]{0,40}"),
                         reg in any::<Option<u64>>()) {
        let hello = Hello {
            is_master, is_master_eligible: eligible, weight, address, info,
            interval, seq, epoch, epoch_master, reg, peers: None,
        };
        let sender = drivers::protocol_sender();
        let bytes = envelope::encode("hello", &hello, &sender).unwrap();
        let env = envelope::decode(&bytes).unwrap();
        let got = envelope::decode_hello(env.data.unwrap()).unwrap();
        prop_assert!(json_close(&json!(got.weight), &json!(hello.weight)));
        match (&got.info, &hello.info) {
            // `"info": null` reads back as no info.
            (None, Some(Value::Null)) => {}
            (Some(a), Some(b)) => prop_assert!(json_close(a, b), "{} != {}", a, b),
            (a, b) => prop_assert_eq!(a, b),
        }
        let strip = |h: &Hello| Hello { weight: 0.0, info: None, ..h.clone() };
        prop_assert_eq!(strip(&got), strip(&hello));
    }
}

// ----- whole messages through two Protocols -------------------------------

fn node_sender(c: char) -> Sender {
    Sender {
        pid: c.to_string().repeat(32),
        iid: c.to_string().repeat(32),
        host_name: format!("host-{c}"),
    }
}

fn config(mode: Mode, max_datagram: usize) -> Config {
    let builder = Config::builder()
        .weight(0.5)
        .max_datagram_size(max_datagram);
    match mode {
        Mode::Plain => builder,
        Mode::Keyed => builder.secret_key(drivers::KEY_HEX),
        Mode::Legacy => builder
            .legacy_key(drivers::LEGACY_KEY)
            .encryption(Encryption::LegacyNodeDiscovery),
    }
    .build()
    .unwrap()
}

/// Shuffles with a small LCG (proptest shrinks the seed).
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = ((seed >> 33) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn messages(node: &mut Protocol) -> Vec<shoal::ChannelMessage> {
    std::iter::from_fn(|| node.poll_event())
        .filter_map(|e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Plain), Just(Mode::Keyed), Just(Mode::Legacy)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// `send` on one node, `handle_datagram` on another, datagrams in any
    /// order: the message arrives once, intact. Sealed: duplicated datagrams
    /// and a full replay afterwards deliver nothing more, and every datagram
    /// fits the configured size.
    #[test]
    fn messages_survive_any_order(mode in mode(), value in json_value(), pad in 0usize..20_000,
                                  max_datagram in secure::OVERHEAD + 64..4000usize,
                                  seed in any::<u64>(), dup in any::<bool>()) {
        let t0 = Instant::now();
        let cfg = config(mode, max_datagram);
        let mut a = Protocol::new(&cfg, node_sender('a'), t0, 1);
        let mut b = Protocol::new(&cfg, node_sender('b'), t0, 2);
        a.set_wall_clock(t0, drivers::WALL_MS);
        b.set_wall_clock(t0, drivers::WALL_MS);
        b.join("chat").unwrap();
        let data = json!({"value": value, "pad": "p".repeat(pad)});
        a.send(t0, "chat", &data).unwrap();
        let mut datagrams: Vec<Vec<u8>> =
            std::iter::from_fn(|| a.poll_transmit()).map(|t| t.payload).collect();
        prop_assert!(!datagrams.is_empty());
        let sealed = mode == Mode::Keyed;
        for d in &datagrams {
            prop_assert_eq!(secure::is_sealed(d), sealed);
            let limit = if sealed { max_datagram } else { framing::BLOCK_SIZE };
            prop_assert!(d.len() <= limit, "{} > {}", d.len(), limit);
        }
        // Plaintext has no replay protection: a repeated single-block
        // message is delivered again, so duplicate only sealed traffic.
        if dup && sealed {
            let extra = datagrams[(seed % datagrams.len() as u64) as usize].clone();
            datagrams.push(extra);
        }
        shuffle(&mut datagrams, seed);
        for d in &datagrams {
            b.handle_datagram(t0 + Duration::from_millis(1), addr(1), d);
        }
        let got = messages(&mut b);
        prop_assert_eq!(got.len(), 1, "{:?}", b.stats());
        prop_assert_eq!(&got[0].channel, "chat");
        prop_assert_eq!(got[0].from.as_str(), node_sender('a').iid);
        prop_assert!(json_close(&got[0].data, &data));
        if sealed {
            let replays_before = b.stats().dropped.replay;
            for d in &datagrams {
                b.handle_datagram(t0 + Duration::from_secs(1), addr(7), d);
            }
            prop_assert!(messages(&mut b).is_empty());
            prop_assert_eq!(
                b.stats().dropped.replay - replays_before,
                datagrams.len() as u64
            );
        }
        prop_assert_eq!(b.stats().messages_in, 1);
    }
}

// ----- hostile datagrams: no panic, bounded memory ------------------------

/// Heap a `Protocol` in the `protocol_*` targets' configuration may retain,
/// beyond what it holds when it starts, whatever it is fed (with events
/// drained as the driver drains them). Derived from the limits, not
/// measured:
///
/// - WRAP reassembly (plain and legacy modes) counts only block data
///   against `max_pending_bytes`, so `max_pending_bytes` one-byte blocks
///   also cost a map entry and an allocation each: [`PIECE_OVERHEAD`] per
///   byte of budget (see `wrap_reassembly_overhead_per_piece`);
/// - sealed reassembly charges each fragment its length plus
///   `secure::FRAGMENT_COST` against the same budget;
/// - the peer table: [`drivers::MAX_NODES`] peers advertising at most a
///   message's worth each (twice: raw and parsed);
/// - the opener's scratch buffer: one datagram;
/// - containers' growth and bookkeeping: [`SLACK`].
fn retained_bound(mode: Mode, largest_datagram: usize) -> i64 {
    let limits = drivers::REASSEMBLY;
    let reassembly = match mode {
        Mode::Plain | Mode::Legacy => limits.max_pending_bytes * (1 + PIECE_OVERHEAD),
        Mode::Keyed => limits.max_pending_bytes,
    } + limits.max_pending * 512;
    let peers = drivers::MAX_NODES * (2 * limits.max_message + 2048);
    (reassembly + peers + largest_datagram + SLACK) as i64
}

/// Heap per held WRAP piece beyond its data: its `Vec` (24 bytes) and a
/// `BTreeMap` slot, in nodes of 11 that may be half empty. Checked against
/// a measurement in `wrap_reassembly_overhead_per_piece`.
const PIECE_OVERHEAD: usize = 96;
const SLACK: usize = 64 * 1024;

/// One hostile datagram: raw bytes, or shaped to get past the cheap checks.
fn hostile_datagram() -> impl Strategy<Value = Vec<u8>> {
    let wrap_block = (
        any::<[u8; 2]>(),
        any::<u32>(),
        prop_oneof![0u32..64, 0u32..20_000, any::<u32>()],
        0u32..20_000,
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(id, crc, total, offset, data, bad_len)| {
            let mut b = b"WRAP".to_vec();
            let mut full_id = [0u8; 16];
            full_id[..2].copy_from_slice(&id);
            b.extend_from_slice(&full_id);
            let block_len = if bad_len {
                offset
            } else {
                (framing::HEADER_LEN + data.len()) as u32
            };
            for v in [crc, total, block_len, offset] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&data);
            b
        });
    let sealed = (
        any::<(u16, u16, bool, [u8; 2], u64, u64)>(),
        proptest::collection::vec(any::<u8>(), 16..200),
    )
        .prop_map(|((index, count, our_key, sender, counter, ts), body)| {
            let mut d = b"SHOL".to_vec();
            d.extend_from_slice(&[secure::VERSION, secure::ALG_AES_256_GCM]);
            d.extend_from_slice(&index.to_be_bytes());
            d.extend_from_slice(&count.to_be_bytes());
            let key_id = if our_key {
                Key::from_bytes(drivers::KEY).id().0
            } else {
                [sender[0], 1, 2, 3]
            };
            d.extend_from_slice(&key_id);
            d.extend_from_slice(&[sender[0]; 8]);
            d.extend_from_slice(&[sender[1]; 8]);
            d.extend_from_slice(&counter.to_be_bytes());
            d.extend_from_slice(&(drivers::WALL_MS + ts % 60_000).to_be_bytes());
            d.extend_from_slice(&body);
            d
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        wrap_block.clone(),
        // Many blocks back to back in one datagram, as node-discovery's
        // receiver (and ours) accepts.
        proptest::collection::vec(wrap_block, 1..40).prop_map(|blocks| blocks.concat()),
        sealed,
        proptest::collection::vec(any::<u8>(), 60_000..65_000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Arbitrary datagrams (raw, WRAP-shaped, sealed-looking, 60 KB) into
    /// `Protocol::handle_datagram`: no panic; a secure node delivers nothing;
    /// the heap it retains stays within [`retained_bound`].
    #[test]
    fn hostile_datagrams_never_panic_and_memory_is_bounded(
        mode in mode(),
        datagrams in proptest::collection::vec((hostile_datagram(), 0u8..4, 0u64..400), 1..120),
    ) {
        let config = drivers::protocol_config(mode);
        let t0 = Instant::now();
        let mut node = Protocol::new(&config, drivers::protocol_sender(), t0, 9);
        node.set_wall_clock(t0, drivers::WALL_MS);
        for channel in drivers::CHANNELS {
            node.join(channel).unwrap();
        }
        node.handle_timeout(t0);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        let largest = datagrams.iter().map(|(d, _, _)| d.len()).max().unwrap_or(0);
        let baseline = heap::live();
        let mut now = t0;
        for (datagram, source, ms) in &datagrams {
            now += Duration::from_millis(*ms);
            node.handle_datagram(now, addr(source + 1), datagram);
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
            while node.poll_transmit().is_some() {}
            while node.poll_event().is_some() {}
            let retained = heap::live() - baseline;
            prop_assert!(
                retained <= retained_bound(mode, largest),
                "{mode:?}: {retained} bytes retained > {}", retained_bound(mode, largest)
            );
        }
        if mode == Mode::Keyed {
            prop_assert_eq!(node.stats().messages_in, 0);
            prop_assert_eq!(node.peers().count(), 0);
        }
        prop_assert_eq!(node.stats().packets_in, datagrams.len() as u64);
    }
}

/// A secure node fed forgeries of every shape retains almost nothing: a
/// forged packet allocates nothing but the opener's scratch buffer.
#[test]
fn forged_sealed_traffic_retains_almost_nothing() {
    let config = drivers::protocol_config(Mode::Keyed);
    let t0 = Instant::now();
    let mut node = Protocol::new(&config, drivers::protocol_sender(), t0, 3);
    node.set_wall_clock(t0, drivers::WALL_MS);
    node.handle_timeout(t0);
    while node.poll_transmit().is_some() {}
    let key_id = Key::from_bytes(drivers::KEY).id();
    let baseline = heap::live();
    let mut datagram = vec![0u8; 1400];
    for i in 0..20_000u64 {
        let header = secure::SealedHeader {
            version: secure::VERSION,
            algorithm: secure::ALG_AES_256_GCM,
            frag_index: (i % 7) as u16,
            frag_count: 7 + (i % 60_000) as u16,
            key_id,
            sender: [(i % 200) as u8; 16], // never our own id, [0xee; 16]
            counter: i + 1,
            timestamp_ms: drivers::WALL_MS + i,
        };
        datagram[..secure::HEADER_LEN].copy_from_slice(&header.encode());
        node.handle_datagram(t0 + Duration::from_micros(i), addr(4), &datagram);
    }
    let retained = heap::live() - baseline;
    let stats = node.stats();
    assert_eq!(stats.dropped.auth_failed, 20_000, "{stats:?}");
    assert!(
        retained <= 1400 + 4096,
        "{retained} bytes retained after 20 000 forgeries"
    );
    assert_eq!(node.peers().count(), 0);
}

/// Tiny WRAP blocks, once the way to make bookkeeping outweigh the data
/// counted against `max_pending_bytes` (57 heap bytes per budget byte), are
/// refused; with the full blocks every encoder sends, the heap held stays
/// close to the budget.
#[test]
fn wrap_reassembly_memory_stays_near_its_budget() {
    let limits = framing::ReassemblyLimits {
        max_message: 1 << 20,
        max_pending: 4,
        max_pending_bytes: 64 * 1024,
        max_pending_per_source: 4,
        timeout: Duration::from_secs(5),
    };
    let mut r = framing::Reassembler::new(limits);
    let now = Instant::now();
    // One-byte pieces: refused.
    let mut block = b"WRAP".to_vec();
    block.extend_from_slice(&[9; 16]);
    for v in [0u32, 1 << 20, framing::HEADER_LEN as u32 + 1, 2] {
        block.extend_from_slice(&v.to_be_bytes());
    }
    block.push(0);
    let (h, data, _) = framing::parse_block(&block).unwrap();
    assert!(matches!(
        r.push(now, addr(1), &h, data),
        Err(shoal::wire::DecodeError::BadBlock(_))
    ));
    assert_eq!(r.pending(), (0, 0));
    // Full blocks until the budget is used.
    let baseline = heap::live();
    let data = vec![0u8; framing::BLOCK_DATA];
    let mut budget_bytes = 0usize;
    'fill: for message in 0..limits.max_pending as u8 {
        for k in 0..(1u32 << 20) / framing::BLOCK_DATA as u32 - 1 {
            let h = framing::BlockHeader {
                id: [message; 16],
                crc: 0,
                total_len: 1 << 20,
                block_len: (framing::HEADER_LEN + framing::BLOCK_DATA) as u32,
                offset: k * framing::BLOCK_DATA as u32,
            };
            match r.push(now, addr(1), &h, &data) {
                Ok(None) => budget_bytes += data.len(),
                Err(shoal::wire::DecodeError::ReassemblyFull) => break 'fill,
                other => panic!("{other:?}"),
            }
        }
    }
    let held = heap::live() - baseline;
    assert_eq!(r.pending().1, budget_bytes);
    let ratio = held as f64 / budget_bytes as f64;
    eprintln!("WRAP reassembly: {budget_bytes} budget bytes hold {held} heap bytes ({ratio:.3}x)");
    assert!(ratio <= 1.1, "{ratio:.3} heap bytes per budget byte");
}

// ----- seeds ----------------------------------------------------------

/// Rewrites `fuzz/corpus/<target>/seed-*` (the fuzzer's own finds are left
/// alone): `cargo test --test fuzz_corpus -- --ignored regenerate_seed_corpus`.
#[test]
#[ignore = "writes into fuzz/corpus; run by hand"]
fn regenerate_seed_corpus() {
    let seeds = seeds();
    for target in drivers::TARGETS {
        let dir = corpus_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    for ((target, name), bytes) in &seeds {
        assert!(drivers::TARGETS.contains(&target.as_str()), "{target}");
        drivers::run(target, bytes);
        std::fs::write(
            corpus_dir().join(target).join(format!("seed-{name}")),
            bytes,
        )
        .unwrap();
    }
    eprintln!("wrote {} seeds", seeds.len());
}

fn out(node: &mut Protocol) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| t.payload)
        .collect()
}

type Seeds = BTreeMap<(String, String), Vec<u8>>;

fn add(seeds: &mut Seeds, target: &str, name: &str, bytes: Vec<u8>) {
    seeds.insert((target.to_owned(), name.to_owned()), bytes);
}

/// Records from `datagrams`, all from source 0 with no delay.
fn seq<'a>(datagrams: impl IntoIterator<Item = &'a Vec<u8>>, op: u8) -> Vec<u8> {
    encode_records(datagrams.into_iter().map(|d| (op, &d[..])))
}

fn seeds() -> Seeds {
    let mut seeds = Seeds::new();
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/node_discovery.json"),
        )
        .unwrap(),
    )
    .unwrap();

    // node-discovery's packets, as Node 20 made them.
    let cipher = hex::decode(vectors["cipher"]["cipher_hex"].as_str().unwrap()).unwrap();
    add(&mut seeds, "legacy", "vector-cipher", cipher);
    for v in vectors["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let blocks: Vec<Vec<u8>> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| hex::decode(b.as_str().unwrap()).unwrap())
            .collect();
        let json = v["json"].as_str().unwrap().as_bytes().to_vec();
        add(&mut seeds, "envelope", name, json);
        for (i, b) in blocks.iter().enumerate() {
            add(&mut seeds, "framing", &format!("{name}-{i}"), b.clone());
        }
        add(
            &mut seeds,
            "framing",
            &format!("{name}-all"),
            blocks.concat(),
        );
        let mut reversed = blocks.clone();
        reversed.reverse();
        add(&mut seeds, "reassembly", name, seq(&blocks, 0));
        let mut interleaved = Vec::new();
        for b in &blocks {
            interleaved.push((1u8, &b[..]));
            interleaved.push((0x12, &b[..]));
        }
        add(
            &mut seeds,
            "reassembly",
            &format!("{name}-interleaved"),
            encode_records(interleaved),
        );
        let target = if v["key"].is_null() {
            "protocol_plain"
        } else {
            // The payload is the concatenated block data.
            let payload: Vec<u8> = blocks
                .iter()
                .flat_map(|b| b[framing::HEADER_LEN..].to_vec())
                .collect();
            add(&mut seeds, "legacy", name, payload);
            "protocol_legacy"
        };
        add(&mut seeds, target, name, seq(&blocks, 0));
        add(
            &mut seeds,
            target,
            &format!("{name}-reversed"),
            seq(&reversed, 4),
        );
    }

    // Packets of our own nodes, in each mode: hellos (one as master, one
    // advertising), channel messages of one and several blocks, goodbye.
    for mode in [Mode::Plain, Mode::Keyed, Mode::Legacy] {
        let t0 = Instant::now();
        let config = Config::builder()
            .weight(0.7)
            .advertise(json!({"id": "seed", "port": 8080}));
        let config = match mode {
            Mode::Plain => config,
            Mode::Keyed => config.secret_key(drivers::KEY_HEX),
            Mode::Legacy => config
                .legacy_key(drivers::LEGACY_KEY)
                .encryption(Encryption::LegacyNodeDiscovery),
        }
        .build()
        .unwrap();
        let mut node = Protocol::new(&config, node_sender('a'), t0, 5);
        node.set_wall_clock(t0, drivers::WALL_MS);
        node.handle_timeout(t0);
        let hello = out(&mut node);
        node.promote(t0).unwrap();
        let master = out(&mut node);
        node.send(t0, "chat", &json!({"from": "seed", "seq": 1}))
            .unwrap();
        let chat = out(&mut node);
        node.send(t0, "bulk", &json!({"blob": "z".repeat(5000)}))
            .unwrap();
        let bulk = out(&mut node);
        node.goodbye(t0);
        let goodbye = out(&mut node);
        let all: Vec<Vec<u8>> = [&hello, &master, &chat, &bulk, &goodbye]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut bulk_reversed = bulk.clone();
        bulk_reversed.reverse();
        let target = match mode {
            Mode::Plain => "protocol_plain",
            Mode::Keyed => "protocol_keyed",
            Mode::Legacy => "protocol_legacy",
        };
        add(&mut seeds, target, "node-session", seq(&all, 0));
        add(
            &mut seeds,
            target,
            "node-replayed",
            seq(all.iter().chain(&all), 0x14),
        );
        add(
            &mut seeds,
            target,
            "node-bulk-reversed",
            seq(&bulk_reversed, 1),
        );
        match mode {
            Mode::Keyed => {
                for (name, d) in [("hello", &hello[0]), ("chat", &chat[0]), ("bulk", &bulk[1])] {
                    add(&mut seeds, "secure_header", name, d.clone());
                }
                add(&mut seeds, "sealed", "session", seq(&all, 0));
                add(
                    &mut seeds,
                    "sealed",
                    "bulk-reversed",
                    seq(&bulk_reversed, 0),
                );
                add(&mut seeds, "sealed", "bulk-unopened", seq(&bulk, 8));
                add(&mut seeds, "sealed", "replayed-late", {
                    let mut r = seq(&all, 0);
                    r.extend(seq(&all, 0xf4));
                    r
                });
            }
            Mode::Plain => {
                for (name, d) in [("hello", &hello), ("chat", &chat), ("bulk", &bulk)] {
                    add(&mut seeds, "framing", &format!("node-{name}"), d.concat());
                    let payload: Vec<u8> = d
                        .iter()
                        .flat_map(|b| b[framing::HEADER_LEN..].to_vec())
                        .collect();
                    add(&mut seeds, "envelope", &format!("node-{name}"), payload);
                }
                add(&mut seeds, "reassembly", "node-session", seq(&all, 0));
            }
            Mode::Legacy => {
                let payload: Vec<u8> = chat
                    .iter()
                    .flat_map(|b| b[framing::HEADER_LEN..].to_vec())
                    .collect();
                add(&mut seeds, "legacy", "node-chat", payload);
            }
        }
    }

    // Sealed under the second key, by a bare Sealer.
    let mut sealer = Sealer::new([0x42; 16]);
    let second = Key::from_bytes(drivers::SECOND_KEY);
    let parts = sealer
        .seal_message(&second, drivers::WALL_MS, &[b'x'; 3000], 1000)
        .unwrap();
    add(&mut seeds, "sealed", "second-key", seq(&parts, 0));
    add(&mut seeds, "secure_header", "second-key", parts[0].clone());

    // What the hostile LAN test's attacker sends (tests/hostile/attack.py).
    let forged_master = envelope::encode(
        "hello",
        &json!({"isMaster": true, "isMasterEligible": true, "weight": 1e308,
                "address": "127.0.0.1", "info": {"id": "evil"}}),
        &node_sender('9'),
    )
    .unwrap();
    let forged_chat = envelope::encode(
        "chat",
        &json!({"from": "evil", "seq": 666}),
        &node_sender('9'),
    )
    .unwrap();
    add(
        &mut seeds,
        "envelope",
        "forged-master",
        forged_master.clone(),
    );
    let frame = |payload: &[u8]| {
        let mut blocks = Vec::new();
        framing::encode(payload, [9; 16], |b| blocks.push(b));
        blocks
    };
    let huge = {
        let mut b = b"WRAP".to_vec();
        b.extend_from_slice(&[0xee; 16]);
        for v in [0u32, u32::MAX, framing::HEADER_LEN as u32 + 8, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[0; 8]);
        b
    };
    let mut many_ids = Vec::new();
    for i in 0..64u32 {
        let mut b = huge.clone();
        b[4..8].copy_from_slice(&i.to_be_bytes());
        b[24..28].copy_from_slice(&16_000u32.to_be_bytes());
        many_ids.push(b);
    }
    let forged = [frame(&forged_master), frame(&forged_chat)].concat();
    for target in [
        "protocol_plain",
        "protocol_keyed",
        "protocol_legacy",
        "reassembly",
    ] {
        add(&mut seeds, target, "forged", seq(&forged, 0));
        add(&mut seeds, target, "huge-declared", seq([&huge], 0));
        add(&mut seeds, target, "many-ids", seq(&many_ids, 2));
    }
    add(&mut seeds, "framing", "huge-declared", huge);
    let mut frag_bomb =
        Sealer::new([0x66; 16]).seal(&Key::from_bytes([1; 32]), 0, 1, drivers::WALL_MS, b"{}");
    frag_bomb[6..10].copy_from_slice(&[0xff, 0xfe, 0xff, 0xff]);
    add(&mut seeds, "secure_header", "frag-bomb", frag_bomb.clone());
    add(&mut seeds, "sealed", "frag-bomb", seq([&frag_bomb], 8));
    add(
        &mut seeds,
        "protocol_keyed",
        "frag-bomb",
        seq([&frag_bomb], 0),
    );
    seeds
}
