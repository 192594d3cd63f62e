//! A watch: the registrations a filter covers, then their changes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::{Registration, RegistryEvent};

/// A stream of [`RegistryEvent`]s for one [`Filter`](super::Filter),
/// from [`Registry::watch`](super::Registry::watch).
///
/// It starts with an [`Online`](RegistryEvent::Online) for each
/// registration the filter covers when the watch starts, so that a
/// watcher needs no separate query and misses nothing in between; then it
/// yields each change as it happens. It ends when the registry shuts down.
/// A watcher that falls more than `event_capacity` events behind loses the
/// oldest and gets [`Lagged`](RegistryEvent::Lagged): query again then.
pub struct Watch {
    initial: VecDeque<RegistryEvent>,
    live: Pin<Box<dyn Stream<Item = RegistryEvent> + Send>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("initial", &self.initial.len())
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// A watch that yields `Online` for each of `current`, then what
    /// `live` yields: for [`RegistryBackend`](super::RegistryBackend) authors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use shoal::registry::{Registration, RegistryEvent, Watch};
    ///
    /// let kv = Registration::builder("kv", "1", "10.0.0.5", 7000).build().unwrap();
    /// let mut watch = Watch::new(vec![kv], tokio_stream::empty());
    /// assert!(matches!(watch.recv().await, Some(RegistryEvent::Online(_))));
    /// assert!(watch.recv().await.is_none());
    /// # }
    /// ```
    pub fn new(
        current: Vec<Registration>,
        live: impl Stream<Item = RegistryEvent> + Send + 'static,
    ) -> Watch {
        Watch {
            initial: current.into_iter().map(RegistryEvent::Online).collect(),
            live: Box::pin(live),
        }
    }

    /// The next event; `None` once the registry has shut down.
    pub async fn recv(&mut self) -> Option<RegistryEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Watch {
    type Item = RegistryEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RegistryEvent>> {
        if let Some(event) = self.initial.pop_front() {
            return Poll::Ready(Some(event));
        }
        self.live.as_mut().poll_next(cx)
    }
}
