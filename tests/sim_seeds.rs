//! Unicast in simulated time: seeds across subnets joined by a router that
//! forwards unicast but not broadcast, clouds with no broadcast at all
//! (`unicast_only`), the unicast limit, hostile `peers` lists, messages
//! across subnets and over two paths, and dual-stack peers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use shoal::protocol::{Destination, Protocol, Sender, Transmit};
use shoal::sim::SimNet;
use shoal::wire::envelope::{self, Hello};
use shoal::wire::framing;
use shoal::{Config, ConfigBuilder, Event, Interface, Key, Via};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

const PORT: u16 = 12345;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Indices of the live nodes.
fn live(net: &SimNet) -> Vec<usize> {
    (0..net.nodes().len())
        .filter(|&i| net.node(i).alive)
        .collect()
}

/// Whether the live nodes form one cluster: one master, and every live
/// node's table holds every other live node (and nothing else).
fn one_cluster(net: &SimNet) -> bool {
    let live = live(net);
    net.masters().len() == 1
        && live.iter().all(|&i| {
            let peers = net.node(i).protocol.peers().count();
            peers == live.len() - 1
                && live.iter().filter(|&&j| j != i).all(|&j| {
                    let id = net.node(j).protocol.id().as_str();
                    net.node(i).protocol.peer(id).is_some()
                })
        })
}

