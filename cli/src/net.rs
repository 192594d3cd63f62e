//! The flags every command shares: which network, which key, which weight.
//! They become a [`shoal::Config`], and [`NetArgs::start`] starts the node.
//!
//! The defaults are the library's, those of a real LAN: on each LAN
//! interface, its subnet's broadcast address, on UDP port 12345. `--loopback` keeps everything on this
//! host (127.255.255.255, on the loopback interface only). `--interface`
//! narrows the library's default choice of interfaces (every one that is
//! up, multicast-capable and neither loopback, point-to-point nor a bridge
//! of containers or VMs such as docker0), `--ipv6`
//! adds the IPv6 link-local group, and `--seed` reaches peers by unicast
//! where broadcast does not go (another subnet, a cloud network). A key is read from a file (`--key-file`) or the
//! environment (`SHOAL_KEY`), never from a bare argument, which anyone on
//! the host could read in the process list.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use shoal::registry::RegistryLimits;
use shoal::{Config, ConfigBuilder, Discovery, Encryption, IfKind};

use crate::error::CliError;

/// The environment variable that may hold the secure-mode key's text.
pub const KEY_ENV: &str = "SHOAL_KEY";

/// Network, key and election flags, accepted by every command (before or
/// after its name).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Network and keys (every command)")]
pub struct NetArgs {
    /// UDP port of the cluster [default: 12345]
    #[arg(long, global = true, env = "SHOAL_PORT", value_name = "PORT")]
    pub port: Option<u16>,
    /// Send to this one broadcast address (255.255.255.255 leaves by the
    /// default route only) [default: each interface's subnet broadcast]
    #[arg(long, global = true, env = "SHOAL_BROADCAST", value_name = "ADDR")]
    pub broadcast: Option<Ipv4Addr>,
    /// Send to this IPv4 multicast group instead of broadcasting
    #[arg(
        long,
        global = true,
        env = "SHOAL_MULTICAST",
        value_name = "GROUP",
        conflicts_with = "broadcast"
    )]
    pub multicast: Option<Ipv4Addr>,
    /// This host only: broadcast to 127.255.255.255 (nothing leaves the host)
    #[arg(long, global = true, conflicts_with_all = ["broadcast", "multicast", "interface", "ipv6"])]
    pub loopback: bool,
    /// Use this network interface (repeatable) [default: every interface
    /// that is up, multicast-capable, neither loopback, point-to-point nor
    /// a bridge of containers or VMs such as docker0]
    #[arg(long, global = true, value_name = "NAME")]
    pub interface: Vec<String>,
    /// Also speak IPv6, on the link-local group ff02::5ea1 of the chosen
    /// interfaces
    #[arg(long, global = true)]
    pub ipv6: bool,
    /// Reach this peer by unicast, HOST:PORT (an address or a name,
    /// re-resolved every --seed-refresh); repeatable. For subnets that
    /// broadcast does not reach and for cloud networks
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub seed: Vec<String>,
    /// Milliseconds between resolutions of seed names [default: 60000]
    #[arg(long, global = true, value_name = "MS", hide_short_help = true)]
    pub seed_refresh: Option<u64>,
    /// Send no broadcast or multicast: reach peers by unicast only, from
    /// the seeds on
    #[arg(long, global = true, requires = "seed")]
    pub unicast_only: bool,
    /// Election weight, a finite number; the heaviest nodes become masters [default: random]
    #[arg(long, global = true, value_name = "W", allow_negative_numbers = true)]
    pub weight: Option<f64>,
    /// Read the secure-mode key (64 hex digits or base64 of 32 bytes) from
    /// this file; or set SHOAL_KEY
    #[arg(long, global = true, env = "SHOAL_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// Read a node-discovery (legacy, weak) key from this file, to join a
    /// Node.js cluster
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "key_file")]
    pub legacy_key_file: Option<PathBuf>,
    /// Milliseconds between hellos [default: 400]
    #[arg(long, global = true, value_name = "MS", hide_short_help = true)]
    pub hello_interval: Option<u64>,
    /// Registrations one node may own (a sidecar registering for many apps
    /// needs more); every node of the cluster must allow as many, or it
    /// keeps only its own limit of another's [default: 1000]
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_registrations: Option<u32>,
}

impl NetArgs {
    /// The configuration these flags describe, before `build`: commands add
    /// their own settings (what the node advertises, say).
    pub fn builder(&self) -> Result<ConfigBuilder, CliError> {
        let mut b = Config::builder();
        if self.loopback {
            // Listening on loopback too: the node ignores datagrams from
            // interfaces it has not chosen.
            b = b
                .broadcast(Ipv4Addr::new(127, 255, 255, 255))
                .interfaces([IfKind::Loopback]);
        }
        if !self.interface.is_empty() {
            b = b.interfaces(self.interface.iter().map(|n| IfKind::Name(n.clone())));
        }
        if self.ipv6 {
            b = b.ipv6(true);
        }
        if !self.seed.is_empty() {
            b = b.seeds(&self.seed);
        }
        if let Some(ms) = self.seed_refresh {
            b = b.seed_refresh(Duration::from_millis(ms));
        }
        if self.unicast_only {
            b = b.unicast_only(true);
        }
        if let Some(port) = self.port {
            b = b.port(port);
        }
        if let Some(addr) = self.broadcast {
            b = b.broadcast(addr);
        }
        if let Some(group) = self.multicast {
            b = b.multicast(group);
        }
        if let Some(weight) = self.weight {
            b = b.weight(weight);
        }
        if let Some(ms) = self.hello_interval {
            b = b.hello_interval(Duration::from_millis(ms));
        }
        if let Some(n) = self.max_registrations {
            // The total must hold at least one full owner besides the rest.
            let defaults = RegistryLimits::default();
            b = b.registry_limits(RegistryLimits {
                per_owner: n as usize,
                total: defaults.total.max(2 * n as usize),
                ..defaults
            });
        }
        match (&self.key_file, std::env::var(KEY_ENV)) {
            (Some(path), _) => b = b.secret_key(read_secret(path)?.as_str()),
            (None, Ok(text)) if !text.trim().is_empty() => b = b.secret_key(text.trim()),
            _ => {}
        }
        if let Some(path) = &self.legacy_key_file {
            b = b
                .legacy_key(read_secret(path)?)
                .encryption(Encryption::LegacyNodeDiscovery);
        }
        Ok(b)
    }

