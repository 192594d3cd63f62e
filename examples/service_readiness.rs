//! Service readiness with real processes: a web front end that waits for
//! the services it depends on. The Rust counterpart of node-discovery's
//! `examples/service` (which used Redis and RabbitMQ); here the two backing
//! services are tiny TCP servers built into this same binary, so it runs
//! anywhere.
//!
//! One binary, three roles:
//!
//! * `--role kv`: a key-value server. Line protocol: `SET key value` → `OK`,
//!   `GET key` → the value or `NIL`, `PING` → `PONG`. Advertises
//!   `{"name": "kv", "port": P}`.
//! * `--role queue`: a FIFO queue server: `PUSH item` → `OK`, `POP` → the
//!   oldest item or `EMPTY`, `PING` → `PONG`. Advertises `{"name": "queue", "port": P}`.
//! * `--role web`: needs `kv` and `queue`. For every instance discovered, a
//!   setup hook opens a TCP connection to it and checks it with `PING`; only
//!   once both services have a working instance ([`ServiceEvent::Ready`]) does
//!   it start its HTTP server and advertise `{"name": "web", "ready": true,
//!   "port": HTTP_PORT}`. `GET /` counts visits in kv and pushes a visit
//!   record onto the queue: `200 {"visits": n, "queued": true}`. While a
//!   needed service has no live instance ([`ServiceEvent::NotReady`]) it takes
//!   no new work and answers `503 {"error": ..., "service": "kv"}`, as it does
//!   when a connection breaks mid-request.
//!
//! Try it on one host, in three terminals (start them in any order; the web
//! server only starts listening once kv and queue are up). By default
//! discovery goes to 127.255.255.255 on UDP port 47500 and every TCP server
//! listens on 127.0.0.1, so nothing leaves this host:
//!
//! ```text
//! cargo run --example service_readiness -- --role web --http-port 8080
//! cargo run --example service_readiness -- --role kv
//! cargo run --example service_readiness -- --role queue
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! Stop kv (Ctrl-C) and `curl` answers 503 naming kv: at once, because the
//! connection broke, and from then on, because web prints `not_ready` as
//! soon as kv's goodbye arrives. A kv that crashes (`kill -9`) says no
//! goodbye: it is removed when it has been silent for the node timeout, so
//! at most 2.6 s after the crash with the default timings (each peer
//! expires at its own deadline; the check interval adds nothing). Start kv
//! again and the web service is back.
//!
//! Every role prints one JSON object per line, each with `t` (ms since the
//! Unix epoch) and `event`: `start`, `config` (the discovery settings),
//! `listening` (kv/queue at once, web only when ready), and for web `setup`
//! (an instance passed its setup hook), `setup_failed`, `ready`,
//! `not_ready`, `advertise` (what it now advertises), then `error`, `exit`.
//! `--print-config` prints `start` and `config` and exits without sending
//! anything.
//!
//! On a real LAN run each role on any machine with `--lan`: discovery then
//! uses the library's defaults, 255.255.255.255 on UDP port 12345, and the
//! TCP servers listen on every interface. An explicit `--broadcast`,
//! `--multicast`, `--port` or `--listen` wins over either default; pick a
//! dedicated `--port` per system. kv and queue listen on an ephemeral TCP
//! port that they advertise; their line protocols have no authentication,
//! so use them on a trusted network only (or `--listen` on one address).

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};
use shoal::{Config, NodeId, ServiceDiscovery, ServiceEvent, ServiceInstance, Services};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// What the web role needs before it takes requests.
const NEEDS: [&str; 2] = ["kv", "queue"];
/// Bound for connecting to a backend and for each request/reply on it, so a
/// dead host costs a request this long at most, never a hang.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(2);
/// A setup hook that takes longer fails (the instance is retried when it
/// is seen again).
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound for reading an HTTP request head, so idle clients do not pile up.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest HTTP request head we read.
const HTTP_MAX_HEAD: usize = 8 * 1024;

/// Without `--lan`: discovery broadcasts on the loopback interface only.
const HOST_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
/// Without `--lan`: this example's own UDP port, so that the examples tried
/// side by side on one host do not join one another's clusters.
const HOST_PORT: u16 = 47_500;

