//! The service registry from the command line: register, watch, query.
//!
//! Every node holds every live registration (see `shoal::registry`), so
//! any process can list and watch what every other one registered. Try it
//! on one host, in two terminals:
//!
//! ```text
//! cargo run --example registry -- --register kv@1.0.0:7000 --register web@2.1.0:8080
//! cargo run --example registry
//! cargo run --example registry -- --watch kv
//! ```
//!
//! The first registers two services (host 127.0.0.1 unless `--host` says,
//! each for `--ttl` seconds, refreshed every third of that) and keeps them
//! while it runs; ^C deregisters them. The second listens a moment
//! (`--listen`), prints one `registration` line per live registration (the
//! Thalassa JSON shape), then prints every change until ^C. The third
//! watches `kv` only (`--watch kv@1.0.0`, one version; `--watch` alone,
//! everything): it starts with an `online` line for each live one.
//!
//! By default nothing leaves this host: discovery broadcasts to
//! 127.255.255.255 on UDP port 47700. `--lan` uses the real LAN with the
//! library's defaults (255.255.255.255, UDP port 12345); an explicit
//! `--broadcast`, `--multicast` or `--port` wins over either.
//! `--print-config` prints the settings and exits without sending anything.
//!
//! Every line is one JSON object with `t` (ms since the Unix epoch) and
//! `event`: `start`, `config`, `registered`, `registration` (the query),
//! `online`, `updated`, `offline` (with `reason`), `lagged`, `error`, `exit`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::{json, Value};
use shoal::registry::{Filter, Registry, RegistryEvent};
use shoal::{Config, Discovery, Registration};
use tokio::signal::unix::{signal, SignalKind};

/// Without `--lan`: broadcast on the loopback interface only.
const HOST_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
/// Without `--lan`: this example's own UDP port, so that the examples tried
/// side by side on one host do not join one another's clusters.
const HOST_PORT: u16 = 47_700;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(
    about = "Register, watch and query shoal's service registry",
    long_about = "Register, watch and query shoal's service registry.\n\n\
        By default nothing leaves this host: broadcast to 127.255.255.255 on UDP \
        port 47700. --lan uses the real LAN with shoal's defaults (255.255.255.255, \
        UDP port 12345). An explicit --broadcast, --multicast or --port wins over \
        either default."
)]
struct Args {
    /// Register NAME@VERSION:PORT, served at --host (repeatable).
    #[arg(long, value_name = "NAME@VERSION:PORT", value_parser = parse_registration)]
    register: Vec<(String, String, u16)>,
    /// The host the registered services are served at.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Seconds a registration lives unless refreshed (every third of it).
    #[arg(long, default_value_t = 30)]
    ttl: u64,
    /// Watch NAME or NAME@VERSION (alone: everything) instead of
    /// listing first; starts with an `online` line for each live one.
    #[arg(long, value_name = "NAME[@VERSION]", num_args = 0..=1, default_missing_value = "")]
    watch: Option<String>,
    /// Milliseconds to listen before listing what is registered.
    #[arg(long, default_value_t = 1000)]
    listen: u64,
    /// Use the real LAN: broadcast 255.255.255.255, UDP port 12345 (shoal's
    /// defaults). Without it nothing leaves this host.
    #[arg(long)]
    lan: bool,
    /// UDP port (default 47700; 12345 with --lan).
    #[arg(long)]
    port: Option<u16>,
    /// Broadcast address (default 127.255.255.255, this host only;
    /// 255.255.255.255 with --lan).
    #[arg(long)]
    broadcast: Option<Ipv4Addr>,
    /// Multicast group to use instead of broadcast (TTL 1 reaches the LAN).
    #[arg(long)]
    multicast: Option<Ipv4Addr>,
    /// Milliseconds between hellos.
    #[arg(long)]
    hello_interval: Option<u64>,
    /// Print the settings as a `config` line and exit, sending nothing.
    #[arg(long)]
    print_config: bool,
}

/// `kv@1.0.0:7000` → ("kv", "1.0.0", 7000).
fn parse_registration(s: &str) -> Result<(String, String, u16), String> {
    let usage = || format!("{s:?} is not NAME@VERSION:PORT");
    let (name, rest) = s.split_once('@').ok_or_else(usage)?;
    let (version, port) = rest.rsplit_once(':').ok_or_else(usage)?;
    let port = port.parse().map_err(|_| usage())?;
    Ok((name.to_owned(), version.to_owned(), port))
}

