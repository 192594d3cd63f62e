//! The stop a long-running command waits for: SIGINT (^C), SIGTERM, or
//! SIGHUP (its terminal closed). Each ends the command the same orderly
//! way: what it registered is deregistered and the node says goodbye,
//! rather than dying and timing out at its peers.

use tokio::signal::unix::{signal, SignalKind};

use crate::error::CliError;

/// Which signal asked the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT, ^C.
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP: the terminal closed.
    Hangup,
}

/// Listens for SIGINT, SIGTERM and SIGHUP from now on. Install it before starting
/// anything, so that an early signal is not lost.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening.
    pub fn install() -> Result<Signals, CliError> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next SIGINT, SIGTERM or SIGHUP.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
            _ = self.hup.recv() => Stop::Hangup,
        }
    }
}
