//! Scenario tests of the protocol core in simulated time: no sockets, no sleeps.

use std::time::Duration;

use shoal::sim::SimNet;
use shoal::{Config, ConfigBuilder, Event, Ignore, Key};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn cfg(weight: f64) -> ConfigBuilder {
    Config::builder().weight(weight)
}

/// node-discovery's timings, for the tests of its election semantics.
fn nd(weight: f64) -> ConfigBuilder {
    cfg(weight).node_discovery_timings()
}

fn count(net: &SimNet, i: usize, pred: impl Fn(&Event) -> bool) -> usize {
    net.node(i).events.iter().filter(|(_, e)| pred(e)).count()
}

fn promotions(net: &SimNet) -> usize {
    (0..net.nodes().len())
        .map(|i| count(net, i, |e| matches!(e, Event::Promotion(_))))
        .sum()
}

fn demotions(net: &SimNet) -> usize {
    (0..net.nodes().len())
        .map(|i| count(net, i, |e| matches!(e, Event::Demotion(_))))
        .sum()
}

/// Every live node knows every other live node, and all agree on the masters.
fn agreed(net: &SimNet) -> bool {
    let masters: Vec<_> = net
        .masters()
        .into_iter()
        .map(|i| net.node(i).protocol.id().clone())
        .collect();
    let live: Vec<usize> = (0..net.nodes().len())
        .filter(|&i| net.node(i).alive)
        .collect();
    live.iter().all(|&i| {
        let p = &net.node(i).protocol;
        let mut seen: Vec<_> = p
            .peers()
            .filter(|peer| peer.is_master)
            .map(|peer| peer.id.clone())
            .collect();
        if p.local().is_master {
            seen.push(p.id().clone());
        }
        seen.sort();
        let mut expected = masters.clone();
        expected.sort();
        p.peers().count() == live.len() - 1 && seen == expected
    })
}

#[test]
fn a_lone_node_promotes_itself_after_one_check() {
    let mut net = SimNet::new(1);
    net.add_node(nd(0.3).build().unwrap());
    net.run_for(secs(1.9));
    assert!(net.masters().is_empty());
    net.run_for(secs(0.2));
    assert_eq!(net.masters(), vec![0]);
    net.run_for(secs(60.0));
    assert_eq!(promotions(&net), 1);
    // It said hello at once, then once a second (the promotion's hello at
    // t=2 s standing in for the periodic one): t = 0, 1, ..., 62.
    assert_eq!(net.node(0).protocol.stats().messages_out, 63);
}

#[test]
fn two_nodes_find_each_other_and_the_heavier_is_master() {
    let mut net = SimNet::new(2);
    let light = net.add_node(cfg(0.2).build().unwrap());
    let heavy = net.add_node(cfg(0.8).build().unwrap());
    // Both hello at t=0: each knows the other within a millisecond.
    net.run_for(secs(0.001));
    for (i, other) in [(light, heavy), (heavy, light)] {
        let added: Vec<_> = net
            .node(i)
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Added(p) => Some(p.id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(added, vec![net.node(other).protocol.id().clone()]);
    }
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![heavy]);
    assert!(agreed(&net));
    // The light node saw the heavy one become master.
    assert_eq!(count(&net, light, |e| matches!(e, Event::Master(_))), 1);
    assert_eq!(promotions(&net), 1);
    assert_eq!(demotions(&net), 0);
}

#[test]
fn five_nodes_elect_the_heaviest() {
    let mut net = SimNet::new(5);
    for w in [0.5, 0.1, 0.95, 0.3, 0.7] {
        net.add_node(cfg(w).build().unwrap());
    }
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![2]);
    assert!(agreed(&net));
    assert_eq!(promotions(&net), 1);
}

#[test]
fn fifty_nodes_with_random_weights_agree_on_one_master() {
    let mut net = SimNet::new(50);
    for _ in 0..50 {
        net.add_node(Config::builder().build().unwrap());
    }
    net.run_for(secs(5.0));
    let masters = net.masters();
    assert_eq!(masters.len(), 1);
    let heaviest = (0..50)
        .max_by(|&a, &b| {
            let wa = net.node(a).protocol.local().weight;
            let wb = net.node(b).protocol.local().weight;
            wa.total_cmp(&wb)
        })
        .unwrap();
    assert_eq!(masters, vec![heaviest]);
    assert!(agreed(&net));
    for i in 0..50 {
        assert_eq!(count(&net, i, |e| matches!(e, Event::Added(_))), 49);
    }
}

