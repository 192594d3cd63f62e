//! hello_replay: the hellos of many shoal nodes, in real time, from one
//! UDP socket, for measuring one node under load (benches/load_cpu.sh).
//!
//! ```text
//! hello_replay --target 10.253.0.255:47400 [--nodes 2000] [--rate 5000]
//!              [--key-file PATH] [--duration SECS]
//! ```
//!
//! It holds `--nodes` sans-IO [`shoal::protocol::Protocol`]s with distinct
//! ids (32 hex digits, as a real node's), shoal's default timings, not
//! master-eligible (each hears nobody, so each would otherwise make itself
//! master), and drives them on the real clock: every datagram they emit is
//! exactly what a real node would send (node-discovery's wire format, or
//! sealed with `--key-file`), sequence numbers and secure counters
//! increasing as the core keeps them. Each node's hello interval is
//! `nodes / rate` (2,000 / 5,000 per s = 400 ms, shoal's default), and node
//! `i` starts `i / rate` after the first, so the hellos leave evenly
//! spread, one every `1 / rate` s, not in bursts. Datagrams for one peer
//! (`Destination::Peer`) are counted, never sent: the replayed nodes know
//! no peers.
//!
//! The key file holds a key as the `shoal` command's `--key-file` does: 64
//! hex digits or base64 of 32 bytes, surrounding whitespace ignored.
//!
//! Output, one JSON object per line on stdout: `start`; `progress` on each
//! SIGUSR1 (counts so far, for a measurement window); `done` after
//! `--duration`, SIGTERM or SIGINT, with `sent`, `bytes`, `elapsed_s`,
//! `rate`, `send_errors`, how late the timer wake-ups were (`late_mean_us`,
//! `late_max_us`, `late_over_1ms`) and how many datagrams left within
//! 50 µs of the previous one (`bunched`: a late wake-up sends what is due
//! at once).
//!
//! Safety: this sends thousands of datagrams a second. A target that is
//! not loopback must be a private (RFC 1918) address and the process must
//! run in a network namespace made by `ip netns add` (benches/load_cpu.sh
//! runs it inside a namespace LAN of its own); anything else is refused.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::json;
use shoal::protocol::{Destination, Protocol, Sender};
use shoal::Config;

#[derive(Parser, Debug)]
#[command(about = "Replay the hellos of many shoal nodes to one address, in real time")]
struct Args {
    /// Where to send, ADDR:PORT: loopback, or a private address when run in
    /// a network namespace of its own.
    #[arg(long)]
    target: SocketAddr,
    /// How many nodes (distinct ids).
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    /// Hellos per second, all nodes together; each node's hello interval is
    /// nodes / rate.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Secure mode with the key in this file (64 hex digits or base64 of 32
    /// bytes); plain without it.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Stop after this many seconds (default: at SIGTERM or SIGINT).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
}

/// What has been sent so far.
#[derive(Default)]
struct Counts {
    sent: u64,
    bytes: u64,
    send_errors: u64,
    /// `Destination::Peer` datagrams: counted, not sent.
    unicast_skipped: u64,
    /// Timer wake-ups handled, and how late each was, summed and at worst.
    wakeups: u64,
    late_sum: Duration,
    late_max: Duration,
    late_over_1ms: u64,
    /// Datagrams sent within 50 µs of the previous one (a burst, where
    /// the spacing is 1 / rate).
    bunched: u64,
    last_send: Option<Instant>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Refuses a target that could leave this host's private namespaces.
fn check_target(target: SocketAddr) -> Result<(), String> {
    let ip = target.ip();
    if ip.is_loopback() {
        return Ok(());
    }
    let private = matches!(ip, IpAddr::V4(v4) if v4.is_private());
    if !private {
        return Err(format!(
            "{ip} is neither loopback nor a private (RFC 1918) IPv4 address"
        ));
    }
    if in_named_namespace() {
        Ok(())
    } else {
        Err(format!(
            "{ip} is not loopback and this process does not run in a network \
             namespace made by `ip netns add`; run it in one of its own (benches/load_cpu.sh does)"
        ))
    }
}

/// Whether this process's network namespace is one of those `ip netns`
/// made (bind-mounted under /run/netns), hence not the host's own: the same
/// namespace file, by device and inode. (PID 1's namespace cannot be read
/// in every container, so it is not the reference.)
fn in_named_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(ours) = std::fs::metadata("/proc/self/ns/net") else {
        return false;
    };
    let Ok(named) = std::fs::read_dir("/run/netns") else {
        return false;
    };
    named.flatten().any(|entry| {
        std::fs::metadata(entry.path())
            .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino())
    })
}

/// Node `n`'s ids: 32 hex digits each, as a real node's (a uuid, a pid).
fn sender(base: u128, n: usize) -> Sender {
    Sender {
        pid: format!("{}", 100_000 + n),
        iid: format!("{:032x}", base.wrapping_add(n as u128)),
        host_name: format!("replay-{n}"),
    }
}

