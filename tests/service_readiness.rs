//! `examples/service_readiness.rs` driven as a user would: three real
//! processes (web, kv, queue) and a plain HTTP client.
//!
//! * The web service starts first and must not listen while kv and queue
//!   are missing: no `listening` line, its HTTP port refuses connections,
//!   and the process holds no listening TCP socket at all.
//! * kv and queue start: web sets up a connection to each, prints
//!   `listening`, and `GET /` answers 200, counting visits in kv and pushing
//!   visit records onto the queue (checked by popping the queue ourselves).
//! * kv is SIGKILLed: `GET /` answers 503 naming kv within a bounded time.
//! * A new kv starts: `GET /` answers 200 again, using the new kv.
//! * SIGTERM: every process exits 0.
//! * Every line each process printed carries `t`, ms since the Unix epoch.
//!
//! Run on loopback (`--broadcast 127.255.255.255`, TCP on 127.0.0.1) and,
//! when network namespaces are available, on a private virtual LAN with one
//! role per host and the client on a fourth host. The example is (re)built
//! first with `cargo build --example service_readiness`.

mod support;

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::peer::build_example;
use support::proc::dump_all;
use support::{Host, Lan, Proc};

/// Bound for one expected step once its cause is under way. Generous for a
/// loaded 2-core machine; the happy path never waits it out.
const STEP: Duration = Duration::from_secs(15);
/// How long the web service, alone, is watched for (not) listening.
const ALONE: Duration = Duration::from_secs(1);
/// Short timers (hello < check <= node timeout <= master timeout): a dead
/// kv is noticed within about 650 ms. The timeouts are 6.5 hellos: the
/// deadline these tests always ran with, when `missed_hellos` stretched a
/// 300 ms timeout to it; an explicit timeout is now exact.
const TIMING: [&str; 8] = [
    "--hello-interval",
    "100",
    "--check-interval",
    "300",
    "--node-timeout",
    "650",
    "--master-timeout",
    "650",
];

/// Where the test's client sockets live: this process's network namespace,
/// or a host of a virtual LAN.
trait Net {
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R;
}

struct Local;

impl Net for Local {
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        f()
    }
}

impl Net for Host {
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        self.enter(f).expect("enter the host's network namespace")
    }
}

/// One system under test: how to start each role, and where to reach it.
struct System<'a, N> {
    /// The client's network.
    net: &'a N,
    /// Spawns `role` (kv, queue, web) as a process named `name`.
    spawn: &'a dyn Fn(&str, &str) -> Proc,
    /// The address a role's TCP servers are reachable at, from `net`.
    ip_of: &'a dyn Fn(&str) -> IpAddr,
    /// The `--http-port` web was given.
    http_port: u16,
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: Value,
}

/// `GET /` over a plain TCP connection, read to EOF (`Connection: close`).
fn http_get(addr: SocketAddr) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> io::Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of head"))?;
    let status = head
        .lines()
        .next()
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let body = serde_json::from_str(body).map_err(|_| invalid("body is not JSON"))?;
    Ok(Response { status, body })
}

/// `GET /` until `want` holds, every 50 ms, for at most `within`.
fn poll_get<N: Net>(
    net: &N,
    addr: SocketAddr,
    want: impl Fn(&Response) -> bool,
    within: Duration,
) -> Result<Response, String> {
    let deadline = Instant::now() + within;
    loop {
        let last = match net.run(move || http_get(addr)) {
            Ok(response) if want(&response) => return Ok(response),
            Ok(response) => format!("{} {}", response.status, response.body),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("last answer: {last}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Everything in the queue server at `addr`, popped in order until `EMPTY`.
fn drain_queue(addr: SocketAddr) -> io::Result<Vec<String>> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut items = Vec::new();
    for _ in 0..100 {
        writer.write_all(b"POP\n")?;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match line.trim_end() {
            "EMPTY" => return Ok(items),
            item => items.push(item.to_owned()),
        }
    }
    Err(io::Error::other("the queue never ran empty"))
}

/// TCP ports on which process `pid` holds a listening socket (Linux: its
/// socket fds matched against `/proc/<pid>/net/tcp{,6}` in its own network
/// namespace).
fn listening_ports(pid: u32) -> io::Result<Vec<u16>> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue; // no IPv6
        };
        for row in text.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue; // 0A is LISTEN
            };
            if inodes.contains(*inode) {
                let port = local.rsplit(':').next().unwrap_or("");
                ports.push(u16::from_str_radix(port, 16).map_err(io::Error::other)?);
            }
        }
    }
    Ok(ports)
}

