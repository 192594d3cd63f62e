//! The service-readiness state machine driven by a simulated cluster: no
//! sockets, no sleeps. Hook outcomes are decided by each test.

use std::time::Duration;

use serde_json::json;
use shoal::service::tracker::{Action, ServiceTracker};
use shoal::sim::SimNet;
use shoal::{Config, ServiceEvent};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn service(name: &str, weight: f64) -> Config {
    Config::builder()
        .weight(weight)
        .advertise(json!({"name": name}))
        .build()
        .unwrap()
}

/// A consumer node (index 0) whose node events feed a tracker.
struct Harness {
    net: SimNet,
    tracker: ServiceTracker,
    fed: usize,
    /// Hook runs started and not yet answered.
    pending: Vec<Action>,
    events: Vec<ServiceEvent>,
}

impl Harness {
    fn new(needs: &[&str]) -> Self {
        let mut net = SimNet::new(3);
        net.add_node(Config::builder().weight(0.01).build().unwrap());
        Harness {
            net,
            tracker: ServiceTracker::new(needs.iter().map(|s| s.to_string())),
            fed: 0,
            pending: Vec::new(),
            events: Vec::new(),
        }
    }

    fn add(&mut self, name: &str) -> usize {
        let weight = 0.1 + self.net.nodes().len() as f64 / 100.0;
        self.net.add_node(service(name, weight))
    }

    /// Runs the network, feeding the consumer's events to the tracker.
    fn run(&mut self, d: f64) {
        self.net.run_for(secs(d));
        self.pump();
    }

    fn pump(&mut self) {
        let events: Vec<_> = self.net.node(0).events[self.fed..]
            .iter()
            .map(|(_, e)| e.clone())
            .collect();
        self.fed += events.len();
        for e in &events {
            self.tracker.handle_event(e);
        }
        self.collect();
    }

    fn collect(&mut self) {
        while let Some(a) = self.tracker.poll_action() {
            self.pending.push(a);
        }
        while let Some(e) = self.tracker.poll_event() {
            self.events.push(e);
        }
    }

    /// Answers every pending hook run for `name` with `result`; returns the hook indices answered.
    fn answer(&mut self, name: &str, result: Result<(), &str>) -> Vec<usize> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|Action::RunHook { instance, .. }| instance.name == name);
        self.pending = rest;
        let mut indices = Vec::new();
        for Action::RunHook { index, ticket, .. } in mine {
            indices.push(index);
            self.tracker
                .hook_finished(ticket, result.map_err(|e| e.to_string()));
        }
        self.collect();
        indices
    }

    fn take_events_now(&mut self) -> Vec<ServiceEvent> {
        self.collect();
        self.take_events()
    }

    fn take_events(&mut self) -> Vec<ServiceEvent> {
        std::mem::take(&mut self.events)
    }
}

fn names(events: &[ServiceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ServiceEvent::Service(i) => format!("service {}", i.name),
            ServiceEvent::InstanceGone(i) => format!("gone {}", i.name),
            ServiceEvent::Ready(m) => format!("ready {:?}", m.keys().collect::<Vec<_>>()),
            ServiceEvent::NotReady(n) => format!("notready {n}"),
            ServiceEvent::SetupFailed { instance, .. } => format!("failed {}", instance.name),
            other => format!("{other:?}"),
        })
        // Election events are forwarded too; these tests look at services.
        .filter(|s| {
            !["Master", "Promotion", "Demotion"]
                .iter()
                .any(|p| s.starts_with(p))
        })
        .collect()
}

