//! Network interfaces: which ones a node uses ([`IfKind`]), what the driver
//! knows of each ([`Interface`]), and where a datagram arrived ([`Via`]).
//!
//! This module is pure data and selection rules, so the sans-IO core and
//! the simulator can use it; the driver lists the host's interfaces
//! and applies the rules.
//!
//! ```
//! use shoal::{IfKind, Interface};
//!
//! let eth0 = Interface::new("eth0", 2, "10.0.0.5".parse().unwrap(), 24);
//! let lo = Interface::new("lo", 1, "127.0.0.1".parse().unwrap(), 8);
//! assert!(IfKind::Name("eth0".into()).matches(&eth0));
//! assert!(!IfKind::Name("eth0".into()).matches(&lo));
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// One address of one network interface, as the driver found it.
///
/// An interface with several addresses (IPv4 and IPv6, or two IPv4
/// subnets) appears once per address.
///
/// ```
/// let i = shoal::Interface::new("eth0", 2, "10.0.0.5".parse().unwrap(), 24);
/// assert_eq!(i.broadcast, Some("10.0.0.255".parse().unwrap()));
/// assert!(i.contains("10.0.0.77".parse().unwrap()));
/// assert!(!i.contains("10.0.1.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Interface {
    /// Its name, for example `eth0`.
    pub name: Arc<str>,
    /// Its index (the IPv6 scope id of its link-local addresses).
    pub index: u32,
    /// This host's address on it.
    pub addr: IpAddr,
    /// The length of the subnet prefix of `addr`.
    pub prefix_len: u8,
    /// The directed broadcast address of its IPv4 subnet, if it has one.
    pub broadcast: Option<Ipv4Addr>,
    /// It is up: administratively, and (as the driver lists it) with a
    /// carrier, so that a link whose cable is out is not used until it
    /// comes back.
    pub is_up: bool,
    /// It is a loopback interface.
    pub is_loopback: bool,
    /// It can send and receive multicast.
    pub is_multicast: bool,
    /// It is a point-to-point link (or a tunnel with no link layer).
    pub is_point_to_point: bool,
    /// It is a bridge whose ports are all virtual (docker0, virbr0, cni0:
    /// the containers and virtual machines of this host, not the LAN). A
    /// bridge with a physical port (a VM host's `br0` holding `eth0`) is a
    /// LAN, and this is false.
    pub is_virtual_bridge: bool,
}

impl Interface {
    /// An interface that is up and multicast-capable, with the broadcast
    /// address of its IPv4 subnet; loopback if `addr` is.
    ///
    /// ```
    /// let i = shoal::Interface::new("lo", 1, "127.0.0.1".parse().unwrap(), 8);
    /// assert!(i.is_loopback);
    /// ```
    pub fn new(name: &str, index: u32, addr: IpAddr, prefix_len: u8) -> Interface {
        let broadcast = match addr {
            IpAddr::V4(v4) if prefix_len < 31 => {
                let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
                Some(Ipv4Addr::from(u32::from(v4) | host_bits))
            }
            _ => None,
        };
        Interface {
            name: name.into(),
            index,
            addr,
            prefix_len,
            broadcast,
            is_up: true,
            is_loopback: addr.is_loopback(),
            is_multicast: true,
            is_point_to_point: false,
            is_virtual_bridge: false,
        }
    }

    /// Whether `ip` is on this interface's subnet (a peer there hears our
    /// broadcast or link-local multicast).
    ///
    /// ```
    /// let i = shoal::Interface::new("eth0", 2, "fe80::1".parse().unwrap(), 64);
    /// assert!(i.contains("fe80::2".parse().unwrap()));
    /// ```
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len.min(32)))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len.min(128)))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// Which interfaces a node uses, in the manner of mdns-sd's `IfKind`.
///
/// Give several to [`ConfigBuilder::interfaces`](crate::ConfigBuilder::interfaces):
/// an interface is used if any of them matches it.
///
/// ```
/// use shoal::IfKind;
/// let config = shoal::Config::builder()
///     .interfaces([IfKind::Name("eth0".into()), IfKind::Ipv4])
///     .build()?;
/// # Ok::<(), shoal::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IfKind {
    /// Every interface that is up.
    All,
    /// Every IPv4 address of every interface that is up.
    Ipv4,
    /// Every IPv6 address of every interface that is up.
    Ipv6,
    /// The interface with this name (for example `eth0`).
    Name(String),
    /// The interface that has this address.
    Addr(IpAddr),
    /// The interface with this index.
    Index(u32),
    /// The loopback interface.
    Loopback,
    /// The interfaces a function accepts.
    Predicate(Predicate),
}

