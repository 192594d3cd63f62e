//! The registry in simulated time: replication, TTL deadlines, owners
//! leaving, duplicate ids, partitions, loss and limits.

use std::time::Duration;

use shoal::registry::{Filter, OfflineReason, Registration, RegistryEvent, RegistryLimits};
use shoal::sim::SimNet;
use shoal::Config;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn reg(name: &str, port: u16) -> Registration {
    Registration::builder(name, "1.0.0", "10.1.0.1", port)
        .meta("registered", 1_000u64 + u64::from(port))
        .build()
        .unwrap()
}

fn lan(n: usize, seed: u64) -> SimNet {
    let mut net = SimNet::new(seed);
    for i in 0..n {
        net.add_node(Config::builder().weight(i as f64 / 100.0).build().unwrap());
    }
    net.run_for(Duration::from_secs(2));
    net
}

fn register(net: &mut SimNet, i: usize, r: Registration, ttl: Duration) {
    let now = net.now();
    net.protocol_mut(i).register(now, r, ttl).unwrap();
    net.poll(i);
}

fn count(net: &SimNet, i: usize) -> usize {
    net.node(i).protocol.registrations(&Filter::All).len()
}

#[test]
fn a_registration_reaches_every_node_and_leaves_when_deregistered() {
    let mut net = lan(5, 1);
    register(&mut net, 0, reg("kv", 7000), Duration::from_secs(60));
    net.run_for(ms(10));
    for i in 0..5 {
        assert_eq!(count(&net, i), 1, "node {i}");
    }
    let now = net.now();
    net.protocol_mut(0)
        .deregister(now, "/kv/1.0.0/10.1.0.1/7000")
        .unwrap();
    net.poll(0);
    net.run_for(ms(10));
    for i in 0..5 {
        assert_eq!(count(&net, i), 0, "node {i}");
        let last = net.node(i).registry_events.last().unwrap();
        assert!(
            matches!(
                &last.1,
                RegistryEvent::Offline {
                    reason: OfflineReason::Deregistered,
                    ..
                }
            ),
            "{last:?}"
        );
    }
}

#[test]
fn a_newcomer_gets_a_thousand_registrations() {
    let mut net = lan(2, 2);
    for p in 1..=1000 {
        register(&mut net, 0, reg("svc", p), Duration::from_secs(600));
    }
    net.run_for(ms(50));
    assert_eq!(count(&net, 1), 1000);
    let new = net.add_node(Config::builder().build().unwrap());
    let start = net.elapsed();
    assert!(net.run_until(Duration::from_secs(5), |net| count(net, new) == 1000));
    let took = net.elapsed() - start;
    println!("newcomer synced in {took:?}");
    // Paged at 2,000 datagrams/s, even right after the pages went to
    // another node (they are not held back as "just sent" for it).
    assert!(took < Duration::from_millis(300), "{took:?}");
}

fn registry_events(net: &SimNet, i: usize) -> Vec<(Duration, RegistryEvent)> {
    net.node(i).registry_events.clone()
}

fn offline_at(net: &SimNet, i: usize, id: &str) -> Option<(Duration, OfflineReason)> {
    net.node(i)
        .registry_events
        .iter()
        .find_map(|(at, e)| match e {
            RegistryEvent::Offline {
                registration,
                reason,
            } if registration.id() == id => Some((*at, *reason)),
            _ => None,
        })
}

#[test]
fn ttl_expiry_happens_at_the_exact_deadline_everywhere_and_refresh_postpones_it() {
    let mut net = lan(4, 3);
    let kv = reg("kv", 7000);
    let web = reg("web", 8080);
    let t0 = net.elapsed();
    register(&mut net, 0, kv.clone(), Duration::from_secs(5));
    register(&mut net, 0, web.clone(), Duration::from_secs(5));
    // Refresh web at 3 s: it lives until 8 s.
    net.run_for(Duration::from_secs(3));
    let now = net.now();
    net.protocol_mut(0).refresh(now, web.id()).unwrap();
    net.run_for(Duration::from_secs(2) - ms(1));
    for i in 0..4 {
        assert_eq!(count(&net, i), 2, "node {i}: nothing expired before 5 s");
    }
    net.run_for(ms(20));
    for i in 0..4 {
        let (at, reason) = offline_at(&net, i, kv.id()).expect("kv expired");
        assert_eq!(reason, OfflineReason::Expired);
        let late = at - t0 - Duration::from_secs(5);
        assert!(
            late < ms(5),
            "node {i} saw the expiry {late:?} after the deadline"
        );
        assert!(offline_at(&net, i, web.id()).is_none(), "web was refreshed");
    }
    assert_eq!(
        offline_at(&net, 0, kv.id()).unwrap().0 - t0,
        Duration::from_secs(5)
    );
    net.run_for(Duration::from_secs(3));
    for i in 0..4 {
        assert_eq!(
            offline_at(&net, i, web.id()).unwrap().1,
            OfflineReason::Expired
        );
        assert_eq!(count(&net, i), 0);
    }
    // An unknown id cannot be refreshed or deregistered.
    let now = net.now();
    assert!(net.protocol_mut(0).refresh(now, kv.id()).is_err());
    assert!(net.protocol_mut(1).deregister(now, web.id()).is_err());
}

