//! What the sidecar and its node report about themselves: `/nodes` (the
//! peer table), `/status` (Thalassa's) and `/metrics` (Prometheus text).
//!
//! `/metrics` reads the node's counters at scrape time (a
//! [`Collector`]), in the Prometheus text format 0.0.4:
//!
//! - gauges `shoal_nodes` (the cluster as this node sees it, itself
//!   included), `shoal_masters`, `shoal_registrations` (live, on the whole
//!   LAN), `shoal_sse_streams` (open `/events` streams),
//!   `shoal_http_connections` (open HTTP connections);
//! - counters `shoal_packets_{in,out}_total`, `shoal_bytes_{in,out}_total`,
//!   `shoal_messages_{in,out}_total`, `shoal_hellos_in_total`,
//!   `shoal_events_lost_total`, `shoal_registry_pulls_total`,
//!   `shoal_http_connections_accepted_total`,
//!   `shoal_http_connections_refused_total` (beyond a client's share),
//!   `shoal_http_read_timeouts_total` (connections closed by the read
//!   timeout),
//!   `shoal_registry_repairs_total`, and `shoal_drops_total{reason}` with
//!   one series per field of [`shoal::Drops`] (`malformed`, `decrypt`,
//!   `registry_limit`, ...);
//! - `shoal_http_requests_total{route,status}`: the requests the sidecar
//!   answered, by route template (`/registrations/{name}`; `unmatched` for
//!   unknown paths, so hostile paths cannot grow the series) and status
//!   (401s included).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::{json, Value};

use super::{ApiError, App};
use crate::output::{me_json, peer_json};

/// The window `registrationsPerSecond` averages over.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// `GET /nodes`: `{"self": ..., "masters": [ids], "nodes": [peers]}`, in
/// the shapes `shoal nodes --format json` prints.
pub async fn nodes(State(app): State<Arc<App>>) -> Json<Value> {
    let now = Instant::now();
    let me = app.node.me();
    let peers = app.node.nodes();
    let mut masters: Vec<&str> = peers
        .iter()
        .filter(|p| p.is_master)
        .map(|p| p.id.as_str())
        .collect();
    if me.is_master {
        masters.insert(0, me.id.as_str());
    }
    Json(json!({
        "self": me_json(&me, &app.host_name),
        "masters": masters,
        "nodes": peers.iter().map(|p| peer_json(p, now)).collect::<Vec<_>>(),
    }))
}

/// `GET /status`, Thalassa's: `version` (shoal-cli's), `memory` (`rss` and
/// `peakRss` in bytes, from /proc; null elsewhere), `uptime` (seconds) and
/// `registrationsPerSecond` (see [`WriteRate`]).
pub async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "memory": memory(),
        "uptime": app.started.elapsed().as_secs_f64(),
        "registrationsPerSecond": app.writes.per_second(),
    }))
}

/// This process's resident memory, from /proc/self/status.
fn memory() -> Value {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return Value::Null;
    };
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|k| k * 1024)
    };
    json!({"rss": kib("VmRSS:"), "peakRss": kib("VmHWM:")})
}

/// Registration writes (registers, refreshes, deregisters, through any of
/// the APIs) this sidecar made over the last 60 s, as a rate: their count
/// divided by 60, or by the uptime in the first minute.
#[derive(Debug)]
pub struct WriteRate {
    started: Instant,
    /// (second since start, writes in it), oldest first; at most 60.
    seconds: Mutex<VecDeque<(u64, u64)>>,
}

impl Default for WriteRate {
    fn default() -> Self {
        WriteRate {
            started: Instant::now(),
            seconds: Mutex::new(VecDeque::new()),
        }
    }
}

impl WriteRate {
    /// Counts one write now.
    pub fn record(&self) {
        let now = self.started.elapsed().as_secs();
        let mut seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        match seconds.back_mut() {
            Some((s, n)) if *s == now => *n += 1,
            _ => seconds.push_back((now, 1)),
        }
        Self::trim(&mut seconds, now);
    }

    /// Writes per second over the window.
    pub fn per_second(&self) -> f64 {
        let elapsed = self.started.elapsed();
        let mut seconds = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        Self::trim(&mut seconds, elapsed.as_secs());
        let writes: u64 = seconds.iter().map(|(_, n)| n).sum();
        writes as f64
            / elapsed
                .clamp(Duration::from_secs(1), RATE_WINDOW)
                .as_secs_f64()
    }