fn describe(net: &SimNet) -> String {
    live(net)
        .iter()
        .map(|&i| {
            format!(
                "{} ({}{} peers)",
                net.node(i).addr,
                if net.node(i).protocol.local().is_master {
                    "master, "
                } else {
                    ""
                },
                net.node(i).protocol.peers().count()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn cfg() -> ConfigBuilder {
    Config::builder().port(PORT)
}

/// Two subnets of `n` nodes each; node 0 (on subnet 1) has `seeds`.
fn two_subnets(net: &mut SimNet, n: usize, seeds: &[&str]) {
    net.add_node_on(cfg().seeds(seeds).build().unwrap(), 1);
    for _ in 1..n {
        net.add_node_on(cfg().build().unwrap(), 1);
    }
    for _ in 0..n {
        net.add_node_on(cfg().build().unwrap(), 2);
    }
}

#[test]
fn two_subnets_are_two_clusters_without_seeds() {
    let mut net = SimNet::new(1);
    two_subnets(&mut net, 4, &[]);
    net.run_for(secs(10.0));
    assert_eq!(net.masters().len(), 2, "{}", describe(&net));
    for i in live(&net) {
        assert_eq!(
            net.node(i).protocol.peers().count(),
            3,
            "{}",
            describe(&net)
        );
        // Nothing but hellos to the subnet: no unicast at all.
        assert_eq!(net.node(i).protocol.stats().dropped.duplicate, 0);
    }
}

#[test]
fn one_seed_joins_two_subnets_and_they_stay_one_when_it_dies() {
    let interval = Config::default().hello_interval();
    for seed in 1..=3 {
        let mut net = SimNet::new(seed);
        two_subnets(&mut net, 4, &["10.0.2.1:12345"]);
        // One cluster within a few hello intervals.
        let joined = net.run_until(interval * 10, one_cluster);
        assert!(joined, "seed {seed}: {}", describe(&net));
        net.run_for(secs(3.0));
        assert!(one_cluster(&net), "seed {seed}: {}", describe(&net));

        // The seed dies: still one cluster, checked every 100 ms for 30 s.
        let seed_node = 4; // 10.0.2.1
        assert_eq!(net.node(seed_node).addr, addr("10.0.2.1:12345"));
        net.crash(seed_node);
        // Its removal takes a node timeout (and a new master, if it was
        // the master, the master timeout): allow that first.
        net.run_for(secs(6.0));
        for _ in 0..300 {
            net.run_for(secs(0.1));
            assert!(one_cluster(&net), "seed {seed}: {}", describe(&net));
        }

        // Newcomers on either side, without seeds, get everyone.
        net.add_node_on(cfg().build().unwrap(), 1);
        net.add_node_on(cfg().build().unwrap(), 2);
        let joined = net.run_until(interval * 10, one_cluster);
        assert!(joined, "seed {seed}: {}", describe(&net));
        net.run_for(secs(5.0));
        assert!(one_cluster(&net), "seed {seed}: {}", describe(&net));
    }
}

/// More nodes than one hello lists (16): the lists rotate, and every node
/// still learns every node of the other side.
#[test]
fn thirty_nodes_a_side_join_through_one_seed() {
    let mut net = SimNet::new(5);
    two_subnets(&mut net, 30, &["10.0.2.1:12345"]);
    let joined = net.run_until(secs(10.0), one_cluster);
    assert!(joined, "{}", describe(&net));
    let took = net.elapsed();
    net.run_for(secs(5.0));
    assert!(one_cluster(&net), "{}", describe(&net));
    eprintln!("60 nodes on two subnets joined in {took:?}");
}

#[test]
fn a_cloud_without_broadcast_is_one_cluster_through_seeds() {
    // Every node has the same two seeds, itself among them for nodes 0
    // and 1, and sends nothing to the cluster address. Subnets do not
    // matter here: each node is on one of its own, so no broadcast reaches
    // anyone.
    let seeds = ["10.0.1.1:12345", "10.0.2.1:12345"];
    let mut net = SimNet::new(7);
    for subnet in 1..=8 {
        let config = cfg().seeds(seeds).unicast_only(true).build().unwrap();
        net.add_node_on(config, subnet);
    }
    let joined = net.run_until(secs(5.0), one_cluster);
    assert!(joined, "{}", describe(&net));
    net.run_for(secs(10.0));
    assert!(one_cluster(&net), "{}", describe(&net));
    // Nobody sent to itself.
    for i in live(&net) {
        assert_eq!(net.node(i).protocol.stats().dropped.own, 0, "{i}");
    }
    // And nothing went to the cluster address: a node alone on a subnet
    // would have heard its own broadcast (and dropped it as its own).
    let mut alone = SimNet::new(8);
    let a = alone.add_node_on(cfg().unicast_only(true).build().unwrap(), 1);
    alone.run_for(secs(3.0));
    assert_eq!(alone.node(a).protocol.stats().packets_out, 0);
}

/// Per-node datagrams sent in each hello interval, over `intervals` intervals.
fn sends_per_interval(net: &mut SimNet, intervals: usize) -> Vec<Vec<u64>> {
    let interval = Config::default().hello_interval();
    let sent = |net: &SimNet| -> Vec<u64> {
        net.nodes()
            .iter()
            .map(|n| n.protocol.stats().packets_out)
            .collect()
    };
    let mut before = sent(net);
    let mut out = Vec::new();
    for _ in 0..intervals {
        net.run_for(interval);
        let after = sent(net);
        out.push(after.iter().zip(&before).map(|(a, b)| a - b).collect());
        before = after;
    }
    out
}

#[test]
fn sends_per_hello_interval_never_exceed_one_plus_the_limit() {
    const LIMIT: usize = 5;
    // Pure unicast, 20 nodes, limit 5: each hello reaches 5 peers, each
    // peer hears us every 4 intervals, within the node timeout.
    let mut net = SimNet::new(11);
    for subnet in 1..=20 {
        let config = cfg()
            .seeds(["10.0.1.1:12345"])
            .unicast_only(true)
            .max_unicast_peers(LIMIT)
            .build()
            .unwrap();
        net.add_node_on(config, subnet);
    }
    let joined = net.run_until(secs(20.0), one_cluster);
    assert!(joined, "{}", describe(&net));
    net.run_for(secs(5.0));
    for (k, sends) in sends_per_interval(&mut net, 50).iter().enumerate() {
        let max = sends.iter().max().copied().unwrap_or(0);
        assert!(max <= LIMIT as u64, "interval {k}: {sends:?}");
        assert!(max > 0);
    }
    assert!(one_cluster(&net), "{}", describe(&net));

    // Broadcast and unicast together: two subnets of 8 joined by a seed,
    // limit 3. The cluster datagram counts as one send.
    let mut net = SimNet::new(12);
    let limited = || cfg().max_unicast_peers(3);
    net.add_node_on(limited().seeds(["10.0.2.1:12345"]).build().unwrap(), 1);
    for subnet in [1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2] {
        net.add_node_on(limited().build().unwrap(), subnet);
    }
    net.run_for(secs(20.0));
    for (k, sends) in sends_per_interval(&mut net, 50).iter().enumerate() {
        let max = sends.iter().max().copied().unwrap_or(0);
        assert!(max <= 1 + 3, "interval {k}: {sends:?}");
    }
}

/// The cost of pure unicast: datagrams each node sends per hello interval
/// (hellos only, a quiet cluster) for N nodes, printed for the README.
#[test]
fn unicast_cost_by_cluster_size() {
    let mut table = String::from(
        "| nodes | sends per node per hello interval | datagrams on the network per interval |\n|---:|---:|---:|\n",
    );
    for n in [2usize, 10, 50, 100] {
        let mut net = SimNet::new(n as u64);
        for k in 0..n {
            let config = cfg()
                .seeds(["10.0.1.1:12345"])
                .unicast_only(true)
                .build()
                .unwrap();
            net.add_node_on(config, 1 + (k % 200) as u8);
        }
        let joined = net.run_until(secs(20.0), one_cluster);
        assert!(joined, "{n}: {}", describe(&net));
        net.run_for(secs(3.0));
        let intervals = 25;
        let sends = sends_per_interval(&mut net, intervals);
        let total: u64 = sends.iter().flatten().sum();
        let per_node = total as f64 / (intervals * n) as f64;
        let max = sends.iter().flatten().max().copied().unwrap_or(0);
        assert!((max as usize) < n, "{n}: {max}");
        table.push_str(&format!(
            "| {n} | {per_node:.1} | {:.0} |\n",
            total as f64 / intervals as f64
        ));
    }
    eprintln!("{table}");
}

#[test]
fn a_channel_message_crosses_subnets_once() {
    let mut net = SimNet::new(21);
    two_subnets(&mut net, 3, &["10.0.2.1:12345"]);
    for i in 0..6 {
        net.protocol_mut(i).join("jobs").unwrap();
    }
    assert!(net.run_until(secs(5.0), one_cluster), "{}", describe(&net));
    let now = net.now();
    net.protocol_mut(0)
        .send(now, "jobs", &json!({"n": 1}))
        .unwrap();
    net.poll(0);
    let now = net.now();
    net.protocol_mut(5)
        .send(now, "jobs", &json!({"n": 2}))
        .unwrap();
    net.poll(5);
    net.run_for(secs(1.0));
    for i in 0..6 {
        let got: Vec<_> = net
            .node(i)
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Message(m) => Some(m.data["n"].as_u64().unwrap()),
                _ => None,
            })
            .collect();
        let expected: Vec<u64> = match i {
            0 => vec![2],
            5 => vec![1],
            _ => vec![1, 2],
        };
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "node {i}: {got:?}");
    }
}

// ----- two paths to one node, by hand ---------------------------------

fn sender(c: char) -> Sender {
    Sender {
        pid: c.to_string().repeat(32),
        iid: format!("{:0>32}", c),
        host_name: "h".into(),
    }
}

fn payloads(node: &mut Protocol) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| node.poll_transmit())
        .map(|t| t.payload)
        .collect()
}