#[test]
fn an_owner_that_crashes_loses_its_registrations_at_the_node_timeout() {
    let mut net = lan(4, 4);
    register(&mut net, 0, reg("kv", 7000), Duration::from_secs(600));
    net.run_for(Duration::from_secs(1));
    let crashed = net.elapsed();
    net.crash(0);
    net.run_for(Duration::from_secs(5));
    for i in 1..4 {
        let (at, reason) = offline_at(&net, i, "/kv/1.0.0/10.1.0.1/7000").unwrap();
        assert_eq!(reason, OfflineReason::OwnerGone);
        let after = at - crashed;
        // The node timeout (2.6 s) from the last hello heard, within a hello interval.
        assert!(
            after > Duration::from_millis(2_100) && after <= Duration::from_millis(2_700),
            "{after:?}"
        );
        assert_eq!(count(&net, i), 0);
    }
}

#[test]
fn an_owner_that_says_goodbye_loses_its_registrations_at_once() {
    let mut net = lan(4, 5);
    register(&mut net, 0, reg("kv", 7000), Duration::from_secs(600));
    net.run_for(Duration::from_secs(1));
    let left = net.elapsed();
    let now = net.now();
    net.protocol_mut(0).goodbye(now);
    net.poll(0);
    net.crash(0);
    net.run_for(ms(10));
    for i in 1..4 {
        let (at, reason) = offline_at(&net, i, "/kv/1.0.0/10.1.0.1/7000").unwrap();
        assert_eq!(reason, OfflineReason::OwnerGone);
        assert!(at - left < ms(5));
    }
}

/// Two owners, one id: online while either holds it, the copy registered
/// last counts, offline only when the last one lets it go.
#[test]
fn the_same_id_from_two_owners_is_one_registration_until_both_let_go() {
    let mut net = lan(4, 6);
    let older = Registration::builder("kv", "1.0.0", "10.1.0.1", 7000)
        .meta("registered", 1_000u64)
        .meta("by", "a")
        .build()
        .unwrap();
    let newer = Registration::builder("kv", "1.0.0", "10.1.0.1", 7000)
        .meta("registered", 2_000u64)
        .meta("by", "b")
        .build()
        .unwrap();
    let id = older.id().to_owned();
    register(&mut net, 0, older, Duration::from_secs(600));
    net.run_for(ms(10));
    register(&mut net, 1, newer, Duration::from_secs(600));
    net.run_for(ms(10));
    for i in 0..4 {
        let all = net.node(i).protocol.registrations(&Filter::All);
        assert_eq!(all.len(), 1, "node {i}");
        assert_eq!(all[0].meta()["by"], "b", "node {i}: the newer copy counts");
        let online = registry_events(&net, i)
            .iter()
            .filter(|(_, e)| matches!(e, RegistryEvent::Online(_)))
            .count();
        assert_eq!(online, 1, "node {i}: one Online for the id");
    }
    // The newer owner deregisters: still online, the older copy counts.
    let now = net.now();
    net.protocol_mut(1).deregister(now, &id).unwrap();
    net.poll(1);
    net.run_for(ms(10));
    for i in 0..4 {
        assert!(offline_at(&net, i, &id).is_none(), "node {i}");
        let all = net.node(i).protocol.registrations(&Filter::All);
        assert_eq!(all[0].meta()["by"], "a", "node {i}");
        assert!(matches!(
            registry_events(&net, i).last(),
            Some((_, RegistryEvent::Updated(r))) if r.meta()["by"] == "a"
        ));
    }
    // The older owner crashes: offline everywhere, owner gone.
    net.crash(0);
    net.run_for(Duration::from_secs(4));
    for i in 1..4 {
        assert_eq!(
            offline_at(&net, i, &id).unwrap().1,
            OfflineReason::OwnerGone
        );
        assert_eq!(count(&net, i), 0);
    }
}

