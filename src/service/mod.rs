//! ServiceDiscovery: wait for the services a process depends on.
//!
//! A process says which services it needs ([`ServiceBuilder::need`]) and how
//! to set each one up ([`ServiceBuilder::setup`]); it is told when every
//! need has at least one live, set-up instance ([`ServiceEvent::Ready`],
//! [`ServiceDiscovery::ready`]) and when one is lost ([`ServiceEvent::NotReady`]).
//! A service is whatever a node advertises with a string `name`:
//! `{"name": "kv", "port": 7000}`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shoal::Error> {
//! use shoal::{Config, ServiceDiscovery, ServiceEvent};
//!
//! let web = ServiceDiscovery::builder(Config::builder().build()?)
//!     .advertise(serde_json::json!({"name": "web", "ready": false}))
//!     .need("queue")
//!     .setup("kv", |kv| async move {
//!         let port = kv.info()["port"].as_u64().ok_or("no port")?;
//!         println!("connecting to kv at {}:{port}", kv.addr().ip());
//!         Ok::<(), &str>(())
//!     })
//!     .start()
//!     .await?;
//! let services = web.ready().await;       // both kv (set up) and queue are live
//! println!("ready with {:?}", services.keys().collect::<Vec<_>>());
//! web.advertise(&serde_json::json!({"name": "web", "ready": true}))?;
//! let mut events = web.events();
//! while let Some(event) = events.recv().await {
//!     if let ServiceEvent::NotReady(name) = event {
//!         println!("lost every {name}: stop taking new work");
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod tracker;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::event::{Event, LocalState};
use crate::membership::{NodeId, Peer};
use crate::stream::{EventStream, Subscription};
use crate::{Config, Discovery, Error, Stats};

use tracker::{Action, ServiceTracker, Ticket};

/// One instance of a service: a node advertising `{"name": <name>, ...}`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ServiceInstance {
    /// The service name.
    pub name: String,
    /// The node, with everything it advertises in `peer.info`.
    pub peer: Peer,
}

impl ServiceInstance {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.peer.id
    }

    /// The node's address (the source of its hellos).
    pub fn addr(&self) -> SocketAddr {
        self.peer.addr
    }

    /// What the node advertises (an object with at least `name`).
    pub fn info(&self) -> &serde_json::Value {
        self.peer.info.as_ref().unwrap_or(&serde_json::Value::Null)
    }
}

/// Active instances by service name.
pub type Services = BTreeMap<String, Vec<ServiceInstance>>;

/// What the service layer tells its user.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServiceEvent {
    /// An instance passed all its setup hooks and is now active.
    Service(ServiceInstance),
    /// Every need has at least one active instance. Carries all active instances.
    Ready(Services),
    /// The last active instance of this needed service is gone.
    NotReady(String),
    /// A setup hook failed (or timed out); the instance is not active. It is
    /// set up again if it is removed and seen again.
    SetupFailed {
        /// The instance.
        instance: ServiceInstance,
        /// The hook's error, as text.
        error: String,
    },
    /// A node became master.
    Master(Peer),
    /// This node became master.
    Promotion(LocalState),
    /// This node stopped being master.
    Demotion(LocalState),
    /// This stream fell behind and lost this many events.
    Lagged(u64),
}

type HookFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
type Hook = Arc<dyn Fn(ServiceInstance) -> HookFuture + Send + Sync>;

fn boxed_hook<F, Fut, E>(hook: F) -> Hook
where
    F: Fn(ServiceInstance) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    Arc::new(move |instance| {
        let fut = hook(instance);
        Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
    })
}

fn check_info(info: &serde_json::Value) -> Result<(), Error> {
    match info.get("name") {
        Some(serde_json::Value::String(_)) => Ok(()),
        _ => Err(Error::Advertise(crate::AdvertiseError::NoServiceName)),
    }
}

/// Builds a [`ServiceDiscovery`]: register needs and hooks before the node
/// starts, so that no instance is seen before its hooks exist.
#[must_use]
pub struct ServiceBuilder {
    config: Config,
    needs: Vec<String>,
    hooks: Vec<(String, Hook)>,
    setup_timeout: Duration,
    info: Option<serde_json::Value>,
}

impl ServiceBuilder {
    /// This process needs at least one live instance of `name` to be ready.
    pub fn need(mut self, name: impl Into<String>) -> Self {
        self.needs.push(name.into());
        self
    }

