//! The live view's model: the nodes, the registrations, the recent events
//! (flashes) and channel messages, updated from the library's events and
//! turned into rows of text. It knows nothing of terminals, so that it is
//! tested on its own; [`view`](super::view) draws what it returns.
//!
//! Its memory is bounded: the node table and the registrations mirror the
//! library's (which bounds both: `max_nodes`, `RegistryLimits`), flashes
//! and messages are rings of [`MAX_FLASHES`] and [`MAX_MESSAGES`], and a
//! message keeps at most [`MESSAGE_CHARS`] characters of its data.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shoal::registry::{Registration, RegistryEvent};
use shoal::{ChannelMessage, Event, LocalState, Peer, Removal};

use super::select::Selection;
use crate::text::{ago, clean, fit, host_port, short_id, weight};

/// How long an event stays in the list of recent events: long enough to
/// be read at a glance, short enough that the list shows what is new.
pub const FLASH_FOR: Duration = Duration::from_secs(4);
/// Recent events held at most (a burst of joins scrolls the oldest out).
pub const MAX_FLASHES: usize = 64;
/// Channel messages held at most (the pane shows the newest that fit).
pub const MAX_MESSAGES: usize = 100;
/// Characters of a message's data kept for the pane.
pub const MESSAGE_CHARS: usize = 512;

/// What kind of news a flash is, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node joined, or a registration came online.
    Arrived,
    /// A node left, or a registration went offline.
    Departed,
    /// A node (or this one) became master, or stepped down.
    Master,
    /// A node's advertisement or a registration changed.
    Changed,
    /// The watcher missed events, or packets were refused.
    Warning,
}

/// One recent event.
#[derive(Debug, Clone)]
pub struct Flash {
    /// When it happened.
    pub at: Instant,
    /// What kind of news it is.
    pub kind: Kind,
    /// One line, cleaned for the terminal.
    pub text: String,
}

/// One channel message, as the messages pane shows it.
#[derive(Debug, Clone)]
pub struct MessageRow {
    /// When it arrived.
    pub at: Instant,
    /// The sender, shortened.
    pub from: String,
    /// Its data as JSON, cleaned and cut to [`MESSAGE_CHARS`].
    pub data: String,
}

/// One row of the nodes table, every cell text.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    /// The id, shortened.
    pub id: String,
    /// The host name; this node's ends with `(this node)`.
    pub host: String,
    /// Where its datagrams come from.
    pub addr: String,
    /// Its election weight.
    pub weight: String,
    /// It is a master.
    pub master: bool,
    /// It is this node.
    pub me: bool,
    /// How long ago it was last heard (`-` for this node).
    pub heard: String,
    /// What it advertises, as JSON (`-` for nothing); whole, the view
    /// cuts it to fit.
    pub info: String,
}

/// One row of the registrations table.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationRow {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `host:port`.
    pub addr: String,
    /// The owner's host name (`meta.hostname`), `-` when not given.
    pub owner: String,
    /// How long ago its owner last confirmed it (`lastKnown`).
    pub last_known: String,
}

/// Everything the live view shows.
#[derive(Debug)]
pub struct Model {
    selection: Selection,
    host_name: String,
    my_addr: Option<SocketAddr>,
    me: Option<LocalState>,
    peers: HashMap<String, Peer>,
    registrations: BTreeMap<String, Registration>,
    flashes: VecDeque<Flash>,
    messages: VecDeque<MessageRow>,
}

impl Model {
    /// An empty model for a watcher on a host called `host_name`, whose
    /// peers reach it at `my_addr`, showing what `selection` lets through.
    pub fn new(selection: Selection, host_name: String, my_addr: Option<SocketAddr>) -> Model {
        Model {
            selection,
            host_name,
            my_addr,
            me: None,
            peers: HashMap::new(),
            registrations: BTreeMap::new(),
            flashes: VecDeque::new(),
            messages: VecDeque::new(),
        }
    }

    /// The filters in force.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Replaces the node table with the library's (`Discovery::me` and
    /// `Discovery::nodes`): the events say what changed, the table also
    /// has when each node was last heard.
    pub fn sync_nodes(&mut self, me: LocalState, peers: Vec<Peer>) {
        self.me = Some(me);
        self.peers = peers
            .into_iter()
            .map(|p| (p.id.as_str().to_owned(), p))
            .collect();
    }

