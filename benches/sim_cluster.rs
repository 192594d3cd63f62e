//! Simulated clusters of 100, 1,000 and 10,000 nodes through the sans-IO
//! core, in simulated time: CPU per node per simulated second, cost per
//! received packet as the cluster grows, and memory per peer-table entry.
//!
//! `cargo bench --bench sim_cluster` prints markdown tables (see
//! BENCHMARKS.md). Without `--bench` (as `cargo test --benches` runs it) it
//! runs one tiny cluster as a smoke test.
//!
//! # What is simulated
//!
//! A broadcast LAN where every datagram reaches every node at once (zero
//! latency, no loss), driven by this file's own event loop over
//! `shoal::protocol::Protocol` (not `shoal::sim::SimNet`, whose per-delivery
//! event queue would dominate the timings). Nodes start spread over one
//! hello interval; node 0 has the highest weight and becomes master.
//! Defaults everywhere (hello 400 ms, node timeout 2.6 s).
//!
//! A full 10,000-node broadcast cluster cannot be held in memory: it has
//! 10^8 peer-table entries (at ~1.2 KB each, over 100 GB) and delivers
//! 2.5 x 10^8 datagrams per simulated second. So the nodes are of two kinds:
//!
//! - *full* nodes hear every datagram (their own included, as a broadcast
//!   loops back) and keep the whole cluster in their table: these are
//!   measured;
//! - *light* nodes hear only the master: they say hello like everyone
//!   (eligible, with the master's epoch, so their hellos are those of a real
//!   cluster's members) but keep a one-entry table; they are not measured.
//!
//! The main rows have one full node, node 0 (the master), at 100, 1,000 and
//! 10,000 nodes: it alone holds the whole cluster in its table, as each node
//! of a real LAN does on its own machine. What a full node pays depends only
//! on what it receives and holds, which is what it would in a full mesh.
//! The "with masters" rows repeat them with one peer in ten a master too
//! (see [`Mode::PlainMasters`]), so that node 0, itself master, runs the
//! master path (should it step down?) on a tenth of its packets.
//! Rows with 16 full nodes, and full meshes of 100 and 1,000 nodes, are
//! there for comparison: there every datagram walks the tables of many
//! nodes in one process, which share the CPU caches, so a packet costs more
//! than on a real LAN.
//!
//! Per received packet: `handle_datagram`, then what a driver does after
//! each datagram (`poll_transmit`, `poll_event` until empty,
//! `poll_timeout`), timed (thread CPU time, so that other processes on a
//! shared machine do not count) in batches of one datagram to every full node.
//! Per node: that plus its own `handle_timeout` calls (hellos, election
//! checks, expiry).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::json;
use shoal::protocol::Protocol;
use shoal::wire::envelope::Sender;
use shoal::{Config, Event};

// ----- a counting allocator ----------------------------------------------

/// Counts live heap bytes and allocations, to measure memory per peer entry
/// and allocations per packet. Costs one relaxed atomic add per call.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Relaxed);
        LIVE.fetch_sub(layout.size(), Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> usize {
    LIVE.load(Relaxed)
}

/// CPU time of this thread (the whole bench is one thread).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one timed interval costs with nothing in it: the median of back-to-
/// back [`thread_cpu`] differences (a system call on this VM, about a
/// microsecond). Subtracted once per timed batch.
fn timer_overhead() -> Duration {
    let mut diffs: Vec<Duration> = (0..10_001)
        .map(|_| {
            let a = thread_cpu();
            thread_cpu().saturating_sub(a)
        })
        .collect();
    diffs.sort();
    diffs[diffs.len() / 2]
}

// ----- nodes ---------------------------------------------------------------

const SECURE_KEY: &str = "8f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";
const WALL_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// Plain, and nothing advertised (no `info` in the hellos).
    PlainNoInfo,
    /// Plain, and every tenth node a master besides node 0: the masters of
    /// a cluster with `masters_required` in the hundreds, or of one whose
    /// partitions just healed. Only node 0 may be full: the other masters
    /// hear node 0 alone, and stay masters only because they are configured
    /// for two seats and node 0 is the one master they know. Three of them
    /// outrank node 0, which is configured for four seats: it stays, after
    /// counting the three above it on every master hello.
    PlainMasters,
    Secure,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::PlainNoInfo => "plain, no info advertised",
            Mode::PlainMasters => "plain, 1 in 10 peers a master",
            Mode::Secure => "secure",
        }
    }
}

