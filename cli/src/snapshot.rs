//! `shoal nodes` and `shoal registrations`: what the cluster holds, once.
//!
//! Each joins the cluster as a node for one listen window (`--listen`,
//! 1.5 s by default), prints what it learnt and leaves with a goodbye.
//! 1.5 s holds three hellos of a shoal node (every 400 ms by default) and
//! one of a node-discovery node (every 1 s), and a registry newcomer has
//! every owner's table within milliseconds of that owner's first hello;
//! a LAN with slower hellos needs a longer `--listen`. The node is not
//! eligible for mastership (unless `--weight` is given), so a snapshot
//! never disturbs the election.
//!
//! The shapes follow `serf members` and `consul catalog`: a table by
//! default, wherever stdout goes (so `shoal nodes | grep web` works as it
//! does with serf), `--format json` for scripts; filters narrow the list;
//! `--detailed` adds columns. An empty result is not an error: exit 0, as
//! consul does.

use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;
use shoal::registry::Filter;
use shoal::{Discovery, Registration};

use crate::error::CliError;
use crate::net::{self, NetArgs};
use crate::output::{self, Format};
use crate::register::spec::KeyValue;
use crate::text;

const NODES_HELP: &str = "\
Examples:
  shoal nodes                          every node, as a table
  shoal nodes --master                 the masters
  shoal nodes --name '^web-' --detailed
  shoal nodes --info role=worker       nodes advertising {\"role\": \"worker\", ...}
  shoal nodes --format json | jq -r '.[] | select(.master) | .addr'

JSON: an array of nodes: id, host_name, addr, weight, master, eligible,
last_heard_ms, hello_interval_ms, epoch, info. This command's own node is
in it with \"self\": true (in the table: LAST HEARD \"self\").";

const REGISTRATIONS_HELP: &str = "\
Examples:
  shoal registrations                  every live registration
  shoal registrations web              every version of web
  shoal registrations web 2.1.0 --format json
  shoal registrations --meta zone=eu   those whose meta.zone is \"eu\"

JSON: an array in Thalassa's shape: name, version, host, port, meta, id,
lastKnown (ms since the Unix epoch when its owner last confirmed it).";

/// Flags both snapshots take.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Milliseconds to listen to the cluster before printing
    #[arg(long, value_name = "MS", default_value_t = 1500,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    listen: u64,
    /// table (for people, the default) or json (for scripts)
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// More columns (full ids, epochs, intervals; the whole metadata)
    #[arg(long)]
    detailed: bool,
}

/// `shoal nodes` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = NODES_HELP)]
pub struct NodesArgs {
    #[command(flatten)]
    common: Common,
    /// Only nodes whose host name or id matches this regular expression
    /// (unanchored: a plain word matches as a substring)
    #[arg(long, value_name = "REGEX")]
    name: Option<Regex>,
    /// Only masters
    #[arg(long)]
    master: bool,
    /// Only nodes whose advertised info has KEY equal to VALUE
    /// (repeatable, all must match; VALUE as JSON or text)
    #[arg(long, value_name = "KEY=VALUE")]
    info: Vec<KeyValue>,
}

/// `shoal registrations` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = REGISTRATIONS_HELP)]
pub struct RegistrationsArgs {
    #[command(flatten)]
    common: Common,
    /// Only registrations of this name
    #[arg(value_name = "NAME", value_parser = parse_part)]
    name: Option<String>,
    /// Only this version of NAME
    #[arg(value_name = "VERSION", value_parser = parse_part)]
    version: Option<String>,
    /// Only registrations whose meta has KEY equal to VALUE (repeatable,
    /// all must match; VALUE as JSON or text)
    #[arg(long, value_name = "KEY=VALUE")]
    meta: Vec<KeyValue>,
}

/// A name or version to filter by: no '/' (no registration holds one,
/// so it would silently match nothing) and not empty.
fn parse_part(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("it is empty".into())
    } else if s.contains('/') {
        Err(format!(
            "{s:?} contains '/', which no name or version holds"
        ))
    } else {
        Ok(s.to_owned())
    }
}

/// Joins, listens for `listen` ms and hands the node over.
async fn listen(net: &NetArgs, common: &Common) -> Result<Discovery, CliError> {
    let node = net.start(|b| net.bystander(b)).await?;
    tokio::time::sleep(Duration::from_millis(common.listen)).await;
    Ok(node)
}

