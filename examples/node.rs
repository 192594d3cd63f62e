//! One shoal node driven by flags, printing one JSON object per line.
//!
//! For trying shoal by hand and for measuring it against other
//! implementations (tests/node/peer.js drives a node-discovery peer with the
//! same flags and output). Try two on one host:
//!
//! ```text
//! cargo run --example node -- --id a --join chat
//! cargo run --example node -- --id b \
//!     --send-channel chat --send-count 3 --send-delay 1000 --exit-after 3000
//! ```
//!
//! By default nothing leaves this host: the node broadcasts to
//! 127.255.255.255 (the loopback interface) on UDP port 40123. `--lan` uses
//! the real LAN with the library's defaults instead (on each LAN interface,
//! its subnet's broadcast address, where 255.255.255.255 would leave by the
//! default route only; UDP port 12345, as node-discovery); an explicit
//! `--broadcast`, `--multicast` or `--port` wins over either default.
//! Naming an interface (`--interface eth0`, repeatable), a seed (`--seed
//! HOST:PORT`, repeatable) or `--ipv6` is an explicit choice of the real
//! network too: the node then uses the library's interface choice (the
//! named interfaces, or every up, multicast-capable LAN interface), still
//! on port 40123 unless `--lan` or `--port` says otherwise.
//! `--print-config` prints the settings and exits without sending anything.
//!
//! Every line is one JSON object with `t` (ms since the Unix epoch),
//! `node` (our `--id`), `event` and `peer`: `start`, `config` (the
//! discovery settings), `ready`, `added`, `removed`, `master`, `promotion`,
//! `demotion`, `msg`, `send_start`, `send_done`, `stats`, `error`, `exit`
//! (see tests/node/README.md; `added` says where the peer was heard, `via`,
//! and an IPv6 link-local `peer_addr` shows its interface, `[fe80::1%eth0]:12345`), and for the registry (`--register
//! kv@1.0.0:7000`) `registered`, `deregistered`, `reg_online`,
//! `reg_updated`, `reg_offline` (with `id` and `reason`) or, with
//! `--registry-quiet`, `reg_count`.

use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Map, Value};
use shoal::registry::{Filter, Registration, RegistryEvent};
use shoal::{
    ChannelMessage, Config, Discovery, Encryption, Event, IfKind, Peer, Removal, Subscription,
};

/// Without `--lan`: broadcast on the loopback interface only.
const HOST_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
/// Without `--lan`: this example's own UDP port, so that the examples tried
/// side by side on one host do not join one another's clusters.
const HOST_PORT: u16 = 40_123;

