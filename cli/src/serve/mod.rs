//! `shoal serve`: the HTTP sidecar. It is a node of the cluster and
//! answers Thalassa's, bender's and hera's HTTP APIs over the registry
//! that node replicates, so an app in any language registers and looks up
//! services with plain HTTP.
//!
//! Every answer is JSON (but `/metrics`, Prometheus text, and `/events`,
//! Server-Sent Events); every error is `{"error": "...", "field": "..."}`
//! with a 4xx or 5xx status, and stores nothing.
//!
//! | Route | What |
//! |---|---|
//! | `GET /registrations[/{name}[/{version}]]` | Thalassa's registrations; a blocking query with `?index=N&wait=30s` |
//! | `POST /registrations/{name}/{version}/{host}/{port}` | Thalassa: register; the body is `meta`, `meta.secondsToExpire` the TTL (60 s) |
//! | `DELETE /registrations/{name}/{version}/{host}/{port}` | Thalassa: deregister (404 unless this sidecar registered it) |
//! | `POST /registrations` | bender: `{app, version, host, port, ...}` |
//! | `PUT /{service}/{id}`, `GET /{service}[/{id}]`, `DELETE /{service}/{id}` | hera |
//! | `GET /events?name=&version=&snapshot=` | Server-Sent Events: `online`, `updated`, `offline` |
//! | `GET /nodes`, `GET /status`, `GET /metrics` | the peer table, Thalassa's status, Prometheus |
//!
//! **Answers are reused** for up to 100 ms while nothing changed in the
//! registry (see [`cache`]): a list query costs a copy and an encoding of
//! every registration it lists, and sidecars are polled.
//!
//! **Reserved names.** hera's services share the first path segment with
//! the sidecar's own routes, so [`RESERVED`] (`registrations`, `events`,
//! `nodes`, `status`, `metrics`) cannot be hera services: a `PUT` there is
//! answered 400 naming the word.
//!
//! **Connections** are bounded and slow clients cut (see
//! [`connections`]): `--max-connections` open at once, at most
//! `--max-connections-per-client` of them from one address, and
//! `--read-timeout` for a request's headers, its body, and an idle
//! kept-alive connection.
//!
//! **Who may call.** It binds 127.0.0.1:9000 by default. Binding any other
//! address requires a bearer token (`SHOAL_TOKEN`, or `--token`, which the
//! process list shows) unless `--dangerously-allow-unauthenticated` waives
//! it; see [`auth`].

mod auth;
mod bender;
mod cache;
mod connections;
mod error;
mod hera;
mod memory;
mod metrics;
mod thalassa;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use shoal::registry::{Filter, Registration, Registry};
use shoal::Discovery;

use crate::error::CliError;
use crate::net::{self, NetArgs};
use crate::output;
use crate::signals::Signals;

pub use error::ApiError;

/// First path segments the sidecar's own routes use: no hera service may
/// take one of these names.
pub const RESERVED: &[&str] = &["registrations", "events", "nodes", "status", "metrics"];

/// How long after SIGINT or SIGTERM open requests may take to finish
/// before the sidecar stops anyway.
const DRAIN: Duration = Duration::from_secs(5);

const SERVE_HELP: &str = "\
Routes (answers are JSON; errors are {\"error\": ..., \"field\": ...}):
  GET    /registrations[/NAME[/VERSION]]        Thalassa; ?index=N&wait=30s blocks
  POST   /registrations/NAME/VERSION/HOST/PORT  Thalassa; the body is meta, and
                                                meta.secondsToExpire the TTL (60)
  DELETE /registrations/NAME/VERSION/HOST/PORT  Thalassa
  POST   /registrations                         bender: {app, version, host, port}
  PUT    /SERVICE/ID, GET /SERVICE[/ID], DELETE /SERVICE/ID
                                                hera; entries live --liveness seconds
  GET    /events?name=&version=&snapshot=false  Server-Sent Events: online, offline
  GET    /nodes, /status, /metrics              peers, Thalassa's status, Prometheus
Reserved, not hera services: registrations, events, nodes, status, metrics.

Any address but loopback requires a token: set SHOAL_TOKEN, and clients send
'Authorization: Bearer <token>' (or --dangerously-allow-unauthenticated).

Examples:
  shoal --loopback serve                 this host only, on 127.0.0.1:9000
  curl -XPOST -d '{\"secondsToExpire\": 30}' \\
       localhost:9000/registrations/web/1.0.0/10.0.0.7/8080
  curl localhost:9000/registrations/web
  curl -N 'localhost:9000/events?name=web'
  SHOAL_TOKEN=$(cat token) shoal serve --http 0.0.0.0:9000";

