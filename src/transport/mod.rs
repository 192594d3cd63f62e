//! The driver's side of the transport seam: the UDP sockets, the host's
//! interfaces and which of them the node uses, and the mapping from the
//! core's [`Destination`]s to addresses. The core never sees a socket.
//!
//! - [`interfaces`] lists the host's interfaces (getifaddrs);
//! - [`socket`] opens the sockets and reads and writes datagrams with the
//!   interface they came in on or must leave by (`IP_PKTINFO`,
//!   `IPV6_PKTINFO`);
//! - this module chooses the interfaces ([`crate::interface::select`]),
//!   joins and leaves multicast groups as they come and go, sends each
//!   cluster datagram on every chosen interface, and drops datagrams that
//!   arrive on any other.
//!
//! Two ways to reach the cluster:
//! - **per interface** (the default): on each chosen IPv4 address, its
//!   subnet's directed broadcast address, or the multicast group with that
//!   interface as the outgoing one; on each chosen IPv6 interface, the
//!   link-local group scoped to it (`[ff02::5ea1%index]:port`);
//! - **one destination**, when the configuration names it (an explicit
//!   `broadcast` address or a `multicast_interface`): every cluster
//!   datagram goes to that one address, as node-discovery does and as
//!   shoal did before it knew interfaces.

mod interfaces;
mod seeds;
mod socket;
mod wake;

pub(crate) use seeds::{Resolved, Seeds};
pub(crate) use socket::{Batch, BATCH};
use socket::{MAX_SEGMENTED_BYTES, MAX_SEGMENTS};
pub(crate) use wake::Wake;

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use socket2::{InterfaceIndexOrAddress, SockRef};

use crate::config::TransportConfig;
use crate::interface::{is_link_local_v6, select, IfKind, Interface, Via};
use crate::protocol::{Destination, Transmit};
use crate::Error;
pub(crate) use socket::op;

/// Which socket a datagram is waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

/// What the transport knows of one interface index from the last listing.
#[derive(Debug, Clone)]
struct Known {
    name: Arc<str>,
    is_loopback: bool,
    /// Its IPv6 addresses, link-local first: our address on it for a
    /// datagram that came in by multicast.
    v6: Vec<Ipv6Addr>,
}

/// A datagram [`UdpTransport::recv`] read.
#[derive(Debug)]
pub(crate) enum Incoming<'b> {
    /// For the core: `data`, from `from`, arrived `via`.
    Datagram {
        data: &'b [u8],
        from: SocketAddr,
        via: Option<Via>,
    },
    /// It came in on an interface the node does not use: dropped.
    Foreign,
}

/// The node's sockets, one IPv4 and (with `ipv6`) one IPv6, and the
/// interfaces it uses.
#[derive(Debug)]
pub(crate) struct UdpTransport {
    v4: UdpSocket,
    v6: Option<UdpSocket>,
    local_addr: SocketAddr,
    port: u16,
    /// The one destination of cluster datagrams, when the configuration
    /// names it; `None`: per interface.
    single: Option<SocketAddr>,
    /// With one destination: the configured broadcast address or
    /// multicast interface, which says which interfaces are meant.
    legacy_hint: Option<Ipv4Addr>,
    multicast: Option<Ipv4Addr>,
    ipv6_group: Ipv6Addr,
    unicast_only: bool,
    /// The selection rules (`None`: the default rule).
    kinds: Option<Vec<IfKind>>,
    /// Drop datagrams from interfaces that were not chosen. Off with one
    /// destination and no explicit interfaces: exactly the old behaviour.
    filter: bool,
    /// The chosen interfaces (addresses), IPv4 and IPv6.
    chosen: Vec<Interface>,
    chosen_v4: BTreeSet<u32>,
    chosen_v6: BTreeSet<u32>,
    /// Every interface of the host at the last listing, by index.
    known: HashMap<u32, Known>,
    /// Every address of the host at the last listing.
    host_addrs: BTreeSet<IpAddr>,
    /// Interfaces whose multicast group membership we hold.
    joined_v4: BTreeSet<u32>,
    joined_v6: BTreeSet<u32>,
    /// Whether consecutive datagrams of one length may go as one send with
    /// UDP segmentation offload: until the kernel first refuses it.
    segmentation: Cell<bool>,
}