/// Runs `shoal nodes`.
pub async fn nodes(net: &NetArgs, args: NodesArgs) -> Result<(), CliError> {
    let destination = net.builder()?.build()?.destination();
    let node = listen(net, &args.common).await?;
    let (peers, me) = (node.nodes(), node.me());
    let now = Instant::now();
    node.shutdown().await;

    let host_name = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let my_addr = net::local_address(destination)
        .map(|ip| std::net::SocketAddr::new(ip, destination.port()).to_string());
    let mut me_json = output::me_json(&me, &host_name);
    me_json["addr"] = my_addr.into();
    let mut rows: Vec<Value> = peers.iter().map(|p| output::peer_json(p, now)).collect();
    rows.push(me_json);
    rows.retain(|n| keep_node(n, &args));
    rows.sort_by(|a, b| {
        let key = |n: &Value| {
            let text = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
            (text("host_name"), text("addr"), text("id"))
        };
        key(a).cmp(&key(b))
    });
    match args.common.format {
        Format::Json => print_json(&rows),
        Format::Table => nodes_table(&rows, args.common.detailed),
    }
}

/// Whether a node (in [`output::peer_json`]'s shape) passes the filters.
fn keep_node(node: &Value, args: &NodesArgs) -> bool {
    let text = |k: &str| node[k].as_str().unwrap_or_default().to_owned();
    (!args.master || node["master"] == true)
        && args
            .name
            .as_ref()
            .is_none_or(|re| re.is_match(&text("host_name")) || re.is_match(&text("id")))
        && args
            .info
            .iter()
            .all(|kv| kv.matches(node["info"].get(&kv.key)))
}

/// The nodes as `serf members` prints its members.
pub(crate) fn nodes_table(nodes: &[Value], detailed: bool) -> Result<(), CliError> {
    let mut header = vec!["ID", "HOST", "ADDRESS", "WEIGHT", "ROLE", "LAST HEARD"];
    if detailed {
        header.extend(["EPOCH", "HELLO"]);
    }
    header.push("INFO");
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let id = n["id"].as_str().unwrap_or_default();
            let mut row = vec![
                if detailed {
                    text::clean(id)
                } else {
                    text::short_id(id)
                },
                short(n["host_name"].as_str().unwrap_or_default(), 32),
                n["addr"].as_str().map_or("-".into(), text::clean),
                weight(n["weight"].as_f64(), detailed),
                role(n).into(),
                if n["self"] == true {
                    "self".into()
                } else {
                    n["last_heard_ms"].as_u64().map_or("-".into(), ago)
                },
            ];
            if detailed {
                row.push(
                    match (n["epoch"]["n"].as_u64(), n["epoch"]["master"].as_str()) {
                        (Some(e), Some(m)) => format!("{e} ({})", short(m, 8)),
                        _ => "-".into(),
                    },
                );
                row.push(
                    n["hello_interval_ms"]
                        .as_u64()
                        .map_or("-".into(), |ms| format!("{ms}ms")),
                );
            }
            row.push(json_cell(&n["info"], detailed));
            row
        })
        .collect();
    Ok(output::table(&header, &rows)?)
}

/// master, eligible or -.
fn role(node: &Value) -> &'static str {
    if node["master"] == true {
        "master"
    } else if node["eligible"] == true {
        "eligible"
    } else {
        "-"
    }
}

/// A weight: in full with `--detailed`, else short ([`text::weight`]).
fn weight(w: Option<f64>, detailed: bool) -> String {
    match w {
        None => "-".into(),
        Some(w) if detailed => w.to_string(),
        Some(w) => text::weight(w),
    }
}

/// How long ago, given in ms ([`text::ago`]).
fn ago(ms: u64) -> String {
    text::ago(std::time::Duration::from_millis(ms))
}

/// Text from the network, made safe for a terminal ([`text::clean`]) and
/// cut to `max` characters with `…`.
fn short(s: &str, max: usize) -> String {
    text::fit(&text::clean(s), max)
}

/// A JSON value in one cell: compact (JSON escapes every control
/// character), cut to 40 characters unless `whole`; `-` for null.
fn json_cell(v: &Value, whole: bool) -> String {
    match v {
        Value::Null => "-".into(),
        v if whole => v.to_string(),
        v => short(&v.to_string(), 40),
    }
}

