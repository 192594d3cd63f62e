//! Convergence, leave and failure detection with shoal's default timings, in
//! simulated time.

use std::time::Duration;

use shoal::sim::SimNet;
use shoal::{Config, Event};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn node(weight: f64) -> Config {
    Config::builder().weight(weight).build().unwrap()
}

fn count(net: &SimNet, pred: impl Fn(&Event) -> bool) -> usize {
    net.nodes()
        .iter()
        .map(|n| n.events.iter().filter(|(_, e)| pred(e)).count())
        .sum()
}

#[test]
fn a_newcomer_knows_the_whole_cluster_within_milliseconds() {
    let mut net = SimNet::new(1);
    for i in 0..20 {
        net.add_node(node(0.1 + i as f64 / 100.0));
    }
    net.run_for(secs(10.0));
    let start = net.elapsed();
    let newcomer = net.add_node(node(0.05));
    // Latency 0.1-0.5 ms, early hellos jittered by up to 5 ms.
    assert!(
        net.run_until(secs(0.010), |n| n.node(newcomer).protocol.peers().count()
            == 20)
    );
    let took = net.elapsed() - start;
    assert!(took <= secs(0.006), "{took:?}");
    // And everyone knows the newcomer (from its first hello).
    for i in 0..20 {
        assert!(net
            .node(i)
            .protocol
            .peer(net.node(newcomer).protocol.id().as_str())
            .is_some());
    }
}

#[test]
fn a_mass_restart_costs_a_bounded_number_of_extra_hellos() {
    let mut net = SimNet::new(2);
    let n = 100;
    for i in 0..n {
        net.add_node(node(i as f64 / n as f64));
    }
    net.run_for(secs(1.0));
    // In the first second each node sends its start hello, periodic hellos
    // (every 400 ms), and early hellos at most 4 per second: never 99.
    for i in 0..n {
        let sent = net.node(i).protocol.stats().messages_out;
        assert!(sent <= 5, "node {i} sent {sent} hellos in the first second");
        assert_eq!(net.node(i).protocol.peers().count(), n - 1);
    }
    // Without early hellos it would be 3 each (t = 0, 0.4, 0.8 s): the storm
    // of 100 newcomers costs about one extra hello per node.
    let total: u64 = (0..n)
        .map(|i| net.node(i).protocol.stats().messages_out)
        .sum();
    assert!(total <= 9 * n as u64 / 2, "{total}");
}

#[test]
fn nodes_started_one_after_another_each_know_the_others_within_milliseconds() {
    // Five nodes started 15 ms apart (a script starting a cluster): every
    // newcomer is answered by an early hello, not at the next interval.
    let mut net = SimNet::new(7);
    let mut nodes = Vec::new();
    for i in 0..5 {
        if i > 0 {
            net.run_for(secs(0.015));
        }
        nodes.push(net.add_node(node(0.1 + i as f64 / 10.0)));
    }
    let last_started = net.elapsed();
    assert!(net.run_until(secs(0.5), |n| nodes.iter().all(|&i| n
        .node(i)
        .protocol
        .peers()
        .count()
        == 4)));
    let took = net.elapsed().saturating_sub(last_started);
    assert!(
        took <= secs(0.010),
        "full mesh {took:?} after the last start"
    );
}

#[test]
fn a_stream_of_newcomers_costs_at_most_four_early_hellos_per_second() {
    let mut net = SimNet::new(8);
    let first = net.add_node(node(0.99));
    // 100 newcomers, one every 10 ms, for a second.
    for i in 0..100 {
        net.add_node(node(i as f64 / 200.0));
        net.run_for(secs(0.010));
    }
    // The first node: 1 start hello + 2 periodic (0.4, 0.8 s) + at most 4
    // early ones in the second, plus the one 1.0 s tick that may fall in.
    let sent = net.node(first).protocol.stats().messages_out;
    assert!(sent <= 8, "sent {sent} hellos while 100 nodes joined");
}