    /// `builder` for a node that does no master's work (a snapshot, a
    /// sidecar, a one-off message): not eligible for mastership, so that a
    /// command run for a moment never takes mastership from the apps that
    /// do that work, unless `--weight` asks for a place in the election.
    pub fn bystander(&self, builder: ConfigBuilder) -> ConfigBuilder {
        if self.weight.is_some() {
            builder
        } else {
            builder.master_eligible(false)
        }
    }

    /// Builds the configuration, with `extra` applied, and starts the node.
    pub async fn start(
        &self,
        extra: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Result<Discovery, CliError> {
        let config = extra(self.builder()?).build()?;
        tracing::debug!(
            destination = %config.destination(),
            encryption = ?config.encryption(),
            "starting the node"
        );
        Discovery::start(config)
            .await
            .map_err(|e| CliError::runtime(format!("cannot start the node: {e}")))
    }
}

/// A key file's text, trimmed.
fn read_secret(path: &std::path::Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::usage(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    Ok(text.trim().to_owned())
}

/// The address this host sends from towards `destination`: what other
/// hosts of the LAN reach it at. A connected UDP socket asks the routing
/// table and sends nothing. `None` when no route leads there.
pub fn local_address(destination: SocketAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match destination {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.set_broadcast(true).ok()?;
    socket.connect(destination).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_keeps_to_this_host_and_explicit_flags_win() {
        let net = NetArgs {
            loopback: true,
            port: Some(47_890),
            ..NetArgs::default()
        };
        let config = net.builder().unwrap().build().unwrap();
        assert_eq!(
            config.destination(),
            "127.255.255.255:47890".parse().unwrap()
        );
        let config = NetArgs::default().builder().unwrap().build().unwrap();
        assert_eq!(
            config.destination(),
            "255.255.255.255:12345".parse().unwrap()
        );
    }

    #[test]
    fn interfaces_seeds_and_ipv6_reach_the_config() {
        let net = NetArgs {
            interface: vec!["eth1".into(), "br0".into()],
            ipv6: true,
            seed: vec!["10.0.2.7:12345".into(), "shoal.svc".into()],
            seed_refresh: Some(2_000),
            unicast_only: true,
            ..NetArgs::default()
        };
        let config = net.builder().unwrap().build().unwrap();
        assert_eq!(
            config.interfaces(),
            Some(&[IfKind::Name("eth1".into()), IfKind::Name("br0".into())][..])
        );
        assert!(config.ipv6());
        assert!(config.unicast_only());
        assert_eq!(config.seed_refresh(), Duration::from_secs(2));
        let seeds: Vec<_> = config.seeds().collect();
        assert_eq!(seeds, [("10.0.2.7", 12345), ("shoal.svc", 12345)]);
        // --loopback chooses the loopback interface, not the host's LAN.
        let lo = NetArgs {
            loopback: true,
            ..NetArgs::default()
        };
        let config = lo.builder().unwrap().build().unwrap();
        assert_eq!(config.interfaces(), Some(&[IfKind::Loopback][..]));
        assert_eq!(
            NetArgs::default()
                .builder()
                .unwrap()
                .build()
                .unwrap()
                .interfaces(),
            None
        );
    }

    #[test]
    fn an_empty_seed_is_a_usage_error_naming_the_field() {
        let net = NetArgs {
            loopback: true,
            seed: vec![String::new()],
            ..NetArgs::default()
        };
        let err = net
            .builder()
            .unwrap()
            .build()
            .map_err(CliError::from)
            .unwrap_err();
        assert!(
            matches!(err, CliError::Usage(ref m) if m.contains("seeds")),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_that_is_not_a_key_is_a_usage_error() {
        let path = std::env::temp_dir().join(format!("shoal-cli-key-{}", std::process::id()));
        std::fs::write(&path, "not a key\n").unwrap();
        let net = NetArgs {
            key_file: Some(path.clone()),
            ..NetArgs::default()
        };
        let err = net
            .builder()
            .unwrap()
            .build()
            .map_err(CliError::from)
            .unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(err, CliError::Usage(ref m) if m.contains("secret_key")),
            "{err}"
        );
    }

    #[test]
    fn the_local_address_towards_loopback_is_loopback() {
        let ip = local_address("127.255.255.255:47890".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }
}
