//! Helpers for the `shoal` command's tests on a namespace LAN: the
//! command run inside a host, and a registry watcher node inside another.
//!
//! Include after the root's helpers:
//!
//! ```ignore
//! #[path = "../../tests/support/mod.rs"]
//! mod support;
//! mod common;
//! ```
// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal::registry::{Filter, RegistryEvent};
use shoal::{Config, Discovery};

use crate::support::{Host, Lan};

/// The cluster's UDP port inside the namespaces (any port will do there:
/// nothing else runs in them).
pub const PORT: u16 = 47_870;
/// Bound for an expected step once its cause is under way: generous for a
/// loaded 2-core machine; the happy path never waits it out.
pub const STEP: Duration = Duration::from_secs(10);

/// `shoal` with the LAN's broadcast address and [`PORT`], then `args`,
/// inside `host`.
pub fn shoal(host: &Host, args: &[&str]) -> Command {
    let port = PORT.to_string();
    let mut all = vec!["--broadcast", "10.250.0.255", "--port", &port];
    all.extend_from_slice(args);
    host.command(env!("CARGO_BIN_EXE_shoal"), all)
}

/// Runs `shoal args` inside `host` to its end (at most [`STEP`]).
pub fn run(host: &Host, args: &[&str]) -> Output {
    let port = PORT.to_string();
    let mut all = vec!["--broadcast", "10.250.0.255", "--port", &port];
    all.extend_from_slice(args);
    host.run(env!("CARGO_BIN_EXE_shoal"), all, STEP)
        .unwrap_or_else(|e| panic!("shoal {args:?}: {e}"))
}

/// [`run`], which must exit 0 with a JSON document on stdout.
pub fn run_json(host: &Host, args: &[&str]) -> Value {
    let out = run(host, args);
    assert!(
        out.status.success(),
        "shoal {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "shoal {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A registry watch on a node of its own inside a host, in this test
/// process: what every other node of the LAN sees, with the reason of
/// each `offline` (which the command line does not print).
pub struct Watcher {
    events: mpsc::Receiver<(Instant, RegistryEvent)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts a node in `host` (not eligible for mastership) watching
    /// every registration; returns once the watch is running.
    pub fn start(lan: &Lan, host: usize) -> Watcher {
        let host = lan.host(host).clone();
        let (tx, events) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            // The node's socket is opened on the thread that entered the
            // namespace, so it is the host's.
            host.enter(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let config = Config::builder()
                        .broadcast("10.250.0.255".parse().unwrap())
                        .port(PORT)
                        .master_eligible(false)
                        .build()
                        .unwrap();
                    let node = Discovery::start(config).await.expect("watcher node");
                    let mut watch = node.registry().watch(Filter::All).await.unwrap();
                    let _ = ready_tx.send(());
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            event = watch.recv() => match event {
                                Some(e) => { let _ = tx.send((Instant::now(), e)); }
                                None => break,
                            },
                        }
                    }
                    node.shutdown().await;
                })
            })
            .expect("enter the namespace");
        });
        ready.recv_timeout(STEP).expect("the watcher started");
        Watcher {
            events,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The first event from now on that `pred` accepts, with when it came,
    /// within `timeout`; events before it are dropped.
    pub fn wait(
        &self,
        pred: impl Fn(&RegistryEvent) -> bool,
        timeout: Duration,
    ) -> Option<(Instant, RegistryEvent)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok((at, e)) if pred(&e) => return Some((at, e)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Every event already received, without waiting.
    pub fn drain(&self) -> Vec<RegistryEvent> {
        self.events.try_iter().map(|(_, e)| e).collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `e` is `online` for the registration `id`.
pub fn online(e: &RegistryEvent, id: &str) -> bool {
    matches!(e, RegistryEvent::Online(r) if r.id() == id)
}

/// The reason of an `offline` for `id`, if `e` is one.
pub fn offline_reason(e: &RegistryEvent, id: &str) -> Option<shoal::registry::OfflineReason> {
    match e {
        RegistryEvent::Offline {
            registration,
            reason,
        } if registration.id() == id => Some(*reason),
        _ => None,
    }
}

/// The Thalassa shape: every key of Thalassa's example registration.
pub fn assert_thalassa_shape(r: &Value, name: &str, version: &str, host: &str, port: u16) {
    assert_eq!(r["name"], name, "{r}");
    assert_eq!(r["version"], version, "{r}");
    assert_eq!(r["host"], host, "{r}");
    assert_eq!(r["port"], port, "{r}");
    assert!(r["lastKnown"].as_u64().is_some_and(|t| t > 0), "{r}");
    assert_eq!(r["id"], format!("/{name}/{version}/{host}/{port}"), "{r}");
    let meta = &r["meta"];
    assert!(meta["hostname"].is_string(), "{r}");
    assert!(meta["pid"].is_u64(), "{r}");
    assert!(meta["registered"].is_u64(), "{r}");
    assert!(meta["secondsToExpire"].is_number(), "{r}");
    let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["host", "id", "lastKnown", "meta", "name", "port", "version"],
        "{r}"
    );
}
