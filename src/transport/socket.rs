//! The UDP sockets and the system calls that say which interface a
//! datagram came in on or must go out of: recvmsg(2) and sendmsg(2) with
//! `IP_PKTINFO` / `IPV6_PKTINFO` (nix), sockets built with socket2 so that
//! several nodes can share a port on one host.
//!
//! The sockets are non-blocking and belong to the driver's thread, which
//! waits for them with poll(2) itself; a send that finds the socket's buffer
//! full waits for room, briefly ([`SEND_WAIT`]).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recvmmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    MultiHeaders, RecvMsg, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::Error;

pub(crate) fn op(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Socket { op, source }
}

/// A socket shared by every node on this host that uses the port.
fn shared_socket(domain: Domain) -> Result<Socket, Error> {
    let socket =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(op("create socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(op("set SO_REUSEADDR"))?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket
        .set_reuse_port(true)
        .map_err(op("set SO_REUSEPORT"))?;
    socket
        .set_nonblocking(true)
        .map_err(op("make the socket non-blocking"))?;
    // Bursts of multi-block messages arrive faster than one task drains
    // them; a bigger receive buffer trades memory for fewer drops. Best effort.
    let _ = socket.set_recv_buffer_size(1 << 21);
    Ok(socket)
}

fn bind(socket: &Socket, addr: SocketAddr) -> Result<(), Error> {
    socket
        .bind(&addr.into())
        .map_err(|source| Error::Bind { addr, source })
}

/// How long a send waits for room in a full socket buffer before the
/// datagram is dropped (as the network could have dropped it). The buffer
/// drains at the link's pace, so this is only reached when the interface
/// is gone or stuck.
const SEND_WAIT: Duration = Duration::from_millis(100);

/// Runs `send` until it does not find the socket's buffer full, waiting for
/// room in between, at most [`SEND_WAIT`] in all.
pub(super) fn send_with_room(
    socket: &UdpSocket,
    mut send: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    let give_up = Instant::now() + SEND_WAIT;
    loop {
        match send() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(error);
                }
                let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
                let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(errno) => return Err(errno.into()),
                }
            }
            result => return result,
        }
    }
}

/// The IPv4 socket: bound to `bind:port`, with broadcast allowed and
/// `IP_PKTINFO` on, so each datagram says which interface it came in on.
/// The caller sets up multicast.
pub(super) fn open_v4(bind_addr: SocketAddr) -> Result<UdpSocket, Error> {
    let socket = shared_socket(Domain::IPV4)?;
    bind(&socket, bind_addr)?;
    socket.set_broadcast(true).map_err(op("set SO_BROADCAST"))?;
    setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
        .map_err(|e| op("set IP_PKTINFO")(e.into()))?;
    Ok(socket.into())
}

/// The IPv6 socket: `[::]:port`, IPv6 only (the IPv4 socket has IPv4),
/// with `IPV6_RECVPKTINFO` on and multicast looped back (other nodes on
/// this host are peers too), at most `hops` routers away.
pub(super) fn open_v6(port: u16, hops: u32) -> Result<UdpSocket, Error> {
    let socket = shared_socket(Domain::IPV6)?;
    socket.set_only_v6(true).map_err(op("set IPV6_V6ONLY"))?;
    bind(&socket, SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))?;
    setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
        .map_err(|e| op("set IPV6_RECVPKTINFO")(e.into()))?;
    socket
        .set_multicast_loop_v6(true)
        .map_err(op("enable IPv6 multicast loopback"))?;
    socket
        .set_multicast_hops_v6(hops)
        .map_err(op("set the IPv6 multicast hops"))?;
    Ok(socket.into())
}

/// One datagram read with [`recv`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Received {
    pub(super) len: usize,
    pub(super) from: SocketAddr,
    /// The interface it came in on (0: the kernel did not say).
    pub(super) index: u32,
    /// For IPv4: our address on that interface (`ipi_spec_dst`). For IPv6:
    /// the datagram's destination (the group, for multicast).
    pub(super) local: Option<IpAddr>,
}

/// Datagrams read per recvmmsg(2) call.
pub(crate) const BATCH: usize = 32;

/// Room for one datagram in a [`Batch`]. shoal's and node-discovery's
/// datagrams are at most 1,500 bytes (sealed, 1,562); a longer one is cut
/// here and then fails its checksum or authentication, so it is dropped
/// and counted like any malformed datagram.
const SLOT: usize = 4096;

/// Buffers for reading up to [`BATCH`] datagrams with one system call, kept
/// for the driver's life.
pub(crate) struct Batch {
    slots: Box<[[u8; SLOT]]>,
    /// What the last read got, in order: slot `i` holds datagram `i`.
    got: Vec<Received>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").field("got", &self.got).finish()
    }
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            slots: vec![[0; SLOT]; BATCH].into_boxed_slice(),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// The datagrams of the last read: their bytes and where they came from.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (&[u8], &Received)> {
        self.slots
            .iter()
            .zip(&self.got)
            .map(|(slot, got)| (&slot[..got.len.min(SLOT)], got))
    }
}

