//! Accepting the sidecar's HTTP connections, with the bounds a server
//! facing untrusted clients needs and `axum::serve` does not set:
//!
//! - **at most [`Limits::max_connections`] open at once.** At the limit
//!   the sidecar stops accepting until one closes; new clients wait in the
//!   kernel's listen queue instead of taking file descriptors and memory.
//!   The limit is lowered to fit the process's file limit (`ulimit -n`,
//!   whose soft value is first raised to the hard one), so accept never
//!   fails for want of descriptors.
//! - **at most [`Limits::max_per_client`] from one client address**
//!   (half the limit unless set): a connection beyond its address's share
//!   is closed as soon as it is accepted, so one client cannot take every
//!   connection and lock the others out.
//! - **a read timeout** ([`Limits::read_timeout`]): a request's headers
//!   must arrive within it, and an idle kept-alive connection is closed
//!   after it (hyper's header timeout, which runs from the moment the
//!   connection waits for a request). A body must arrive within it too
//!   (see [`super::error::JsonObject`], which answers 408). A response
//!   that takes long, an event stream or a blocking query, is not cut:
//!   the timeout covers what the client sends, not what it is sent.
//!
//! HTTP/1.1 only, as before. On shutdown the listener closes first, then
//! every connection finishes its request in flight and closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Semaphore;

use super::memory::Trimmer;

/// File descriptors kept back from the connection limit for everything
/// else the process opens (its sockets, /proc reads, the terminal).
const FD_RESERVE: u64 = 64;

/// How long to wait before accepting again after accept(2) failed for a
/// reason other than one client's connection (no memory, no descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel queues for accept(2) (capped by
/// `net.core.somaxconn`): where clients wait while the sidecar is at its
/// connection limit. std's and tokio's 128 fills quickly behind a limit.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr`, with room for [`LISTEN_BACKLOG`] waiting
/// connections.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's bind does: a restarted sidecar may reuse its port at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_per_client: usize,
    /// Time a client has to send a request's headers, or its body, and
    /// time an idle kept-alive connection stays open.
    pub read_timeout: Duration,
}

/// Counters of the connection layer, for `/metrics`.
#[derive(Debug)]
pub struct Stats {
    open: AtomicI64,
    accepted: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    /// Told of every closed connection, so that the memory a burst of
    /// connections took goes back to the system.
    trimmer: Trimmer,
}

impl Stats {
    /// Counters at zero; `trimmer` hears of each closed connection.
    pub fn new(trimmer: Trimmer) -> Stats {
        Stats {
            open: AtomicI64::new(0),
            accepted: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            trimmer,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once because their address already held
    /// its share.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed because the client sent nothing, or too little,
    /// within the read timeout.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// The connection limit that fits this process's file limit: `wanted`,
/// or fewer if `ulimit -n` (raised to its hard value if it can be) leaves
/// less than that beside [`FD_RESERVE`].
pub fn fit_to_file_limit(wanted: usize) -> usize {
    match raise_file_limit() {
        Some(files) => {
            let room = files.saturating_sub(FD_RESERVE).max(1);
            let fitted = wanted.min(usize::try_from(room).unwrap_or(usize::MAX));
            if fitted < wanted {
                // Not a warning: the default limit is lowered on any host
                // whose hard limit is under about 10,300 files.
                tracing::info!(
                    wanted,
                    fitted,
                    files,
                    "the file limit (ulimit -n) allows fewer connections than --max-connections"
                );
            }
            fitted
        }
        None => wanted,
    }
}

/// Raises the soft limit on open files to the hard one, and returns the
/// limit now in force (None where it cannot be read).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given, which lives here.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn raise_file_limit() -> Option<u64> {
    None
}

/// Serves `router` on `listener` within `limits` until `stop` turns
/// true, then lets open connections finish the request in flight; returns
/// when all have closed (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<Stats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let clients: Clients = Arc::default();
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                on_accept_error(&e).await;
                continue;
            }
        };
        let Some(share) = Share::take(&clients, peer.ip(), limits.max_per_client) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        // Answers are written whole; waiting for an ACK of the last
        // segment only delays a client that reuses the connection.
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if e.is_timeout() {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            stats.trimmer.closed();
            drop(share);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Open connections by client address: at most one entry per open
/// connection, so bounded by the connection limit.
type Clients = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One open connection counted against its address's share; the count
/// drops with it.
struct Share {
    clients: Clients,
    ip: IpAddr,
}

impl Share {
    /// Counts a connection from `ip`, unless `ip` already holds `max`.
    fn take(clients: &Clients, ip: IpAddr, max: usize) -> Option<Share> {
        // An IPv4 client of an IPv6 socket is the same client.
        let ip = ip.to_canonical();
        let mut open = clients.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(ip).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(Share {
            clients: Arc::clone(clients),
            ip,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&self.ip) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// After accept(2) failed: a client's connection that died in the queue
/// is nothing; anything else (out of descriptors or memory) would fail
/// again at once, so wait a little first.
async fn on_accept_error(e: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; retrying");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_takes_no_more_than_its_share() {
        let clients = Clients::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = Share::take(&clients, a, 2).expect("first");
        let second = Share::take(&clients, mapped, 2).expect("the same client, mapped");
        assert!(Share::take(&clients, a, 2).is_none(), "a third from a");
        let other = Share::take(&clients, b, 2).expect("another client");
        drop(first);
        let again = Share::take(&clients, a, 2).expect("a's share is free again");
        drop((second, other, again));
        assert!(
            clients.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn the_connection_limit_fits_the_file_limit() {
        let files = raise_file_limit().expect("getrlimit works on Linux");
        let room = usize::try_from(files - FD_RESERVE).unwrap();
        assert_eq!(fit_to_file_limit(10), 10);
        assert_eq!(fit_to_file_limit(usize::MAX), room);
    }
}
