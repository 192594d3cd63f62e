//! The seam between the [`Registry`](super::Registry) API and what keeps
//! the registrations: shoal's LAN replication today, an external store
//! (etcd's leases and watches, say) tomorrow, with no change to the API.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{Filter, Registration, Watch};
use crate::Error;

/// A boxed, sendable future, as [`RegistryBackend`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a [`Registry`](super::Registry) needs of the store behind it.
///
/// shoal's own backend replicates over the LAN ([`Registry::lan`](super::Registry::lan)).
/// Another store implements these five methods and is wrapped with
/// [`Registry::new`](super::Registry::new): a lease per registration for
/// `register` / `refresh` (etcd: a lease of `ttl` and a put under it; a
/// keep-alive), a delete for `deregister`, a range read for `query`, and a
/// watch on the key prefix of the filter ([`Filter`]) for `watch`.
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Mutex;
/// use std::time::Duration;
/// use shoal::registry::{BoxFuture, Filter, Registration, Registry, RegistryBackend, RegistryError, Watch};
/// use shoal::Error;
///
/// /// A registry in one process's memory (no expiry, no events): a test double.
/// #[derive(Default)]
/// struct InMemory(Mutex<BTreeMap<String, Registration>>);
///
/// impl RegistryBackend for InMemory {
///     fn register(&self, r: Registration, _ttl: Duration) -> BoxFuture<'_, Result<(), Error>> {
///         self.0.lock().unwrap().insert(r.id().to_owned(), r);
///         Box::pin(async { Ok(()) })
///     }
///     fn refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
///         let known = self.0.lock().unwrap().contains_key(id);
///         Box::pin(async move {
///             known.then_some(()).ok_or_else(|| RegistryError::NotRegistered(id.into()).into())
///         })
///     }
///     fn deregister<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>> {
///         self.0.lock().unwrap().remove(id);
///         Box::pin(async { Ok(()) })
///     }
///     fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>> {
///         let all = self.0.lock().unwrap().values().filter(|r| filter.matches(r)).cloned().collect();
///         Box::pin(async { Ok(all) })
///     }
///     fn watch(&self, filter: Filter) -> BoxFuture<'_, Result<Watch, Error>> {
///         let now: Vec<_> = self.0.lock().unwrap().values().filter(|r| filter.matches(r)).cloned().collect();
///         Box::pin(async { Ok(Watch::new(now, tokio_stream::empty())) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let registry = Registry::new(InMemory::default());
/// let kv = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).build()?;
/// registry.register(kv, Duration::from_secs(30)).await?;
/// assert_eq!(registry.query(&Filter::name("kv")).await?.len(), 1);
/// # Ok(()) }
/// ```
pub trait RegistryBackend: Send + Sync + 'static {
    /// Registers (or re-registers) `registration` for `ttl`.
    fn register(
        &self,
        registration: Registration,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<(), Error>>;
    /// Starts the time to live of registration `id` again.
    fn refresh<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// Removes registration `id`.
    fn deregister<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), Error>>;
    /// The live registrations `filter` covers.
    fn query<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<Vec<Registration>, Error>>;
    /// The registrations `filter` covers now, then their changes.
    fn watch(&self, filter: Filter) -> BoxFuture<'_, Result<Watch, Error>>;
    /// Stops the backend (shoal's: the node says goodbye and stops).
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
