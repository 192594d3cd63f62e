//! Real networks (issue 13), with real processes (`examples/node.rs`, one
//! per host) on topologies of network namespaces built by `support::Net`:
//!
//! 1. three interfaces: a LAN, a docker0-like bridge to another cluster on
//!    the same port, and a point-to-point link (a TUN pair) to a third;
//! 2. two subnets joined by a router that forwards unicast but no
//!    broadcast: two clusters, one through one seed, still one after the
//!    seed dies;
//! 3. an IPv6-only LAN: discovery, election, channels and secure mode;
//! 4. mixed: IPv4-only and dual-stack nodes on one LAN, nobody counted
//!    twice;
//! 5. interfaces that appear in and vanish from a running node;
//! 6. a seed given by name, resolved through the namespace's /etc/hosts,
//!    followed when the name moves.
//!
//! Each topology's sanity (what crosses where, what the kernel flags) is
//! checked with plain sockets first, so a failure of a scenario is
//! shoal's, not the topology's. Needs root and iproute2; skipped otherwise
//! (see `require_netns!`). Nothing is created in the root namespace.

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::peer::{spawn_peer, Impl};
use support::proc::dump_all;
use support::{Host, Net, Proc, Segment};

/// Bound for one expected event once its cause is under way. Generous for a
/// loaded 2-core machine; the happy path never waits it out.
const STEP: Duration = Duration::from_secs(10);
use support::peer::{NODE_TIMEOUT, TIMING};
/// How long a "never" is watched for: many hellos and node timeouts.
const QUIET: Duration = Duration::from_secs(3);
const PORT: u16 = 12345;
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A shoal node with `--id id`, the short timers, the library's network
/// defaults (`--lan`: every up LAN interface, port 12345), then `args`.
fn node(host: &Host, id: &str, args: &[&str]) -> Proc {
    let all = [&TIMING[..], &["--lan"], args].concat();
    spawn_peer(Impl::Shoal, host, id, &all)
}

/// The ids `p` has added and not removed since.
fn table(p: &Proc) -> BTreeSet<String> {
    table_of(&p.lines())
}

/// The ids added and not removed since, in `lines`.
fn table_of(lines: &[Value]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for line in lines {
        let Some(peer) = line["peer"].as_str() else {
            continue;
        };
        match line["event"].as_str() {
            Some("added") => {
                ids.insert(peer.to_owned());
            }
            Some("removed") => {
                ids.remove(peer);
            }
            _ => {}
        }
    }
    ids
}

/// Every id `p` ever added.
fn ever_added(p: &Proc) -> BTreeSet<String> {
    p.events("added")
        .iter()
        .filter_map(|v| v["peer"].as_str().map(str::to_owned))
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Waits until `p`'s table is exactly `want`.
fn wait_table(p: &Proc, want: &[&str], all: &[&Proc]) {
    let want = set(want);
    // The closure is given the lines under the Proc's lock: reading them
    // again through `p` inside it would deadlock.
    let ok = p.wait_until(|lines| table_of(lines) == want, STEP);
    assert!(
        ok,
        "{}: table {:?}, want {want:?}\n{}",
        p.name(),
        table(p),
        dump_all(all.iter().copied())
    );
}

/// Waits until `p` has reported `master` as its master (or, for the
/// master itself, a promotion).
fn wait_master(p: &Proc, master: &str, all: &[&Proc]) {
    let ok = if p.name() == master {
        p.wait_event("promotion", STEP).is_some()
    } else {
        p.wait_for(|v| v["event"] == "master" && v["peer"] == master, STEP)
            .is_some()
    };
    assert!(
        ok,
        "{} never saw master {master}\n{}",
        p.name(),
        dump_all(all.iter().copied())
    );
}

/// The latest master `p` knows of: itself after a promotion, else the
/// last `master` line's peer.
fn current_master(p: &Proc) -> Option<String> {
    let mut master = None;
    for line in p.lines() {
        match line["event"].as_str() {
            Some("promotion") => master = Some(p.name().to_owned()),
            Some("master") => master = line["peer"].as_str().map(str::to_owned),
            Some("demotion") if master.as_deref() == Some(p.name()) => master = None,
            _ => {}
        }
    }
    master
}

/// Lines of `p` with event `error`; a test asserts there are none.
fn assert_no_errors(procs: &[&Proc]) {
    for p in procs {
        assert!(
            p.events("error").is_empty(),
            "{} reported errors\n{}",
            p.name(),
            dump_all(procs.iter().copied())
        );
    }
}

// ---------------------------------------------------------------------
// Sanity checks with plain sockets: what the topology carries.
// ---------------------------------------------------------------------

/// A UDP socket bound to `0.0.0.0:port` in `host`, with a short timeout.
fn listener(host: &Host, port: u16) -> UdpSocket {
    host.enter(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    })
    .unwrap()
}

