//! ServiceDiscovery through the real driver on loopback (127.255.255.255).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use shoal::{Config, ConfigBuilder, Discovery, Event, EventStream, ServiceDiscovery, ServiceEvent};
use tokio::time::timeout;

fn loopback(port: u16) -> ConfigBuilder {
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
}

async fn provider(port: u16, name: &str, extra: serde_json::Value) -> Discovery {
    let mut info = json!({"name": name});
    if let (Some(info), Some(extra)) = (info.as_object_mut(), extra.as_object()) {
        info.extend(extra.clone());
    }
    Discovery::start(loopback(port).advertise(info).build().unwrap())
        .await
        .unwrap()
}

async fn next_matching(
    events: &mut EventStream<ServiceEvent>,
    pred: impl Fn(&ServiceEvent) -> bool,
) -> ServiceEvent {
    timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .expect("event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_needs_and_hooks_then_tracks_loss_and_return() {
    let port = 47_401;
    let calls = Arc::new(Mutex::new(Vec::<String>::new()));
    let (c1, c2) = (calls.clone(), calls.clone());
    let web = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .advertise(json!({"name": "web"}))
        .need("queue")
        .setup("kv", move |kv| {
            let calls = c1.clone();
            async move {
                calls
                    .lock()
                    .unwrap()
                    .push(format!("first {}", kv.info()["port"]));
                Ok::<(), String>(())
            }
        })
        .setup("kv", move |kv| {
            let calls = c2.clone();
            async move {
                calls
                    .lock()
                    .unwrap()
                    .push(format!("second {}", kv.info()["port"]));
                Ok::<(), String>(())
            }
        })
        .start()
        .await
        .unwrap();
    let mut events = web.events();
    assert!(!web.is_ready());

    let kv = provider(port, "kv", json!({"port": 7000})).await;
    next_matching(
        &mut events,
        |e| matches!(e, ServiceEvent::Service(i) if i.name == "kv"),
    )
    .await;
    assert_eq!(*calls.lock().unwrap(), vec!["first 7000", "second 7000"]);
    assert!(!web.is_ready(), "queue is still missing");
    // ready() has not resolved yet either.
    assert!(timeout(Duration::from_millis(300), web.ready())
        .await
        .is_err());

    let queue = provider(port, "queue", json!({})).await;
    let services = timeout(Duration::from_secs(10), web.ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(services["kv"][0].info()["port"], 7000);
    assert_eq!(services["queue"].len(), 1);
    let ready = next_matching(&mut events, |e| matches!(e, ServiceEvent::Ready(_))).await;
    let ServiceEvent::Ready(map) = ready else {
        unreachable!()
    };
    assert_eq!(map.keys().collect::<Vec<_>>(), vec!["kv", "queue"]);

    // Losing the only kv: NotReady("kv"); it comes back: Ready again.
    kv.shutdown().await;
    let e = next_matching(&mut events, |e| matches!(e, ServiceEvent::NotReady(_))).await;
    assert_eq!(e, ServiceEvent::NotReady("kv".into()));
    assert!(!web.is_ready());
    let kv = provider(port, "kv", json!({"port": 7001})).await;
    next_matching(&mut events, |e| matches!(e, ServiceEvent::Ready(_))).await;
    assert_eq!(web.services()["kv"][0].info()["port"], 7001);
    assert_eq!(
        calls.lock().unwrap().len(),
        4,
        "hooks ran again for the new instance"
    );

    // ready() resolves at once when ready.
    timeout(Duration::from_millis(100), web.ready())
        .await
        .unwrap()
        .unwrap();
    for node in [kv, queue] {
        node.shutdown().await;
    }
    web.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_hanging_hooks() {
    let port = 47_402;
    let web = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .setup("kv", |kv| async move {
            if kv.info()["broken"] == true {
                Err("kv reports broken".to_string())
            } else {
                Ok(())
            }
        })
        .setup("slow", |_| async {
            // Hangs: the timeout fails it, and nothing else waits for it.
            std::future::pending::<()>().await;
            Ok::<(), String>(())
        })
        .setup_timeout(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let mut events = web.events();
    let slow = provider(port, "slow", json!({})).await;
    let broken = provider(port, "kv", json!({"broken": true})).await;
    let failed = next_matching(
        &mut events,
        |e| matches!(e, ServiceEvent::SetupFailed { instance, .. } if instance.name == "kv"),
    )
    .await;
    let ServiceEvent::SetupFailed { instance, error } = failed else {
        unreachable!()
    };
    assert_eq!(instance.id(), &broken.id());
    assert_eq!(error, "kv reports broken");
    // A good kv activates while slow's hook still hangs.
    let good = provider(port, "kv", json!({})).await;
    let e = next_matching(&mut events, |e| matches!(e, ServiceEvent::Service(_))).await;
    let ServiceEvent::Service(instance) = e else {
        unreachable!()
    };
    assert_eq!(instance.id(), &good.id());
    let e = next_matching(
        &mut events,
        |e| matches!(e, ServiceEvent::SetupFailed { instance, .. } if instance.name == "slow"),
    )
    .await;
    let ServiceEvent::SetupFailed { error, .. } = e else {
        unreachable!()
    };
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(web.services()["kv"].len(), 1);
    assert!(!web.is_ready(), "slow is a need and never set up");
    for node in [slow, broken, good] {
        node.shutdown().await;
    }
    web.shutdown().await;
}

#[tokio::test]
async fn advertising_needs_a_name() {
    let port = 47_403;
    let err = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .advertise(json!({"port": 1}))
        .start()
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, shoal::Error::Advertise(_)), "{err}");
    let sd = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .start()
        .await
        .unwrap();
    assert!(
        sd.ready().await.unwrap().is_empty(),
        "no needs: ready at once"
    );
    assert!(sd.advertise(&json!({"name": 5})).is_err());
    assert!(sd.advertise(&json!("web")).is_err());
    sd.advertise(&json!({"name": "web", "ready": true}))
        .unwrap();
    assert_eq!(sd.discovery().me().info.unwrap()["ready"], true);
    sd.shutdown().await;
}

/// A node that forgets a silent peer only after 30 s: within a test, a
/// peer it removes has said goodbye.
async fn patient_watcher(port: u16) -> (Discovery, EventStream) {
    let config = loopback(port)
        .node_timeout(Duration::from_secs(30))
        .master_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let watcher = Discovery::start(config).await.unwrap();
    let events = watcher.events();
    (watcher, events)
}

async fn wait_for_node(events: &mut EventStream, pred: impl Fn(&Event) -> bool) {
    timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return;
            }
        }
        panic!("stream ended");
    })
    .await
    .expect("event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_from_one_clone_stops_the_service_layer_and_node_for_all() {
    let port = 47_404;
    let (watcher, mut seen) = patient_watcher(port).await;
    let sd = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .need("kv")
        .start()
        .await
        .unwrap();
    let id = sd.discovery().id();
    wait_for_node(&mut seen, |e| matches!(e, Event::Added(p) if p.id == id)).await;
    let other = sd.clone();
    let mut events = other.events();
    // Another clone waits for a kv that never comes.
    let waiting = {
        let other = other.clone();
        tokio::spawn(async move { other.ready().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    timeout(Duration::from_secs(5), sd.shutdown())
        .await
        .expect("shutdown returns");

    let waited = timeout(Duration::from_secs(5), waiting)
        .await
        .expect("ready() stops waiting")
        .unwrap();
    assert!(matches!(waited, Err(shoal::Error::Closed)), "{waited:?}");
    assert!(matches!(other.ready().await, Err(shoal::Error::Closed)));
    assert!(matches!(
        other.advertise(&json!({"name": "web"})),
        Err(shoal::Error::Closed)
    ));
    assert!(matches!(
        other.discovery().send("jobs", &1),
        Err(shoal::Error::Closed)
    ));
    timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
        assert!(other.events().recv().await.is_none());
    })
    .await
    .expect("streams end");
    // Calls that cannot fail still answer.
    other.need(["queue"]);
    assert!(!other.is_ready());
    let _ = (other.services(), other.stats());
    sd.shutdown().await;
    other.shutdown().await;
    wait_for_node(
        &mut seen,
        |e| matches!(e, Event::Removed(p, _) if p.id == id),
    )
    .await;
    watcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_clone_stops_the_service_layer_then_the_node() {
    let port = 47_405;
    let (watcher, mut seen) = patient_watcher(port).await;
    // The usual case: nobody else holds the node.
    let plain = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .start()
        .await
        .unwrap();
    let id = plain.discovery().id();
    wait_for_node(&mut seen, |e| matches!(e, Event::Added(p) if p.id == id)).await;
    drop(plain);
    wait_for_node(
        &mut seen,
        |e| matches!(e, Event::Removed(p, _) if p.id == id),
    )
    .await;

    let sd = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .start()
        .await
        .unwrap();
    let mut events = sd.events();
    let node = sd.discovery().clone();
    let id = node.id();
    wait_for_node(&mut seen, |e| matches!(e, Event::Added(p) if p.id == id)).await;
    let clone = sd.clone();
    drop(sd);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(clone.ready().await.is_ok(), "one clone left: still running");
    drop(clone);
    // The service layer stops; the node clone we kept holds the node up.
    timeout(Duration::from_secs(5), async {
        while events.recv().await.is_some() {}
    })
    .await
    .expect("service events end");
    node.send("jobs", &1).expect("the node still runs");
    assert!(watcher.nodes().iter().any(|p| p.id == id));
    // Its last handle gone, the node says goodbye.
    drop(node);
    wait_for_node(
        &mut seen,
        |e| matches!(e, Event::Removed(p, _) if p.id == id),
    )
    .await;
    watcher.shutdown().await;
}

/// A registration meets a need: node A registers kv on behalf of an app
/// (say, a legacy one); B's need for kv is met by it, B's setup hook
/// connects where the registration says, and a deregistration is NotReady.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_on_another_node_meets_a_need() {
    let port = 47_406;
    let seen = Arc::new(Mutex::new(Vec::<(String, Option<u16>, bool)>::new()));
    let hook_seen = seen.clone();
    let web = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .setup("kv", move |kv| {
            let seen = hook_seen.clone();
            async move {
                let registered = kv.registration().is_some();
                seen.lock()
                    .unwrap()
                    .push((kv.host().to_owned(), kv.port(), registered));
                Ok::<(), String>(())
            }
        })
        .start()
        .await
        .unwrap();
    let mut events = web.events();
    let a = Discovery::start(loopback(port).build().unwrap())
        .await
        .unwrap();
    // Registered once web knows A: on one host every node shares the UDP
    // port, so a pull (unicast) for a delta web missed by not knowing A
    // yet reaches whichever socket the kernel picks; the delta is
    // broadcast and reaches web.
    let a_id = a.id();
    timeout(Duration::from_secs(10), async {
        while !web.discovery().nodes().iter().any(|p| p.id == a_id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("web sees A");
    let kv = shoal::Registration::builder("kv", "1.0.0", "127.0.0.1", 7000)
        .build()
        .unwrap();
    a.registry()
        .register(kv.clone(), Duration::from_secs(30))
        .await
        .unwrap();

    let services = timeout(Duration::from_secs(10), web.ready())
        .await
        .expect("ready in time")
        .unwrap();
    let instance = &services["kv"][0];
    assert_eq!(instance.registration().map(|r| r.id()), Some(kv.id()));
    assert_eq!(instance.id(), &a.id(), "the owner is the instance's node");
    assert_eq!(instance.peer.as_ref().map(|p| &p.id), Some(&a.id()));
    assert_eq!(
        *seen.lock().unwrap(),
        vec![("127.0.0.1".to_owned(), Some(7000), true)]
    );

    a.registry().deregister(kv.id()).await.unwrap();
    let gone = next_matching(&mut events, |e| {
        matches!(e, ServiceEvent::InstanceGone(_) | ServiceEvent::NotReady(_))
    })
    .await;
    assert!(
        matches!(&gone, ServiceEvent::InstanceGone(i) if i.port() == Some(7000)),
        "{gone}"
    );
    let e = next_matching(&mut events, |e| matches!(e, ServiceEvent::NotReady(_))).await;
    assert_eq!(e, ServiceEvent::NotReady("kv".into()));
    assert!(!web.is_ready());
    a.shutdown().await;
    web.shutdown().await;
}

/// A registration this very process owns meets its own need too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_of_this_process_meets_its_need() {
    let port = 47_407;
    let web = ServiceDiscovery::builder(loopback(port).build().unwrap())
        .need("kv")
        .start()
        .await
        .unwrap();
    let kv = shoal::Registration::builder("kv", "1.0.0", "127.0.0.1", 7000)
        .build()
        .unwrap();
    let registry = web.discovery().registry();
    registry
        .register(kv.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    let services = timeout(Duration::from_secs(10), web.ready())
        .await
        .expect("ready in time")
        .unwrap();
    let instance = &services["kv"][0];
    assert_eq!(instance.id(), &web.discovery().id());
    assert!(instance.peer.is_none(), "we are not in our own peer table");
    assert_eq!(
        (instance.host(), instance.port()),
        ("127.0.0.1", Some(7000))
    );
    web.shutdown().await;
}
