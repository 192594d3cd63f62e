//! Where a watcher's news comes from: the node's event stream, a registry
//! watch (unless `--master` hides registrations) and the `--channel`
//! subscription, read as one stream of [`Input`]s.

use std::future::pending;

use shoal::registry::{RegistryEvent, Watch};
use shoal::{ChannelMessage, Discovery, Event, EventStream, Subscription};

use super::select::Selection;
use crate::error::CliError;

/// One piece of news.
#[derive(Debug)]
pub enum Input {
    /// A node event.
    Node(Event),
    /// A registry event.
    Registry(RegistryEvent),
    /// A message on the watched channel.
    Message(ChannelMessage),
    /// The channel's subscription fell behind and lost this many messages.
    MissedMessages(u64),
}

/// The streams a watcher reads.
pub struct Sources {
    events: EventStream,
    watch: Option<Watch>,
    channel: Option<Subscription>,
    /// Messages the subscription had lost when last asked.
    missed: u64,
}

impl Sources {
    /// Opens them on a node just started (its first event stream gets
    /// every event since the start).
    pub async fn open(
        discovery: &Discovery,
        selection: &Selection,
        channel: Option<&str>,
    ) -> Result<Sources, CliError> {
        let events = discovery.events();
        let watch = match selection.registry_filter() {
            Some(filter) => Some(discovery.registry().watch(filter).await?),
            None => None,
        };
        let channel = match channel {
            Some(name) => Some(
                discovery
                    .join(name)
                    .map_err(|e| CliError::usage(format!("cannot join channel {name:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(Sources {
            events,
            watch,
            channel,
            missed: 0,
        })
    }

    /// The registry watch, to drain the registrations it starts with.
    pub fn watch_mut(&mut self) -> Option<&mut Watch> {
        self.watch.as_mut()
    }

    /// The next piece of news; `None` once the node has shut down.
    pub async fn next(&mut self) -> Option<Input> {
        if let Some(sub) = &self.channel {
            let missed = sub.missed();
            if missed > self.missed {
                let lost = missed - self.missed;
                self.missed = missed;
                return Some(Input::MissedMessages(lost));
            }
        }
        let Sources {
            events,
            watch,
            channel,
            ..
        } = self;
        let watch = async {
            match watch.as_mut() {
                Some(w) => w.recv().await,
                None => pending().await,
            }
        };
        let channel = async {
            match channel.as_mut() {
                Some(c) => c.recv().await,
                None => pending().await,
            }
        };
        tokio::select! {
            e = events.recv() => e.map(Input::Node),
            e = watch => e.map(Input::Registry),
            m = channel => m.map(Input::Message),
        }
    }
}
