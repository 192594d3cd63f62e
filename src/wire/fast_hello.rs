//! A one-pass decoder for the common shape of a hello envelope.
//!
//! Almost every datagram a node receives is a hello in the exact shape that
//! node-discovery's `JSON.stringify` and shoal's encoder write:
//! `{"data":{"isMaster":..,"isMasterEligible":..,"weight":..,"address":"..",...},"event":"hello","pid":"..","iid":"..","hostName":".."}`.
//! [`decode`] reads that shape in one pass over the bytes, borrowing every
//! string, where the general path ([`super::envelope::decode`], then
//! [`super::envelope::decode_hello_ref`]) parses the `data` object twice.
//!
//! It is an accelerator, not a second grammar: it accepts a strict subset
//! of what the general path accepts and gives the same result for it. It
//! returns `None` at the first thing outside that subset — whitespace
//! between tokens (both encoders write none), another event,
//! an unknown or repeated key, a string with an escape, a `null` where a
//! number goes, a number that is not a plain `u64` — and the caller then
//! takes the general path, which decides (and counts) as before. The
//! equivalence is checked by property tests here and by
//! `tests/fuzz_corpus.rs` on every file of the fuzzing corpus.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::envelope::{HelloRef, RawJson};

/// A hello envelope decoded in one pass, borrowing from the payload.
#[derive(Debug, Clone)]
pub struct FastHello<'a> {
    /// Sender process id (`pid`).
    pub pid: &'a str,
    /// Sender instance id (`iid`).
    pub iid: &'a str,
    /// Sender host name (empty when absent).
    pub host_name: &'a str,
    /// The hello itself.
    pub hello: HelloRef<'a>,
}

/// Decodes `payload` (envelope JSON) if it is a hello in the common shape;
/// `None` means "take the general path", not "invalid".
///
/// ```
/// use shoal::wire::fast_hello;
///
/// let json = br#"{"data":{"isMaster":true,"isMasterEligible":true,"weight":0.25,"address":"127.0.0.1","info":{"port":80},"seq":7},"event":"hello","pid":"p","iid":"i","hostName":"h"}"#;
/// let fast = fast_hello::decode(json).unwrap();
/// assert_eq!((fast.iid, fast.hello.weight, fast.hello.seq), ("i", 0.25, Some(7)));
/// assert_eq!(fast.hello.info.unwrap().get(), r#"{"port":80}"#);
///
/// // Anything else is left to the general decoder.
/// assert!(fast_hello::decode(br#"{"data":1,"event":"chat","pid":"p","iid":"i"}"#).is_none());
/// ```
pub fn decode(payload: &[u8]) -> Option<FastHello<'_>> {
    // One UTF-8 check for the whole payload (ASCII in practice), not one per string.
    let text = std::str::from_utf8(payload).ok()?;
    let mut c = Cursor {
        text,
        b: payload,
        i: 0,
    };
    c.eat(b'{')?;
    let (mut hello, mut event, mut pid, mut iid, mut host_name) = (None, false, None, None, None);
    let mut hint = 0;
    loop {
        let key = c.member(ENVELOPE_MEMBERS, ENVELOPE_KEYS, &mut hint)?;
        match key {
            0 /* data */ if hello.is_none() => hello = Some(hello_object(&mut c)?),
            1 /* event */ if !event => {
                if c.string()? != "hello" {
                    return None;
                }
                event = true;
            }
            2 /* pid */ if pid.is_none() => pid = Some(c.string()?),
            3 /* iid */ if iid.is_none() => iid = Some(c.string()?),
            4 /* hostName */ if host_name.is_none() => host_name = Some(c.string()?),
            _ => return None,
        }
        if !c.next_member()? {
            break;
        }
    }
    if c.i != payload.len() || !event {
        return None;
    }
    Some(FastHello {
        pid: pid?,
        iid: iid?,
        host_name: host_name.unwrap_or(""),
        hello: hello?,
    })
}

/// How deep [`Cursor::simple_value`] follows objects and arrays (an
/// advertised value deeper than this is checked by serde_json).
const MAX_SIMPLE_DEPTH: u8 = 8;

/// The envelope's keys in the order node-discovery and shoal write them.
const ENVELOPE_KEYS: &[&str] = &["data", "event", "pid", "iid", "hostName"];

