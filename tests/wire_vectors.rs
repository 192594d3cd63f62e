//! Wire compatibility with node-discovery@0.2.1-1.
//!
//! (a) Vectors produced by node-discovery's own stream classes
//! (`tests/node/gen_vectors.js`, stored in `tests/vectors/node_discovery.json`)
//! are decoded by shoal, and shoal's encoder reproduces them byte for byte.
//!
//! (b) Shoal's encoding is piped through node-discovery's own receive path
//! (`tests/node/decode.js`), which must give back the same JSON. This part
//! needs Node and `tests/node/node_modules`; it is skipped when
//! `node_modules` is absent, unless `SHOAL_REQUIRE_NODE` is set.

#[path = "support/node_install.rs"]
mod node_install;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use shoal::crypto::legacy::LegacyCipher;
use shoal::wire::envelope::{self, Sender};
use shoal::wire::framing::{self, Reassembler, ReassemblyLimits, BLOCK_DATA, HEADER_LEN};

#[derive(Deserialize)]
struct VectorFile {
    package: String,
    cipher: CipherVector,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct CipherVector {
    key: String,
    plain: String,
    cipher_hex: String,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    /// The object node-discovery's Network.send would write.
    input: Value,
    /// `JSON.stringify(input)`, exactly.
    json: String,
    key: Option<String>,
    /// Length of what WrapStream framed (the JSON, or its ciphertext).
    payload_len: usize,
    /// Whether node-discovery's own receive path delivers `blocks`.
    node_delivers: bool,
    blocks: Vec<String>,
}

impl Vector {
    fn blocks(&self) -> Vec<Vec<u8>> {
        self.blocks
            .iter()
            .map(|h| hex::decode(h).unwrap())
            .collect()
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> VectorFile {
    let path = manifest_dir().join("tests/vectors/node_discovery.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn from() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], 12345))
}

/// The object an envelope decodes to, shaped like node-discovery's.
fn envelope_value(payload: &[u8]) -> Value {
    let env = envelope::decode(payload).unwrap();
    let mut obj = serde_json::Map::new();
    if let Some(data) = env.data {
        obj.insert("data".into(), serde_json::from_str(data.get()).unwrap());
    }
    obj.insert("event".into(), json!(env.event));
    obj.insert("pid".into(), json!(env.pid));
    obj.insert("iid".into(), json!(env.iid));
    obj.insert("hostName".into(), json!(env.host_name));
    Value::Object(obj)
}

/// Shoal's receive path over whole datagrams: framing, cipher, envelope.
/// Returns every delivered envelope and the reassembler, to inspect.
fn shoal_decode(datagrams: &[Vec<u8>], key: Option<&str>) -> (Vec<Value>, Reassembler) {
    let cipher = key.map(|k| LegacyCipher::new(k.as_bytes()));
    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut out = Vec::new();
    let now = Instant::now();
    for dg in datagrams {
        let mut rest: &[u8] = dg;
        while !rest.is_empty() {
            let (header, data, more) = framing::parse_block(rest).unwrap();
            rest = more;
            let Some(payload) = r.push(now, from(), &header, data).unwrap() else {
                continue;
            };
            let plain = match &cipher {
                Some(c) => c.decrypt(&payload).unwrap(),
                None => payload.into_owned(),
            };
            out.push(envelope_value(&plain));
        }
    }
    (out, r)
}

/// Shoal's envelope encoding of a node-discovery send object.
fn shoal_json(input: &Value) -> Vec<u8> {
    let s = |k: &str| input[k].as_str().unwrap().to_string();
    let sender = Sender {
        pid: s("pid"),
        iid: s("iid"),
        host_name: s("hostName"),
    };
    let event = s("event");
    if event == "hello" {
        // Through the typed hello, as shoal sends it.
        let raw = RawValue::from_string(input["data"].to_string()).unwrap();
        let hello = envelope::decode_hello(&raw).unwrap();
        envelope::encode(&event, &hello, &sender).unwrap()
    } else {
        envelope::encode(&event, &input["data"], &sender).unwrap()
    }
}

/// Shoal's full send path: payload (encrypted when a key), cut into blocks.
fn shoal_encode(json: &[u8], key: Option<&str>, id: [u8; 16]) -> Vec<Vec<u8>> {
    let payload = match key {
        Some(k) => LegacyCipher::new(k.as_bytes()).encrypt(json),
        None => json.to_vec(),
    };
    let mut blocks = Vec::new();
    framing::encode(&payload, id, |b| blocks.push(b));
    blocks
}

#[test]
fn vectors_are_from_node_discovery() {
    let file = load();
    assert_eq!(file.package, "node-discovery@0.2.1-1");
    let names: Vec<&str> = file.vectors.iter().map(|v| v.name.as_str()).collect();
    for needed in [
        "hello_plain",
        "hello_encrypted",
        "channel_plain",
        "channel_encrypted",
        "multi_block_plain_4000",
        "multi_block_encrypted_4000",
        "off_by_one_plain_1464",
        "off_by_one_plain_2928",
        "off_by_one_encrypted_2928",
    ] {
        assert!(names.contains(&needed), "missing vector {needed}");
    }
}

#[test]
fn node_cipher_vector() {
    let file = load();
    let c = LegacyCipher::new(file.cipher.key.as_bytes());
    let expected = hex::decode(&file.cipher.cipher_hex).unwrap();
    assert_eq!(c.encrypt(file.cipher.plain.as_bytes()), expected);
    assert_eq!(c.decrypt(&expected).unwrap(), file.cipher.plain.as_bytes());
}

/// (a) Shoal decodes what node-discovery sends, in any block order.
#[test]
fn shoal_decodes_node_vectors() {
    let file = load();
    for v in &file.vectors {
        let blocks = v.blocks();
        let key = v.key.as_deref();
        for order in ["forward", "reverse"] {
            let mut dgs = blocks.clone();
            if order == "reverse" {
                dgs.reverse();
            }
            let (got, mut r) = shoal_decode(&dgs, key);
            if v.node_delivers {
                assert_eq!(got, vec![v.input.clone()], "{} ({order})", v.name);
                assert_eq!(r.pending(), (0, 0), "{}", v.name);
            } else {
                // Node's off-by-one: the last 1464 bytes were never sent.
                assert!(got.is_empty(), "{} delivered a truncated message", v.name);
                let held = v.payload_len - BLOCK_DATA;
                assert_eq!(r.pending(), (usize::from(held > 0), held), "{}", v.name);
                assert_eq!(
                    r.expire(Instant::now() + Duration::from_secs(60)),
                    usize::from(held > 0)
                );
                assert_eq!(r.pending(), (0, 0));
            }
        }
        // All of them back to back in one buffer, as Node's receiver allows.
        let (got, _) = shoal_decode(&[blocks.concat()], key);
        assert_eq!(got.len(), usize::from(v.node_delivers), "{}", v.name);
    }
}

/// Node's encoder never delivers a payload that is a multiple of 1464 bytes.
#[test]
fn node_off_by_one_vectors_have_an_empty_last_block() {
    let file = load();
    let mut seen = 0;
    for v in file
        .vectors
        .iter()
        .filter(|v| v.payload_len % BLOCK_DATA == 0)
    {
        seen += 1;
        assert!(!v.node_delivers, "{}", v.name);
        let blocks = v.blocks();
        assert_eq!(blocks.len(), v.payload_len / BLOCK_DATA, "{}", v.name);
        let (last, _, _) = framing::parse_block(blocks.last().unwrap()).unwrap();
        assert_eq!(last.block_len as usize, HEADER_LEN);
        assert_eq!(last.total_len as usize, v.payload_len);
    }
    assert!(seen >= 2);
    for v in file
        .vectors
        .iter()
        .filter(|v| v.payload_len % BLOCK_DATA != 0)
    {
        assert!(v.node_delivers, "{}", v.name);
    }
}

/// Shoal's encoder writes the very bytes node-discovery writes (the block id
/// aside, which is random), except for Node's empty trailing block.
#[test]
fn shoal_reproduces_node_bytes() {
    let file = load();
    for v in &file.vectors {
        let json = shoal_json(&v.input);
        assert_eq!(
            String::from_utf8(json.clone()).unwrap(),
            v.json,
            "{}",
            v.name
        );

        let node = v.blocks();
        let mut id = [0u8; 16];
        id.copy_from_slice(&node[0][4..20]);
        let ours = shoal_encode(&json, v.key.as_deref(), id);
        if v.node_delivers {
            assert_eq!(ours, node, "{}", v.name);
        } else {
            // Same blocks up to the last, which shoal fills in.
            assert_eq!(ours.len(), node.len(), "{}", v.name);
            let n = node.len() - 1;
            assert_eq!(ours[..n], node[..n], "{}", v.name);
            assert_eq!(ours[n][..28], node[n][..28], "{}", v.name);
            assert_eq!(ours[n].len(), HEADER_LEN + BLOCK_DATA);
            // ... and shoal decodes its own version.
            let (got, _) = shoal_decode(&ours, v.key.as_deref());
            assert_eq!(got, vec![v.input.clone()], "{}", v.name);
        }
    }
}

/// A node-discovery send object whose JSON is exactly `len` bytes; for sizes
/// too small for an envelope, a bare JSON number or string (Node's
/// JSONDecodeStream passes any JSON value through).
fn sized_json(len: usize) -> (Value, Vec<u8>) {
    let base = |fill: usize| {
        json!({
            "data": {"fill": "x".repeat(fill)},
            "event": "bulk",
            "pid": "00112233445566778899aabbccddeeff",
            "iid": "ffeeddccbbaa99887766554433221100",
            "hostName": "shoal-host",
        })
    };
    let empty = shoal_json(&base(0)).len();
    if len < empty {
        let v = if len == 1 {
            json!(7)
        } else {
            json!("x".repeat(len - 2))
        };
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(bytes.len(), len);
        return (v, bytes);
    }
    let v = base(len - empty);
    let bytes = shoal_json(&v);
    assert_eq!(bytes.len(), len);
    (v, bytes)
}

/// Runs `tests/node/decode.js`; returns the JSON lines it printed, or `None`
/// when node-discovery is not installed (and that is allowed).
fn node_decode(requests: &[(Option<&str>, Vec<Vec<u8>>)]) -> Option<Vec<Value>> {
    let dir = manifest_dir().join("tests/node");
    if !node_install::ensure_node_modules() {
        if std::env::var_os("SHOAL_REQUIRE_NODE").is_some() {
            panic!(
                "SHOAL_REQUIRE_NODE is set but {} is missing",
                dir.join("node_modules").display()
            );
        }
        println!("skipping Node interop: tests/node/node_modules is absent");
        return None;
    }
    let mut input = String::new();
    for (key, blocks) in requests {
        let hex: Vec<String> = blocks.iter().map(hex::encode).collect();
        input.push_str(&json!({"key": key, "blocks": hex}).to_string());
        input.push('\n');
    }
    let mut child = Command::new("node")
        .args(["-r", "./shim.js", "decode.js"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node (needed because tests/node/node_modules exists)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).map(|_| s)
    });
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .collect::<Result<_, _>>()
        .unwrap();
    writer.join().unwrap().unwrap();
    let status = child.wait().unwrap();
    let err = err_reader.join().unwrap().unwrap();
    assert!(status.success(), "decode.js failed: {status}\n{err}");
    Some(
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{err}")))
            .collect(),
    )
}

/// (b) node-discovery decodes what shoal sends.
#[test]
fn node_decodes_shoal_encoding() {
    const KEY: &str = "shoal-test-key";
    let file = load();
    let mut expected = Vec::new();
    let mut requests = Vec::new();
    let mut next_id = 0u8;
    let mut add = |value: Value, json: &[u8], key: Option<&'static str>| {
        next_id += 1;
        let blocks = shoal_encode(json, key, [next_id; 16]);
        // Our own decoder agrees before Node is asked.
        if value.is_object() {
            assert_eq!(shoal_decode(&blocks, key).0, vec![value.clone()]);
        }
        expected.push(value);
        requests.push((key, blocks));
    };

    // Every vector object, both plain and encrypted, off-by-one sizes included.
    for v in &file.vectors {
        let json = shoal_json(&v.input);
        add(v.input.clone(), &json, None);
        add(v.input.clone(), &json, Some(KEY));
    }
    // Framed payload sizes around the block size, plain.
    for len in [1, 1463, 1464, 1465, 2928, 2929, 4392, 10_000] {
        let (value, json) = sized_json(len);
        let blocks = shoal_encode(&json, None, [0; 16]);
        assert_eq!(blocks.len(), len.div_ceil(BLOCK_DATA));
        add(value, &json, None);
    }
    // Encrypted: ciphertexts of 1456, 1472 and 2928 (= 2 * 1464) bytes.
    for plain_len in [1455, 1470, 2920] {
        let (value, json) = sized_json(plain_len);
        add(value, &json, Some(KEY));
    }

    let Some(got) = node_decode(&requests) else {
        return;
    };
    assert_eq!(got.len(), expected.len(), "Node decoded {got:#?}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "message {i}");
    }
}

/// Node drops what shoal's decoder also drops: a wrong key, or a corrupt block.
#[test]
fn node_and_shoal_agree_on_corruption() {
    let (value, json) = sized_json(3000);
    let mut corrupt = shoal_encode(&json, None, [1; 16]);
    corrupt[1][HEADER_LEN + 5] ^= 0x20;
    let good = shoal_encode(&json, None, [2; 16]);

    let mut r = Reassembler::new(ReassemblyLimits::default());
    let mut errors = Vec::new();
    for b in &corrupt {
        let (h, data, _) = framing::parse_block(b).unwrap();
        if let Err(e) = r.push(Instant::now(), from(), &h, data) {
            errors.push(e);
        }
    }
    assert_eq!(errors, vec![shoal::wire::DecodeError::Checksum]);

    let Some(got) = node_decode(&[(None, corrupt), (None, good)]) else {
        return;
    };
    assert_eq!(got, vec![value]);
}