/// Two cores `a` and `b` with one config, plaintext or keyed, their wall
/// clocks set: the start of the two-path tests below.
fn pair(secure: bool) -> (Instant, shoal::Config, Protocol, Protocol) {
    let t0 = Instant::now();
    let mut builder = cfg().weight(0.5);
    if secure {
        builder = builder.secret_key(Key::from_bytes([9; 32]));
    }
    let config = builder.build().unwrap();
    let mut a = Protocol::new(&config, sender('a'), t0, 1);
    let mut b = Protocol::new(&config, sender('b'), t0, 2);
    a.set_wall_clock(t0, 1_700_000_000_000);
    b.set_wall_clock(t0, 1_700_000_000_000);
    (t0, config, a, b)
}

/// Node `a` heard by node `b` over IPv4 and IPv6 (one interface, both
/// families), in plaintext and in secure mode: one peer whose address does
/// not flap, each message once, no replay or attack counted, and a message
/// sent twice delivered twice.
#[test]
fn a_dual_stack_node_is_one_peer_and_each_datagram_counts_once() {
    for secure in [false, true] {
        let (t0, config, mut a, mut b) = pair(secure);
        b.set_interfaces(
            t0,
            &[
                Interface::new("eth0", 2, "10.0.0.1".parse().unwrap(), 24),
                Interface::new("eth0", 2, "fe80::1".parse().unwrap(), 64),
            ],
        );
        b.join("jobs").unwrap();
        let v4 = (
            addr("10.0.0.2:12345"),
            Via::new("eth0", 2, "10.0.0.1".parse().unwrap()),
        );
        let v6 = (
            addr("[fe80::2%2]:12345"),
            Via::new("eth0", 2, "fe80::1".parse().unwrap()),
        );
        let interval = config.hello_interval();
        let mut now = t0;
        // 20 hellos, the copies in either order.
        for k in 0..20u32 {
            a.handle_timeout(now);
            for p in payloads(&mut a) {
                let paths = if k % 3 == 0 { [&v6, &v4] } else { [&v4, &v6] };
                for (from, via) in paths {
                    b.handle_datagram_via(now, *from, Some(via), &p);
                }
            }
            now += interval;
            b.handle_timeout(now);
        }
        assert_eq!(b.peers().count(), 1);
        let peer = b.peers().next().unwrap();
        // The first path heard stays while it lives.
        assert_eq!(peer.addr, v6.0, "secure {secure}");
        assert_eq!(peer.via.as_ref(), Some(&v6.1));
        assert!(
            peer.to_string().contains("at [fe80::2%eth0]:12345"),
            "{peer}"
        );
        let d = &b.stats().dropped;
        assert_eq!(d.duplicate, 20, "secure {secure}: {d:?}");
        assert_eq!(d.replay + d.auth_failed + d.unknown_key, 0, "{d:?}");

        // A message over both paths: once. The same data sent again: twice.
        for _ in 0..2 {
            a.send(now, "jobs", &json!({"n": 1})).unwrap();
            for p in payloads(&mut a) {
                for (from, via) in [&v4, &v6] {
                    b.handle_datagram_via(now, *from, Some(via), &p);
                }
            }
        }
        let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
        let added = events
            .iter()
            .filter(|e| matches!(e, Event::Added(_)))
            .count();
        let updated = events
            .iter()
            .filter(|e| matches!(e, Event::Updated(_)))
            .count();
        let messages = events
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        assert_eq!((added, updated, messages), (1, 0, 2), "{events:?}");

        // The IPv6 path dies: after two intervals of silence on it, the
        // peer moves to IPv4, once, with no event.
        for _ in 0..6 {
            a.handle_timeout(now);
            for p in payloads(&mut a) {
                b.handle_datagram_via(now, v4.0, Some(&v4.1), &p);
            }
            now += interval;
            b.handle_timeout(now);
        }
        let peer = b.peers().next().unwrap();
        assert_eq!(peer.addr, v4.0);
        assert!(peer.to_string().contains("at 10.0.0.2:12345"), "{peer}");
        assert_eq!(std::iter::from_fn(|| b.poll_event()).count(), 0);
    }
}