/// A UDP port nobody is bound to now, for discovery. A fixed port would
/// let two concurrent runs of this test (two checkouts, say) find each
/// other's kv and queue.
fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind a UDP port");
    socket.local_addr().expect("local addr").port()
}

fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a TCP port");
    listener.local_addr().expect("local addr").port()
}

fn port_of(p: &Proc) -> u16 {
    let line = p
        .wait_event("listening", STEP)
        .unwrap_or_else(|| panic!("{} never listened\n{}", p.name(), p.dump()));
    line["port"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or_else(|| panic!("bad listening line {line}"))
}

/// Matches web's `advertise` line for `{"name": "web", "ready": ready, "port": port}`.
fn advertises(ready: bool, port: u16) -> impl Fn(&Value) -> bool {
    move |v| {
        v["event"] == "advertise"
            && v["info"] == serde_json::json!({"name": "web", "ready": ready, "port": port})
    }
}

fn run_system<N: Net>(sys: &System<'_, N>) {
    let web_addr = SocketAddr::new((sys.ip_of)("web"), sys.http_port);

    // Web alone: it runs, but must not listen.
    let mut web = (sys.spawn)("web", "web");
    assert!(
        web.wait_event("start", STEP).is_some(),
        "web did not start\n{}",
        web.dump()
    );
    assert!(
        web.wait_event("listening", ALONE).is_none(),
        "web listened without kv and queue\n{}",
        web.dump()
    );
    assert!(
        web.try_wait().expect("try_wait").is_none(),
        "web exited\n{}",
        web.dump()
    );
    let refused = sys
        .net
        .run(move || TcpStream::connect_timeout(&web_addr, Duration::from_secs(5)).map(|_| ()));
    assert_eq!(
        refused.as_ref().map_err(io::Error::kind),
        Err(io::ErrorKind::ConnectionRefused),
        "something answers on web's HTTP port {web_addr} before it is ready"
    );
    assert_eq!(
        listening_ports(web.pid()).expect("read /proc"),
        Vec::<u16>::new(),
        "web holds a listening TCP socket before it is ready"
    );

    // kv and queue: web becomes ready and listens.
    let mut kv = (sys.spawn)("kv", "kv");
    let mut queue = (sys.spawn)("queue", "queue");
    let kv_port = port_of(&kv);
    let queue_port = port_of(&queue);
    let listening = web
        .wait_event("listening", STEP)
        .unwrap_or_else(|| panic!("web never listened\n{}", dump_all([&web, &kv, &queue])));
    assert_eq!(listening["port"], sys.http_port, "{}", web.dump());
    assert_eq!(
        listening_ports(web.pid()).expect("read /proc"),
        vec![sys.http_port],
        "the check above would have seen a listener"
    );
    assert!(
        web.wait_for(advertises(true, sys.http_port), STEP)
            .is_some(),
        "web never advertised ready\n{}",
        web.dump()
    );
    let ready = web
        .wait_event("ready", Duration::ZERO)
        .expect("ready before listening");
    assert_eq!(ready["services"], serde_json::json!(["kv", "queue"]));
    let setups = web.events("setup");
    for (service, port) in [("kv", kv_port), ("queue", queue_port)] {
        assert!(
            setups
                .iter()
                .any(|s| s["service"] == service && s["port"] == port),
            "no setup of {service} on port {port}\n{}",
            web.dump()
        );
    }

    // Two visits: counted in kv, recorded in the queue.
    for expected in 1..=2u64 {
        let response = sys
            .net
            .run(move || http_get(web_addr))
            .unwrap_or_else(|e| panic!("GET /: {e}\n{}", dump_all([&web, &kv, &queue])));
        assert_eq!(response.status, 200, "{response:?}\n{}", web.dump());
        assert_eq!(response.body["visits"], expected, "{response:?}");
        assert_eq!(response.body["queued"], true, "{response:?}");
    }
    let queue_addr = SocketAddr::new((sys.ip_of)("queue"), queue_port);
    let records = sys
        .net
        .run(move || drain_queue(queue_addr))
        .expect("pop the queue");
    let visits: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_str::<Value>(r).expect("a JSON record")["visit"].clone())
        .collect();
    assert_eq!(visits, [1, 2], "queue records: {records:?}");

    // kv dies: web answers 503 naming it.
    let killed = Instant::now();
    kv.kill().expect("SIGKILL kv");
    let response = poll_get(sys.net, web_addr, |r| r.status == 503, STEP)
        .unwrap_or_else(|e| panic!("no 503 after kv died: {e}\n{}", web.dump()));
    eprintln!("503 {} ms after SIGKILL kv", killed.elapsed().as_millis());
    assert_eq!(response.body["service"], "kv", "{response:?}");
    assert!(
        response.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("kv")),
        "{response:?}"
    );
    let not_ready = web.wait_for(|v| v["event"] == "not_ready" && v["service"] == "kv", STEP);
    assert!(not_ready.is_some(), "no not_ready kv\n{}", web.dump());
    eprintln!(
        "not_ready {} ms after SIGKILL kv",
        killed.elapsed().as_millis()
    );
    assert!(
        web.wait_for(advertises(false, sys.http_port), STEP)
            .is_some(),
        "web never advertised not ready\n{}",
        web.dump()
    );
    // Once not ready, no new work is taken: still 503, still naming kv.
    let response = sys.net.run(move || http_get(web_addr)).expect("GET /");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(response.body["service"], "kv", "{response:?}");

    // A new kv: web is back, counting in the new (empty) kv.
    let mut kv2 = (sys.spawn)("kv", "kv2");
    let restarted = Instant::now();
    let response = poll_get(sys.net, web_addr, |r| r.status == 200, STEP).unwrap_or_else(|e| {
        panic!(
            "no 200 after kv came back: {e}\n{}",
            dump_all([&web, &kv2, &queue])
        )
    });
    eprintln!(
        "200 {} ms after the new kv started",
        restarted.elapsed().as_millis()
    );
    assert_eq!(response.body["visits"], 1, "{response:?}");
    assert_eq!(response.body["queued"], true, "{response:?}");
    // The request saw web ready; its event loop prints that a moment later.
    let ready_twice = web.wait_until(
        |lines| {
            lines.iter().filter(|v| v["event"] == "ready").count() == 2
                && lines
                    .iter()
                    .filter(|v| advertises(true, sys.http_port)(v))
                    .count()
                    == 2
        },
        STEP,
    );
    assert!(
        ready_twice,
        "web did not report ready again\n{}",
        web.dump()
    );
    let kv_setups: Vec<Value> = web
        .events("setup")
        .into_iter()
        .filter(|s| s["service"] == "kv")
        .collect();
    assert_eq!(kv_setups.len(), 2, "{}", web.dump());
    assert_ne!(kv_setups[0]["instance"], kv_setups[1]["instance"]);

    for p in [&mut web, &mut kv2, &mut queue] {
        p.stop(STEP);
    }
    assert!(
        [&web, &kv2, &queue]
            .iter()
            .all(|p| p.events("error").is_empty()),
        "{}",
        dump_all([&web, &kv2, &queue])
    );
    for p in [&web, &kv2, &queue] {
        for line in p.lines() {
            assert!(line["t"].as_f64().is_some(), "{}: no t in {line}", p.name());
        }
    }
}