impl UdpTransport {
    /// Opens the sockets and chooses the interfaces.
    pub(crate) fn open(config: &TransportConfig, unicast_only: bool) -> Result<Self, Error> {
        let v4 = socket::open_v4(SocketAddr::new(config.bind, config.port))?;
        let single = config.broadcast_set || config.multicast_interface != Ipv4Addr::UNSPECIFIED;
        if let Some(group) = config.multicast {
            let s = SockRef::from(&v4);
            s.set_multicast_ttl_v4(config.multicast_ttl)
                .map_err(op("set the multicast TTL"))?;
            s.set_multicast_loop_v4(true)
                .map_err(op("enable multicast loopback"))?;
            if single {
                // One destination: as before, one join on the configured
                // interface (0.0.0.0: the kernel's choice).
                let interface = config.multicast_interface;
                s.join_multicast_v4(&group, &interface)
                    .map_err(op("join the multicast group"))?;
                if interface != Ipv4Addr::UNSPECIFIED {
                    s.set_multicast_if_v4(&interface)
                        .map_err(op("set the multicast interface"))?;
                }
            }
        }
        let v6 = if config.ipv6 {
            Some(socket::open_v6(config.port, config.multicast_ttl)?)
        } else {
            None
        };
        let local_addr = v4.local_addr().map_err(op("read the bound address"))?;
        let legacy_hint = single.then(|| {
            if config.multicast_interface != Ipv4Addr::UNSPECIFIED {
                config.multicast_interface
            } else {
                config.broadcast
            }
        });
        let mut transport = UdpTransport {
            v4,
            v6,
            local_addr,
            port: config.port,
            single: single.then(|| config.cluster()),
            legacy_hint,
            multicast: config.multicast,
            ipv6_group: config.ipv6_group,
            unicast_only,
            kinds: config.interfaces.clone(),
            filter: !single || config.interfaces.is_some(),
            chosen: Vec::new(),
            chosen_v4: BTreeSet::new(),
            chosen_v6: BTreeSet::new(),
            known: HashMap::new(),
            host_addrs: BTreeSet::new(),
            joined_v4: BTreeSet::new(),
            joined_v6: BTreeSet::new(),
            segmentation: Cell::new(true),
        };
        transport.rescan();
        Ok(transport)
    }

    /// The address the IPv4 socket is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The interfaces (addresses) in use now.
    pub(crate) fn chosen(&self) -> &[Interface] {
        &self.chosen
    }

    /// Replaces the selection rules (`None`: the default rule); the next
    /// [`rescan`](Self::rescan) applies them.
    pub(crate) fn set_kinds(&mut self, kinds: Option<Vec<IfKind>>) {
        if self.single.is_some() {
            // With one destination, explicit interfaces filter what comes in.
            self.filter = kinds.is_some();
        }
        self.kinds = kinds;
    }