/// Sends one datagram from `host` to `to`, with SO_BROADCAST set.
fn send_from(host: &Host, to: SocketAddr) {
    host.enter(move || {
        let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        s.set_broadcast(true).unwrap();
        s.send_to(b"sanity", to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
    })
    .unwrap();
}

/// Whether `socket` receives a datagram within its timeout (draining it).
fn hears(socket: &UdpSocket) -> bool {
    let mut buf = [0u8; 64];
    socket.recv_from(&mut buf).is_ok()
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// `ip link show dev ifname` in `host`.
fn link_flags(host: &Host, ifname: &str) -> String {
    let out = host
        .run("ip", ["link", "show", "dev", ifname], STEP)
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------
// 1. Three interfaces.
// ---------------------------------------------------------------------

/// Host `a` has `lan0` on the LAN (10.250.0.0/24, with `b` and `c`),
/// `docker0`, a bridge inside it to containers `d1` and `d2`
/// (10.251.0.0/24), and `tun0`, a point-to-point link to `far`
/// (10.252.0.1 <-> 10.252.0.2).
struct ThreeInterfaces {
    a: Host,
    b: Host,
    c: Host,
    d1: Host,
    d2: Host,
    far: Host,
    net: Net,
}

fn three_interfaces() -> ThreeInterfaces {
    let mut net = Net::new().expect("net");
    let lan = net.segment("lan").unwrap();
    let mut hosts = Vec::new();
    for (name, ip) in [
        ("a", "10.250.0.1"),
        ("b", "10.250.0.2"),
        ("c", "10.250.0.3"),
    ] {
        let mut h = net.host(name).unwrap();
        let ifname = if name == "a" { "lan0" } else { "eth0" };
        net.attach(&mut h, &lan, ifname, &[&format!("{ip}/24")])
            .unwrap();
        net.route(&h, &["default", "dev", ifname]).unwrap();
        hosts.push(h);
    }
    let docker: Segment = net
        .bridge_in(&hosts[0], "docker0", &["10.251.0.1/24"])
        .unwrap();
    for (name, ip) in [("d1", "10.251.0.2"), ("d2", "10.251.0.3")] {
        let mut h = net.host(name).unwrap();
        net.attach(&mut h, &docker, "eth0", &[&format!("{ip}/24")])
            .unwrap();
        net.route(&h, &["default", "dev", "eth0"]).unwrap();
        hosts.push(h);
    }
    let far = net.host("far").unwrap();
    net.p2p(
        &hosts[0],
        "tun0",
        Ipv4Addr::new(10, 252, 0, 1),
        &far,
        "tun0",
        Ipv4Addr::new(10, 252, 0, 2),
    )
    .unwrap();
    net.route(&far, &["default", "dev", "tun0"]).unwrap();
    let mut hosts = hosts.into_iter();
    let mut next = || hosts.next().unwrap();
    ThreeInterfaces {
        a: next(),
        b: next(),
        c: next(),
        d1: next(),
        d2: next(),
        far,
        net,
    }
}

#[test]
fn three_interfaces_topology_carries_each_segment_apart_and_tun0_is_point_to_point() {
    require_netns!();
    let t = three_interfaces();
    let flags = link_flags(&t.a, "tun0");
    assert!(flags.contains("POINTOPOINT"), "{flags}");
    assert!(flags.contains("MULTICAST"), "a VPN-like tunnel: {flags}");
    assert!(flags.contains("LOWER_UP"), "{flags}");
    for ifname in ["lan0", "docker0"] {
        let flags = link_flags(&t.a, ifname);
        assert!(flags.contains("BROADCAST,MULTICAST"), "{flags}");
        assert!(!flags.contains("POINTOPOINT"), "{flags}");
    }
    let (b, d1, far) = (
        listener(&t.b, 40_001),
        listener(&t.d1, 40_001),
        listener(&t.far, 40_001),
    );
    // The LAN's broadcast reaches b only; docker0's reaches d1 only.
    send_from(&t.a, sock("10.250.0.255", 40_001));
    assert!(hears(&b));
    assert!(!hears(&d1) && !hears(&far));
    send_from(&t.a, sock("10.251.0.255", 40_001));
    assert!(hears(&d1));
    assert!(!hears(&b) && !hears(&far));
    // The tunnel carries unicast both ways.
    send_from(&t.a, sock("10.252.0.2", 40_001));
    assert!(hears(&far));
    let a = listener(&t.a, 40_002);
    send_from(&t.far, sock("10.252.0.1", 40_002));
    assert!(hears(&a));
    drop(t.net);
}

/// Runs the three clusters: the LAN (`a` with `a_args`, `b`, `c`), the
/// containers (`d1`, `d2`, whose `d1` outweighs everyone, so a merge would
/// make it everyone's master), and `far`, which talks to `a` over the
/// tunnel only (it names tun0 and seeds a's tunnel address). Asserts that
/// the LAN and the containers each form their cluster, and that for
/// [`QUIET`] after that, no LAN host other than `a` ever sees a container
/// or `far`, no container ever sees `b` or `c`, and `a` never sees `far`.
/// Returns the processes (a, b, c, d1, d2, far) for more checks.
fn three_clusters(t: &ThreeInterfaces, a_args: &[&str]) -> Vec<Proc> {
    let seed = format!("10.252.0.1:{PORT}");
    let procs = vec![
        node(&t.a, "a", &[&["--weight", "0.5"], a_args].concat()),
        node(&t.b, "b", &["--weight", "0.6"]),
        node(&t.c, "c", &["--weight", "0.4"]),
        node(&t.d1, "d1", &["--weight", "0.95"]),
        node(&t.d2, "d2", &["--weight", "0.3"]),
        node(
            &t.far,
            "far",
            &["--weight", "0.99", "--interface", "tun0", "--seed", &seed],
        ),
    ];
    let all: Vec<&Proc> = procs.iter().collect();
    let [a, b, c, d1, d2, far] = [0, 1, 2, 3, 4, 5].map(|i| &procs[i]);
    for p in &all {
        assert!(
            p.wait_event("ready", STEP).is_some(),
            "{}",
            dump_all(all.clone())
        );
    }
    // The other cluster works: the containers see each other.
    wait_table(d1, &["d2"], &all);
    wait_table(d2, &["d1"], &all);
    wait_master(d2, "d1", &all);
    // The LAN's nodes see each other; b is the LAN's master.
    for (p, others) in [(b, ["a", "c"]), (c, ["a", "b"])] {
        for other in others {
            assert!(
                p.wait_for(|v| v["event"] == "added" && v["peer"] == other, STEP)
                    .is_some(),
                "{} never added {other}\n{}",
                p.name(),
                dump_all(all.clone())
            );
        }
    }
    for other in ["b", "c"] {
        assert!(
            a.wait_for(|v| v["event"] == "added" && v["peer"] == other, STEP)
                .is_some(),
            "a never added {other}\n{}",
            dump_all(all.clone())
        );
    }
    thread::sleep(QUIET);
    for p in [b, c] {
        let seen = ever_added(p);
        for other in ["d1", "d2", "far"] {
            assert!(
                !seen.contains(other),
                "{} saw {other}\n{}",
                p.name(),
                dump_all(all.clone())
            );
        }
        assert_eq!(
            current_master(p).as_deref(),
            Some("b"),
            "{}",
            dump_all(all.clone())
        );
    }
    for p in [d1, d2] {
        let seen = ever_added(p);
        for other in ["b", "c", "far"] {
            assert!(
                !seen.contains(other),
                "{} saw {other}\n{}",
                p.name(),
                dump_all(all.clone())
            );
        }
    }
    assert!(
        !ever_added(a).contains("far"),
        "a used the point-to-point link\n{}",
        dump_all(all.clone())
    );
    assert!(
        ever_added(far).is_empty(),
        "far was answered\n{}",
        dump_all(all.clone())
    );
    procs
}

/// `a` sees b and c only, its master is the LAN's (b), and it heard them
/// on lan0 at its LAN address.
fn only_the_lan(procs: &[Proc]) {
    let all: Vec<&Proc> = procs.iter().collect();
    let a = &procs[0];
    assert_eq!(ever_added(a), set(&["b", "c"]), "{}", dump_all(all.clone()));
    assert_eq!(
        current_master(a).as_deref(),
        Some("b"),
        "{}",
        dump_all(all.clone())
    );
    for added in a.events("added") {
        assert_eq!(added["via"]["interface"], "lan0", "{added}");
        assert_eq!(added["via"]["local"], "10.250.0.1", "{added}");
    }
    assert_no_errors(&all);
}

#[test]
fn three_interfaces_naming_the_lan_interface_sees_only_the_lan() {
    require_netns!();
    let t = three_interfaces();
    let procs = three_clusters(&t, &["--interface", "lan0"]);
    only_the_lan(&procs);
    drop(procs);
    drop(t);
}

/// The default choice is the LAN: neither the point-to-point link (a
/// VPN-like tunnel) nor a bridge whose ports are all virtual (docker0,
/// virbr0, cni0: containers and VMs of this host, not the LAN).
#[test]
fn three_interfaces_default_choice_sees_only_the_lan() {
    require_netns!();
    let t = three_interfaces();
    let procs = three_clusters(&t, &[]);
    only_the_lan(&procs);
    drop(procs);
    drop(t);
}

// ---------------------------------------------------------------------
// 2. Two subnets, a router, broadcast blocked.
// ---------------------------------------------------------------------

/// `s1` = 10.250.1.0/24 with hosts `h1a` (.1) and `h1b` (.2), `s2` =
/// 10.250.2.0/24 with `h2a` (.1) and `h2b` (.2), and router `r` at .254
/// on each, every host's default route through it.
struct TwoSubnets {
    h1a: Host,
    h1b: Host,
    h2a: Host,
    h2b: Host,
    net: Net,
}

fn two_subnets() -> TwoSubnets {
    let mut net = Net::new().expect("net");
    let (s1, s2) = net.routed_subnets().unwrap();
    let mut host = |name: &str, seg: &Segment, ip: &str, gw: &str| {
        let mut h = net.host(name).unwrap();
        net.attach(&mut h, seg, "eth0", &[&format!("{ip}/24")])
            .unwrap();
        net.route(&h, &["default", "via", gw, "dev", "eth0"])
            .unwrap();
        h
    };
    let h1a = host("h1a", &s1, "10.250.1.1", "10.250.1.254");
    let h1b = host("h1b", &s1, "10.250.1.2", "10.250.1.254");
    let h2a = host("h2a", &s2, "10.250.2.1", "10.250.2.254");
    let h2b = host("h2b", &s2, "10.250.2.2", "10.250.2.254");
    TwoSubnets {
        h1a,
        h1b,
        h2a,
        h2b,
        net,
    }
}

#[test]
fn two_subnets_topology_routes_unicast_and_blocks_every_broadcast() {
    require_netns!();
    let t = two_subnets();
    let (near, far) = (listener(&t.h1b, 40_003), listener(&t.h2a, 40_003));
    // Limited and directed broadcast stay on their subnet.
    for to in ["255.255.255.255", "10.250.1.255"] {
        send_from(&t.h1a, sock(to, 40_003));
        assert!(hears(&near), "{to} on its subnet");
        assert!(!hears(&far), "{to} crossed the router");
    }
    // A directed broadcast to the other subnet is not forwarded either
    // (net.ipv4.conf.*.bc_forwarding = 0).
    send_from(&t.h1a, sock("10.250.2.255", 40_003));
    assert!(!hears(&far), "directed broadcast crossed the router");
    // Unicast crosses.
    send_from(&t.h1a, sock("10.250.2.1", 40_003));
    assert!(hears(&far), "unicast is routed");
    drop(t.net);
}

#[test]
fn two_subnets_without_seeds_are_two_clusters() {
    require_netns!();
    let t = two_subnets();
    let procs = [
        node(&t.h1a, "h1a", &["--weight", "0.7"]),
        node(&t.h1b, "h1b", &["--weight", "0.3"]),
        node(&t.h2a, "h2a", &["--weight", "0.9"]),
        node(&t.h2b, "h2b", &["--weight", "0.5"]),
    ];
    let all: Vec<&Proc> = procs.iter().collect();
    let [h1a, h1b, h2a, h2b] = [0, 1, 2, 3].map(|i| &procs[i]);
    wait_table(h1a, &["h1b"], &all);
    wait_table(h1b, &["h1a"], &all);
    wait_table(h2a, &["h2b"], &all);
    wait_table(h2b, &["h2a"], &all);
    wait_master(h1b, "h1a", &all);
    wait_master(h2b, "h2a", &all);
    thread::sleep(QUIET);
    for p in [h1a, h1b] {
        assert_eq!(ever_added(p).len(), 1, "{}", dump_all(all.clone()));
    }
    for p in [h2a, h2b] {
        assert_eq!(ever_added(p).len(), 1, "{}", dump_all(all.clone()));
    }
    // Two masters.
    assert_eq!(
        h1a.events("promotion").len(),
        1,
        "{}",
        dump_all(all.clone())
    );
    assert_eq!(
        h2a.events("promotion").len(),
        1,
        "{}",
        dump_all(all.clone())
    );
    assert_no_errors(&all);
}

#[test]
fn two_subnets_become_one_cluster_through_one_seed_and_stay_one_when_it_dies() {
    require_netns!();
    let t = two_subnets();
    let seed = format!("10.250.2.1:{PORT}");
    // h2a, the seed, outweighs everyone; after it dies h1a does.
    let mut procs = vec![
        node(&t.h2a, "h2a", &["--weight", "0.9"]),
        node(&t.h2b, "h2b", &["--weight", "0.5"]),
        node(&t.h1a, "h1a", &["--weight", "0.7", "--seed", &seed]),
        node(&t.h1b, "h1b", &["--weight", "0.3"]),
    ];
    {
        let all: Vec<&Proc> = procs.iter().collect();
        let ids = ["h2a", "h2b", "h1a", "h1b"];
        for (i, p) in procs.iter().enumerate() {
            let others: Vec<&str> = ids.iter().copied().filter(|&o| o != ids[i]).collect();
            wait_table(p, &others, &all);
        }
        for p in &procs {
            wait_master(p, "h2a", &all);
        }
        // Across the router, a peer's address is its own, not the router's.
        let added = procs[3]
            .events("added")
            .into_iter()
            .find(|v| v["peer"] == "h2b")
            .unwrap();
        assert_eq!(added["peer_addr"], format!("10.250.2.2:{PORT}"), "{added}");
    }
    // The seed dies without a goodbye.
    procs[0].kill().unwrap();
    let killed = Instant::now();
    let survivors: Vec<&Proc> = procs[1..].iter().collect();
    let ids = ["h2b", "h1a", "h1b"];
    for (i, p) in survivors.iter().enumerate() {
        assert!(
            p.wait_for(|v| v["event"] == "removed" && v["peer"] == "h2a", STEP)
                .is_some(),
            "{} never removed h2a\n{}",
            p.name(),
            dump_all(survivors.iter().copied())
        );
        let _ = i;
    }
    for p in &survivors {
        wait_master(p, "h1a", &survivors);
    }
    // For a while (many node timeouts) everyone still has everyone else,
    // and there is one master.
    let until = killed + NODE_TIMEOUT * 2 + Duration::from_secs(4);
    thread::sleep(until.saturating_duration_since(Instant::now()));
    for (i, p) in survivors.iter().enumerate() {
        let others: Vec<&str> = ids.iter().copied().filter(|&o| o != ids[i]).collect();
        assert_eq!(
            table(p),
            set(&others),
            "{}\n{}",
            p.name(),
            dump_all(survivors.iter().copied())
        );
        assert_eq!(
            current_master(p).as_deref(),
            Some("h1a"),
            "{}",
            dump_all(survivors.iter().copied())
        );
        for other in &others {
            let removed = p
                .events("removed")
                .into_iter()
                .filter(|v| v["peer"] == *other)
                .count();
            assert_eq!(
                removed,
                0,
                "{} lost {other}\n{}",
                p.name(),
                dump_all(survivors.iter().copied())
            );
        }
    }
    assert_no_errors(&survivors);
}

/// A network without broadcast, as in a cloud VPC: every node is
/// `--unicast-only` with the same seed (the seed node lists itself, which
/// is fine). They form one cluster across the router, and a bystander on
/// the cluster's port, which no node knows, receives nothing at all: not
/// one broadcast.
#[test]
fn unicast_only_nodes_with_one_seed_form_one_cluster_and_send_no_broadcast() {
    require_netns!();
    let t = two_subnets();
    let bystander = t
        .h1b
        .enter(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, PORT)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        })
        .unwrap();
    let seed = format!("10.250.2.1:{PORT}");
    let args =
        |w: &'static str| ["--weight", w, "--unicast-only", "--seed", &seed].map(str::to_owned);
    let procs = [
        (&t.h2a, "h2a", args("0.9")),
        (&t.h1a, "h1a", args("0.5")),
        (&t.h2b, "h2b", args("0.1")),
    ]
    .map(|(host, id, a)| node(host, id, &a.iter().map(String::as_str).collect::<Vec<_>>()));
    let all: Vec<&Proc> = procs.iter().collect();
    let ids = ["h2a", "h1a", "h2b"];
    for (i, p) in procs.iter().enumerate() {
        let others: Vec<&str> = ids.iter().copied().filter(|&o| o != ids[i]).collect();
        wait_table(p, &others, &all);
    }
    for p in &procs {
        wait_master(p, "h2a", &all);
    }
    let quiet_until = Instant::now() + QUIET;
    let mut buf = [0u8; 2048];
    while Instant::now() < quiet_until {
        if let Ok((n, from)) = bystander.recv_from(&mut buf) {
            panic!(
                "the bystander got {n} bytes from {from}\n{}",
                dump_all(all.clone())
            );
        }
    }
    assert_no_errors(&all);
}

// ---------------------------------------------------------------------
// 3. IPv6 only.
// ---------------------------------------------------------------------

/// A LAN with no IPv4 address at all (only IPv6 link-local ones, and
/// loopback's 127.0.0.1): hosts x0, x1, x2 on eth0.
fn ipv6_lan(n: usize) -> (Net, Vec<Host>) {
    let mut net = Net::new().expect("net");
    let lan = net.segment("lan6").unwrap();
    let mut hosts = Vec::new();
    for i in 0..n {
        let mut h = net.host(&format!("x{i}")).unwrap();
        net.attach(&mut h, &lan, "eth0", &[]).unwrap();
        net.link_local(&h, "eth0").unwrap();
        hosts.push(h);
    }
    (net, hosts)
}

#[test]
fn ipv6_only_topology_has_no_ipv4_and_carries_link_local_multicast() {
    require_netns!();
    let (net, hosts) = ipv6_lan(2);
    let out = hosts[0]
        .run("ip", ["-4", "addr", "show", "dev", "eth0"], STEP)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{out:?}"
    );
    let index = hosts[1]
        .run("cat", ["/sys/class/net/eth0/ifindex"], STEP)
        .unwrap();
    let index: u32 = String::from_utf8_lossy(&index.stdout)
        .trim()
        .parse()
        .unwrap();
    let group: std::net::Ipv6Addr = "ff02::5ea1".parse().unwrap();
    let rx = hosts[1]
        .enter(move || {
            let s = std::net::UdpSocket::bind("[::]:40004").unwrap();
            s.join_multicast_v6(&group, index).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1000)))
                .unwrap();
            s
        })
        .unwrap();
    let tx_index = hosts[0]
        .run("cat", ["/sys/class/net/eth0/ifindex"], STEP)
        .unwrap();
    let tx_index: u32 = String::from_utf8_lossy(&tx_index.stdout)
        .trim()
        .parse()
        .unwrap();
    hosts[0]
        .enter(move || {
            let s = std::net::UdpSocket::bind("[::]:0").unwrap();
            let to = std::net::SocketAddrV6::new(group, 40004, 0, tx_index);
            s.send_to(b"sanity", to).unwrap();
        })
        .unwrap();
    assert!(hears(&rx));
    drop(net);
}

