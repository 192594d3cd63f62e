//! The JSON envelope every node-discovery datagram carries, and the hello body.
//!
//! On the wire (key order as node-discovery's `JSON.stringify` writes it):
//! `{"data": <any>, "event": <string>, "pid": <hex>, "iid": <hex>, "hostName": <string>}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::{DecodeError, EnvelopeError};

/// Who sent an envelope: stamped on every outgoing datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// 32 hex characters, one value per OS process (node-discovery's `pid`).
    pub pid: String,
    /// 32 hex characters, one value per Discovery instance (node-discovery's `iid`).
    pub iid: String,
    /// The OS host name.
    pub host_name: String,
}

/// A decoded envelope, borrowing from the payload it was parsed from.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The event (`"hello"` or a channel name).
    pub event: Cow<'a, str>,
    /// The raw JSON of `data`, if the key was present.
    pub data: Option<&'a RawValue>,
    /// Sender process id.
    pub pid: Cow<'a, str>,
    /// Sender instance id.
    pub iid: Cow<'a, str>,
    /// Sender host name (empty when absent).
    pub host_name: Cow<'a, str>,
}

/// The body of a `hello` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The sender currently is a master.
    pub is_master: bool,
    /// The sender may become a master.
    pub is_master_eligible: bool,
    /// Election weight: higher wins.
    pub weight: f64,
    /// node-discovery always sends `"127.0.0.1"` here; receivers use the datagram's source.
    pub address: String,
    /// The advertised value, absent until the node advertises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// shoal: the sender's hello interval in ms, so receivers can size its
    /// deadline (node-discovery ignores unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// shoal: a counter that grows with each hello, so a receiver can ignore
    /// one that a network delivered after a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// shoal: the highest election epoch the sender has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// shoal: the master that set that epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_master: Option<String>,
    /// shoal: the version of the sender's registry table, once it has
    /// registered something (see [`crate::registry`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<u64>,
    /// shoal: up to 16 live peers the sender reaches by unicast, as
    /// `"ip:port"` (IPv6 as `"[ip]:port"`, never link-local), so that one
    /// reachable seed leads to the rest of the cluster. Absent when there
    /// are none, so that a hello with no unicast peers is byte for byte
    /// what it was before (node-discovery ignores unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<String>>,
}

impl Hello {
    /// The epoch carried, if both of its fields are present and sane.
    pub fn epoch(&self) -> Option<crate::Epoch> {
        match (self.epoch, &self.epoch_master) {
            (Some(n), Some(master)) if master.len() <= crate::NodeId::MAX_LEN => {
                Some(crate::Epoch {
                    n,
                    master: crate::NodeId::new(master),
                })
            }
            _ => None,
        }
    }
}

/// One JSON value as it came on the wire, known to be valid JSON: a
/// hello's raw `info`. Unlike `&RawValue`, it can be made from text that
/// was checked some other way ([`super::fast_hello`] checks the usual
/// shapes itself, which costs a tenth of serde_json's raw-value parse).
///
/// ```
/// use shoal::wire::envelope::RawJson;
///
/// let raw: RawJson<'_> = serde_json::from_str(r#"{"id":"a"}"#).unwrap();
/// assert_eq!(raw.get(), r#"{"id":"a"}"#);
/// assert!(serde_json::from_str::<RawJson<'_>>("{").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawJson<'a>(&'a str);

impl<'a> RawJson<'a> {
    /// Text checked to be one JSON value (by the caller: not checked again).
    pub(crate) fn checked(text: &'a str) -> Self {
        RawJson(text)
    }

    /// The JSON text.
    ///
    /// ```
    /// let raw: shoal::wire::envelope::RawJson<'_> = serde_json::from_str("[1,2]").unwrap();
    /// assert_eq!(raw.get(), "[1,2]");
    /// ```
    pub fn get(&self) -> &'a str {
        self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| RawJson(raw.get()))
    }
}

