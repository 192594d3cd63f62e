// Decodes WRAP blocks with node-discovery's own receive path.
//
//   cd tests/node && node -r ./shim.js decode.js < lines
//
// Each stdin line is `{"key": string|null, "blocks": [hex, ...]}`. The blocks
// go through a fresh UnwrapStream -> DecryptStream (when a key) ->
// JSONDecodeStream, as node-discovery's Network wires them, and every decoded
// object is printed as one JSON line on stdout (without the `_info` property
// the receive path attaches). A line whose blocks Node does not deliver prints
// nothing. Lines are processed one after the other, so output keeps input order.
'use strict';

const readline = require('readline');
const streams = require('node-discovery/lib/streams');

function decode(blocks, key) {
  return new Promise((resolve, reject) => {
    // ignoreDataErrors as a Network built with the default option would do;
    // a short blockTimeout so an incomplete message does not stall the end.
    const unwrap = new streams.UnwrapStream({ ignoreDataErrors: true, blockTimeout: 200 });
    const chain = [unwrap];
    if (key) chain.push(new streams.DecryptStream({ key: key }));
    const json = new streams.JSONDecodeStream();
    chain.push(json);
    for (let i = 1; i < chain.length; i++) chain[i - 1].pipe(chain[i]);
    const out = [];
    json.on('data', (o) => {
      if (o !== null && typeof o === 'object') delete o._info;
      out.push(o);
    });
    json.on('end', () => resolve(out));
    chain.forEach((s) => s.on('error', reject));
    for (const hex of blocks) unwrap.write(Buffer.from(hex, 'hex'));
    unwrap.end();
  });
}

async function main() {
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (line.trim() === '') continue;
    const req = JSON.parse(line);
    const objs = await decode(req.blocks, req.key);
    for (const o of objs) process.stdout.write(JSON.stringify(o) + '\n');
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