/// Every node holds exactly what the owners hold.
fn converged(net: &SimNet, owners: &[usize], alive: &[usize]) -> bool {
    // Cheap first: the counts.
    let counts: Vec<usize> = alive
        .iter()
        .map(|i| net.node(*i).protocol.registration_count())
        .collect();
    if counts.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    let mut expected: Vec<String> = owners
        .iter()
        .flat_map(|o| {
            net.node(*o)
                .protocol
                .registrations(&Filter::All)
                .into_iter()
                .filter(|r| r.meta()["owner"] == *o as u64)
                .map(|r| r.id().to_owned())
        })
        .collect();
    expected.sort();
    alive.iter().all(|i| {
        let held: Vec<String> = net
            .node(*i)
            .protocol
            .registrations(&Filter::All)
            .iter()
            .map(|r| r.id().to_owned())
            .collect();
        held == expected
    })
}

/// Runs until [`converged`], checking every 10 ms of simulated time (a
/// check walks every table); `false` if `limit` passes first.
fn settle(net: &mut SimNet, limit: Duration, all: &[usize]) -> bool {
    let end = net.elapsed() + limit;
    while net.elapsed() < end {
        if converged(net, all, all) {
            return true;
        }
        net.run_for(ms(10));
    }
    converged(net, all, all)
}

fn owned(owner: usize, n: u16) -> Registration {
    Registration::builder(format!("svc{owner}"), "1.0.0", "10.1.0.1", n)
        .meta("owner", owner as u64)
        .build()
        .unwrap()
}

#[test]
fn a_healed_partition_converges_with_changes_made_on_both_sides() {
    let mut net = lan(10, 7);
    let all: Vec<usize> = (0..10).collect();
    for o in 0..10 {
        for p in 1..=20 {
            register(&mut net, o, owned(o, p), Duration::from_secs(3600));
        }
    }
    net.run_for(ms(100));
    assert!(converged(&net, &all, &all));
    // Split 0..5 | 5..10, shorter than the node timeout, and change both sides.
    for i in 5..10 {
        net.set_group(i, 1);
    }
    for o in [0, 7] {
        let now = net.now();
        for p in 1..=5 {
            let id = owned(o, p).id().to_owned();
            net.protocol_mut(o).deregister(now, &id).unwrap();
        }
        for p in 100..110 {
            net.protocol_mut(o)
                .register(now, owned(o, p), Duration::from_secs(3600))
                .unwrap();
        }
        net.poll(o);
    }
    net.run_for(Duration::from_secs(1));
    assert!(
        !converged(&net, &all, &all),
        "each side missed the other's changes"
    );
    net.heal();
    let healed = net.elapsed();
    assert!(settle(&mut net, Duration::from_secs(5), &all));
    let took = net.elapsed() - healed;
    // Repaired at the next hello (400 ms) and a pull.
    assert!(took < Duration::from_secs(1), "{took:?}");
    // A partition longer than the node timeout: each side drops the other's
    // owners (owner gone) and gets them back after the heal.
    for i in 5..10 {
        net.set_group(i, 1);
    }
    net.run_for(Duration::from_secs(5));
    assert_eq!(count(&net, 0), 5 * 20 + 5, "only its side's owners");
    net.heal();
    assert!(settle(&mut net, Duration::from_secs(5), &all));
}