/// A sender with two interfaces on the LAN of a receiver with one: its
/// datagrams come twice, from two source addresses, by one interface. The
/// receiver cannot know beforehand; the first second copy tells it (as a
/// stale hello in plaintext, or as one replay in secure mode), and from then
/// on each copy is a benign duplicate: one peer, each message once.
#[test]
fn a_node_with_two_interfaces_on_one_lan_is_one_peer_and_each_message_counts_once() {
    for secure in [false, true] {
        let (t0, config, mut a, mut b) = pair(secure);
        b.set_interfaces(
            t0,
            &[Interface::new("eth0", 2, "10.0.0.1".parse().unwrap(), 24)],
        );
        b.join("jobs").unwrap();
        let via = Via::new("eth0", 2, "10.0.0.1".parse().unwrap());
        let sources = [addr("10.0.0.2:12345"), addr("10.0.0.3:12345")];
        let mut now = t0;
        for _ in 0..10 {
            a.handle_timeout(now);
            a.send(now, "jobs", &json!({"n": 1})).unwrap();
            for p in payloads(&mut a) {
                for from in sources {
                    b.handle_datagram_via(now, from, Some(&via), &p);
                }
            }
            now += config.hello_interval();
            b.handle_timeout(now);
        }
        assert_eq!(b.peers().count(), 1);
        assert_eq!(b.peers().next().unwrap().addr, sources[0]);
        let d = b.stats().dropped.clone();
        assert!(d.replay <= 1, "secure {secure}: {d:?}");
        assert_eq!(d.auth_failed + d.unknown_key, 0, "{d:?}");
        let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).collect();
        let messages = events
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        // Ten messages sent, ten delivered: at most the first one's copy
        // came before the receiver knew (plaintext has no replay guard).
        let first_copies = if secure { 0 } else { 1 };
        assert!(
            (10..=10 + first_copies).contains(&messages),
            "secure {secure}: {messages}, {d:?}"
        );
        assert!(d.duplicate >= 17, "{d:?}");
    }
}

