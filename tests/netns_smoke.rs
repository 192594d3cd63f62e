//! Smoke tests for the network-namespace harness with real node-discovery
//! peers (`tests/node/peer.js`): discovery and master election over limited
//! broadcast, subnet broadcast and multicast, and channel messages (including
//! multi-block ones, plain and keyed) between hosts.
//!
//! Needs root, iproute2 and Node; skipped otherwise (see `require_netns!`).
//! Everything runs inside private namespaces created by `support::Lan`.

mod support;

use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{node_peer, Lan, Proc};

/// Bound for one expected event once its cause is under way. Generous so a
/// loaded 2-core machine (Node takes ~150 ms to start when idle, seconds when
/// many tests run at once) does not fail; the happy path never waits it out.
const STEP: Duration = Duration::from_secs(15);
/// Fast but still ordered timers: hello < check <= node timeout <= master timeout.
const TIMING: [&str; 8] = [
    "--hello-interval",
    "300",
    "--check-interval",
    "1200",
    "--node-timeout",
    "2400",
    "--master-timeout",
    "2400",
];
const CHECK_INTERVAL: Duration = Duration::from_millis(1200);

fn spawn_node(lan: &Lan, host: usize, id: &str, args: &[&str]) -> Proc {
    let mut all = vec!["--id", id, "--port", "12345"];
    all.extend_from_slice(args);
    Proc::spawn(id, node_peer(lan.host(host), &all)).expect("spawn node peer")
}

fn dump(peers: &[&Proc]) -> String {
    peers.iter().map(|p| p.dump()).collect()
}

fn is<'a>(event: &'static str, peer: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["event"] == event && v["peer"] == peer
}

/// Stops a peer with SIGTERM and checks it reports `exit` 0 and exits 0.
fn stop(p: &mut Proc) {
    let status = p.terminate().expect("terminate");
    assert!(
        p.wait_stdout_closed(STEP),
        "stdout still open\n{}",
        p.dump()
    );
    assert!(
        status.success(),
        "{} exited {status}\n{}",
        p.name(),
        p.dump()
    );
    let exit = p.wait_event("exit", Duration::ZERO);
    assert_eq!(
        exit.as_ref().map(|e| &e["code"]),
        Some(&Value::from(0)),
        "{}",
        p.dump()
    );
}

/// Three Node peers with weights 0.9/0.5/0.1 on one LAN: everyone discovers
/// everyone, and they settle on the 0.9 peer as the only master.
fn election(transport: &[&str]) {
    require_netns!();
    require_node!();
    let lan = Lan::new(3).expect("create lan");
    let ids = ["n0", "n1", "n2"];
    let weights = ["0.9", "0.5", "0.1"];
    // The 0.9 peer is up before the others start: a lower peer then hears its
    // hello (every 300 ms) long before its own first check (1200 ms after it
    // starts), so it does not promote itself, even on a loaded machine.
    let spawn = |i: usize| {
        let args = [transport, &TIMING[..], &["--weight", weights[i]]].concat();
        spawn_node(&lan, i, ids[i], &args)
    };
    let first = spawn(0);
    first
        .wait_event("ready", STEP)
        .unwrap_or_else(|| panic!("n0 not ready\n{}", first.dump()));
    let mut peers = vec![first, spawn(1), spawn(2)];
    let all: Vec<&Proc> = peers.iter().collect();

    for (i, p) in peers.iter().enumerate() {
        let ready = p
            .wait_event("ready", STEP)
            .unwrap_or_else(|| panic!("{} not ready\n{}", ids[i], dump(&all)));
        assert_eq!(ready["weight"].as_f64(), weights[i].parse().ok());
    }
    for (i, p) in peers.iter().enumerate() {
        for (j, other) in ids.iter().enumerate().filter(|&(j, _)| j != i) {
            let added = p
                .wait_for(is("added", other), STEP)
                .unwrap_or_else(|| panic!("{} never added {other}\n{}", ids[i], dump(&all)));
            assert_eq!(added["peer_addr"], format!("{}:12345", lan.host(j).addr));
        }
    }
    peers[0]
        .wait_event("promotion", STEP)
        .unwrap_or_else(|| panic!("n0 never promoted\n{}", dump(&all)));
    for p in &peers[1..] {
        let master = p
            .wait_for(is("master", "n0"), STEP)
            .unwrap_or_else(|| panic!("{} never saw master n0\n{}", p.name(), dump(&all)));
        assert_eq!(master["peer_addr"], format!("{}:12345", lan.host(0).addr));
    }
    // Give the lower peers another check round to (wrongly) promote.
    thread::sleep(CHECK_INTERVAL + Duration::from_millis(300));
    for p in &peers {
        for bad in ["removed", "demotion", "error"] {
            assert!(p.events(bad).is_empty(), "unexpected {bad}\n{}", dump(&all));
        }
        let masters: Vec<Value> = p
            .events("master")
            .iter()
            .map(|v| v["peer"].clone())
            .collect();
        assert!(masters.iter().all(|m| m == "n0"), "{}", dump(&all));
    }
    for p in &peers[1..] {
        assert!(p.events("promotion").is_empty(), "{}", dump(&all));
    }
    drop(all);
    for p in &mut peers {
        stop(p);
    }
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
    election(&["--multicast", "239.255.77.1"]);
}

