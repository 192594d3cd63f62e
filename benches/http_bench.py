#!/usr/bin/env python3
"""The HTTP sidecar under load: `GET /registrations/{name}` against a
`shoal serve` holding 10,000 registrations, beside a minimal axum handler
(benches/axum_floor.rs) on the same machine in the same run.

    python3 benches/http_bench.py [--rounds 3] [--duration 10] [--connections 32] [--out DIR]

It needs `wrk` (Debian's package) and builds both servers in release. It
runs on loopback only: the sidecar is started with `--loopback` (its hellos
go to 127.255.255.255) and every server binds 127.0.0.1.

Steps: start the sidecar and read its resident memory at rest; POST 10,000
registrations (1,000 names, 10 hosts each) over one keep-alive connection,
timing it; read its memory again; then alternate wrk runs against the
sidecar's `GET /registrations/svc-0500` (10 registrations, about 2.7 KB of
JSON) and the floor's `GET /registrations/svc-0500`, `--rounds` times each,
and report requests per second and p99 latency (medians over the rounds)
and the ratio of the two. Raw wrk outputs and a JSON summary go to --out.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UDP_PORT = 47895
SIDECAR = ("127.0.0.1", 47896)
FLOOR = ("127.0.0.1", 47897)
NAMES = 1000
PER_NAME = 10


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def start(cmd, addr):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    event = json.loads(line)
    if event.get("event") != "listening":
        raise RuntimeError(f"{cmd[0]}: expected a listening line, got {line!r}")
    log(f"{os.path.basename(cmd[0])} (pid {proc.pid}) listening on {event['http']}")
    return proc


def load(n):
    """POSTs n registrations over one keep-alive connection; returns seconds."""
    conn = http.client.HTTPConnection(*SIDECAR)
    body = json.dumps({"secondsToExpire": 3600})
    started = time.monotonic()
    for i in range(n):
        name, host = f"svc-{i % NAMES:04}", f"10.0.{i // NAMES}.{i % 250 + 1}"
        conn.request("POST", f"/registrations/{name}/1.0.0/{host}/8080", body,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST {name} {host}: {resp.status}")
    elapsed = time.monotonic() - started
    conn.close()
    return elapsed


def count():
    conn = http.client.HTTPConnection(*SIDECAR)
    conn.request("GET", "/registrations")
    resp = conn.getresponse()
    n = len(json.loads(resp.read()))
    conn.close()
    return n


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(addr, path, args, out, label):
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
           "--latency", f"http://{addr[0]}:{addr[1]}{path}"]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    with open(os.path.join(out, f"{label}.txt"), "w", encoding="utf-8") as f:
        f.write(" ".join(cmd) + "\n" + text)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if errors:
        raise RuntimeError(f"{label}: {errors.group(1)} non-2xx responses")
    return {"rps": rps, "p99_ms": to_ms(*p99.groups())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--registrations", type=int, default=NAMES * PER_NAME)
    p.add_argument("--out", default=os.path.join(REPO, "target", "http_bench"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    log("building shoal and axum_floor (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "shoal-cli", "-p", "shoal-benches",
                    "--bin", "shoal", "--bin", "axum_floor"], check=True, cwd=REPO)
    release = os.path.join(REPO, "target", "release")
    procs = []
    try:
        sidecar = start([os.path.join(release, "shoal"), "--loopback", "--port", str(UDP_PORT),
                         "--max-registrations", str(args.registrations),
                         "serve", "--http", f"{SIDECAR[0]}:{SIDECAR[1]}"], SIDECAR)
        procs.append(sidecar)
        time.sleep(2)
        rest = rss_kib(sidecar.pid)
        log(f"sidecar at rest: {rest} KiB")
        secs = load(args.registrations)
        held = count()
        if held != args.registrations:
            raise RuntimeError(f"the sidecar holds {held} registrations, not {args.registrations}")
        time.sleep(2)
        loaded = rss_kib(sidecar.pid)
        log(f"{held} registrations POSTed in {secs:.2f} s ({held / secs:.0f}/s); sidecar: {loaded} KiB")

        floor = start([os.path.join(release, "axum_floor"), f"{FLOOR[0]}:{FLOOR[1]}"], FLOOR)
        procs.append(floor)
        path = f"/registrations/svc-{NAMES // 2:04}"
        rounds = []
        for r in range(1, args.rounds + 1):
            s = wrk(SIDECAR, path, args, args.out, f"sidecar-{r}")
            f = wrk(FLOOR, path, args, args.out, f"floor-{r}")
            log(f"round {r}: sidecar {s['rps']:.0f} req/s p99 {s['p99_ms']:.2f} ms; "
                f"floor {f['rps']:.0f} req/s p99 {f['p99_ms']:.2f} ms")
            rounds.append({"sidecar": s, "floor": f})
        after = rss_kib(sidecar.pid)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)

    med = lambda who, k: statistics.median(r[who][k] for r in rounds)
    summary = {
        "registrations": held, "load_seconds": secs,
        "rss_kib": {"rest": rest, "loaded": loaded, "after_wrk": after},
        "wrk": {"threads": args.threads, "connections": args.connections,
                "duration_s": args.duration, "path": path},
        "rounds": rounds,
        "median": {who: {"rps": med(who, "rps"), "p99_ms": med(who, "p99_ms")}
                   for who in ("sidecar", "floor")},
    }
    summary["ratio"] = summary["median"]["sidecar"]["rps"] / summary["median"]["floor"]["rps"]
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    m = summary["median"]
    print(f"| server | requests/s (median of {args.rounds}) | p99 (median) |")
    print("|---|---:|---:|")
    print(f"| sidecar, 10,000 registrations, `GET {path}` | {m['sidecar']['rps']:,.0f} | {m['sidecar']['p99_ms']:.2f} ms |")
    print(f"| minimal axum handler | {m['floor']['rps']:,.0f} | {m['floor']['p99_ms']:.2f} ms |")
    print(f"\nratio {summary['ratio']:.2f}; sidecar RSS at rest {rest / 1024:.1f} MiB, "
          f"with {held} registrations {loaded / 1024:.1f} MiB, after wrk {after / 1024:.1f} MiB; "
          f"load {held / secs:,.0f} POST/s")


if __name__ == "__main__":
    sys.exit(main())