/// Node `i`'s configuration: shoal's defaults, `{"id": "node-<i>"}`
/// advertised (as examples/node.rs does); node 0 outranks everyone.
fn config(mode: Mode, i: usize) -> Config {
    let mut b = Config::builder().host_name(format!("host-{i}"));
    if mode != Mode::PlainNoInfo {
        b = b.advertise(json!({ "id": format!("node-{i}") }));
    }
    if i == 0 {
        b = b.weight(1.0);
    }
    if mode == Mode::Secure {
        b = b.secret_key(SECURE_KEY);
    }
    if mode == Mode::PlainMasters {
        if i == 0 {
            b = b.masters_required(MASTERS_ABOVE_NODE_0 + 1);
        } else if is_master_peer(i) {
            b = b.masters_required(2);
            if i / MASTER_EVERY <= MASTERS_ABOVE_NODE_0 {
                b = b.weight(2.0);
            }
        }
    }
    b.build().expect("valid config")
}

/// In [`Mode::PlainMasters`], one node in this many is a master.
const MASTER_EVERY: usize = 10;
/// In [`Mode::PlainMasters`], how many of the other masters outrank node 0.
const MASTERS_ABOVE_NODE_0: usize = 3;

/// Whether node `i` (not node 0) is a master in [`Mode::PlainMasters`].
fn is_master_peer(i: usize) -> bool {
    i > 0 && i % MASTER_EVERY == 0
}

/// How many masters the cluster settles on.
fn masters_expected(mode: Mode, n: usize) -> usize {
    match mode {
        Mode::PlainMasters => 1 + (n - 1) / MASTER_EVERY,
        _ => 1,
    }
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i as u32 + 1), 12345))
}

fn new_node(mode: Mode, i: usize, now: Instant, wall_origin: Instant) -> Protocol {
    let sender = Sender {
        pid: format!("{:032x}", 0x1000_0000_u128 + i as u128),
        iid: format!("{:032x}", 0x7fff_0000_0000_0000_u128 + i as u128 * 7919),
        host_name: format!("host-{i}"),
    };
    let mut p = Protocol::new(&config(mode, i), sender, now, i as u64 + 1);
    p.set_wall_clock(wall_origin, WALL_MS);
    p
}

// ----- the cluster ---------------------------------------------------------

#[derive(Debug, Default, Clone, Copy)]
struct Meter {
    /// CPU time in full nodes' receive path.
    rx: Duration,
    /// Datagrams delivered to full nodes.
    rx_packets: u64,
    /// Timed receive batches.
    rx_batches: u64,
    /// Timed `handle_timeout` calls.
    timer_calls: u64,
    /// Allocations made in full nodes' receive path.
    rx_allocs: u64,
    /// CPU time in full nodes' `handle_timeout` (and the polls after it).
    timers: Duration,
    /// Datagrams sent by anyone.
    sent: u64,
    /// Events emitted by full nodes.
    events: u64,
}

struct Cluster {
    mode: Mode,
    n: usize,
    full: usize,
    nodes: Vec<Protocol>,
    /// Node i starts at `start + i * stagger`.
    start: Instant,
    stagger: Duration,
    now: Instant,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    armed: Vec<Option<Instant>>,
    queue: VecDeque<(usize, Vec<u8>)>,
    meter: Meter,
    /// Removals, promotions and demotions seen by full nodes (none expected).
    churn: u64,
}

