#!/usr/bin/env python3
"""A hostile host on shoal's namespace test LAN (tests/hostile_lan.rs).

It holds no key. For a bounded time (at most 20 s) and a bounded number of
datagrams it sends, to the broadcast address and to each node:

  garbage       random bytes of random length
  truncated     cut-off WRAP headers and blocks, captured packets cut short
  oversized     datagrams of 60-65 KB (random, WRAP- and SHOL-prefixed)
  forged-hello  a valid node-discovery hello (WRAP + JSON) claiming
                mastership with weight 1e308, as node "evil"
  forged-chat   a valid node-discovery message on channel "chat"
  replay        every packet it sniffs from the nodes, sent again at once
                and again a few seconds later
  sealed-junk   SHOL-looking packets: random key ids, the nodes' real key id
                with bad tags, huge fragment counts, bad versions
  huge-wrap     WRAP headers declaring 4 GiB payloads, and 1 MiB ones, with
                thousands of distinct message ids

then prints one JSON line with what it sent and captured, and exits.

Safety: it refuses to run anywhere but inside a network namespace made by the
test harness (named shoal-*, with only lo and eth0), or against any address
outside the test LAN 10.250.0.0/24. Run it only through the test.
Python 3 standard library only.
"""

import argparse
import binascii
import json
import os
import random
import socket
import struct
import sys
import time

LAN_PREFIX = "10.250.0."
MAX_SECONDS = 20.0
MAX_PACKETS = 100_000


def refuse(message):
    print(json.dumps({"event": "refused", "message": message}), flush=True)
    sys.exit(2)


