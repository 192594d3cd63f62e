//! shoal nodes (the `examples/node.rs` peer, one process per host) on a
//! private virtual LAN of network namespaces: discovery and master election
//! over limited broadcast, subnet broadcast and multicast; channel messages
//! (single- and multi-block, plain and keyed) between hosts; failover after
//! the master is SIGKILLed; graceful exit on SIGTERM.
//!
//! Needs root and iproute2; skipped otherwise (see `require_netns!`).
//! Everything runs inside namespaces created by `support::Lan`, torn down on
//! drop. The example is rebuilt first (`support::peer::build_rust_peer`).

mod support;

use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::peer::{spawn_peer, Impl};
use support::proc::dump_all;
use support::{Lan, Proc};

/// Bound for one expected event once its cause is under way. Generous for a
/// loaded 2-core machine; the happy path never waits it out.
const STEP: Duration = Duration::from_secs(10);
use support::peer::{CHECK_INTERVAL, NODE_TIMEOUT, TIMING};
const PORT: u16 = 12345;

const IDS: [&str; 3] = ["n0", "n1", "n2"];
const WEIGHTS: [&str; 3] = ["0.9", "0.5", "0.1"];

fn is<'a>(event: &'a str, peer: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["event"] == event && v["peer"] == peer
}

fn addr(lan: &Lan, host: usize) -> String {
    format!("{}:{PORT}", lan.host(host).addr)
}

