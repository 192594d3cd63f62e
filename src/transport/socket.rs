//! The UDP sockets and the system calls that say which interface a
//! datagram came in on or must go out of: recvmsg(2) and sendmsg(2) with
//! `IP_PKTINFO` / `IPV6_PKTINFO` (nix), sockets built with socket2 so that
//! several nodes can share a port on one host.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::libc;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrStorage,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::Error;

pub(super) fn op(op: &'static str) -> impl FnOnce(io::Error) -> Error {
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

fn into_tokio(socket: Socket) -> Result<UdpSocket, Error> {
    let std_socket: std::net::UdpSocket = socket.into();
    UdpSocket::from_std(std_socket).map_err(op("register the socket with tokio"))
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
    into_tokio(socket)
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
    into_tokio(socket)
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

/// Room for one `in_pktinfo` or `in6_pktinfo` control message, aligned as
/// a `cmsghdr` must be.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Reads one waiting datagram (`WouldBlock` if none, which also clears the
/// socket's readiness).
pub(super) fn recv(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    socket.try_io(Interest::READABLE, || {
        let mut cmsg = CmsgBuf([0; 64]);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg.0[..]),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let from = match msg.address {
            Some(addr) => {
                if let Some(v4) = addr.as_sockaddr_in() {
                    SocketAddr::V4(SocketAddrV4::from(*v4))
                } else if let Some(v6) = addr.as_sockaddr_in6() {
                    SocketAddr::V6(SocketAddrV6::from(*v6))
                } else {
                    return Err(io::Error::other("a datagram from a non-IP address"));
                }
            }
            None => return Err(io::Error::other("a datagram without a source address")),
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
        Ok(Received {
            len: msg.bytes,
            from,
            index,
            local,
        })
    })
}

/// Sends `payload` to `to` out of interface `index`, from our address
/// `source` on it (`IP_PKTINFO`): a directed broadcast or a multicast
/// datagram leaves by the interface it is meant for, whatever the routing
/// table prefers.
pub(super) async fn send_v4_on(
    socket: &UdpSocket,
    payload: &[u8],
    to: SocketAddrV4,
    index: u32,
    source: Ipv4Addr,
) -> io::Result<usize> {
    let info = libc::in_pktinfo {
        ipi_ifindex: i32::try_from(index).unwrap_or(0),
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(source).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let to = SockaddrIn::from(to);
    socket
        .async_io(Interest::WRITABLE, || {
            sendmsg(
                socket.as_raw_fd(),
                &[IoSlice::new(payload)],
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )
            .map_err(io::Error::from)
        })
        .await
}
