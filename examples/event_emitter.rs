//! A distributed event emitter: every process in a cluster can
//! `emit(event, data)` and every *other* process receives it. The Rust
//! counterpart of node-discovery's `examples/deventemitter`.
//!
//! How it works:
//!
//! * Every node starts a small TCP **hub** at startup and advertises its port
//!   in its hello (`{"app": "event-emitter", "id": ID, "hub": PORT}`), so
//!   whichever node wins the election can serve at once. Only the master's
//!   hub is used.
//! * Every other node connects to the master's hub (the address it heard the
//!   master's hello from, the port from its `info.hub`) and sends its emits
//!   there. The master relays each event to the other connected nodes in its
//!   audience (below) and delivers it to itself; its own emits go the same way.
//! * When the master goes away, discovery elects another and everyone
//!   reconnects to the new master's hub. Emits made while disconnected are
//!   queued (at most [`QUEUE_LIMIT`], oldest dropped first) and sent once
//!   connected again. A new master also keeps what it relays during its
//!   first moments ([`settle_window`]) for audience members that were still
//!   reconnecting, and hands it to them when they connect in that window.
//!
//! # Delivery guarantee
//!
//! A node *joins* the cluster, as far as an emitting node is concerned, at
//! the moment that node's discovery first hears its hello (it enters the
//! emitter's peer table; see [`Discovery::nodes`]). Each run of a process
//! is a new node (a new discovery id), even with the same `--id`. Then:
//!
//! * **A node never receives an event emitted before it joined.** `emit`
//!   records its *audience*, the discovery ids of the event-emitter nodes its
//!   node knows at that moment, and the hub hands the event only to those
//!   (a node started after the emit cannot be among them, however late a
//!   queued event or a new master's catch-up reaches the hub).
//! * **An event emitted while a node was connected is delivered to it at
//!   most once.** Each event passes through one hub, which hands it to each
//!   audience member at most once (live, or from the settle-window backlog).
//!   Receivers also drop any event whose (origin node, sequence number) is
//!   not newer than the last they delivered from that origin, so a hub that
//!   misbehaves cannot make them deliver twice either (memory: one entry per
//!   origin, at most [`DEDUP_ORIGINS`]).
//!
//! Delivery is not guaranteed: an event written to a master that dies
//! before reading it is lost, as are events past the queue limit (see
//! [`Outbox`]), events to a node too slow to read them, and events to nodes
//! that join after the emit. Ids (`--id`) must be unique: a node ignores
//! events whose origin is its id.
//!
//! On the hub connection every message is one line of JSON:
//! `{"hello": ID, "node": DISCOVERY_ID}` (node → hub, first),
//! `{"welcome": ID}` (hub → node, once registered), then events
//! `{"event": NAME, "data": VALUE, "origin": ID, "node": DISCOVERY_ID,
//! "seq": N, "to": [DISCOVERY_ID, ...]}` (node → hub; the hub drops `to` when
//! it relays them).
//!
//! # Trying it
//!
//! By default discovery stays on this host (broadcast 127.255.255.255, UDP
//! port 47320) and the hub listens on 127.0.0.1, so nothing is sent to or
//! reachable from the network. In two terminals (type `emit greeting {"text":"hi"}`):
//!
//! ```text
//! cargo run --example event_emitter -- --id a
//! cargo run --example event_emitter -- --id b
//! ```
//!
//! `--lan` uses the real LAN instead, with the library's defaults
//! (broadcast 255.255.255.255, UDP port 12345, the hub on every interface);
//! an explicit `--broadcast`, `--multicast`, `--port`, `--bind` or
//! `--hub-bind` wins over either default. On a LAN use a dedicated `--port`
//! per cluster and a `--key`. `--print-config` prints the settings and exits
//! without sending anything.
//!
//! The binary reads commands from stdin, one per line: `emit <event> [<json>]`,
//! and prints one JSON object per line, each with `t` (ms since the Unix
//! epoch) and `event`: `config` (the discovery settings), `ready`, `hub` (we
//! serve as master), `connected` (to the master's hub), `disconnected`,
//! `received`, `emitted`, `error`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use shoal::{Config, ConfigBuilder, Discovery, NodeId, Peer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Marks our hellos, so that a master running something else is not mistaken for a hub.
const APP: &str = "event-emitter";
/// Most events queued while disconnected; past it the oldest are dropped (and counted).
const QUEUE_LIMIT: usize = 1024;
/// Lines buffered per TCP connection: room for a full queue or backlog plus
/// live traffic. A peer that falls this far behind is disconnected rather
/// than slowing the hub down for everyone.
const WRITE_BUFFER: usize = 2 * QUEUE_LIMIT;
/// Longest line accepted from a connection, so a bad peer cannot make us buffer without end.
const MAX_LINE: usize = 1 << 20;
/// How often we retry reaching the master's hub (and re-check the election).
const RETRY: Duration = Duration::from_millis(250);
/// How long a connection attempt may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Most origins a receiver remembers for de-duplication. Past it, origins
/// that have left discovery are forgotten first; if all are still there,
/// events from further origins are dropped rather than risk a duplicate.
pub const DEDUP_ORIGINS: usize = 4096;
/// Without `--lan`: discovery broadcasts on the loopback interface only.
const HOST_BROADCAST: Ipv4Addr = Ipv4Addr::new(127, 255, 255, 255);
/// Without `--lan`: this example's own UDP port, so that the examples tried
/// side by side on one host do not join one another's clusters.
const HOST_PORT: u16 = 47_320;

