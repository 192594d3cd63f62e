//! `shoal send` and `shoal listen`: messages on named channels.
//!
//! A message is broadcast once to whoever listens on the channel at that
//! moment, as in node-discovery: no queue, no retry, no receipt. A node
//! delivers a message from a sender it has never heard of, so `shoal send`
//! need not wait to be known before sending. It waits only until its
//! first hello is out, so that receivers know the sender's host name by
//! the time the message arrives. The sending node
//! says goodbye right after (it is not eligible for mastership, unless
//! `--weight` is given, so it never disturbs the election).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal::{ChannelMessage, Discovery};
use tokio::io::AsyncReadExt;

use crate::error::CliError;
use crate::net::NetArgs;
use crate::output::json_line;
use crate::signals::Signals;

/// The largest message `shoal send` reads from stdin: the library's
/// default `max_message_size` (1 MiB), which refuses anything larger.
const MAX_MESSAGE: usize = 1 << 20;

const SEND_HELP: &str = "\
Examples:
  shoal send jobs '{\"id\": 7}'
  shoal send greetings '\"hello\"'            any JSON value, a string included
  jq -c '.job' job.json | shoal send jobs -   the message from stdin

Exit codes: 0 once the message is out, 2 if it is not JSON or the channel
name is not usable. Nothing says whether anyone received it: run
`shoal listen CHANNEL` on the receiving side to see.";

const LISTEN_HELP: &str = "\
Examples:
  shoal listen jobs
  shoal listen jobs | jq -c 'select(.event == \"message\") | .data'