// ----- the wire ----------------------------------------------------------

/// The JSON of a plaintext single-block datagram.
fn json_of(datagram: &[u8]) -> String {
    let (_, data, tail) = framing::parse_block(datagram).unwrap();
    assert!(tail.is_empty());
    String::from_utf8(data.to_vec()).unwrap()
}

#[test]
fn with_nothing_unicast_a_hello_is_what_it_always_was() {
    let t0 = Instant::now();
    let config = cfg().weight(0.5).build().unwrap();
    for interfaces in [false, true] {
        let mut node = Protocol::new(&config, sender('a'), t0, 1);
        if interfaces {
            let eth0 = Interface::new("eth0", 2, "10.0.0.1".parse().unwrap(), 24);
            node.set_interfaces(t0, &[eth0]);
        }
        node.handle_timeout(t0);
        let sent: Vec<Transmit> = std::iter::from_fn(|| node.poll_transmit()).collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].destination, Destination::Cluster);
        // Byte for byte the hello of the previous release.
        let pid = "a".repeat(32);
        let iid = format!("{:0>32}", 'a');
        let expected = format!(
            r#"{{"data":{{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"127.0.0.1","interval":400,"seq":1}},"event":"hello","pid":"{pid}","iid":"{iid}","hostName":"h"}}"#,
        );
        assert_eq!(json_of(&sent[0].payload), expected);
    }
}