/// One event on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The event name.
    pub event: String,
    /// Any JSON value.
    #[serde(default)]
    pub data: Value,
    /// The id of the node that emitted it.
    pub origin: String,
    /// The discovery id of the node that emitted it (this run of it).
    pub node: String,
    /// Counts that node's emits from 0: with `node`, it names the event.
    pub seq: u64,
    /// The audience: discovery ids of the nodes the emitter knew when it
    /// emitted. Only on the way to the hub, which relays to these alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

/// One line on a hub connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Line {
    Event(Frame),
    Hello { hello: String, node: String },
    Welcome { welcome: String },
}

impl Line {
    /// JSON plus a newline. serde_json escapes newlines inside strings, so a
    /// line never contains one.
    fn encode(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a line serializes");
        text.push('\n');
        text
    }

    fn decode(text: &str) -> Option<Line> {
        serde_json::from_str(text).ok()
    }
}

/// What the emitter tells its user.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// An event emitted by another node.
    Event(Frame),
    /// Connected to the master's hub (`master` is its id); `flushed` queued
    /// events were sent, `dropped` were lost to the queue limit.
    Connected {
        master: String,
        flushed: usize,
        dropped: u64,
    },
    /// This node is master and serves the hub; queued events went to its backlog.
    Serving { flushed: usize, dropped: u64 },
    /// The hub is gone (or we stopped serving it); emits are queued until the next
    /// `Connected` or `Serving`.
    Disconnected { reason: String },
}

/// The user's handle: emit events, and read [`Notice`]s from the receiver
/// that [`Emitter::start`] returns.
pub struct Emitter {
    id: String,
    /// Our discovery: who is in the audience of an emit.
    node: Discovery,
    /// Our discovery id, as a string.
    node_id: String,
    /// The sequence number of our next emit.
    seq: AtomicU64,
    commands: mpsc::UnboundedSender<Frame>,
    task: JoinHandle<()>,
    hub_port: u16,
}

impl Emitter {
    /// Starts a hub listener on `hub_bind`, then discovery with `config`
    /// (its advertised value is replaced by our hub's address).
    pub async fn start(
        id: String,
        config: ConfigBuilder,
        hub_bind: IpAddr,
    ) -> Result<(Emitter, mpsc::UnboundedReceiver<Notice>), Box<dyn std::error::Error>> {
        // Listen before the first hello: peers may connect as soon as they hear it.
        let listener = TcpListener::bind((hub_bind, 0)).await?;
        let hub_port = listener.local_addr()?.port();
        let config = config
            .advertise(json!({ "app": APP, "id": id, "hub": hub_port }))
            .build()?;
        let settle = settle_window(&config);
        let node = Discovery::start(config).await?;
        let node_id = node.id().as_str().to_owned();

        // emit() never waits; the hub task never blocks either, so this stays short.
        let (commands, commands_rx) = mpsc::unbounded_channel();
        // Unbounded on purpose: a bounded channel would make the hub choose between
        // stalling the whole cluster on a slow reader and dropping events.
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let hub = Hub {
            id: id.clone(),
            node_id: node_id.clone(),
            node: node.clone(),
            notices,
            internal,
            settle,
            outbox: Outbox::default(),
            upstream: None,
            dialing: None,
            serving: None,
            foreign_master: None,
            next_conn: 0,
            delivered: Dedup::default(),
        };
        let task = tokio::spawn(hub.run(listener, commands_rx, internal_rx));
        let emitter = Emitter {
            id,
            node,
            node_id,
            seq: AtomicU64::new(0),
            commands,
            task,
            hub_port,
        };
        Ok((emitter, notices_rx))
    }

    /// Sends `data` as `event` to every other node in the cluster that has
    /// joined it by now, that is, that our discovery knows (queued while
    /// there is no hub to send it to).
    pub fn emit(&self, event: &str, data: Value) {
        // The audience is fixed here, at the call: a node that joins later,
        // even before a queued event leaves, is not in it.
        let to = self
            .node
            .nodes()
            .into_iter()
            .filter(|p| p.info.as_ref().and_then(|i| i.get("app")) == Some(&json!(APP)))
            .map(|p| p.id.as_str().to_owned())
            .collect();
        let frame = Frame {
            event: event.to_owned(),
            data,
            origin: self.id.clone(),
            node: self.node_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            to,
        };
        // Fails only once the hub task has stopped, which is shutdown.
        let _ = self.commands.send(frame);
    }