/// [`ENVELOPE_KEYS`] as they appear before their values: quoted, with the colon.
const ENVELOPE_MEMBERS: &[&[u8]] = &[
    b"\"data\":",
    b"\"event\":",
    b"\"pid\":",
    b"\"iid\":",
    b"\"hostName\":",
];

/// A hello's keys in the order node-discovery and shoal write them.
const HELLO_KEYS: &[&str] = &[
    "isMaster",
    "isMasterEligible",
    "weight",
    "address",
    "info",
    "interval",
    "seq",
    "epoch",
    "epochMaster",
    "reg",
    "peers",
];

/// [`HELLO_KEYS`] as they appear before their values.
const HELLO_MEMBERS: &[&[u8]] = &[
    b"\"isMaster\":",
    b"\"isMasterEligible\":",
    b"\"weight\":",
    b"\"address\":",
    b"\"info\":",
    b"\"interval\":",
    b"\"seq\":",
    b"\"epoch\":",
    b"\"epochMaster\":",
    b"\"reg\":",
    b"\"peers\":",
];

/// The `data` object of a hello.
fn hello_object<'a>(c: &mut Cursor<'a>) -> Option<HelloRef<'a>> {
    c.eat(b'{')?;
    let (mut is_master, mut eligible, mut weight, mut address) = (None, None, None, None);
    let (mut info, mut interval, mut seq, mut epoch, mut epoch_master, mut reg) =
        (None, None, None, None, None, None);
    let mut peers = None;
    let mut hint = 0;
    loop {
        let key = c.member(HELLO_MEMBERS, HELLO_KEYS, &mut hint)?;
        match key {
            0 /* isMaster */ if is_master.is_none() => is_master = Some(c.boolean()?),
            1 /* isMasterEligible */ if eligible.is_none() => eligible = Some(c.boolean()?),
            2 /* weight */ if weight.is_none() => weight = Some(c.float()?),
            3 /* address */ if address.is_none() => address = Some(c.string()?),
            4 /* info */ if info.is_none() => info = Some(c.raw_json()?),
            5 /* interval */ if interval.is_none() => interval = Some(c.unsigned()?),
            6 /* seq */ if seq.is_none() => seq = Some(c.unsigned()?),
            7 /* epoch */ if epoch.is_none() => epoch = Some(c.unsigned()?),
            8 /* epochMaster */ if epoch_master.is_none() => epoch_master = Some(c.string()?),
            9 /* reg */ if reg.is_none() => reg = Some(c.unsigned()?),
            10 /* peers */ if peers.is_none() => peers = Some(c.raw()?),
            _ => return None,
        }
        if !c.next_member()? {
            break;
        }
    }
    Some(HelloRef {
        is_master: is_master?,
        is_master_eligible: eligible?,
        weight: weight?,
        address: Cow::Borrowed(address?),
        // `"info": null` reads as no info, as in the general path.
        info: info.filter(|raw: &RawJson<'_>| raw.get() != "null"),
        interval,
        seq,
        epoch,
        epoch_master: epoch_master.map(Cow::Borrowed),
        reg,
        // As `info`: `null` reads as absent.
        peers: peers.filter(|raw: &&RawValue| raw.get() != "null"),
    })
}

/// How many bytes at the start of `bytes` can be inside a JSON string
/// without an escape: up to the first `"`, `\\` or control character.
/// Eight bytes at a time (ids are 32 hex digits), then one at a time.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Nonzero iff some byte of `x` is zero; its lowest set bit is in the
    // first zero byte (a false positive can only follow a true one).
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let special = zero_byte(x ^ (ONES * u64::from(b'"')))
            | zero_byte(x ^ (ONES * u64::from(b'\\')))
            // a byte below 0x20: subtracting 0x20 borrows into its high bit
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
        if special != 0 {
            // Little-endian: the lowest set bit is in the first special byte.
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let tail = chunks.remainder();
    at + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

/// `a == b` for short slices without a call to `memcmp` (members are 6 to
/// 19 bytes): two overlapping fixed-size loads from each end.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    fn ends<const N: usize>(s: &[u8]) -> Option<([u8; N], [u8; N])> {
        let head = s.first_chunk::<N>()?;
        let tail = s.last_chunk::<N>()?;
        Some((*head, *tail))
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        0..=3 => a == b,
        4..=7 => ends::<4>(a) == ends::<4>(b),
        8..=16 => ends::<8>(a) == ends::<8>(b),
        17..=32 => ends::<16>(a) == ends::<16>(b),
        _ => a == b,
    }
}

