//! The driver's side of the transport seam: the UDP socket, built with
//! socket2 so several nodes can share a port on one host and set up for
//! broadcast or IPv4 multicast, and the mapping from the core's
//! [`Destination`]s to addresses. The core never sees a socket; a new kind
//! of transport (several interfaces, IPv6, unicast seeds) changes this
//! file and [`TransportConfig`], not the protocol.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::TransportConfig;
use crate::protocol::{Destination, Transmit};
use crate::Error;

fn op(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Socket { op, source }
}

/// One UDP socket that reaches the cluster by broadcast or multicast and
/// single peers by unicast.
#[derive(Debug)]
pub(crate) struct UdpTransport {
    socket: tokio::net::UdpSocket,
    /// Where [`Destination::Cluster`] datagrams go.
    cluster: SocketAddr,
    local_addr: SocketAddr,
}

impl UdpTransport {
    /// Opens the socket. Must run inside a tokio runtime.
    pub(crate) fn open(config: &TransportConfig) -> Result<Self, Error> {
        let socket = open_socket(config)?;
        let local_addr = socket.local_addr().map_err(op("read the bound address"))?;
        Ok(UdpTransport {
            socket,
            cluster: config.cluster(),
            local_addr,
        })
    }

    /// The address the socket is bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until a datagram may be read.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        self.socket.readable().await
    }

    /// Reads one datagram if one is waiting (`WouldBlock` otherwise).
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.try_recv_from(buf)
    }

    /// Sends one datagram where the core addressed it. A failed send is
    /// logged and dropped, as a lost datagram would be.
    pub(crate) async fn send(&self, transmit: &Transmit) {
        let to = match transmit.destination {
            Destination::Cluster => self.cluster,
            Destination::Peer(addr) => addr,
        };
        if let Err(error) = self.socket.send_to(&transmit.payload, to).await {
            tracing::debug!(%error, %to, "send_to failed");
        }
    }
}

fn open_socket(t: &TransportConfig) -> Result<tokio::net::UdpSocket, Error> {
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(op("create socket"))?;
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
    let addr = SocketAddr::new(t.bind, t.port);
    socket
        .bind(&addr.into())
        .map_err(|source| Error::Bind { addr, source })?;
    match t.multicast {
        Some(group) => {
            let interface = t.multicast_interface;
            socket
                .join_multicast_v4(&group, &interface)
                .map_err(op("join the multicast group"))?;
            socket
                .set_multicast_ttl_v4(t.multicast_ttl)
                .map_err(op("set the multicast TTL"))?;
            socket
                .set_multicast_loop_v4(true)
                .map_err(op("enable multicast loopback"))?;
            if interface != Ipv4Addr::UNSPECIFIED {
                socket
                    .set_multicast_if_v4(&interface)
                    .map_err(op("set the multicast interface"))?;
            }
        }
        None => socket.set_broadcast(true).map_err(op("set SO_BROADCAST"))?,
    }
    let std_socket: std::net::UdpSocket = socket.into();
    tokio::net::UdpSocket::from_std(std_socket).map_err(op("register the socket with tokio"))
}