    /// Drops the seconds that left the window: keeps it 60 entries at most.
    fn trim(seconds: &mut VecDeque<(u64, u64)>, now: u64) {
        while seconds
            .front()
            .is_some_and(|(s, _)| *s + RATE_WINDOW.as_secs() <= now)
        {
            seconds.pop_front();
        }
    }
}

/// Requests answered, by route template and status: a bounded set, since
/// templates are the router's and statuses the sidecar's own.
#[derive(Debug, Default)]
pub struct HttpCounts(Mutex<BTreeMap<(String, u16), u64>>);

impl HttpCounts {
    fn snapshot(&self) -> Vec<((String, u16), u64)> {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Middleware: counts each request by route template and status.
pub async fn count_request(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(req).await;
    let key = (route, response.status().as_u16());
    let mut counts = app.http.0.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry(key).or_insert(0) += 1;
    response
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(NodeCollector(app)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Reads the node's state and counters at each scrape.
struct NodeCollector(Arc<App>);

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeCollector")
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let app = &self.0;
        let peers = app.node.nodes();
        let me = app.node.me();
        let stats = app.node.stats();
        let gauges: [(&str, &str, i64); 5] = [
            (
                "shoal_nodes",
                "Nodes in the cluster as this one sees it, itself included",
                peers.len() as i64 + 1,
            ),
            (
                "shoal_masters",
                "Masters in the cluster as this node sees it",
                peers.iter().filter(|p| p.is_master).count() as i64 + i64::from(me.is_master),
            ),
            (
                "shoal_registrations",
                "Live registrations on the LAN",
                app.registrations.load(Ordering::Relaxed) as i64,
            ),
            ("shoal_sse_streams", "Open /events streams", app.sse.get()),
            (
                "shoal_http_connections",
                "Open HTTP connections",
                app.connections.open(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 13] = [
            ("shoal_packets_in", "Datagrams received", stats.packets_in),
            ("shoal_packets_out", "Datagrams sent", stats.packets_out),
            ("shoal_bytes_in", "Bytes received", stats.bytes_in),
            ("shoal_bytes_out", "Bytes sent", stats.bytes_out),
            (
                "shoal_messages_in",
                "Whole messages decoded",
                stats.messages_in,
            ),
            (
                "shoal_messages_out",
                "Whole messages sent",
                stats.messages_out,
            ),
            ("shoal_hellos_in", "Hellos processed", stats.hellos_in),
            (
                "shoal_events_lost",
                "Events slow consumers lost",
                stats.events_lost,
            ),
            (
                "shoal_registry_pulls",
                "Registry pulls sent",
                stats.registry_pulls,
            ),
            (
                "shoal_registry_repairs",
                "Datagrams sent answering registry pulls",
                stats.registry_repairs,
            ),
            (
                "shoal_http_connections_accepted",
                "HTTP connections accepted",
                app.connections.accepted(),
            ),
            (
                "shoal_http_connections_refused",
                "HTTP connections closed at once because their client address held --max-connections-per-client",
                app.connections.refused(),
            ),
            (
                "shoal_http_read_timeouts",
                "HTTP connections closed because the client sent no request, or not all its headers, within --read-timeout",
                app.connections.timed_out(),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        // Every field of Drops, so that a reason added to the library shows
        // up here without a change.
        let drops = serde_json::to_value(&stats.dropped).unwrap_or(Value::Null);
        let mut family = encoder.encode_descriptor(
            "shoal_drops",
            "Datagrams dropped, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, value) in drops.as_object().into_iter().flatten() {
            let labels = [("reason", reason.as_str())];
            let counter = ConstCounter::new(value.as_u64().unwrap_or(0));
            counter.encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "shoal_http_requests",
            "HTTP requests answered, by route and status",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for ((route, status), n) in app.http.snapshot() {
            let labels = [("route", route), ("status", status.to_string())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_rate_counts_the_last_minute() {
        let rate = WriteRate::default();
        assert_eq!(rate.per_second(), 0.0);
        for _ in 0..30 {
            rate.record();
        }
        // Within the first second the divisor is one second.
        assert!(
            (rate.per_second() - 30.0).abs() < 1e-9,
            "{}",
            rate.per_second()
        );
        let old = WriteRate {
            started: Instant::now() - Duration::from_secs(200),
            seconds: Mutex::new(VecDeque::from([(100, 50), (190, 6)])),
        };
        assert!(
            (old.per_second() - 0.1).abs() < 1e-9,
            "{}",
            old.per_second()
        );
        assert_eq!(old.seconds.lock().unwrap().len(), 1);
    }
}