#[test]
fn failover_waits_for_node_timeout_and_master_timeout() {
    // Default timings: the master is removed and replaced at the same check.
    let mut net = SimNet::new(6);
    let a = net.add_node(nd(0.9).build().unwrap());
    let b = net.add_node(nd(0.5).build().unwrap());
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![a]);
    let crash_at = net.elapsed();
    net.crash(a);
    assert!(net.run_until(secs(10.0), |n| n.masters() == vec![b]));
    let removed_at = net
        .node(b)
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Removed(..)))
        .map(|(t, _)| *t)
        .unwrap();
    let promoted_at = net.elapsed();
    assert_eq!(removed_at, promoted_at);
    let detect = removed_at - crash_at;
    assert!(detect > secs(1.0) && detect <= secs(4.0), "{detect:?}");

    // A longer master timeout: the removed master still counts until it has
    // been silent that long; promotion comes then, 1.5 s after its removal.
    let mut net = SimNet::new(7);
    let slow = |w: f64| nd(w).master_timeout(secs(3.5)).build().unwrap();
    let a = net.add_node(slow(0.9));
    let b = net.add_node(slow(0.5));
    net.run_for(secs(5.0));
    net.crash(a);
    assert!(net.run_until(secs(10.0), |n| n.masters() == vec![b]));
    let removed_at = net
        .node(b)
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Removed(..)))
        .map(|(t, _)| *t)
        .unwrap();
    assert_eq!(net.elapsed() - removed_at, secs(1.5));
}

#[test]
fn two_masters_meeting_after_a_partition_the_lighter_demotes() {
    let mut net = SimNet::new(8);
    for w in [0.9, 0.8, 0.3, 0.2] {
        net.add_node(cfg(w).build().unwrap());
    }
    net.set_group(0, 1);
    net.set_group(1, 1);
    net.set_group(2, 2);
    net.set_group(3, 2);
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![0, 2]);
    net.heal();
    net.run_for(secs(1.1));
    assert_eq!(net.masters(), vec![0]);
    assert_eq!(count(&net, 2, |e| matches!(e, Event::Demotion(_))), 1);
    net.run_for(secs(30.0));
    assert_eq!(net.masters(), vec![0]);
    assert!(agreed(&net));
    assert_eq!(demotions(&net), 1);
}

#[test]
fn equal_weights_never_flap() {
    let mut net = SimNet::new(9);
    for _ in 0..10 {
        net.add_node(cfg(0.5).build().unwrap());
    }
    net.run_for(secs(600.0));
    assert_eq!(net.masters().len(), 1);
    assert!(agreed(&net));
    assert_eq!(promotions(&net), 1);
    assert_eq!(demotions(&net), 0);
    // The tie is broken by id: the largest id wins.
    let winner = net.masters()[0];
    let max_id = (0..10)
        .map(|i| net.node(i).protocol.id().clone())
        .max()
        .unwrap();
    assert_eq!(net.node(winner).protocol.id(), &max_id);
}

#[test]
fn permanent_demotion_gives_up_eligibility() {
    let mut net = SimNet::new(10);
    let a = net.add_node(cfg(0.9).build().unwrap());
    let b = net.add_node(cfg(0.5).build().unwrap());
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![a]);
    let now = net.now();
    net.protocol_mut(a).demote(now, true);
    net.poll(a);
    assert!(!net.node(a).protocol.local().is_master_eligible);
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![b]);
    // Even alone, an ineligible node never promotes itself.
    net.crash(b);
    net.run_for(secs(30.0));
    assert!(net.masters().is_empty());
    // A temporary demotion keeps eligibility: it takes over again when alone.
    let mut net = SimNet::new(11);
    let a = net.add_node(cfg(0.9).build().unwrap());
    net.run_for(secs(3.0));
    let now = net.now();
    net.protocol_mut(a).demote(now, false);
    net.poll(a);
    assert!(net.masters().is_empty());
    net.run_for(secs(2.1));
    assert_eq!(net.masters(), vec![a]);
}