/// Reads up to [`BATCH`] waiting datagrams into `batch` with one
/// recvmmsg(2); returns how many (`WouldBlock` if none was waiting).
pub(super) fn recv(socket: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
    let Batch { slots, got } = batch;
    got.clear();
    // Made afresh for each call: the kernel shrinks each header's address
    // and control lengths to what the last datagram used, and nix does
    // not restore them, so reused headers would cut a longer address or
    // control message (an IPv6 one after an IPv4 one) the next time. One
    // in6_pktinfo, the larger of the two, per datagram.
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
        BATCH,
        Some(nix::cmsg_space!(libc::in6_pktinfo)),
    );
    let mut free = slots.iter_mut();
    let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
        std::array::from_fn(|_| [IoSliceMut::new(&mut free.next().expect("BATCH slots")[..])]);
    let results = recvmmsg(
        socket.as_raw_fd(),
        &mut headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(io::Error::from)?;
    for msg in results {
        match received(&msg) {
            Some(r) => got.push(r),
            // Not from an IP address (impossible on a UDP socket): keep
            // the slots in step with an entry that no one accepts.
            None => got.push(Received {
                len: 0,
                from: SocketAddr::from(([0, 0, 0, 0], 0)),
                index: 0,
                local: None,
            }),
        }
    }
    Ok(got.len())
}

/// Where one datagram came from, and on which interface.
fn received(msg: &RecvMsg<'_, '_, SockaddrStorage>) -> Option<Received> {
    let addr = msg.address?;
    let from = if let Some(v4) = addr.as_sockaddr_in() {
        SocketAddr::V4(SocketAddrV4::from(*v4))
    } else if let Some(v6) = addr.as_sockaddr_in6() {
        SocketAddr::V6(SocketAddrV6::from(*v6))
    } else {
        return None;
    };
    let mut index = 0;
    let mut local = None;
    // A truncated control message (ENOBUFS) only loses the interface.
    if let Ok(cmsgs) = msg.cmsgs() {
        for cmsg in cmsgs {
            match cmsg {
                ControlMessageOwned::Ipv4PacketInfo(info) => {
                    index = u32::try_from(info.ipi_ifindex).unwrap_or(0);
                    local = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        info.ipi_spec_dst.s_addr,
                    ))));
                }
                ControlMessageOwned::Ipv6PacketInfo(info) => {
                    index = info.ipi6_ifindex;
                    local = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
                }
                _ => {}
            }
        }
    }
    Some(Received {
        len: msg.bytes,
        from,
        index,
        local,
    })
}

/// At most this many datagrams go in one segmentation-offload send (the
/// kernel takes 64 on every version that has it).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// At most this many bytes go in one segmentation-offload send: what one
/// UDP datagram may carry, less room for the headers.
pub(crate) const MAX_SEGMENTED_BYTES: usize = 65_000;

/// Sends `datagrams` to `to`: one datagram, or several as one send with UDP
/// segmentation offload (`UDP_SEGMENT`, Linux 4.18), every one but the last
/// as long as the first and the last no longer, which the kernel cuts
/// into datagrams of that length on the way out (on the NIC if it can) —
/// one system call and one pass down the stack for the lot. With `on`
/// (an interface index and our IPv4 address on it, `IP_PKTINFO`), they
/// leave by that interface, from that address: a directed broadcast or a
/// multicast datagram goes out where it is meant, whatever the routing
/// table prefers.
pub(super) fn send(
    socket: &UdpSocket,
    datagrams: &[IoSlice<'_>],
    to: SocketAddr,
    on: Option<(u32, Ipv4Addr)>,
) -> io::Result<()> {
    let info = on.map(|(index, source)| libc::in_pktinfo {
        ipi_ifindex: i32::try_from(index).unwrap_or(0),
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(source).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    });
    let segment = u16::try_from(datagrams.first().map_or(0, |d| d.len())).unwrap_or(u16::MAX);
    let gso = ControlMessage::UdpGsoSegments(&segment);
    let both;
    let one;
    let cmsgs: &[ControlMessage<'_>] = match (&info, datagrams.len() > 1) {
        (Some(info), true) => {
            both = [ControlMessage::Ipv4PacketInfo(info), gso];
            &both
        }
        (Some(info), false) => {
            one = [ControlMessage::Ipv4PacketInfo(info)];
            &one
        }
        (None, true) => {
            one = [gso];
            &one
        }
        (None, false) => &[],
    };
    let to = SockaddrStorage::from(to);
    send_with_room(socket, || {
        sendmsg(
            socket.as_raw_fd(),
            datagrams,
            cmsgs,
            MsgFlags::empty(),
            Some(&to),
        )
        .map_err(io::Error::from)
    })
    .map(drop)
}

/// Whether a failed segmentation-offload send means the kernel or the
/// route cannot segment (then the datagrams go one by one from now on),
/// rather than that the destination is unreachable.
pub(super) fn refuses_segmentation(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
    )
}