#[derive(Parser, Debug)]
#[command(
    about = "Run one shoal node; prints one JSON event per line",
    long_about = "Run one shoal node; prints one JSON event per line.\n\n\
        By default nothing leaves this host: broadcast to 127.255.255.255 on UDP \
        port 40123. --lan uses the real LAN with shoal's defaults (each LAN \
        interface's subnet broadcast, not 255.255.255.255, which leaves by the default \
        route only; UDP port 12345). An explicit --broadcast, --multicast or --port wins over \
        either default. --interface, --seed and --ipv6 choose the real network too \
        (the named interfaces, or every up LAN interface).\n\n\
        Example, two subnets joined by a router, where broadcast does not cross:\n  \
        node --lan --interface eth0 --seed 10.0.2.7:12345"
)]
struct Args {
    /// A label advertised as {"id": ID} in the node's info (default host-pid).
    #[arg(long)]
    id: Option<String>,
    /// Use the real LAN: each LAN interface's subnet broadcast, UDP port
    /// 12345 (shoal's defaults). Without it nothing leaves this host.
    #[arg(long)]
    lan: bool,
    /// UDP port (default 40123; 12345 with --lan).
    #[arg(long)]
    port: Option<u16>,
    /// Local address of the socket (default 0.0.0.0).
    #[arg(long)]
    bind: Option<IpAddr>,
    /// Broadcast address, the one destination (default 127.255.255.255,
    /// this host only; with --lan, each interface's subnet broadcast;
    /// 255.255.255.255 leaves by the default route only).
    #[arg(long)]
    broadcast: Option<Ipv4Addr>,
    /// Multicast group to use instead of broadcast (TTL 1 reaches the LAN).
    #[arg(long)]
    multicast: Option<Ipv4Addr>,
    /// Multicast interface address (IP_MULTICAST_IF and the group join).
    #[arg(long)]
    multicast_interface: Option<Ipv4Addr>,
    /// Multicast TTL (default 1, the LAN; 0 keeps it on this host).
    #[arg(long)]
    multicast_ttl: Option<u32>,
    /// Use this network interface (repeatable); default: every interface
    /// that is up, multicast-capable and neither loopback, point-to-point
    /// nor a bridge of containers or VMs (docker0). A choice of the real
    /// network.
    #[arg(long, value_name = "NAME")]
    interface: Vec<String>,
    /// Also speak IPv6, on the link-local multicast group ff02::5ea1 of the
    /// chosen interfaces. A choice of the real network.
    #[arg(long)]
    ipv6: bool,
    /// A peer to reach by unicast, HOST:PORT, where HOST is an address or a
    /// name (re-resolved every --seed-refresh); repeatable. For networks
    /// without broadcast. A choice of the real network.
    #[arg(long, value_name = "HOST:PORT")]
    seed: Vec<String>,
    /// Milliseconds between resolutions of seed names (default 60000).
    #[arg(long, value_name = "MS")]
    seed_refresh: Option<u64>,
    /// Send nothing to the broadcast or multicast address: reach peers by
    /// unicast only, from the seeds on.
    #[arg(long)]
    unicast_only: bool,
    /// Milliseconds between listings of the host's interfaces (default 5000).
    #[arg(long, value_name = "MS")]
    rescan_interval: Option<u64>,
    /// The address peers should reach us at, when not the source address of
    /// our datagrams (NAT, a container's published port).
    #[arg(long, value_name = "IP")]
    advertise_addr: Option<IpAddr>,
    /// Secure mode with this key: 64 hex digits or 44 characters of base64
    /// (for example from `openssl rand -hex 32`); anything else is refused.
    #[arg(long)]
    key: Option<String>,
    /// Secure mode with a key derived from this passphrase (Argon2id).
    #[arg(long)]
    passphrase: Option<String>,
    /// node-discovery's key, for its legacy cipher (with --encryption legacy).
    #[arg(long)]
    legacy_key: Option<String>,
    /// With a key: secure (default), legacy (node-discovery peers, needs
    /// --legacy-key), secure-accept-plain or plain-accept-secure (rolling
    /// enablement).
    #[arg(long, value_parser = ["secure", "legacy", "secure-accept-plain", "plain-accept-secure"])]
    encryption: Option<String>,
    /// Lost hellos a peer survives (default 5; 0 when --node-timeout or
    /// --master-timeout is given, which then must hold them).
    #[arg(long)]
    missed_hellos: Option<u32>,
    /// Election weight; the heaviest node is master (default random).
    #[arg(long)]
    weight: Option<f64>,
    /// Milliseconds between hellos.
    #[arg(long)]
    hello_interval: Option<u64>,
    /// Milliseconds between checks for silent peers and elections.
    #[arg(long)]
    check_interval: Option<u64>,
    /// Milliseconds of silence after which a peer is removed.
    #[arg(long)]
    node_timeout: Option<u64>,
    /// Milliseconds of silence after which a master is removed.
    #[arg(long)]
    master_timeout: Option<u64>,
    /// JSON object merged with {"id": ID} and advertised.
    #[arg(long)]
    advertise: Option<String>,
    /// Channel to join (repeatable).
    #[arg(long)]
    join: Vec<String>,
    /// After ready (and --send-delay), send {"from": ID, "seq": N} messages on this channel.
    #[arg(long)]
    send_channel: Option<String>,
    /// How many messages to send.
    #[arg(long, default_value_t = 1)]
    send_count: u64,
    /// Size in bytes of each message's JSON.
    #[arg(long)]
    send_size: Option<usize>,
    /// Yield to the runtime every K sends (0 = never).
    #[arg(long, default_value_t = 0)]
    send_batch: u64,
    /// Delay in ms after ready before sending.
    #[arg(long, default_value_t = 0)]
    send_delay: u64,
    /// Pace the sends to this many messages per second (0 = as fast as
    /// the library takes them): message N is not sent before
    /// start + N/RATE, and late ones go at once, so the average holds.
    #[arg(long, default_value_t = 0.0, value_name = "PER_S", value_parser = send_rate)]
    send_rate: f64,
    /// Events and channel messages buffered per stream (default 1024): a
    /// consumer further behind than this loses the oldest, and they are
    /// counted (`events_lost` in the exit stats).
    #[arg(long, value_name = "N")]
    event_capacity: Option<usize>,
    /// Exit after this many ms (0 = run until SIGTERM/SIGINT).
    #[arg(long, default_value_t = 0)]
    exit_after: u64,
    /// Append output to this file instead of stdout.
    #[arg(long)]
    log: Option<String>,
    /// Print the settings as a `config` line and exit, sending nothing.
    #[arg(long)]
    print_config: bool,
    /// Register NAME@VERSION:PORT in the LAN's registry after ready
    /// (repeatable).
    #[arg(long, value_name = "NAME@VERSION:PORT")]
    register: Vec<String>,
    /// Register this many of each --register, on ports PORT, PORT+1, ...
    #[arg(long, default_value_t = 1)]
    register_count: u16,
    /// Host of the registrations.
    #[arg(long, default_value = "127.0.0.1")]
    register_host: String,
    /// Time to live of the registrations, in ms.
    #[arg(long, default_value_t = 30_000)]
    ttl: u64,
    /// Refresh the registrations every this many ms (default ttl/3; 0:
    /// never, so they expire after --ttl).
    #[arg(long)]
    refresh: Option<u64>,
    /// Deregister them this many ms after they were registered.
    #[arg(long)]
    deregister_after: Option<u64>,
    /// Wait this many ms after ready before registering (so that every
    /// peer already knows this node: latency benchmarks).
    #[arg(long, default_value_t = 0)]
    register_delay: u64,
    /// Print only a `reg_count` line per 100 registry changes, not a line
    /// per event.
    #[arg(long)]
    registry_quiet: bool,
}