    /// Replaces the registrations with a query's answer.
    pub fn set_registrations(&mut self, registrations: Vec<Registration>) {
        self.registrations = registrations
            .into_iter()
            .filter(|r| self.selection.registration(r))
            .map(|r| (r.id().to_owned(), r))
            .collect();
    }

    /// Applies a node event: updates the table, and flashes it when the
    /// filters let it through.
    pub fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Added(p) | Event::Updated(p) | Event::Master(p) => {
                self.peers.insert(p.id.as_str().to_owned(), p.clone());
            }
            Event::Removed(p, _) => {
                self.peers.remove(p.id.as_str());
            }
            Event::Promotion(me) | Event::Demotion(me) => self.me = Some(me.clone()),
            Event::Message(m) => return self.apply_message(m, now),
            _ => {}
        }
        if !self.selection.event(event, &self.host_name) {
            return;
        }
        let (kind, text) = match event {
            Event::Added(p) => (
                Kind::Arrived,
                format!("joined: {} at {}", node_label(p), p.addr),
            ),
            Event::Removed(p, why) => {
                let why = match why {
                    Removal::Goodbye => "said goodbye",
                    Removal::Timeout => "timed out",
                    _ => "removed",
                };
                (Kind::Departed, format!("left: {} ({why})", node_label(p)))
            }
            Event::Master(p) => (Kind::Master, format!("master: {}", node_label(p))),
            Event::Updated(p) => {
                let info = p
                    .info
                    .as_ref()
                    .map_or("nothing".to_owned(), |i| clean(&i.to_string()));
                (
                    Kind::Changed,
                    format!("advertises: {} {}", node_label(p), fit(&info, 200)),
                )
            }
            Event::Promotion(_) => (Kind::Master, "this node became master".to_owned()),
            Event::Demotion(_) => (Kind::Master, "this node stepped down".to_owned()),
            Event::Lagged(n) => (
                Kind::Warning,
                format!("missed {n} node events (the table is re-read)"),
            ),
            other => (Kind::Warning, clean(&other.to_string())),
        };
        self.flash(now, kind, text);
    }

    /// Applies a registry event; `quiet` updates the table without a flash
    /// (for the registrations a watch starts with, which are not news).
    /// Returns true when the watcher lost events and should query the
    /// registry again.
    pub fn apply_registry(&mut self, event: &RegistryEvent, now: Instant, quiet: bool) -> bool {
        let selected = self.selection.registry_event(event);
        let (kind, text) = match event {
            RegistryEvent::Online(r) | RegistryEvent::Updated(r) => {
                if !selected {
                    return false;
                }
                self.registrations.insert(r.id().to_owned(), r.clone());
                let (kind, what) = match event {
                    RegistryEvent::Online(_) => (Kind::Arrived, "online"),
                    _ => (Kind::Changed, "updated"),
                };
                (kind, format!("{what}: {}", registration_label(r)))
            }
            RegistryEvent::Offline {
                registration: r,
                reason,
            } => {
                self.registrations.remove(r.id());
                if !selected {
                    return false;
                }
                (
                    Kind::Departed,
                    format!("offline: {} ({reason})", registration_label(r)),
                )
            }
            RegistryEvent::Lagged(n) => {
                if selected {
                    self.flash(
                        now,
                        Kind::Warning,
                        format!("missed {n} registry events (re-reading it)"),
                    );
                }
                return true;
            }
            _ => return false,
        };
        if !quiet {
            self.flash(now, kind, text);
        }
        false
    }

    /// Adds a channel message to the messages pane.
    pub fn apply_message(&mut self, message: &ChannelMessage, now: Instant) {
        let data = fit(&clean(&message.data.to_string()), MESSAGE_CHARS);
        if self.messages.len() == MAX_MESSAGES {
            self.messages.pop_front();
        }
        self.messages.push_back(MessageRow {
            at: now,
            from: short_id(message.from.as_str()),
            data,
        });
    }

    /// Notes that the watcher missed `n` messages of its channel.
    pub fn missed_messages(&mut self, n: u64, now: Instant) {
        self.flash(now, Kind::Warning, format!("missed {n} channel messages"));
    }

    fn flash(&mut self, at: Instant, kind: Kind, text: String) {
        if self.flashes.len() == MAX_FLASHES {
            self.flashes.pop_front();
        }
        self.flashes.push_back(Flash { at, kind, text });
    }

    /// Forgets the flashes older than [`FLASH_FOR`].
    pub fn expire(&mut self, now: Instant) {
        while self
            .flashes
            .front()
            .is_some_and(|f| now.saturating_duration_since(f.at) >= FLASH_FOR)
        {
            self.flashes.pop_front();
        }
    }

    /// The recent events, newest first.
    pub fn flashes(&self) -> impl Iterator<Item = &Flash> {
        self.flashes.iter().rev()
    }

    /// The channel messages, newest first.
    pub fn messages(&self) -> impl Iterator<Item = &MessageRow> {
        self.messages.iter().rev()
    }

    /// How many nodes the filters let through, this one included.
    pub fn node_count(&self) -> usize {
        let me = self
            .me
            .as_ref()
            .is_some_and(|me| self.selection.me(me, &self.host_name));
        usize::from(me)
            + self
                .peers
                .values()
                .filter(|p| self.selection.peer(p))
                .count()
    }

    /// How many of those are masters.
    pub fn master_count(&self) -> usize {
        let me = self
            .me
            .as_ref()
            .is_some_and(|me| me.is_master && self.selection.me(me, &self.host_name));
        usize::from(me)
            + self
                .peers
                .values()
                .filter(|p| p.is_master && self.selection.peer(p))
                .count()
    }

    /// How many registrations are shown.
    pub fn registration_count(&self) -> usize {
        self.registrations.len()
    }

    /// The first `limit` rows of the nodes table: this node, then masters,
    /// then the rest, by host name and id.
    pub fn node_rows(&self, now: Instant, limit: usize) -> Vec<NodeRow> {
        let mut rows = Vec::new();
        if let Some(me) = self
            .me
            .as_ref()
            .filter(|me| self.selection.me(me, &self.host_name))
        {
            rows.push(NodeRow {
                id: short_id(me.id.as_str()),
                host: format!("{} (this node)", clean(&self.host_name)),
                addr: self.my_addr.map_or("-".to_owned(), |a| a.to_string()),
                weight: weight(me.weight),
                master: me.is_master,
                me: true,
                heard: "-".to_owned(),
                info: info_text(me.info.as_ref()),
            });
        }
        let mut peers: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| self.selection.peer(p))
            .collect();
        peers.sort_by(|a, b| {
            (!a.is_master, &a.host_name, &a.id).cmp(&(!b.is_master, &b.host_name, &b.id))
        });
        rows.truncate(limit);
        // Only the rows that will be drawn are formatted (a LAN may hold
        // thousands of nodes; the screen shows a few dozen).
        let room = limit - rows.len();
        rows.extend(peers.into_iter().take(room).map(|p| NodeRow {
            id: short_id(p.id.as_str()),
            host: clean(&p.host_name),
            addr: p.addr.to_string(),
            weight: weight(p.weight),
            master: p.is_master,
            me: false,
            heard: ago(now.saturating_duration_since(p.last_seen)),
            info: info_text(p.info.as_ref()),
        }));
        rows
    }

    /// The first `limit` rows of the registrations table, in id order;
    /// `now_ms` is the time since the Unix epoch, for `lastKnown`.
    pub fn registration_rows(&self, now_ms: u64, limit: usize) -> Vec<RegistrationRow> {
        self.registrations
            .values()
            .take(limit)
            .map(|r| registration_row(r, now_ms))
            .collect()
    }
}