    /// Runs `hook` for every discovered instance of `name` before it counts
    /// (also makes `name` a need). Several hooks for one service run in
    /// registration order; an instance is active once all succeeded.
    pub fn setup<F, Fut, E>(mut self, name: impl Into<String>, hook: F) -> Self
    where
        F: Fn(ServiceInstance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        self.hooks.push((name.into(), boxed_hook(hook)));
        self
    }

    /// A hook that has not finished after this long fails. Default 30 s.
    pub fn setup_timeout(mut self, timeout: Duration) -> Self {
        self.setup_timeout = timeout;
        self
    }

    /// What this process advertises from its first hello on: a JSON object
    /// with a string `name`. A process that only consumes services may skip it.
    pub fn advertise(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
        self
    }

    /// Starts the node and the service layer.
    pub async fn start(self) -> Result<ServiceDiscovery, Error> {
        let mut config = self.config;
        if let Some(info) = self.info {
            check_info(&info)?;
            config.info = Some(info);
        } else if let Some(info) = &config.info {
            check_info(info)?;
        }
        // Hooked services are needs too; naming them up front keeps the
        // tracker from announcing NotReady for each as its hook is added.
        let needs = self
            .needs
            .into_iter()
            .chain(self.hooks.iter().map(|(n, _)| n.clone()));
        let mut tracker = ServiceTracker::new(needs);
        let mut hooks: HashMap<String, Vec<Hook>> = HashMap::new();
        for (name, hook) in self.hooks {
            tracker.add_hook(&name);
            hooks.entry(name).or_default().push(hook);
        }
        let node = Discovery::start(config).await?;
        let node_events = node.events();
        let capacity = node.capacity();
        let (events, first) = broadcast::channel(capacity);
        let (ready_tx, ready_rx) = watch::channel(tracker.is_ready());
        let shared = Arc::new(Shared {
            tracker: Mutex::new(tracker),
            hooks: Mutex::new(hooks),
            events: Mutex::new(Some(events)),
            ready: ready_tx,
            wake: Notify::new(),
            lost: Arc::new(AtomicU64::new(0)),
            setup_timeout: self.setup_timeout,
        });
        let node = Arc::new(node);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), node.clone(), node_events, stopped));
        Ok(ServiceDiscovery {
            node: Some(node),
            shared,
            first_events: Mutex::new(Some(first)),
            ready: ready_rx,
            stop,
            task: Some(task),
        })
    }
}

struct Shared {
    tracker: Mutex<ServiceTracker>,
    hooks: Mutex<HashMap<String, Vec<Hook>>>,
    events: Mutex<Option<broadcast::Sender<ServiceEvent>>>,
    ready: watch::Sender<bool>,
    wake: Notify,
    lost: Arc<AtomicU64>,
    setup_timeout: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`Discovery`] node plus service readiness. See the [module docs](self).
pub struct ServiceDiscovery {
    /// Always `Some` until `shutdown` consumes the handle.
    node: Option<Arc<Discovery>>,
    shared: Arc<Shared>,
    first_events: Mutex<Option<broadcast::Receiver<ServiceEvent>>>,
    ready: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ServiceDiscovery {
    /// Starts building a service layer over a node with `config`.
    pub fn builder(config: Config) -> ServiceBuilder {
        ServiceBuilder {
            config,
            needs: Vec::new(),
            hooks: Vec::new(),
            setup_timeout: Duration::from_secs(30),
            info: None,
        }
    }

    /// Adds needed services at run time.
    pub fn need<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        {
            let mut tracker = lock(&self.shared.tracker);
            for name in names {
                tracker.need(&name.into());
            }
        }
        self.shared.wake.notify_one();
    }

    /// Adds a setup hook at run time; it also runs for instances already
    /// known (an active one stays active unless the hook fails).
    pub fn setup<F, Fut, E>(&self, name: &str, hook: F)
    where
        F: Fn(ServiceInstance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        // Hook first, then the tracker, so the action it queues finds it.
        lock(&self.shared.hooks)
            .entry(name.to_owned())
            .or_default()
            .push(boxed_hook(hook));
        lock(&self.shared.tracker).add_hook(name);
        self.shared.wake.notify_one();
    }

    /// Sets what this process advertises: a JSON object with a string `name`.
    pub fn advertise<T: Serialize + ?Sized>(&self, info: &T) -> Result<(), Error> {
        let value = serde_json::to_value(info).map_err(Error::Encode)?;
        check_info(&value)?;
        self.node().advertise(&value)
    }

