//! The stop a long-running command waits for: SIGINT (^C) or SIGTERM.

use tokio::signal::unix::{signal, SignalKind};

use crate::error::CliError;

/// Which signal asked the command to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT, ^C.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// Listens for SIGINT and SIGTERM from now on. Install it before starting
/// anything, so that an early signal is not lost.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening.
    pub fn install() -> Result<Signals, CliError> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> Stop {
        tokio::select! {
            _ = self.int.recv() => Stop::Interrupt,
            _ = self.term.recv() => Stop::Terminate,
        }
    }
}