/// `kv` → the name, `kv@1.0.0` → the version, empty → everything.
fn filter(watch: &str) -> Filter {
    match watch.split_once('@') {
        _ if watch.is_empty() => Filter::All,
        Some((name, version)) => Filter::version(name, version),
        None => Filter::name(watch),
    }
}

/// Prints one JSON line with `t` (ms since the Unix epoch), flushed at once.
fn emit(event: &str, fields: Value) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let mut line = json!({"t": t, "event": event});
    if let (Some(line), Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn config(args: &Args) -> Result<Config, shoal::ConfigError> {
    let mut b = Config::builder();
    if !args.lan {
        b = b.broadcast(HOST_BROADCAST).port(HOST_PORT);
    }
    if let Some(v) = args.port {
        b = b.port(v);
    }
    if let Some(v) = args.broadcast {
        b = b.broadcast(v);
    }
    if let Some(v) = args.multicast {
        b = b.multicast(v);
    }
    if let Some(v) = args.hello_interval {
        b = b.hello_interval(Duration::from_millis(v));
    }
    b.build()
}

fn print_config(config: &Config) {
    let host_only = match config.multicast() {
        Some(_) => config.multicast_ttl() == 0,
        None => config.broadcast().is_loopback(),
    };
    emit(
        "config",
        json!({
            "broadcast": config.multicast().is_none().then(|| config.broadcast().to_string()),
            "multicast": config.multicast().map(|m| m.to_string()),
            "port": config.port(),
            "host_only": host_only,
        }),
    );
}

/// One line per registry event.
fn print_event(event: RegistryEvent) {
    match event {
        RegistryEvent::Online(r) => emit("online", json!({"registration": r})),
        RegistryEvent::Updated(r) => emit("updated", json!({"registration": r})),
        RegistryEvent::Offline {
            registration,
            reason,
        } => emit(
            "offline",
            json!({"registration": registration, "reason": reason}),
        ),
        RegistryEvent::Lagged(missed) => emit("lagged", json!({"missed": missed})),
        other => emit("other", json!({"text": other.to_string()})),
    }
}

async fn run(args: Args, config: Config) -> Result<(), BoxError> {
    // Installed before anything else, so an early ^C is not lost.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let node = Discovery::start(config).await?;
    let registry = node.registry();

    let ttl = Duration::from_secs(args.ttl);
    let mut ours = Vec::new();
    for (name, version, port) in &args.register {
        let registration = Registration::builder(name, version, &args.host, *port).build()?;
        registry.register(registration.clone(), ttl).await?;
        emit(
            "registered",
            json!({"registration": registration, "ttl": args.ttl}),
        );
        ours.push(registration.id().to_owned());
    }

    let filter = filter(args.watch.as_deref().unwrap_or(""));
    let mut listed = std::collections::HashSet::new();
    if args.watch.is_none() {
        // Let hellos and pulls bring every node's table, then list it.
        tokio::time::sleep(Duration::from_millis(args.listen)).await;
        for registration in registry.query(&filter).await? {
            listed.insert(registration.id().to_owned());
            emit("registration", json!({"registration": registration}));
        }
    }
    let mut watch = registry.watch(filter).await?;
    // A watch starts with an online for each live registration, ready at
    // once: skip those we just listed.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::ZERO, watch.recv()).await {
        match event {
            RegistryEvent::Online(r) if listed.contains(r.id()) => {}
            event => print_event(event),
        }
    }

    let mut refresh = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
    refresh.tick().await; // the first tick is now: we just registered
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = refresh.tick() => refresh_all(&registry, &ours).await,
            event = watch.recv() => match event {
                Some(event) => print_event(event),
                None => return Err("the registry stopped".into()),
            },
        }
    }
    // Others see them go now, not when their time to live lapses.
    for id in &ours {
        registry.deregister(id).await?;
    }
    node.shutdown().await;
    Ok(())
}

/// Keeps our registrations alive: a real sidecar would refresh only while
/// what it registered is healthy.
async fn refresh_all(registry: &Registry, ours: &[String]) {
    for id in ours {
        if let Err(e) = registry.refresh(id).await {
            emit("error", json!({"message": format!("refresh {id}: {e}")}));
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    emit("start", json!({}));
    let result = match config(&args) {
        Err(e) => Err(e.into()),
        Ok(config) => {
            print_config(&config);
            if args.print_config {
                Ok(())
            } else {
                run(args, config).await
            }
        }
    };
    match result {
        Ok(()) => {
            emit("exit", json!({"code": 0}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            emit("error", json!({"message": e.to_string()}));
            emit("exit", json!({"code": 1}));
            ExitCode::FAILURE
        }
    }
}