/// Three nodes with `args` on the IPv6-only LAN: discovery at link-local
/// addresses, election, and x2's three messages on `chat` delivered to
/// x0 and x1 once each.
fn ipv6_only(args: &[&str]) {
    let (_net, hosts) = ipv6_lan(3);
    let weights = ["0.9", "0.5", "0.1"];
    let ids = ["x0", "x1", "x2"];
    let procs: Vec<Proc> = (0..3)
        .map(|i| {
            let mut a = vec!["--ipv6", "--weight", weights[i]];
            a.extend_from_slice(args);
            if i < 2 {
                a.extend_from_slice(&["--join", "chat"]);
            } else {
                a.extend_from_slice(&[
                    "--send-channel",
                    "chat",
                    "--send-count",
                    "3",
                    "--send-delay",
                    "3000",
                ]);
            }
            node(&hosts[i], ids[i], &a)
        })
        .collect();
    let all: Vec<&Proc> = procs.iter().collect();
    for (i, p) in procs.iter().enumerate() {
        let others: Vec<&str> = ids.iter().copied().filter(|&o| o != ids[i]).collect();
        wait_table(p, &others, &all);
        for added in p.events("added") {
            let addr = added["peer_addr"].as_str().unwrap_or_default();
            // With its scope as the interface's name.
            assert!(addr.starts_with("[fe80::"), "a link-local peer: {added}");
            assert!(addr.ends_with(&format!("%eth0]:{PORT}")), "{added}");
            assert_eq!(added["via"]["interface"], "eth0", "{added}");
        }
    }
    for p in &procs {
        wait_master(p, "x0", &all);
    }
    for p in &procs[..2] {
        for seq in 0..3 {
            assert!(
                p.wait_for(
                    |v| v["event"] == "msg" && v["peer"] == "x2" && v["seq"] == seq,
                    STEP
                )
                .is_some(),
                "{} never got x2's message {seq}\n{}",
                p.name(),
                dump_all(all.clone())
            );
        }
    }
    thread::sleep(Duration::from_millis(500));
    for p in &procs[..2] {
        assert_eq!(
            p.events("msg").len(),
            3,
            "once each\n{}",
            dump_all(all.clone())
        );
    }
    let promotions: usize = procs.iter().map(|p| p.events("promotion").len()).sum();
    assert_eq!(promotions, 1, "{}", dump_all(all.clone()));
    assert_no_errors(&all);
}

