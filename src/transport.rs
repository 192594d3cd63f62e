//! The UDP socket: built with socket2 so several nodes can share a port on
//! one host, and set up for broadcast or IPv4 multicast.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{Config, Error};

fn op(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Socket { op, source }
}

/// Opens the node's socket. Must run inside a tokio runtime.
pub(crate) fn open(config: &Config) -> Result<tokio::net::UdpSocket, Error> {
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
    let addr = SocketAddr::new(config.bind, config.port);
    socket
        .bind(&addr.into())
        .map_err(|source| Error::Bind { addr, source })?;
    match config.multicast {
        Some(group) => {
            let interface = config.multicast_interface;
            socket
                .join_multicast_v4(&group, &interface)
                .map_err(op("join the multicast group"))?;
            socket
                .set_multicast_ttl_v4(config.multicast_ttl)
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
