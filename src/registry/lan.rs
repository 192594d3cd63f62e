//! The LAN backend: the registry replicated by the node's own protocol
//! core (see the [module docs](super)), behind [`RegistryBackend`].

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;

use super::backend::{BoxFuture, RegistryBackend};
use super::{Filter, Registration, RegistryEvent, Watch};
use crate::{Discovery, Error};

/// shoal's own backend: a [`Discovery`] node's replica.
pub(super) struct Lan {
    pub(super) node: Discovery,
}

impl RegistryBackend for Lan {
    fn register(
        &self,
        registration: Registration,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        let result = self
            .node
            .command(|core| Ok(core.register(Instant::now(), registration, ttl)?));
        Box::pin(async move { result })
    }

    fn refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let result = self
            .node
            .command(|core| Ok(core.refresh(Instant::now(), id)?));
        Box::pin(async move { result })
    }

    fn deregister<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        let result = self
            .node
            .command(|core| Ok(core.deregister(Instant::now(), id)?));
        Box::pin(async move { result })
    }

    fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
        let result = self.node.query(|core| core.registrations(filter));
        Box::pin(async move { result })
    }

    fn watch(&self, filter: Filter) -> BoxFuture<'_, Result<Watch, Error>> {
        let result = self.node.registry_watch(&filter).map(|(current, live)| {
            let live = live.filter(move |event| match event.registration() {
                Some(registration) => filter.matches(registration),
                None => true, // Lagged concerns every watch
            });
            Watch::new(current, live)
        });
        Box::pin(async move { result })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.node.shutdown())
    }
}

impl crate::stream::sealed::Sealed for RegistryEvent {}
impl crate::stream::StreamEvent for RegistryEvent {
    fn lagged(missed: u64) -> Self {
        RegistryEvent::Lagged(missed)
    }
}