/// A received hello, borrowing from the datagram it came in: what the
/// receive path reads, so that a hello from a known peer allocates nothing.
///
/// `info` stays raw JSON: the peer table compares it byte for byte with
/// what the peer advertised before and parses it only when it changed.
/// Made by [`decode_hello_ref`], or in one pass by
/// [`super::fast_hello::decode`].
///
/// ```
/// use serde_json::value::RawValue;
/// use shoal::wire::envelope::decode_hello_ref;
///
/// let data = RawValue::from_string(
///     r#"{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"127.0.0.1","info":{"id":"a"}}"#.into(),
/// ).unwrap();
/// let hello = decode_hello_ref(&data).unwrap();
/// assert_eq!(hello.info.unwrap().get(), r#"{"id":"a"}"#);
/// assert_eq!(hello.interval, None);
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloRef<'a> {
    /// The sender currently is a master.
    pub is_master: bool,
    /// The sender may become a master.
    pub is_master_eligible: bool,
    /// Election weight (finite).
    pub weight: f64,
    /// What the sender put in `address` (node-discovery: always `"127.0.0.1"`).
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    /// The advertised value as raw JSON; `None` if absent or `null`.
    #[serde(borrow, default)]
    pub info: Option<RawJson<'a>>,
    /// shoal: the sender's hello interval in ms.
    #[serde(default)]
    pub interval: Option<u64>,
    /// shoal: the hello's sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
    /// shoal: the highest election epoch the sender has seen.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// shoal: the master that set that epoch.
    #[serde(borrow, default)]
    pub epoch_master: Option<Cow<'a, str>>,
    /// shoal: the version of the sender's registry table.
    #[serde(default)]
    pub reg: Option<u64>,
    /// shoal: the peers the sender reaches by unicast, as raw JSON (an
    /// array of `"ip:port"` strings); `None` if absent or `null`. Kept raw
    /// so that a hello pays for it only when the receiver reads it, and
    /// read with a bound on the number of entries whatever their number
    /// on the wire.
    #[serde(borrow, default)]
    pub peers: Option<&'a RawValue>,
}

impl HelloRef<'_> {
    /// The epoch carried, as (counter, master id), if both fields are
    /// present and the id is not too long.
    ///
    /// ```
    /// use serde_json::value::RawValue;
    /// use shoal::wire::envelope::decode_hello_ref;
    ///
    /// let data = RawValue::from_string(
    ///     r#"{"isMaster":true,"isMasterEligible":true,"weight":1,"address":"x","epoch":4,"epochMaster":"m"}"#.into(),
    /// ).unwrap();
    /// assert_eq!(decode_hello_ref(&data).unwrap().epoch(), Some((4, "m")));
    /// ```
    pub fn epoch(&self) -> Option<(u64, &str)> {
        match (self.epoch, &self.epoch_master) {
            (Some(n), Some(master)) if master.len() <= crate::NodeId::MAX_LEN => Some((n, master)),
            _ => None,
        }
    }
}

/// The outgoing envelope; field order is node-discovery's key order.
#[derive(Serialize)]
struct OutEnvelope<'a, T: ?Sized> {
    data: &'a T,
    event: &'a str,
    pid: &'a str,
    iid: &'a str,
    #[serde(rename = "hostName")]
    host_name: &'a str,
}

/// The incoming envelope, borrowing from the payload where it can.
#[derive(Deserialize)]
struct InEnvelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow)]
    pid: Cow<'a, str>,
    #[serde(borrow)]
    iid: Cow<'a, str>,
    #[serde(borrow, default, rename = "hostName")]
    host_name: Cow<'a, str>,
}

/// `Some` whenever the key is there, `null` included (a plain
/// `Option<&RawValue>` would turn `"data": null` into `None`).
fn present<'de, D>(de: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&'de RawValue>::deserialize(de).map(Some)
}

/// serde's derived `Deserialize` also accepts a JSON array (fields by
/// position); node-discovery only ever sends objects, so anything else is
/// refused up front.
fn require_object(json: &[u8]) -> Result<(), DecodeError> {
    match json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        Some(b'{') => Ok(()),
        Some(_) => Err(DecodeError::Envelope(EnvelopeError::NotAnObject)),
        None => Err(DecodeError::Envelope(EnvelopeError::Empty)),
    }
}

fn json_error(error: serde_json::Error) -> DecodeError {
    DecodeError::Envelope(EnvelopeError::from_json(&error))
}