fn print(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn counts_json(event: &str, c: &Counts, started: Instant) -> serde_json::Value {
    let elapsed = started.elapsed().as_secs_f64();
    json!({
        "event": event,
        "t": unix_ms(),
        "sent": c.sent,
        "bytes": c.bytes,
        "elapsed_s": elapsed,
        "rate": c.sent as f64 / elapsed.max(1e-9),
        "send_errors": c.send_errors,
        "unicast_skipped": c.unicast_skipped,
        "late_mean_us": c.late_sum.as_secs_f64() * 1e6 / c.wakeups.max(1) as f64,
        "late_max_us": c.late_max.as_secs_f64() * 1e6,
        "late_over_1ms": c.late_over_1ms,
        "bunched": c.bunched,
    })
}

fn main() {
    let args = Args::parse();
    if let Err(e) = check_target(args.target) {
        eprintln!("hello_replay: refusing --target {}: {e}", args.target);
        std::process::exit(2);
    }
    if args.nodes == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        eprintln!("hello_replay: --nodes and --rate must be positive");
        std::process::exit(2);
    }
    let interval = Duration::from_secs_f64(args.nodes as f64 / args.rate);
    let spacing = Duration::from_secs_f64(1.0 / args.rate);

    let mut builder = Config::builder()
        .hello_interval(interval)
        .master_eligible(false);
    let secure = match &args.key_file {
        Some(path) => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("hello_replay: cannot read {}: {e}", path.display());
                    std::process::exit(2);
                }
            };
            builder = builder.secret_key(text.trim());
            true
        }
        None => false,
    };
    // Check the configuration once; each node adds only its label.
    if let Err(e) = builder.clone().build() {
        eprintln!("hello_replay: {e}");
        std::process::exit(2);
    }

    // Sleeps end within a microsecond of their deadline rather than the
    // default 50 µs timer slack: the spacing is 200 µs.
    // SAFETY: PR_SET_TIMERSLACK takes one integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };

    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).expect("signal handler");
    }
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&report))
        .expect("signal handler");

    let bind: SocketAddr = match args.target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).expect("bind the UDP socket");
    socket.set_broadcast(true).expect("SO_BROADCAST");

    // Distinct ids on every run, so that a node kept from an earlier run
    // takes these for new peers.
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    let t0 = Instant::now() + Duration::from_millis(50);
    let wall0 = unix_ms() + 50;
    let mut nodes = Vec::with_capacity(args.nodes);
    let mut due = BinaryHeap::with_capacity(args.nodes);
    for n in 0..args.nodes {
        let config = builder
            .clone()
            .advertise(json!({ "id": format!("replay-{n}") }))
            .build()
            .expect("checked above");
        // Node n starts n spacings after the first: hellos evenly spread.
        let start = t0 + spacing * n as u32;
        let mut p = Protocol::new(&config, sender(base, n), start, n as u64);
        p.set_wall_clock(t0, wall0);
        due.push(Reverse((p.poll_timeout().unwrap_or(start), n)));
        nodes.push(p);
    }

    print(json!({
        "event": "start",
        "t": unix_ms(),
        "target": args.target.to_string(),
        "nodes": args.nodes,
        "rate": args.rate,
        "interval_ms": interval.as_secs_f64() * 1e3,
        "mode": if secure { "secure" } else { "plain" },
    }));

    let started = Instant::now();
    let end = args.duration.map(|s| started + Duration::from_secs_f64(s));
    let mut c = Counts::default();
    while !stop.load(Ordering::Relaxed) {
        if report.swap(false, Ordering::Relaxed) {
            print(counts_json("progress", &c, started));
        }
        let Some(&Reverse((at, n))) = due.peek() else {
            break;
        };
        let now = Instant::now();
        if end.is_some_and(|end| now >= end) {
            break;
        }
        if at > now {
            // Wake for the deadline, and at least every 50 ms for signals.
            std::thread::sleep((at - now).min(Duration::from_millis(50)));
            continue;
        }
        due.pop();
        let late = now - at;
        c.wakeups += 1;
        c.late_sum += late;
        c.late_max = c.late_max.max(late);
        if late > Duration::from_millis(1) {
            c.late_over_1ms += 1;
        }
        // The scheduled instant, not `now`: a late wake-up must not shift
        // this node's phase (hellos stay evenly spread).
        let p = &mut nodes[n];
        p.handle_timeout(at);
        while let Some(t) = p.poll_transmit() {
            match t.destination {
                Destination::Cluster => match socket.send_to(&t.payload, args.target) {
                    Ok(_) => {
                        let sent_at = Instant::now();
                        if c.last_send
                            .is_some_and(|last| sent_at - last < Duration::from_micros(50))
                        {
                            c.bunched += 1;
                        }
                        c.last_send = Some(sent_at);
                        c.sent += 1;
                        c.bytes += t.payload.len() as u64;
                    }
                    Err(_) => c.send_errors += 1,
                },
                _ => c.unicast_skipped += 1,
            }
        }
        while p.poll_event().is_some() {}
        // Never the same instant again: a deadline the core handles only
        // once it has passed must not spin.
        let next = p.poll_timeout().unwrap_or(at + interval);
        due.push(Reverse((next.max(at + Duration::from_micros(1)), n)));
    }
    print(counts_json("done", &c, started));
}