#[test]
fn five_percent_loss_converges_and_never_reports_a_false_offline() {
    let mut net = lan(20, 8);
    net.loss = 0.05;
    let all: Vec<usize> = (0..20).collect();
    for o in 0..20 {
        for p in 1..=50 {
            register(&mut net, o, owned(o, p), Duration::from_secs(3600));
        }
    }
    assert!(settle(&mut net, Duration::from_secs(10), &all));
    let pulls: u64 = (0..20)
        .map(|i| net.node(i).protocol.stats().registry_pulls)
        .sum();
    let repairs: u64 = (0..20)
        .map(|i| net.node(i).protocol.stats().registry_repairs)
        .sum();
    println!(
        "converged at {:?}: {pulls} pulls, {repairs} repairs, {} deliveries",
        net.elapsed(),
        net.delivered
    );
    // A minute of loss with churn: no registration goes offline unless deregistered.
    for round in 0..60u16 {
        let o = usize::from(round % 20);
        let now = net.now();
        net.protocol_mut(o)
            .register(now, owned(o, 1000 + round), Duration::from_secs(3600))
            .unwrap();
        net.poll(o);
        net.run_for(Duration::from_secs(1));
    }
    assert!(settle(&mut net, Duration::from_secs(10), &all));
    for i in 0..20 {
        assert!(
            !net.node(i)
                .registry_events
                .iter()
                .any(|(_, e)| matches!(e, RegistryEvent::Offline { .. })),
            "node {i}: a false Offline"
        );
        assert_eq!(count(&net, i), 20 * 50 + 60);
    }
}

#[test]
fn remote_registrations_over_the_limits_are_refused_and_counted() {
    let mut net = SimNet::new(9);
    let owner = net.add_node(Config::builder().build().unwrap());
    let limits = RegistryLimits {
        per_owner: 5,
        total: 8,
        meta_bytes: 200,
    };
    let small = net.add_node(Config::builder().registry_limits(limits).build().unwrap());
    let other = net.add_node(Config::builder().build().unwrap());
    net.run_for(Duration::from_secs(2));
    for p in 1..=10 {
        register(&mut net, owner, owned(owner, p), Duration::from_secs(600));
    }
    net.run_for(ms(50));
    assert_eq!(
        count(&net, small),
        5,
        "per owner: {:?}",
        net.node(small).protocol.stats()
    );
    for p in 1..=10 {
        register(&mut net, other, owned(other, p), Duration::from_secs(600));
    }
    let big = Registration::builder("big", "1", "h", 1)
        .meta("blob", "x".repeat(300))
        .build()
        .unwrap();
    register(&mut net, owner, big, Duration::from_secs(600));
    net.run_for(Duration::from_secs(2));
    assert_eq!(count(&net, small), 8, "total");
    assert_eq!(count(&net, other), 21, "unlimited nodes hold everything");
    let refused = net.node(small).protocol.stats().dropped.registry_limit;
    assert!(
        refused >= 13,
        "5 over per_owner, 7 over total, 1 meta: {refused}"
    );
    // Local commands get errors naming the limit.
    let now = net.now();
    let err = net
        .protocol_mut(small)
        .register(now, owned(small, 1), Duration::from_secs(1))
        .unwrap_err();
    assert!(err.to_string().contains("total"), "{err}");
}

/// Every node registers at once on a lossy LAN that reorders: the deltas
/// arrive out of order and some are lost, pages broadcast for one node
/// start syncs on others. Everything converges, and the repair work stays
/// a small multiple of the registrations. (This stalled once: a node in a
/// page sync was answered with deltas it ignored.)
#[test]
fn a_cold_start_under_loss_and_reordering_converges_without_a_pull_storm() {
    let mut net = SimNet::new(10);
    net.latency = (Duration::from_micros(50), Duration::from_millis(2));
    net.loss = 0.05;
    let n = 30;
    for i in 0..n {
        net.add_node(Config::builder().weight(i as f64 / 100.0).build().unwrap());
    }
    net.run_for(Duration::from_secs(3));
    let all: Vec<usize> = (0..n).collect();
    for o in 0..n {
        for p in 1..=30 {
            register(&mut net, o, owned(o, p), Duration::from_secs(3600));
        }
    }
    let start = net.elapsed();
    assert!(settle(&mut net, Duration::from_secs(10), &all), "converged");
    let took = net.elapsed() - start;
    let pulls: u64 = all
        .iter()
        .map(|i| net.node(*i).protocol.stats().registry_pulls)
        .sum();
    let repairs: u64 = all
        .iter()
        .map(|i| net.node(*i).protocol.stats().registry_repairs)
        .sum();
    println!("converged in {took:?}: {pulls} pulls, {repairs} repairs");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // 900 registrations, 30 receivers each: a few repairs per lost delta.
    assert!(repairs < 5 * 900, "{repairs} repairs");
}
