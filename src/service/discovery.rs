//! The service layer's driver and handle: [`ServiceDiscovery`] and its
//! builder. The readiness logic itself is the sans-IO [`super::tracker`].

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::event::Event;
use crate::handle::{lock, Events, Handle, StopSignal};
use crate::protocol::Protocol;
use crate::registry::{Filter, RegistryEvent, Watch};
use crate::stream::{sealed, EventStream, StreamEvent};
use crate::{Config, Discovery, Error, Stats};

use super::tracker::{Action, Owner, ServiceTracker, Ticket};
use super::{ServiceEvent, ServiceInstance, Services};

impl sealed::Sealed for ServiceEvent {}
impl StreamEvent for ServiceEvent {
    fn lagged(missed: u64) -> Self {
        ServiceEvent::Lagged(missed)
    }
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
        // Every registration, whatever its name: a need added later may
        // be met by one registered now.
        let registrations = node.registry().watch(Filter::All).await?;
        let (ready_tx, ready) = watch::channel(tracker.is_ready());
        let shared = Arc::new(Shared {
            tracker: Mutex::new(tracker),
            hooks: Mutex::new(hooks),
            events: Events::new(node.capacity()),
            wake: Notify::new(),
            setup_timeout: self.setup_timeout,
        });
        let driver_node = node.clone();
        let handle = Handle::spawn(shared, |shared, stop| {
            let streams = Streams {
                node: node_events,
                registrations,
            };
            run(shared, driver_node, streams, ready_tx, stop)
        });
        Ok(ServiceDiscovery {
            node,
            handle,
            ready,
        })
    }
}

struct Shared {
    tracker: Mutex<ServiceTracker>,
    hooks: Mutex<HashMap<String, Vec<Hook>>>,
    events: Events<ServiceEvent>,
    wake: Notify,
    setup_timeout: Duration,
}

/// A [`Discovery`] node plus service readiness. See the [module docs](crate::service).
///
/// Like [`Discovery`], a handle: cloning it is cheap and every clone drives
/// the same service layer and node. Dropping the last clone stops both (the
/// node says goodbye), unless a clone of the node taken with
/// [`discovery`](Self::discovery) still holds the node: then only the
/// service layer stops. [`shutdown`](Self::shutdown), from any clone, stops
/// both.
///
/// The node's own calls (its id, peer table, election, channels) are made
/// on [`discovery`](Self::discovery):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shoal::Error> {
/// # let config = shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47_630).build()?;
/// let web = shoal::ServiceDiscovery::builder(config)
///     .need("kv")
///     .start()
///     .await?;
/// let node = web.discovery();
/// println!("{} sees {} peers", node.id(), node.nodes().len());
/// node.send("jobs", &serde_json::json!({"task": 7}))?;
/// # web.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServiceDiscovery {
    node: Discovery,
    handle: Handle<Shared>,
    /// Its sender belongs to the driver task: when the task ends, however
    /// it ends, `ready()` stops waiting.
    ready: watch::Receiver<bool>,
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

    fn shared(&self) -> &Shared {
        self.handle.shared()
    }

    /// Adds needed services at run time.
    pub fn need<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let shared = self.shared();
        {
            let mut tracker = lock(&shared.tracker);
            for name in names {
                tracker.need(&name.into());
            }
        }
        shared.wake.notify_one();
    }

    /// Adds a setup hook at run time; it also runs for instances already
    /// known (an active one stays active unless the hook fails).
    pub fn setup<F, Fut, E>(&self, name: &str, hook: F)
    where
        F: Fn(ServiceInstance) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let shared = self.shared();
        // Hook first, then the tracker, so the action it queues finds it.
        lock(&shared.hooks)
            .entry(name.to_owned())
            .or_default()
            .push(boxed_hook(hook));
        lock(&shared.tracker).add_hook(name);
        shared.wake.notify_one();
    }

    /// Sets what this process advertises: a JSON object with a string `name`.
    pub fn advertise<T: Serialize + ?Sized>(&self, info: &T) -> Result<(), Error> {
        // Before to_value, which would turn a NaN into null.
        crate::protocol::check_finite("info", info)?;
        let value = serde_json::to_value(info).map_err(Error::Encode)?;
        check_info(&value)?;
        self.node.advertise(&value)
    }

    /// Resolves when every need has an active instance (at once if it
    /// already has), with the active instances; [`Error::Closed`] if the
    /// service layer stops first (a [`shutdown`](Self::shutdown) on any
    /// clone, or of the node).
    ///
    /// To wait with a deadline, wrap it in a timeout; the service layer
    /// keeps running either way, and a later call waits again:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// use std::time::Duration;
    /// use shoal::{Config, ServiceDiscovery};
    ///
    /// let config = Config::builder()
    ///     .broadcast("127.255.255.255".parse().unwrap()) // this host only
    ///     .port(47_491)
    ///     .build()?;
    /// let web = ServiceDiscovery::builder(config).need("kv").start().await?;
    /// match tokio::time::timeout(Duration::from_millis(200), web.ready()).await {
    ///     Ok(services) => println!("ready: {:?}", services?.keys().collect::<Vec<_>>()),
    ///     Err(_) => println!("no kv after 200 ms; still waiting in the background"),
    /// }
    /// assert!(!web.is_ready()); // nobody on this port offers kv
    /// web.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self) -> Result<Services, Error> {
        self.handle.ensure_running()?;
        let mut ready = self.ready.clone();
        if ready.wait_for(|r| *r).await.is_err() {
            return Err(Error::Closed);
        }
        Ok(self.services())
    }

    /// Whether every need has an active instance now.
    pub fn is_ready(&self) -> bool {
        lock(&self.shared().tracker).is_ready()
    }

    /// The active instances by service name.
    pub fn services(&self) -> Services {
        lock(&self.shared().tracker).services()
    }

    /// Service events. The first call (on any clone) gets every event since
    /// start; later calls get events from the moment of the call. The
    /// stream ends when the service layer stops.
    pub fn events(&self) -> EventStream<ServiceEvent> {
        self.shared().events.stream()
    }

    /// The node under the service layer: its id, peers, election and
    /// channels. Clone it to keep it (a clone outlives this handle).
    pub fn discovery(&self) -> &Discovery {
        &self.node
    }

    /// The node's counters, plus the service events that slow consumers of
    /// [`events`](Self::events) lost (in `events_lost`);
    /// `discovery().stats()` counts the node's alone.
    pub fn stats(&self) -> Stats {
        let mut stats = self.node.stats();
        stats.events_lost += self
            .shared()
            .events
            .lost()
            .load(std::sync::atomic::Ordering::Relaxed);
        stats
    }

    /// Stops the service layer and the node, for every clone (running
    /// hooks are abandoned, the node says goodbye), and returns once both
    /// have stopped. Any clone may call it, any number of times.
    pub async fn shutdown(&self) {
        self.handle.shutdown().await;
        self.node.shutdown().await;
    }
}