/// A registration's row (also `--once`'s table).
pub fn registration_row(r: &Registration, now_ms: u64) -> RegistrationRow {
    RegistrationRow {
        name: clean(r.name()),
        version: clean(r.version()),
        addr: host_port(r.host(), r.port()),
        owner: r
            .meta()
            .get("hostname")
            .and_then(serde_json::Value::as_str)
            .map_or("-".to_owned(), clean),
        last_known: match r.last_known() {
            0 => "-".to_owned(),
            ms => format!(
                "{} ago",
                ago(Duration::from_millis(now_ms.saturating_sub(ms)))
            ),
        },
    }
}

/// What a node advertises as one line of JSON, cleaned; `-` for nothing.
pub fn info_text(info: Option<&serde_json::Value>) -> String {
    info.map_or("-".to_owned(), |i| clean(&i.to_string()))
}

/// `3f2a1b9c… (web-1)`: how a flash names a node.
fn node_label(p: &Peer) -> String {
    format!("{} ({})", short_id(p.id.as_str()), clean(&p.host_name))
}

/// `kv@1.0.0 at 10.0.0.5:7000`: how a flash names a registration.
fn registration_label(r: &Registration) -> String {
    format!(
        "{}@{} at {}",
        clean(r.name()),
        clean(r.version()),
        host_port(r.host(), r.port())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal::registry::OfflineReason;
    use shoal::sim::SimNet;

    /// A simulated LAN of a heavy, a light and a watcher node (the last,
    /// not eligible), run until the heavy one is master. The simulator
    /// names their hosts sim0, sim1 and sim2.
    fn lan() -> (SimNet, [usize; 3]) {
        let mut net = SimNet::new(7);
        let node = |w: f64, info: &str| {
            shoal::Config::builder()
                .weight(w)
                .advertise(serde_json::json!({"id": info}))
                .build()
                .unwrap()
        };
        let heavy = net.add_node(node(0.9, "heavy"));
        let light = net.add_node(node(0.1, "light"));
        let watcher = net.add_node(
            shoal::Config::builder()
                .master_eligible(false)
                .build()
                .unwrap(),
        );
        net.run_for(Duration::from_secs(3));
        (net, [heavy, light, watcher])
    }

    fn feed(model: &mut Model, net: &SimNet, i: usize, from: usize) -> usize {
        let events = &net.node(i).events;
        for (_, e) in &events[from..] {
            model.apply(e, net.now());
        }
        events.len()
    }

    #[test]
    fn events_fill_the_table_and_flash_joins_and_the_master() {
        let (net, [heavy, _, w]) = lan();
        let mut model = Model::new(Selection::default(), "watcher".into(), None);
        feed(&mut model, &net, w, 0);
        let rows = model.node_rows(net.now(), 10);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows[0].master && rows[0].info.contains("heavy"), "{rows:?}");
        assert!(!rows[1].master && rows[1].info.contains("light"));
        assert_eq!(rows[0].host, "sim0");
        assert_eq!(rows[0].id, short_id(net.node(heavy).protocol.id().as_str()));
        let texts: Vec<&str> = model.flashes().map(|f| f.text.as_str()).collect();
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("joined: ") && t.contains("sim1")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("master: ") && t.contains("sim0")),
            "{texts:?}"
        );

        // This node comes first once the table is synced, marked.
        let me = net.node(w).protocol.local();
        assert!(!me.is_master_eligible);
        let peers = net.node(w).protocol.peers().cloned().collect();
        model.sync_nodes(me, peers);
        let rows = model.node_rows(net.now(), 10);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].me && rows[0].host == "watcher (this node)" && rows[0].heard == "-");
        assert!(rows[1].master);
        assert_eq!(model.master_count(), 1);
        assert_eq!(model.node_rows(net.now(), 2).len(), 2, "the limit holds");
    }

    #[test]
    fn a_crashed_master_leaves_with_a_timeout_and_flashes_expire() {
        let (mut net, [heavy, _, w]) = lan();
        let mut model = Model::new(Selection::default(), "watcher".into(), None);
        let seen = feed(&mut model, &net, w, 0);
        net.crash(heavy);
        net.run_for(Duration::from_secs(5));
        feed(&mut model, &net, w, seen);
        let rows = model.node_rows(net.now(), 10);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].master && rows[0].info.contains("light"), "{rows:?}");
        let texts: Vec<&str> = model.flashes().map(|f| f.text.as_str()).collect();
        assert!(
            texts.iter().any(|t| t.starts_with("left: ")
                && t.contains("sim0")
                && t.ends_with("(timed out)")),
            "{texts:?}"
        );
        assert!(
            texts[0].starts_with("master: ") && texts[0].contains("sim1"),
            "newest first: {texts:?}"
        );
        model.expire(net.now() + FLASH_FOR);
        assert_eq!(model.flashes().count(), 0);
    }

    #[test]
    fn filters_pick_rows_and_flashes() {
        let (net, [_, _, w]) = lan();
        let only = |selection: Selection| {
            let mut model = Model::new(selection, "watcher".into(), None);
            feed(&mut model, &net, w, 0);
            model
        };
        let masters = only(Selection {
            name: None,
            master: true,
        });
        let rows = masters.node_rows(net.now(), 10);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].info.contains("heavy"));
        assert!(masters.flashes().all(|f| !f.text.contains("sim1")));
        let light = only(Selection {
            name: Some("light".into()),
            master: false,
        });
        let rows = light.node_rows(net.now(), 10);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].info.contains("light"));
        let by_host = only(Selection {
            name: Some("sim0".into()),
            master: false,
        });
        assert_eq!(by_host.node_rows(net.now(), 10)[0].host, "sim0");
    }

    #[test]
    fn registrations_come_and_go_with_reasons() {
        let mut model = Model::new(Selection::default(), "h".into(), None);
        let now = Instant::now();
        let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000)
            .meta("hostname", "box\x1b[31m")
            .build()
            .unwrap();
        assert!(!model.apply_registry(&RegistryEvent::Online(kv.clone()), now, false));
        let rows = model.registration_rows(0, 10);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (
                rows[0].name.as_str(),
                rows[0].version.as_str(),
                rows[0].addr.as_str()
            ),
            ("kv", "1.0.0", "10.0.0.5:7000")
        );
        assert_eq!(rows[0].owner, "box\\u{1b}[31m", "escaped");
        assert_eq!(
            model.flashes().next().unwrap().text,
            "online: kv@1.0.0 at 10.0.0.5:7000"
        );
        model.apply_registry(
            &RegistryEvent::Offline {
                registration: kv.clone(),
                reason: OfflineReason::Expired,
            },
            now,
            false,
        );
        assert_eq!(model.registration_count(), 0);
        assert_eq!(
            model.flashes().next().unwrap().text,
            "offline: kv@1.0.0 at 10.0.0.5:7000 (expired)"
        );
        assert!(
            model.apply_registry(&RegistryEvent::Lagged(2), now, false),
            "a lag asks for a query"
        );
        // Filtered by name: another name neither shows nor flashes.
        let mut model = Model::new(
            Selection {
                name: Some("web".into()),
                master: false,
            },
            "h".into(),
            None,
        );
        model.apply_registry(&RegistryEvent::Online(kv), now, false);
        assert_eq!(
            (model.registration_count(), model.flashes().count()),
            (0, 0)
        );
    }

    #[test]
    fn hostile_floods_stay_bounded() {
        let mut model = Model::new(Selection::default(), "h".into(), None);
        let now = Instant::now();
        for n in 0..10 * MAX_FLASHES as u64 {
            model.apply(&Event::Lagged(n), now);
        }
        assert_eq!(model.flashes().count(), MAX_FLASHES);
        let big = ChannelMessage::clone(&message(serde_json::json!("\u{1b}".repeat(2_000))));
        for _ in 0..2 * MAX_MESSAGES {
            model.apply_message(&big, now);
        }
        assert_eq!(model.messages().count(), MAX_MESSAGES);
        assert!(model
            .messages()
            .all(|m| m.data.chars().count() <= MESSAGE_CHARS));
    }

    /// A message from a real simulated node on channel "c".
    fn message(data: serde_json::Value) -> ChannelMessage {
        let mut net = SimNet::new(1);
        let a = net.add_node(shoal::Config::builder().build().unwrap());
        let b = net.add_node(shoal::Config::builder().build().unwrap());
        net.protocol_mut(b).join("c").unwrap();
        let now = net.now();
        net.protocol_mut(a).send(now, "c", &data).unwrap();
        net.poll(a);
        net.run_for(Duration::from_millis(10));
        net.node(b)
            .events
            .iter()
            .find_map(|(_, e)| match e {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            })
            .expect("delivered")
    }
}