fn count(p: &Proc, event: &str, peer: &str) -> usize {
    p.lines().iter().filter(|v| is(event, peer)(v)).count()
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Three shoal nodes, elected. Field order matters: the processes are killed
/// before the LAN is torn down.
struct Cluster {
    nodes: Vec<Proc>,
    lan: Lan,
}

/// Starts n0 (0.9) and waits for its `ready`, then n1 (0.5) and n2 (0.1), on
/// hosts 0..3, with `args` (transport, key...) and the short timers. Checks
/// that everyone discovers everyone at the right address and that n0, and
/// only n0 so far, becomes master.
fn elected(args: &[&str]) -> Cluster {
    let lan = Lan::new(3).expect("create lan");
    let spawn = |i: usize| {
        let all = [args, &TIMING[..], &["--weight", WEIGHTS[i], "--lan"]].concat();
        spawn_peer(Impl::Shoal, lan.host(i), IDS[i], &all)
    };
    let first = spawn(0);
    first
        .wait_event("ready", STEP)
        .unwrap_or_else(|| panic!("n0 not ready\n{}", first.dump()));
    let nodes = vec![first, spawn(1), spawn(2)];
    let all = || dump_all(&nodes);

    for (i, p) in nodes.iter().enumerate() {
        let ready = p
            .wait_event("ready", STEP)
            .unwrap_or_else(|| panic!("{} not ready\n{}", IDS[i], all()));
        assert_eq!(
            ready["weight"].as_f64(),
            WEIGHTS[i].parse().ok(),
            "{}",
            all()
        );
    }
    for (i, p) in nodes.iter().enumerate() {
        for (j, other) in IDS.iter().enumerate().filter(|&(j, _)| j != i) {
            let added = p
                .wait_for(is("added", other), STEP)
                .unwrap_or_else(|| panic!("{} never added {other}\n{}", IDS[i], all()));
            assert_eq!(added["peer_addr"], addr(&lan, j), "{}", all());
        }
    }
    nodes[0]
        .wait_event("promotion", STEP)
        .unwrap_or_else(|| panic!("n0 never promoted\n{}", all()));
    for p in &nodes[1..] {
        let master = p
            .wait_for(is("master", "n0"), STEP)
            .unwrap_or_else(|| panic!("{} never saw master n0\n{}", p.name(), all()));
        assert_eq!(master["peer_addr"], addr(&lan, 0), "{}", all());
    }
    Cluster { nodes, lan }
}

/// Discovery and election over one transport; then nothing changes for two
/// more check rounds: one promotion overall, one `master` report per other
/// node, every peer added once, nothing removed.
fn election(transport: &[&str]) {
    require_netns!();
    let mut cluster = elected(transport);
    thread::sleep(2 * CHECK_INTERVAL + Duration::from_millis(200));
    let nodes = &cluster.nodes;
    let all = || dump_all(nodes);
    let promotions: usize = nodes.iter().map(|p| p.events("promotion").len()).sum();
    assert_eq!(promotions, 1, "exactly one promotion overall\n{}", all());
    assert_eq!(nodes[0].events("promotion").len(), 1, "{}", all());
    assert!(nodes[0].events("master").is_empty(), "{}", all());
    for (i, p) in nodes.iter().enumerate() {
        for bad in ["removed", "demotion", "error"] {
            assert!(p.events(bad).is_empty(), "unexpected {bad}\n{}", all());
        }
        for other in IDS.iter().filter(|&&o| o != IDS[i]) {
            assert_eq!(count(p, "added", other), 1, "{}", all());
        }
        if i > 0 {
            let masters = p.events("master");
            assert_eq!(masters.len(), 1, "{}: one master report\n{}", IDS[i], all());
            assert_eq!(masters[0]["peer"], "n0", "{}", all());
        }
    }
    for p in &mut cluster.nodes {
        p.stop(STEP);
    }
    drop(cluster.lan);
}

#[test]
fn election_over_limited_broadcast() {
    election(&["--broadcast", "255.255.255.255"]);
}

#[test]
fn election_over_subnet_broadcast() {
    election(&["--broadcast", &Lan::SUBNET_BROADCAST.to_string()]);
}

#[test]
fn election_over_multicast() {
    election(&["--multicast", "239.255.77.2"]);
}

/// A receiver on host 0 and, on each of hosts 1 and 2, two senders sharing
/// the port (shoal binds with SO_REUSEADDR/SO_REUSEPORT): five 200-byte
/// messages (one block) and five 4000-byte ones (three blocks) each. Every
/// message arrives exactly once, with the right size.
fn channel_messages(extra: &[&str]) {
    require_netns!();
    let lan = Lan::new(3).expect("create lan");
    let count = 5u64;
    let broadcast = Lan::SUBNET_BROADCAST.to_string();
    let base = [extra, &["--broadcast", &broadcast, "--lan"][..]].concat();
    let rx = spawn_peer(
        Impl::Shoal,
        lan.host(0),
        "rx",
        &[&base[..], &["--join", "chat"]].concat(),
    );
    rx.wait_event("ready", STEP)
        .unwrap_or_else(|| panic!("rx not ready\n{}", rx.dump()));

    let count_s = count.to_string();
    let mut senders: Vec<(Proc, u64)> = Vec::new();
    for host in [1, 2] {
        for size in [200u64, 4000] {
            let id = format!("s{host}-{size}");
            let size_s = size.to_string();
            let args = [
                &base[..],
                &[
                    "--send-channel",
                    "chat",
                    "--send-count",
                    &count_s,
                    "--send-size",
                    &size_s,
                    "--send-delay",
                    "100",
                ],
            ]
            .concat();
            senders.push((spawn_peer(Impl::Shoal, lan.host(host), &id, &args), size));
        }
    }
    let all = || dump_all(std::iter::once(&rx).chain(senders.iter().map(|(p, _)| p)));

    for (p, size) in &senders {
        let done = p
            .wait_event("send_done", STEP)
            .unwrap_or_else(|| panic!("{} never sent\n{}", p.name(), all()));
        assert_eq!(done["count"], count, "{}", all());
        let start = p
            .wait_event("send_start", Duration::ZERO)
            .expect("send_start");
        assert_eq!(start["bytes"], *size, "{}", all());
        for seq in 0..count {
            let msg = rx
                .wait_for(
                    |v| v["event"] == "msg" && v["peer"] == p.name() && v["seq"] == seq,
                    STEP,
                )
                .unwrap_or_else(|| panic!("rx missed {} seq {seq}\n{}", p.name(), all()));
            assert_eq!(msg["channel"], "chat", "{}", all());
            assert_eq!(msg["bytes"], *size, "{}", all());
        }
    }
    // Exactly once each: give duplicates a moment to show up.
    thread::sleep(Duration::from_millis(300));
    let msgs = rx.events("msg");
    assert_eq!(msgs.len(), senders.len() * count as usize, "{}", all());
    for (p, _) in &senders {
        for seq in 0..count {
            let n = msgs
                .iter()
                .filter(|v| v["peer"] == p.name() && v["seq"] == seq)
                .count();
            assert_eq!(n, 1, "{} seq {seq} arrived {n} times\n{}", p.name(), all());
        }
    }
    assert!(rx.events("error").is_empty(), "{}", all());
    for (p, _) in &senders {
        assert!(p.events("error").is_empty(), "{}", all());
        assert!(p.events("msg").is_empty(), "{}", all());
    }
}

#[test]
fn channel_messages_plain() {
    channel_messages(&[]);
}

#[test]
fn channel_messages_keyed() {
    channel_messages(&["--passphrase", "shoal lan key"]);
}

/// SIGKILL the master: n1 (0.5) promotes within node timeout + check
/// interval (plus scheduling margin), n2 reports n0 removed and n1 master.
#[test]
fn failover_after_master_killed() {
    require_netns!();
    let mut cluster = elected(&["--broadcast", "255.255.255.255"]);
    let killed_at = epoch_ms();
    cluster.nodes[0].kill().expect("kill n0");

    let lan = &cluster.lan;
    let nodes = &cluster.nodes;
    let all = || dump_all(nodes);
    // Nominally n1 notices within node timeout + one check interval.
    let bound = NODE_TIMEOUT + CHECK_INTERVAL + Duration::from_millis(2500);
    let promotion = nodes[1]
        .wait_event("promotion", bound)
        .unwrap_or_else(|| panic!("n1 did not take over within {bound:?}\n{}", all()));
    let took = promotion["t"].as_f64().unwrap_or(f64::MAX) - killed_at;
    assert!(
        took <= bound.as_millis() as f64,
        "n1 promoted {took:.0} ms after the kill\n{}",
        all()
    );
    eprintln!("failover: n1 promoted {took:.0} ms after n0 was killed");
    for p in &nodes[1..] {
        let removed = p
            .wait_for(is("removed", "n0"), STEP)
            .unwrap_or_else(|| panic!("{} never removed n0\n{}", p.name(), all()));
        assert_eq!(removed["peer_addr"], addr(lan, 0), "{}", all());
    }
    let master = nodes[2]
        .wait_for(is("master", "n1"), STEP)
        .unwrap_or_else(|| panic!("n2 never saw master n1\n{}", all()));
    assert_eq!(master["peer_addr"], addr(lan, 1), "{}", all());

    // It stays that way for another check round.
    thread::sleep(CHECK_INTERVAL + Duration::from_millis(200));
    assert_eq!(nodes[1].events("promotion").len(), 1, "{}", all());
    assert!(nodes[2].events("promotion").is_empty(), "{}", all());
    for p in &nodes[1..] {
        assert!(p.events("demotion").is_empty(), "{}", all());
        assert!(p.events("error").is_empty(), "{}", all());
        assert_eq!(count(p, "removed", "n0"), 1, "{}", all());
    }
    let masters: Vec<Value> = nodes[2]
        .events("master")
        .iter()
        .map(|v| v["peer"].clone())
        .collect();
    assert_eq!(masters, ["n0", "n1"], "{}", all());
}

/// SIGTERM: the node prints `exit` 0 and exits 0 within 2 s; its peer
/// then drops it after the node timeout.
#[test]
fn sigterm_exits_promptly() {
    require_netns!();
    let lan = Lan::new(2).expect("create lan");
    let spawn = |i: usize| {
        let all = [&TIMING[..], &["--weight", WEIGHTS[i], "--lan"]].concat();
        spawn_peer(Impl::Shoal, lan.host(i), IDS[i], &all)
    };
    let mut nodes = [spawn(0), spawn(1)];
    for (i, p) in nodes.iter().enumerate() {
        let other = IDS[1 - i];
        p.wait_for(is("added", other), STEP)
            .unwrap_or_else(|| panic!("{} never added {other}\n{}", IDS[i], dump_all(&nodes)));
    }
    let [n0, n1] = &mut nodes;
    let sent = std::time::Instant::now();
    assert!(n0.signal(libc::SIGTERM).expect("SIGTERM"), "{}", n0.dump());
    let limit = Duration::from_secs(2);
    let exit = n0.wait_event("exit", limit);
    let status = n0.wait_timeout(limit.saturating_sub(sent.elapsed()));
    let took = sent.elapsed();
    let dump = || dump_all([&*n0, &*n1]);
    assert_eq!(
        exit.as_ref().map(|e| &e["code"]),
        Some(&Value::from(0)),
        "no exit 0 line within {limit:?}\n{}",
        dump()
    );
    match status {
        Ok(Some(status)) => assert!(status.success(), "n0 exited {status}\n{}", dump()),
        other => panic!(
            "n0 still running {took:?} after SIGTERM ({other:?})\n{}",
            dump()
        ),
    }
    assert!(took < limit, "exit took {took:?}\n{}", dump());
    eprintln!("sigterm: n0 exited {took:?} after SIGTERM");
    n1.wait_for(is("removed", "n0"), STEP)
        .unwrap_or_else(|| panic!("n1 never removed n0\n{}", dump()));
    n1.stop(STEP);
}
