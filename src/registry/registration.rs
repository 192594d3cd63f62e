//! One registration: Thalassa's name, version, host, port and metadata.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest name, version or host, in bytes.
const MAX_PART: usize = 255;

/// A service registration: name, version, host, port and a JSON object of
/// metadata. Its id is Thalassa's `/name/version/host/port`.
///
/// It serialises to Thalassa's shape, `lastKnown` (ms since the Unix epoch
/// when its owner last confirmed it) and `id` included, and deserialises
/// from it (checking every part; `id` and `lastKnown` are recomputed).
///
/// ```
/// use shoal::registry::Registration;
///
/// let r = Registration::builder("kv", "1.0.0", "10.0.0.5", 7000).meta("zone", "eu").build().unwrap();
/// let json = serde_json::to_value(&r).unwrap();
/// assert_eq!(json["id"], "/kv/1.0.0/10.0.0.5/7000");
/// assert_eq!(json["meta"]["zone"], "eu");
/// assert!(json["meta"]["pid"].is_u64() && json["meta"]["registered"].is_u64());
/// let back: Registration = serde_json::from_value(json).unwrap();
/// assert_eq!(back, r);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Fields")]
pub struct Registration {
    name: String,
    version: String,
    host: String,
    port: u16,
    #[serde(rename = "lastKnown")]
    last_known: u64,
    meta: Map<String, Value>,
    id: String,
}

/// What deserialisation reads: everything but `id`, which is recomputed.
#[derive(Deserialize)]
struct Fields {
    name: String,
    version: String,
    host: String,
    port: u16,
    #[serde(rename = "lastKnown", default)]
    last_known: u64,
    #[serde(default)]
    meta: Map<String, Value>,
}

impl TryFrom<Fields> for Registration {
    type Error = RegistrationError;
    fn try_from(f: Fields) -> Result<Self, Self::Error> {
        let mut r = Registration::new(f.name, f.version, f.host, f.port, f.meta)?;
        r.last_known = f.last_known;
        Ok(r)
    }
}

/// A registration's part is unusable. Names the part and says why.
///
/// ```
/// use shoal::registry::Registration;
///
/// let err = Registration::builder("k/v", "1.0.0", "10.0.0.5", 7000).build().unwrap_err();
/// assert_eq!(err.field, "name");
/// assert_eq!(err.to_string(), "registration name is not usable: it contains '/'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registration {field} is not usable: {reason}")]
#[non_exhaustive]
pub struct RegistrationError {
    /// `name`, `version`, `host` or `port`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn check_part(field: &'static str, value: &str) -> Result<(), RegistrationError> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_PART {
        "it is longer than 255 bytes"
    } else if value.contains('/') {
        // The id is /name/version/host/port: a '/' would make it ambiguous.
        "it contains '/'"
    } else if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains a space or a control character"
    } else {
        return Ok(());
    };
    Err(RegistrationError { field, reason })
}

impl Registration {
    /// Starts a registration of `name` at `version`, served at
    /// `host:port`. The builder fills `meta.hostname`, `meta.pid` and
    /// `meta.registered` (ms since the Unix epoch) as Thalassa's client
    /// does, unless set.
    ///
    /// ```
    /// use shoal::registry::Registration;
    ///
    /// let r = Registration::builder("web", "2.1.0", "10.0.0.7", 8080).build().unwrap();
    /// assert_eq!((r.name(), r.version(), r.host(), r.port()), ("web", "2.1.0", "10.0.0.7", 8080));
    /// assert_eq!(r.meta()["pid"], std::process::id());
    /// ```
    pub fn builder(
        name: impl Into<String>,
        version: impl Into<String>,
        host: impl Into<String>,
        port: u16,
    ) -> RegistrationBuilder {
        RegistrationBuilder {
            name: name.into(),
            version: version.into(),
            host: host.into(),
            port,
            meta: Map::new(),
        }
    }

    /// A registration exactly as given (no metadata filled in), checked.
    pub(crate) fn new(
        name: String,
        version: String,
        host: String,
        port: u16,
        meta: Map<String, Value>,
    ) -> Result<Registration, RegistrationError> {
        check_part("name", &name)?;
        check_part("version", &version)?;
        check_part("host", &host)?;
        if port == 0 {
            return Err(RegistrationError {
                field: "port",
                reason: "it is zero",
            });
        }
        let id = format!("/{name}/{version}/{host}/{port}");
        Ok(Registration {
            name,
            version,
            host,
            port,
            last_known: 0,
            meta,
            id,
        })
    }