#[test]
fn ipv6_only_lan_discovers_elects_and_carries_channel_messages() {
    require_netns!();
    ipv6_only(&[]);
}

#[test]
fn ipv6_only_lan_works_in_secure_mode() {
    require_netns!();
    ipv6_only(&["--key", KEY]);
}

// ---------------------------------------------------------------------
// 4. Mixed: IPv4-only and dual-stack nodes.
// ---------------------------------------------------------------------

#[test]
fn mixed_ipv4_only_and_dual_stack_nodes_see_everyone_once() {
    require_netns!();
    let mut net = Net::new().expect("net");
    let lan = net.segment("mix").unwrap();
    let ids = ["m0", "m1", "m2", "m3"];
    let mut procs = Vec::new();
    let mut hosts = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut h = net.host(id).unwrap();
        net.attach(&mut h, &lan, "eth0", &[&format!("10.250.0.{}/24", i + 1)])
            .unwrap();
        net.route(&h, &["default", "dev", "eth0"]).unwrap();
        net.link_local(&h, "eth0").unwrap();
        hosts.push(h);
    }
    // m0, m1: IPv4 only; m2, m3: dual stack (IPv4 and IPv6).
    for (i, id) in ids.iter().enumerate() {
        let w = format!("0.{}", 9 - i);
        let mut args = vec!["--weight", w.as_str()];
        if i >= 2 {
            args.push("--ipv6");
        }
        procs.push(node(&hosts[i], id, &args));
    }
    let all: Vec<&Proc> = procs.iter().collect();
    for (i, p) in procs.iter().enumerate() {
        let others: Vec<&str> = ids.iter().copied().filter(|&o| o != ids[i]).collect();
        wait_table(p, &others, &all);
    }
    for p in &procs {
        wait_master(p, "m0", &all);
    }
    thread::sleep(QUIET);
    for p in &procs {
        for other in ids.iter().filter(|&&o| o != p.name()) {
            let added = p
                .events("added")
                .into_iter()
                .filter(|v| v["peer"] == *other)
                .count();
            assert_eq!(
                added,
                1,
                "{} counted {other} {added} times\n{}",
                p.name(),
                dump_all(all.clone())
            );
        }
        assert!(p.events("removed").is_empty(), "{}", dump_all(all.clone()));
    }
    // An IPv4-only node knows the dual-stack ones at their IPv4 address.
    let m2 = procs[0]
        .events("added")
        .into_iter()
        .find(|v| v["peer"] == "m2")
        .unwrap();
    assert_eq!(m2["peer_addr"], format!("10.250.0.3:{PORT}"), "{m2}");
    assert_no_errors(&all);
}