    /// The TCP port of our hub.
    pub fn hub_port(&self) -> u16 {
        self.hub_port
    }

    /// Our discovery id: what other nodes put in the audience of their emits.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Closes every connection and stops discovery.
    pub async fn shutdown(self) {
        drop(self.commands); // the hub task ends when its command channel closes
        let _ = self.task.await;
    }
}

/// How long a new master keeps what it relays for audience members that connect late.
/// Nodes learn of a new master from its hellos (one is sent at promotion, more
/// every hello interval) and may still be timing the old one out.
fn settle_window(config: &Config) -> Duration {
    let learn = config.master_timeout() * 2 + config.hello_interval() * 5;
    learn.max(Duration::from_secs(5))
}

/// Events emitted while no hub is reachable, oldest first.
#[derive(Default)]
struct Outbox {
    frames: VecDeque<Frame>,
    /// Dropped because the queue was full, since the last flush.
    dropped: u64,
}

impl Outbox {
    fn push(&mut self, frame: Frame) {
        if self.frames.len() == QUEUE_LIMIT {
            self.frames.pop_front();
            self.dropped += 1;
        }
        self.frames.push_back(frame);
    }

    /// Everything queued, and how many were dropped; resets both.
    fn take(&mut self) -> (Vec<Frame>, u64) {
        let dropped = std::mem::take(&mut self.dropped);
        (self.frames.drain(..).collect(), dropped)
    }
}

/// Aborts a task when dropped, so that forgetting a connection ends its tasks.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One TCP connection: lines go out through a writer task, come in through a
/// reader task that reports to the hub. Dropping it closes the connection
/// (the writer sends what it has, then shuts down).
struct Conn {
    id: u64,
    lines: mpsc::Sender<String>,
    _reader: AbortOnDrop,
}

impl Conn {
    /// Queues a line; false if the peer is too slow or gone.
    fn send(&self, line: String) -> bool {
        self.lines.try_send(line).is_ok()
    }
}

/// Who a connected node said it is.
struct Member {
    /// Its `--id`: the origin of its events.
    id: String,
    /// Its discovery id: how audiences name it.
    node: String,
}

/// A node connected to our hub.
struct Client {
    conn: Conn,
    /// Who it is, once it said hello. Events go only to clients that did.
    member: Option<Member>,
}

/// Our connection to the master's hub.
struct Upstream {
    master: NodeId,
    conn: Conn,
    /// The master's id, once it welcomed us; until then we keep queueing.
    welcomed: Option<String>,
}

/// An event relayed during the settle window, and the members of its
/// audience it has not been handed to yet.
struct Pending {
    frame: Frame,
    waiting: HashSet<String>,
}

/// Our hub while we are master.
struct Serving {
    since: Instant,
    clients: HashMap<u64, Client>,
    /// What we relayed during the settle window, for audience members that
    /// connect late. Each is handed to a member at most once.
    backlog: VecDeque<Pending>,
}

impl Serving {
    /// Welcomes the node on `conn`: from now on it gets the events whose
    /// audience it is in.
    fn register(&mut self, conn: u64, member: Member, our_id: &str, settle: Duration) {
        // A node that reconnects replaces its old connection, which may not have closed yet.
        self.clients.retain(|&c, client| {
            c == conn
                || client
                    .member
                    .as_ref()
                    .map_or(true, |m| m.id != member.id && m.node != member.node)
        });
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        let welcome = Line::Welcome {
            welcome: our_id.to_owned(),
        };
        let mut ok = client.conn.send(welcome.encode());
        // It was still reconnecting while these were relayed. Only events it
        // was in the audience of, and that it has not been handed yet.
        if self.since.elapsed() < settle {
            for pending in &mut self.backlog {
                if pending.waiting.remove(&member.node) {
                    ok = ok
                        && client
                            .conn
                            .send(Line::Event(pending.frame.clone()).encode());
                }
            }
        }
        client.member = Some(member);
        if !ok {
            self.clients.remove(&conn); // too slow already
        }
    }
}

/// The last sequence number delivered from each origin node, so that an
/// event is delivered at most once even if a hub hands it over twice.
/// Events of one origin reach us in the order it emitted them (one
/// connection to one hub at a time, relayed in order), so one number per
/// origin is enough; a late one is dropped, which at most once allows.
#[derive(Default)]
struct Dedup {
    last: HashMap<String, u64>,
}

impl Dedup {
    /// True if `frame` is new; then it counts as delivered. `live` says which
    /// origins may be forgotten when the table is full.
    fn first_time(&mut self, frame: &Frame, live: impl FnOnce() -> HashSet<String>) -> bool {
        if let Some(last) = self.last.get_mut(&frame.node) {
            if frame.seq <= *last {
                return false;
            }
            *last = frame.seq;
            return true;
        }
        if self.last.len() >= DEDUP_ORIGINS {
            // A node that left discovery is gone for good (a restart is a new node).
            let live = live();
            self.last.retain(|node, _| live.contains(node));
            if self.last.len() >= DEDUP_ORIGINS {
                return false;
            }
        }
        self.last.insert(frame.node.clone(), frame.seq);
        true
    }
}