#[derive(Parser, Debug)]
#[command(
    about = "kv / queue / web services that find each other with shoal",
    long_about = "kv / queue / web services that find each other with shoal.\n\n\
        By default everything stays on this host: discovery broadcasts to \
        127.255.255.255 on UDP port 47500 and the TCP servers listen on 127.0.0.1. \
        --lan uses the real LAN with shoal's defaults (255.255.255.255, UDP port \
        12345, TCP on every interface). An explicit --broadcast, --multicast, \
        --port or --listen wins over either default."
)]
struct Args {
    /// Which service this process runs.
    #[arg(long, value_enum)]
    role: Role,
    /// Use the real LAN: broadcast 255.255.255.255, UDP port 12345 (shoal's
    /// defaults), TCP on every interface. Without it nothing leaves this host.
    #[arg(long)]
    lan: bool,
    /// Discovery UDP port; every process of one system uses the same
    /// (default 47500; 12345 with --lan).
    #[arg(long)]
    port: Option<u16>,
    /// Broadcast address (default 127.255.255.255, this host only;
    /// 255.255.255.255 with --lan).
    #[arg(long)]
    broadcast: Option<Ipv4Addr>,
    /// Multicast group to use instead of broadcast.
    #[arg(long)]
    multicast: Option<Ipv4Addr>,
    /// Local interface address for multicast.
    #[arg(long)]
    multicast_interface: Option<Ipv4Addr>,
    /// Hello interval, ms.
    #[arg(long)]
    hello_interval: Option<u64>,
    /// Check interval, ms.
    #[arg(long)]
    check_interval: Option<u64>,
    /// Node timeout, ms.
    #[arg(long)]
    node_timeout: Option<u64>,
    /// Master timeout, ms.
    #[arg(long)]
    master_timeout: Option<u64>,
    /// Address the TCP servers (kv, queue, web's HTTP) listen on (default
    /// 127.0.0.1 when discovery stays on this host, 0.0.0.0 otherwise).
    #[arg(long)]
    listen: Option<IpAddr>,
    /// HTTP port of the web role (0: any free port; the `listening` line says which).
    #[arg(long, default_value_t = 0)]
    http_port: u16,
    /// Print the settings as a `config` line and exit, sending nothing.
    #[arg(long)]
    print_config: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Kv,
    Queue,
    Web,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Kv => "kv",
            Role::Queue => "queue",
            Role::Web => "web",
        }
    }
}

type BoxError = Box<dyn Error + Send + Sync>;