// ---------------------------------------------------------------------
// 5. Interfaces that change.
// ---------------------------------------------------------------------

#[test]
fn an_interface_added_to_a_running_node_is_used_within_the_rescan_period_and_its_removal_breaks_nothing(
) {
    require_netns!();
    let mut net = Net::new().expect("net");
    let lan = net.segment("lan").unwrap();
    let side = net.segment("side").unwrap();
    let mut a = net.host("a").unwrap();
    net.attach(&mut a, &lan, "lan0", &["10.250.0.1/24"])
        .unwrap();
    net.route(&a, &["default", "dev", "lan0"]).unwrap();
    let mut c = net.host("c").unwrap();
    net.attach(&mut c, &lan, "eth0", &["10.250.0.3/24"])
        .unwrap();
    net.route(&c, &["default", "dev", "eth0"]).unwrap();
    let mut b = net.host("b").unwrap();
    net.attach(&mut b, &side, "eth0", &["10.250.5.2/24"])
        .unwrap();
    net.route(&b, &["default", "dev", "eth0"]).unwrap();
    let mut d = net.host("d").unwrap();

    let rescan = Duration::from_millis(1000);
    let mut procs = vec![
        node(&a, "a", &["--weight", "0.9", "--rescan-interval", "1000"]),
        node(&c, "c", &["--weight", "0.5"]),
        node(&b, "b", &["--weight", "0.1"]),
    ];
    {
        let all: Vec<&Proc> = procs.iter().collect();
        wait_table(&procs[0], &["c"], &all);
        wait_table(&procs[1], &["a"], &all);
    }
    // b's segment is not a's yet.
    thread::sleep(Duration::from_secs(1));
    assert!(!ever_added(&procs[0]).contains("b"));

    // a's second interface appears.
    net.attach(&mut a, &side, "lan1", &["10.250.5.1/24"])
        .unwrap();
    let appeared = Instant::now();
    {
        let all: Vec<&Proc> = procs.iter().collect();
        wait_table(&procs[0], &["b", "c"], &all);
        let took = appeared.elapsed();
        // The bound is 5 s with the default rescan of 5 s; here
        // the rescan is 1 s, so a rescan and a hello fit well within 4 s.
        assert!(
            took < rescan + Duration::from_secs(3),
            "b seen {took:?} after lan1 appeared\n{}",
            dump_all(all.clone())
        );
        wait_table(&procs[2], &["a"], &all);
        let via = procs[0]
            .events("added")
            .into_iter()
            .find(|v| v["peer"] == "b")
            .unwrap();
        assert_eq!(via["via"]["interface"], "lan1", "{via}");
        assert_eq!(via["via"]["local"], "10.250.5.1", "{via}");
    }

    // The interface goes: b times out; c stays; a keeps working (a node
    // started afterwards on the LAN is found) and reports no error.
    net.detach(&a, "lan1").unwrap();
    {
        let all: Vec<&Proc> = procs.iter().collect();
        assert!(
            procs[0]
                .wait_for(|v| v["event"] == "removed" && v["peer"] == "b", STEP)
                .is_some(),
            "{}",
            dump_all(all.clone())
        );
    }
    net.attach(&mut d, &lan, "eth0", &["10.250.0.4/24"])
        .unwrap();
    net.route(&d, &["default", "dev", "eth0"]).unwrap();
    procs.push(node(&d, "d", &["--weight", "0.3"]));
    let all: Vec<&Proc> = procs.iter().collect();
    wait_table(&procs[0], &["c", "d"], &all);
    wait_table(&procs[3], &["a", "c"], &all);
    assert!(
        procs[0].events("removed").iter().all(|v| v["peer"] != "c"),
        "{}",
        dump_all(all.clone())
    );
    assert_no_errors(&all[..2]);
    let exited = procs[0].try_wait().unwrap();
    assert!(exited.is_none(), "a exited: {exited:?}");
}

