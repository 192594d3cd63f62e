//! Secure mode in simulated time: sealed traffic, keys, replays, forgeries,
//! key rotation and rolling enablement, with no node removed.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal::protocol::Protocol;
use shoal::sim::SimNet;
use shoal::wire::envelope::Sender;
use shoal::Key;
use shoal::{Config, ConfigBuilder, Encryption, Event};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn keyed(weight: f64, key: &str) -> ConfigBuilder {
    Config::builder().weight(weight).secret_key(key)
}

fn count(net: &SimNet, i: usize, pred: impl Fn(&Event) -> bool) -> usize {
    net.node(i).events.iter().filter(|(_, e)| pred(e)).count()
}

fn removals(net: &SimNet) -> usize {
    (0..net.nodes().len())
        .map(|i| count(net, i, |e| matches!(e, Event::Removed(..))))
        .sum()
}

fn messages(net: &SimNet, i: usize) -> Vec<u64> {
    net.node(i)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message(m) => m.data["seq"].as_u64(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_secure_cluster_elects_and_carries_large_messages() {
    let mut net = SimNet::new(1);
    let a = net.add_node(keyed(0.9, K1).build().unwrap());
    let b = net.add_node(keyed(0.5, K1).build().unwrap());
    let outsider = net.add_node(keyed(0.7, K2).build().unwrap());
    let plain = net.add_node(Config::builder().weight(0.8).build().unwrap());
    net.protocol_mut(b).join("big").unwrap();
    net.run_for(secs(3.0));
    assert_eq!(net.masters(), vec![a, outsider, plain]);
    assert_eq!(net.node(b).protocol.peers().count(), 1);
    let now = net.now();
    let blob = "y".repeat(10_000); // 8 sealed fragments of <= 1400 bytes
    net.protocol_mut(a)
        .send(now, "big", &json!({"seq": 1, "blob": blob}))
        .unwrap();
    net.poll(a);
    net.run_for(secs(0.1));
    assert_eq!(messages(&net, b), vec![1]);
    let stats = net.node(b).protocol.stats();
    assert!(stats.dropped.unknown_key > 0, "{stats:?}"); // the outsider's
    assert!(stats.dropped.unauthenticated > 0, "{stats:?}"); // the plaintext node's
    assert!(net.node(outsider).protocol.stats().dropped.unknown_key > 0);
    assert_eq!(net.node(plain).protocol.peers().count(), 0);
    assert_eq!(removals(&net), 0);
}

/// Two protocols wired by hand, to capture and replay their packets.
fn pair(key: &str) -> (Protocol, Protocol, Instant) {
    let t0 = Instant::now();
    let sender = |c: char| Sender {
        pid: c.to_string().repeat(32),
        iid: format!("{:0>32}", c),
        host_name: "h".into(),
    };
    let config = keyed(0.5, key).build().unwrap();
    let mut a = Protocol::new(&config, sender('a'), t0, 1);
    let mut b = Protocol::new(&config, sender('b'), t0, 2);
    a.set_wall_clock(t0, 1_700_000_000_000);
    b.set_wall_clock(t0, 1_700_000_000_000);
    (a, b, t0)
}

#[test]
fn replays_and_forgeries_change_nothing() {
    let (mut a, mut b, t0) = pair(K1);
    let from = "10.0.0.1:12345".parse().unwrap();
    a.handle_timeout(t0);
    let hello = a.poll_transmit().unwrap().payload;
    b.handle_datagram(t0, from, &hello);
    assert_eq!(b.peers().count(), 1);
    // Replayed at once, later, or from another host: dropped.
    let other = "10.0.0.66:12345".parse().unwrap();
    b.handle_datagram(t0, from, &hello);
    b.handle_datagram(t0 + secs(60.0), other, &hello);
    assert_eq!(b.stats().dropped.replay, 2);
    // A flipped bit anywhere: dropped before any JSON is parsed.
    for i in [10usize, 40, 50, hello.len() - 1] {
        let mut forged = hello.clone();
        forged[i] ^= 1;
        b.handle_datagram(t0, from, &forged);
    }
    let d = &b.stats().dropped;
    assert_eq!(d.auth_failed + d.unknown_key + d.replay, 6, "{d:?}");
    assert_eq!(d.envelope, 0);
    // A captured packet replayed to a node that never heard the sender,
    // long after it was sealed: refused as stale.
    let (_, mut c, _) = pair(K1);
    c.handle_datagram(t0 + secs(120.0), from, &hello);
    assert_eq!(c.stats().dropped.replay, 1);
    assert_eq!(c.peers().count(), 0);
    // Nothing reached the user of b but the one Added, and one report of
    // the forgeries (replays are not reported): the first at once, the
    // other three held back by the per-address rate limit.
    let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], Event::Added(_)), "{events:?}");
    assert!(
        matches!(events[1], Event::Unauthenticated { from: f, dropped: 1, .. } if f == from),
        "{events:?}"
    );
}