/// Parses NAME@VERSION:PORT.
fn registration_spec(spec: &str) -> Option<(&str, &str, u16)> {
    let (name, rest) = spec.split_once('@')?;
    let (version, port) = rest.rsplit_once(':')?;
    Some((name, version, port.parse().ok()?))
}

/// Writes event lines, each flushed as soon as nothing more is pending.
#[derive(Clone)]
struct Out {
    id: String,
    sink: Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>,
}

/// A `msg` line, written straight into the buffer (no `Map` per message).
#[derive(serde::Serialize)]
struct MsgLine<'a> {
    t: f64,
    node: &'a str,
    event: &'static str,
    peer: Option<&'a str>,
    channel: &'a str,
    seq: Option<&'a Value>,
    bytes: usize,
}

/// Counts the bytes of a value's JSON without building the string.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

impl Out {
    /// Writes the `msg` lines of a burst of channel messages: the first,
    /// then whatever the subscription already holds, then one flush, so a
    /// line reaches the file as soon as the burst is drained and a fast
    /// sender does not cost a write system call per message.
    fn messages(&self, first: ChannelMessage, sub: &mut Subscription) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Some(first);
        // Bounded, so that a never-ending flood still flushes regularly.
        for _ in 0..1024 {
            let Some(m) = next.take().or_else(|| sub.try_recv()) else {
                break;
            };
            let mut counter = Counter(0);
            let _ = serde_json::to_writer(&mut counter, &m.data);
            let line = MsgLine {
                t: now_ms(),
                node: &self.id,
                event: "msg",
                peer: m.data.get("from").and_then(Value::as_str),
                channel: &m.channel,
                seq: m.data.get("seq"),
                bytes: counter.0,
            };
            let _ = serde_json::to_writer(&mut *sink, &line);
            let _ = sink.write_all(b"\n");
        }
        let _ = sink.flush();
    }

    /// Writes one line and flushes it.
    fn emit(&self, event: &str, peer: Option<&str>, fields: Value) {
        let t = now_ms();
        let mut line = Map::new();
        line.insert("t".into(), json!(t));
        line.insert("node".into(), json!(self.id));
        line.insert("event".into(), json!(event));
        line.insert("peer".into(), json!(peer));
        if let Value::Object(extra) = fields {
            line.extend(extra);
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(sink, "{}", Value::Object(line));
        let _ = sink.flush();
    }
}

