//! Giving freed memory back to the system after a burst of connections.
//!
//! A thousand event streams take some tens of MB; when their client goes
//! away, the sidecar frees all of it, but glibc's allocator keeps freed
//! memory in its per-thread arenas rather than returning it, so the
//! process's resident size would stay at its peak. After streams or
//! connections close, [`Trimmer`] asks glibc to return what it can (`malloc_trim`), at most
//! once a second and only when something closed since the last time.
//! Elsewhere (musl, other systems) it does nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often, at most, memory is trimmed.
const PERIOD: Duration = Duration::from_secs(1);

/// Counts closures, and trims memory after them.
#[derive(Debug, Default, Clone)]
pub struct Trimmer {
    closed: Arc<AtomicU64>,
}

impl Trimmer {
    /// Notes that something that held memory (a stream, a connection) closed.
    pub fn closed(&self) {
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Starts the task that trims after closures; it ends with the runtime.
    pub fn spawn(&self) {
        let closed = Arc::clone(&self.closed);
        tokio::spawn(async move {
            let mut seen = 0;
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = closed.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    // It walks every arena under its lock: off the async threads.
                    let _ = tokio::task::spawn_blocking(trim).await;
                }
            }
        });
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