    /// Resolves when every need has an active instance (at once if it
    /// already has), with the active instances.
    pub async fn ready(&self) -> Services {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
        self.services()
    }

    /// Whether every need has an active instance now.
    pub fn is_ready(&self) -> bool {
        lock(&self.shared.tracker).is_ready()
    }

    /// The active instances by service name.
    pub fn services(&self) -> Services {
        lock(&self.shared.tracker).services()
    }

    /// Service events. The first call gets every event since start; later
    /// calls get events from the moment of the call.
    pub fn events(&self) -> EventStream<ServiceEvent> {
        let first = lock(&self.first_events).take();
        let rx = first.unwrap_or_else(|| match &*lock(&self.shared.events) {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        });
        EventStream::new(rx, self.shared.lost.clone())
    }

    /// The underlying node, for everything else it does.
    pub fn discovery(&self) -> &Discovery {
        self.node()
    }

    fn node(&self) -> &Discovery {
        match &self.node {
            Some(node) => node,
            None => unreachable!("only shutdown(self) takes the node"),
        }
    }

    /// Our instance id.
    pub fn id(&self) -> NodeId {
        self.node().id()
    }

    /// Our election state.
    pub fn me(&self) -> LocalState {
        self.node().me()
    }

    /// The live peers.
    pub fn nodes(&self) -> Vec<Peer> {
        self.node().nodes()
    }

    /// Counters (the node's, plus service events lost by slow consumers).
    pub fn stats(&self) -> Stats {
        let mut stats = self.node().stats();
        stats.events_lost += self.shared.lost.load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// See [`Discovery::promote`].
    pub fn promote(&self) -> Result<(), Error> {
        self.node().promote()
    }

    /// See [`Discovery::demote`].
    pub fn demote(&self, permanent: bool) -> Result<(), Error> {
        self.node().demote(permanent)
    }

    /// See [`Discovery::join`].
    pub fn join(&self, channel: &str) -> Result<Subscription, Error> {
        self.node().join(channel)
    }

    /// See [`Discovery::leave`].
    pub fn leave(&self, channel: &str) {
        self.node().leave(channel)
    }

    /// See [`Discovery::send`].
    pub fn send<T: Serialize + ?Sized>(&self, channel: &str, data: &T) -> Result<(), Error> {
        self.node().send(channel, data)
    }

    /// Stops the service layer and the node; running hooks are abandoned.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // The driver task held the other reference and has ended.
        if let Some(node) = self.node.take().and_then(Arc::into_inner) {
            node.shutdown().await;
        }
    }
}

impl Drop for ServiceDiscovery {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    shared: Arc<Shared>,
    node: Arc<Discovery>,
    mut node_events: EventStream<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let (results_tx, mut results) = mpsc::unbounded_channel::<(Ticket, Result<(), String>)>();
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            event = node_events.recv() => match event {
                None => break,
                Some(Event::Lagged(_)) => lock(&shared.tracker).reconcile(&node.nodes()),
                Some(event) => lock(&shared.tracker).handle_event(&event),
            },
            Some((ticket, result)) = results.recv() => {
                lock(&shared.tracker).hook_finished(ticket, result);
            }
            _ = shared.wake.notified() => {}
        }
        running.retain(|task| !task.is_finished());
        let (actions, events, ready) = {
            let mut tracker = lock(&shared.tracker);
            let actions: Vec<_> = std::iter::from_fn(|| tracker.poll_action()).collect();
            let events: Vec<_> = std::iter::from_fn(|| tracker.poll_event()).collect();
            (actions, events, tracker.is_ready())
        };
        for Action::RunHook {
            index,
            instance,
            ticket,
        } in actions
        {
            let hook = lock(&shared.hooks)
                .get(&instance.name)
                .and_then(|hooks| hooks.get(index))
                .cloned();
            let results_tx = results_tx.clone();
            let timeout = shared.setup_timeout;
            // Each hook runs in its own task: one that hangs holds up only
            // its own instance, never discovery or other services.
            running.push(tokio::spawn(async move {
                let result = match hook {
                    Some(hook) => match tokio::time::timeout(timeout, hook(instance)).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("setup hook timed out after {timeout:?}")),
                    },
                    None => Err("setup hook missing".into()),
                };
                let _ = results_tx.send((ticket, result));
            }));
        }
        if let Some(sender) = &*lock(&shared.events) {
            for event in events {
                let _ = sender.send(event);
            }
        }
        shared
            .ready
            .send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
    for task in running {
        task.abort();
    }
    lock(&shared.events).take();
}