/// A peer's address as `ip:port`; an IPv6 link-local one with its scope
/// as the interface's name when we know it (`[fe80::1%eth0]:12345`, which
/// `ping` and `ssh` accept too), else as its number.
fn peer_addr(peer: &Peer) -> String {
    match (peer.addr, &peer.via) {
        (SocketAddr::V6(v6), Some(via)) if v6.scope_id() != 0 && v6.scope_id() == via.index => {
            format!("[{}%{}]:{}", v6.ip(), via.interface, v6.port())
        }
        (addr, _) => addr.to_string(),
    }
}

/// An interface rule as the `config` line shows it: a name as itself.
fn if_kind_label(kind: &IfKind) -> String {
    match kind {
        IfKind::Name(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

/// Where we heard `peer`: `{"interface", "index", "local"}`, or null.
fn via(peer: &Peer) -> Value {
    match &peer.via {
        Some(v) => {
            json!({"interface": &*v.interface, "index": v.index, "local": v.local.to_string()})
        }
        None => Value::Null,
    }
}

fn peer_label(peer: &Peer) -> Option<&str> {
    peer.info.as_ref()?.get("id")?.as_str()
}

impl Args {
    /// Whether a flag names the real network beyond the broadcast and
    /// multicast flags: an interface, a seed, or IPv6.
    fn names_network(&self) -> bool {
        !self.interface.is_empty() || !self.seed.is_empty() || self.ipv6
    }
}

fn config(args: &Args, info: Value) -> Result<Config, shoal::ConfigError> {
    let ms = Duration::from_millis;
    let mut b = Config::builder().advertise(info);
    if !args.lan {
        b = b.port(HOST_PORT);
        if !args.names_network() {
            // This host only: the loopback interface's broadcast address,
            // and the loopback interface only (the library's default choice
            // would be the host's LAN interfaces).
            b = b.broadcast(HOST_BROADCAST);
        }
    }
    // Sending to loopback means listening there too: the driver ignores
    // datagrams from interfaces it has not chosen.
    let loopback_only = match args.multicast {
        Some(_) => args.multicast_interface.is_some_and(|a| a.is_loopback()),
        None => match args.broadcast {
            Some(addr) => addr.is_loopback(),
            None => !args.lan && !args.names_network(),
        },
    };
    if args.interface.is_empty() && loopback_only {
        b = b.interfaces([IfKind::Loopback]);
    }
    if !args.interface.is_empty() {
        b = b.interfaces(args.interface.iter().map(|n| IfKind::Name(n.clone())));
    }
    if args.ipv6 {
        b = b.ipv6(true);
    }
    if !args.seed.is_empty() {
        b = b.seeds(&args.seed);
    }
    if let Some(v) = args.seed_refresh {
        b = b.seed_refresh(ms(v));
    }
    if args.unicast_only {
        b = b.unicast_only(true);
    }
    if let Some(v) = args.rescan_interval {
        b = b.rescan_interval(ms(v));
    }
    if let Some(v) = args.advertise_addr {
        b = b.advertise_addr(v);
    }
    if let Some(v) = args.port {
        b = b.port(v);
    }
    if let Some(v) = args.bind {
        b = b.bind(v);
    }
    if let Some(v) = args.broadcast {
        b = b.broadcast(v);
    }
    if let Some(v) = args.multicast {
        b = b.multicast(v);
    }
    if let Some(v) = args.multicast_interface {
        b = b.multicast_interface(v);
    }
    if let Some(v) = args.multicast_ttl {
        b = b.multicast_ttl(v);
    }
    if let Some(v) = &args.key {
        b = b.secret_key(v.as_str());
    }
    if let Some(v) = &args.passphrase {
        b = b.passphrase(v.as_str());
    }
    if let Some(v) = &args.legacy_key {
        b = b.legacy_key(v.as_str());
    }
    if let Some(mode) = args.encryption.as_deref() {
        b = b.encryption(match mode {
            "legacy" => Encryption::LegacyNodeDiscovery,
            "secure-accept-plain" => Encryption::SecureAcceptPlaintext,
            "plain-accept-secure" => Encryption::PlaintextAcceptSecure,
            _ => Encryption::Secure,
        });
    }
    if let Some(v) = args.missed_hellos {
        b = b.missed_hellos(v);
    }
    if let Some(v) = args.weight {
        b = b.weight(v);
    }
    if let Some(v) = args.hello_interval {
        b = b.hello_interval(ms(v));
    }
    if let Some(v) = args.event_capacity {
        b = b.event_capacity(v);
    }
    if let Some(v) = args.check_interval {
        b = b.check_interval(ms(v));
    }
    if let Some(v) = args.node_timeout {
        b = b.node_timeout(ms(v));
    }
    if let Some(v) = args.master_timeout {
        b = b.master_timeout(ms(v));
    }
    b.build()
}

/// A message whose JSON is `size` bytes (or as small as it can be).
fn message(from: &str, seq: u64, size: Option<usize>) -> Value {
    match size {
        None => json!({"from": from, "seq": seq}),
        Some(size) => {
            let mut value = json!({"from": from, "seq": seq, "pad": ""});
            let base = value.to_string().len();
            value["pad"] = json!("x".repeat(size.saturating_sub(base)));
            value
        }
    }
}

/// `--send-rate`: a finite number of messages per second, 0 for unpaced.
fn send_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: give messages per second, e.g. 50000, or 0 for as fast as the library takes them"
        )),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "host".into());
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("{host}-{}", std::process::id()));
    let sink: Box<dyn Write + Send> = match &args.log {
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("cannot open --log {path}: {e}");
                std::process::exit(2);
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let out = Out {
        id: id.clone(),
        sink: Arc::new(Mutex::new(BufWriter::with_capacity(1 << 16, sink))),
    };
    out.emit("start", None, json!({}));
    let code = run(&args, &id, &out).await;
    out.emit("exit", None, json!({"code": code}));
    std::process::exit(code);
}