impl fmt::Debug for IfKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfKind::All => f.write_str("All"),
            IfKind::Ipv4 => f.write_str("Ipv4"),
            IfKind::Ipv6 => f.write_str("Ipv6"),
            IfKind::Name(name) => f.debug_tuple("Name").field(name).finish(),
            IfKind::Addr(addr) => f.debug_tuple("Addr").field(addr).finish(),
            IfKind::Index(index) => f.debug_tuple("Index").field(index).finish(),
            IfKind::Loopback => f.write_str("Loopback"),
            IfKind::Predicate(_) => f.write_str("Predicate(..)"),
        }
    }
}

impl IfKind {
    /// Whether this rule selects `interface`.
    ///
    /// ```
    /// use shoal::{IfKind, Interface};
    /// let v6 = Interface::new("eth0", 2, "fe80::1".parse().unwrap(), 64);
    /// assert!(IfKind::Ipv6.matches(&v6));
    /// assert!(IfKind::Index(2).matches(&v6));
    /// assert!(!IfKind::Ipv4.matches(&v6));
    /// ```
    pub fn matches(&self, interface: &Interface) -> bool {
        match self {
            IfKind::All => interface.is_up,
            IfKind::Ipv4 => interface.is_up && interface.addr.is_ipv4(),
            IfKind::Ipv6 => interface.is_up && interface.addr.is_ipv6(),
            IfKind::Name(name) => *interface.name == **name,
            IfKind::Addr(addr) => interface.addr == *addr,
            IfKind::Index(index) => interface.index == *index,
            IfKind::Loopback => interface.is_loopback,
            IfKind::Predicate(p) => (p.0)(interface),
        }
    }
}

/// Whether the default rule chooses `interface`: it is up and
/// multicast-capable, neither loopback nor point-to-point (a tunnel such as
/// tun or WireGuard has no link layer and is listed as point-to-point) nor
/// a bridge to this host's containers or virtual machines
/// ([`Interface::is_virtual_bridge`]), and its address is IPv4 or IPv6
/// link-local.
///
/// Global IPv6 addresses are left out: shoal speaks IPv6 on a link-local
/// multicast group, and one link-local address per link is enough to name
/// the link.
///
/// ```
/// use shoal::{interface::is_default_choice, Interface};
/// assert!(is_default_choice(&Interface::new("eth0", 2, "10.0.0.5".parse().unwrap(), 24)));
/// assert!(is_default_choice(&Interface::new("eth0", 2, "fe80::1".parse().unwrap(), 64)));
/// assert!(!is_default_choice(&Interface::new("eth0", 2, "2001:db8::1".parse().unwrap(), 64)));
/// assert!(!is_default_choice(&Interface::new("lo", 1, "127.0.0.1".parse().unwrap(), 8)));
/// ```
pub fn is_default_choice(interface: &Interface) -> bool {
    interface.is_up
        && interface.is_multicast
        && !interface.is_loopback
        && !interface.is_point_to_point
        && !interface.is_virtual_bridge
        && match interface.addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => is_link_local_v6(v6),
        }
}