impl Cluster {
    fn new(mode: Mode, n: usize, full: usize) -> Self {
        let start = Instant::now();
        let interval = config(mode, 0).hello_interval();
        Cluster {
            mode,
            n,
            full: full.min(n),
            nodes: Vec::with_capacity(n),
            start,
            stagger: interval / n as u32,
            now: start,
            timers: BinaryHeap::new(),
            armed: Vec::with_capacity(n),
            queue: VecDeque::new(),
            meter: Meter::default(),
            churn: 0,
        }
    }

    fn is_full(&self, i: usize) -> bool {
        i < self.full
    }

    fn next_start(&self) -> Option<Instant> {
        (self.nodes.len() < self.n).then(|| self.start + self.stagger * self.nodes.len() as u32)
    }

    /// Runs until `end` (simulated).
    fn run_until(&mut self, end: Instant) {
        loop {
            let timer = loop {
                match self.timers.peek() {
                    Some(Reverse((at, i))) if self.armed[*i] != Some(*at) => {
                        self.timers.pop();
                    }
                    Some(Reverse((at, _))) => break Some(*at),
                    None => break None,
                }
            };
            let start = self.next_start();
            let next = match (timer, start) {
                (Some(t), Some(s)) => t.min(s),
                (t, s) => match t.or(s) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = next;
            if start == Some(next) {
                let i = self.nodes.len();
                self.nodes
                    .push(new_node(self.mode, i, self.now, self.start));
                self.armed.push(None);
                if self.mode == Mode::PlainMasters {
                    // The other masters promote at once, each in an epoch
                    // of its own; node 0 last, once every node exists, so
                    // its epoch is the newest and names a master they all
                    // know (they would otherwise keep claiming new epochs,
                    // each seeing the newest name a master it never hears).
                    if is_master_peer(i) {
                        let _ = self.nodes[i].promote(self.now);
                    }
                    if i + 1 == self.n {
                        let _ = self.nodes[0].promote(self.now);
                        self.after(0);
                    }
                }
                self.after(i);
            } else {
                let Some(Reverse((_, i))) = self.timers.pop() else {
                    break;
                };
                self.armed[i] = None;
                let t = thread_cpu();
                self.nodes[i].handle_timeout(self.now);
                self.after(i);
                if self.is_full(i) {
                    self.meter.timers += thread_cpu() - t;
                    self.meter.timer_calls += 1;
                }
            }
            self.deliver();
        }
        self.now = end;
    }

    /// Collects node i's transmits and events; re-arms its timer.
    fn after(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.queue.push_back((i, t.payload));
        }
        let full = self.is_full(i);
        while let Some(event) = self.nodes[i].poll_event() {
            if full {
                self.meter.events += 1;
                if matches!(
                    event,
                    Event::Removed(..) | Event::Promotion(_) | Event::Demotion(_)
                ) {
                    self.churn += 1;
                }
            }
        }
        let next = self.nodes[i].poll_timeout();
        if next != self.armed[i] {
            self.armed[i] = next;
            if let Some(at) = next {
                self.timers.push(Reverse((at, i)));
            }
        }
    }

    /// Delivers queued datagrams (and whatever they cause) at `now`.
    fn deliver(&mut self) {
        while let Some((from, payload)) = self.queue.pop_front() {
            self.meter.sent += 1;
            let src = addr(from);
            let full = self.full.min(self.nodes.len());
            let allocs = ALLOCS.load(Relaxed);
            let t = thread_cpu();
            for r in 0..full {
                self.nodes[r].handle_datagram(self.now, src, &payload);
                self.after(r);
            }
            self.meter.rx += thread_cpu() - t;
            self.meter.rx_allocs += ALLOCS.load(Relaxed) - allocs;
            self.meter.rx_packets += full as u64;
            self.meter.rx_batches += 1;
            if from == 0 {
                // Light nodes hear the master only.
                for r in full..self.nodes.len() {
                    self.nodes[r].handle_datagram(self.now, src, &payload);
                    self.after(r);
                }
            }
        }
    }