def check_sandbox(targets, broadcast):
    """Refuses unless this process is in one of the test harness's named
    network namespaces (shoal-<pid>-<k>-h<i>, see tests/support/netns.rs),
    whose only links are lo and eth0, and every address is the test LAN's."""
    try:
        mine = os.stat("/proc/self/ns/net")
        names = os.listdir("/run/netns")
    except OSError as e:
        refuse(f"cannot identify the network namespace: {e}")
    ours = None
    for name in names:
        if not name.startswith("shoal-"):
            continue
        try:
            st = os.stat(os.path.join("/run/netns", name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            ours = name
    if ours is None:
        refuse("not inside a shoal test network namespace")
    links = sorted(name for _, name in socket.if_nameindex())
    if links != ["eth0", "lo"]:
        refuse(f"unexpected links {links} in {ours}")
    for addr in targets:
        if not addr.startswith(LAN_PREFIX):
            refuse(f"target {addr} is not on the test LAN")
    if broadcast not in ("255.255.255.255", LAN_PREFIX + "255"):
        refuse(f"broadcast {broadcast} is not the test LAN's")
    return ours


def wrap_blocks(payload, msg_id=None):
    """node-discovery's WRAP framing of payload (blocks of <= 1500 bytes)."""
    msg_id = msg_id or os.urandom(16)
    crc = binascii.crc32(payload) & 0xFFFFFFFF
    blocks = []
    chunk = 1464
    for off in range(0, max(len(payload), 1), chunk):
        data = payload[off:off + chunk]
        header = b"WRAP" + msg_id + struct.pack(">IIII", crc, len(payload), 36 + len(data), off)
        blocks.append(header + data)
    return blocks


def wrap_header(msg_id, crc, total, block_len, offset):
    return b"WRAP" + msg_id + struct.pack(">IIII", crc, total, block_len, offset)


def envelope(event, data, iid, pid):
    return json.dumps(
        {"data": data, "event": event, "pid": pid, "iid": iid, "hostName": "evil-host"},
        separators=(",", ":"),
    ).encode()


def sealed_header(index, count, key_id, sender, counter, timestamp_ms, version=1, alg=1):
    return (b"SHOL" + bytes([version, alg]) + struct.pack(">HH", index, count)
            + key_id + sender + struct.pack(">QQ", counter, timestamp_ms))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--broadcast", default="255.255.255.255")
    ap.add_argument("--target", action="append", default=[], help="a node's address")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-packets", type=int, default=40_000)
    ap.add_argument("--late-replay", type=float, default=4.0,
                    help="replay everything captured again this many seconds in")
    ap.add_argument("--rate", type=float, default=3000.0, help="datagrams per second, at most")
    args = ap.parse_args()
    namespace = check_sandbox(args.target, args.broadcast)
    seconds = min(args.seconds, MAX_SECONDS)
    max_packets = min(args.max_packets, MAX_PACKETS)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind(("", args.port))
    sock.setblocking(False)

    destinations = [(args.broadcast, args.port)] + [(t, args.port) for t in args.target]
    sent = {}
    errors = 0
    total = 0
    captured = []          # (source ip, bytes) from the nodes
    replayed_late = False
    key_ids = set()        # key ids seen in captured sealed packets
    rng = random.Random(0x5EED)
    ids_sent = [0]
    evil_iid = "e7" * 16
    evil_pid = "d6" * 16
    start = time.monotonic()
    deadline = start + seconds

    def send(kind, datagram, to=None):
        nonlocal total, errors
        for dest in ([to] if to else destinations):
            if total >= max_packets:
                return
            try:
                sock.sendto(datagram, dest)
                total += 1
                sent[kind] = sent.get(kind, 0) + 1
            except OSError:
                errors += 1

    def sniff():
        while len(captured) < 400:
            try:
                data, (src, _) = sock.recvfrom(70_000)
            except (BlockingIOError, InterruptedError):
                return
            if src not in args.target:
                continue  # our own broadcasts come back
            captured.append(data)
            if data[:4] == b"SHOL" and len(data) >= 14:
                key_ids.add(data[10:14])
            send("replay", data)  # at once

    def real_key_id():
        return rng.choice(sorted(key_ids)) if key_ids else os.urandom(4)

    forged_hello = wrap_blocks(envelope(
        "hello",
        {"isMaster": True, "isMasterEligible": True, "weight": 1e308,
         "address": "127.0.0.1", "info": {"id": "evil"}, "interval": 200},
        evil_iid, evil_pid))
    round_no = 0
    budget_start = time.monotonic()
    while time.monotonic() < deadline and total < max_packets:
        round_no += 1
        sniff()
        now_ms = int(time.time() * 1000)
        # garbage
        for _ in range(4):
            send("garbage", os.urandom(rng.randrange(0, 1500)))
        # truncated
        send("truncated", b"WRAP" + os.urandom(rng.randrange(0, 32)))
        send("truncated", wrap_header(os.urandom(16), 0, 100, 136, 0) + os.urandom(50))
        if captured:
            c = rng.choice(captured)
            send("truncated", c[:rng.randrange(0, len(c))])
        send("truncated", b"SHOL" + os.urandom(rng.randrange(0, 58)))
        # forged plaintext hello and chat message (valid node-discovery)
        for block in forged_hello:
            send("forged-hello", block)
        for block in wrap_blocks(envelope("chat", {"from": "evil", "seq": 666}, evil_iid, evil_pid)):
            send("forged-chat", block)
        # sealed-looking junk
        body = os.urandom(rng.randrange(16, 400))
        send("sealed-junk", sealed_header(0, 1, os.urandom(4), os.urandom(16), rng.getrandbits(63),
                                          now_ms) + body)
        send("sealed-junk", sealed_header(0, 1, real_key_id(), os.urandom(16),
                                          rng.getrandbits(63), now_ms) + body)
        send("sealed-junk", sealed_header(rng.randrange(0, 65535), 65535, real_key_id(),
                                          os.urandom(16), rng.getrandbits(63), now_ms) + body)
        send("sealed-junk", sealed_header(0, 0, real_key_id(), os.urandom(16), 1, now_ms) + body)
        send("sealed-junk", sealed_header(0, 1, real_key_id(), os.urandom(16), 1, now_ms,
                                          version=rng.choice([0, 2, 255])) + body)
        if captured:
            # A real packet with its tag or a header bit flipped.
            c = bytearray(rng.choice(captured))
            c[rng.randrange(14, len(c))] ^= 1 << rng.randrange(8)
            send("sealed-junk", bytes(c))
        # huge declared WRAP messages, many distinct ids (broadcast only, so
        # the budget buys more ids)
        for _ in range(16):
            msg_id = os.urandom(16)
            send("huge-wrap", wrap_header(msg_id, 0, 0xFFFFFFFF, 36 + 64, 0) + os.urandom(64),
                 to=destinations[0])
            send("huge-wrap", wrap_header(msg_id, 0, 1 << 20, 36 + 1024,
                                          rng.randrange(0, 1 << 20) & ~1023) + os.urandom(1024),
                 to=destinations[0])
            ids_sent[0] += 1
        # oversized datagrams, now and then
        if round_no % 4 == 0:
            prefix = rng.choice([b"", b"WRAP", b"SHOL\x01\x01"])
            send("oversized", prefix + os.urandom(rng.randrange(60_000, 65_000)))
        # the late replay
        if not replayed_late and time.monotonic() - start >= args.late_replay:
            replayed_late = True
            for c in list(captured):
                send("replay-late", c)
        # pace
        ahead = total / args.rate - (time.monotonic() - budget_start)
        if ahead > 0:
            time.sleep(min(ahead, 0.05))
    sniff()
    print(json.dumps({
        "event": "done",
        "namespace": namespace,
        "seconds": round(time.monotonic() - start, 3),
        "total": total,
        "errors": errors,
        "sent": sent,
        "captured": len(captured),
        "captured_sealed": sum(1 for c in captured if c[:4] == b"SHOL"),
        "key_ids": sorted(k.hex() for k in key_ids),
        "rounds": round_no,
        "wrap_ids": ids_sent[0],
    }), flush=True)


if __name__ == "__main__":
    main()
