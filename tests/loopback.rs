//! Several nodes in one test process on loopback: discovery, election,
//! failover and channel messages through the real tokio driver and sockets.
//!
//! Every node sends only to 127.255.255.255 (directed broadcast on `lo`) or
//! to a multicast group with IP_MULTICAST_IF = 127.0.0.1 and TTL 0, so no
//! packet leaves the host. Each test uses its own port.

use std::time::Duration;

use serde_json::json;
use shoal::{Config, ConfigBuilder, Discovery, Event, EventStream};
use tokio::time::timeout;

fn loopback(port: u16, weight: f64) -> ConfigBuilder {
    Config::builder()
        .port(port)
        .broadcast("127.255.255.255".parse().unwrap())
        .hello_interval(Duration::from_millis(100))
        .check_interval(Duration::from_millis(300))
        // 6.5 hellos: the deadline these tests always ran with, when
        // missed_hellos stretched a 300 ms timeout to it (an explicit
        // timeout is now exact, and three hellos are too few on a loaded
        // machine).
        .node_timeout(Duration::from_millis(650))
        .master_timeout(Duration::from_millis(650))
        .weight(weight)
}

fn multicast(port: u16, weight: f64) -> ConfigBuilder {
    loopback(port, weight)
        .multicast("239.255.71.1".parse().unwrap())
        .multicast_interface("127.0.0.1".parse().unwrap())
        .multicast_ttl(0)
}

/// Waits (bounded) for an event matching `pred`.
async fn wait_for(events: &mut EventStream, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let found = timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        _ => panic!("timed out waiting for {what}"),
    }
}

async fn start_all(configs: Vec<Config>) -> (Vec<Discovery>, Vec<EventStream>) {
    let mut nodes = Vec::new();
    let mut streams = Vec::new();
    for config in configs {
        let node = Discovery::start(config).await.expect("start");
        streams.push(node.events());
        nodes.push(node);
    }
    (nodes, streams)
}

