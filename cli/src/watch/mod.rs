//! `shoal watch`: the LAN, live.
//!
//! On a terminal it draws the nodes and the registrations and redraws them
//! as they change, with the latest events listed below them for a few
//! seconds (`view`, over the model in `state`). In a pipe, or with
//! `--format json`, it prints one JSON line per event instead; `--once`
//! prints a snapshot after one listen window and exits (`once`).
//!
//! The watcher is a node of the cluster like any other, but it is never a
//! candidate in elections ([`ConfigBuilder::master_eligible`] false): a
//! process started to look at the LAN must not become its master and
//! change what it looks at. `--weight` is accepted (every command takes
//! it) and has no effect here.
//!
//! # JSON lines
//!
//! Each line is an object with `t` (ms since the Unix epoch), `event` and
//! the fields below. A node is in the shape `shoal nodes --format json`
//! uses (`output::peer_json`: `id`, `host_name`, `addr`, `weight`,
//! `master`, `eligible`, `last_heard_ms`, `hello_interval_ms`, `epoch`,
//! `info`); a registration in Thalassa's (`name`, `version`, `host`,
//! `port`, `lastKnown`, `meta`, `id`).
//!
//! | `event` | fields | when |
//! |---|---|---|
//! | `start` | `node` (this one, `self: true`), `destination` | the watcher is listening |
//! | `join` | `node` | a node is heard for the first time |
//! | `update` | `node` | a node changed what it advertises |
//! | `leave` | `node`, `reason`: `goodbye` or `timeout` | a node said goodbye, or went silent for the node timeout |
//! | `master` | `node` | another node became master |
//! | `promotion`, `demotion` | `node` (this one) | this node became master, or stepped down (a watcher is not eligible, so only in theory) |
//! | `online` | `registration` | a registration is live (first, one for each already known) |
//! | `updated` | `registration` | a registration's metadata changed |
//! | `offline` | `registration`, `reason`: `deregistered`, `expired` or `ownerGone` | a registration left |
//! | `message` | `channel`, `from` (whole id), `addr`, `data` | a message on `--channel` |
//! | `lagged` | `source`: `nodes`, `registry` or `channel`; `lost` | the watcher fell behind and lost events |
//! | `unauthenticated` | `from`, `key_id`, `dropped`, `error` | packets refused (another key, or none) |
//! | `data_error` | `from`, `error` | an undecodable packet |
//!
//! Filters: see `select`. They apply alike to the live view, the lines
//! and the snapshot.
//!
//! [`ConfigBuilder::master_eligible`]: shoal::ConfigBuilder::master_eligible

mod json;
mod once;
mod select;
mod sources;
mod state;
mod tui;
mod view;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;
use shoal::Discovery;

use crate::error::CliError;
use crate::net::NetArgs;
use crate::output::{self, Format};
use crate::signals::Signals;
use select::Selection;
use sources::{Input, Sources};

const AFTER_HELP: &str = "\
On a terminal: a table of the nodes (this one first, marked \"(this node)\"; \
masters marked \"* master\") and of the registrations, redrawn as they change, \
with the latest events listed below for a few seconds. q, Esc or ^C quits.

In a pipe, or with --format json: one JSON line per event, with t (ms since \
the Unix epoch) and event: start, join, update, leave (reason goodbye or \
timeout), master, promotion, demotion, online, updated, offline (reason \
deregistered, expired or ownerGone), message, lagged, unauthenticated, \
data_error.

