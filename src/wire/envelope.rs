//! The JSON envelope every node-discovery datagram carries, and the hello body.
//!
//! On the wire (key order as node-discovery's `JSON.stringify` writes it):
//! `{"data": <any>, "event": <string>, "pid": <hex>, "iid": <hex>, "hostName": <string>}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::DecodeError;

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
}

/// Encodes an envelope to JSON bytes, keys in node-discovery's order.
pub fn encode<T: Serialize + ?Sized>(
    event: &str,
    data: &T,
    sender: &Sender,
) -> Result<Vec<u8>, serde_json::Error> {
    todo!()
}

/// Decodes an envelope. `event`, `pid` and `iid` must be strings; `data` may be any JSON.
pub fn decode(payload: &[u8]) -> Result<Envelope<'_>, DecodeError> {
    todo!()
}

/// Parses the `data` of a `hello` event.
pub fn decode_hello(data: &RawValue) -> Result<Hello, DecodeError> {
    todo!()
}
