//! Watching the registry over HTTP: the index and blocking queries,
//! Consul style, and the `/events` Server-Sent Events stream.
//!
//! **The index.** One number, starting at 1, that grows by one on every
//! registry change this sidecar's node sees (a registration online,
//! updated or offline, anywhere on the LAN). Every `GET /registrations*`
//! answer carries it in `X-Shoal-Index` (and `X-Consul-Index`, for
//! Consul-minded clients). It is this sidecar's own count: another
//! sidecar's differs, and it starts again at 1 when the sidecar restarts.
//!
//! **Blocking queries.** `GET /registrations[/name[/version]]?index=N`
//! answers at once when the index differs from N (it moved on, or N came
//! from an earlier run), else when it changes or the wait runs out:
//! `wait=30s` (humantime: `500ms`, `5m`; default 5 minutes, at most 10, as
//! Consul). The index is global, so a change to any registration wakes
//! every blocking query: compare the answer with the last one. The index in
//! the answer is read before the registrations, so a change the answer
//! does not show always leads to a higher index.
//!
//! **`/events`.** `GET /events[?name=NAME[&version=VERSION]]` (empty
//! values filter nothing) is a
//! Server-Sent Events stream: `event: online`, `updated` or `offline`, with
//! `data:` the registration as JSON (an offline one with `reason`:
//! `expired`, `deregistered` or `ownerGone`) and `id:` the index when the
//! event was sent. The stream and the index follow the registry
//! separately, so the id may not count the event yet: it is a hint for a
//! later blocking query, not a replay position (`Last-Event-ID` is not
//! honoured; a reconnecting client gets the snapshot again). It starts
//! with an `online` for each registration live at that moment, so a client
//! needs no separate query and misses nothing in between; `snapshot=false`
//! sends only the changes (Thalassa's subscriptions). `event: lagged`
//! (`data: {"missed": n}`) says the client read too slowly and lost
//! events: query again. A comment every 15 s keeps proxies from closing it.
//! At most [`MAX_STREAMS`] streams are open at once (503 beyond).

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use shoal::registry::{Filter, Registry, RegistryEvent, Watch};

use super::error::QueryMap;
use super::memory::Trimmer;
use super::thalassa::check_filter;
use super::{ApiError, App};
use crate::error::CliError;

/// The headers that carry the index.
const INDEX_HEADERS: [&str; 2] = ["x-shoal-index", "x-consul-index"];

/// A blocking query's wait when `wait` is not given.
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);

/// The longest wait (a longer `wait` is cut to this, as Consul does).
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// The most event streams open at once: each holds a registry watch.
pub const MAX_STREAMS: i64 = 10_000;

/// Starts the task that keeps the index, and the count of live
/// registrations `/metrics` reports, from a watch of the whole registry.
pub async fn spawn_index(
    registry: &Registry,
    registrations: Arc<AtomicU64>,
) -> Result<tokio::sync::watch::Receiver<u64>, CliError> {
    let mut watch = registry
        .watch(Filter::All)
        .await
        .map_err(|e| CliError::runtime(format!("cannot watch the registry: {e}")))?;
    let (tx, rx) = tokio::sync::watch::channel(1u64);
    let registry = registry.clone();
    tokio::spawn(async move {
        while let Some(event) = watch.recv().await {
            match event {
                RegistryEvent::Online(_) => {
                    registrations.fetch_add(1, Ordering::Relaxed);
                }
                RegistryEvent::Offline { .. } => {
                    let _ = registrations.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(1))
                    });
                }
                RegistryEvent::Lagged(_) => {
                    // Some events are lost: count afresh.
                    if let Ok(all) = registry.query(&Filter::All).await {
                        registrations.store(all.len() as u64, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
            tx.send_modify(|i| *i += 1);
        }
    });
    Ok(rx)
}

/// Answers a `GET /registrations*`: waits as a blocking query asks, then
/// the registrations `filter` covers, with the index in the headers.
pub async fn answer(app: &App, query: &QueryMap, filter: Filter) -> Result<Response, ApiError> {
    block(app, query).await?;
    let index = *app.index.borrow();
    let key = format!("{filter:?}");
    let body = match app.answers.get(&key, index) {
        Some(body) => body,
        None => {
            let found = app.registry.query(&filter).await?;
            // Serialised at once into a buffer of about the right size:
            // axum's `Json` grows its buffer from 128 bytes, copying as it
            // goes, and a registration is a few hundred bytes.
            let mut body = Vec::with_capacity(2 + found.len() * BYTES_PER_REGISTRATION);
            serde_json::to_writer(&mut body, &found).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the registrations: {e}"),
                )
            })?;
            let body = bytes::Bytes::from(body);
            app.answers.put(key, index, body.clone());
            body
        }
    };
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let value = HeaderValue::from(index);
    for name in INDEX_HEADERS {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value.clone());
    }
    Ok(response)
}

