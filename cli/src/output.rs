//! How commands print: a table for people, JSON for scripts.
//!
//! Data goes to stdout, diagnostics to stderr. A JSON line is one object
//! with `t` (ms since the Unix epoch) and `event`, flushed at once so that
//! a pipe sees it as it happens. When stdout is closed (`shoal watch |
//! head -1`), [`json_line`] returns the `BrokenPipe` error and the command
//! ends quietly with exit code 0.

use std::io::{self, IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How a snapshot or a stream of events is printed.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Columns for people.
    Table,
    /// JSON for scripts (one object per line for streams).
    Json,
}

impl Format {
    /// `chosen`, or else a table on a terminal and JSON in a pipe.
    pub fn or_detect(chosen: Option<Format>) -> Format {
        chosen.unwrap_or_else(|| {
            if io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            }
        })
    }
}

/// Milliseconds since the Unix epoch, with a fraction.
pub fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Prints `{"t": …, "event": event, …fields}` as one line on stdout and
/// flushes it. `t` and `event` come first, whatever their names sort as,
/// so that a person reading the stream sees when and what at a glance.
pub fn json_line(event: &str, fields: Value) -> io::Result<()> {
    let line = line_text(now_ms(), event, fields);
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The text of one JSON line: `t`, `event`, then `fields` (an object; any
/// other value is ignored) without any `t` or `event` of their own.
fn line_text(t: f64, event: &str, fields: Value) -> String {
    let mut text = json!({"t": t}).to_string();
    text.pop(); // the closing brace
    text.push_str(",\"event\":");
    text.push_str(&Value::from(event).to_string());
    if let Value::Object(mut fields) = fields {
        fields.remove("t");
        fields.remove("event");
        if !fields.is_empty() {
            let rest = Value::Object(fields).to_string();
            text.push(',');
            text.push_str(&rest[1..rest.len() - 1]);
        }
    }
    text.push('}');
    text
}

/// Prints rows as left-aligned columns under `header`, two spaces apart,
/// as `serf members` does.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut header.iter().copied())?;
    for row in rows {
        line(&mut row.iter().map(String::as_str))?;
    }
    out.flush()
}

/// One node as JSON, the shape every command and the sidecar's `/nodes`
/// use: `id`, `host_name`, `addr`, `weight`, `master`, `eligible`,
/// `last_heard_ms` (how long ago its last hello came), `hello_interval_ms`,
/// `epoch` (`{n, master}` or null) and `info` (what it advertises, or
/// null).
pub fn peer_json(peer: &shoal::Peer, now: std::time::Instant) -> Value {
    json!({
        "id": peer.id.as_str(),
        "host_name": peer.host_name,
        "addr": peer.addr.to_string(),
        "weight": peer.weight,
        "master": peer.is_master,
        "eligible": peer.is_master_eligible,
        "last_heard_ms": now.saturating_duration_since(peer.last_seen).as_millis() as u64,
        "hello_interval_ms": peer.hello_interval.as_millis() as u64,
        "epoch": peer.epoch.as_ref().map(epoch_json),
        "info": peer.info,
    })
}

/// This node as JSON, in [`peer_json`]'s shape where it applies (`self`
/// true; no `addr` or `last_heard_ms`).
pub fn me_json(me: &shoal::LocalState, host_name: &str) -> Value {
    json!({
        "id": me.id.as_str(),
        "host_name": host_name,
        "self": true,
        "weight": me.weight,
        "master": me.is_master,
        "eligible": me.is_master_eligible,
        "epoch": me.epoch.as_ref().map(epoch_json),
        "info": me.info,
    })
}

fn epoch_json(epoch: &shoal::Epoch) -> Value {
    json!({"n": epoch.n, "master": epoch.master.as_str()})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_starts_with_t_and_event_and_is_one_json_object() {
        let text = line_text(
            1.5,
            "join",
            json!({"node": {"id": "a"}, "alpha": 1, "t": 9}),
        );
        assert_eq!(
            text,
            r#"{"t":1.5,"event":"join","alpha":1,"node":{"id":"a"}}"#
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["node"]["id"], "a");
        assert_eq!(
            line_text(2.0, "x\"y", Value::Null),
            r#"{"t":2.0,"event":"x\"y"}"#
        );
    }
}