Prints one JSON line as it starts, {\"event\": \"listening\", \"channel\", \"node\"},
then one per message:
  {\"t\", \"event\": \"message\", \"channel\", \"from\": {\"id\", \"host_name\", \"addr\"}, \"data\"}
and {\"event\": \"lagged\", \"missed\": N} if it fell behind and lost messages.
host_name is null for a sender whose hellos this node has not heard.
^C or SIGTERM stops it with exit code 0.";

/// `shoal send` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = SEND_HELP)]
pub struct SendArgs {
    /// The channel to send on
    #[arg(value_name = "CHANNEL", value_parser = parse_channel)]
    channel: String,
    /// The message: any JSON value, or - to read it from stdin
    #[arg(value_name = "JSON", allow_hyphen_values = true)]
    json: String,
}

/// `shoal listen` flags.
#[derive(clap::Args, Debug)]
#[command(after_help = LISTEN_HELP)]
pub struct ListenArgs {
    /// The channel to listen on
    #[arg(value_name = "CHANNEL", value_parser = parse_channel)]
    channel: String,
}

/// A channel name the library accepts: 1 to 255 bytes, no control
/// character, not one of node-discovery's reserved event names (checked
/// here, before the node starts, so that a usage error sends nothing).
fn parse_channel(name: &str) -> Result<String, String> {
    if shoal::protocol::RESERVED_CHANNELS.contains(&name) {
        Err(format!("{name:?} is reserved (node-discovery uses it)"))
    } else if name.is_empty() {
        Err("a channel name cannot be empty".into())
    } else if name.len() > 255 {
        Err("a channel name is at most 255 bytes".into())
    } else if name.chars().any(char::is_control) {
        Err("a channel name cannot hold a control character".into())
    } else {
        Ok(name.to_owned())
    }
}

/// The message `text` holds, or why it is not JSON.
fn parse_message(text: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| CliError::usage(format!("the message is not JSON: {e}")))
}

/// Reads the message from stdin, refusing more than [`MAX_MESSAGE`].
async fn read_stdin() -> Result<String, CliError> {
    let mut bytes = Vec::new();
    tokio::io::stdin()
        .take(MAX_MESSAGE as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > MAX_MESSAGE {
        return Err(CliError::usage(format!(
            "the message on stdin is over {MAX_MESSAGE} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| CliError::usage("the message on stdin is not UTF-8"))
}

/// Runs `shoal send`.
pub async fn send(net: &NetArgs, args: SendArgs) -> Result<(), CliError> {
    let text = match args.json.as_str() {
        "-" => read_stdin().await?,
        text => text.to_owned(),
    };
    let data = parse_message(&text)?;
    let node = net.start(|b| net.bystander(b)).await?;
    first_hello_out(&node).await;
    let sent = node.send(&args.channel, &data);
    // Shutting down sends what is queued, the message included, then the
    // goodbye: once it returns, the message is out.
    node.shutdown().await;
    sent.map_err(|e| match e {
        shoal::Error::MessageTooLarge { .. }
        | shoal::Error::ReservedChannel(_)
        | shoal::Error::InvalidChannel { .. } => CliError::usage(e),
        e => CliError::runtime(format!("cannot send: {e}")),
    })
}

/// Waits until the node's first hello is out (its first packet), at most
/// a second: the driver sends it on its first turn, which may come after
/// a message queued at once, and a receiver that hears the message first
/// does not know the sender's host name.
async fn first_hello_out(node: &Discovery) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while node.stats().packets_out == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `shoal listen`.
pub async fn listen(net: &NetArgs, args: ListenArgs) -> Result<(), CliError> {
    let mut signals = Signals::install()?;
    let node = net.start(|b| net.bystander(b)).await?;
    let result = print_messages(&node, &args.channel, &mut signals).await;
    node.shutdown().await;
    result
}

/// Prints every message on `channel` until SIGINT or SIGTERM.
async fn print_messages(
    node: &Discovery,
    channel: &str,
    signals: &mut Signals,
) -> Result<(), CliError> {
    let mut messages = node.join(channel).map_err(CliError::usage)?;
    json_line(
        "listening",
        json!({"channel": channel, "node": node.id().as_str()}),
    )?;
    let mut names = HostNames::default();
    let mut events = node.events();
    let mut missed = 0;
    loop {
        // Biased, events first: a sender's hello is handed out before
        // its message, so its name is known when the message is printed.
        let message = tokio::select! {
            biased;
            _ = signals.recv() => return Ok(()),
            Some(event) = events.recv() => {
                names.learn(event);
                continue;
            }
            message = messages.recv() => message,
        };
        let Some(message) = message else {
            return Err(CliError::runtime("the node stopped"));
        };
        if messages.missed() > missed {
            json_line("lagged", json!({"missed": messages.missed() - missed}))?;
            missed = messages.missed();
        }
        let host_name = names.get(message.from.as_str());
        json_line("message", message_fields(&message, host_name))?;
    }
}

/// A message's fields for its JSON line.
fn message_fields(message: &ChannelMessage, host_name: Option<String>) -> Value {
    json!({
        "channel": message.channel,
        "from": {
            "id": message.from.as_str(),
            "host_name": host_name,
            "addr": message.addr.to_string(),
        },
        "data": message.data,
    })
}

/// Senders' host names. A message names only its sender's id; the
/// host name comes from the sender's hellos, which the node's events
/// report (`Added`, `Updated`, `Master`). A name is kept for a while after
/// its node is removed: `shoal send` says goodbye right after its message,
/// and the goodbye may be handled before the message is printed.
#[derive(Default)]
struct HostNames {
    /// Id → (host name, when its node was removed).
    names: HashMap<String, (String, Option<Instant>)>,
}

impl HostNames {
    /// How long a removed node's name is kept.
    const KEEP: Duration = Duration::from_secs(10);
    /// At most this many names, whatever a flood of short-lived ids does:
    /// beyond it, removed nodes' names go first, then all of them.
    const MAX: usize = 100_000;

    /// Learns from one node event.
    fn learn(&mut self, event: shoal::Event) {
        match event {
            shoal::Event::Added(p) | shoal::Event::Updated(p) | shoal::Event::Master(p) => {
                if self.names.len() >= Self::MAX {
                    self.names.retain(|_, (_, removed)| removed.is_none());
                    if self.names.len() >= Self::MAX {
                        self.names.clear();
                    }
                }
                self.names
                    .insert(p.id.as_str().to_owned(), (p.host_name, None));
            }
            shoal::Event::Removed(p, _) => {
                let now = Instant::now();
                if let Some((_, removed)) = self.names.get_mut(p.id.as_str()) {
                    *removed = Some(now);
                }
                self.names
                    .retain(|_, (_, removed)| removed.is_none_or(|at| now - at < Self::KEEP));
            }
            _ => {}
        }
    }

    /// The host name of the node `id`, if known.
    fn get(&self, id: &str) -> Option<String> {
        self.names.get(id).map(|(name, _)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_the_library() {
        assert_eq!(parse_channel("jobs").unwrap(), "jobs");
        for bad in ["", "hello", "master", "a\nb"] {
            assert!(parse_channel(bad).is_err(), "{bad:?}");
        }
        assert!(parse_channel(&"x".repeat(256)).is_err());
        assert!(parse_channel(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn a_message_is_any_json_value() {
        assert_eq!(parse_message(r#"{"id": 7}"#).unwrap(), json!({"id": 7}));
        assert_eq!(parse_message(r#""hi""#).unwrap(), json!("hi"));
        assert_eq!(parse_message("3").unwrap(), json!(3));
        for bad in ["{id: 7}", "hi", "", "{\"a\":1} x"] {
            assert!(
                matches!(parse_message(bad), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
