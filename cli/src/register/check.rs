//! `shoal register --check tcp`: whether an app's port accepts a TCP
//! connection, asked again every check interval.
//!
//! The check connects to the host and port the app is registered at,
//! exactly as a client elsewhere on the LAN would: an app bound to
//! 127.0.0.1 only, registered at this host's LAN address, fails it, and
//! rightly so, since no other host could reach it. The connection is
//! closed at once, without a byte sent.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// How to check an app before claiming it is there.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Check {
    /// No check: registered for as long as `shoal register` runs.
    #[default]
    None,
    /// Registered only while host:port accepts a TCP connection.
    Tcp,
}

/// One check's outcome for the app at `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Which app (its place on the command line).
    pub index: usize,
    /// `Ok` if the port accepted; else why not (refused, timed out…).
    pub result: Result<(), String>,
}

/// Connects to `host:port` once, giving up after `timeout`. A host name
/// is resolved each time (its address may change) and every address it
/// has is tried, as a client would.
pub async fn tcp(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// Checks each of `targets` (host, port) now and then every `interval`,
/// each on a task of its own (a slow one delays no other), and sends
/// every outcome to the returned receiver. The tasks end when the
/// returned [`JoinSet`] is dropped. A connect waits at most 1 s, or the
/// interval if that is shorter, so that checks never pile up.
pub fn spawn(
    targets: Vec<(String, u16)>,
    interval: Duration,
) -> (JoinSet<()>, mpsc::Receiver<Outcome>) {
    let timeout = interval.min(Duration::from_secs(1));
    // Room for one round of every app: a main loop that falls behind
    // slows the checks down (send waits) rather than queueing without end.
    let (tx, rx) = mpsc::channel(targets.len().max(1));
    let mut tasks = JoinSet::new();
    for (index, (host, port)) in targets.into_iter().enumerate() {
        let tx = tx.clone();
        tasks.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let result = tcp(&host, port, timeout).await;
                if tx.send(Outcome { index, result }).await.is_err() {
                    return;
                }
            }
        });
    }
    (tasks, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_port_passes_and_a_closed_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(tcp("127.0.0.1", port, Duration::from_secs(1)).await, Ok(()));
        drop(listener);
        let err = tcp("127.0.0.1", port, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn checks_repeat_for_each_app() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let targets = vec![("127.0.0.1".into(), open), ("127.0.0.1".into(), closed)];
        let (_tasks, mut rx) = spawn(targets, Duration::from_millis(20));
        let mut seen = [0, 0];
        while seen.iter().any(|&n| n < 2) {
            let o = rx.recv().await.unwrap();
            assert_eq!(o.result.is_ok(), o.index == 0, "{o:?}");
            seen[o.index] += 1;
        }
    }
}
