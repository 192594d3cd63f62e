//! Lists the host's interfaces with getifaddrs(3) (through nix): one
//! [`Interface`] per IPv4 or IPv6 address, with the flags the selection
//! rules need. Read-only: listing sends nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use nix::ifaddrs::getifaddrs;
use nix::libc;
use nix::net::if_::InterfaceFlags;

use crate::interface::Interface;

/// What the link-layer (`AF_PACKET`) entry of an interface says.
#[derive(Clone, Copy)]
struct Link {
    index: u32,
    /// `ARPHRD_*`.
    hatype: u16,
    /// Length of the hardware address.
    halen: usize,
}

/// Link types that carry IP with no link layer of their own: tunnels
/// (tun, WireGuard, IP-in-IP, GRE, SIT) and PPP. Broadcast and link-local
/// multicast on them reach one far end at most, never a LAN.
const TUNNEL_TYPES: [u16; 9] = [
    libc::ARPHRD_NONE,
    libc::ARPHRD_VOID,
    libc::ARPHRD_TUNNEL,
    libc::ARPHRD_TUNNEL6,
    libc::ARPHRD_SIT,
    libc::ARPHRD_IPGRE,
    // ARPHRD_IP6GRE, which libc does not name.
    823,
    libc::ARPHRD_PPP,
    libc::ARPHRD_IPDDP,
];

/// Every IPv4 and IPv6 address of every interface of the host, in the
/// kernel's order.
pub(crate) fn list() -> std::io::Result<Vec<Interface>> {
    let entries: Vec<_> = getifaddrs()?.collect();
    let mut links: HashMap<&str, Link> = HashMap::new();
    for entry in &entries {
        if let Some(link) = entry.address.as_ref().and_then(|a| a.as_link_addr()) {
            links.insert(
                &entry.interface_name,
                Link {
                    index: u32::try_from(link.ifindex()).unwrap_or(0),
                    hatype: link.hatype(),
                    halen: link.halen(),
                },
            );
        }
    }
    let mut virtual_bridges: HashMap<&str, bool> = HashMap::new();
    let mut out = Vec::new();
    for entry in &entries {
        let Some(address) = &entry.address else {
            continue;
        };
        let addr: IpAddr = if let Some(v4) = address.as_sockaddr_in() {
            v4.ip().into()
        } else if let Some(v6) = address.as_sockaddr_in6() {
            v6.ip().into()
        } else {
            continue;
        };
        let prefix_len =
            entry
                .netmask
                .as_ref()
                .map_or(if addr.is_ipv4() { 32 } else { 128 }, |mask| {
                    if let Some(m) = mask.as_sockaddr_in() {
                        u32::from(m.ip()).count_ones() as u8
                    } else if let Some(m) = mask.as_sockaddr_in6() {
                        u128::from(m.ip()).count_ones() as u8
                    } else {
                        0
                    }
                });
        let link = links.get(entry.interface_name.as_str()).copied();
        let index = match link {
            Some(link) if link.index != 0 => link.index,
            _ => match nix::net::if_::if_nametoindex(entry.interface_name.as_str()) {
                Ok(index) => index,
                // Gone between the two calls.
                Err(_) => continue,
            },
        };
        let flags = entry.flags;
        let is_loopback = flags.contains(InterfaceFlags::IFF_LOOPBACK);
        let tunnel = !is_loopback
            && match link {
                Some(link) => link.halen == 0 || TUNNEL_TYPES.contains(&link.hatype),
                // No link-layer entry at all: nothing to broadcast on.
                None => true,
            };
        // The broadcast address is the subnet's, computed from the prefix
        // (Interface::new): getifaddrs reports the address itself when the
        // address was added without one (`ip addr add 10.0.0.1/24`), yet
        // the kernel routes the subnet's broadcast address all the same.
        let mut interface = Interface::new(&entry.interface_name, index, addr, prefix_len);
        // Administratively up and with a carrier: a cable that is out
        // carries nothing, and the next rescan picks the link up when it
        // comes back.
        interface.is_up =
            flags.contains(InterfaceFlags::IFF_UP) && flags.contains(InterfaceFlags::IFF_RUNNING);
        interface.is_loopback = is_loopback;
        interface.is_multicast = flags.contains(InterfaceFlags::IFF_MULTICAST);
        interface.is_point_to_point = flags.contains(InterfaceFlags::IFF_POINTOPOINT) || tunnel;
        interface.is_virtual_bridge = *virtual_bridges
            .entry(&entry.interface_name)
            .or_insert_with(|| is_virtual_bridge(SYS_CLASS_NET, &entry.interface_name));
        if interface.is_point_to_point {
            // The "broadcast" union of a point-to-point link holds the far
            // end's address, not a broadcast address.
            interface.broadcast = None;
        }
        out.push(interface);
    }
    Ok(out)
}