/// A JSON array, pretty when a person reads it, one line in a pipe.
fn print_json(rows: &[Value]) -> Result<(), CliError> {
    use std::io::{IsTerminal, Write};
    let mut out = std::io::stdout().lock();
    let text = if out.is_terminal() {
        serde_json::to_string_pretty(rows)
    } else {
        serde_json::to_string(rows)
    }
    .map_err(CliError::runtime)?;
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Runs `shoal registrations`.
pub async fn registrations(net: &NetArgs, args: RegistrationsArgs) -> Result<(), CliError> {
    let filter = match (args.name, args.version) {
        (Some(n), Some(v)) => Filter::version(n, v),
        (Some(n), None) => Filter::name(n),
        _ => Filter::All,
    };
    let node = listen(net, &args.common).await?;
    let found = node.registry().query(&filter).await;
    node.shutdown().await;
    let mut found = found?;
    found.retain(|r| args.meta.iter().all(|kv| kv.matches(r.meta().get(&kv.key))));
    match args.common.format {
        Format::Json => {
            let rows: Vec<Value> = found
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .collect();
            print_json(&rows)
        }
        Format::Table => registrations_table(&found, args.common.detailed),
    }
}

/// Metadata every registration gets from its builder, shown in columns
/// of their own (or, for `pid` and `registered`, only in full).
const BUILT_IN_META: [&str; 3] = ["hostname", "pid", "registered"];

/// The registrations as `consul catalog services` would, with Thalassa's
/// parts.
pub(crate) fn registrations_table(found: &[Registration], detailed: bool) -> Result<(), CliError> {
    let mut header = vec!["NAME", "VERSION", "HOST", "PORT", "HOSTNAME", "LAST KNOWN"];
    if detailed {
        header.push("ID");
    }
    header.push("META");
    let now_ms = output::now_ms() as u64;
    let rows: Vec<Vec<String>> = found
        .iter()
        .map(|r| {
            let mut row = vec![
                short(r.name(), 40),
                short(r.version(), 20),
                short(r.host(), 40),
                r.port().to_string(),
                r.meta()
                    .get("hostname")
                    .and_then(Value::as_str)
                    .map_or("-".into(), |h| short(h, 32)),
                ago(now_ms.saturating_sub(r.last_known())),
            ];
            if detailed {
                row.push(text::clean(r.id()));
                row.push(Value::Object(r.meta().clone()).to_string());
            } else {
                let mut meta = r.meta().clone();
                meta.retain(|k, _| !BUILT_IN_META.contains(&k.as_str()));
                row.push(if meta.is_empty() {
                    "-".into()
                } else {
                    json_cell(&Value::Object(meta), false)
                });
            }
            row
        })
        .collect();
    Ok(output::table(&header, &rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Nodes {
        #[command(flatten)]
        args: NodesArgs,
    }

    fn node(host: &str, master: bool, info: Value) -> Value {
        serde_json::json!({"id": "0123456789abcdef", "host_name": host, "master": master, "info": info})
    }

    #[test]
    fn node_filters_combine() {
        let parse = |flags: &[&str]| {
            Nodes::try_parse_from(std::iter::once("nodes").chain(flags.iter().copied()))
                .unwrap()
                .args
        };
        let web = node("web-1", true, serde_json::json!({"role": "worker", "n": 3}));
        let db = node("db-1", false, Value::Null);
        let args = parse(&["--name", "^web"]);
        assert!(keep_node(&web, &args) && !keep_node(&db, &args));
        let args = parse(&["--name", "89ab"]); // the id, as a substring
        assert!(keep_node(&web, &args) && keep_node(&db, &args));
        let args = parse(&["--master"]);
        assert!(keep_node(&web, &args) && !keep_node(&db, &args));
        let args = parse(&["--info", "role=worker", "--info", "n=3"]);
        assert!(keep_node(&web, &args) && !keep_node(&db, &args));
        let args = parse(&["--info", "role=db"]);
        assert!(!keep_node(&web, &args));
        assert!(Nodes::try_parse_from(["nodes", "--name", "("]).is_err());
    }

    #[test]
    fn cells_are_safe_and_short() {
        assert_eq!(short("a\u{1b}[2Jb", 20), "a\\u{1b}[2Jb");
        assert_eq!(short("abcdefghij", 4), "abc…");
        assert_eq!(
            json_cell(&serde_json::json!({"a": "\n"}), true),
            r#"{"a":"\n"}"#
        );
        assert_eq!(json_cell(&Value::Null, false), "-");
        assert_eq!(weight(Some(0.5), false), "0.5");
        assert_eq!(weight(Some(0.123456), false), "0.123");
        assert_eq!(weight(Some(1.0), false), "1");
        assert_eq!(
            (ago(400), ago(2_100), ago(185_000)),
            ("0.4s".into(), "2.1s".into(), "3m05s".into())
        );
    }

    #[test]
    fn names_and_versions_with_a_slash_are_refused() {
        assert!(parse_part("web").is_ok());
        assert!(parse_part("a/b").is_err());
        assert!(parse_part("").is_err());
    }
}