/// What connection tasks report to the hub task.
enum Internal {
    Line { conn: u64, line: Line },
    Closed { conn: u64 },
    Dialed { master: NodeId, stream: TcpStream },
}

/// The hub task's state. One task owns it all, so there are no locks; it
/// never waits on a peer (writes go through per-connection buffers).
struct Hub {
    id: String,
    /// Our discovery id: events whose audience lacks it are not for us.
    node_id: String,
    node: Discovery,
    notices: mpsc::UnboundedSender<Notice>,
    internal: mpsc::UnboundedSender<Internal>,
    settle: Duration,
    outbox: Outbox,
    upstream: Option<Upstream>,
    dialing: Option<(NodeId, AbortOnDrop)>,
    serving: Option<Serving>,
    /// A master we cannot use (it advertises no hub); reported once.
    foreign_master: Option<NodeId>,
    next_conn: u64,
    delivered: Dedup,
}

impl Hub {
    async fn run(
        mut self,
        listener: TcpListener,
        mut commands: mpsc::UnboundedReceiver<Frame>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut events = self.node.events();
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(frame) => self.emit(frame),
                    None => break,
                },
                // Whatever the event (Master, Promotion, Removed, Lagged, ...),
                // the answer is the same: look at who is master now.
                event = events.recv() => match event {
                    Some(_) => self.reconcile(),
                    None => break,
                },
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        self.accept(stream);
                    }
                }
                Some(message) = internal.recv() => self.handle(message),
                _ = retry.tick() => self.reconcile(),
            }
        }
        // Drop the connections before discovery stops.
        self.upstream = None;
        self.serving = None;
        self.node.shutdown().await;
    }

    /// Moves towards the state discovery says we should be in: serving the
    /// hub if we are master, else connected to the master's hub.
    fn reconcile(&mut self) {
        if self.node.me().is_master {
            if self.serving.is_none() {
                self.start_serving();
            }
            return;
        }
        if self.serving.take().is_some() {
            self.notify(Notice::Disconnected {
                reason: "no longer master".into(),
            });
        }
        // Several masters only during a partition heal; the heaviest will stay.
        let master = self
            .node
            .nodes()
            .into_iter()
            .filter(|p| p.is_master)
            .max_by(|a, b| a.weight.total_cmp(&b.weight).then(a.id.cmp(&b.id)));
        let Some(master) = master else {
            self.dialing = None;
            self.drop_upstream("no master");
            return;
        };
        if self
            .upstream
            .as_ref()
            .is_some_and(|u| u.master == master.id)
        {
            return;
        }
        self.drop_upstream("the master changed");
        if self
            .dialing
            .as_ref()
            .is_some_and(|(id, _)| *id == master.id)
        {
            return; // a connection attempt is under way
        }
        self.dialing = None;
        let Some(addr) = hub_addr(&master) else {
            if self.foreign_master.as_ref() != Some(&master.id) {
                self.foreign_master = Some(master.id.clone());
                self.notify(Notice::Disconnected {
                    reason: format!("the master {} runs no {APP} hub", master.id),
                });
            }
            return;
        };
        let report = self.internal.clone();
        let id = master.id.clone();
        let task = tokio::spawn(async move {
            // A failure is not reported: the next retry tick dials again.
            if let Ok(Ok(stream)) =
                tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await
            {
                let _ = report.send(Internal::Dialed { master: id, stream });
            }
        });
        self.dialing = Some((master.id, AbortOnDrop(task)));
    }

    fn start_serving(&mut self) {
        self.dialing = None;
        self.drop_upstream("we became master");
        let (queued, dropped) = self.outbox.take();
        let flushed = queued.len();
        self.serving = Some(Serving {
            since: Instant::now(),
            clients: HashMap::new(),
            backlog: VecDeque::new(),
        });
        self.notify(Notice::Serving { flushed, dropped });
        // Nobody is connected yet: these go to the backlog, replayed as nodes connect.
        for frame in queued {
            self.relay(frame);
        }
    }

    fn drop_upstream(&mut self, reason: &str) {
        if let Some(upstream) = self.upstream.take() {
            if upstream.welcomed.is_some() {
                self.notify(Notice::Disconnected {
                    reason: reason.into(),
                });
            }
        }
    }

    fn emit(&mut self, frame: Frame) {
        if self.serving.is_some() {
            self.relay(frame);
            return;
        }
        match &self.upstream {
            Some(Upstream {
                conn,
                welcomed: Some(_),
                ..
            }) => {
                if !conn.send(Line::Event(frame.clone()).encode()) {
                    // Too slow or gone: keep the event and reconnect.
                    self.outbox.push(frame);
                    self.drop_upstream("the hub connection fell behind");
                }
            }
            _ => self.outbox.push(frame),
        }
    }

    /// As master: delivers `frame` to ourselves and to every registered
    /// client in its audience but its origin, each at most once; keeps it
    /// for the audience members not connected yet during the settle window.
    fn relay(&mut self, mut frame: Frame) {
        let mut waiting: HashSet<String> = std::mem::take(&mut frame.to).into_iter().collect();
        waiting.remove(&frame.node);
        if waiting.remove(&self.node_id) {
            self.deliver(frame.clone());
        }
        // Kept for late members only while the window lasts, and only for
        // nodes our discovery knows (only those can connect in time): that
        // bounds the backlog by our peer table, whatever audience a client claims.
        let settling = self
            .serving
            .as_ref()
            .is_some_and(|s| s.since.elapsed() < self.settle);
        let known: HashSet<String> = match settling {
            true => self
                .node
                .nodes()
                .into_iter()
                .map(|p| p.id.as_str().to_owned())
                .collect(),
            false => HashSet::new(),
        };
        let Some(serving) = &mut self.serving else {
            return;
        };
        let line = Line::Event(frame.clone()).encode();
        serving.clients.retain(|_, client| match &client.member {
            // Not registered yet (no hello): it gets the backlog when it registers.
            None => true,
            Some(member) if !waiting.remove(&member.node) => true,
            Some(_) => client.conn.send(line.clone()), // one that falls behind is dropped
        });
        if settling {
            waiting.retain(|node| known.contains(node));
            if waiting.is_empty() {
                return;
            }
            if serving.backlog.len() == QUEUE_LIMIT {
                serving.backlog.pop_front();
            }
            serving.backlog.push_back(Pending { frame, waiting });
        } else {
            serving.backlog = VecDeque::new(); // the window is over: free it
        }
    }

    /// Hands an event to our user, unless it is ours or already delivered.
    fn deliver(&mut self, frame: Frame) {
        if frame.origin == self.id {
            return;
        }
        let node = &self.node;
        let live = || {
            node.nodes()
                .into_iter()
                .map(|p| p.id.as_str().to_owned())
                .collect()
        };
        if self.delivered.first_time(&frame, live) {
            self.notify(Notice::Event(frame));
        }
    }

    fn accept(&mut self, stream: TcpStream) {
        // Discovery may have promoted us a moment before we saw the event.
        self.reconcile();
        if self.serving.is_none() {
            return; // not master: dropping the stream closes it, the node retries elsewhere
        }
        let conn = self.open(stream);
        if let Some(serving) = &mut self.serving {
            serving
                .clients
                .insert(conn.id, Client { conn, member: None });
        }
    }

    fn handle(&mut self, message: Internal) {
        match message {
            Internal::Dialed { master, stream } => {
                if !self.dialing.as_ref().is_some_and(|(id, _)| *id == master) {
                    return; // stale: we have moved on
                }
                self.dialing = None;
                let conn = self.open(stream);
                if conn.send(
                    Line::Hello {
                        hello: self.id.clone(),
                        node: self.node_id.clone(),
                    }
                    .encode(),
                ) {
                    self.upstream = Some(Upstream {
                        master,
                        conn,
                        welcomed: None,
                    });
                }
            }
            Internal::Closed { conn } => {
                if self.upstream.as_ref().is_some_and(|u| u.conn.id == conn) {
                    // Retried on the next tick, to the same master or a new one.
                    self.drop_upstream("the hub closed the connection");
                } else if let Some(serving) = &mut self.serving {
                    serving.clients.remove(&conn);
                }
            }
            Internal::Line { conn, line } => self.handle_line(conn, line),
        }
    }

    fn handle_line(&mut self, conn: u64, line: Line) {
        // From the master's hub?
        if let Some(upstream) = self.upstream.as_mut().filter(|u| u.conn.id == conn) {
            match line {
                Line::Welcome { welcome } if upstream.welcomed.is_none() => {
                    upstream.welcomed = Some(welcome.clone());
                    let (queued, dropped) = self.outbox.take();
                    let flushed = queued.len();
                    for frame in queued {
                        self.emit(frame);
                    }
                    self.notify(Notice::Connected {
                        master: welcome,
                        flushed,
                        dropped,
                    });
                }
                Line::Event(frame) => self.deliver(frame),
                _ => {}
            }
            return;
        }
        // From a node connected to our hub?
        let Some(serving) = &mut self.serving else {
            return;
        };
        let Some(client) = serving.clients.get(&conn) else {
            return;
        };
        match (line, &client.member) {
            (Line::Hello { hello, node }, None) => {
                let member = Member { id: hello, node };
                serving.register(conn, member, &self.id, self.settle);
            }
            // A node speaks only for itself: the ids it said hello with.
            (Line::Event(frame), Some(m)) if frame.origin == m.id && frame.node == m.node => {
                self.relay(frame)
            }
            _ => {}
        }
    }

    /// Starts the reader and writer tasks of a new connection.
    fn open(&mut self, stream: TcpStream) -> Conn {
        let id = self.next_conn;
        self.next_conn += 1;
        let _ = stream.set_nodelay(true); // events are small and latency matters
        let (read, write) = stream.into_split();
        let (lines, outgoing) = mpsc::channel(WRITE_BUFFER);
        tokio::spawn(write_lines(write, outgoing));
        let reader = tokio::spawn(read_lines(id, read, self.internal.clone()));
        Conn {
            id,
            lines,
            _reader: AbortOnDrop(reader),
        }
    }

    fn notify(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }
}

