// Produces shoal's wire vectors with node-discovery's own stream classes.
//
//   cd tests/node && node -r ./shim.js gen_vectors.js
//
// Writes ../vectors/node_discovery.json. Every vector is encoded exactly as
// node-discovery's Network does it (JSONEncodeStream -> EncryptStream when a
// key is set -> WrapStream), and then fed back through node-discovery's own
// receive path (UnwrapStream -> DecryptStream -> JSONDecodeStream) to record
// whether Node itself delivers it (`node_delivers`).
//
// The block ids are random (crypto.randomBytes in WrapStream), so regenerating
// changes the file; the decoded content does not change.
'use strict';

const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const streams = require('node-discovery/lib/streams');

const KEY = 'shoal-test-key';
const PID = '0123456789abcdef0123456789abcdef';
const IID = 'fedcba9876543210fedcba9876543210';
const HOST = 'node-host';

function envelope(event, data) {
  // Same construction and key order as node-discovery's Network.prototype.send.
  return { data: data, event: event, pid: PID, iid: IID, hostName: HOST };
}

// Runs the send pipeline; resolves with the list of blocks (Buffers) and the
// payload handed to WrapStream (the JSON, or its ciphertext).
function encode(obj, key) {
  return new Promise((resolve, reject) => {
    const json = new streams.JSONEncodeStream();
    const chain = [json];
    if (key) chain.push(new streams.EncryptStream({ key: key }));
    const wrap = new streams.WrapStream();
    chain.push(wrap);
    for (let i = 1; i < chain.length; i++) chain[i - 1].pipe(chain[i]);
    const payloads = [];
    chain[chain.length - 2].on('data', (b) => payloads.push(Buffer.from(b)));
    const blocks = [];
    wrap.on('data', (b) => blocks.push(Buffer.from(b)));
    wrap.on('end', () => resolve({ blocks: blocks, payload: Buffer.concat(payloads) }));
    chain.forEach((s) => s.on('error', reject));
    json.end(obj);
  });
}

// Runs the receive pipeline over blocks; resolves with the decoded objects.
function decode(blocks, key) {
  return new Promise((resolve, reject) => {
    const unwrap = new streams.UnwrapStream({ ignoreDataErrors: true, blockTimeout: 200 });
    const chain = [unwrap];
    if (key) chain.push(new streams.DecryptStream({ key: key }));
    const json = new streams.JSONDecodeStream();
    chain.push(json);
    for (let i = 1; i < chain.length; i++) chain[i - 1].pipe(chain[i]);
    const out = [];
    json.on('data', (o) => {
      delete o._info;
      out.push(o);
    });
    json.on('end', () => resolve(out));
    chain.forEach((s) => s.on('error', reject));
    for (const b of blocks) unwrap.write(b);
    unwrap.end();
  });
}

// A channel message whose JSON (and, with a key, whose ciphertext) is
// exactly `target` bytes long. The filler is ASCII so one char = one byte.
async function sized(target, key) {
  for (let fill = 0; fill <= target; fill++) {
    const obj = envelope('bulk', { fill: 'x'.repeat(fill) });
    const len = key
      ? (await encode(obj, key)).payload.length
      : Buffer.byteLength(JSON.stringify(obj));
    if (len === target) return obj;
    if (len > target) break;
  }
  throw new Error('cannot reach payload size ' + target);
}

async function main() {
  const hello = {
    isMaster: false,
    isMasterEligible: true,
    weight: 0.7390851332151607,
    address: '127.0.0.1',
  };
  // Object keys in `data` are sorted so that a serde_json::Value (a BTreeMap)
  // re-encodes them in the same order and shoal's JSON can be compared byte
  // for byte with Node's.
  const helloInfo = Object.assign({}, hello, {
    isMaster: true,
    info: { port: 8080, service: 'api', tags: ['a', 'b'] },
  });
  // The string exercises escapes, a control char, non-ASCII and an astral char.
  const channel = {
    list: [1, -2.5, true, null, 'x'],
    n: 42,
    nested: { a: null, b: {} },
    text: 'h\u00e9llo "quoted" \\ back/slash \t tab \n nl \u0001 ctl \u2713 \ud83d\ude80',
  };

  const specs = [
    { name: 'hello_plain', obj: envelope('hello', hello), key: null },
    { name: 'hello_encrypted', obj: envelope('hello', helloInfo), key: KEY },
    { name: 'channel_plain', obj: envelope('news', channel), key: null },
    { name: 'channel_encrypted', obj: envelope('news', channel), key: KEY },
    { name: 'multi_block_plain_4000', obj: await sized(4000, null), key: null },
    { name: 'multi_block_encrypted_4000', obj: await sized(4000, KEY), key: KEY },
    // Payloads that are an exact multiple of 1464 bytes: WrapStream computes
    // the last block's length as `len % 1464`, i.e. 0, so the final block is a
    // bare 36-byte header and the last 1464 bytes are never sent. Node's own
    // receiver then never completes the message.
    { name: 'off_by_one_plain_1464', obj: await sized(1464, null), key: null },
    { name: 'off_by_one_plain_2928', obj: await sized(2928, null), key: null },
    { name: 'off_by_one_encrypted_2928', obj: await sized(2928, KEY), key: KEY },
  ];

  const vectors = [];
  for (const s of specs) {
    const { blocks, payload } = await encode(s.obj, s.key);
    const decoded = await decode(blocks, s.key);
    vectors.push({
      name: s.name,
      input: s.obj,
      json: JSON.stringify(s.obj),
      key: s.key,
      payload_len: payload.length,
      node_delivers: decoded.length === 1 && JSON.stringify(decoded[0]) === JSON.stringify(s.obj),
      blocks: blocks.map((b) => b.toString('hex')),
    });
  }

  // A fixed cipher vector: crypto.createCipher('aes256', KEY) over a fixed text.
  const plain = 'node-discovery legacy cipher vector';
  const c = crypto.createCipher('aes256', KEY);
  const cipher = Buffer.concat([c.update(Buffer.from(plain)), c.final()]);

  const out = {
    generator: 'tests/node/gen_vectors.js',
    node: process.version,
    package: 'node-discovery@' + require('node-discovery/package.json').version,
    cipher: { key: KEY, plain: plain, cipher_hex: cipher.toString('hex') },
    vectors: vectors,
  };
  const file = path.join(__dirname, '..', 'vectors', 'node_discovery.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(out, null, 1) + '\n');
  for (const v of vectors)
    console.error(
      `${v.name}: payload ${v.payload_len} bytes, ${v.blocks.length} blocks ` +
        `(${v.blocks.map((b) => b.length / 2).join(',')}), node_delivers=${v.node_delivers}`
    );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