/// Where Linux describes each network interface (for the namespace of
/// whoever mounted it: a container's own, or `ip netns exec`'s).
const SYS_CLASS_NET: &str = "/sys/class/net";

/// Whether `name` is a bridge whose ports are all virtual: docker0,
/// virbr0, cni0 and the like connect this host to its own containers and
/// virtual machines, not to the LAN. A bridge with a port backed by
/// hardware (directly, or through a bond or VLAN) is a LAN's. Read from
/// sysfs (`bridge/`, `brif/`, `device`, `lower_*`); where it is missing
/// (not Linux), nothing is a virtual bridge.
fn is_virtual_bridge(sys: &str, name: &str) -> bool {
    let base = Path::new(sys).join(name);
    if !base.join("bridge").is_dir() {
        return false;
    }
    match std::fs::read_dir(base.join("brif")) {
        Ok(ports) => !ports
            .flatten()
            .any(|port| has_hardware(sys, &port.file_name().to_string_lossy(), 0)),
        Err(_) => false,
    }
}

/// Whether interface `name` is a device (`device` link) or sits on one
/// through its lower interfaces (`lower_<name>`: a bond's slaves, a
/// VLAN's parent), a few levels down at most.
fn has_hardware(sys: &str, name: &str, depth: u8) -> bool {
    let base = Path::new(sys).join(name);
    if base.join("device").exists() {
        return true;
    }
    if depth >= 4 {
        return false;
    }
    std::fs::read_dir(&base).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .strip_prefix("lower_")
                .is_some_and(|lower| has_hardware(sys, lower, depth + 1))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading the host's interfaces sends nothing; every host has a
    /// loopback interface that is up with 127.0.0.1/8.
    #[test]
    fn lists_loopback() {
        let all = list().unwrap();
        let lo = all
            .iter()
            .find(|i| i.addr == IpAddr::from([127, 0, 0, 1]))
            .expect("127.0.0.1 is listed");
        assert!(lo.is_loopback && lo.is_up && !lo.is_point_to_point);
        assert_eq!(lo.prefix_len, 8);
        assert_eq!(lo.broadcast, Some([127, 255, 255, 255].into()));
        assert!(lo.index > 0);
        assert!(all.iter().all(|i| i.index > 0));
        assert!(!lo.is_virtual_bridge);
    }

    /// A fake sysfs: docker0 (a veth port), br0 (eth0, a device), br1 (a
    /// bond over eth1), br2 (no ports), eth0 (not a bridge).
    #[test]
    fn virtual_bridges_from_sysfs() {
        let dir = std::env::temp_dir().join(format!("shoal-sysfs-{}", std::process::id()));
        let mk = |path: &str| std::fs::create_dir_all(dir.join(path)).unwrap();
        for path in [
            "docker0/bridge",
            "docker0/brif/veth1",
            "veth1",
            "br0/bridge",
            "br0/brif/eth0",
            "eth0/device",
            "br1/bridge",
            "br1/brif/bond0",
            "bond0/lower_eth1",
            "eth1/device",
            "br2/bridge",
            "br2/brif",
        ] {
            mk(path);
        }
        let sys = dir.to_str().unwrap();
        assert!(is_virtual_bridge(sys, "docker0"));
        assert!(!is_virtual_bridge(sys, "br0"));
        assert!(!is_virtual_bridge(sys, "br1"));
        assert!(is_virtual_bridge(sys, "br2"));
        assert!(!is_virtual_bridge(sys, "eth0"));
        assert!(!is_virtual_bridge(sys, "nonexistent"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