    /// Lists the host's interfaces again and applies the selection: joins
    /// the groups on new interfaces and leaves those on interfaces gone.
    /// Returns whether the chosen interfaces changed. A failed listing
    /// keeps the previous choice.
    pub(crate) fn rescan(&mut self) -> bool {
        let all = match interfaces::list() {
            Ok(all) => all,
            Err(error) => {
                tracing::warn!(%error, "listing the network interfaces failed");
                return false;
            }
        };
        self.known.clear();
        self.host_addrs.clear();
        for i in &all {
            let known = self.known.entry(i.index).or_insert_with(|| Known {
                name: i.name.clone(),
                is_loopback: i.is_loopback,
                v6: Vec::new(),
            });
            if let IpAddr::V6(v6) = i.addr {
                if is_link_local_v6(v6) {
                    known.v6.insert(0, v6);
                } else {
                    known.v6.push(v6);
                }
            }
            self.host_addrs.insert(i.addr);
        }
        let chosen = self.choose(&all);
        self.chosen_v4 = family_indices(&chosen, IpAddr::is_ipv4);
        self.chosen_v6 = family_indices(&chosen, IpAddr::is_ipv6);
        // Every time, not only on a change: a join that failed (the
        // interface was still coming up) is tried again.
        self.sync_groups();
        if chosen == self.chosen {
            return false;
        }
        tracing::debug!(
            interfaces = ?chosen
                .iter()
                .map(|i| format!("{} {}/{}", i.name, i.addr, i.prefix_len))
                .collect::<Vec<_>>(),
            "network interfaces chosen"
        );
        self.chosen = chosen;
        true
    }

    /// Holds the multicast groups on the chosen interfaces, and only there.
    fn sync_groups(&mut self) {
        if self.single.is_none() {
            if let Some(group) = self.multicast {
                let s = SockRef::from(&self.v4);
                sync_groups(&mut self.joined_v4, &self.chosen_v4, |index, join| {
                    let i = InterfaceIndexOrAddress::Index(index);
                    if join {
                        s.join_multicast_v4_n(&group, &i)
                    } else {
                        s.leave_multicast_v4_n(&group, &i)
                    }
                });
            }
        }
        if let Some(v6) = &self.v6 {
            let s = SockRef::from(v6);
            let group = self.ipv6_group;
            sync_groups(&mut self.joined_v6, &self.chosen_v6, |index, join| {
                if join {
                    s.join_multicast_v6(&group, index)
                } else {
                    s.leave_multicast_v6(&group, index)
                }
            });
        }
    }

    /// Applies the selection to `all`, the host's interfaces.
    fn choose(&self, all: &[Interface]) -> Vec<Interface> {
        let mut chosen = match (&self.kinds, self.legacy_hint) {
            (None, Some(hint)) => legacy_choice(hint, all),
            (kinds, _) => select(kinds.as_deref(), all),
        };
        // Without the IPv6 socket, IPv6 addresses are of no use.
        if self.v6.is_none() {
            chosen.retain(|i| i.addr.is_ipv4());
        }
        chosen
    }

    /// The sockets to wait on, for poll(2): IPv4, and IPv6 if open.
    pub(crate) fn fds(&self) -> (BorrowedFd<'_>, Option<BorrowedFd<'_>>) {
        (self.v4.as_fd(), self.v6.as_ref().map(AsFd::as_fd))
    }

    /// Reads the datagrams waiting on `family`'s socket into `batch`, up
    /// to [`BATCH`] with one system call; returns how many (`WouldBlock` if
    /// none). [`incoming`](Self::incoming) then says what they are.
    pub(crate) fn recv(&self, family: Family, batch: &mut Batch) -> io::Result<usize> {
        let socket = match (family, &self.v6) {
            (Family::V6, Some(v6)) => v6,
            _ => &self.v4,
        };
        socket::recv(socket, batch)
    }

