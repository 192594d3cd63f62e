//! The driver's interface handling on namespaces this test builds itself:
//! nodes run in-process, each on a tokio runtime whose thread has joined a
//! namespace (so its sockets and its interface listings are that
//! namespace's), and the topologies are plain veth pairs:
//!
//! - two LANs on one host: a node that chose `eth0` hears only eth0's
//!   peer, although the other LAN's datagrams reach the host (a node there
//!   with the default choice hears both); switched to `eth1` while it
//!   runs, it hears the other;
//! - an IPv6-only link (no IPv4 address anywhere): two nodes with
//!   `ipv6(true)` find each other over `ff02::5ea1`, and `Peer::via` names
//!   the interface and our link-local address;
//! - an interface added to a running node is used within the rescan
//!   period (1 s here; the bound asserted is the 5 s), and removing
//!   it breaks nothing.
//!
//! Every namespace is created here and deleted by exact name on drop, also
//! when a test fails. Nothing touches the root namespace's interfaces.

mod support;

use std::future::Future;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal::{Config, Discovery, IfKind, Peer};

/// Namespace names `shoal-<pid>-<k>-h<i>`, so that `Lan`'s clean-up of a
/// killed run's leftovers recognises them; `k` starts far above what `Lan`
/// uses in this process.
static NEXT_NET: AtomicUsize = AtomicUsize::new(900);

/// Runs `ip args...`, panicking with its stderr on failure.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces, deleted by exact name on drop.
struct Net {
    prefix: String,
    created: Vec<String>,
}

impl Net {
    fn new() -> Net {
        Net {
            prefix: format!(
                "shoal-{}-{}",
                std::process::id(),
                NEXT_NET.fetch_add(1, Ordering::Relaxed)
            ),
            created: Vec::new(),
        }
    }