/// `fe80::/10`.
pub(crate) fn is_link_local_v6(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// The interfaces (addresses) a node uses out of `all`, the host's.
///
/// With `kinds` (what [`ConfigBuilder::interfaces`](crate::ConfigBuilder::interfaces)
/// was given): every address that is up and that any of them matches.
/// Without: the default rule ([`is_default_choice`]); if it leaves nothing,
/// every loopback address, so that a host with no network still finds the
/// nodes on itself. IPv6 addresses are used only by a node with
/// [`ipv6`](crate::ConfigBuilder::ipv6) on; the driver leaves them out
/// otherwise.
///
/// ```
/// use shoal::{interface::select, IfKind, Interface};
/// let mut docker0 = Interface::new("docker0", 3, "172.17.0.1".parse().unwrap(), 16);
/// docker0.is_virtual_bridge = true; // as the driver lists it
/// let host = [
///     Interface::new("lo", 1, "127.0.0.1".parse().unwrap(), 8),
///     Interface::new("eth0", 2, "10.0.0.5".parse().unwrap(), 24),
///     Interface::new("eth1", 4, "10.1.0.5".parse().unwrap(), 24),
///     docker0,
/// ];
/// let names = |chosen: Vec<Interface>| chosen.iter().map(|i| i.name.to_string()).collect::<Vec<_>>();
/// assert_eq!(names(select(None, &host)), ["eth0", "eth1"]);
/// assert_eq!(names(select(Some(&[IfKind::Name("eth1".into())]), &host)), ["eth1"]);
/// assert_eq!(names(select(Some(&[IfKind::Name("docker0".into())]), &host)), ["docker0"]);
/// assert_eq!(names(select(None, &host[..1])), ["lo"]); // nothing else: loopback
/// ```
pub fn select(kinds: Option<&[IfKind]>, all: &[Interface]) -> Vec<Interface> {
    match kinds {
        Some(kinds) => all
            .iter()
            .filter(|i| i.is_up && kinds.iter().any(|kind| kind.matches(i)))
            .cloned()
            .collect(),
        None => {
            let chosen: Vec<Interface> = all
                .iter()
                .filter(|i| is_default_choice(i))
                .cloned()
                .collect();
            if chosen.is_empty() {
                all.iter()
                    .filter(|i| i.is_up && i.is_loopback)
                    .cloned()
                    .collect()
            } else {
                chosen
            }
        }
    }
}

/// A function that chooses interfaces, for [`IfKind::Predicate`].
///
/// ```
/// use shoal::{IfKind, Interface, Predicate};
/// let not_docker = IfKind::Predicate(Predicate::new(|i: &Interface| !i.name.starts_with("docker")));
/// let docker0 = Interface::new("docker0", 3, "172.17.0.1".parse().unwrap(), 16);
/// assert!(!not_docker.matches(&docker0));
/// ```
#[derive(Clone)]
pub struct Predicate(Arc<dyn Fn(&Interface) -> bool + Send + Sync>);

impl Predicate {
    /// Wraps a function.
    ///
    /// ```
    /// let p = shoal::Predicate::new(|i: &shoal::Interface| i.addr.is_ipv4());
    /// # let _ = p;
    /// ```
    pub fn new(f: impl Fn(&Interface) -> bool + Send + Sync + 'static) -> Predicate {
        Predicate(Arc::new(f))
    }
}

impl PartialEq for Predicate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Predicate {}

/// Where a datagram arrived: the interface and this host's address on it.
/// [`Peer::via`](crate::Peer::via) says where we last heard a peer.
///
/// ```
/// use shoal::Via;
/// let via = Via::new("eth0", 2, "10.0.0.5".parse().unwrap());
/// assert_eq!(via.to_string(), "10.0.0.5 on eth0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Via {
    /// The interface's name.
    pub interface: Arc<str>,
    /// The interface's index.
    pub index: u32,
    /// This host's address the datagram was sent to on that interface
    /// (for a broadcast or multicast datagram: our address on it).
    pub local: IpAddr,
}