/// A position in the payload. Every method returns `None` (and the caller
/// gives up) on anything it does not expect; none of them can panic.
struct Cursor<'a> {
    /// The payload, known to be UTF-8.
    text: &'a str,
    /// The same bytes.
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.i += 1)
    }

    /// After a member: `true` for `,` (another follows), `false` for `}`.
    fn next_member(&mut self) -> Option<bool> {
        let more = match self.peek()? {
            b',' => true,
            b'}' => false,
            _ => return None,
        };
        self.i += 1;
        Some(more)
    }

    /// A member's key and its colon, as the key's index in `keys`; `None`
    /// for any other key. Keys come in a known order, so the member after
    /// the previous one (`members[*hint]`, quoted key and colon) is tried
    /// first, as a plain byte comparison, then the one after it (in case an
    /// optional one is missing); any other key is read as a string and
    /// looked up.
    #[inline(always)]
    fn member(
        &mut self,
        members: &[&[u8]],
        keys: &[&'static str],
        hint: &mut usize,
    ) -> Option<usize> {
        let rest = self.b.get(self.i..)?;
        for at in [*hint, *hint + 1] {
            if let Some(member) = members.get(at) {
                if rest.get(..member.len()).is_some_and(|r| same(r, member)) {
                    self.i += member.len();
                    *hint = at + 1;
                    return Some(at);
                }
            }
        }
        self.other_member(keys)
    }

    /// [`member`](Self::member) of a key out of the usual order (or not one of `keys`).
    #[cold]
    #[inline(never)]
    fn other_member(&mut self, keys: &[&'static str]) -> Option<usize> {
        let key = self.string()?;
        let at = keys.iter().position(|k| *k == key)?;
        self.eat(b':')?;
        Some(at)
    }

    /// A string without escapes or control characters.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        let len = plain_run(rest);
        if rest.get(len) != Some(&b'"') {
            return None;
        }
        // Both ends are at ASCII quotes, so on char boundaries.
        let string = self.text.get(start..start + len)?;
        self.i = start + len + 1;
        Some(string)
    }

    fn boolean(&mut self) -> Option<bool> {
        let rest = self.b.get(self.i..)?;
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.i += len;
        Some(value)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// A non-negative integer that fits in a `u64`, written as JSON writes
    /// integers (no sign, fraction, exponent or leading zero).
    fn unsigned(&mut self) -> Option<u64> {
        let start = self.i;
        let n = self.digits();
        let text = self.b.get(start..self.i)?;
        if n == 0 || n > 20 || (n > 1 && text.first() == Some(&b'0')) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        // Nineteen digits cannot overflow a u64; only a twentieth can.
        let (head, last) = if n == 20 {
            text.split_at(19)
        } else {
            (text, &[][..])
        };
        let value = head
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        last.iter().try_fold(value, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
    }

    /// A JSON number, as the nearest finite `f64`.
    fn float(&mut self) -> Option<f64> {
        let start = self.i;
        self.number()?;
        self.text
            .get(start..self.i)?
            .parse::<f64>()
            .ok()
            .filter(|w| w.is_finite())
    }

    /// Past a JSON number (sign, integer part without a leading zero,
    /// fraction, exponent), whatever its size.
    fn number(&mut self) -> Option<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.b.get(int_start) == Some(&b'0')) {
            return None;
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Any JSON value, kept raw: the usual shapes checked here, the rest
    /// by serde_json.
    fn raw_json(&mut self) -> Option<RawJson<'a>> {
        let start = self.i;
        if self.simple_value(MAX_SIMPLE_DEPTH).is_some() {
            // Valid JSON (what `simple_value` takes is), between ASCII bytes.
            return Some(RawJson::checked(self.text.get(start..self.i)?));
        }
        self.i = start;
        self.raw().map(|raw| RawJson::checked(raw.get()))
    }

    /// Past one JSON value written without whitespace and with strings
    /// without escapes, nested at most `depth` deep: `None` for anything
    /// else, which may still be JSON (the caller asks serde_json).
    fn simple_value(&mut self, depth: u8) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'{' => {
                self.i += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                let depth = depth.checked_sub(1)?;
                loop {
                    self.string()?;
                    self.eat(b':')?;
                    self.simple_value(depth)?;
                    if !self.next_member()? {
                        return Some(());
                    }
                }
            }
            b'[' => {
                self.i += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                let depth = depth.checked_sub(1)?;
                loop {
                    self.simple_value(depth)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let rest = self.b.get(self.i..)?;
        rest.starts_with(word).then(|| self.i += word.len())
    }

    /// Any JSON value, validated by serde_json and kept raw.
    fn raw(&mut self) -> Option<&'a RawValue> {
        let rest = self.b.get(self.i..)?;
        let mut de = serde_json::Deserializer::from_slice(rest);
        let raw = <&'a RawValue>::deserialize(&mut de).ok()?;
        // The value starts where we are (whitespace skipped) and is a
        // sub-slice of `rest`: its end is our new position.
        let end =
            (raw.get().as_ptr() as usize).checked_sub(rest.as_ptr() as usize)? + raw.get().len();
        self.i = self.i.checked_add(end)?;
        Some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::envelope::{self, Hello, Sender};
    use proptest::prelude::*;
    use serde_json::json;

    /// What the general path makes of `payload`, if it is a valid hello.
    fn general(payload: &[u8]) -> Option<(String, String, String, Hello)> {
        let env = envelope::decode(payload).ok()?;
        if env.event != "hello" {
            return None;
        }
        let hello = envelope::decode_hello(env.data?).ok()?;
        Some((
            env.pid.into_owned(),
            env.iid.into_owned(),
            env.host_name.into_owned(),
            hello,
        ))
    }

    /// The fast result in the general path's owned terms.
    fn owned(fast: &FastHello<'_>) -> (String, String, String, Hello) {
        let h = &fast.hello;
        let hello = Hello {
            is_master: h.is_master,
            is_master_eligible: h.is_master_eligible,
            weight: h.weight,
            address: h.address.to_string(),
            info: h
                .info
                .map(|r| serde_json::from_str(r.get()).expect("validated")),
            interval: h.interval,
            seq: h.seq,
            epoch: h.epoch,
            epoch_master: h.epoch_master.as_ref().map(|m| m.to_string()),
            reg: h.reg,
            peers: h.peers.and_then(|r| serde_json::from_str(r.get()).ok()),
        };
        (
            fast.pid.to_owned(),
            fast.iid.to_owned(),
            fast.host_name.to_owned(),
            hello,
        )
    }

    /// The property: whatever the fast path accepts, the general path
    /// accepts with the same meaning (bit-equal weights included).
    fn agrees(payload: &[u8]) -> Result<bool, String> {
        let Some(fast) = decode(payload) else {
            return Ok(false);
        };
        let fast = owned(&fast);
        match general(payload) {
            Some(slow) if slow == fast && slow.3.weight.to_bits() == fast.3.weight.to_bits() => {
                Ok(true)
            }
            other => Err(format!(
                "{:?}: fast {fast:?}, general {other:?}",
                String::from_utf8_lossy(payload)
            )),
        }
    }

    fn sender() -> Sender {
        Sender {
            pid: "0123456789abcdef0123456789abcdef".into(),
            iid: "fedcba9876543210fedcba9876543210".into(),
            host_name: "node-host".into(),
        }
    }

    fn typical() -> Hello {
        Hello {
            is_master: false,
            is_master_eligible: true,
            weight: 0.7390851332151607,
            address: "127.0.0.1".into(),
            info: Some(json!({"id": "node-42", "port": 8080, "tags": ["a", "b"]})),
            interval: Some(400),
            seq: Some(123_456),
            epoch: Some(3),
            epoch_master: Some("ab".repeat(16)),
            reg: None,
            peers: None,
        }
    }

    #[test]
    fn takes_what_shoal_and_node_discovery_send() {
        let node = br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.7390851332151607,"address":"127.0.0.1"},"event":"hello","pid":"0123456789abcdef0123456789abcdef","iid":"fedcba9876543210fedcba9876543210","hostName":"node-host"}"#;
        assert_eq!(agrees(node), Ok(true));
        let shoal = envelope::encode("hello", &typical(), &sender()).unwrap();
        assert_eq!(agrees(&shoal), Ok(true));
        let fast = decode(&shoal).unwrap();
        assert_eq!(fast.hello.epoch(), Some((3, &*"ab".repeat(16))));
        let reordered = br#"{"data":{"weight":-1.5e3,"address":"","isMasterEligible":false,"isMaster":true,"info":null},"iid":"i","event":"hello","pid":"p"}"#;
        assert_eq!(agrees(reordered), Ok(true));
        assert!(decode(reordered).unwrap().hello.info.is_none());
        // Whitespace is left to the general path (no encoder writes any).
        let spaced = br#"{"data": {"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i"}"#;
        assert!(decode(spaced).is_none());
        assert!(general(spaced).is_some());
        for weight in [
            "-0",
            "-0.0",
            "0",
            "1",
            "-7",
            "123456789012345678901234567890",
            "0.30000000000000004",
            "5e-324",
            "1.7976931348623157e308",
            "9007199254740993",
        ] {
            let json = format!(
                r#"{{"data":{{"isMaster":false,"isMasterEligible":true,"weight":{weight},"address":"x"}},"event":"hello","pid":"p","iid":"i"}}"#
            );
            assert_eq!(agrees(json.as_bytes()), Ok(true), "{weight}");
        }
    }

    #[test]
    fn takes_a_peers_list_raw_and_leaves_a_null_one_absent() {
        let with = Hello {
            peers: Some(vec!["10.0.2.1:12345".into(), "[2001:db8::1]:12345".into()]),
            ..typical()
        };
        let bytes = envelope::encode("hello", &with, &sender()).unwrap();
        assert_eq!(agrees(&bytes), Ok(true));
        let fast = decode(&bytes).unwrap();
        assert_eq!(
            fast.hello.peers.unwrap().get(),
            r#"["10.0.2.1:12345","[2001:db8::1]:12345"]"#
        );
        // Without peers, the field is absent: the bytes of before.
        let without = envelope::encode("hello", &typical(), &sender()).unwrap();
        assert!(!String::from_utf8(without.clone())
            .unwrap()
            .contains("peers"));
        assert!(decode(&without).unwrap().hello.peers.is_none());
        let null = br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","peers":null},"event":"hello","pid":"p","iid":"i"}"#;
        assert!(decode(null).unwrap().hello.peers.is_none());
        // A list of 1,000 entries is still one borrowed slice, read later
        // with a bound (see `unicast::parse_listed`).
        let many: Vec<String> = (0..1000)
            .map(|i| format!("\"10.0.{}.{}:1\"", i / 250, i % 250))
            .collect();
        let json = format!(
            r#"{{"data":{{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","peers":[{}]}},"event":"hello","pid":"p","iid":"i"}}"#,
            many.join(",")
        );
        assert!(decode(json.as_bytes()).unwrap().hello.peers.is_some());
    }

    #[test]
    fn checks_advertised_values_itself_or_by_serde_json_alike() {
        let hello = |info: &str| {
            format!(
                r#"{{"data":{{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","info":{info}}},"event":"hello","pid":"p","iid":"i"}}"#
            )
        };
        let deep = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        let valid = [
            r#"{"id":"node-1"}"#,
            r#"{"id":"node-1","port":8080,"up":true,"down":false,"none":null}"#,
            r#"{}"#,
            r#"[]"#,
            r#"{"a":{"b":[1,-2.5e+3,0,-0,1E2,{"c":[]}]},"d":[[],{}]}"#,
            r#"{"long":123456789012345678901234567890}"#,
            r#""just a string""#,
            r#"{"esc":"a\"b","uni":"\u00e9","é":"ü"}"#,
            r#"{ "spaced" : 1 }"#,
            r#"{"dup":1,"dup":2}"#,
            "7",
            "true",
            &deep,
        ];
        for info in valid {
            let json = hello(info);
            assert_eq!(agrees(json.as_bytes()), Ok(true), "{info}");
            let fast = decode(json.as_bytes()).unwrap();
            assert_eq!(fast.hello.info.unwrap().get(), info.trim());
        }
        // Raw JSON as serde_json's raw values take it (a number too large
        // for an f64 included), which the peer table then refuses to parse.
        let big = r#"{"big":1e999}"#;
        assert!(serde_json::from_str::<&RawValue>(big).is_ok());
        let json = hello(big);
        assert_eq!(
            decode(json.as_bytes()).unwrap().hello.info.unwrap().get(),
            big
        );
        let invalid = [
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":[1}"#,
            r#"{"a":"b}"#,
        ];
        for info in invalid {
            let json = hello(info);
            assert!(decode(json.as_bytes()).is_none(), "{info}");
            assert!(general(json.as_bytes()).is_none(), "{info}");
        }
    }

    #[test]
    fn leaves_the_rest_to_the_general_path() {
        let cases: &[&[u8]] = &[
            br#"{"data":{"a":1},"event":"chat","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i","extra":1}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","port":1},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p\u0041","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","seq":null},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","seq":1.0},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","seq":18446744073709551616},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":1e999,"address":"x"},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":01,"address":"x"},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","pid":"q","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMaster":true,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p"}"#,
            br#"{"data":{"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"pid":"p","iid":"i"}"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i"} x"#,
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x","info":{"a":}},"event":"hello","pid":"p","iid":"i"}"#,
            b"{\"data\":{\"isMaster\":false,\"isMasterEligible\":true,\"weight\":0.5,\"address\":\"\xff\"},\"event\":\"hello\",\"pid\":\"p\",\"iid\":\"i\"}",
            br#"{"data":{"isMaster":false,"isMasterEligible":true,"weight":0.5,"address":"x"},"event":"hello","pid":"p","iid":"i""#,
            b"",
            b"{}",
        ];
        for case in cases {
            assert!(
                decode(case).is_none(),
                "fast path took {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn plain_runs_stop_at_the_first_special_byte() {
        let naive = |b: &[u8]| {
            b.iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(b.len())
        };
        let mut cases: Vec<Vec<u8>> = vec![vec![], b"abc".to_vec(), vec![b'x'; 40]];
        for len in 0..20 {
            for at in 0..len {
                for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[at] = special;
                    cases.push(v.clone());
                    v.iter_mut().skip(at + 1).for_each(|b| *b = 0xff);
                    cases.push(v);
                }
            }
        }
        // Bytes that must not count: 0x20, 0x7f, 0x80, 0xa2 (0x22 | 0x80), 0xdc.
        cases.push(vec![
            0x20, 0x7f, 0x80, 0xa2, 0xdc, 0x21, 0x23, 0x5b, 0x5d, 0x22,
        ]);
        for case in cases {
            assert_eq!(plain_run(&case), naive(&case), "{case:?}");
        }
    }

    proptest! {
        #[test]
        fn same_is_equality(a in proptest::collection::vec(0u8..3, 0..20), b in proptest::collection::vec(0u8..3, 0..20)) {
            prop_assert_eq!(same(&a, &b), a == b);
            prop_assert!(same(&a, &a));
        }

        #[test]
        fn plain_run_is_the_naive_scan(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let naive = bytes
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(bytes.len());
            prop_assert_eq!(plain_run(&bytes), naive);
        }

        #[test]
        fn agrees_with_the_general_path_on_real_hellos(
            master: bool,
            eligible: bool,
            weight in prop_oneof![any::<f64>(), -1e6f64..1e6, 0f64..1.0],
            info in prop_oneof![
                Just(None),
                Just(Some(json!(null))),
                ".{0,20}".prop_map(|s| Some(json!({"id": s, "n": [1, 2.5, null]}))),
            ],
            interval in proptest::option::of(any::<u64>()),
            seq in proptest::option::of(any::<u64>()),
            reg in proptest::option::of(any::<u64>()),
            epoch in proptest::option::of((any::<u64>(), "[0-9a-f]{0,40}")),
            peers in proptest::option::of(proptest::collection::vec("[0-9a-f.:\\[\\]]{0,24}", 0..20)),
            host in ".{0,12}",
        ) {
            let hello = Hello {
                is_master: master,
                is_master_eligible: eligible,
                weight,
                address: "127.0.0.1".into(),
                info,
                interval,
                seq,
                epoch: epoch.as_ref().map(|e| e.0),
                epoch_master: epoch.map(|e| e.1),
                reg,
                peers,
            };
            let s = Sender { host_name: host, ..sender() };
            if let Ok(bytes) = envelope::encode("hello", &hello, &s) {
                prop_assert_eq!(agrees(&bytes).map(|_| ()), Ok(()));
            }
        }

        #[test]
        fn agrees_on_mangled_hellos(
            cut in 0usize..400,
            at in 0usize..400,
            byte in prop_oneof![any::<u8>(), Just(b'"'), Just(b','), Just(b'}'), Just(b'0'), Just(b' ')],
        ) {
            let mut bytes = envelope::encode("hello", &typical(), &sender()).unwrap();
            if at < bytes.len() {
                bytes[at] = byte;
            }
            bytes.truncate(cut.max(at.min(bytes.len())));
            prop_assert!(agrees(&bytes).is_ok());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