/// What the driver feeds the tracker.
struct Streams {
    node: EventStream<Event>,
    registrations: Watch,
}

/// The node whose copy of registration `id` counts, if `id` is still live
/// (if not, its `Offline` is on its way). Called under the core lock, so
/// the registry and the peer table agree.
fn owner(core: &Protocol, local_addr: SocketAddr, id: &str) -> Option<Owner> {
    let id = core.registration_owner(id)?;
    let peer = if id == core.id() {
        None
    } else {
        // An owner's registrations leave with it: a live one's owner is known.
        Some(core.peer(id.as_str())?.clone())
    };
    let addr = peer.as_ref().map_or(local_addr, |p| p.addr);
    Some(Owner {
        id: id.clone(),
        peer,
        addr,
    })
}

/// Feeds one registry event to the tracker.
fn on_registration(shared: &Shared, node: &Discovery, event: RegistryEvent) {
    let local_addr = node.local_addr();
    match event {
        RegistryEvent::Online(r) | RegistryEvent::Updated(r) => {
            if let Ok(Some(owner)) = node.query(|core| owner(core, local_addr, r.id())) {
                lock(&shared.tracker).registration_online(r, owner);
            }
        }
        RegistryEvent::Offline { registration, .. } => {
            lock(&shared.tracker).registration_offline(registration.id());
        }
        RegistryEvent::Lagged(_) => {
            let live = node.query(|core| {
                let all = core.registrations(&Filter::All).into_iter();
                all.filter_map(|r| Some((owner(core, local_addr, r.id())?, r)))
                    .map(|(owner, r)| (r, owner))
                    .collect()
            });
            if let Ok(live) = live {
                lock(&shared.tracker).reconcile_registrations(live);
            }
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    node: Discovery,
    mut streams: Streams,
    ready_tx: watch::Sender<bool>,
    mut stop: StopSignal,
) {
    let (results_tx, mut results) = mpsc::unbounded_channel::<(Ticket, Result<(), String>)>();
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = stop.requested() => break,
            event = streams.node.recv() => match event {
                None => break,
                Some(Event::Lagged(_)) => lock(&shared.tracker).reconcile(&node.nodes()),
                Some(event) => lock(&shared.tracker).handle_event(&event),
            },
            event = streams.registrations.recv() => match event {
                None => break,
                Some(event) => on_registration(&shared, &node, event),
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
        if let Some(sender) = &*shared.events.sender() {
            for event in events {
                let _ = sender.send(event);
            }
        }
        ready_tx.send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
    for task in running {
        task.abort();
    }
    shared.events.close();
}
