//! Streams handed to the user: events and channel subscriptions. Both are
//! backed by a bounded broadcast buffer, so the protocol never waits for a
//! consumer; a consumer that falls behind loses the oldest items and is told.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::event::{ChannelMessage, Event};

mod sealed {
    pub trait Sealed {}
}

/// An item of an [`EventStream`]: it can say "you lost n items".
pub trait StreamEvent: sealed::Sealed + Clone + Send + 'static {
    /// The item that reports `missed` lost items.
    #[doc(hidden)]
    fn lagged(missed: u64) -> Self;
}

impl sealed::Sealed for Event {}
impl StreamEvent for Event {
    fn lagged(missed: u64) -> Self {
        Event::Lagged(missed)
    }
}

impl sealed::Sealed for crate::service::ServiceEvent {}
impl StreamEvent for crate::service::ServiceEvent {
    fn lagged(missed: u64) -> Self {
        crate::service::ServiceEvent::Lagged(missed)
    }
}

/// The stream of a node's [`Event`]s ([`Discovery::events`](crate::Discovery::events)),
/// or of a service layer's [`ServiceEvent`](crate::ServiceEvent)s.
///
/// ```no_run
/// # async fn demo(node: shoal::Discovery) {
/// let mut events = node.events();
/// while let Some(event) = events.recv().await {
///     if let shoal::Event::Lagged(n) = event {
///         eprintln!("consumer too slow: {n} events lost");
///     }
/// }
/// # }
/// ```
pub struct EventStream<E: StreamEvent = Event> {
    inner: BroadcastStream<E>,
    lost: Arc<AtomicU64>,
}

impl<E: StreamEvent> EventStream<E> {
    pub(crate) fn new(rx: broadcast::Receiver<E>, lost: Arc<AtomicU64>) -> Self {
        EventStream {
            inner: BroadcastStream::new(rx),
            lost,
        }
    }

    /// The next event; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<E: StreamEvent> Stream for EventStream<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(event)),
            Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                self.lost.fetch_add(missed, Ordering::Relaxed);
                Poll::Ready(Some(E::lagged(missed)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The messages of one channel; see [`Discovery::join`](crate::Discovery::join).
///
/// ```no_run
/// # async fn demo(node: shoal::Discovery) -> Result<(), shoal::Error> {
/// let mut chat = node.join("chat")?;
/// while let Some(message) = chat.recv().await {
///     println!("{}: {}", message.from, message.data);
/// }
/// println!("missed {} messages", chat.missed());
/// # Ok(()) }
/// ```
///
/// A subscriber that falls more than `event_capacity` messages behind loses
/// the oldest; [`missed`](Self::missed) counts them.
pub struct Subscription {
    inner: BroadcastStream<ChannelMessage>,
    lost: Arc<AtomicU64>,
    missed: u64,
}

impl Subscription {
    pub(crate) fn new(rx: broadcast::Receiver<ChannelMessage>, lost: Arc<AtomicU64>) -> Self {
        Subscription {
            inner: BroadcastStream::new(rx),
            lost,
            missed: 0,
        }
    }

    /// The next message; `None` after [`Discovery::leave`](crate::Discovery::leave) or shutdown.
    pub async fn recv(&mut self) -> Option<ChannelMessage> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Messages this subscription lost because it fell behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for Subscription {
    type Item = ChannelMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelMessage>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => return Poll::Ready(Some(message)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(missed)))) => {
                    self.missed += missed;
                    self.lost.fetch_add(missed, Ordering::Relaxed);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