    fn masters(&self) -> usize {
        self.nodes.iter().filter(|p| p.local().is_master).count()
    }

    /// Smallest peer table among full nodes.
    fn min_full_table(&self) -> usize {
        self.nodes[..self.full]
            .iter()
            .map(|p| p.peers().count())
            .min()
            .unwrap_or(0)
    }
}

struct Row {
    mode: Mode,
    n: usize,
    full: usize,
    sim: Duration,
    meter: Meter,
    wall: Duration,
    cpu: Duration,
    churn: u64,
    table: usize,
    masters: usize,
    /// Live heap after the warm-up (the whole cluster and the driver).
    heap: usize,
}

fn run_cluster(mode: Mode, n: usize, full: usize, warmup: Duration, window: Duration) -> Row {
    let wall = Instant::now();
    let cpu = thread_cpu();
    let heap_before = live();
    let mut c = Cluster::new(mode, n, full);
    let t = c.start + warmup;
    c.run_until(t);
    let table = c.min_full_table();
    let masters = c.masters();
    let heap = live().saturating_sub(heap_before);
    assert_eq!(
        masters,
        masters_expected(mode, n),
        "{n} nodes: masters after the warm-up"
    );
    assert_eq!(table, n - 1, "{n} nodes: full nodes know everyone");
    c.meter = Meter::default();
    c.churn = 0;
    c.run_until(t + window);
    let row = Row {
        mode,
        n,
        full: c.full,
        sim: window,
        meter: c.meter,
        wall: wall.elapsed(),
        cpu: thread_cpu() - cpu,
        churn: c.churn,
        table,
        masters: c.masters(),
        heap,
    };
    drop(c);
    row
}

fn ns(d: Duration, per: u64) -> f64 {
    d.as_nanos() as f64 / per.max(1) as f64
}

