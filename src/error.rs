//! The crate's error type.

use std::net::SocketAddr;

/// Errors from starting a node or from its commands.
///
/// ```
/// use shoal::protocol::{Protocol, Sender};
///
/// let config = shoal::Config::builder().build().unwrap();
/// let me = Sender { pid: "p".into(), iid: "i".into(), host_name: "h".into() };
/// let mut node = Protocol::new(&config, me, std::time::Instant::now(), 1);
/// let err = node.send(std::time::Instant::now(), "master", &1).unwrap_err();
/// assert!(matches!(err, shoal::Error::ReservedChannel(ref name) if name == "master"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid. Nothing was started.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::ConfigError),
    /// The channel name is one node-discovery reserves
    /// (`promotion`, `demotion`, `added`, `removed`, `master`, `hello`) or
    /// shoal's `shoal.goodbye`. Nothing was joined or sent.
    #[error("channel name {0:?} is reserved")]
    ReservedChannel(String),
    /// The channel name is not usable: empty, longer than 255 bytes, or
    /// with a control character. Nothing was joined or sent.
    #[error("channel name {name:?} is not usable: {reason}")]
    InvalidChannel {
        /// The name (its first 64 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The value could not be encoded as JSON (for example, a map with
    /// non-string keys). Nothing was sent and the node's state is unchanged.
    #[error("cannot encode message as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The value holds a number JSON cannot carry: NaN or an infinity
    /// (`f64` or `f32`), which serde_json would quietly turn into `null`.
    /// Nothing was sent (or advertised) and the node's state is unchanged.
    ///
    /// ```
    /// use shoal::protocol::{Protocol, Sender};
    ///
    /// let config = shoal::Config::builder().build().unwrap();
    /// let me = Sender { pid: "p".into(), iid: "i".into(), host_name: "h".into() };
    /// let now = std::time::Instant::now();
    /// let mut node = Protocol::new(&config, me, now, 1);
    /// let err = node.send(now, "jobs", &[("load", 0.5), ("rate", f64::NAN)]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "data[1][1] is NaN: JSON has no NaN or infinity (serde_json would send null)"
    /// );
    /// ```
    #[error("{path} is {value}: JSON has no NaN or infinity (serde_json would send null)")]
    NonFiniteNumber {
        /// Where the number is: `data` (a message) or `info` (an advertised
        /// value), then the fields, keys and indexes down to it, as in
        /// `data.samples[2]`.
        path: String,
        /// The number.
        value: f64,
    },
    /// The registry refused a command: an invalid registration, a limit,
    /// an unusable time to live, or an id this node does not hold.
    #[error("registry: {0}")]
    Registry(#[from] crate::registry::RegistryError),
    /// The encoded message is larger than the configured maximum message
    /// size. Nothing was sent; an advertised value that does not fit is
    /// refused and the previous one stays.
    #[error("message of {size} bytes exceeds max_message_size ({max} bytes)")]
    MessageTooLarge {
        /// Encoded size (after encryption).
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Binding the UDP socket failed (address in use, not a local address,
    /// ...). Nothing was started.
    #[error("cannot bind UDP socket to {addr}: {source}")]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating or configuring the UDP socket failed. Nothing was started.
    #[error("cannot {op}: {source}")]
    Socket {
        /// What we were doing.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// This node was demoted permanently (`demote(true)`), so it cannot be
    /// promoted; it stays a non-master.
    #[error("this node was demoted permanently and cannot be promoted")]
    PermanentlyDemoted,
    /// The node has shut down; the call did nothing.
    #[error("the node has shut down")]
    Closed,
    /// A key operation failed (unknown key id, removing the primary, a full
    /// keyring). The keyring is unchanged.
    #[error("key: {0}")]
    Key(#[from] crate::crypto::key::KeyError),
    /// This encryption mode needs a key the node does not have: a configured
    /// [`legacy_key`](crate::ConfigBuilder::legacy_key) for the legacy mode,
    /// an installed key for the secure modes.
    /// The mode is unchanged.
    #[error("encryption mode {0:?} needs a key; configure or install one first")]
    NoKey(crate::Encryption),
    /// The advertised value is not acceptable; the previous value is still
    /// advertised.
    #[error("invalid advertised value: {0}")]
    Advertise(AdvertiseError),
}

/// Why an advertised value was refused.
///
/// ```
/// use shoal::{AdvertiseError, Error};
/// let err = Error::Advertise(AdvertiseError::NoServiceName);
/// assert_eq!(
///     err.to_string(),
///     "invalid advertised value: a service must advertise a JSON object with a string \"name\""
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertiseError {
    /// A service (see [`crate::ServiceDiscovery`]) advertises a JSON object
    /// with a string `name`; this value has none.
    #[error("a service must advertise a JSON object with a string \"name\"")]
    NoServiceName,
}

impl From<crate::registry::RegistrationError> for Error {
    fn from(error: crate::registry::RegistrationError) -> Self {
        Error::Registry(error.into())
    }
}
