//! The Registry handle through the real driver on loopback
//! (127.255.255.255): two nodes in one process, each test on its own port
//! (47660-47679). Every wait has a timeout, so a failure never hangs.

use std::time::Duration;

use shoal::registry::{Filter, OfflineReason, RegistryError, RegistryLimits, Watch};
use shoal::{Config, ConfigBuilder, Discovery, Error, Registration, RegistryEvent};
use tokio::time::{sleep, timeout, Instant};

/// Bound for any one expected step; generous for a loaded machine.
const STEP: Duration = Duration::from_secs(10);

fn loopback(port: u16) -> ConfigBuilder {
    Config::builder()
        .port(port)
        .broadcast("127.255.255.255".parse().unwrap())
        .hello_interval(Duration::from_millis(100))
        .check_interval(Duration::from_millis(300))
        // Long: a node removed within a test said goodbye.
        .node_timeout(Duration::from_secs(30))
        .master_timeout(Duration::from_secs(30))
}

async fn start(port: u16) -> Discovery {
    Discovery::start(loopback(port).build().unwrap())
        .await
        .unwrap()
}

/// Two nodes that see each other.
async fn pair(port: u16) -> (Discovery, Discovery) {
    let (a, b) = (start(port).await, start(port).await);
    timeout(STEP, async {
        while !b.nodes().iter().any(|p| p.id == a.id()) || !a.nodes().iter().any(|p| p.id == b.id())
        {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the nodes find each other");
    (a, b)
}

fn reg(name: &str, version: &str, port: u16) -> Registration {
    Registration::builder(name, version, "127.0.0.1", port)
        .build()
        .unwrap()
}

/// The next event of `watch`, within [`STEP`].
async fn next(watch: &mut Watch) -> RegistryEvent {
    timeout(STEP, watch.recv())
        .await
        .expect("an event in time")
        .expect("the watch goes on")
}

async fn shutdown(nodes: impl IntoIterator<Item = Discovery>) {
    for node in nodes {
        timeout(STEP, node.shutdown())
            .await
            .expect("shutdown returns");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_a_watch_and_query_on_b() {
    let (a, b) = pair(47_660).await;
    let mut watch = b.registry().watch(Filter::All).await.unwrap();
    let kv = reg("kv", "1.0.0", 7000);
    a.registry()
        .register(kv.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await, RegistryEvent::Online(r) if r.id() == kv.id()));

    let by_name = b.registry().query(&Filter::name("kv")).await.unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!((by_name[0].host(), by_name[0].port()), ("127.0.0.1", 7000));
    assert_eq!(by_name[0].meta(), kv.meta());
    let by_version = b
        .registry()
        .query(&Filter::version("kv", "1.0.0"))
        .await
        .unwrap();
    assert_eq!(by_version.len(), 1);
    assert!(b
        .registry()
        .query(&Filter::version("kv", "2.0.0"))
        .await
        .unwrap()
        .is_empty());
    assert!(b
        .registry()
        .query(&Filter::name("db"))
        .await
        .unwrap()
        .is_empty());
    shutdown([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_keeps_a_registration_past_its_ttl() {
    let (a, b) = pair(47_661).await;
    let mut watch = b.registry().watch(Filter::All).await.unwrap();
    let kv = reg("kv", "1.0.0", 7000);
    let ttl = Duration::from_millis(600);
    a.registry().register(kv.clone(), ttl).await.unwrap();
    assert!(matches!(next(&mut watch).await, RegistryEvent::Online(_)));
    // Four ttls, refreshed every quarter of one.
    let end = Instant::now() + ttl * 4;
    while Instant::now() < end {
        sleep(ttl / 4).await;
        a.registry().refresh(kv.id()).await.unwrap();
    }
    assert_eq!(b.registry().query(&Filter::All).await.unwrap().len(), 1);
    // Nothing went offline meanwhile.
    let more = timeout(Duration::from_millis(50), watch.recv()).await;
    assert!(more.is_err(), "unexpected {more:?}");
    shutdown([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrefreshed_registration_expires_everywhere() {
    let (a, b) = pair(47_662).await;
    let mut watch = b.registry().watch(Filter::All).await.unwrap();
    let kv = reg("kv", "1.0.0", 7000);
    a.registry()
        .register(kv.clone(), Duration::from_millis(500))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await, RegistryEvent::Online(_)));
    let started = Instant::now();
    match next(&mut watch).await {
        RegistryEvent::Offline {
            registration,
            reason,
        } => {
            assert_eq!(registration.id(), kv.id());
            assert_eq!(reason, OfflineReason::Expired);
        }
        other => panic!("{other}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(b.registry().query(&Filter::All).await.unwrap().is_empty());
    assert!(a.registry().query(&Filter::All).await.unwrap().is_empty());
    shutdown([a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_goodbye_takes_its_registrations_at_once() {
    let (a, b) = pair(47_663).await;
    let mut watch = b.registry().watch(Filter::All).await.unwrap();
    a.registry()
        .register(reg("kv", "1.0.0", 7000), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(next(&mut watch).await, RegistryEvent::Online(_)));
    a.shutdown().await;
    // B forgets a silent node only after 30 s: this is the goodbye.
    let event = timeout(Duration::from_secs(5), watch.recv())
        .await
        .expect("offline at once")
        .unwrap();
    assert!(
        matches!(
            event,
            RegistryEvent::Offline {
                reason: OfflineReason::OwnerGone,
                ..
            }
        ),
        "{event}"
    );
    shutdown([b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_starts_with_what_is_live_and_filters() {
    let (a, b) = pair(47_664).await;
    let kv = reg("kv", "1.0.0", 7000);
    a.registry()
        .register(kv.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    timeout(STEP, async {
        while b.registry().query(&Filter::All).await.unwrap().is_empty() {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("B holds kv");

    // Started after the registration: Online first, with no query needed.
    let mut all = b.registry().watch(Filter::All).await.unwrap();
    assert!(matches!(next(&mut all).await, RegistryEvent::Online(r) if r.id() == kv.id()));
    let mut kv2 = b
        .registry()
        .watch(Filter::version("kv", "2.0.0"))
        .await
        .unwrap();
    let mut db = b.registry().watch(Filter::name("db")).await.unwrap();

    // A Name watch does not see other names, nor a version watch other versions.
    a.registry()
        .register(reg("kv", "2.0.0", 7001), Duration::from_secs(30))
        .await
        .unwrap();
    a.registry()
        .register(reg("db", "1.0.0", 5432), Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(next(&mut kv2).await, RegistryEvent::Online(r) if r.version() == "2.0.0"));
    assert!(matches!(next(&mut db).await, RegistryEvent::Online(r) if r.name() == "db"));
    for _ in 0..2 {
        assert!(matches!(next(&mut all).await, RegistryEvent::Online(_)));
    }
    a.registry().deregister(kv.id()).await.unwrap();
    assert!(matches!(
        next(&mut all).await,
        RegistryEvent::Offline {
            reason: OfflineReason::Deregistered,
            ..
        }
    ));
    // By now the other watches would have had theirs.
    for w in [&mut kv2, &mut db] {
        let more = timeout(Duration::from_millis(200), w.recv()).await;
        assert!(more.is_err(), "unexpected {more:?}");
    }
    shutdown([a, b]).await;
}

/// A watch started right after a register gets its Online once: from
/// the snapshot, not again from the event the driver had not yet handed
/// out (a bug this test found in `Discovery::registry_watch`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_right_after_a_register_sees_it_once() {
    let node = start(47_666).await;
    let registry = node.registry();
    for round in 0..20 {
        let kv = reg("kv", "1", 1 + round);
        registry
            .register(kv.clone(), Duration::from_secs(30))
            .await
            .unwrap();
        let mut watch = registry.watch(Filter::version("kv", "1")).await.unwrap();
        for _ in 0..=round {
            assert!(matches!(next(&mut watch).await, RegistryEvent::Online(_)));
        }
        let more = timeout(Duration::from_millis(20), watch.recv()).await;
        assert!(more.is_err(), "round {round}: {more:?}");
    }
    shutdown([node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_errors_are_clear() {
    let port = 47_667;
    let limits = RegistryLimits {
        per_owner: 2,
        ..RegistryLimits::default()
    };
    let node = Discovery::start(loopback(port).registry_limits(limits).build().unwrap())
        .await
        .unwrap();
    let registry = node.registry();

    let invalid: Error = Registration::builder("k/v", "1", "127.0.0.1", 1)
        .build()
        .unwrap_err()
        .into();
    assert!(
        matches!(invalid, Error::Registry(RegistryError::Invalid(_))),
        "{invalid}"
    );

    let ttl = Duration::from_secs(30);
    registry.register(reg("kv", "1", 1), ttl).await.unwrap();
    registry.register(reg("kv", "1", 2), ttl).await.unwrap();
    // Registering a held id again is a refresh, not a third.
    registry.register(reg("kv", "1", 2), ttl).await.unwrap();
    let err = registry.register(reg("kv", "1", 3), ttl).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Registry(RegistryError::TooMany {
                limit: "per_owner",
                max: 2
            })
        ),
        "{err}"
    );
    let err = registry
        .register(reg("kv", "1", 3), Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Registry(RegistryError::Ttl)), "{err}");
    let err = registry.refresh("/kv/1/127.0.0.1/9").await.unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::NotRegistered(_))),
        "{err}"
    );
    let err = registry.deregister("/kv/1/127.0.0.1/9").await.unwrap_err();
    assert!(
        matches!(err, Error::Registry(RegistryError::NotRegistered(_))),
        "{err}"
    );

    let mut watch = registry.watch(Filter::All).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(next(&mut watch).await, RegistryEvent::Online(_)));
    }
    registry.shutdown().await;
    // The watch ends at shutdown...
    let end = timeout(STEP, watch.recv()).await.expect("the watch ends");
    assert!(end.is_none(), "{end:?}");
    // ...and every command is refused.
    assert!(matches!(
        registry.register(reg("kv", "1", 4), ttl).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        registry.refresh("/kv/1/127.0.0.1/1").await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        registry.deregister("/kv/1/127.0.0.1/1").await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        registry.query(&Filter::All).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        registry.watch(Filter::All).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        node.registry().query(&Filter::All).await,
        Err(Error::Closed)
    ));
}