#[test]
fn masters_required_two_elects_the_top_two_and_refills() {
    let mut net = SimNet::new(12);
    let two = |w: f64| cfg(w).masters_required(2).build().unwrap();
    for w in [0.1, 0.9, 0.5, 0.7, 0.3] {
        net.add_node(two(w));
    }
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![1, 3]);
    assert!(agreed(&net));
    net.crash(1);
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![2, 3]);
    assert!(agreed(&net));
    // Three masters after a partition heals: the lowest steps down.
    net.set_group(4, 1);
    net.set_group(0, 1);
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![0, 2, 3, 4]);
    net.heal();
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![2, 3]);
    assert!(agreed(&net));
}

#[test]
fn ignore_rules() {
    // Nothing: a node hears its own hellos and lists itself.
    let mut net = SimNet::new(13);
    let a = net.add_node(cfg(0.5).ignore(Ignore::Nothing).build().unwrap());
    net.run_for(secs(0.01));
    let own = net.node(a).protocol.id().clone();
    assert!(net.node(a).protocol.peer(own.as_str()).is_some());
    assert_eq!(net.node(a).protocol.stats().dropped.own, 0);

    // OwnInstance (the default): it drops only its own packets.
    let mut net = SimNet::new(14);
    let a = net.add_node(cfg(0.5).build().unwrap());
    let b = net.add_node(cfg(0.6).build().unwrap());
    net.run_for(secs(3.0));
    let p = &net.node(a).protocol;
    assert_eq!(p.peers().count(), 1);
    assert!(p.peer(net.node(b).protocol.id().as_str()).is_some());
    assert!(p.stats().dropped.own >= 3);
}

#[test]
fn ignore_own_process_drops_siblings_in_the_same_process() {
    use shoal::protocol::Protocol;
    use shoal::wire::envelope::Sender;
    let t0 = std::time::Instant::now();
    let sender = |iid: &str| Sender {
        pid: "p".repeat(32),
        iid: iid.repeat(32),
        host_name: "h".into(),
    };
    let from = "10.0.0.1:12345".parse().unwrap();
    for (ignore, seen) in [(Ignore::OwnProcess, 0), (Ignore::OwnInstance, 1)] {
        let config = cfg(0.5).ignore(ignore).build().unwrap();
        let mut a = Protocol::new(&config, sender("a"), t0, 1);
        let mut b = Protocol::new(&config, sender("b"), t0, 2);
        b.handle_timeout(t0);
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(t0, from, &t.payload);
        }
        assert_eq!(a.peers().count(), seen, "{ignore:?}");
    }
}

#[test]
fn channel_messages_reach_joined_nodes_only() {
    let mut net = SimNet::new(15);
    let a = net.add_node(cfg(0.5).build().unwrap());
    let b = net.add_node(cfg(0.6).build().unwrap());
    let c = net.add_node(cfg(0.7).build().unwrap());
    net.protocol_mut(b).join("jobs").unwrap();
    net.run_for(secs(0.1));
    let big = "x".repeat(5000);
    let now = net.now();
    net.protocol_mut(a)
        .send(now, "jobs", &serde_json::json!({"n": 1, "big": big}))
        .unwrap();
    net.poll(a);
    net.run_for(secs(0.1));
    let got: Vec<_> = net
        .node(b)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].channel, "jobs");
    assert_eq!(got[0].data["n"], 1);
    assert_eq!(got[0].data["big"].as_str().unwrap().len(), 5000);
    assert_eq!(&got[0].from, net.node(a).protocol.id());
    assert_eq!(count(&net, c, |e| matches!(e, Event::Message(_))), 0);
    assert_eq!(net.node(c).protocol.stats().dropped.not_joined, 1);
    // Reserved names are refused.
    for name in [
        "hello",
        "master",
        "promotion",
        "demotion",
        "added",
        "removed",
    ] {
        let now = net.now();
        assert!(net.protocol_mut(a).send(now, name, &1).is_err());
        assert!(net.protocol_mut(a).join(name).is_err());
    }
}