/// Where the master's hub listens: the address its hellos come from, the port it advertises.
fn hub_addr(master: &Peer) -> Option<SocketAddr> {
    let info = master.info.as_ref()?;
    if info.get("app")? != APP {
        return None;
    }
    let port = u16::try_from(info.get("hub")?.as_u64()?).ok()?;
    Some(SocketAddr::new(master.addr.ip(), port))
}

/// Reads lines until EOF, an error, a line longer than [`MAX_LINE`] or one
/// that is not ours; then reports the connection closed.
async fn read_lines(conn: u64, read: OwnedReadHalf, hub: mpsc::UnboundedSender<Internal>) {
    let mut read = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let limit = (MAX_LINE + 1) as u64;
        match (&mut read).take(limit).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) if buf.last() != Some(&b'\n') => break, // too long, or cut off by EOF
            Ok(_) => {}
        }
        let Some(line) = std::str::from_utf8(&buf).ok().and_then(Line::decode) else {
            break;
        };
        if hub.send(Internal::Line { conn, line }).is_err() {
            return;
        }
    }
    let _ = hub.send(Internal::Closed { conn });
}

/// Writes queued lines, flushing whenever the queue is empty. Ends when the
/// connection is dropped (then shuts the socket down) or a write fails.
async fn write_lines(write: OwnedWriteHalf, mut lines: mpsc::Receiver<String>) {
    let mut write = BufWriter::new(write);
    while let Some(line) = lines.recv().await {
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
        while let Ok(line) = lines.try_recv() {
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
        if write.flush().await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

// ---------------------------------------------------------------------------
// The command-line program: flags, stdin commands, JSON lines on stdout.

#[derive(Parser, Debug)]
#[command(
    about = "A distributed event emitter on shoal; reads `emit <event> <json>` lines",
    long_about = "A distributed event emitter on shoal; reads `emit <event> <json>` lines.\n\n\
        By default everything stays on this host: discovery broadcasts to \
        127.255.255.255 on UDP port 47320 and the hub listens on 127.0.0.1. \
        --lan uses the real LAN with shoal's defaults (255.255.255.255, UDP port \
        12345, the hub on every interface). An explicit --broadcast, --multicast, \
        --port, --bind or --hub-bind wins over either default."
)]
struct Args {
    /// This node's id, carried as the origin of its events (default host-pid).
    #[arg(long)]
    id: Option<String>,
    /// Use the real LAN: broadcast 255.255.255.255, UDP port 12345, the hub
    /// on every interface (shoal's defaults). Without it nothing leaves this host.
    #[arg(long)]
    lan: bool,
    /// Discovery UDP port; one per cluster (default 47320; 12345 with --lan).
    #[arg(long)]
    port: Option<u16>,
    /// Local address for discovery (default 0.0.0.0).
    #[arg(long)]
    bind: Option<Ipv4Addr>,
    /// Local address for the hub's TCP listener (default: --bind, else
    /// 127.0.0.1 when discovery stays on this host, 0.0.0.0 otherwise).
    #[arg(long)]
    hub_bind: Option<Ipv4Addr>,
    /// Broadcast address (default 127.255.255.255, this host only;
    /// 255.255.255.255 with --lan).
    #[arg(long)]
    broadcast: Option<Ipv4Addr>,
    /// Multicast group to use instead of broadcast.
    #[arg(long)]
    multicast: Option<Ipv4Addr>,
    /// Interface address for multicast.
    #[arg(long)]
    multicast_interface: Option<Ipv4Addr>,
    /// Multicast TTL (default 1; 0 keeps it on this host).
    #[arg(long)]
    multicast_ttl: Option<u32>,
    /// Seal discovery with shoal's secure mode (AES-256-GCM) under this
    /// key: 64 hex digits or 44 characters of base64 (for example from
    /// `openssl rand -hex 32`). Nodes with another key, or none, are not
    /// part of this cluster.
    #[arg(long)]
    key: Option<String>,
    /// Like --key, with a key derived from this passphrase (Argon2id).
    #[arg(long)]
    passphrase: Option<String>,
    /// Election weight; the heaviest node serves the hub (default random).
    #[arg(long)]
    weight: Option<f64>,
    /// Milliseconds.
    #[arg(long)]
    hello_interval: Option<u64>,
    /// Milliseconds.
    #[arg(long)]
    check_interval: Option<u64>,
    /// Milliseconds.
    #[arg(long)]
    node_timeout: Option<u64>,
    /// Milliseconds.
    #[arg(long)]
    master_timeout: Option<u64>,
    /// Print the settings as a `config` line and exit, sending nothing.
    #[arg(long)]
    print_config: bool,
}

impl Args {
    fn config(&self) -> ConfigBuilder {
        let ms = Duration::from_millis;
        let mut b = Config::builder();
        if !self.lan {
            b = b.broadcast(HOST_BROADCAST).port(HOST_PORT);
        }
        if let Some(v) = self.port {
            b = b.port(v);
        }
        if let Some(v) = self.bind {
            b = b.bind(v.into());
        }
        if let Some(v) = self.broadcast {
            b = b.broadcast(v);
        }
        if let Some(v) = self.multicast {
            b = b.multicast(v);
        }
        if let Some(v) = self.multicast_interface {
            b = b.multicast_interface(v);
        }
        if let Some(v) = self.multicast_ttl {
            b = b.multicast_ttl(v);
        }
        if let Some(v) = &self.key {
            b = b.secret_key(v.as_str());
        }
        if let Some(v) = &self.passphrase {
            b = b.passphrase(v.as_str());
        }
        if let Some(v) = self.weight {
            b = b.weight(v);
        }
        if let Some(v) = self.hello_interval {
            b = b.hello_interval(ms(v));
        }
        if let Some(v) = self.check_interval {
            b = b.check_interval(ms(v));
        }
        if let Some(v) = self.node_timeout {
            b = b.node_timeout(ms(v));
        }
        if let Some(v) = self.master_timeout {
            b = b.master_timeout(ms(v));
        }
        b
    }
}

/// Prints one JSON line, with `t` (ms since the Unix epoch), and
/// flushes it, so a reader sees it at once.
fn print(value: Value) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let mut line = serde_json::Map::new();
    line.insert("t".into(), json!(t));
    if let Value::Object(fields) = value {
        line.extend(fields);
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", Value::Object(line));
    let _ = out.flush();
}

/// True when discovery with `config` sends nothing off this host:
/// broadcast on loopback, or multicast with TTL 0.
fn host_only(config: &Config) -> bool {
    match config.multicast() {
        Some(_) => config.multicast_ttl() == 0,
        None => config.broadcast().is_loopback(),
    }
}

/// `emit <event> [<json>]` → the event and its data (null if absent).
fn parse_command(line: &str) -> Result<(String, Value), String> {
    let mut parts = line.trim().splitn(3, char::is_whitespace);
    match (parts.next(), parts.next(), parts.next()) {
        (Some("emit"), Some(event), data) => {
            let data = match data.map(str::trim) {
                None | Some("") => Value::Null,
                Some(text) => serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?,
            };
            Ok((event.to_owned(), data))
        }
        _ => Err("expected: emit <event> [<json>]".into()),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let id = args.id.clone().unwrap_or_else(|| {
        let host = hostname::get().map(|h| h.to_string_lossy().into_owned());
        format!("{}-{}", host.unwrap_or_default(), std::process::id())
    });
    // Built once here to print it (and to refuse bad flags before anything
    // starts); Emitter::start builds it again with our advertised value.
    let config = match args.config().build() {
        Ok(config) => config,
        Err(e) => {
            print(json!({"event": "error", "message": e.to_string()}));
            return std::process::ExitCode::FAILURE;
        }
    };
    // The hub is reachable from exactly as far as discovery reaches.
    let hub_bind = args
        .hub_bind
        .or(args.bind)
        .unwrap_or(if host_only(&config) {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        });
    print(json!({
        "event": "config",
        "broadcast": config.multicast().is_none().then(|| config.broadcast().to_string()),
        "multicast": config.multicast().map(|m| m.to_string()),
        "port": config.port(),
        "bind": config.bind().to_string(),
        "hub_bind": hub_bind.to_string(),
        "host_only": host_only(&config),
    }));
    if args.print_config {
        return std::process::ExitCode::SUCCESS;
    }
    // Before anything starts, so that an early SIGTERM is handled, not fatal.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    let (emitter, mut notices) =
        match Emitter::start(id.clone(), args.config(), hub_bind.into()).await {
            Ok(started) => started,
            Err(e) => {
                print(json!({"event": "error", "message": e.to_string()}));
                return std::process::ExitCode::FAILURE;
            }
        };
    print(
        json!({"event": "ready", "id": id, "node": emitter.node_id(), "hub": emitter.hub_port()}),
    );

    // Read stdin on a plain thread: tokio's stdin cannot be cancelled, and an
    // unfinished read would keep the runtime from shutting down.
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    loop {
        tokio::select! {
            // At EOF (None) keep running: stdin may be /dev/null when run as a service.
            Some(line) = lines.recv() => {
                if line.trim().is_empty() {
                    continue;
                }
                match parse_command(&line) {
                    Ok((event, data)) => {
                        emitter.emit(&event, data);
                        print(json!({"event": "emitted", "name": event}));
                    }
                    Err(message) => print(json!({"event": "error", "message": message})),
                }
            }
            Some(notice) = notices.recv() => print(match notice {
                Notice::Event(f) => {
                    json!({"event": "received", "name": f.event, "data": f.data, "origin": f.origin})
                }
                Notice::Connected { master, flushed, dropped } => {
                    json!({"event": "connected", "master": master, "flushed": flushed, "dropped": dropped})
                }
                Notice::Serving { flushed, dropped } => {
                    json!({"event": "hub", "role": "master", "flushed": flushed, "dropped": dropped})
                }
                Notice::Disconnected { reason } => json!({"event": "disconnected", "reason": reason}),
            }),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    emitter.shutdown().await;
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(node: &str, seq: u64, data: Value) -> Frame {
        Frame {
            event: "e".into(),
            data,
            origin: "a".into(),
            node: node.into(),
            seq,
            to: vec!["n1".into()],
        }
    }

    #[test]
    fn lines_round_trip_and_stay_on_one_line() {
        let frame = Frame {
            event: "chat".into(),
            data: json!({"text": "two\nlines", "emoji": "🦀"}),
            ..sample("n0", 7, Value::Null)
        };
        for line in [
            Line::Event(frame),
            Line::Hello {
                hello: "a".into(),
                node: "n0".into(),
            },
            Line::Welcome {
                welcome: "b".into(),
            },
        ] {
            let text = line.encode();
            assert_eq!(text.matches('\n').count(), 1);
            assert!(text.ends_with('\n'));
            assert_eq!(Line::decode(text.trim_end()), Some(line));
        }
        // As relayed: no audience, no data.
        assert_eq!(
            Line::decode(r#"{"event":"x","origin":"a","node":"n0","seq":0}"#),
            Some(Line::Event(Frame {
                event: "x".into(),
                to: vec![],
                ..sample("n0", 0, Value::Null)
            }))
        );
        // An event that does not say who emitted it is not ours.
        assert_eq!(Line::decode(r#"{"event":"x","origin":"a"}"#), None);
        assert_eq!(Line::decode("not json"), None);
    }

    #[test]
    fn the_outbox_drops_the_oldest_past_its_limit() {
        let mut outbox = Outbox::default();
        for n in 0..QUEUE_LIMIT + 3 {
            outbox.push(sample("n0", n as u64, json!(n)));
        }
        let (frames, dropped) = outbox.take();
        assert_eq!((frames.len(), dropped), (QUEUE_LIMIT, 3));
        assert_eq!(frames[0].data, json!(3));
        assert_eq!(outbox.take(), (vec![], 0));
    }

    #[test]
    fn dedup_delivers_each_event_once_with_bounded_memory() {
        let mut dedup = Dedup::default();
        let none = HashSet::new;
        assert!(dedup.first_time(&sample("n0", 0, Value::Null), none));
        assert!(!dedup.first_time(&sample("n0", 0, Value::Null), none));
        assert!(dedup.first_time(&sample("n0", 2, Value::Null), none));
        // Late (1 after 2) or repeated: dropped, never delivered twice.
        assert!(!dedup.first_time(&sample("n0", 1, Value::Null), none));
        // Another run of the same process is another node.
        assert!(dedup.first_time(&sample("n0-restarted", 0, Value::Null), none));

        // Full: origins gone from discovery are forgotten to make room...
        for n in 2..DEDUP_ORIGINS {
            assert!(dedup.first_time(&sample(&format!("o{n}"), 0, Value::Null), none));
        }
        let live = || HashSet::from(["n0".to_owned()]);
        assert!(dedup.first_time(&sample("new", 0, Value::Null), live));
        assert_eq!(dedup.last.len(), 2);
        assert!(!dedup.first_time(&sample("n0", 2, Value::Null), none));
        // ...and while every one is still live, a new origin is refused.
        for n in 2..DEDUP_ORIGINS {
            assert!(dedup.first_time(&sample(&format!("p{n}"), 0, Value::Null), none));
        }
        let all: HashSet<String> = dedup.last.keys().cloned().collect();
        assert!(!dedup.first_time(&sample("one-more", 0, Value::Null), || all));
        assert_eq!(dedup.last.len(), DEDUP_ORIGINS);
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse_command("emit greet {\"a\": 1}"),
            Ok(("greet".into(), json!({"a": 1})))
        );
        assert_eq!(parse_command("emit ping"), Ok(("ping".into(), Value::Null)));
        assert!(parse_command("emit bad {").is_err());
        assert!(parse_command("shout x").is_err());
    }
}
