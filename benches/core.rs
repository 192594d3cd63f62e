//! The sans-IO core's receive path and a channel message round.
//!
//! `cargo bench --bench core` (see BENCHMARKS.md). Under `cargo test
//! --benches` each case runs once, as a smoke test.
//!
//! - `handle_hello/<mode>`: `Protocol::handle_datagram` of one hello from a
//!   peer already in the table: decode, checks (CRC or AEAD, replay window),
//!   peer-table update, deadline re-indexing. The hellos are real ones, made
//!   by another `Protocol` (untimed), each with the next sequence number
//!   (and, sealed, the next counter), fed in order.
//! - `channel_round/<mode>/<size>`: `send` on one `Protocol`, `poll_transmit`,
//!   `handle_datagram` on another that joined the channel, `poll_event`
//!   yields the message.

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::ThreadCpu;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use shoal::protocol::Protocol;
use shoal::Event;

use common::{node, Mode};

const MODES: [Mode; 3] = [Mode::Plain, Mode::Legacy, Mode::Secure];

/// Hellos generated (untimed) per timed batch.
const CHUNK: u64 = 4096;

/// A sender that makes real hellos on demand, in simulated time.
struct HelloSource {
    node: Protocol,
    now: Instant,
    interval: Duration,
}

impl HelloSource {
    fn new(mode: Mode, t0: Instant) -> Self {
        let node = node(mode, 1, 0.9, t0);
        let interval = node.config().hello_interval();
        HelloSource {
            node,
            now: t0,
            interval,
        }
    }

    /// The next hello (and when it is sent).
    fn next(&mut self) -> (Instant, Vec<u8>) {
        loop {
            if let Some(t) = self.node.poll_transmit() {
                return (self.now, t.payload);
            }
            self.now += self.interval;
            self.node.handle_timeout(self.now);
            while self.node.poll_event().is_some() {}
        }
    }
}

fn handle_hello(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("handle_hello");
    group.throughput(Throughput::Elements(1));
    let from: SocketAddr = "10.0.0.1:12345".parse().expect("addr");
    for mode in MODES {
        group.bench_function(mode.name(), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                let mut source = HelloSource::new(mode, t0);
                let mut receiver = node(mode, 2, 0.5, t0);
                // The first hello makes the sender a known peer.
                let (now, first) = source.next();
                receiver.handle_datagram(now, from, &first);
                assert!(matches!(receiver.poll_event(), Some(Event::Added(_))));
                let mut total = Duration::ZERO;
                let mut batch = Vec::with_capacity(CHUNK as usize);
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    batch.clear();
                    batch.extend((0..n).map(|_| source.next()));
                    let start = common::thread_cpu();
                    for (now, datagram) in &batch {
                        receiver.handle_datagram(*now, from, black_box(datagram));
                    }
                    total += common::thread_cpu() - start;
                    while receiver.poll_event().is_some() {}
                    while receiver.poll_transmit().is_some() {}
                    left -= n;
                }
                let stats = receiver.stats();
                assert_eq!(stats.hellos_in, iters + 1, "every hello handled");
                total
            })
        });
    }
    group.finish();
}

/// A channel message like examples/node.rs sends: `{"from", "seq"}`, padded
/// to `size` bytes of JSON when given.
fn message(seq: u64, size: Option<usize>) -> serde_json::Value {
    let mut value = json!({"from": "node-1", "seq": seq});
    if let Some(size) = size {
        value["pad"] = json!("");
        let base = value.to_string().len();
        value["pad"] = json!("x".repeat(size.saturating_sub(base)));
    }
    value
}

fn channel_round(c: &mut Criterion<ThreadCpu>) {
    let mut group = c.benchmark_group("channel_round");
    group.throughput(Throughput::Elements(1));
    let from: SocketAddr = "10.0.0.1:12345".parse().expect("addr");
    for (mode, size) in MODES
        .iter()
        .map(|&m| (m, None))
        .chain([(Mode::Plain, Some(1000)), (Mode::Secure, Some(1000))])
    {
        let t0 = Instant::now();
        let mut a = node(mode, 1, 0.9, t0);
        let mut b = node(mode, 2, 0.5, t0);
        b.join("bench").expect("join");
        let data = message(1, size);
        let bytes = data.to_string().len();
        let name = format!("{}/{bytes}B", mode.name());
        group.bench_function(name, |bench| {
            bench.iter(|| {
                a.send(t0, "bench", black_box(&data)).expect("send");
                let t = a.poll_transmit().expect("a datagram");
                b.handle_datagram(t0, from, &t.payload);
                match b.poll_event() {
                    Some(Event::Message(m)) => black_box(m),
                    other => panic!("expected the message, got {other:?}"),
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = handle_hello, channel_round
}
criterion_main!(benches);