#[test]
fn ready_only_when_every_need_is_met_then_not_ready_and_ready_again() {
    let mut h = Harness::new(&["kv", "queue"]);
    assert!(!h.tracker.is_ready());
    let kv = h.add("kv");
    h.run(0.5);
    assert_eq!(names(&h.take_events()), vec!["service kv"]);
    assert!(!h.tracker.is_ready());
    h.add("queue");
    h.run(0.5);
    assert_eq!(
        names(&h.take_events()),
        vec!["service queue", r#"ready ["kv", "queue"]"#]
    );
    assert!(h.tracker.is_ready());
    // An unneeded service is tracked but changes nothing.
    h.add("metrics");
    h.run(0.5);
    assert_eq!(names(&h.take_events()), vec!["service metrics"]);

    h.net.crash(kv);
    h.run(5.0);
    // The instance goes first, then the service it was the last of.
    assert_eq!(names(&h.take_events()), vec!["gone kv", "notready kv"]);
    assert!(!h.tracker.is_ready());
    assert!(!h.tracker.services().contains_key("kv"));

    h.net.restart(kv, service("kv", 0.5));
    h.run(0.5);
    assert_eq!(
        names(&h.take_events()),
        vec!["service kv", r#"ready ["kv", "metrics", "queue"]"#]
    );
}

#[test]
fn hooks_run_in_order_and_activate_after_the_last() {
    let mut h = Harness::new(&[]);
    assert!(h.tracker.is_ready(), "nothing needed yet");
    assert_eq!(h.tracker.add_hook("kv"), 0);
    assert_eq!(names(&h.take_events_now()), vec!["notready kv"]);
    assert_eq!(h.tracker.add_hook("kv"), 1);
    assert!(!h.tracker.is_ready(), "a hooked service is a need");
    h.add("kv");
    h.run(0.5);
    assert!(names(&h.take_events()).is_empty());
    assert_eq!(h.answer("kv", Ok(())), vec![0]);
    assert!(
        names(&h.take_events()).is_empty(),
        "not active after the first hook"
    );
    assert_eq!(h.answer("kv", Ok(())), vec![1]);
    assert_eq!(
        names(&h.take_events()),
        vec!["service kv", r#"ready ["kv"]"#]
    );
    assert!(h.pending.is_empty());
}

#[test]
fn a_failed_hook_reports_and_is_retried_when_the_instance_returns() {
    let mut h = Harness::new(&["kv"]);
    h.tracker.add_hook("kv");
    let kv = h.add("kv");
    h.run(0.5);
    h.answer("kv", Err("connection refused"));
    let events = h.take_events();
    match &events[..] {
        [ServiceEvent::SetupFailed { instance, error }] => {
            assert_eq!(instance.name, "kv");
            assert_eq!(instance.id(), h.net.node(kv).protocol.id());
            assert_eq!(error, "connection refused");
        }
        other => panic!("{other:?}"),
    }
    assert!(!h.tracker.is_ready());
    // Still there, still failed: no retry while it stays.
    h.run(5.0);
    assert!(h.pending.is_empty());
    // A partition removes it; when it is heard again, its hooks run again.
    h.net.set_group(kv, 1);
    h.run(5.0);
    h.net.heal();
    h.run(1.5);
    assert_eq!(h.pending.len(), 1);
    h.answer("kv", Ok(()));
    assert_eq!(
        names(&h.take_events()),
        vec!["service kv", r#"ready ["kv"]"#]
    );
}

#[test]
fn two_instances_of_one_service_are_both_activated() {
    let mut h = Harness::new(&["kv"]);
    h.tracker.add_hook("kv");
    let a = h.add("kv");
    let b = h.add("kv");
    h.run(0.5);
    assert_eq!(h.answer("kv", Ok(())), vec![0, 0]);
    let services = h.tracker.services();
    let mut ids: Vec<_> = services["kv"].iter().map(|i| i.id().clone()).collect();
    ids.sort();
    let mut expected = vec![
        h.net.node(a).protocol.id().clone(),
        h.net.node(b).protocol.id().clone(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(
        names(&h.take_events()),
        vec!["service kv", r#"ready ["kv"]"#, "service kv"]
    );
    // Losing one of two is not a loss of the service, but it is told.
    h.net.crash(a);
    h.run(5.0);
    assert_eq!(names(&h.take_events()), vec!["gone kv"]);
    assert!(h.tracker.is_ready());
}

#[test]
fn a_renamed_or_unnamed_node_is_moved_or_dropped() {
    let mut h = Harness::new(&["kv", "queue"]);
    let x = h.add("kv");
    h.add("queue");
    h.run(0.5);
    assert!(h.tracker.is_ready());
    h.take_events();
    // x now says it is a queue: kv loses it, queue gains it.
    let now = h.net.now();
    h.net
        .protocol_mut(x)
        .advertise(now, json!({"name": "queue"}))
        .unwrap();
    h.net.poll(x);
    h.run(0.1);
    assert_eq!(
        names(&h.take_events()),
        vec!["gone kv", "notready kv", "service queue"]
    );
    assert_eq!(h.tracker.services()["queue"].len(), 2);
    assert!(!h.tracker.services().contains_key("kv"));
    // No name at all: it is dropped from queue.
    let now = h.net.now();
    h.net
        .protocol_mut(x)
        .advertise(now, json!({"role": "nothing"}))
        .unwrap();
    h.net.poll(x);
    h.run(0.1);
    assert_eq!(h.tracker.services()["queue"].len(), 1);
    // Other changes keep the instance and refresh its info.
    let now = h.net.now();
    h.net
        .protocol_mut(x)
        .advertise(now, json!({"name": "kv", "port": 1}))
        .unwrap();
    h.net.poll(x);
    h.run(0.1);
    let now = h.net.now();
    h.net
        .protocol_mut(x)
        .advertise(now, json!({"name": "kv", "port": 2}))
        .unwrap();
    h.net.poll(x);
    h.run(0.1);
    // Dropped from queue (told), then kv again; a changed port is no event.
    assert_eq!(
        names(&h.take_events()),
        vec!["gone queue", "service kv", r#"ready ["kv", "queue"]"#]
    );
    assert_eq!(h.tracker.services()["kv"][0].info()["port"], 2);
}

#[test]
fn a_hanging_hook_blocks_only_its_own_instance() {
    let mut h = Harness::new(&["kv", "queue"]);
    h.tracker.add_hook("kv");
    h.tracker.add_hook("queue");
    h.add("kv");
    h.add("queue");
    h.run(0.5);
    // kv's hook never answers; queue's does.
    h.answer("queue", Ok(()));
    assert_eq!(names(&h.take_events()), vec!["service queue"]);
    h.run(60.0);
    assert_eq!(h.pending.len(), 1, "kv still waiting, nothing else stuck");
}

#[test]
fn a_result_for_a_removed_instance_is_ignored() {
    let mut h = Harness::new(&["kv"]);
    h.tracker.add_hook("kv");
    let kv = h.add("kv");
    h.run(0.5);
    h.net.crash(kv);
    h.run(5.0);
    h.answer("kv", Ok(()));
    assert!(names(&h.take_events()).is_empty());
    assert!(h.tracker.services().is_empty());
}

#[test]
fn a_hook_added_later_runs_for_active_instances_and_failure_deactivates() {
    let mut h = Harness::new(&["kv"]);
    h.add("kv");
    h.run(0.5);
    assert!(h.tracker.is_ready());
    h.take_events();
    h.tracker.add_hook("kv");
    h.collect();
    assert_eq!(h.pending.len(), 1);
    assert!(h.tracker.is_ready(), "stays active while the new hook runs");
    h.answer("kv", Err("schema mismatch"));
    assert_eq!(names(&h.take_events()), vec!["failed kv", "notready kv"]);
    assert!(!h.tracker.is_ready());
}

#[test]
fn lost_events_are_recovered_from_the_peer_table() {
    let mut h = Harness::new(&["kv"]);
    h.add("kv");
    h.run(0.5);
    // Pretend the consumer lost every event: reconcile from its table.
    let mut fresh = ServiceTracker::new(["kv".to_string()]);
    let peers: Vec<_> = h.net.node(0).protocol.peers().cloned().collect();
    fresh.reconcile(&peers);
    assert!(fresh.is_ready());
    fresh.reconcile(&[]);
    assert!(!fresh.is_ready());
}