/// Prints one JSON line, with `t` (ms since the Unix epoch), flushed
/// at once so that whoever reads our stdout through a pipe sees it as it
/// happens.
fn emit(fields: Value) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let mut line = serde_json::Map::new();
    line.insert("t".into(), json!(t));
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", Value::Object(line));
    let _ = out.flush();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked request handler must not take the whole service down.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(args: &Args) -> Result<Config, shoal::ConfigError> {
    let ms = Duration::from_millis;
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
    if let Some(v) = args.multicast_interface {
        b = b.multicast_interface(v);
    }
    if let Some(v) = args.hello_interval {
        b = b.hello_interval(ms(v));
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

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when it is first polled, so a signal during startup is not
/// lost (nor fatal).
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// True when discovery with `config` sends nothing off this host:
/// broadcast on loopback, or multicast with TTL 0.
fn discovery_host_only(config: &Config) -> bool {
    match config.multicast() {
        Some(_) => config.multicast_ttl() == 0,
        None => config.broadcast().is_loopback(),
    }
}

/// Where the TCP servers listen: as far as discovery reaches, unless `--listen` says.
fn listen_addr(args: &Args, config: &Config) -> IpAddr {
    args.listen.unwrap_or(if discovery_host_only(config) {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    })
}

/// Prints the `config` line: where discovery sends, where TCP listens.
fn print_config(args: &Args) -> Result<(), BoxError> {
    let config = config(args)?;
    let listen = listen_addr(args, &config);
    emit(json!({
        "event": "config",
        "broadcast": config.multicast().is_none().then(|| config.broadcast().to_string()),
        "multicast": config.multicast().map(|m| m.to_string()),
        "port": config.port(),
        "listen": listen.to_string(),
        "host_only": discovery_host_only(&config) && listen.is_loopback(),
    }));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    emit(json!({"event": "start", "role": args.role.name()}));
    let result = match (print_config(&args), stop_signal()) {
        (Err(e), _) => Err(e),
        (Ok(()), _) if args.print_config => Ok(()),
        (Ok(()), Ok(stop)) => match args.role {
            Role::Kv | Role::Queue => run_store(&args, stop).await,
            Role::Web => run_web(&args, stop).await,
        },
        (Ok(()), Err(e)) => Err(e.into()),
    };
    match result {
        Ok(()) => {
            emit(json!({"event": "exit", "code": 0}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            emit(json!({"event": "error", "message": e.to_string()}));
            emit(json!({"event": "exit", "code": 1}));
            ExitCode::FAILURE
        }
    }
}

// ----- kv and queue ---------------------------------------------------------

/// The state behind one of the two line-protocol servers.
enum Store {
    Kv(Mutex<HashMap<String, String>>),
    Queue(Mutex<VecDeque<String>>),
}

impl Store {
    /// Answers one request line (without its newline) with one reply line.
    fn handle(&self, line: &str) -> String {
        // The value (SET) and the item (PUSH) are the rest of the line, spaces and all.
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        match (self, command) {
            (_, "PING") => "PONG".into(),
            (Store::Kv(map), "SET") => match rest.split_once(' ') {
                Some((key, value)) => {
                    lock(map).insert(key.into(), value.into());
                    "OK".into()
                }
                None => "ERR usage: SET key value".into(),
            },
            (Store::Kv(map), "GET") => lock(map).get(rest).cloned().unwrap_or("NIL".into()),
            (Store::Queue(queue), "PUSH") => {
                lock(queue).push_back(rest.into());
                "OK".into()
            }
            (Store::Queue(queue), "POP") => lock(queue).pop_front().unwrap_or("EMPTY".into()),
            _ => format!("ERR unknown command {command:?}"),
        }
    }
}

async fn run_store(args: &Args, stop: impl Future<Output = ()>) -> Result<(), BoxError> {
    let role = args.role.name();
    let config = config(args)?;
    // Listen before advertising: whoever discovers us can connect at once.
    let listener = TcpListener::bind((listen_addr(args, &config), 0)).await?;
    let port = listener.local_addr()?.port();
    emit(json!({"event": "listening", "role": role, "port": port}));

    let discovery = ServiceDiscovery::builder(config)
        .advertise(json!({"name": role, "port": port}))
        .start()
        .await?;

    let store = Arc::new(match args.role {
        Role::Kv => Store::Kv(Mutex::default()),
        _ => Store::Queue(Mutex::default()),
    });
    let serve = async {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_store_client(stream, store.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off, go on.
                    emit(json!({"event": "error", "message": format!("accept: {e}")}));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    tokio::select! {
        () = serve => {}
        () = stop => {}
    }
    discovery.shutdown().await;
    Ok(())
}

async fn serve_store_client(stream: TcpStream, store: Arc<Store>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = store.handle(line.trim_end_matches('\r'));
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            break;
        }
    }
}

// ----- web: connections to the backends -------------------------------------

/// A connection to one kv or queue instance.
struct Backend {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Backend {
    /// Connects to `instance` (the address its hellos come from, the port it
    /// advertises) and checks that it answers.
    async fn connect(instance: &ServiceInstance) -> Result<Backend, String> {
        let port = instance.info()["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("no valid \"port\" advertised")?;
        let addr = SocketAddr::new(instance.addr().ip(), port);
        let stream = timeout(BACKEND_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr} timed out"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let (read, writer) = stream.into_split();
        let mut backend = Backend {
            reader: BufReader::new(read),
            writer,
        };
        match backend.call("PING").await {
            Ok(pong) if pong == "PONG" => Ok(backend),
            Ok(other) => Err(format!("{addr} answered PING with {other:?}")),
            Err(e) => Err(format!("PING to {addr}: {e}")),
        }
    }

    /// Sends one request line and reads the one-line reply.
    async fn call(&mut self, request: &str) -> std::io::Result<String> {
        let exchange = async {
            self.writer
                .write_all(format!("{request}\n").as_bytes())
                .await?;
            let mut reply = String::new();
            if self.reader.read_line(&mut reply).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(reply.trim_end().to_owned())
        };
        timeout(BACKEND_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }
}

type SharedBackend = Arc<tokio::sync::Mutex<Backend>>;

/// Open backend connections by instance id. The setup hooks fill it; a
/// request that finds a connection broken removes it (and the next request
/// reconnects); connections to nodes that are gone are pruned.
#[derive(Clone, Default)]
struct Backends(Arc<Mutex<HashMap<NodeId, SharedBackend>>>);

impl Backends {
    fn insert(&self, id: NodeId, backend: Backend) -> SharedBackend {
        let shared = Arc::new(tokio::sync::Mutex::new(backend));
        // Replaces the connection of an earlier setup of the same instance.
        lock(&self.0).insert(id, shared.clone());
        shared
    }

    /// Drops `id`'s connection if it is still `broken` (a concurrent setup
    /// may already have replaced it with a good one).
    fn remove_broken(&self, id: &NodeId, broken: &SharedBackend) {
        let mut map = lock(&self.0);
        if map.get(id).is_some_and(|b| Arc::ptr_eq(b, broken)) {
            map.remove(id);
        }
    }

    /// Keeps only the connections of these nodes.
    fn retain(&self, live: &[NodeId]) {
        lock(&self.0).retain(|id, _| live.contains(id));
    }

    /// A connection to an active instance of `service`, the longest-active
    /// first, reconnecting to an instance whose connection broke earlier.
    /// (Several kv instances do not share data: this demo simply uses one.)
    async fn pick(
        &self,
        services: &Services,
        service: &str,
    ) -> Result<(NodeId, SharedBackend), String> {
        let mut last_error = format!("{service} is not available");
        for instance in services.get(service).into_iter().flatten() {
            let known = lock(&self.0).get(instance.id()).cloned();
            if let Some(backend) = known {
                return Ok((instance.id().clone(), backend));
            }
            match Backend::connect(instance).await {
                Ok(backend) => {
                    let backend = self.insert(instance.id().clone(), backend);
                    return Ok((instance.id().clone(), backend));
                }
                Err(e) => last_error = format!("{service}: {e}"),
            }
        }
        Err(last_error)
    }
}

/// The setup hook for both kv and queue: the instance counts only once we
/// hold a working connection to it.
async fn connect_backend(backends: Backends, instance: ServiceInstance) -> Result<(), String> {
    let backend = Backend::connect(&instance).await?;
    backends.insert(instance.id().clone(), backend);
    Ok(())
}

// ----- web: the service -----------------------------------------------------

/// What web advertises: whether it takes requests, and where, so that
/// others (a load balancer, say) can find the ready ones.
fn web_info(ready: bool, http_port: Option<u16>) -> Value {
    match http_port {
        Some(port) => json!({"name": "web", "ready": ready, "port": port}),
        None => json!({"name": "web", "ready": false}),
    }
}

struct Web {
    discovery: ServiceDiscovery,
    backends: Backends,
    /// What we advertise now. The lock also serialises updates, so the
    /// last one always reflects the latest state.
    advertised: Mutex<Value>,
}

impl Web {
    /// Advertises whether we take requests now, and where; prints it when it changes.
    fn advertise(&self, http_port: Option<u16>) {
        let mut advertised = lock(&self.advertised);
        let info = web_info(self.discovery.is_ready(), http_port);
        if *advertised == info {
            return;
        }
        match self.discovery.advertise(&info) {
            Ok(()) => {
                emit(json!({"event": "advertise", "info": info}));
                *advertised = info;
            }
            Err(e) => emit(json!({"event": "error", "message": format!("advertise: {e}")})),
        }
    }

    /// `GET /`: one visit, using both services.
    async fn visit(&self) -> (u16, Value) {
        // No new work while a need has no live, set-up instance.
        let services = self.discovery.services();
        if let Some(missing) = NEEDS
            .iter()
            .find(|need| services.get(**need).map_or(true, Vec::is_empty))
        {
            return unavailable(missing, format!("{missing} is not available"));
        }

        // Count the visit in kv. GET and SET under one connection lock, so
        // concurrent requests of this process do not lose counts (two web
        // processes still could: a real store would offer an atomic INCR).
        let (kv_id, kv) = match self.backends.pick(&services, "kv").await {
            Ok(found) => found,
            Err(e) => return unavailable("kv", e),
        };
        let visits = {
            let mut conn = kv.lock().await;
            let count = async {
                let current = conn.call("GET visits").await?;
                let visits = match current.as_str() {
                    "NIL" => 1,
                    n => n.parse::<u64>().map_or(1, |n| n + 1),
                };
                match conn.call(&format!("SET visits {visits}")).await?.as_str() {
                    "OK" => Ok(visits),
                    other => Err(std::io::Error::other(format!("SET answered {other:?}"))),
                }
            };
            count.await
        };
        let visits = match visits {
            Ok(visits) => visits,
            Err(e) => {
                self.backends.remove_broken(&kv_id, &kv);
                return unavailable("kv", format!("kv connection lost: {e}"));
            }
        };

        // Hand the visit to whoever works the queue.
        let (queue_id, queue) = match self.backends.pick(&services, "queue").await {
            Ok(found) => found,
            Err(e) => return unavailable("queue", e),
        };
        let web = self.discovery.discovery().id();
        let record = json!({"visit": visits, "web": web.as_str(), "at_ms": epoch_ms()});
        let pushed = queue.lock().await.call(&format!("PUSH {record}")).await;
        match pushed.as_deref() {
            Ok("OK") => (200, json!({"visits": visits, "queued": true})),
            Ok(other) => unavailable("queue", format!("queue answered {other:?}")),
            Err(e) => {
                self.backends.remove_broken(&queue_id, &queue);
                unavailable("queue", format!("queue connection lost: {e}"))
            }
        }
    }
}

fn unavailable(service: &str, error: String) -> (u16, Value) {
    (503, json!({"error": error, "service": service}))
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn run_web(args: &Args, stop: impl Future<Output = ()>) -> Result<(), BoxError> {
    let config = config(args)?;
    let listen = listen_addr(args, &config);
    let backends = Backends::default();
    let hook = |backends: &Backends| {
        let backends = backends.clone();
        move |instance: ServiceInstance| connect_backend(backends.clone(), instance)
    };
    let discovery = ServiceDiscovery::builder(config)
        // Not taking requests yet: others can see us, and that we are not ready.
        .advertise(web_info(false, None))
        // Each is also a need: no Ready until both have a set-up instance.
        .setup("kv", hook(&backends))
        .setup("queue", hook(&backends))
        .setup_timeout(SETUP_TIMEOUT)
        .start()
        .await?;
    let web = Arc::new(Web {
        discovery,
        backends,
        advertised: Mutex::new(web_info(false, None)),
    });

    // Every service event since start, setups included. Waiting for the
    // first Ready here (rather than `web.discovery.ready().await`) lets one
    // loop print everything in order and react to later losses too.
    let mut events = web.discovery.events();
    let mut http: Option<(u16, JoinHandle<()>)> = None;
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = &mut stop => break,
            event = events.recv() => match event {
                Some(event) => event,
                None => return Err("service discovery stopped".into()),
            },
        };
        // Whether readiness may have changed (re-advertise), and whether we
        // may start serving.
        let (mut changed, mut start_http) = (false, false);
        match event {
            ServiceEvent::Service(instance) => emit(json!({
                "event": "setup",
                "service": instance.name,
                "instance": instance.id().as_str(),
                "addr": instance.addr().ip().to_string(),
                "port": instance.info()["port"],
            })),
            ServiceEvent::SetupFailed { instance, error } => emit(json!({
                "event": "setup_failed",
                "service": instance.name,
                "instance": instance.id().as_str(),
                "error": error,
            })),
            ServiceEvent::Ready(services) => {
                emit(json!({"event": "ready", "services": services.keys().collect::<Vec<_>>()}));
                (changed, start_http) = (true, true);
            }
            ServiceEvent::NotReady(service) => {
                // No need to stop the HTTP server: requests check readiness
                // themselves and answer 503 meanwhile.
                emit(json!({"event": "not_ready", "service": service}));
                changed = true;
            }
            ServiceEvent::Lagged(missed) => {
                // We may have missed a Ready or NotReady; ask for the state instead.
                emit(json!({"event": "lagged", "missed": missed}));
                (changed, start_http) = (true, web.discovery.is_ready());
            }
            _ => {}
        }
        if start_http && http.is_none() {
            // Only now do we listen: until kv and queue work there is
            // nothing we could answer but errors.
            let listener = TcpListener::bind((listen, args.http_port)).await?;
            let port = listener.local_addr()?.port();
            emit(json!({"event": "listening", "role": "web", "port": port}));
            http = Some((port, tokio::spawn(serve_http(listener, web.clone()))));
        }
        if changed {
            web.advertise(http.as_ref().map(|(port, _)| *port));
        }
        // Forget connections to nodes that are gone.
        let node = web.discovery.discovery();
        let live: Vec<NodeId> = node.nodes().into_iter().map(|p| p.id).collect();
        web.backends.retain(&live);
    }

    if let Some((_, server)) = http {
        server.abort();
        let _ = server.await;
    }
    // From our handle even while a request still holds `web`: peers see the
    // goodbye now, and that request's calls find discovery closed.
    web.discovery.shutdown().await;
    Ok(())
}

// ----- web: a minimal HTTP/1.1 server ---------------------------------------

async fn serve_http(listener: TcpListener, web: Arc<Web>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle_http(stream, web.clone()));
            }
            Err(e) => {
                emit(json!({"event": "error", "message": format!("accept: {e}")}));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One request per connection (`Connection: close`): enough for a demo and
/// for curl; a real service would use a proper HTTP library.
async fn handle_http(mut stream: TcpStream, web: Arc<Web>) {
    let head = match timeout(HTTP_READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        _ => return, // the client went away or said nothing useful
    };
    let mut request_line = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (request_line.next(), request_line.next());
    let (status, body) = match (method, path) {
        (Some("GET"), Some("/")) => web.visit().await,
        (Some("GET"), Some(_)) => (404, json!({"error": "not found"})),
        (Some(_), Some(_)) => (405, json!({"error": "method not allowed"})),
        _ => (400, json!({"error": "bad request"})),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads up to the blank line that ends the request head.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > HTTP_MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