    /// Thalassa's id: `/name/version/host/port`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The service version.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The host it is served at (a name or an address, as registered).
    pub fn host(&self) -> &str {
        &self.host
    }
    /// The port it is served at.
    pub fn port(&self) -> u16 {
        self.port
    }
    /// Its metadata.
    pub fn meta(&self) -> &Map<String, Value> {
        &self.meta
    }
    /// When its owner last confirmed it, in ms since the Unix epoch: its
    /// last refresh at the owner, or the owner's last hello elsewhere.
    /// Zero in a registration not taken from a registry.
    pub fn last_known(&self) -> u64 {
        self.last_known
    }

    /// `meta.registered`, if a number: which of two owners' copies of one
    /// id counts.
    pub(crate) fn registered(&self) -> u64 {
        self.meta
            .get("registered")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    pub(crate) fn set_last_known(&mut self, ms: u64) {
        self.last_known = ms;
    }

    /// Whether two registrations say the same (`lastKnown` aside).
    pub(crate) fn same_as(&self, other: &Registration) -> bool {
        self.id == other.id && self.meta == other.meta
    }
}

impl fmt::Display for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{} at {}:{}",
            self.name, self.version, self.host, self.port
        )
    }
}

/// Builds a [`Registration`]; see [`Registration::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RegistrationBuilder {
    name: String,
    version: String,
    host: String,
    port: u16,
    meta: Map<String, Value>,
}

impl RegistrationBuilder {
    /// Sets one metadata key.
    ///
    /// ```
    /// use shoal::registry::Registration;
    ///
    /// let r = Registration::builder("kv", "1", "h", 1).meta("weight", 3).build().unwrap();
    /// assert_eq!(r.meta()["weight"], 3);
    /// ```
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Adds every key of `meta` (a JSON object).
    ///
    /// ```
    /// use shoal::registry::Registration;
    ///
    /// let meta = serde_json::json!({"zone": "eu", "secondsToExpire": 60});
    /// let r = Registration::builder("kv", "1", "h", 1).meta_object(meta.as_object().unwrap().clone()).build().unwrap();
    /// assert_eq!(r.meta()["zone"], "eu");
    /// ```
    pub fn meta_object(mut self, meta: Map<String, Value>) -> Self {
        self.meta.extend(meta);
        self
    }

    /// Checks the parts and fills `meta.hostname`, `meta.pid` and
    /// `meta.registered` unless set.
    pub fn build(self) -> Result<Registration, RegistrationError> {
        let mut meta = self.meta;
        if !meta.contains_key("hostname") {
            meta.insert("hostname".into(), Value::from(local_host_name()));
        }
        meta.entry("pid")
            .or_insert_with(|| Value::from(std::process::id()));
        meta.entry("registered").or_insert_with(|| {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Value::from(ms)
        });
        Registration::new(self.name, self.version, self.host, self.port, meta)
    }
}

#[cfg(feature = "runtime")]
fn local_host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(not(feature = "runtime"))]
fn local_host_name() -> String {
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_checked_and_named() {
        let bad = [
            ("", "1", "h", 1, "name"),
            ("a", "1/2", "h", 1, "version"),
            ("a", "1", "h h", 1, "host"),
            ("a", "1", "h\n", 1, "host"),
            ("a", "1", "h", 0, "port"),
        ];
        for (n, v, h, p, field) in bad {
            let err = Registration::builder(n, v, h, p).build().unwrap_err();
            assert_eq!(err.field, field);
        }
        let long = "x".repeat(256);
        assert_eq!(
            Registration::builder(&long, "1", "h", 1)
                .build()
                .unwrap_err()
                .field,
            "name"
        );
        // IPv6 hosts are fine: no '/'.
        let r = Registration::builder("a", "1", "fe80::1%eth0", 1)
            .build()
            .unwrap();
        assert_eq!(r.id(), "/a/1/fe80::1%eth0/1");
    }

    #[test]
    fn thalassa_json_round_trips_and_bad_json_is_refused() {
        let json = serde_json::json!({
            "name": "kv", "version": "1.0.0", "host": "10.0.0.5", "port": 7000,
            "lastKnown": 5, "meta": {"hostname": "x", "pid": 1, "registered": 2},
            "id": "/ignored"
        });
        let r: Registration = serde_json::from_value(json).unwrap();
        assert_eq!(r.id(), "/kv/1.0.0/10.0.0.5/7000");
        assert_eq!(r.last_known(), 5);
        let out = serde_json::to_string(&r).unwrap();
        assert_eq!(
            out,
            r#"{"name":"kv","version":"1.0.0","host":"10.0.0.5","port":7000,"lastKnown":5,"meta":{"hostname":"x","pid":1,"registered":2},"id":"/kv/1.0.0/10.0.0.5/7000"}"#
        );
        let bad = serde_json::json!({"name": "k/v", "version": "1", "host": "h", "port": 1});
        assert!(serde_json::from_value::<Registration>(bad).is_err());
    }
}
