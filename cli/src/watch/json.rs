//! The JSON line for each event, as `shoal watch` prints them in a pipe or
//! with `--format json` (the names are listed in the module docs of
//! `watch`). Each function returns the event's name and its fields;
//! [`output::json_line`](crate::output::json_line) adds `t` and prints it.

use std::time::Instant;

use serde_json::{json, Value};
use shoal::registry::{Registration, RegistryEvent};
use shoal::{ChannelMessage, Event, Removal};

use crate::output::{me_json, peer_json};

/// A node event's name and fields; `host_name` is this node's (for
/// `promotion` and `demotion`).
pub fn event(event: &Event, host_name: &str, now: Instant) -> (&'static str, Value) {
    match event {
        Event::Added(p) => ("join", json!({"node": peer_json(p, now)})),
        Event::Updated(p) => ("update", json!({"node": peer_json(p, now)})),
        Event::Removed(p, why) => (
            "leave",
            json!({"node": peer_json(p, now), "reason": removal(*why)}),
        ),
        Event::Master(p) => ("master", json!({"node": peer_json(p, now)})),
        Event::Promotion(me) => ("promotion", json!({"node": me_json(me, host_name)})),
        Event::Demotion(me) => ("demotion", json!({"node": me_json(me, host_name)})),
        Event::Message(m) => message(m),
        Event::Lagged(n) => lagged("nodes", *n),
        Event::DataError { from, error } => (
            "data_error",
            json!({"from": from.to_string(), "error": error.to_string()}),
        ),
        Event::Unauthenticated {
            from,
            key_id,
            dropped,
            error,
        } => (
            "unauthenticated",
            json!({
                "from": from.to_string(),
                "key_id": key_id.map(|k| k.to_string()),
                "dropped": dropped,
                "error": error.to_string(),
            }),
        ),
        // `Event` is non-exhaustive: a kind added later is still reported.
        other => ("other", json!({"text": other.to_string()})),
    }
}

/// `goodbye` or `timeout`.
pub fn removal(why: Removal) -> &'static str {
    match why {
        Removal::Goodbye => "goodbye",
        Removal::Timeout => "timeout",
        _ => "other",
    }
}

/// A registry event's name and fields: `online`, `updated`, `offline` with
/// `reason` (`deregistered`, `expired`, `ownerGone`), or `lagged`.
pub fn registry_event(event: &RegistryEvent) -> (&'static str, Value) {
    match event {
        RegistryEvent::Online(r) => ("online", json!({"registration": registration(r)})),
        RegistryEvent::Updated(r) => ("updated", json!({"registration": registration(r)})),
        RegistryEvent::Offline {
            registration: r,
            reason,
        } => (
            "offline",
            json!({"registration": registration(r), "reason": reason}),
        ),
        RegistryEvent::Lagged(n) => lagged("registry", *n),
        other => ("other", json!({"text": other.to_string()})),
    }
}

/// A registration in Thalassa's shape (`id` and `lastKnown` included).
pub fn registration(r: &Registration) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// A channel message: `channel`, `from` (the sender's whole id), `addr`
/// and `data`.
pub fn message(m: &ChannelMessage) -> (&'static str, Value) {
    (
        "message",
        json!({
            "channel": m.channel,
            "from": m.from.as_str(),
            "addr": m.addr.to_string(),
            "data": m.data,
        }),
    )
}

/// `lagged`: this watcher fell behind `source` (`nodes`, `registry` or
/// `channel`) and lost `lost` events.
pub fn lagged(source: &str, lost: u64) -> (&'static str, Value) {
    ("lagged", json!({"source": source, "lost": lost}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::registry::OfflineReason;

    #[test]
    fn registry_events_carry_thalassa_shape_and_reason() {
        let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000)
            .build()
            .unwrap();
        let (name, fields) = registry_event(&RegistryEvent::Offline {
            registration: kv.clone(),
            reason: OfflineReason::OwnerGone,
        });
        assert_eq!(name, "offline");
        assert_eq!(fields["reason"], "ownerGone");
        assert_eq!(fields["registration"]["id"], "/kv/1.0.0/10.0.0.5/7000");
        let (name, fields) = registry_event(&RegistryEvent::Online(kv));
        assert_eq!(name, "online");
        assert_eq!(fields["registration"]["port"], 7000);
        let (name, fields) = registry_event(&RegistryEvent::Lagged(3));
        assert_eq!(
            (name, &fields["source"], &fields["lost"]),
            ("lagged", &json!("registry"), &json!(3))
        );
    }

    #[test]
    fn removals_are_named_for_scripts() {
        assert_eq!(removal(Removal::Goodbye), "goodbye");
        assert_eq!(removal(Removal::Timeout), "timeout");
        let (name, fields) = event(&Event::Lagged(2), "h", Instant::now());
        assert_eq!((name, &fields["lost"]), ("lagged", &json!(2)));
    }
}