#[test]
fn a_shared_key_is_a_separate_cluster() {
    let mut net = SimNet::new(16);
    let (one, two) = (Key::from_bytes([1; 32]), Key::from_bytes([2; 32]));
    let a = net.add_node(cfg(0.5).secret_key(one.clone()).build().unwrap());
    let b = net.add_node(cfg(0.6).secret_key(one).build().unwrap());
    let c = net.add_node(cfg(0.7).secret_key(two).build().unwrap());
    let d = net.add_node(cfg(0.8).build().unwrap());
    net.run_for(secs(5.0));
    assert_eq!(net.node(a).protocol.peers().count(), 1);
    assert_eq!(net.masters(), vec![b, c, d]);
    // Secure mode: another key's packets are refused by key id, plaintext
    // is refused outright, and a node without a key cannot use sealed ones.
    assert!(net.node(c).protocol.stats().dropped.unknown_key > 0);
    assert!(net.node(a).protocol.stats().dropped.unauthenticated > 0);
    assert!(net.node(d).protocol.stats().dropped.unknown_key > 0);

    // node-discovery's legacy cipher: a wrong key fails to decrypt, and
    // plaintext JSON does not decrypt either way.
    let mut net = SimNet::new(17);
    let legacy = |w: f64, key: &str| {
        cfg(w)
            .legacy_key(key)
            .encryption(shoal::Encryption::LegacyNodeDiscovery)
            .build()
            .unwrap()
    };
    let a = net.add_node(legacy(0.5, "one"));
    let b = net.add_node(legacy(0.6, "one"));
    let c = net.add_node(legacy(0.7, "two"));
    let d = net.add_node(cfg(0.8).build().unwrap());
    net.run_for(secs(5.0));
    assert_eq!(net.node(a).protocol.peers().count(), 1);
    assert_eq!(net.masters(), vec![b, c, d]);
    assert!(net.node(c).protocol.stats().dropped.decrypt > 0);
    assert!(net.node(a).protocol.stats().dropped.decrypt > 0);
    assert!(net.node(d).protocol.stats().dropped.envelope > 0);
}

#[test]
fn hours_of_protocol_time_are_deterministic_and_stable() {
    let run = |seed| {
        let mut net = SimNet::new(seed);
        net.loss = 0.001;
        for _ in 0..20 {
            net.add_node(Config::builder().build().unwrap());
        }
        net.run_for(secs(3600.0));
        let log: Vec<String> = (0..20)
            .flat_map(|i| {
                net.node(i)
                    .events
                    .iter()
                    .map(move |(t, e)| format!("{i} {t:?} {}", kind(e)))
            })
            .collect();
        (net.masters(), log, net.delivered)
    };
    let (masters, log1, delivered) = run(99);
    let (_, log2, _) = run(99);
    assert_eq!(log1, log2, "same seed, same run");
    assert_eq!(masters.len(), 1);
    // 1 h x 20 nodes x 2.5 hellos/s x 20 receivers.
    assert!(delivered > 3_500_000, "{delivered}");
}

fn kind(e: &Event) -> String {
    match e {
        Event::Added(p) => format!("added {}", p.id),
        Event::Removed(p, _) => format!("removed {}", p.id),
        Event::Master(p) => format!("master {}", p.id),
        Event::Promotion(_) => "promotion".into(),
        Event::Demotion(_) => "demotion".into(),
        other => format!("{other:?}"),
    }
}

