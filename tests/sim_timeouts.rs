//! Explicit timings mean what their docs say, in simulated time: a node
//! timeout set by the user is the deadline, not a floor that the default
//! `missed_hellos` stretches (issue 10, point 8).

use std::time::Duration;

use shoal::sim::SimNet;
use shoal::{Config, ConfigBuilder, Event, Removal};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// node-discovery's timings, set one by one as a newcomer would (not
/// through the preset, which already set `missed_hellos` 0).
fn explicit(weight: f64) -> ConfigBuilder {
    Config::builder()
        .weight(weight)
        .hello_interval(secs(1.0))
        .node_timeout(secs(2.0))
        .master_timeout(secs(2.0))
}

/// When node `i` removed a peer by timeout, and how long that peer had been
/// silent (since its last hello reached `i`).
fn timed_out(net: &SimNet, i: usize) -> Option<(Duration, Duration)> {
    let start = net.now() - net.elapsed();
    net.node(i).events.iter().find_map(|(t, e)| match e {
        Event::Removed(peer, Removal::Timeout) => Some((*t, *t - (peer.last_seen - start))),
        _ => None,
    })
}

fn promoted_at(net: &SimNet, i: usize) -> Option<Duration> {
    net.node(i)
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Promotion(_)))
        .map(|(t, _)| *t)
}

#[test]
fn with_hello_1s_and_node_timeout_2s_a_silent_master_goes_after_2s() {
    let mut net = SimNet::new(11);
    let a = net.add_node(explicit(0.9).build().unwrap());
    let b = net.add_node(explicit(0.5).build().unwrap());
    net.run_for(secs(10.0));
    assert_eq!(net.masters(), vec![a]);
    assert_eq!(net.node(b).protocol.config().missed_hellos(), 0);
    let crash = net.elapsed();
    net.crash(a);
    net.run_for(secs(10.0));

    // Removal comes exactly 2 s after the last hello heard (the deadline
    // is the node timeout, not 6.5 s), at b's own timer, not at a check.
    let (removed, silent) = timed_out(&net, b).expect("a removed");
    assert!(silent >= secs(2.0) && silent <= secs(2.001), "{silent:?}");
    // That hello left a at most one interval before the crash, and the
    // simulated LAN delivers within 0.5 ms: between 1.0 and 2.0005 s.
    let detect = removed - crash;
    assert!(detect > secs(1.0) && detect <= secs(2.0005), "{detect:?}");
    // The master timeout (2 s, explicit too) runs out at the same moment.
    let promoted = promoted_at(&net, b).expect("b took over");
    assert!(promoted - removed < secs(0.001), "{:?}", promoted - removed);
    assert_eq!(net.masters(), vec![b]);
}

#[test]
fn a_peer_slower_than_us_is_kept_one_and_a_half_of_its_intervals() {
    // b says hello every 2 s; a (1 s hellos, node timeout 2 s) must not drop
    // it between two of its hellos, so it keeps it 3 s.
    let mut net = SimNet::new(12);
    let a = net.add_node(explicit(0.9).build().unwrap());
    let b = net.add_node(
        Config::builder()
            .weight(0.5)
            .hello_interval(secs(2.0))
            .node_timeout(secs(3.0))
            .master_timeout(secs(3.0))
            .build()
            .unwrap(),
    );
    net.run_for(secs(60.0));
    assert!(timed_out(&net, a).is_none(), "b dropped while alive");
    net.crash(b);
    net.run_for(secs(10.0));
    let (_, silent) = timed_out(&net, a).expect("b removed");
    assert!(silent >= secs(3.0) && silent <= secs(3.001), "{silent:?}");
}

#[test]
fn without_explicit_timeouts_the_adaptive_deadline_stays() {
    // Only the hello interval set: 5 lost hellos of 1 s, plus half of one.
    let mut net = SimNet::new(13);
    let node = |w: f64| {
        Config::builder()
            .weight(w)
            .hello_interval(secs(1.0))
            .build()
            .unwrap()
    };
    let a = net.add_node(node(0.9));
    let b = net.add_node(node(0.5));
    net.run_for(secs(10.0));
    assert_eq!(net.node(b).protocol.config().missed_hellos(), 5);
    net.crash(a);
    net.run_for(secs(10.0));
    let (_, silent) = timed_out(&net, b).expect("a removed");
    assert!(silent >= secs(6.5) && silent <= secs(6.501), "{silent:?}");
}

#[test]
fn explicit_missed_hellos_with_a_timeout_that_holds_them_is_both() {
    // 2 lost hellos of 1 s need 3.5 s; the node timeout of 4 s is exact for
    // a peer at our interval.
    let node = |w: f64| {
        explicit(w)
            .node_timeout(secs(4.0))
            .master_timeout(secs(4.0))
            .missed_hellos(2)
            .build()
            .unwrap()
    };
    let mut net = SimNet::new(14);
    let a = net.add_node(node(0.9));
    let b = net.add_node(node(0.5));
    net.run_for(secs(10.0));
    net.crash(a);
    net.run_for(secs(10.0));
    let (_, silent) = timed_out(&net, b).expect("a removed");
    assert!(silent >= secs(4.0) && silent <= secs(4.001), "{silent:?}");
}

#[test]
fn explicit_timings_that_contradict_each_other_are_refused() {
    // The default missed_hellos (5) no longer applies to an explicit node
    // timeout; set explicitly, it must fit: 1 s × (5 + 1.5) = 6.5 s > 2 s.
    let err = explicit(0.5).missed_hellos(5).build().unwrap_err();
    assert!(matches!(
        err,
        shoal::ConfigError::TimeoutBelowMissedHellos {
            field: "node_timeout",
            missed_hellos: 5,
            ..
        }
    ));
    let message = err.to_string();
    for needle in [
        "node_timeout (2s)",
        "missed_hellos (5)",
        "hello_interval (1s)",
        "6.5s",
    ] {
        assert!(message.contains(needle), "{message}");
    }
    // Without missed_hellos a timeout must still outlast one interval and
    // half of the next (1.5 s), or peers drop between two hellos.
    let err = Config::builder()
        .hello_interval(secs(1.0))
        .node_timeout(secs(1.0))
        .master_timeout(secs(1.0))
        .check_interval(secs(1.0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "node_timeout");
}