async fn run(args: &Args, id: &str, out: &Out) -> i32 {
    let mut info = Map::new();
    if let Some(text) = &args.advertise {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => info.extend(map),
            _ => {
                out.emit(
                    "error",
                    None,
                    json!({"message": "--advertise must be a JSON object"}),
                );
                return 2;
            }
        }
    }
    info.insert("id".into(), json!(id));
    let config = match config(args, Value::Object(info)) {
        Ok(c) => c,
        Err(e) => {
            out.emit("error", None, json!({"message": e.to_string()}));
            return 2;
        }
    };
    // Where our packets go, before any is sent. A named interface, a seed
    // or IPv6 is a choice of the real network, whatever the broadcast.
    let host_only = !args.names_network()
        && match config.multicast() {
            Some(_) => config.multicast_ttl() == 0,
            None => config.broadcast().is_loopback(),
        };
    let interfaces = config
        .interfaces()
        .map(|kinds| kinds.iter().map(if_kind_label).collect::<Vec<_>>());
    out.emit(
        "config",
        None,
        json!({
            "broadcast": config.multicast().is_none().then(|| config.broadcast().to_string()),
            // No --broadcast and not this host only: the library sends to
            // each chosen interface's own subnet broadcast address instead.
            "per_interface": config.multicast().is_none()
                && args.broadcast.is_none()
                && (args.lan || args.names_network()),
            "multicast": config.multicast().map(|m| m.to_string()),
            "port": config.port(),
            "bind": config.bind().to_string(),
            "host_only": host_only,
            "interfaces": interfaces,
            "ipv6": config.ipv6(),
            "seeds": config.seeds().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
            "unicast_only": config.unicast_only(),
        }),
    );
    if args.print_config {
        return 0;
    }

    // Before the node starts: a SIGTERM sent as soon as peers see us must
    // find a handler, not the default action (which exits with no report).
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            out.emit("error", None, json!({"message": e.to_string()}));
            return 1;
        }
    };
    let node = match Discovery::start(config).await {
        Ok(node) => node,
        Err(e) => {
            out.emit("error", None, json!({"message": e.to_string()}));
            return 1;
        }
    };
    let mut events = node.events();
    for channel in &args.join {
        match node.join(channel) {
            Ok(mut sub) => {
                let out = out.clone();
                tokio::spawn(async move {
                    while let Some(m) = sub.recv().await {
                        out.messages(m, &mut sub);
                    }
                });
            }
            Err(e) => {
                out.emit("error", None, json!({"message": e.to_string()}));
                return 2;
            }
        }
    }
    // `iid`: our discovery id, as peers see it in their tables.
    out.emit(
        "ready",
        None,
        json!({"weight": node.me().weight, "iid": node.id().as_str()}),
    );

    let events_out = out.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let o = &events_out;
            match event {
                Event::Added(p) => o.emit(
                    "added",
                    peer_label(&p),
                    json!({"peer_addr": peer_addr(&p), "via": via(&p)}),
                ),
                Event::Removed(p, why) => o.emit(
                    "removed",
                    peer_label(&p),
                    json!({
                        "peer_addr": peer_addr(&p),
                        "reason": match why {
                            Removal::Goodbye => "goodbye",
                            _ => "timeout",
                        },
                    }),
                ),
                Event::Master(p) => o.emit(
                    "master",
                    peer_label(&p),
                    json!({"peer_addr": peer_addr(&p)}),
                ),
                Event::Promotion(_) => o.emit("promotion", None, json!({})),
                Event::Demotion(_) => o.emit("demotion", None, json!({})),
                // A peer we cannot authenticate (another key, none, forged):
                // rate-limited by the core to one line per address per 10 s.
                Event::Unauthenticated {
                    from,
                    key_id,
                    dropped,
                    error,
                } => o.emit(
                    "unauthenticated",
                    None,
                    json!({
                        "from": from.to_string(),
                        "key_id": key_id.map(|k| k.to_string()),
                        "dropped": dropped,
                        "error": error.to_string(),
                    }),
                ),
                Event::Lagged(n) => o.emit(
                    "error",
                    None,
                    json!({"message": format!("lost {n} events")}),
                ),
                _ => {}
            }
        }
    });

    // The registry: every change as a line (`reg_online`, `reg_updated`,
    // `reg_offline` with the id and the reason), or a count per 100.
    let mut watch = match node.registry().watch(Filter::All).await {
        Ok(watch) => watch,
        Err(e) => {
            out.emit("error", None, json!({"message": e.to_string()}));
            return 1;
        }
    };
    let (registry_out, quiet) = (out.clone(), args.registry_quiet);
    tokio::spawn(async move {
        let mut live: i64 = 0;
        while let Some(event) = watch.recv().await {
            let (name, fields) = match &event {
                RegistryEvent::Online(r) => {
                    live += 1;
                    ("reg_online", json!({"id": r.id()}))
                }
                RegistryEvent::Updated(r) => ("reg_updated", json!({"id": r.id()})),
                RegistryEvent::Offline {
                    registration,
                    reason,
                } => {
                    live -= 1;
                    (
                        "reg_offline",
                        json!({"id": registration.id(), "reason": reason}),
                    )
                }
                RegistryEvent::Lagged(n) => (
                    "error",
                    json!({"message": format!("registry: lost {n} events")}),
                ),
                _ => continue,
            };
            if !quiet {
                registry_out.emit(name, None, fields);
            } else if live % 100 == 0 {
                registry_out.emit("reg_count", None, json!({"count": live}));
            }
        }
    });
    let mut registrations = Vec::new();
    for spec in &args.register {
        let Some((name, version, port)) = registration_spec(spec) else {
            out.emit(
                "error",
                None,
                json!({"message": format!("--register {spec}: expected NAME@VERSION:PORT")}),
            );
            return 2;
        };
        for i in 0..args.register_count {
            let port = port.saturating_add(i);
            match Registration::builder(name, version, args.register_host.as_str(), port).build() {
                Ok(r) => registrations.push(r),
                Err(e) => {
                    out.emit("error", None, json!({"message": e.to_string()}));
                    return 2;
                }
            }
        }
    }
    let mut refresher = None;
    if !registrations.is_empty() {
        tokio::time::sleep(Duration::from_millis(args.register_delay)).await;
        let registry = node.registry();
        let ttl = Duration::from_millis(args.ttl);
        for r in &registrations {
            if let Err(e) = registry.register(r.clone(), ttl).await {
                out.emit("error", None, json!({"message": e.to_string()}));
                return 2;
            }
        }
        out.emit(
            "registered",
            None,
            json!({"count": registrations.len(), "ttl_ms": args.ttl}),
        );
        let every = args.refresh.unwrap_or(args.ttl / 3);
        let deregister_after = args.deregister_after.map(Duration::from_millis);
        let out = out.clone();
        refresher = Some(tokio::spawn(async move {
            let deregister = async {
                match deregister_after {
                    Some(after) => tokio::time::sleep(after).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(deregister);
            let mut refresh = (every > 0).then(|| {
                let every = Duration::from_millis(every);
                tokio::time::interval_at(tokio::time::Instant::now() + every, every)
            });
            loop {
                tokio::select! {
                    () = &mut deregister => {
                        for r in &registrations {
                            let _ = registry.deregister(r.id()).await;
                        }
                        out.emit("deregistered", None, json!({"count": registrations.len()}));
                        return;
                    }
                    _ = async { refresh.as_mut().unwrap().tick().await }, if refresh.is_some() => {
                        for r in &registrations {
                            let _ = registry.refresh(r.id()).await;
                        }
                    }
                }
            }
        }));
    }

    let mut sender = None;
    if let Some(channel) = args.send_channel.clone() {
        let (node, out, id) = (node.clone(), out.clone(), id.to_owned());
        let (count, size, batch, delay, rate) = (
            args.send_count,
            args.send_size,
            args.send_batch,
            args.send_delay,
            args.send_rate,
        );
        sender = Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let bytes = message(&id, 0, size).to_string().len();
            out.emit(
                "send_start",
                None,
                json!({"channel": channel, "count": count, "bytes": bytes, "rate": rate}),
            );
            let started = Instant::now();
            for seq in 0..count {
                if rate > 0.0 {
                    let due = started + Duration::from_secs_f64(seq as f64 / rate);
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                }
                if let Err(e) = node.send(&channel, &message(&id, seq, size)) {
                    out.emit("error", None, json!({"message": e.to_string()}));
                    return;
                }
                if batch > 0 && (seq + 1) % batch == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            out.emit(
                "send_done",
                None,
                json!({"channel": channel, "count": count, "ms": ms}),
            );
        }));
    }

    let exit_after = async {
        if args.exit_after == 0 {
            std::future::pending::<()>().await
        } else {
            tokio::time::sleep(Duration::from_millis(args.exit_after)).await
        }
    };
    tokio::select! {
        _ = exit_after => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    // Stop the sender first: once the node is shut down its sends fail, and
    // it would report that as an error.
    for task in [sender, refresher].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    let stats = node.stats();
    out.emit("stats", None, json!({ "stats": stats }));
    node.shutdown().await;
    0
}