/// `shoal serve` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = SERVE_HELP)]
pub struct Args {
    /// IP:PORT to serve HTTP on; any but loopback requires a token
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9000")]
    pub http: SocketAddr,
    /// Bearer token every request must carry; prefer SHOAL_TOKEN, since
    /// arguments show in the process list
    #[arg(
        long,
        env = "SHOAL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Serve a non-loopback address without a token: anyone who reaches it
    /// may register and deregister
    #[arg(long)]
    pub dangerously_allow_unauthenticated: bool,
    /// Seconds a hera entry lives unless PUT again
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub liveness: u64,
    /// HTTP connections open at once; beyond it clients wait to be
    /// accepted (lowered to fit `ulimit -n`)
    #[arg(long, value_name = "N", default_value_t = 10_240,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// HTTP connections one client address may hold at once; more from it
    /// are closed as they come [default: half of --max-connections]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_client: Option<u64>,
    /// Seconds a client has to send a request's headers, and then its
    /// body; an idle kept-alive connection is closed after as long.
    /// Responses (event streams, blocking queries) are not cut
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub read_timeout: u64,
}

/// Ids this sidecar registered and when their leases end (as last renewed
/// here), to deregister them on shutdown. Lapsed leases are pruned when the
/// map has doubled since the last pruning, so it stays within about twice
/// the live registrations at an amortised O(1) per write.
#[derive(Debug, Default)]
struct Owned {
    leases: HashMap<String, Instant>,
    prune_at: usize,
}

impl Owned {
    fn insert(&mut self, id: String, until: Instant) {
        if self.leases.len() >= self.prune_at {
            let now = Instant::now();
            self.leases.retain(|_, until| *until > now);
            self.prune_at = (2 * self.leases.len()).max(1024);
        }
        self.leases.insert(id, until);
    }
}

/// What every handler shares.
pub struct App {
    node: Discovery,
    registry: Registry,
    /// The registry index (see [`watch`]): grows on every change seen.
    index: tokio::sync::watch::Receiver<u64>,
    /// Turns true on SIGINT or SIGTERM: open streams and blocking queries end.
    stop: tokio::sync::watch::Receiver<bool>,
    /// Live registrations on the LAN, kept by the index task.
    registrations: Arc<AtomicU64>,
    /// What this sidecar registered.
    owned: Mutex<Owned>,
    /// Registration writes, for `/status`.
    writes: metrics::WriteRate,
    /// Open SSE streams.
    sse: watch::StreamGauge,
    /// Requests answered, for `/metrics`.
    http: metrics::HttpCounts,
    /// Recent answers to list queries.
    answers: cache::Answers,
    started: Instant,
    host_name: String,
    /// The host a hera entry is registered with: this host's address on
    /// the cluster's network.
    hera_host: String,
    /// The port the sidecar serves HTTP on.
    http_port: u16,
    /// hera's time to live.
    liveness: Duration,
    /// How long a request's body may take to arrive.
    read_timeout: Duration,
    /// Open connections, for `/metrics`.
    connections: Arc<connections::Stats>,
}

impl App {
    /// Registers `registration` for `ttl`, owned by this sidecar's node,
    /// and answers with the registry's copy (`lastKnown` set).
    async fn register(
        &self,
        registration: Registration,
        ttl: Duration,
    ) -> Result<Registration, ApiError> {
        let id = registration.id().to_owned();
        let filter = Filter::version(registration.name(), registration.version());
        self.registry.register(registration.clone(), ttl).await?;
        self.answers.clear();
        self.writes.record();
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Instant::now() + ttl);
        let found = self.registry.query(&filter).await?;
        Ok(found
            .into_iter()
            .find(|r| r.id() == id)
            .unwrap_or(registration))
    }

    /// Deregisters our registration `id`; 404 if this sidecar holds none.
    async fn deregister(&self, id: &str) -> Result<(), ApiError> {
        self.registry.deregister(id).await.map_err(|e| match e {
            shoal::Error::Registry(shoal::registry::RegistryError::NotRegistered(_)) => {
                ApiError::not_found(format!("not registered by this sidecar: {id}")).field("id")
            }
            e => e.into(),
        })?;
        self.answers.clear();
        self.writes.record();
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leases
            .remove(id);
        Ok(())
    }

    /// The ids this sidecar registered whose leases have not lapsed.
    fn owned_ids(&self) -> Vec<String> {
        let now = Instant::now();
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned
            .leases
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// The sidecar's routes over `app`, with the token check if there is a
/// token.
fn router(app: Arc<App>, token: Option<auth::Token>) -> Router {
    let router = Router::new()
        .route(
            "/registrations",
            get(thalassa::list_all).post(bender::register),
        )
        .route("/registrations/{name}", get(thalassa::list_name))
        .route(
            "/registrations/{name}/{version}",
            get(thalassa::list_version),
        )
        .route(
            "/registrations/{name}/{version}/{host}/{port}",
            post(thalassa::register).delete(thalassa::deregister),
        )
        .route("/events", get(watch::events))
        .route("/nodes", get(metrics::nodes))
        .route("/status", get(metrics::status))
        .route("/metrics", get(metrics::metrics))
        .route("/{service}", get(hera::list))
        .route(
            "/{service}/{id}",
            get(hera::get_one).put(hera::put).delete(hera::delete),
        )
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(error::BODY_LIMIT))
        .with_state(Arc::clone(&app));
    let router = match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_token,
        )),
        None => router,
    };
    // Outermost, so that refused requests (401) are counted too.
    router.layer(axum::middleware::from_fn_with_state(
        app,
        metrics::count_request,
    ))
}