// ---------------------------------------------------------------------
// 6. DNS seeds.
// ---------------------------------------------------------------------

#[test]
fn a_seed_name_is_resolved_through_etc_hosts_and_followed_when_it_moves() {
    require_netns!();
    let t = two_subnets();
    let hosts_file = |ip: &str| format!("127.0.0.1 localhost\n{ip} seed.shoal.test\n");
    t.net.set_hosts(&t.h1a, &hosts_file("10.250.2.1")).unwrap();
    // The name resolves inside h1a's namespace, as the node will see it.
    let out = t
        .h1a
        .run("getent", ["hosts", "seed.shoal.test"], STEP)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("10.250.2.1"),
        "{out:?}"
    );

    let seed = format!("seed.shoal.test:{PORT}");
    let mut s1 = node(&t.h2a, "s1", &["--weight", "0.9"]);
    let x = node(
        &t.h1a,
        "x",
        &["--weight", "0.5", "--seed", &seed, "--seed-refresh", "1000"],
    );
    wait_table(&x, &["s1"], &[&x, &s1]);
    wait_table(&s1, &["x"], &[&x, &s1]);

    // The seed moves: it dies on h2a, the name now says h2b, and it
    // starts again there. Broadcast does not cross the router, so only
    // the name leads x to it.
    s1.kill().unwrap();
    t.net.set_hosts(&t.h1a, &hosts_file("10.250.2.2")).unwrap();
    let out = t
        .h1a
        .run("getent", ["hosts", "seed.shoal.test"], STEP)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("10.250.2.2"),
        "rewritten in place, seen at once: {out:?}"
    );
    let s2 = node(&t.h2b, "s2", &["--weight", "0.9"]);
    let all = [&x, &s2];
    assert!(
        x.wait_for(|v| v["event"] == "added" && v["peer"] == "s2", STEP)
            .is_some(),
        "x never followed the name\n{}",
        dump_all(all)
    );
    wait_table(&s2, &["x"], &all);
    let added = x
        .events("added")
        .into_iter()
        .find(|v| v["peer"] == "s2")
        .unwrap();
    assert_eq!(added["peer_addr"], format!("10.250.2.2:{PORT}"), "{added}");
    assert_no_errors(&all);
}