async fn cluster_elects_and_fails_over(make: fn(u16, f64) -> ConfigBuilder, port: u16) {
    let weights = [0.3, 0.9, 0.6, 0.1];
    let configs = weights
        .iter()
        .map(|&w| make(port, w).build().unwrap())
        .collect();
    let (mut nodes, mut streams) = start_all(configs).await;
    let n = nodes.len();
    // Everyone discovers everyone.
    for i in 0..n {
        for _ in 0..n - 1 {
            wait_for(&mut streams[i], "added", |e| matches!(e, Event::Added(_))).await;
        }
        let mut ids: Vec<_> = nodes[i].nodes().into_iter().map(|p| p.id).collect();
        ids.sort();
        let mut expected: Vec<_> = (0..n).filter(|&j| j != i).map(|j| nodes[j].id()).collect();
        expected.sort();
        assert_eq!(ids, expected, "node {i}'s table");
    }
    // The heaviest (index 1) is elected and everyone reports it.
    wait_for(&mut streams[1], "promotion", |e| {
        matches!(e, Event::Promotion(_))
    })
    .await;
    let master = nodes[1].id();
    for i in [0, 2, 3] {
        let m = master.clone();
        wait_for(
            &mut streams[i],
            "master",
            move |e| matches!(e, Event::Master(p) if p.id == m),
        )
        .await;
        assert!(!nodes[i].me().is_master);
    }
    assert!(nodes[1].me().is_master);

    // The master shuts down: the next heaviest (index 2) takes over.
    let old = nodes.remove(1);
    streams.remove(1);
    old.shutdown().await;
    // Indices shift: [0.3, 0.6, 0.1].
    wait_for(&mut streams[1], "promotion after failover", |e| {
        matches!(e, Event::Promotion(_))
    })
    .await;
    let new_master = nodes[1].id();
    for i in [0, 2] {
        // The old master said goodbye: everyone removes it at once.
        let m = master.clone();
        wait_for(
            &mut streams[i],
            "old master removed",
            move |e| matches!(e, Event::Removed(p, _) if p.id == m),
        )
        .await;
        let m = new_master.clone();
        wait_for(
            &mut streams[i],
            "new master",
            move |e| matches!(e, Event::Master(p) if p.id == m),
        )
        .await;
    }
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_cluster_elects_and_fails_over() {
    cluster_elects_and_fails_over(loopback, 47_101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multicast_cluster_elects_and_fails_over() {
    cluster_elects_and_fails_over(multicast, 47_102).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_messages_reach_every_subscription() {
    let port = 47_103;
    let (nodes, mut streams) = start_all(vec![
        loopback(port, 0.5).build().unwrap(),
        loopback(port, 0.6).build().unwrap(),
        loopback(port, 0.7).build().unwrap(),
    ])
    .await;
    for s in &mut streams {
        for _ in 0..2 {
            wait_for(s, "added", |e| matches!(e, Event::Added(_))).await;
        }
    }
    let mut first = nodes[1].join("jobs").unwrap();
    let mut second = nodes[1].join("jobs").unwrap();
    let mut other = nodes[2].join("jobs").unwrap();
    let big = "x".repeat(6000);
    nodes[0].send("jobs", &json!({"n": 1})).unwrap();
    nodes[0].send("jobs", &json!({"n": 2, "big": big})).unwrap();
    nodes[0].send("elsewhere", &json!({"n": 3})).unwrap();
    for sub in [&mut first, &mut second, &mut other] {
        for n in [1, 2] {
            let m = timeout(Duration::from_secs(5), sub.recv())
                .await
                .expect("message in time")
                .expect("subscription open");
            assert_eq!(m.channel, "jobs");
            assert_eq!(m.data["n"], n);
            assert_eq!(m.from, nodes[0].id());
            assert_eq!(m.addr.ip().to_string(), "127.0.0.1");
        }
    }
    assert_eq!(first.missed(), 0);
    assert_eq!(
        timeout(Duration::from_secs(1), first.recv())
            .await
            .ok()
            .flatten(),
        None,
        "nothing else arrives on jobs"
    );
    // Reserved names are refused.
    assert!(matches!(
        nodes[0].send("master", &1),
        Err(shoal::Error::ReservedChannel(_))
    ));
    assert!(nodes[0].join("hello").is_err());
    // Leave ends the subscriptions.
    nodes[1].leave("jobs");
    assert_eq!(
        timeout(Duration::from_secs(2), first.recv()).await.unwrap(),
        None
    );
    assert_eq!(
        timeout(Duration::from_secs(2), second.recv())
            .await
            .unwrap(),
        None
    );
    for node in nodes {
        node.shutdown().await;
    }
    // Shutdown ends the remaining subscription and the event streams.
    assert_eq!(
        timeout(Duration::from_secs(2), other.recv()).await.unwrap(),
        None
    );
    let drained = timeout(Duration::from_secs(2), async {
        while streams[0].recv().await.is_some() {}
    })
    .await;
    assert!(drained.is_ok(), "the event stream ends after shutdown");
}

/// A burst of equal-sized messages, sent faster than the driver wakes, goes
/// out as runs of one length (one segmentation-offload send each, where the
/// kernel has it): every message arrives, once, in order, and the stats
/// count each datagram.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_messages_arrives_whole_and_in_order() {
    let port = 47_113;
    let (nodes, mut streams) = start_all(vec![
        loopback(port, 0.5).build().unwrap(),
        loopback(port, 0.6).build().unwrap(),
    ])
    .await;
    for s in &mut streams {
        wait_for(s, "added", |e| matches!(e, Event::Added(_))).await;
    }
    let mut sub = nodes[1].join("burst").unwrap();
    let sent_before = nodes[0].stats().packets_out;
    // 100..=399: every message the same length, so each run is as long as
    // the kernel takes; the odd one out ends a run.
    for n in 100..400 {
        nodes[0].send("burst", &json!({"n": n})).unwrap();
    }
    nodes[0].send("burst", &json!({"n": 4000})).unwrap();
    for n in (100..400).chain([4000]) {
        let m = timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("message in time")
            .expect("subscription open");
        assert_eq!(m.data["n"], n, "in order, none lost");
    }
    assert_eq!(sub.missed(), 0);
    assert!(nodes[0].stats().packets_out - sent_before >= 301);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertised_info_and_keys() {
    let port = 47_104;
    let (nodes, mut streams) = start_all(vec![
        loopback(port, 0.5).passphrase("k1").build().unwrap(),
        loopback(port, 0.6).passphrase("k1").build().unwrap(),
        loopback(port, 0.7).passphrase("other").build().unwrap(),
    ])
    .await;
    // serde_json would advertise a NaN as null: refused, and nothing changes.
    let err = nodes[0]
        .advertise(&[("name", 1.0), ("load", f64::NAN)])
        .unwrap_err();
    assert!(
        matches!(&err, shoal::Error::NonFiniteNumber { path, .. } if path == "info[1][1]"),
        "{err}"
    );
    nodes[0]
        .advertise(&json!({"name": "svc", "port": 8080}))
        .unwrap();
    let info = loop {
        let event = wait_for(&mut streams[1], "added", |e| matches!(e, Event::Added(_))).await;
        // The first hello may precede advertise; the table catches up at once.
        let _ = event;
        let peers = nodes[1].nodes();
        if let Some(info) = peers.first().and_then(|p| p.info.clone()) {
            break info;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(info) = nodes[1].nodes().first().and_then(|p| p.info.clone()) {
            break info;
        }
    };
    assert_eq!(info, json!({"name": "svc", "port": 8080}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A different key is a different cluster: packets are counted and dropped.
    assert_eq!(nodes[1].nodes().len(), 1);
    assert!(nodes[2].nodes().is_empty());
    assert!(nodes[2].stats().dropped.unknown_key > 0);
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn start_reports_bad_addresses() {
    // A socket that holds the port without SO_REUSEADDR/SO_REUSEPORT: the
    // node's bind fails (EADDRINUSE), and its broadcast address keeps on
    // this host anything it could have sent.
    let holder = std::net::UdpSocket::bind(("0.0.0.0", 47_105)).expect("hold the port");
    let config = Config::builder()
        .port(47_105)
        .broadcast("127.255.255.255".parse().unwrap())
        .build()
        .unwrap();
    let err = Discovery::start(config).await.unwrap_err();
    assert!(matches!(err, shoal::Error::Bind { .. }), "{err}");
    assert!(err.to_string().contains("0.0.0.0:47105"), "{err}");
    drop(holder);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_node() {
    let port = 47_106;
    let a = Discovery::start(loopback(port, 0.5).build().unwrap())
        .await
        .unwrap();
    let mut events = a.events();
    {
        let b = Discovery::start(loopback(port, 0.6).build().unwrap())
            .await
            .unwrap();
        wait_for(&mut events, "added", |e| matches!(e, Event::Added(_))).await;
        drop(b);
    }
    wait_for(&mut events, "removed", |e| matches!(e, Event::Removed(..))).await;
    assert!(a.nodes().is_empty());
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_loses_old_events_and_is_told() {
    let port = 47_107;
    let watcher = Discovery::start(loopback(port, 0.5).event_capacity(2).build().unwrap())
        .await
        .unwrap();
    let mut events = watcher.events(); // not read while the others start
    let mut others = Vec::new();
    for i in 0..6 {
        let config = loopback(port, 0.1 + i as f64 / 10.0).build().unwrap();
        others.push(Discovery::start(config).await.unwrap());
    }
    // Wait until the watcher knows all six, without reading its events.
    timeout(Duration::from_secs(10), async {
        while watcher.nodes().len() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all six discovered");
    // The protocol went on regardless; the stream reports what it lost.
    let first = events.recv().await.unwrap();
    let Event::Lagged(missed) = first else {
        panic!("expected Lagged first, got {first:?}");
    };
    assert!(missed >= 4, "{missed}");
    assert!(watcher.stats().events_lost >= missed);
    for node in others {
        node.shutdown().await;
    }
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_secure_cluster_rotates_its_key_without_losing_anyone_or_anything() {
    use shoal::Key;
    let port = 47_108;
    let old = "0f".repeat(32);
    let new = Key::from_hex(&"f0".repeat(32)).unwrap();
    let (old_id, new_id) = (Key::parse(&old).unwrap().id(), new.id());
    let configs = (0..4)
        .map(|i| {
            loopback(port, 0.2 + i as f64 / 10.0)
                .secret_key(old.clone())
                .build()
                .unwrap()
        })
        .collect();
    let (nodes, mut streams) = start_all(configs).await;
    for s in &mut streams {
        for _ in 0..3 {
            wait_for(s, "added", |e| matches!(e, Event::Added(_))).await;
        }
    }
    let mut subs: Vec<_> = nodes[1..]
        .iter()
        .map(|n| n.join("ticks").unwrap())
        .collect();
    // A message every 20 ms while the key is rotated step by step, node by node.
    let mut seq = 0u64;
    let steps: [&dyn Fn(&Discovery); 3] = [
        &|n| n.install_key(new.clone()).unwrap(),
        &|n| n.use_key(new_id).unwrap(),
        &|n| n.remove_key(old_id).unwrap(),
    ];
    for step in steps {
        for node in &nodes {
            step(node);
            for _ in 0..3 {
                seq += 1;
                nodes[0].send("ticks", &json!({"seq": seq})).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for sub in &mut subs {
        for expected in 1..=seq {
            let m = timeout(Duration::from_secs(5), sub.recv())
                .await
                .expect("no message lost")
                .expect("subscription open");
            assert_eq!(m.data["seq"], expected);
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(node.key_ids(), vec![new_id]);
        assert_eq!(node.nodes().len(), 3, "node {i} lost a peer");
        assert_eq!(node.stats().dropped.auth_failed, 0);
    }
    // Nobody was removed (or re-added) during the rotation.
    for s in &mut streams {
        while let Ok(Some(event)) = timeout(Duration::from_millis(50), s.recv()).await {
            assert!(
                !matches!(event, Event::Removed(..) | Event::Added(_)),
                "{event:?}"
            );
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// A node that forgets a silent peer only after 30 s: within a test, a
/// peer it removes has said goodbye.
fn patient(port: u16, weight: f64) -> ConfigBuilder {
    loopback(port, weight)
        .node_timeout(Duration::from_secs(30))
        .master_timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_from_one_clone_closes_every_clone() {
    let port = 47_109;
    let watcher = Discovery::start(patient(port, 0.5).build().unwrap())
        .await
        .unwrap();
    let mut seen = watcher.events();
    let node = Discovery::start(patient(port, 0.6).build().unwrap())
        .await
        .unwrap();
    let other = node.clone();
    let mut events = other.events();
    let mut jobs = other.join("jobs").unwrap();
    wait_for(
        &mut seen,
        "added",
        |e| matches!(e, Event::Added(p) if p.id == node.id()),
    )
    .await;

    // Another clone is in use, sending, while this one shuts the node down.
    let sender = other.clone();
    let sending = tokio::spawn(async move {
        loop {
            if let Err(e) = sender.send("jobs", &json!({"n": 1})) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    timeout(Duration::from_secs(5), node.shutdown())
        .await
        .expect("shutdown returns");

    let error = timeout(Duration::from_secs(5), sending)
        .await
        .expect("the sender stops")
        .unwrap();
    assert!(matches!(error, shoal::Error::Closed), "{error}");
    assert!(matches!(other.promote(), Err(shoal::Error::Closed)));
    assert!(matches!(
        other.advertise(&json!({"x": 1})),
        Err(shoal::Error::Closed)
    ));
    assert!(matches!(other.join("more"), Err(shoal::Error::Closed)));
    // Every stream ends: those from before, and one asked for afterwards.
    timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
        while jobs.recv().await.is_some() {}
        assert!(other.events().recv().await.is_none());
    })
    .await
    .expect("streams end");
    // Reading calls still answer, with the last state.
    assert_eq!(other.id(), node.id());
    let _ = (other.nodes(), other.me(), other.stats());
    // Twice, from either clone, is fine.
    node.shutdown().await;
    other.shutdown().await;
    // The peer saw a goodbye, long before its 30 s timeout.
    wait_for(
        &mut seen,
        "removed",
        |e| matches!(e, Event::Removed(p, _) if p.id == node.id()),
    )
    .await;
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shutdowns_both_wait_for_the_node() {
    let port = 47_110;
    let node = Discovery::start(loopback(port, 0.5).build().unwrap())
        .await
        .unwrap();
    let other = node.clone();
    let mut events = node.events();
    timeout(Duration::from_secs(5), async {
        tokio::join!(node.shutdown(), other.shutdown());
    })
    .await
    .expect("both return");
    // Both returned only once the driver had stopped and closed the
    // stream: it yields what it holds, then ends, without waiting.
    while events.try_recv().is_some() {}
    let end = timeout(Duration::from_millis(200), events.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert!(matches!(other.send("jobs", &1), Err(shoal::Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_says_goodbye() {
    let port = 47_111;
    let watcher = Discovery::start(patient(port, 0.5).build().unwrap())
        .await
        .unwrap();
    let mut seen = watcher.events();
    let node = Discovery::start(patient(port, 0.6).build().unwrap())
        .await
        .unwrap();
    let id = node.id();
    wait_for(
        &mut seen,
        "added",
        |e| matches!(e, Event::Added(p) if p.id == id),
    )
    .await;
    let clone = node.clone();
    drop(node);
    // One clone left: the node goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    clone.send("jobs", &1).expect("still running");
    assert!(watcher.nodes().iter().any(|p| p.id == id));
    drop(clone);
    wait_for(
        &mut seen,
        "removed",
        |e| matches!(e, Event::Removed(p, _) if p.id == id),
    )
    .await;
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_events_call_on_any_clone_gets_events_since_start() {
    let port = 47_112;
    let a = Discovery::start(patient(port, 0.5).build().unwrap())
        .await
        .unwrap();
    let b = Discovery::start(patient(port, 0.6).build().unwrap())
        .await
        .unwrap();
    // Nobody is listening yet when b is added.
    timeout(Duration::from_secs(10), async {
        while !a.nodes().iter().any(|p| p.id == b.id()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a sees b");
    let mut first = a.clone().events();
    let mut later = a.events();
    wait_for(
        &mut first,
        "added from before the call",
        |e| matches!(e, Event::Added(p) if p.id == b.id()),
    )
    .await;
    // A later stream starts at its call: b's Added is not in it.
    let again = timeout(Duration::from_millis(500), async {
        while let Some(event) = later.recv().await {
            if matches!(event, Event::Added(_)) {
                return event;
            }
        }
        std::future::pending().await
    })
    .await;
    assert!(again.is_err(), "{again:?}");
    a.shutdown().await;
    b.shutdown().await;
}