/// One receiver and three senders on separate hosts: small messages, one just
/// over a single 1500-byte block (1464 bytes of payload) and a 3-block one.
fn channel_messages(extra: &[&str]) {
    require_netns!();
    require_node!();
    let lan = Lan::new(4).expect("create lan");
    let count = 3;
    let rx = spawn_node(&lan, 0, "rx", &[extra, &["--join", "ch"]].concat());
    rx.wait_event("ready", STEP)
        .unwrap_or_else(|| panic!("rx not ready\n{}", rx.dump()));

    let senders: Vec<(Proc, Option<u64>)> = [
        (1, "small", None),
        (2, "mid", Some(1500)),
        (3, "large", Some(4000)),
    ]
    .into_iter()
    .map(|(host, id, size): (usize, &str, Option<u64>)| {
        let size_s = size.map(|s| s.to_string());
        let mut args = extra.to_vec();
        args.extend([
            "--send-channel",
            "ch",
            "--send-count",
            "3",
            "--send-delay",
            "200",
        ]);
        if let Some(s) = &size_s {
            args.extend(["--send-size", s]);
        }
        (spawn_node(&lan, host, id, &args), size)
    })
    .collect();
    let mut all: Vec<&Proc> = vec![&rx];
    all.extend(senders.iter().map(|(p, _)| p));

    for (p, size) in &senders {
        let done = p
            .wait_event("send_done", STEP)
            .unwrap_or_else(|| panic!("{} never sent\n{}", p.name(), dump(&all)));
        assert_eq!(done["count"], count, "{}", dump(&all));
        let start = p.wait_event("send_start", Duration::ZERO).unwrap();
        if let Some(size) = size {
            assert_eq!(start["bytes"], *size, "{}", dump(&all));
        }
        for seq in 0..count {
            let msg = rx
                .wait_for(
                    |v| v["event"] == "msg" && v["peer"] == p.name() && v["seq"] == seq,
                    STEP,
                )
                .unwrap_or_else(|| panic!("rx missed {} seq {seq}\n{}", p.name(), dump(&all)));
            assert_eq!(msg["channel"], "ch");
            assert_eq!(msg["bytes"], start["bytes"], "{}", dump(&all));
        }
    }
    // Exactly once each; nothing on channels we did not join.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.events("msg").len(), 3 * count as usize, "{}", dump(&all));
    for p in &all {
        assert!(p.events("error").is_empty(), "{}", dump(&all));
    }
}

#[test]
fn channel_messages_plain() {
    channel_messages(&["--broadcast", "255.255.255.255"]);
}

#[test]
fn channel_messages_keyed() {
    channel_messages(&["--key", "shoal smoke key", "--broadcast", "255.255.255.255"]);
}

/// The harness itself: namespaces are gone after drop (also when the test
/// panics) and processes left running in them are killed.
#[test]
fn lan_teardown_kills_and_deletes() {
    require_netns!();
    let names = |lan: &Lan| -> Vec<String> {
        let mut v: Vec<String> = lan.hosts().iter().map(|h| h.ns.clone()).collect();
        v.push(lan.switch_ns().to_string());
        v
    };
    let listed = || -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let is_listed = |name: &str| {
        listed()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };

    let lan = Lan::new(2).expect("create lan");
    let created = names(&lan);
    assert!(created.iter().all(|n| is_listed(n)));
    // The two hosts reach each other, and nothing else is routed anywhere.
    let out = lan
        .host(0)
        .run("ip", ["-o", "link", "show"], STEP)
        .expect("ip link");
    let links = String::from_utf8_lossy(&out.stdout);
    assert_eq!(links.lines().count(), 2, "{links}");
    // A stray process, spawned without Proc, is killed by the Lan.
    let mut stray = lan
        .host(1)
        .command("sleep", ["30"])
        .spawn()
        .expect("spawn sleep");
    // `ip netns exec` enters the namespace a moment after spawn returns (on
    // a loaded machine, many moments): only a process already inside can be
    // found by the Lan, so wait for that first.
    let ns = lan.host(1).ns.clone();
    let inside = (0..500).any(|_| {
        let listed = std::process::Command::new("ip")
            .args(["netns", "pids", &ns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&stray.id().to_string()))
            .unwrap_or(false);
        if !listed {
            thread::sleep(Duration::from_millis(10));
        }
        listed
    });
    assert!(inside, "sleep never entered {ns}");
    drop(lan);
    let mut exited = None;
    for _ in 0..200 {
        exited = stray.try_wait().expect("try_wait");
        if exited.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    if exited.is_none() {
        let _ = stray.kill();
        let _ = stray.wait();
        panic!("stray process survived Lan drop");
    }
    assert!(created.iter().all(|n| !is_listed(n)), "{}", listed());

    let created = std::panic::catch_unwind(|| {
        let lan = Lan::new(1).expect("create lan");
        std::panic::panic_any(names(&lan));
    })
    .expect_err("panicked")
    .downcast::<Vec<String>>()
    .expect("names");
    assert!(created.iter().all(|n| !is_listed(n)), "{}", listed());
}