    /// A namespace with `lo` up.
    fn ns(&mut self, i: usize) -> String {
        let name = format!("{}-h{i}", self.prefix);
        ip(&["netns", "add", &name]);
        self.created.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair from `a`'s `a_if` to `b`'s `b_if`, created inside `a`
    /// (never in the root namespace), both ends up, with the IPv4
    /// addresses given (`None`: no IPv4 at all). Each end gets a fixed
    /// link-local IPv6 address without duplicate detection, so that it
    /// is usable at once.
    #[allow(clippy::too_many_arguments)]
    fn link(
        &self,
        a: &str,
        a_if: &str,
        a_v4: Option<&str>,
        b: &str,
        b_if: &str,
        b_v4: Option<&str>,
        v6_suffix: (u16, u16),
    ) {
        ip(&[
            "-n", a, "link", "add", "name", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        for (ns, ifname, v4, suffix) in [(a, a_if, a_v4, v6_suffix.0), (b, b_if, b_v4, v6_suffix.1)]
        {
            ip(&["-n", ns, "link", "set", ifname, "addrgenmode", "none"]);
            if let Some(v4) = v4 {
                ip(&["-n", ns, "addr", "add", v4, "dev", ifname]);
            }
            let ll = format!("fe80::{suffix:x}/64");
            ip(&["-n", ns, "addr", "add", &ll, "dev", ifname, "nodad"]);
            ip(&["-n", ns, "link", "set", ifname, "up"]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// A current-thread tokio runtime on a thread that has joined a
/// namespace: what runs on it opens sockets and lists interfaces there.
struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    fn new(ns: &str) -> NsRuntime {
        use std::os::fd::AsRawFd;
        let path = format!("/run/netns/{ns}");
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            // SAFETY: setns(2) on an open namespace file; it moves only
            // this thread, which runs nothing but this runtime.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            handle_tx.send(rt.handle().clone()).unwrap();
            rt.block_on(async {
                // Park until told to stop, polling so the runtime stays up.
                while let Err(std::sync::mpsc::TryRecvError::Empty) = stop_rx.try_recv() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        NsRuntime {
            handle: handle_rx.recv().expect("runtime handle"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Runs `f` to completion on the namespace's runtime.
    fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().expect("the task ran")
    }

    fn start(&self, config: Config) -> Discovery {
        self.run(async move { Discovery::start(config).await.expect("start") })
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

const PORT: u16 = 47_700;

fn config() -> shoal::ConfigBuilder {
    Config::builder()
        .port(PORT)
        .hello_interval(Duration::from_millis(100))
        .rescan_interval(Duration::from_secs(1))
}

/// Polls `f` until it returns true or `timeout` passes.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn hosts(node: &Discovery) -> Vec<String> {
    let mut names: Vec<String> = node.nodes().iter().map(|p| p.host_name.clone()).collect();
    names.sort();
    names
}

fn peer(node: &Discovery, host: &str) -> Option<Peer> {
    node.nodes().into_iter().find(|p| p.host_name == host)
}

/// Host `h` has eth0 on LAN A (10.250.0.0/24, peer `a`) and eth1 on LAN B
/// (10.251.0.0/24, peer `b`), the same port on both.
#[test]
fn only_the_chosen_interface_is_heard() {
    require_netns!();
    let mut net = Net::new();
    let (h, a, b) = (net.ns(0), net.ns(1), net.ns(2));
    net.link(
        &h,
        "eth0",
        Some("10.250.0.1/24"),
        &a,
        "eth0",
        Some("10.250.0.2/24"),
        (1, 2),
    );
    net.link(
        &h,
        "eth1",
        Some("10.251.0.1/24"),
        &b,
        "eth0",
        Some("10.251.0.2/24"),
        (3, 4),
    );
    let (rt_h, rt_a, rt_b) = (NsRuntime::new(&h), NsRuntime::new(&a), NsRuntime::new(&b));

    let node_a = rt_a.start(config().host_name("a").build().unwrap());
    let node_b = rt_b.start(config().host_name("b").build().unwrap());
    let chosen = rt_h.start(
        config()
            .host_name("h-eth0")
            .interfaces([IfKind::Name("eth0".into())])
            .build()
            .unwrap(),
    );
    // The default choice on the same host takes both LANs: the proof that
    // b's datagrams do reach this host.
    let default = rt_h.start(config().host_name("h-default").build().unwrap());

    let names = |n: &Discovery| {
        n.interfaces()
            .iter()
            .map(|i| format!("{} {}", i.name, i.addr))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&chosen), ["eth0 10.250.0.1"]);
    assert_eq!(names(&default), ["eth0 10.250.0.1", "eth1 10.251.0.1"]);

    assert!(
        wait_for(Duration::from_secs(10), || hosts(&default)
            == ["a", "b", "h-eth0"]),
        "the default choice hears both LANs: {:?}",
        hosts(&default)
    );
    assert!(
        wait_for(Duration::from_secs(10), || hosts(&chosen)
            .contains(&"a".to_owned())),
        "eth0's peer is heard: {:?}",
        hosts(&chosen)
    );
    // b has been heard by `default` for a while; `chosen` shares its port.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        hosts(&chosen),
        ["a", "h-default"],
        "b on eth1 is never heard"
    );
    // b's hellos did reach it, on eth1, and were dropped and counted.
    assert!(
        chosen.stats().dropped.other_interface > 0,
        "{:?}",
        chosen.stats().dropped
    );
    // And b never hears `chosen`, which sends on eth0 only.
    assert_eq!(hosts(&node_b), ["h-default"]);
    assert_eq!(hosts(&node_a), ["h-default", "h-eth0"]);

    // a's address is on eth0's subnet: it came in by eth0.
    let a_peer = peer(&chosen, "a").unwrap();
    assert_eq!(a_peer.addr.ip(), "10.250.0.2".parse::<IpAddr>().unwrap());

    // Switched to eth1 while running: b is heard, a times out.
    chosen
        .set_interfaces(Some(vec![IfKind::Name("eth1".into())]))
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || names(&chosen)
            == ["eth1 10.251.0.1"]),
        "{:?}",
        names(&chosen)
    );
    assert!(
        wait_for(Duration::from_secs(15), || hosts(&chosen)
            == ["b", "h-default"]
            && hosts(&node_b) == ["h-default", "h-eth0"]),
        "after the switch, h-eth0 sees {:?} and b sees {:?}",
        hosts(&chosen),
        hosts(&node_b)
    );
    assert!(chosen.set_interfaces(Some(vec![])).is_err());

    for (rt, node) in [
        (&rt_h, chosen),
        (&rt_h, default),
        (&rt_a, node_a),
        (&rt_b, node_b),
    ] {
        rt.run(async move { node.shutdown().await });
    }
}

/// A link with no IPv4 address at all: two nodes with `ipv6(true)` meet
/// on the link-local group, with scope ids, and say where they heard each
/// other.
#[test]
fn ipv6_only_link() {
    require_netns!();
    let mut net = Net::new();
    let (x, y) = (net.ns(0), net.ns(1));
    net.link(&x, "eth0", None, &y, "eth0", None, (0x10, 0x20));
    let (rt_x, rt_y) = (NsRuntime::new(&x), NsRuntime::new(&y));
    let node_x = rt_x.start(config().host_name("x").ipv6(true).build().unwrap());
    let node_y = rt_y.start(config().host_name("y").ipv6(true).build().unwrap());

    let chosen = node_x.interfaces();
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    assert_eq!(chosen[0].addr, "fe80::10".parse::<IpAddr>().unwrap());

    assert!(
        wait_for(Duration::from_secs(10), || hosts(&node_x) == ["y"]
            && hosts(&node_y) == ["x"]),
        "x sees {:?}, y sees {:?}",
        hosts(&node_x),
        hosts(&node_y)
    );
    let y_seen = peer(&node_x, "y").unwrap();
    let std::net::SocketAddr::V6(addr) = y_seen.addr else {
        panic!("an IPv6 peer: {}", y_seen.addr);
    };
    assert_eq!(
        *addr.ip(),
        "fe80::20".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(addr.scope_id(), chosen[0].index, "scoped to eth0");
    // Peer::via is the core's to fill in (it gets the Via the driver
    // builds from IPV6_PKTINFO).
    let via = y_seen.via.expect("Peer::via is set");
    assert_eq!(&*via.interface, "eth0");
    assert_eq!(via.index, chosen[0].index);
    assert_eq!(via.local, "fe80::10".parse::<IpAddr>().unwrap());

    // Channels work over it too (unicast replies go back with the scope).
    let mut sub = rt_y.run({
        let node_y = node_y.clone();
        async move { node_y.join("jobs").unwrap() }
    });
    node_x
        .send("jobs", &serde_json::json!({"task": 6}))
        .unwrap();
    let message = rt_y.run(async move {
        tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("a message within 10 s")
            .expect("the subscription is open")
    });
    assert_eq!(message.data, serde_json::json!({"task": 6}));

    for (rt, node) in [(&rt_x, node_x), (&rt_y, node_y)] {
        rt.run(async move { node.shutdown().await });
    }
}

/// A node with the default choice and a 1 s rescan: an interface added
/// while it runs is used (its peer is heard, and hears us), then removed
/// without harm.
#[test]
fn an_interface_added_while_running_is_used() {
    require_netns!();
    let mut net = Net::new();
    let (h, a, b) = (net.ns(0), net.ns(1), net.ns(2));
    net.link(
        &h,
        "eth0",
        Some("10.250.0.1/24"),
        &a,
        "eth0",
        Some("10.250.0.2/24"),
        (1, 2),
    );
    let (rt_h, rt_a, rt_b) = (NsRuntime::new(&h), NsRuntime::new(&a), NsRuntime::new(&b));
    let node_h = rt_h.start(config().host_name("h").build().unwrap());
    let node_a = rt_a.start(config().host_name("a").build().unwrap());
    assert!(wait_for(Duration::from_secs(10), || hosts(&node_h) == ["a"]));
    assert_eq!(node_h.interfaces().len(), 1);

    // b's namespace has no interface yet but loopback: its node falls
    // back to loopback, then takes eth0 when it appears.
    let node_b = rt_b.start(config().host_name("b").build().unwrap());
    assert!(node_b.interfaces().iter().all(|i| i.is_loopback));

    net.link(
        &h,
        "eth1",
        Some("10.251.0.1/24"),
        &b,
        "eth0",
        Some("10.251.0.2/24"),
        (3, 4),
    );
    let added = Instant::now();
    // The bound: within 5 s (the rescan period is 1 s).
    assert!(
        wait_for(
            Duration::from_secs(5).saturating_sub(added.elapsed()),
            || { node_h.interfaces().iter().any(|i| &*i.name == "eth1") }
        ),
        "eth1 is chosen within 5 s: {:?}",
        node_h.interfaces()
    );
    assert!(
        wait_for(Duration::from_secs(10), || hosts(&node_h) == ["a", "b"]
            && hosts(&node_b) == ["h"]),
        "h sees {:?}, b sees {:?}",
        hosts(&node_h),
        hosts(&node_b)
    );

    // Removed: h stops using it, and eth0 carries on.
    ip(&["-n", &h, "link", "delete", "eth1"]);
    assert!(
        wait_for(Duration::from_secs(5), || {
            node_h.interfaces().iter().all(|i| &*i.name == "eth0")
        }),
        "eth1 is dropped: {:?}",
        node_h.interfaces()
    );
    assert!(
        wait_for(Duration::from_secs(15), || hosts(&node_h) == ["a"]),
        "b times out: {:?}",
        hosts(&node_h)
    );
    // a still hears h, long after: its hellos go on on eth0.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hosts(&node_a), ["h"]);

    for (rt, node) in [(&rt_h, node_h), (&rt_a, node_a), (&rt_b, node_b)] {
        rt.run(async move { node.shutdown().await });
    }
}
