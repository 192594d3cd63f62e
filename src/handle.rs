//! The plumbing every user-facing handle shares ([`Discovery`](crate::Discovery),
//! [`ServiceDiscovery`](crate::ServiceDiscovery), and whatever is built the
//! same way next): a driver (a tokio task, or an OS thread of its own) that
//! owns the work, a stop signal, cheap
//! clones, shutdown from any clone, and an event fan-out whose first
//! subscriber sees everything since start.
//!
//! The driver task holds the state it shares with the handles (`Arc<S>`) but
//! never a [`Handle`]: otherwise the last user handle could never be the
//! last reference, and dropping it could not stop the task.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::stream::{EventStream, StreamEvent};
use crate::Error;

/// Locks `mutex` even if a panic poisoned it.
///
/// A panic while holding one of shoal's locks would be a bug in shoal; the
/// state is still the best there is, so keep going rather than poison every
/// later call.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cheap, cloneable handle on a driver task and the state `S` it shares
/// with the handles. Dropping the last clone stops the task.
pub(crate) struct Handle<S> {
    shared: Arc<S>,
    driver: Arc<Driver>,
}

impl<S> Clone for Handle<S> {
    fn clone(&self) -> Self {
        Handle {
            shared: self.shared.clone(),
            driver: self.driver.clone(),
        }
    }
}

/// Owned by the handles only, so that its `Drop` runs with the last one.
struct Driver {
    /// `true` once a stop is asked for; never goes back.
    stop: watch::Sender<bool>,
    /// An async lock, so that a second `shutdown` waits for the first one's
    /// task rather than returning while the node is still saying goodbye.
    task: tokio::sync::Mutex<Option<Task>>,
    /// Wakes a driver thread blocked in its poll, so that it sees the stop.
    wake: Option<Waker>,
}

/// Interrupts a driver thread's wait.
pub(crate) type Waker = Arc<dyn Fn() + Send + Sync>;

/// What runs the driver, and how to wait for its end.
enum Task {
    Tokio(JoinHandle<()>),
    /// An OS thread: its end closes the channel (the thread holds the only
    /// sender, dropped however it ends, a panic included).
    Thread(watch::Receiver<()>),
}

impl Driver {
    fn request_stop(&self) {
        // `send` would refuse once the task (the only receiver) is gone.
        self.stop.send_replace(true);
        if let Some(wake) = &self.wake {
            wake();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.request_stop();
    }
}

/// What the driver task waits on to stop.
pub(crate) struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once a stop is asked for or every handle is gone.
    /// Cancel-safe: a `select!` branch that loses keeps nothing.
    pub(crate) async fn requested(&mut self) {
        // The value only ever changes from false to true, so any change is
        // the stop; an error means the handles are gone, which is one too.
        let _ = self.0.changed().await;
    }

    /// Whether the stop was asked for (or every handle is gone): for a
    /// driver thread, which checks it after each wake-up.
    pub(crate) fn is_requested(&self) -> bool {
        self.0.has_changed().is_err() || *self.0.borrow()
    }
}

impl<S: Send + Sync + 'static> Handle<S> {
    /// Spawns the driver task `run(shared, stop)` on the current tokio
    /// runtime and returns the first handle on it.
    pub(crate) fn spawn<F, Fut>(shared: Arc<S>, run: F) -> Self
    where
        F: FnOnce(Arc<S>, StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(shared.clone(), StopSignal(stopped)));
        Handle {
            shared,
            driver: Arc::new(Driver {
                stop,
                wake: None,
                task: tokio::sync::Mutex::new(Some(Task::Tokio(task))),
            }),
        }
    }

    /// Runs the driver on an OS thread of its own, named `name`, rather
    /// than as a task: it blocks in poll(2) and decides itself when to wake
    /// (see `crate::discovery`). `wake` interrupts its wait.
    pub(crate) fn spawn_thread<F>(
        shared: Arc<S>,
        name: &str,
        wake: Waker,
        run: F,
    ) -> Result<Self, Error>
    where
        F: FnOnce(Arc<S>, StopSignal) + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let (done, finished) = watch::channel(());
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _done = done;
                run(for_thread, StopSignal(stopped));
            })
            .map_err(|source| Error::Socket {
                op: "start the driver thread",
                source,
            })?;
        Ok(Handle {
            shared,
            driver: Arc::new(Driver {
                stop,
                wake: Some(wake),
                task: tokio::sync::Mutex::new(Some(Task::Thread(finished))),
            }),
        })
    }
}

impl<S> Handle<S> {
    /// The state shared with the driver task.
    pub(crate) fn shared(&self) -> &S {
        &self.shared
    }

    /// Whether the task still runs and nobody asked it to stop.
    pub(crate) fn is_running(&self) -> bool {
        // The task's StopSignal is the only receiver: it is gone once the
        // task has ended, whether it returned, panicked or lost its runtime.
        !self.driver.stop.is_closed() && !*self.driver.stop.borrow()
    }