/// Runs `shoal serve`.
pub async fn run(net: &NetArgs, args: Args) -> Result<(), CliError> {
    // Refuse an exposed bind before anything is started or bound.
    let token = auth::policy(
        args.http,
        args.token.as_deref(),
        args.dangerously_allow_unauthenticated,
    )?;
    let mut signals = Signals::install()?;
    // The registry's limits come with the network flags: a sidecar that
    // registers for many apps needs `--max-registrations`.
    let destination = net.builder()?.build()?.destination();
    let node = net.start(|b| b).await?;
    let result = serve(&node, destination, args, token, &mut signals).await;
    tracing::debug!("shutting the node down");
    node.shutdown().await;
    tracing::debug!("node shut down");
    result
}

/// Binds, prints the `listening` line, serves until a signal, then
/// deregisters what this sidecar registered.
async fn serve(
    node: &Discovery,
    destination: SocketAddr,
    args: Args,
    token: Option<auth::Token>,
    signals: &mut Signals,
) -> Result<(), CliError> {
    let registry = node.registry();
    let registrations = Arc::new(AtomicU64::new(0));
    let index = watch::spawn_index(&registry, Arc::clone(&registrations)).await?;
    let listener = connections::listen(args.http)
        .map_err(|e| CliError::runtime(format!("cannot listen on {}: {e}", args.http)))?;
    let http = listener.local_addr()?;
    let hera_host = net::local_address(destination).unwrap_or(http.ip());
    let max_connections =
        connections::fit_to_file_limit(usize::try_from(args.max_connections).unwrap_or(usize::MAX));
    let limits = connections::Limits {
        max_connections,
        max_per_client: args
            .max_connections_per_client
            .map_or(max_connections.div_ceil(2), |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
        read_timeout: Duration::from_secs(args.read_timeout),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let sse = watch::StreamGauge::default();
    let connection_stats = Arc::new(connections::Stats::new(sse.trimmer()));
    let app = Arc::new(App {
        node: node.clone(),
        registry,
        index,
        stop,
        registrations,
        owned: Mutex::new(Owned::default()),
        writes: metrics::WriteRate::default(),
        sse,
        http: metrics::HttpCounts::default(),
        answers: cache::Answers::default(),
        started: Instant::now(),
        host_name: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        hera_host: hera_host.to_string(),
        http_port: http.port(),
        liveness: Duration::from_secs(args.liveness),
        read_timeout: limits.read_timeout,
        connections: connection_stats,
    });
    app.sse.spawn_trimmer();
    // The accept loop ends only once told to stop, so the server runs as
    // its own task until a signal comes.
    let mut server = tokio::spawn(connections::serve(
        listener,
        router(Arc::clone(&app), token),
        limits,
        Arc::clone(&app.connections),
        stop_tx.subscribe(),
    ));
    output::json_line("listening", json!({"http": http.to_string()}))?;

    let stop = signals.recv().await;
    tracing::info!(?stop, "stopping");
    // Ends the event streams and blocking queries, and stops accepting.
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DRAIN, &mut server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server failed"),
        Err(_) => {
            tracing::warn!("requests still open after {DRAIN:?}: stopping anyway");
            server.abort();
        }
    }
    tracing::debug!("HTTP stopped; deregistering");
    for id in app.owned_ids() {
        if let Err(e) = app.registry.deregister(&id).await {
            tracing::debug!(%id, error = %e, "not deregistered on shutdown");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_leases_are_pruned_as_the_map_doubles() {
        let mut owned = Owned::default();
        let past = Instant::now() - Duration::from_secs(1);
        let future = Instant::now() + Duration::from_secs(60);
        for i in 0..5_000 {
            owned.insert(format!("/lapsed/{i}/h/1"), past);
        }
        // Pruned at 1,024 and at each doubling since: never far past 1,024
        // lapsed leases.
        assert!(owned.leases.len() <= 1_024, "{}", owned.leases.len());
        for i in 0..3_000 {
            owned.insert(format!("/live/{i}/h/1"), future);
        }
        let live = owned
            .leases
            .values()
            .filter(|u| **u > Instant::now())
            .count();
        assert_eq!(live, 3_000);
        assert!(
            owned.leases.len() <= 2 * 3_000 + 1_024,
            "{}",
            owned.leases.len()
        );
    }
}