#[test]
fn an_advertised_address_is_sent_and_used_as_the_unicast_target() {
    let t0 = Instant::now();
    let ad = cfg()
        .weight(0.9)
        .advertise_addr("203.0.113.9".parse().unwrap())
        .build()
        .unwrap();
    let mut a = Protocol::new(&ad, sender('a'), t0, 1);
    a.handle_timeout(t0);
    let hello = payloads(&mut a).remove(0);
    assert!(json_of(&hello).contains(r#""address":"203.0.113.9""#));

    // b, on another subnet, is reached by unicast at the advertised
    // address with the source port; its table shows the source address.
    let config = cfg().weight(0.1).build().unwrap();
    let mut b = Protocol::new(&config, sender('b'), t0, 2);
    b.set_interfaces(
        t0,
        &[Interface::new("eth0", 2, "10.0.1.1".parse().unwrap(), 24)],
    );
    let from = addr("192.0.2.77:40000");
    b.handle_datagram(t0, from, &hello);
    assert_eq!(b.peers().next().unwrap().addr, from);
    b.handle_timeout(t0 + secs(0.5));
    let sent: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
    let unicast: Vec<_> = sent
        .iter()
        .filter_map(|t| match t.destination {
            Destination::Peer(to) => Some(to),
            _ => None,
        })
        .collect();
    assert_eq!(unicast, vec![addr("203.0.113.9:40000")]);
    // And b's hellos list it so.
    let hello = sent.last().unwrap();
    assert!(
        json_of(&hello.payload).contains(r#""peers":["203.0.113.9:40000"]"#),
        "{}",
        json_of(&hello.payload)
    );
}

#[test]
fn a_newly_resolved_seed_gets_a_hello_at_once_and_set_seeds_replaces_the_list() {
    let t0 = Instant::now();
    let config = cfg().weight(0.5).seeds(["10.0.2.1:12345"]).build().unwrap();
    let mut node = Protocol::new(&config, sender('a'), t0, 1);
    node.set_interfaces(
        t0,
        &[Interface::new("eth0", 2, "10.0.1.1".parse().unwrap(), 24)],
    );
    let unicast = |node: &mut Protocol| -> Vec<SocketAddr> {
        std::iter::from_fn(|| node.poll_transmit())
            .filter_map(|t| match t.destination {
                Destination::Peer(to) => Some(to),
                _ => None,
            })
            .collect()
    };
    // The literal seed from the config: from the first hello on.
    node.handle_timeout(t0);
    assert_eq!(unicast(&mut node), vec![addr("10.0.2.1:12345")]);
    // A name resolved 100 ms later to a new address: a hello within 5 ms,
    // not at the next interval; the old literal is replaced.
    let t1 = t0 + secs(0.1);
    node.set_seeds(t1, &[addr("10.0.3.1:12345")]);
    let due = node.poll_timeout().unwrap();
    assert!(due <= t1 + secs(0.005), "{:?}", due - t1);
    node.handle_timeout(due);
    assert_eq!(unicast(&mut node), vec![addr("10.0.3.1:12345")]);
    // The same list again: nothing early.
    node.set_seeds(due, &[addr("10.0.3.1:12345")]);
    assert_eq!(node.poll_timeout(), Some(due + config.hello_interval()));
}

// ----- hostile peers lists ---------------------------------------------

fn plain_hello(from_iid: char, seq: u64, peers: serde_json::Value) -> Vec<Vec<u8>> {
    let mut hello = serde_json::to_value(Hello {
        is_master: false,
        is_master_eligible: true,
        weight: 0.1,
        address: "127.0.0.1".into(),
        info: None,
        interval: Some(400),
        seq: Some(seq),
        epoch: None,
        epoch_master: None,
        reg: None,
        peers: None,
    })
    .unwrap();
    hello["peers"] = peers;
    let json = envelope::encode("hello", &hello, &sender(from_iid)).unwrap();
    let mut out = Vec::new();
    framing::encode(&json, [seq as u8; 16], |d| out.push(d));
    out
}

#[test]
fn hostile_peers_lists_are_bounded_and_never_panic() {
    const LIMIT: usize = 8;
    let t0 = Instant::now();
    let config = cfg().weight(0.5).max_unicast_peers(LIMIT).build().unwrap();
    let mut node = Protocol::new(&config, sender('a'), t0, 1);
    node.set_interfaces(
        t0,
        &[Interface::new("eth0", 2, "10.0.1.5".parse().unwrap(), 24)],
    );
    let many: Vec<String> = (0..1000)
        .map(|i| format!("10.9.{}.{}:12345", i / 250, i % 250 + 1))
        .collect();
    let long = "1".repeat(5000);
    let lists = [
        json!(many),
        json!([
            "0.0.0.0:12345",
            "224.0.0.1:12345",
            "255.255.255.255:12345",
            "10.0.1.255:12345",
            "[ff02::1]:12345",
            "[::]:12345",
            "[fe80::1%2]:12345",
            "127.0.0.1:12345",
            "10.0.1.5:12345",
            "10.0.1.77:12345",
            "0.1.2.3:12345",
            "10.9.9.9:0",
            "999.1.1.1:1",
            "x",
            "",
            long
        ]),
        json!([1, 2, 3]),
        json!([["10.9.9.9:1"]]),
        json!({"a": "10.9.9.9:1"}),
        json!("10.9.9.9:1"),
        json!(null),
        json!(17),
    ];
    let mut now = t0;
    let hostile = [addr("10.7.0.1:12345"), addr("10.7.0.2:12345")];
    for (k, list) in lists.iter().cycle().take(40).enumerate() {
        let from = hostile[k % 2];
        let iid = if k % 2 == 0 { 'x' } else { 'y' };
        for datagram in plain_hello(iid, k as u64 + 1, list.clone()) {
            node.handle_datagram(now, from, &datagram);
        }
        now += secs(0.1);
        node.handle_timeout(now);
        let sent = std::iter::from_fn(|| node.poll_transmit()).count();
        assert!(sent <= 1 + LIMIT, "{k}: {sent}");
    }
    // The second list held nothing usable.
    let mut fresh = Protocol::new(&config, sender('a'), t0, 1);
    fresh.set_interfaces(
        t0,
        &[Interface::new("eth0", 2, "10.0.1.5".parse().unwrap(), 24)],
    );
    for datagram in plain_hello('x', 1, lists[1].clone()) {
        fresh.handle_datagram(t0, addr("10.0.1.9:12345"), &datagram);
    }
    fresh.handle_timeout(t0 + secs(0.5));
    let sent: Vec<Transmit> = std::iter::from_fn(|| fresh.poll_transmit()).collect();
    assert_eq!(
        sent.len(),
        1,
        "{:?}",
        sent.iter().map(|t| t.destination).collect::<Vec<_>>()
    );
    // When the hostile peers fall silent, their addresses are forgotten.
    now += secs(10.0);
    node.handle_timeout(now);
    let sent: Vec<Transmit> = std::iter::from_fn(|| node.poll_transmit()).collect();
    assert!(
        sent.iter().all(|t| t.destination == Destination::Cluster),
        "{sent:?}"
    );
}