    /// `Err(Error::Closed)` unless [`is_running`](Self::is_running).
    pub(crate) fn ensure_running(&self) -> Result<(), Error> {
        if self.is_running() {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Asks the task to stop and waits until it has ended. Works from any
    /// clone, any number of times; a call that comes while another waits
    /// returns when that one does.
    pub(crate) async fn shutdown(&self) {
        self.driver.request_stop();
        let mut task = self.driver.task.lock().await;
        // Awaited in place, not taken: if this future is dropped half way,
        // the next shutdown still finds the task to wait for.
        match task.as_mut() {
            Some(Task::Tokio(running)) => {
                let _ = running.await;
            }
            Some(Task::Thread(finished)) => while finished.changed().await.is_ok() {},
            None => {}
        }
        *task = None;
    }
}

/// The event fan-out of a handle: the driver publishes, each `stream()`
/// subscribes. Bounded: a slow stream loses its oldest events, never the
/// driver's time.
pub(crate) struct Events<E> {
    /// Taken when the driver stops, so that every stream ends.
    sender: Mutex<Option<broadcast::Sender<E>>>,
    /// Subscribed at creation and handed to the first `stream()` call, so
    /// that it misses nothing the driver did before the user could ask.
    first: Mutex<Option<broadcast::Receiver<E>>>,
    /// Events lost by every stream of this fan-out, for `Stats::events_lost`.
    lost: Arc<AtomicU64>,
}

impl<E: StreamEvent> Events<E> {
    /// A fan-out that buffers `capacity` events per stream.
    pub(crate) fn new(capacity: usize) -> Self {
        let (sender, first) = broadcast::channel(capacity);
        Events {
            sender: Mutex::new(Some(sender)),
            first: Mutex::new(Some(first)),
            lost: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The first call gets every event since creation; later calls get
    /// events from the moment of the call; after [`close`](Self::close), a
    /// stream that ends once it has yielded what it holds.
    pub(crate) fn stream(&self) -> EventStream<E> {
        let first = lock(&self.first).take();
        let rx = first.unwrap_or_else(|| match &*self.sender() {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        });
        EventStream::new(rx, self.lost.clone())
    }

    /// The sender, for the driver to publish a batch under one lock; `None`
    /// once closed.
    pub(crate) fn sender(&self) -> MutexGuard<'_, Option<broadcast::Sender<E>>> {
        lock(&self.sender)
    }

    /// Ends every stream (after what each still buffers).
    pub(crate) fn close(&self) {
        self.sender().take();
    }

    /// The counter of events lost by slow streams; channel subscriptions of
    /// the same node add to it too.
    pub(crate) fn lost(&self) -> &Arc<AtomicU64> {
        &self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;
    use std::time::Duration;

    fn publish(events: &Events<Event>, n: u64) {
        if let Some(sender) = &*events.sender() {
            let _ = sender.send(Event::Lagged(n));
        }
    }

    /// A driver that runs until told to stop, then says so.
    fn spawn_driver() -> (Handle<Events<Event>>, tokio::sync::oneshot::Receiver<()>) {
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let handle = Handle::spawn(Arc::new(Events::new(4)), |events, mut stop| async move {
            publish(&events, 1);
            stop.requested().await;
            // Stopping takes a moment: a concurrent shutdown must wait for it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            events.close();
            let _ = done_tx.send(());
        });
        (handle, done)
    }

    #[tokio::test]
    async fn shutdown_from_any_clone_waits_for_the_task_and_twice_is_fine() {
        let (a, mut done) = spawn_driver();
        let b = a.clone();
        assert!(a.is_running() && b.ensure_running().is_ok());
        let mut events = b.shared().stream();
        tokio::join!(a.shutdown(), b.shutdown());
        assert!(
            done.try_recv().is_ok(),
            "both returned only after the task ended"
        );
        assert!(!a.is_running() && matches!(b.ensure_running(), Err(Error::Closed)));
        a.shutdown().await;
        // The first stream still gets what was sent before, then ends.
        assert!(matches!(events.recv().await, Some(Event::Lagged(1))));
        assert!(events.recv().await.is_none());
        assert!(a.shared().stream().recv().await.is_none());
    }

    #[tokio::test]
    async fn dropping_the_last_clone_stops_the_task() {
        let (a, done) = spawn_driver();
        let b = a.clone();
        drop(a);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(b.is_running(), "one clone still holds it");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .expect("stopped")
            .expect("ran to the end");
    }

    #[tokio::test]
    async fn only_the_first_stream_sees_events_from_before() {
        let events = Events::new(4);
        publish(&events, 1);
        let mut first = events.stream();
        let mut later = events.stream();
        publish(&events, 2);
        events.close();
        assert!(matches!(first.recv().await, Some(Event::Lagged(1))));
        assert!(matches!(first.recv().await, Some(Event::Lagged(2))));
        assert!(matches!(later.recv().await, Some(Event::Lagged(2))));
        assert!(first.recv().await.is_none() && later.recv().await.is_none());
    }
}