--once: one JSON document {\"nodes\": [...], \"registrations\": [...]} (this node \
first, with \"self\": true), or two tables with --format table or on a terminal.

--name NAME keeps the nodes whose host name is NAME, whose id is NAME or starts \
with it (8 characters or more), or that advertise {\"name\": NAME} or {\"id\": \
NAME}, and the registrations named NAME. --master keeps the masters and no \
registrations. The watcher never stands for master.

Examples:
  shoal watch                                  the LAN, live
  shoal --loopback --port 47800 watch          this host only
  shoal watch --format json | jq -c 'select(.event == \"leave\")'
  shoal watch --once --format json             who is there, for a script
  shoal watch --master                         who is master, live
  shoal watch --name kv --channel jobs         kv's nodes and registrations, and jobs' messages";

/// `shoal watch` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Only nodes with this host name, id (or id prefix of 8+ characters)
    /// or advertised "name"/"id"; only registrations with this name
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Only masters (and no registrations)
    #[arg(long)]
    master: bool,
    /// Join CHANNEL and show its messages
    #[arg(long, value_name = "CHANNEL", conflicts_with = "once")]
    channel: Option<String>,
    /// Print a snapshot after one listen window, then exit
    #[arg(long)]
    once: bool,
    /// With --once, how long to listen, in ms [default: 1500, or 3.5 hello
    /// intervals if longer]
    #[arg(long, value_name = "MS", requires = "once")]
    listen: Option<u64>,
    /// table (the live view; with --once, two tables) or json (one line per
    /// event; with --once, one document) [default: table on a terminal, json
    /// otherwise]
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<Format>,
}

/// Runs `shoal watch`.
pub async fn run(net: &NetArgs, args: Args) -> Result<(), CliError> {
    if args.name.as_deref() == Some("") {
        return Err(CliError::usage("--name needs a non-empty NAME"));
    }
    let format = Format::or_detect(args.format);
    if !args.once && format == Format::Table && !std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "the live view needs a terminal: use --format json, or --once",
        ));
    }
    let selection = Selection {
        name: args.name.clone(),
        master: args.master,
    };
    // Before the node starts, so that an early signal is not lost.
    let mut signals = Signals::install()?;
    let destination = net.builder()?.build()?.destination();
    let host_name = host_name();
    let discovery = net
        .start(|b| {
            // The name this node's row shows is the one its hellos carry.
            let b = b.master_eligible(false);
            if host_name.is_empty() {
                b
            } else {
                b.host_name(host_name.clone())
            }
        })
        .await?;
    let watcher = Watcher {
        host_name,
        my_addr: crate::net::local_address(destination)
            .map(|ip| SocketAddr::new(ip, discovery.local_addr().port())),
        destination,
        selection,
    };
    let result = if args.once {
        let listen = once::window(args.listen, net);
        once::run(&discovery, &watcher, &mut signals, listen, format).await
    } else {
        match Sources::open(&discovery, &watcher.selection, args.channel.as_deref()).await {
            Ok(sources) if format == Format::Table => {
                tui::run(&discovery, &watcher, sources, &mut signals, args.channel).await
            }
            Ok(sources) => stream(&discovery, &watcher, sources, &mut signals).await,
            Err(e) => Err(e),
        }
    };
    // A goodbye, so that the other nodes drop the watcher at once.
    discovery.shutdown().await;
    result
}

/// What every mode needs to know about the watcher itself.
pub struct Watcher {
    /// This host's name (as peers hear it).
    pub host_name: String,
    /// Where peers hear this node from, if a route says.
    pub my_addr: Option<SocketAddr>,
    /// Where the node sends its hellos.
    pub destination: SocketAddr,
    /// The `--name` and `--master` filters.
    pub selection: Selection,
}

/// This host's name, as the library puts in hellos (empty if unknown).
fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Prints one JSON line per event until SIGINT, SIGTERM, SIGHUP or a
/// closed stdout.
async fn stream(
    discovery: &Discovery,
    watcher: &Watcher,
    mut sources: Sources,
    signals: &mut Signals,
) -> Result<(), CliError> {
    let host = &watcher.host_name;
    output::json_line(
        "start",
        json!({
            "node": output::me_json(&discovery.me(), host),
            "destination": watcher.destination.to_string(),
        }),
    )?;
    loop {
        let input = tokio::select! {
            _ = signals.recv() => return Ok(()),
            input = sources.next() => input,
        };
        let (event, fields) = match input {
            None => return Ok(()),
            Some(Input::Node(e)) if watcher.selection.event(&e, host) => {
                json::event(&e, host, Instant::now())
            }
            Some(Input::Registry(e)) if watcher.selection.registry_event(&e) => {
                json::registry_event(&e)
            }
            Some(Input::Message(m)) => json::message(&m),
            Some(Input::MissedMessages(n)) => json::lagged("channel", n),
            Some(_) => continue,
        };
        output::json_line(event, fields)?;
    }
}
