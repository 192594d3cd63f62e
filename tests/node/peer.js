#!/usr/bin/env node
// A scriptable node-discovery@0.2.1-1 peer for shoal's interop tests.
//
// Drives one unmodified node-discovery `Discovery` instance from command-line
// flags and prints one JSON object per line on stdout as things happen. The
// Rust example `examples/node.rs` takes the same flags and prints the same
// lines, so tests can drive either implementation the same way.
//
// Run on Node 20 with the shim preloaded (see README.md):
//
//   node -r ./shim.js peer.js --id a --weight 0.9 --join chat
//
// Every line is {"t": <ms since epoch, float>, "node": <own id>,
// "event": <name>, "peer": <other node's id or null>, ...}.
'use strict';

const fs = require('fs');
const os = require('os');
const { performance } = require('perf_hooks');

function usage(message) {
  process.stderr.write(`peer.js: ${message}\n`);
  process.stderr.write(
    'usage: peer.js [--id ID] [--port N] [--bind ADDR] [--broadcast ADDR]\n' +
      '               [--multicast ADDR] [--multicast-ttl N] [--key K | --legacy-key K]\n' +
      '               [--weight W]\n' +
      '               [--hello-interval MS] [--check-interval MS] [--node-timeout MS]\n' +
      '               [--master-timeout MS] [--advertise JSON] [--join CH]...\n' +
      '               [--send-channel CH] [--send-count N] [--send-size B]\n' +
      '               [--send-batch K] [--send-delay MS] [--exit-after MS] [--log FILE]\n'
  );
  process.exit(2);
}

// ---------------------------------------------------------------- arguments

const opts = {
  id: `${os.hostname()}-${process.pid}`,
  port: null,
  bind: null,
  broadcast: null,
  multicast: null,
  multicastTtl: null,
  key: null,
  weight: null,
  helloInterval: null,
  checkInterval: null,
  nodeTimeout: null,
  masterTimeout: null,
  advertise: {},
  join: [],
  sendChannel: null,
  sendCount: 1,
  sendSize: null,
  sendBatch: 0,
  sendDelay: 0,
  exitAfter: 0,
  log: null,
};

function num(name, value, { integer = false, min = -Infinity } = {}) {
  const n = Number(value);
  if (value === '' || !Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min)
    usage(`invalid value for --${name}: ${JSON.stringify(value)}`);
  return n;
}