#[test]
fn advertised_values_travel_in_hellos_and_oversized_ones_are_refused() {
    let mut net = SimNet::new(17);
    let a = net.add_node(
        cfg(0.5)
            .advertise(serde_json::json!({"name": "db"}))
            .max_message_size(4096)
            .build()
            .unwrap(),
    );
    let b = net.add_node(cfg(0.6).build().unwrap());
    net.run_for(secs(0.01));
    let id = net.node(a).protocol.id().clone();
    // The very first hello carried the value: b's Added event has it.
    let added = net.node(b).events.iter().find_map(|(_, e)| match e {
        Event::Added(p) => Some(p.clone()),
        _ => None,
    });
    assert_eq!(added.unwrap().info.unwrap()["name"], "db");

    let now = net.now();
    let huge = serde_json::json!({"name": "db", "blob": "x".repeat(5000)});
    let err = net.protocol_mut(a).advertise(now, huge).unwrap_err();
    assert!(matches!(err, shoal::Error::MessageTooLarge { .. }), "{err}");
    assert_eq!(net.node(a).protocol.local().info.unwrap()["name"], "db");

    net.protocol_mut(a)
        .advertise(now, serde_json::json!({"name": "db2"}))
        .unwrap();
    net.poll(a);
    net.run_for(secs(0.01));
    let seen = net.node(b).protocol.peer(id.as_str()).unwrap();
    assert_eq!(seen.info.as_ref().unwrap()["name"], "db2");
    // Peers are told: exactly one Updated, carrying the new value.
    let updates: Vec<_> = net
        .node(b)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Updated(p) => Some(p.info.clone().unwrap()["name"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(updates, vec![serde_json::json!("db2")]);

    let err = cfg(0.5)
        .advertise(serde_json::json!({"blob": "x".repeat(5000)}))
        .max_message_size(4096)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "advertise");
}

#[test]
fn bad_packets_are_counted_and_dropped_or_reported_when_asked() {
    use shoal::protocol::Protocol;
    use shoal::wire::envelope::Sender;
    let t0 = std::time::Instant::now();
    let from = "10.0.0.9:12345".parse().unwrap();
    let sender = Sender {
        pid: "p".repeat(32),
        iid: "a".repeat(32),
        host_name: "h".into(),
    };
    // node-discover's dialect (plain JSON, no WRAP), garbage, a truncated
    // block, and a WRAP header declaring 4 GiB.
    let mut huge = b"WRAP".to_vec();
    huge.extend([7u8; 16]);
    huge.extend(0u32.to_be_bytes());
    huge.extend(u32::MAX.to_be_bytes());
    huge.extend(40u32.to_be_bytes());
    huge.extend(0u32.to_be_bytes());
    huge.extend([0u8; 4]);
    let bad: Vec<Vec<u8>> = vec![
        br#"{"event":"hello","pid":"x","iid":"y","hostName":"z","data":{}}"#.to_vec(),
        vec![0xff; 300],
        b"WRAP".to_vec(),
        huge,
        Vec::new(),
    ];
    for report in [false, true] {
        let config = cfg(0.5).ignore_data_errors(!report).build().unwrap();
        let mut node = Protocol::new(&config, sender.clone(), t0, 1);
        for datagram in &bad {
            node.handle_datagram(t0, from, datagram);
        }
        let stats = node.stats();
        assert_eq!(stats.packets_in, 5);
        assert_eq!(stats.dropped.not_wrapped, 2, "{stats:?}");
        assert_eq!(stats.dropped.malformed, 2, "{stats:?}");
        assert_eq!(stats.dropped.too_large, 1, "{stats:?}");
        assert_eq!(node.peers().count(), 0);
        let errors = std::iter::from_fn(|| node.poll_event())
            .filter(|e| matches!(e, Event::DataError { .. }))
            .count();
        assert_eq!(errors, if report { 5 } else { 0 });
    }
}

/// A removal says why: a goodbye is told from a silence.
#[test]
fn removals_say_whether_the_peer_said_goodbye_or_timed_out() {
    let mut net = SimNet::new(12);
    let a = net.add_node(cfg(0.9).build().unwrap());
    let b = net.add_node(cfg(0.5).build().unwrap());
    let c = net.add_node(cfg(0.1).build().unwrap());
    net.run_for(secs(3.0));
    let now = net.now();
    net.protocol_mut(b).goodbye(now);
    net.poll(b);
    net.crash(b);
    net.crash(c);
    net.run_for(secs(5.0));
    let reasons: Vec<(String, shoal::Removal)> = net
        .node(a)
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Removed(p, why) => Some((p.id.to_string(), *why)),
            _ => None,
        })
        .collect();
    let id = |i: usize| net.node(i).protocol.id().to_string();
    assert_eq!(
        reasons,
        vec![
            (id(b), shoal::Removal::Goodbye),
            (id(c), shoal::Removal::Timeout)
        ]
    );
}