#[test]
fn key_rotation_on_a_live_cluster_loses_nobody_and_nothing() {
    let mut net = SimNet::new(2);
    let n = 4;
    for i in 0..n {
        net.add_node(keyed(0.1 + i as f64 / 10.0, K1).build().unwrap());
        net.protocol_mut(i).join("ticks").unwrap();
    }
    net.run_for(secs(3.0));
    let k2 = Key::parse(K2).unwrap();
    let (id1, id2) = (Key::parse(K1).unwrap().id(), k2.id());
    let mut seq = 0;
    // Node 0 sends a message every 50 ms through the whole rotation; each
    // step is applied node by node, 200 ms apart.
    let mut step = |net: &mut SimNet, f: &dyn Fn(&mut Protocol)| {
        for i in 0..n {
            f(net.protocol_mut(i));
            for _ in 0..4 {
                seq += 1;
                let now = net.now();
                net.protocol_mut(0)
                    .send(now, "ticks", &json!({"seq": seq}))
                    .unwrap();
                net.poll(0);
                net.run_for(secs(0.05));
            }
        }
    };
    step(&mut net, &|p| p.install_key(k2.clone()).unwrap());
    step(&mut net, &|p| p.use_key(id2).unwrap());
    step(&mut net, &|p| p.remove_key(id1).unwrap());
    net.run_for(secs(3.0));
    for i in 1..n {
        assert_eq!(messages(&net, i), (1..=seq).collect::<Vec<_>>(), "node {i}");
        assert_eq!(net.node(i).protocol.key_ids(), vec![id2]);
    }
    // Installed everywhere before used anywhere: no packet failed.
    assert_eq!(
        (0..n)
            .map(|i| unauthenticated(&net, i).len())
            .sum::<usize>(),
        0
    );
    assert_eq!(removals(&net), 0);
    assert_eq!(net.masters().len(), 1);
}

fn rolling(from: Option<Encryption>, steps: &[Option<Encryption>], seed: u64) {
    let mut net = SimNet::new(seed);
    let n = 4;
    for i in 0..n {
        let mut c = Config::builder().weight(0.1 + i as f64 / 10.0);
        if from.is_some() {
            c = c.secret_key(K1);
        }
        net.add_node(c.build().unwrap());
        if from.is_none() {
            net.protocol_mut(i)
                .install_key(Key::parse(K1).unwrap())
                .unwrap();
        }
        net.protocol_mut(i).set_encryption(from).unwrap();
        net.protocol_mut(i).join("ticks").unwrap();
    }
    net.run_for(secs(3.0));
    let mut seq = 0;
    for mode in steps {
        for i in 0..n {
            net.protocol_mut(i).set_encryption(*mode).unwrap();
            seq += 1;
            let now = net.now();
            net.protocol_mut(n - 1 - i)
                .send(now, "ticks", &json!({"seq": seq}))
                .unwrap();
            net.poll(n - 1 - i);
            net.run_for(secs(1.0));
        }
    }
    net.run_for(secs(5.0));
    assert_eq!(removals(&net), 0, "no node ever lost sight of another");
    let reports: usize = (0..n).map(|i| unauthenticated(&net, i).len()).sum();
    assert_eq!(reports, 0, "no packet was refused on the way");
    let mut total = 0;
    for i in 0..n {
        total += messages(&net, i).len();
    }
    // Each message reaches the three other nodes.
    assert_eq!(total, 3 * seq as usize);
    assert_eq!(net.masters().len(), 1);
}

#[test]
fn rolling_enablement_from_plaintext_to_secure_and_back() {
    use Encryption::*;
    rolling(
        None,
        &[
            Some(PlaintextAcceptSecure),
            Some(SecureAcceptPlaintext),
            Some(Secure),
        ],
        3,
    );
    rolling(
        Some(Secure),
        &[
            Some(SecureAcceptPlaintext),
            Some(PlaintextAcceptSecure),
            None,
        ],
        4,
    );
}

#[test]
fn legacy_mode_is_node_discovery_s_cipher() {
    let mut net = SimNet::new(5);
    let legacy = |w: f64| {
        Config::builder()
            .weight(w)
            .legacy_key("shoal-interop-key")
            .encryption(Encryption::LegacyNodeDiscovery)
            .build()
            .unwrap()
    };
    let a = net.add_node(legacy(0.9));
    let b = net.add_node(legacy(0.5));
    // The same string as a secure-mode passphrase is another key altogether.
    let s = net.add_node(
        Config::builder()
            .weight(0.7)
            .passphrase("shoal-interop-key")
            .build()
            .unwrap(),
    );
    net.run_for(secs(3.0));
    assert_eq!(net.node(a).protocol.peers().count(), 1);
    assert_eq!(net.node(b).protocol.peers().count(), 1);
    assert_eq!(net.masters(), vec![a, s]);
}