const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i];
  if (!flag.startsWith('--')) usage(`unexpected argument ${JSON.stringify(flag)}`);
  const name = flag.slice(2);
  const known = [
    'id', 'port', 'bind', 'broadcast', 'multicast', 'multicast-ttl', 'key', 'legacy-key', 'weight',
    'hello-interval', 'check-interval', 'node-timeout', 'master-timeout', 'advertise',
    'join', 'send-channel', 'send-count', 'send-size', 'send-batch', 'send-delay', 'exit-after',
    'log', 'multicast-interface', 'encryption',
  ];
  if (!known.includes(name)) usage(`unknown option ${flag}`);
  if (i + 1 >= argv.length) usage(`option ${flag} needs a value`);
  const value = argv[++i];
  switch (name) {
    case 'id': opts.id = value; break;
    case 'port': opts.port = num(name, value, { integer: true, min: 0 }); break;
    case 'bind': opts.bind = value; break;
    case 'broadcast': opts.broadcast = value; break;
    case 'multicast': opts.multicast = value; break;
    case 'multicast-ttl': opts.multicastTtl = num(name, value, { integer: true, min: 0 }); break;
    case 'key': opts.key = value; break;
    // The shoal node example's name for node-discovery's key.
    case 'legacy-key': opts.key = value; break;
    case 'weight': opts.weight = num(name, value); break;
    case 'hello-interval': opts.helloInterval = num(name, value, { min: 1 }); break;
    case 'check-interval': opts.checkInterval = num(name, value, { min: 1 }); break;
    case 'node-timeout': opts.nodeTimeout = num(name, value, { min: 0 }); break;
    case 'master-timeout': opts.masterTimeout = num(name, value, { min: 0 }); break;
    case 'advertise': {
      let parsed;
      try {
        parsed = JSON.parse(value);
      } catch (e) {
        usage(`--advertise is not JSON: ${e.message}`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
        usage('--advertise must be a JSON object');
      opts.advertise = parsed;
      break;
    }
    case 'join': opts.join.push(value); break;
    case 'send-channel': opts.sendChannel = value; break;
    case 'send-count': opts.sendCount = num(name, value, { integer: true, min: 0 }); break;
    case 'send-size': opts.sendSize = num(name, value, { integer: true, min: 0 }); break;
    case 'send-batch': opts.sendBatch = num(name, value, { integer: true, min: 0 }); break;
    case 'send-delay': opts.sendDelay = num(name, value, { min: 0 }); break;
    case 'exit-after': opts.exitAfter = num(name, value, { min: 0 }); break;
    case 'log': opts.log = value; break;
    case 'encryption':
      // examples/node.rs chooses shoal's mode with it; node-discovery only
      // has its own (legacy) cipher, so that is the one value accepted.
      if (value !== 'legacy') usage('node-discovery supports only --encryption legacy');
      break;
    case 'multicast-interface':
      // examples/node.rs has it; node-discovery always joins and sends on the
      // kernel's default interface and has no option for it.
      usage('--multicast-interface is not supported by node-discovery');
  }
}

// ------------------------------------------------------------------- output

function now() {
  return performance.timeOrigin + performance.now();
}

let logFd = null;
if (opts.log !== null) {
  try {
    logFd = fs.openSync(opts.log, 'a');
  } catch (e) {
    usage(`cannot open --log ${opts.log}: ${e.message}`);
  }
}

function emit(event, peer, fields) {
  const line = Object.assign({ t: now(), node: opts.id, event, peer: peer === undefined ? null : peer }, fields);
  const text = JSON.stringify(line) + '\n';
  // One write per line keeps lines whole. Writes to pipes and files are
  // synchronous on Linux, so each line is out as soon as it happens.
  if (logFd !== null) fs.writeSync(logFd, text);
  else process.stdout.write(text);
}

function peerId(node) {
  return node && node.info && node.info.id !== undefined ? node.info.id : null;
}

function peerAddr(node) {
  return node && node.address ? `${node.address}:${node.port}` : null;
}

let exiting = false;
function exit(code) {
  if (exiting) return;
  exiting = true;
  try {
    if (discovery) {
      discovery.stop();
      discovery.broadcast.close();
    }
  } catch (e) {
    // closing is best-effort; we are leaving anyway
  }
  emit('exit', null, { code });
  // Let the pipe drain the final line, then go.
  process.stdout.write('', () => process.exit(code));
  setTimeout(() => process.exit(code), 500).unref();
}

// ---------------------------------------------------------------- discovery

const Discovery = require('node-discovery').Discovery;

const settings = {};
if (opts.port !== null) settings.port = opts.port;
if (opts.bind !== null) settings.address = opts.bind;
if (opts.broadcast !== null) settings.broadcast = opts.broadcast;
if (opts.multicast !== null) settings.multicast = opts.multicast;
if (opts.multicastTtl !== null) settings.multicastTTL = opts.multicastTtl;
if (opts.key !== null) settings.key = opts.key;
// node-discovery replaces a falsy weight (0) with Math.random().
if (opts.weight !== null) settings.weight = opts.weight;
if (opts.helloInterval !== null) settings.helloInterval = opts.helloInterval;
if (opts.checkInterval !== null) settings.checkInterval = opts.checkInterval;
if (opts.nodeTimeout !== null) settings.nodeTimeout = opts.nodeTimeout;
if (opts.masterTimeout !== null) settings.masterTimeout = opts.masterTimeout;

emit('start', null, {
  impl: 'node-discovery',
  pid: process.pid,
  port: settings.port !== undefined ? settings.port : 12345,
});

let discovery = null;
try {
  // The constructor binds the socket and starts the hello/check timers.
  discovery = new Discovery(settings);
} catch (e) {
  // Only settings validation throws here (e.g. nodeTimeout < checkInterval);
  // socket errors come later as 'error' events.
  emit('error', null, { message: e.message });
  exit(2);
}

if (discovery) {
  discovery.advertise(Object.assign({}, opts.advertise, { id: opts.id }));

  // EventEmitter2 throws on an unhandled 'error'; report it instead. A socket
  // error (e.g. EADDRINUSE from bind) is fatal, a stream data error is not.
  discovery.broadcast.on('error', (err) => {
    emit('error', null, { message: err && err.message ? err.message : String(err) });
    if (err && err.syscall) exit(1);
  });

  discovery.broadcast.on('listening', () => {
    emit('ready', null, { weight: discovery.me.weight });
    if (opts.sendChannel !== null) setTimeout(sendAll, opts.sendDelay);
  });

  discovery.on('added', (node) => emit('added', peerId(node), { peer_addr: peerAddr(node) }));
  discovery.on('removed', (node) => emit('removed', peerId(node), { peer_addr: peerAddr(node) }));
  discovery.on('master', (node) => emit('master', peerId(node), { peer_addr: peerAddr(node) }));
  discovery.on('promotion', () => emit('promotion', null, {}));
  discovery.on('demotion', () => emit('demotion', null, {}));

  for (const channel of opts.join) {
    try {
      discovery.join(channel, (data) => {
        const from = data && data.from !== undefined ? data.from : null;
        const seq = data && data.seq !== undefined ? data.seq : null;
        emit('msg', from, { channel, seq, bytes: JSON.stringify(data).length });
      });
    } catch (e) {
      // A reserved channel name ('hello', 'added', ...).
      emit('error', null, { message: e.message });
      exit(2);
    }
  }
}

function message(seq) {
  const data = { from: opts.id, seq };
  if (opts.sendSize === null) return data;
  data.pad = '';
  const base = JSON.stringify(data).length;
  // Pad with ASCII so string length == byte length.
  if (opts.sendSize > base) data.pad = 'x'.repeat(opts.sendSize - base);
  return data;
}

function sendAll() {
  if (exiting) return;
  const bytes = JSON.stringify(message(0)).length;
  emit('send_start', null, { channel: opts.sendChannel, count: opts.sendCount, bytes });
  const started = now();
  let seq = 0;
  // node-discovery's send is synchronous (JSON, wrap, socket.send); with
  // --send-batch K, yield to the event loop after every K messages.
  const batch = () => {
    try {
      const end = opts.sendBatch > 0 ? Math.min(seq + opts.sendBatch, opts.sendCount) : opts.sendCount;
      for (; seq < end; seq++) discovery.send(opts.sendChannel, message(seq));
    } catch (e) {
      emit('error', null, { message: e.message });
      exit(1);
      return;
    }
    if (seq < opts.sendCount) setImmediate(batch);
    else emit('send_done', null, { channel: opts.sendChannel, count: opts.sendCount, ms: now() - started });
  };
  batch();
}

// node-discovery throws from inside its stream pipeline on some bad input
// (e.g. a keyed peer receiving a datagram that does not decrypt), which would
// otherwise kill Node with a stack trace. The pipeline is wedged afterwards,
// so report it as an error and exit 1 rather than limp on deaf.
process.on('uncaughtException', (e) => {
  emit('error', null, { message: e && e.message ? e.message : String(e), fatal: true });
  exit(1);
});
process.on('SIGTERM', () => exit(0));
process.on('SIGINT', () => exit(0));
if (opts.exitAfter > 0) setTimeout(() => exit(0), opts.exitAfter);