#[test]
fn web_waits_for_kv_and_queue_on_loopback() {
    let bin = build_example("service_readiness");
    let port = free_udp_port().to_string();
    let http_port = free_tcp_port();
    let http = http_port.to_string();
    let spawn = |role: &str, name: &str| {
        let mut cmd = Command::new(&bin);
        cmd.args(["--role", role, "--port", &port])
            // Discovery stays on this host; TCP servers on loopback only.
            .args(["--broadcast", "127.255.255.255", "--listen", "127.0.0.1"])
            .args(TIMING);
        if role == "web" {
            cmd.args(["--http-port", &http]);
        }
        Proc::spawn(name, cmd).unwrap_or_else(|e| panic!("spawn {name}: {e}"))
    };
    run_system(&System {
        net: &Local,
        spawn: &spawn,
        ip_of: &|_| IpAddr::V4(Ipv4Addr::LOCALHOST),
        http_port,
    });
}

#[test]
fn web_waits_for_kv_and_queue_on_a_lan() {
    require_netns!();
    let bin = build_example("service_readiness");
    // web, kv, queue on hosts 0, 1, 2; the client (a browser) on host 3.
    let lan = Lan::new(4).expect("virtual LAN");
    let host_of = |role: &str| match role {
        "web" => lan.host(0),
        "kv" => lan.host(1),
        _ => lan.host(2),
    };
    let spawn = |role: &str, name: &str| {
        // As on a real LAN (--lan, inside this private one): limited
        // broadcast, the default discovery port, TCP servers on 0.0.0.0.
        let mut args = vec!["--role", role, "--lan"];
        args.extend(TIMING);
        if role == "web" {
            args.extend(["--http-port", "8080"]);
        }
        let cmd = host_of(role).command(&bin, &args);
        Proc::spawn(name, cmd).unwrap_or_else(|e| panic!("spawn {name}: {e}"))
    };
    run_system(&System {
        net: lan.host(3),
        spawn: &spawn,
        ip_of: &|role| IpAddr::V4(host_of(role).addr),
        http_port: 8080,
    });
}
