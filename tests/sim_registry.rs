//! The registry in simulated time: replication, TTL deadlines, owners
//! leaving, duplicate ids, partitions, loss and limits.

use std::time::Duration;

use shoal::registry::{Filter, OfflineReason, Registration, RegistryEvent};
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
    println!("newcomer synced in {:?}", net.elapsed() - start);
}