/// A registration's usual size as JSON, to size a response's buffer.
const BYTES_PER_REGISTRATION: usize = 320;

/// Waits while the index is `?index=N`, for `?wait=` at most (nothing
/// without `index`). Bad values are a 400 naming them.
async fn block(app: &App, query: &QueryMap) -> Result<(), ApiError> {
    let wait = match query.get("wait") {
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "wait must be a duration such as 30s or 5m, not {text:?}: {e}"
                ))
                .field("wait")
            })?
            .min(MAX_WAIT),
        None => DEFAULT_WAIT,
    };
    let Some(text) = query.get("index") else {
        return Ok(());
    };
    let seen: u64 = text.parse().map_err(|_| {
        ApiError::bad_request(format!("index must be a whole number, not {text:?}")).field("index")
    })?;
    let mut index = app.index.clone();
    let mut stop = app.stop.clone();
    tokio::select! {
        _ = tokio::time::timeout(wait, index.wait_for(|i| *i != seen)) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    Ok(())
}

/// The number of open event streams, for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct StreamGauge {
    open: Arc<AtomicI64>,
    trimmer: Trimmer,
}

impl StreamGauge {
    /// How many are open.
    pub fn get(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Starts giving the memory of closed streams back (see [`Trimmer`]).
    pub fn spawn_trimmer(&self) {
        self.trimmer.spawn();
    }

    /// The trimmer, for others whose closing frees memory (connections).
    pub fn trimmer(&self) -> Trimmer {
        self.trimmer.clone()
    }

    /// Counts one stream open until the guard drops.
    fn open(&self) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }
}

/// One open stream; dropped when the client goes away or the sidecar stops.
struct StreamGuard(StreamGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.trimmer.closed();
    }
}

/// What one event stream holds between events.
struct Stream_ {
    watch: Watch,
    index: tokio::sync::watch::Receiver<u64>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// With `snapshot=false`: ids live before the watch began, whose first
    /// `online` is the snapshot's, not a change.
    skip: HashSet<String>,
    _guard: StreamGuard,
}

/// `GET /events`.
pub async fn events(
    State(app): State<Arc<App>>,
    query: QueryMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // `?name=&version=` (empty) filters nothing, as forms and URL builders send it.
    let given = |key| query.get(key).filter(|v| !v.is_empty());
    let filter = match (given("name"), given("version")) {
        (None, None) => Filter::All,
        (Some(name), None) => {
            check_filter(name, None)?;
            Filter::name(name)
        }
        (Some(name), Some(version)) => {
            check_filter(name, Some(version))?;
            Filter::version(name, version)
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request("version needs a name").field("version"));
        }
    };
    let snapshot = match query.get("snapshot") {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "snapshot must be true or false, not {other:?}"
            ))
            .field("snapshot"))
        }
    };
    if app.sse.get() >= MAX_STREAMS {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many event streams open (at most {MAX_STREAMS})"),
        ));
    }
    let skip = if snapshot {
        HashSet::new()
    } else {
        let live = app.registry.query(&filter).await?;
        live.into_iter().map(|r| r.id().to_owned()).collect()
    };
    let state = Stream_ {
        watch: app.registry.watch(filter).await?,
        index: app.index.clone(),
        stop: app.stop.clone(),
        skip,
        _guard: app.sse.open(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            let event = tokio::select! {
                event = s.watch.recv() => event?,
                _ = s.stop.wait_for(|stop| *stop) => return None,
            };
            if let Some(r) = event.registration() {
                // The first event of a skipped id is its snapshot `online`
                // (a change would have been `offline` before any `online`).
                if s.skip.remove(r.id()) && matches!(event, RegistryEvent::Online(_)) {
                    continue;
                }
            }
            let index = *s.index.borrow();
            return Some((Ok(sse_event(&event, index)), s));
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One registry event as SSE: the registration as the REST routes give it
/// (same key order), an offline one with `reason` added.
fn sse_event(event: &RegistryEvent, index: u64) -> Event {
    let json = |r| serde_json::to_string(r).unwrap_or_else(|_| "null".into());
    let (name, data) = match event {
        RegistryEvent::Online(r) => ("online", json(r)),
        RegistryEvent::Updated(r) => ("updated", json(r)),
        RegistryEvent::Offline {
            registration,
            reason,
        } => {
            let mut data = json(registration);
            // A registration serialises to an object: add the field before its `}`.
            if data.ends_with('}') {
                data.pop();
                let reason = serde_json::to_string(reason).unwrap_or_else(|_| "null".into());
                data.push_str(&format!(",\"reason\":{reason}}}"));
            }
            ("offline", data)
        }
        RegistryEvent::Lagged(n) => ("lagged", format!("{{\"missed\":{n}}}")),
        _ => ("unknown", "null".to_owned()),
    };
    Event::default()
        .event(name)
        .id(index.to_string())
        .data(data)
}