/// Encodes an envelope to JSON bytes, keys in node-discovery's order.
///
/// ```
/// use shoal::wire::envelope::{decode, encode, Sender};
///
/// let me = Sender { pid: "p1".into(), iid: "i1".into(), host_name: "box".into() };
/// let bytes = encode("chat", &serde_json::json!({"n": 1}), &me).unwrap();
/// assert_eq!(bytes, br#"{"data":{"n":1},"event":"chat","pid":"p1","iid":"i1","hostName":"box"}"#);
/// let env = decode(&bytes).unwrap();
/// assert_eq!((&*env.event, &*env.iid), ("chat", "i1"));
/// assert_eq!(env.data.unwrap().get(), r#"{"n":1}"#);
/// ```
pub fn encode<T: Serialize + ?Sized>(
    event: &str,
    data: &T,
    sender: &Sender,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&OutEnvelope {
        data,
        event,
        pid: &sender.pid,
        iid: &sender.iid,
        host_name: &sender.host_name,
    })
}

/// Decodes an envelope. `event`, `pid` and `iid` must be strings; `data` may be any JSON.
pub fn decode(payload: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    require_object(payload)?;
    let env: InEnvelope<'_> = serde_json::from_slice(payload).map_err(json_error)?;
    Ok(Envelope {
        event: env.event,
        data: env.data,
        pid: env.pid,
        iid: env.iid,
        host_name: env.host_name,
    })
}

/// Parses the `data` of a `hello` event.
pub fn decode_hello(data: &RawValue) -> Result<Hello, DecodeError> {
    require_object(data.get().as_bytes())?;
    let hello: Hello = serde_json::from_str(data.get()).map_err(json_error)?;
    if !hello.weight.is_finite() {
        return Err(DecodeError::Envelope(EnvelopeError::WeightNotFinite));
    }
    Ok(hello)
}

