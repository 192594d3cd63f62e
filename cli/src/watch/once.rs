//! `shoal watch --once`: listen for one window, print a snapshot, exit.
//!
//! The window is 1.5 s by default: every node says hello every 400 ms (the
//! default interval), so the window holds three of each node's hellos and
//! one lost hello hides nobody; the registry syncs a newcomer within
//! milliseconds of the first hellos it hears. With a longer
//! `--hello-interval` the default grows to 3.5 intervals.
//!
//! JSON is one document, `{"nodes": [...], "registrations": [...]}`: this
//! node first (`me_json`, with `"self": true`), then the others in
//! `peer_json`'s shape, then the registrations in Thalassa's shape
//! (`registrations` is empty with `--master`). A table is the two tables
//! `shoal nodes` and `shoal registrations` print, nodes then registrations.

use std::time::{Duration, Instant};

use serde_json::json;
use shoal::Discovery;

use super::Watcher;
use crate::error::CliError;
use crate::net::NetArgs;
use crate::output::{self, Format};
use crate::signals::Signals;
use crate::snapshot;

/// The default window.
const DEFAULT_WINDOW: Duration = Duration::from_millis(1500);

/// How long to listen: `--listen`, or the default for this hello interval.
pub fn window(listen: Option<u64>, net: &NetArgs) -> Duration {
    match listen {
        Some(ms) => Duration::from_millis(ms),
        None => {
            let hello = Duration::from_millis(net.hello_interval.unwrap_or(400));
            DEFAULT_WINDOW.max(hello.saturating_mul(7) / 2)
        }
    }
}

/// Listens for `window` (a signal cuts it short and prints nothing), then
/// prints the snapshot.
pub async fn run(
    discovery: &Discovery,
    watcher: &Watcher,
    signals: &mut Signals,
    window: Duration,
    format: Format,
) -> Result<(), CliError> {
    tokio::select! {
        _ = tokio::time::sleep(window) => {}
        _ = signals.recv() => return Ok(()),
    }
    let selection = &watcher.selection;
    let registrations = match selection.registry_filter() {
        Some(filter) => discovery.registry().query(&filter).await?,
        None => Vec::new(),
    };
    let me = discovery.me();
    let now = Instant::now();
    let mut nodes = Vec::new();
    if selection.me(&me, &watcher.host_name) {
        nodes.push(output::me_json(&me, &watcher.host_name));
    }
    let mut peers = discovery.nodes();
    peers.retain(|p| selection.peer(p));
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.extend(peers.iter().map(|p| output::peer_json(p, now)));
    match format {
        Format::Json => {
            let registrations: Vec<_> = registrations
                .iter()
                .map(super::json::registration)
                .collect();
            let doc = json!({"nodes": nodes, "registrations": registrations});
            println_flushed(&doc.to_string())?;
        }
        // The tables `shoal nodes` and `shoal registrations` print.
        Format::Table => {
            snapshot::nodes_table(&nodes, false)?;
            if selection.shows_registrations() {
                println_flushed("")?;
                snapshot::registrations_table(&registrations, false)?;
            }
        }
    }
    Ok(())
}

fn println_flushed(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}
