//! Streams handed to the user: events and channel subscriptions. Both are
//! backed by a bounded broadcast buffer, so the protocol never waits for a
//! consumer; a consumer that falls behind loses the oldest items and is told.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::event::{ChannelMessage, Event};

/// Polls `stream` once without registering for a wake-up: what it already
/// holds, or `None` when it holds nothing right now (or has ended).
fn poll_now<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    struct NoWake;
    impl Wake for NoWake {
        fn wake(self: Arc<Self>) {}
    }
    static NO_WAKE: OnceLock<Waker> = OnceLock::new();
    let waker = NO_WAKE.get_or_init(|| Waker::from(Arc::new(NoWake)));
    // A later `recv` or `poll_next` polls again with its own waker, so the
    // one registered here is replaced before anyone waits on it.
    match Pin::new(stream).poll_next(&mut Context::from_waker(waker)) {
        Poll::Ready(item) => item,
        Poll::Pending => None,
    }
}

/// Reachable from the crate only: each module that defines an event type
/// implements [`StreamEvent`] for it beside the type (so this module needs
/// to know none but [`Event`]), and nobody outside can.
pub(crate) mod sealed {
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

/// The stream of a node's [`Event`]s ([`Discovery::events`](crate::Discovery::events)),
/// or of a service layer's [`ServiceEvent`](crate::ServiceEvent)s.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shoal::Error> {
/// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47632).build()?).await?;
/// # let (closer, other) = (node.clone(), shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47632).build()?).await?);
/// # tokio::spawn(async move {
/// #     for n in 0..3 { other.send("chat", &n).unwrap(); other.send("jobs", &n).unwrap(); }
/// #     tokio::time::sleep(std::time::Duration::from_millis(300)).await;
/// #     closer.shutdown().await; // ends the loops below
/// # });
/// let mut events = node.events();
/// while let Some(event) = events.recv().await {
///     if let shoal::Event::Lagged(n) = event {
///         eprintln!("consumer too slow: {n} events lost");
///     }
/// }
/// # Ok::<(), shoal::Error>(()) }
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

    /// The next event if one is already buffered; never waits. `None` when
    /// none is pending right now, or the node has stopped ([`recv`](Self::recv)
    /// tells the two apart). Use it to handle a burst before doing
    /// something once per burst.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47633).build()?).await?;
    /// # let (closer, other) = (node.clone(), shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47633).build()?).await?);
    /// # tokio::spawn(async move {
    /// #     for n in 0..3 { other.send("chat", &n).unwrap(); other.send("jobs", &n).unwrap(); }
    /// #     tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    /// #     closer.shutdown().await; // ends the loops below
    /// # });
    /// let mut events = node.events();
    /// while let Some(first) = events.recv().await {
    ///     let mut burst = vec![first];
    ///     while let Some(event) = events.try_recv() {
    ///         burst.push(event);
    ///     }
    ///     println!("{} events", burst.len());
    /// }
    /// # Ok::<(), shoal::Error>(()) }
    /// ```
    pub fn try_recv(&mut self) -> Option<E> {
        poll_now(self)
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
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), shoal::Error> {
/// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47634).build()?).await?;
/// # let (closer, other) = (node.clone(), shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47634).build()?).await?);
/// # tokio::spawn(async move {
/// #     for n in 0..3 { other.send("chat", &n).unwrap(); other.send("jobs", &n).unwrap(); }
/// #     tokio::time::sleep(std::time::Duration::from_millis(300)).await;
/// #     closer.shutdown().await; // ends the loops below
/// # });
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

    /// The next message if one is already buffered; never waits. `None`
    /// when none is pending right now, or the subscription has ended
    /// ([`recv`](Self::recv) tells the two apart). Use it to handle a burst
    /// before doing something once per burst, like flushing output:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), shoal::Error> {
    /// # let node = shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47635).build()?).await?;
    /// # let (closer, other) = (node.clone(), shoal::Discovery::start(shoal::Config::builder().broadcast("127.255.255.255".parse().unwrap()).port(47635).build()?).await?);
    /// # tokio::spawn(async move {
    /// #     for n in 0..3 { other.send("chat", &n).unwrap(); other.send("jobs", &n).unwrap(); }
    /// #     tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    /// #     closer.shutdown().await; // ends the loops below
    /// # });
    /// use std::io::Write;
    /// let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    /// let mut jobs = node.join("jobs")?;
    /// while let Some(first) = jobs.recv().await {
    ///     let _ = writeln!(out, "{}", first.data);
    ///     while let Some(message) = jobs.try_recv() {
    ///         let _ = writeln!(out, "{}", message.data);
    ///     }
    ///     let _ = out.flush(); // once per burst, as soon as it is drained
    /// }
    /// # Ok(()) }
    /// ```
    pub fn try_recv(&mut self) -> Option<ChannelMessage> {
        poll_now(self)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChannelMessage;

    fn message(n: u64) -> ChannelMessage {
        ChannelMessage {
            channel: "c".into(),
            data: serde_json::json!(n),
            from: crate::membership::NodeId::new("peer"),
            addr: ([127, 0, 0, 1], 1).into(),
        }
    }

    #[tokio::test]
    async fn try_recv_takes_what_is_buffered_and_never_waits() {
        let (tx, rx) = broadcast::channel(4);
        let lost = Arc::new(AtomicU64::new(0));
        let mut sub = Subscription::new(rx, lost.clone());
        assert!(sub.try_recv().is_none());
        for n in 0..6 {
            let _ = tx.send(message(n));
        }
        // Two were overwritten: counted, then the rest in order.
        let got: Vec<_> = std::iter::from_fn(|| sub.try_recv()).collect();
        assert_eq!(
            got.iter().map(|m| m.data.clone()).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
        assert_eq!((sub.missed(), lost.load(Ordering::Relaxed)), (2, 2));
        // A try_recv that found nothing does not stop recv from being woken.
        let waiter = tokio::spawn(async move { sub.recv().await.map(|m| m.data) });
        tokio::task::yield_now().await;
        let _ = tx.send(message(9));
        assert_eq!(waiter.await.ok().flatten(), Some(serde_json::json!(9)));
    }

    #[tokio::test]
    async fn event_try_recv_reports_lag_and_end() {
        let (tx, rx) = broadcast::channel(2);
        let mut events = EventStream::<Event>::new(rx, Arc::new(AtomicU64::new(0)));
        for _ in 0..3 {
            let _ = tx.send(Event::Lagged(0));
        }
        assert!(matches!(events.try_recv(), Some(Event::Lagged(1))));
        assert!(events.try_recv().is_some() && events.try_recv().is_some());
        assert!(events.try_recv().is_none());
        drop(tx);
        assert!(events.try_recv().is_none() && events.recv().await.is_none());
    }
}