#[test]
fn secure_modes_need_a_key() {
    let t0 = Instant::now();
    let sender = Sender {
        pid: "p".repeat(32),
        iid: "a".repeat(32),
        host_name: "h".into(),
    };
    let mut plain = Protocol::new(&Config::builder().build().unwrap(), sender, t0, 1);
    let err = plain.set_encryption(Some(Encryption::Secure)).unwrap_err();
    assert!(
        matches!(err, shoal::Error::NoKey(Encryption::Secure)),
        "{err}"
    );
    assert!(plain
        .set_encryption(Some(Encryption::LegacyNodeDiscovery))
        .is_err());
    plain.install_key(Key::parse(K1).unwrap()).unwrap();
    plain.set_encryption(Some(Encryption::Secure)).unwrap();
    assert_eq!(plain.encryption(), Some(Encryption::Secure));
}

/// The reports of one node: (when, from, key id, dropped, why).
fn unauthenticated(
    net: &SimNet,
    i: usize,
) -> Vec<(
    Duration,
    std::net::SocketAddr,
    Option<shoal::KeyId>,
    u64,
    shoal::DecodeError,
)> {
    net.node(i)
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Unauthenticated {
                from,
                key_id,
                dropped,
                error,
            } => Some((*t, *from, *key_id, *dropped, error.clone())),
            _ => None,
        })
        .collect()
}

/// Two nodes with different keys cannot hear each other: each is told so,
/// naming the other's address and key id, at once and then at most once
/// per 10 s, with the packets dropped in between.
#[test]
fn nodes_with_different_keys_are_told_whom_they_cannot_hear() {
    let mut net = SimNet::new(8);
    let a = net.add_node(keyed(0.5, K1).build().unwrap());
    let b = net.add_node(keyed(0.6, K2).build().unwrap());
    net.run_for(secs(35.0));
    let (id1, id2) = (Key::parse(K1).unwrap().id(), Key::parse(K2).unwrap().id());
    for (me, other, their_key) in [(a, b, id2), (b, a, id1)] {
        let reports = unauthenticated(&net, me);
        assert_eq!(reports.len(), 4, "at about 0, 10, 20 and 30 s: {reports:?}");
        assert!(
            reports[0].0 < secs(0.1),
            "the first packet is reported at once"
        );
        assert_eq!(reports[0].3, 1);
        for (_, from, key_id, _, error) in &reports {
            assert_eq!(*from, net.node(other).addr);
            assert_eq!(*key_id, Some(their_key));
            assert_eq!(
                *error,
                shoal::DecodeError::Secure(shoal::SecureError::UnknownKey(their_key))
            );
        }
        for pair in reports.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= secs(10.0), "{reports:?}");
            // A hello every 400 ms: about 25 per report.
            assert!((20..=30).contains(&pair[1].3), "{reports:?}");
        }
        // Every drop is in a report but those of the last 5 s.
        let reported: u64 = reports.iter().map(|r| r.3).sum();
        let dropped = net.node(me).protocol.stats().dropped.unknown_key;
        assert!(
            dropped >= reported && dropped - reported <= 15,
            "{dropped} {reported}"
        );
        assert_eq!(net.node(me).protocol.peers().count(), 0);
    }

    // A plaintext node and a secure one: the plaintext node hears sealed
    // packets it cannot open (their key id named), the secure node refuses
    // plaintext (no key id).
    let mut net = SimNet::new(9);
    let secure = net.add_node(keyed(0.5, K1).build().unwrap());
    let plain = net.add_node(Config::builder().weight(0.6).build().unwrap());
    net.run_for(secs(3.0));
    let to_plain = unauthenticated(&net, plain);
    assert_eq!(to_plain.len(), 1, "{to_plain:?}");
    assert_eq!(
        (to_plain[0].1, to_plain[0].2, &to_plain[0].4),
        (
            net.node(secure).addr,
            Some(id1),
            &shoal::DecodeError::Secure(shoal::SecureError::NotAccepted)
        )
    );
    let to_secure = unauthenticated(&net, secure);
    assert_eq!(to_secure.len(), 1, "{to_secure:?}");
    assert_eq!(
        (to_secure[0].1, to_secure[0].2, &to_secure[0].4),
        (
            net.node(plain).addr,
            None,
            &shoal::DecodeError::Unauthenticated
        )
    );
    assert_eq!(
        to_secure[0].0.as_millis() / 100,
        0,
        "reported at the first hello"
    );
}

/// Nodes that share a key are never told anything: no false alarms.
#[test]
fn nodes_that_share_a_key_are_not_reported() {
    let mut net = SimNet::new(10);
    for i in 0..3 {
        net.add_node(keyed(0.2 + i as f64 / 10.0, K1).build().unwrap());
    }
    net.run_for(secs(30.0));
    for i in 0..3 {
        assert_eq!(unauthenticated(&net, i), vec![], "node {i}");
    }
}