/// Parses the `data` of a `hello` event, borrowing from it: the general
/// receive path (the common shape takes [`super::fast_hello::decode`]).
/// Refuses what [`decode_hello`] refuses.
pub fn decode_hello_ref(data: &RawValue) -> Result<HelloRef<'_>, DecodeError> {
    require_object(data.get().as_bytes())?;
    let hello: HelloRef<'_> = serde_json::from_str(data.get()).map_err(json_error)?;
    if !hello.weight.is_finite() {
        return Err(DecodeError::Envelope(EnvelopeError::WeightNotFinite));
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sender() -> Sender {
        Sender {
            pid: "0123456789abcdef0123456789abcdef".into(),
            iid: "fedcba9876543210fedcba9876543210".into(),
            host_name: "node-host".into(),
        }
    }

    fn hello() -> Hello {
        Hello {
            is_master: false,
            is_master_eligible: true,
            weight: 0.7390851332151607,
            address: "127.0.0.1".into(),
            info: None,
            interval: None,
            seq: None,
            epoch: None,
            epoch_master: None,
            reg: None,
            peers: None,
        }
    }

    #[test]
    fn encodes_in_node_key_order() {
        // Byte for byte what node-discovery's Network.send produces.
        let node = r#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.7390851332151607,"address":"127.0.0.1"},"event":"hello","pid":"0123456789abcdef0123456789abcdef","iid":"fedcba9876543210fedcba9876543210","hostName":"node-host"}"#;
        assert_eq!(
            String::from_utf8(encode("hello", &hello(), &sender()).unwrap()).unwrap(),
            node
        );
        let with_info = Hello {
            info: Some(json!({"port": 8080})),
            ..hello()
        };
        let bytes = encode("hello", &with_info, &sender()).unwrap();
        assert!(String::from_utf8(bytes)
            .unwrap()
            .starts_with(r#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.7390851332151607,"address":"127.0.0.1","info":{"port":8080}},"event""#));
    }

    #[test]
    fn round_trip_borrows() {
        let bytes = encode("news", &json!({"a": [1, 2]}), &sender()).unwrap();
        let env = decode(&bytes).unwrap();
        assert_eq!(env.event, "news");
        assert!(matches!(env.event, Cow::Borrowed(_)));
        assert!(matches!(env.pid, Cow::Borrowed(_)));
        assert_eq!(env.pid, sender().pid);
        assert_eq!(env.iid, sender().iid);
        assert_eq!(env.host_name, "node-host");
        assert_eq!(env.data.unwrap().get(), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn hello_round_trip() {
        for h in [
            hello(),
            Hello {
                info: Some(json!({"service": "api", "tags": ["x"]})),
                is_master: true,
                ..hello()
            },
            Hello {
                interval: Some(400),
                seq: Some(12),
                epoch: Some(7),
                epoch_master: Some("ab".repeat(16)),
                reg: None,
                ..hello()
            },
            Hello {
                peers: Some(vec!["10.0.1.7:12345".into(), "[2001:db8::1]:12345".into()]),
                ..hello()
            },
        ] {
            let bytes = encode("hello", &h, &sender()).unwrap();
            let env = decode(&bytes).unwrap();
            assert_eq!(decode_hello(env.data.unwrap()).unwrap(), h);
        }
    }

    #[test]
    fn escaped_strings_are_owned() {
        let env = decode(br#"{"event":"a\"b","pid":"p","iid":"i","hostName":"h\u00e9"}"#).unwrap();
        assert_eq!(env.event, "a\"b");
        assert!(matches!(env.event, Cow::Owned(_)));
        assert_eq!(env.host_name, "h\u{e9}");
        assert!(env.data.is_none());
    }

    #[test]
    fn data_presence() {
        let env = decode(br#"{"data":null,"event":"e","pid":"p","iid":"i"}"#).unwrap();
        assert_eq!(env.data.unwrap().get(), "null");
        assert_eq!(env.host_name, "");
        let env = decode(br#" {"event":"e","pid":"p","iid":"i","extra":1} "#).unwrap();
        assert!(env.data.is_none());
    }

    #[test]
    fn rejects_bad_envelopes() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"null",
            b"42",
            b"\"str\"",
            br#"[{"a":1},"e","p","i","h"]"#,
            br#"{"event":1,"pid":"p","iid":"i"}"#,
            br#"{"event":"e","pid":null,"iid":"i"}"#,
            br#"{"event":"e","pid":"p"}"#,
            br#"{"pid":"p","iid":"i"}"#,
            br#"{"event":"e","pid":"p","iid":"i","hostName":7}"#,
            br#"{"event":"e","pid":"p","iid":"i"} trailing"#,
            br#"{"event":"e","pid":"p","iid":"i""#,
            b"{\"event\":\"\xff\",\"pid\":\"p\",\"iid\":\"i\"}",
            b"\xef\xbb\xbf{\"event\":\"e\",\"pid\":\"p\",\"iid\":\"i\"}",
        ];
        for b in bad {
            assert!(
                matches!(decode(b), Err(DecodeError::Envelope(_))),
                "accepted {:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn rejects_bad_hellos() {
        let bad = [
            r#"[false,true,0.5,"x"]"#,
            r#""hello""#,
            r#"{"isMaster":false,"isMasterEligible":true,"address":"x"}"#,
            r#"{"isMaster":false,"isMasterEligible":true,"weight":"0.5","address":"x"}"#,
            r#"{"isMaster":0,"isMasterEligible":true,"weight":0.5,"address":"x"}"#,
            r#"{"isMaster":false,"isMasterEligible":true,"weight":1e999,"address":"x"}"#,
            r#"{"isMaster":false,"isMasterEligible":true,"weight":null,"address":"x"}"#,
        ];
        for b in bad {
            let raw = RawValue::from_string(b.to_string()).unwrap();
            assert!(
                matches!(decode_hello(&raw), Err(DecodeError::Envelope(_))),
                "accepted {b}"
            );
        }
        let ok = RawValue::from_string(
            r#"{"isMaster":true,"isMasterEligible":false,"weight":-3,"address":"x","info":null,"port":1}"#
                .to_string(),
        )
        .unwrap();
        let h = decode_hello(&ok).unwrap();
        assert_eq!(h.weight, -3.0);
        assert!(h.is_master && !h.is_master_eligible);
        assert_eq!(h.info, None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(env) = decode(&bytes) {
                if let Some(d) = env.data {
                    let _ = decode_hello(d);
                }
            }
        }

        #[test]
        fn random_json_never_panics(s in r#"\{("(data|event|pid|iid|hostName)":(null|"[a-z]*"|[0-9.e-]{1,6}|\{\}|\[\]|true),?){0,6}\}"#) {
            if let Ok(env) = decode(s.as_bytes()) {
                if let Some(d) = env.data {
                    let _ = decode_hello(d);
                }
            }
        }

        #[test]
        fn round_trip_strings(event in ".*", host in ".*", text in ".*") {
            let s = Sender { host_name: host.clone(), ..sender() };
            let bytes = encode(&event, &json!({"t": text}), &s).unwrap();
            let env = decode(&bytes).unwrap();
            prop_assert_eq!(&*env.event, &*event);
            prop_assert_eq!(&*env.host_name, &*host);
            let data: serde_json::Value = serde_json::from_str(env.data.unwrap().get()).unwrap();
            prop_assert_eq!(data, json!({"t": text}));
        }
    }
}