impl Via {
    /// A `Via`.
    ///
    /// ```
    /// let via = shoal::Via::new("lo", 1, "127.0.0.1".parse().unwrap());
    /// assert_eq!(via.index, 1);
    /// ```
    pub fn new(interface: &str, index: u32, local: IpAddr) -> Via {
        Via {
            interface: interface.into(),
            index,
            local,
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.local, self.interface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32, addr: &str, prefix: u8) -> Interface {
        Interface::new(name, index, addr.parse().unwrap(), prefix)
    }

    /// A host with one of everything: loopback, a LAN with IPv4 and IPv6,
    /// a bridge, a tunnel, a VPN point-to-point link, an interface that is
    /// down and one without multicast.
    fn host() -> Vec<Interface> {
        let mut wg0 = iface("wg0", 5, "10.8.0.2", 24);
        wg0.is_point_to_point = true; // what the lister says of a tunnel
        let mut ppp0 = iface("ppp0", 6, "100.64.0.2", 32);
        ppp0.is_point_to_point = true;
        let mut eth1 = iface("eth1", 7, "192.168.7.2", 24);
        eth1.is_up = false;
        let mut wg0_v6 = iface("wg0", 5, "fe80::8", 64);
        wg0_v6.is_point_to_point = true;
        let mut docker0 = iface("docker0", 9, "172.18.0.1", 16);
        docker0.is_virtual_bridge = true;
        let mut ib0 = iface("ib0", 8, "10.9.0.2", 24);
        ib0.is_multicast = false;
        vec![
            iface("lo", 1, "127.0.0.1", 8),
            iface("lo", 1, "::1", 128),
            iface("eth0", 2, "10.0.0.5", 24),
            iface("eth0", 2, "fe80::5", 64),
            iface("eth0", 2, "2001:db8::5", 64),
            iface("br0", 3, "172.17.0.1", 16),
            wg0,
            wg0_v6,
            ppp0,
            eth1,
            ib0,
            docker0,
        ]
    }

    fn chosen(kinds: Option<&[IfKind]>, all: &[Interface]) -> Vec<String> {
        select(kinds, all)
            .iter()
            .map(|i| format!("{} {}", i.name, i.addr))
            .collect()
    }

    #[test]
    fn default_takes_up_multicast_lans_ipv4_and_link_local_not_virtual_bridges() {
        assert_eq!(
            chosen(None, &host()),
            ["eth0 10.0.0.5", "eth0 fe80::5", "br0 172.17.0.1"]
        );
    }

    #[test]
    fn default_falls_back_to_loopback() {
        let all = host();
        let without_lans: Vec<Interface> = all
            .iter()
            .filter(|i| !["eth0", "br0"].contains(&&*i.name))
            .cloned()
            .collect();
        assert_eq!(chosen(None, &without_lans), ["lo 127.0.0.1", "lo ::1"]);
        assert!(select(None, &[]).is_empty());
    }

    #[test]
    fn loopback_fallback_skips_a_down_loopback() {
        let mut lo = iface("lo", 1, "127.0.0.1", 8);
        lo.is_up = false;
        assert!(select(None, &[lo]).is_empty());
    }

    #[test]
    fn explicit_kinds_match_any_and_only_up() {
        let all = host();
        let name = [IfKind::Name("eth1".into())];
        assert!(chosen(Some(&name), &all).is_empty(), "eth1 is down");
        let kinds = [IfKind::Name("wg0".into()), IfKind::Index(3)];
        assert_eq!(
            chosen(Some(&kinds), &all),
            ["br0 172.17.0.1", "wg0 10.8.0.2", "wg0 fe80::8"]
        );
        assert_eq!(
            chosen(Some(&[IfKind::Loopback]), &all),
            ["lo 127.0.0.1", "lo ::1"]
        );
        let v6 = chosen(Some(&[IfKind::Ipv6]), &all);
        assert_eq!(
            v6,
            ["lo ::1", "eth0 fe80::5", "eth0 2001:db8::5", "wg0 fe80::8"]
        );
        let v4 = chosen(Some(&[IfKind::Ipv4]), &all);
        assert!(v4.contains(&"ppp0 100.64.0.2".to_owned()));
        assert!(!v4.contains(&"eth1 192.168.7.2".to_owned()));
        let addr = [IfKind::Addr("10.0.0.5".parse().unwrap())];
        assert_eq!(chosen(Some(&addr), &all), ["eth0 10.0.0.5"]);
        let all_up = chosen(Some(&[IfKind::All]), &all);
        assert_eq!(all_up.len(), all.len() - 1);
        assert!(all_up.contains(&"docker0 172.18.0.1".to_owned()));
        let pred = [IfKind::Predicate(Predicate::new(|i: &Interface| {
            i.name.starts_with("br")
        }))];
        assert_eq!(chosen(Some(&pred), &all), ["br0 172.17.0.1"]);
        assert!(select(Some(&[]), &all).is_empty());
    }

    #[test]
    fn link_local_v6() {
        assert!(is_link_local_v6("fe80::1".parse().unwrap()));
        assert!(is_link_local_v6("febf::1".parse().unwrap()));
        assert!(!is_link_local_v6("fec0::1".parse().unwrap()));
        assert!(!is_link_local_v6("ff02::1".parse().unwrap()));
    }
}