#[test]
fn goodbye_removes_at_once_and_a_leaving_master_is_replaced_at_once() {
    let mut net = SimNet::new(3);
    let a = net.add_node(node(0.9));
    let b = net.add_node(node(0.5));
    let c = net.add_node(node(0.1));
    net.run_for(secs(3.0));
    assert_eq!(net.masters(), vec![a]);
    let left = net.elapsed();
    let now = net.now();
    net.protocol_mut(a).goodbye(now);
    net.poll(a);
    net.crash(a);
    net.run_for(secs(0.01));
    for i in [b, c] {
        let removed = net.node(i).events.iter().find_map(|(t, e)| match e {
            Event::Removed(..) => Some(*t),
            _ => None,
        });
        assert!(removed.unwrap() - left < secs(0.001));
    }
    assert_eq!(
        net.masters(),
        vec![b],
        "promoted without waiting for master_timeout"
    );
}

#[test]
fn a_crash_is_detected_at_the_peers_own_deadline() {
    let mut net = SimNet::new(4);
    let a = net.add_node(node(0.9));
    let b = net.add_node(node(0.5));
    net.run_for(secs(3.0));
    let crash = net.elapsed();
    net.crash(a);
    net.run_for(secs(5.0));
    let (removed, promoted) = {
        let ev = &net.node(b).events;
        let t = |f: &dyn Fn(&Event) -> bool| ev.iter().find(|(_, e)| f(e)).map(|(t, _)| *t);
        (
            t(&|e| matches!(e, Event::Removed(..))).unwrap(),
            t(&|e| matches!(e, Event::Promotion(_))).unwrap(),
        )
    };
    // Its last hello was at most one interval before the crash: removal at
    // last hello + 2.6 s, so between 2.2 and 2.6 s after the crash.
    let detect = removed - crash;
    assert!(detect > secs(2.19) && detect <= secs(2.601), "{detect:?}");
    // Failover when the master timeout (2.6 s since its last hello) runs out: the same moment.
    assert!(promoted - removed < secs(0.001), "{:?}", promoted - removed);
}

#[test]
fn a_node_discovery_peer_gets_a_deadline_for_its_one_second_hellos() {
    let mut net = SimNet::new(5);
    let nd = net.add_node(
        Config::builder()
            .weight(0.9)
            .node_discovery_timings()
            .hello_interval(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let b = net.add_node(node(0.5));
    net.run_for(secs(3.0));
    let peer = net
        .node(b)
        .protocol
        .peer(net.node(nd).protocol.id().as_str())
        .unwrap()
        .clone();
    assert_eq!(peer.hello_interval, Duration::from_secs(1));
    assert_eq!(peer.deadline - peer.last_seen, secs(6.5));
}

#[test]
fn simultaneous_starts_elect_once_and_epochs_fence_old_masters() {
    let mut net = SimNet::new(6);
    for w in [0.3, 0.9, 0.5, 0.7, 0.1] {
        net.add_node(node(w));
    }
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![1]);
    assert_eq!(count(&net, |e| matches!(e, Event::Promotion(_))), 1);
    assert_eq!(count(&net, |e| matches!(e, Event::Demotion(_))), 0);
    let first = net.node(1).protocol.local().epoch.unwrap();
    assert_eq!(first.n, 1);
    assert_eq!(&first.master, net.node(1).protocol.id());
    for i in 0..5 {
        assert_eq!(net.node(i).protocol.local().epoch.as_ref(), Some(&first));
    }
    net.crash(1);
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![3]);
    let second = net.node(3).protocol.local().epoch.unwrap();
    assert_eq!(second.n, 2);
    assert!(second > first);
    for i in [0, 2, 4] {
        assert_eq!(net.node(i).protocol.local().epoch.as_ref(), Some(&second));
    }
}

#[test]
fn a_newcomer_does_not_promote_before_hearing_its_peers() {
    let mut net = SimNet::new(7);
    let a = net.add_node(node(0.5));
    net.run_for(secs(5.0));
    assert_eq!(net.masters(), vec![a]);
    // Even with the network slow to answer (latency 50-400 ms), a light
    // newcomer never becomes a second master.
    net.latency = (secs(0.05), secs(0.4));
    net.add_node(node(0.1));
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![a]);
    assert_eq!(count(&net, |e| matches!(e, Event::Promotion(_))), 1);
}