    /// The datagrams of the last [`recv`](Self::recv) on `family`'s socket,
    /// each for the core or dropped as from an interface not chosen.
    pub(crate) fn incoming<'b>(
        &'b self,
        family: Family,
        batch: &'b Batch,
    ) -> impl Iterator<Item = Incoming<'b>> + 'b {
        batch.datagrams().map(move |(data, received)| {
            if !self.accepts(family, received.index, received.from.ip()) {
                return Incoming::Foreign;
            }
            Incoming::Datagram {
                data,
                from: received.from,
                via: self.via(received.index, received.local),
            }
        })
    }

    /// Whether a datagram from `from` that came in on interface `index` is
    /// for us.
    fn accepts(&self, family: Family, index: u32, from: IpAddr) -> bool {
        if !self.filter {
            return true;
        }
        let chosen = match family {
            Family::V4 => &self.chosen_v4,
            Family::V6 => &self.chosen_v6,
        };
        if chosen.contains(&index) {
            return true;
        }
        // A datagram from this host to our own address on a chosen
        // interface comes in on loopback, whatever interface the address
        // is on: another node on this host, not another network.
        let on_loopback = self.known.get(&index).is_some_and(|k| k.is_loopback);
        on_loopback && self.host_addrs.contains(&from)
    }

    fn via(&self, index: u32, local: Option<IpAddr>) -> Option<Via> {
        let known = self.known.get(&index);
        let name = match known {
            Some(known) => known.name.clone(),
            // An interface newer than the last listing.
            None => match nix::net::if_::if_indextoname(index) {
                Ok(name) => name.to_string_lossy().into(),
                Err(_) => return None,
            },
        };
        let local = match local? {
            // Our address on the interface stands for a group address.
            IpAddr::V6(v6) if v6.is_multicast() => IpAddr::V6(*known.and_then(|k| k.v6.first())?),
            local => local,
        };
        Some(Via {
            interface: name,
            index,
            local,
        })
    }

    /// Sends what the core queued, in order, each where the core addressed
    /// it. Consecutive datagrams for the same destination and of one length
    /// (a burst of channel messages, say) go as one segmentation-offload
    /// send while the kernel takes it. A failed send is logged and dropped,
    /// as a lost datagram would be.
    pub(crate) fn send_all(&self, transmits: &[Transmit]) {
        let mut datagrams = Vec::new();
        let mut rest = transmits;
        while let Some(first) = rest.first() {
            let run = if self.segmentation.get() {
                segmentable_run(rest)
            } else {
                1
            };
            datagrams.clear();
            datagrams.extend(rest[..run].iter().map(|t| IoSlice::new(&t.payload)));
            self.send(first.destination, &datagrams);
            rest = &rest[run..];
        }
    }

    /// Sends `datagrams` (one, or a run for segmentation offload) to
    /// `destination`.
    fn send(&self, destination: Destination, datagrams: &[IoSlice<'_>]) {
        match destination {
            Destination::Cluster if self.unicast_only => {}
            Destination::Cluster => match self.single {
                Some(to) => self.send_to(&self.v4, datagrams, to),
                None => self.send_cluster(datagrams),
            },
            Destination::Peer(addr) => self.send_peer(datagrams, addr),
        }
    }

    fn send_to(&self, socket: &UdpSocket, datagrams: &[IoSlice<'_>], to: SocketAddr) {
        if let Err(error) = self.send_on(socket, datagrams, to, None) {
            tracing::debug!(%error, %to, "send failed");
        }
    }

    /// Sends with segmentation offload if there are several datagrams and
    /// the kernel takes it; once it refuses, one by one for good.
    fn send_on(
        &self,
        socket: &UdpSocket,
        datagrams: &[IoSlice<'_>],
        to: SocketAddr,
        on: Option<(u32, Ipv4Addr)>,
    ) -> io::Result<()> {
        if datagrams.len() > 1 && self.segmentation.get() {
            match socket::send(socket, datagrams, to, on) {
                Err(error) if socket::refuses_segmentation(&error) => {
                    tracing::debug!(%error, "UDP segmentation offload refused: sending datagrams one by one");
                    self.segmentation.set(false);
                }
                result => return result,
            }
        }
        for datagram in datagrams {
            socket::send(socket, std::slice::from_ref(datagram), to, on)?;
        }
        Ok(())
    }

    /// On every chosen interface, where that interface's peers hear it.
    fn send_cluster(&self, datagrams: &[IoSlice<'_>]) {
        let mut sent_v4 = BTreeSet::new();
        for i in &self.chosen {
            let IpAddr::V4(source) = i.addr else { continue };
            let to = match self.multicast.or(i.broadcast) {
                Some(to) => to,
                // A /31, /32 or point-to-point address has no broadcast
                // address: its peers are reached by unicast.
                None => continue,
            };
            // One datagram per interface and destination, however many
            // addresses share them.
            if !sent_v4.insert((i.index, to)) {
                continue;
            }
            let to = SocketAddr::V4(SocketAddrV4::new(to, self.port));
            if let Err(error) = self.send_on(&self.v4, datagrams, to, Some((i.index, source))) {
                // An interface that went away since the last rescan.
                tracing::debug!(%error, %to, interface = %i.name, "send failed");
            }
        }
        if let Some(v6) = &self.v6 {
            for &index in &self.chosen_v6 {
                let to = SocketAddrV6::new(self.ipv6_group, self.port, 0, index);
                self.send_to(v6, datagrams, to.into());
            }
        }
    }

    fn send_peer(&self, datagrams: &[IoSlice<'_>], addr: SocketAddr) {
        match addr {
            SocketAddr::V4(_) => self.send_to(&self.v4, datagrams, addr),
            SocketAddr::V6(mut v6addr) => {
                let Some(v6) = &self.v6 else {
                    tracing::debug!(to = %addr, "no IPv6 socket (ipv6 is off): not sent");
                    return;
                };
                if let Some(v4) = v6addr.ip().to_ipv4_mapped() {
                    return self.send_to(
                        &self.v4,
                        datagrams,
                        SocketAddr::new(v4.into(), v6addr.port()),
                    );
                }
                if is_link_local_v6(*v6addr.ip()) && v6addr.scope_id() == 0 {
                    // A link-local address means nothing without its link:
                    // the first chosen one is the best guess.
                    match self.chosen_v6.first() {
                        Some(&index) => v6addr.set_scope_id(index),
                        None => {
                            tracing::debug!(to = %addr, "link-local address without a scope: not sent");
                            return;
                        }
                    }
                }
                self.send_to(v6, datagrams, v6addr.into());
            }
        }
    }
}

/// The longest datagram sent with segmentation offload: each segment must
/// fit the link's MTU with its IP and UDP headers, since the kernel cannot
/// fragment it (an oversized segment is dropped on the way, silently). 1,232
/// bytes fit any IPv6 link (1,280) and any IPv4 link of that size or more;
/// longer datagrams (the 1,500-byte blocks of a large message) go one by
/// one and are fragmented by IP, as node-discovery's are.
const MAX_SEGMENT_LEN: usize = 1232;

/// How many of `transmits`, from the first, can go as one segmentation-
/// offload send: the same destination, every one as long as the first but
/// the last, which may be shorter, each short enough to need no IP
/// fragment ([`MAX_SEGMENT_LEN`]), within the kernel's limits.
fn segmentable_run(transmits: &[Transmit]) -> usize {
    let Some(first) = transmits.first() else {
        return 0;
    };
    let size = first.payload.len();
    if size > MAX_SEGMENT_LEN {
        return 1;
    }
    let mut total = size;
    let mut run = 1;
    for t in &transmits[1..] {
        let len = t.payload.len();
        if run == MAX_SEGMENTS
            || t.destination != first.destination
            || len > size
            || len == 0
            || total + len > MAX_SEGMENTED_BYTES
        {
            break;
        }
        total += len;
        run += 1;
        if len < size {
            break;
        }
    }
    run
}

/// The interfaces (with their IPv4 and link-local IPv6 addresses) meant by
/// a configured single destination `hint` (a broadcast address or a
/// multicast interface's address): loopback for `127.x`, the interfaces
/// whose subnet broadcast or address it is, else the default rule (for
/// `255.255.255.255` or a multicast group on the kernel's interface).
fn legacy_choice(hint: Ipv4Addr, all: &[Interface]) -> Vec<Interface> {
    let by_hint = |i: &Interface| {
        i.is_up
            && match i.addr {
                IpAddr::V4(addr) => {
                    (hint.is_loopback() && i.is_loopback)
                        || i.broadcast == Some(hint)
                        || addr == hint
                }
                IpAddr::V6(_) => false,
            }
    };
    let indices: BTreeSet<u32> = all.iter().filter(|i| by_hint(i)).map(|i| i.index).collect();
    if indices.is_empty() {
        return select(None, all);
    }
    all.iter()
        .filter(|i| {
            by_hint(i)
                || (indices.contains(&i.index)
                    && i.is_up
                    && matches!(i.addr, IpAddr::V6(v6) if is_link_local_v6(v6) || v6.is_loopback()))
        })
        .cloned()
        .collect()
}

fn family_indices(chosen: &[Interface], family: fn(&IpAddr) -> bool) -> BTreeSet<u32> {
    chosen
        .iter()
        .filter(|i| family(&i.addr) && i.index != 0)
        .map(|i| i.index)
        .collect()
}

/// Joins the group on the interfaces in `want` and not in `joined`, leaves
/// it on those in `joined` and not in `want`, by interface index.
fn sync_groups(
    joined: &mut BTreeSet<u32>,
    want: &BTreeSet<u32>,
    mut apply: impl FnMut(u32, bool) -> io::Result<()>,
) {
    for &index in want.difference(&joined.clone()) {
        match apply(index, true) {
            Ok(()) => {
                joined.insert(index);
            }
            Err(error) => tracing::debug!(%error, index, "joining the multicast group failed"),
        }
    }
    for &index in joined.clone().difference(want) {
        // On an interface that is gone the kernel has already dropped it.
        let _ = apply(index, false);
        joined.remove(&index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(destination: Destination, len: usize) -> Transmit {
        Transmit {
            destination,
            payload: vec![0; len],
        }
    }

    #[test]
    fn runs_are_one_destination_and_one_length() {
        let peer = Destination::Peer("10.0.0.2:12345".parse().unwrap());
        let c = Destination::Cluster;
        let queue = [
            transmit(c, 200),
            transmit(c, 200),
            transmit(c, 150), // shorter: ends the run, in it
            transmit(c, 200),
            transmit(peer, 200), // another destination
            transmit(peer, 300), // longer: not in the run
        ];
        assert_eq!(segmentable_run(&queue), 3);
        assert_eq!(segmentable_run(&queue[3..]), 1);
        assert_eq!(segmentable_run(&queue[4..]), 1);
        assert_eq!(segmentable_run(&[]), 0);
    }

    #[test]
    fn runs_stay_within_the_kernel_limits() {
        let many: Vec<_> = (0..200)
            .map(|_| transmit(Destination::Cluster, 100))
            .collect();
        assert_eq!(segmentable_run(&many), MAX_SEGMENTS);
        let big: Vec<_> = (0..64)
            .map(|_| transmit(Destination::Cluster, 1200))
            .collect();
        let run = segmentable_run(&big);
        assert_eq!(run, MAX_SEGMENTED_BYTES / 1200);
        assert!(run * 1200 <= MAX_SEGMENTED_BYTES);
    }

    #[test]
    fn blocks_longer_than_a_segment_go_one_by_one() {
        // A large message's 1,500-byte blocks need IP fragments, which a
        // segmentation-offload send cannot have.
        let blocks: Vec<_> = (0..5)
            .map(|_| transmit(Destination::Cluster, 1500))
            .collect();
        assert_eq!(segmentable_run(&blocks), 1);
        let edge: Vec<_> = (0..5)
            .map(|_| transmit(Destination::Cluster, MAX_SEGMENT_LEN))
            .collect();
        assert_eq!(segmentable_run(&edge), 5);
    }
}
