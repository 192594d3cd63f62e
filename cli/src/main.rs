//! `shoal`, the command: watch the LAN live, list its nodes and
//! registrations, register apps that do not link shoal, send and listen on
//! channels, and serve Thalassa's, bender's and hera's HTTP APIs from a
//! sidecar. Every command is a node of the cluster for as long as it runs.

mod channel;
mod error;
mod net;
mod output;
mod register;
mod serve;
mod signals;
mod snapshot;
mod text;
mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;
use crate::net::NetArgs;

const ABOUT: &str =
    "Zero-config discovery on a LAN: watch it, list it, register any app, serve HTTP";

const LONG_ABOUT: &str = "\
Zero-config discovery on a LAN. Every shoal command is a node of the cluster \
while it runs: it hears every other node's hellos and holds every live \
registration, with no server and no configuration.

By default a command joins the real LAN with shoal's defaults: on each LAN \
interface its subnet's broadcast address, on UDP port 12345. --loopback keeps everything on this host. \
--interface chooses the interfaces (default: every one that is up, \
multicast-capable and neither loopback, point-to-point nor a bridge of \
containers or VMs such as docker0), --ipv6 adds IPv6 \
link-local multicast, and --seed HOST:PORT reaches nodes that broadcast does \
not (another subnet, a cloud network).";

const AFTER_HELP: &str = "\
Examples:
  shoal watch                                   the LAN, live
  shoal nodes --format json                     who is there, for a script
  shoal registrations web 2.1.0                 where web 2.1.0 is served
  shoal register myapp@1.0.0:8080 --check tcp   register a legacy app while its port is open
  shoal send jobs '{\"id\": 7}'                   one message on channel jobs
  shoal listen jobs                             every message on channel jobs
  shoal serve --http 127.0.0.1:9000             the HTTP sidecar (Thalassa, bender, hera)
  shoal --loopback watch                        this host only
  shoal nodes --interface eth0                  the LAN behind eth0 only
  shoal nodes --seed 10.0.2.7:12345             also the nodes behind a router
                                                (broadcast does not cross it)
  shoal watch --seed shoal.default.svc:12345 --unicast-only
                                                a cloud network, by a DNS name

Keys: --key-file PATH or SHOAL_KEY (64 hex digits or base64 of 32 bytes);
      never on the command line.
Exit codes: 0 success (also after SIGINT or SIGTERM), 1 failure while running,
            2 usage error.
Logs go to stderr; SHOAL_LOG sets their level (error, warn, info, debug).";

#[derive(Parser, Debug)]
#[command(name = "shoal", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    net: NetArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The LAN, live: nodes, masters and registrations, redrawn as they change
    Watch(watch::Args),
    /// The nodes of the cluster, once
    Nodes(snapshot::NodesArgs),
    /// The live registrations, all of them or those of a name (and version), once
    Registrations(snapshot::RegistrationsArgs),
    /// Register apps that do not link shoal, and keep them registered while this runs
    Register(register::Args),
    /// Send one JSON message on a channel
    Send(channel::SendArgs),
    /// Print every message received on a channel, one JSON line each
    Listen(channel::ListenArgs),
    /// The HTTP sidecar: Thalassa's, bender's and hera's APIs over the registry
    Serve(serve::Args),
}

/// Logs on stderr at SHOAL_LOG's level (warn by default). The live view
/// owns the terminal, so it logs nothing there.
fn init_logging(command: &Command) {
    if matches!(command, Command::Watch(_)) && std::io::stdout().is_terminal() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let net = &cli.net;
    match cli.command {
        Command::Watch(args) => watch::run(net, args).await,
        Command::Nodes(args) => snapshot::nodes(net, args).await,
        Command::Registrations(args) => snapshot::registrations(net, args).await,
        Command::Register(args) => register::run(net, args).await,
        Command::Send(args) => channel::send(net, args).await,
        Command::Listen(args) => channel::listen(net, args).await,
        Command::Serve(args) => serve::run(net, args).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Runtime(m)) if m.contains("Broken pipe") => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