fn print_header() {
    println!(
        "| mode | nodes | measured (full) nodes | simulated window | datagrams sent / sim s | \
         received per full node / sim s | ns per received packet | allocs per packet | \
         CPU per full node per sim s | churn in window | heap per peer entry | bench wall / CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

fn print_row(r: &Row, overhead: Duration) {
    let secs = r.sim.as_secs_f64();
    let m = &r.meter;
    // The timer's own cost, once per timed interval, is not the node's.
    let rx = m.rx.saturating_sub(overhead * m.rx_batches as u32);
    let timers = m.timers.saturating_sub(overhead * m.timer_calls as u32);
    let per_node = (rx + timers).as_secs_f64() / r.full as f64 / secs;
    // Only a full mesh's heap is all peer tables.
    let heap = if r.full == r.n {
        format!("{:.0} B", r.heap as f64 / (r.n * (r.n - 1)) as f64)
    } else {
        "n/a".to_owned()
    };
    println!(
        "| {} | {} | {} | {:.1} s | {:.0} | {:.0} | {:.0} | {:.1} | {:.2} ms ({:.2} % of a core) | {} | {heap} | {:.1} s / {:.1} s |",
        r.mode.name(),
        r.n,
        r.full,
        secs,
        m.sent as f64 / secs,
        m.rx_packets as f64 / r.full as f64 / secs,
        ns(rx, m.rx_packets),
        m.rx_allocs as f64 / m.rx_packets.max(1) as f64,
        per_node * 1e3,
        per_node * 100.0,
        r.churn,
        r.wall.as_secs_f64(),
        r.cpu.as_secs_f64(),
    );
    assert_eq!(
        (r.masters, r.table),
        (masters_expected(r.mode, r.n), r.n - 1)
    );
}

// ----- memory per peer entry -----------------------------------------------

/// Live heap bytes one node's state grows by when its table fills with
/// `n` peers (first hellos of `n` distinct nodes; events drained and
/// dropped), per peer.
fn memory_per_peer(mode: Mode, n: usize) -> (f64, usize) {
    let t0 = Instant::now();
    // Make the hellos first: their bytes are not the receiver's.
    let hellos: Vec<(SocketAddr, Vec<u8>)> = (1..=n)
        .map(|i| {
            let mut p = new_node(mode, i, t0, t0);
            p.handle_timeout(t0);
            (addr(i), p.poll_transmit().expect("first hello").payload)
        })
        .collect();
    let mut r = new_node(mode, 0, t0, t0);
    r.handle_timeout(t0);
    while r.poll_transmit().is_some() {}
    let before = live();
    for (from, hello) in &hellos {
        r.handle_datagram(t0, *from, hello);
        while r.poll_event().is_some() {}
        while r.poll_transmit().is_some() {}
    }
    let grown = live() as f64 - before as f64;
    assert_eq!(r.peers().count(), n);
    (grown / n as f64, r.peers().count())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let ms = Duration::from_millis;
    if !bench {
        // `cargo test --benches`: a smoke run only.
        print_header();
        let overhead = timer_overhead();
        print_row(
            &run_cluster(Mode::Plain, 20, 20, ms(2000), ms(500)),
            overhead,
        );
        print_row(
            &run_cluster(Mode::PlainMasters, 40, 1, ms(2000), ms(500)),
            overhead,
        );
        let _ = memory_per_peer(Mode::Plain, 10);
        println!("sim_cluster: smoke run ok (use `cargo bench --bench sim_cluster`)");
        return;
    }
    let started = Instant::now();
    if std::env::var_os("SIM_QUICK").is_some() {
        // `SIM_QUICK=1 cargo bench --bench sim_cluster`: only the plain
        // single-full-node rows, without and with masters, for quick
        // before/after comparisons.
        let overhead = timer_overhead();
        print_header();
        for mode in [Mode::Plain, Mode::PlainMasters] {
            for n in [100, 1_000, 10_000] {
                print_row(&run_cluster(mode, n, 1, ms(2500), ms(2000)), overhead);
            }
        }
        return;
    }
    println!("## Memory per peer entry (heap bytes a node's state grows by, per peer)\n");
    println!("| mode | peers | bytes per peer |");
    println!("|---|---:|---:|");
    for mode in [Mode::Plain, Mode::PlainNoInfo, Mode::Secure] {
        for n in [100, 1_000, 10_000] {
            let (per, _) = memory_per_peer(mode, n);
            println!("| {} | {n} | {per:.0} |", mode.name());
        }
    }

    println!("\n## Clusters (warm-up 2.5 simulated s, then the measured window)\n");
    let overhead = timer_overhead();
    println!(
        "(thread CPU time; the timer's own cost, {} ns per timed interval, is subtracted)\n",
        overhead.as_nanos()
    );
    let warmup = ms(2500);
    print_header();
    // (mode, nodes, full nodes). One full node: it alone holds the whole
    // cluster in its table, as each node of a real LAN does on its own
    // machine (several full nodes in one process would share the CPU caches
    // and each datagram would walk all their tables). Full meshes at 100
    // and 1,000 for comparison.
    let runs = [
        (Mode::Plain, 100, 1),
        (Mode::Plain, 1_000, 1),
        (Mode::Plain, 10_000, 1),
        (Mode::PlainMasters, 100, 1),
        (Mode::PlainMasters, 1_000, 1),
        (Mode::PlainMasters, 10_000, 1),
        (Mode::Secure, 100, 1),
        (Mode::Secure, 1_000, 1),
        (Mode::Secure, 10_000, 1),
        (Mode::Plain, 10_000, 16),
        (Mode::Plain, 100, 100),
        (Mode::Plain, 1_000, 1_000),
        (Mode::Secure, 100, 100),
    ];
    for (mode, n, full) in runs {
        print_row(&run_cluster(mode, n, full, warmup, ms(2000)), overhead);
    }
    println!(
        "\ntotal bench time {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
