#!/usr/bin/env python3
"""Helper of benches/registry_lan.sh (Python 3 standard library only; the
log readers, waits and /proc readers come from lan_bench.py).

Subcommands:

  wait-all DIR EVENT KEY=VALUE LABEL...
                          until every LABEL's log has an EVENT line whose
                          field KEY is VALUE (compared as strings)
  sample PID...           one JSON line: time, and per PID what
                          `lan_bench.py stat` gives plus the counters of
                          eth0 in its namespace (/proc/PID/net/dev)
  report DIR              compute the results tables from DIR

Every wait takes --timeout S (default 15) and exits 1 on timeout.
"""

import json
import os
import statistics
import sys
import time

import lan_bench as lb


def has(lines, event, key, value):
    return any(e.get("event") == event and str(e.get(key)) == value for e in lines)


def first_t(lines, event, key=None, value=None):
    for e in lines:
        if e.get("event") == event and (key is None or str(e.get(key)) == value):
            return e.get("t")
    return None


def cmd_wait_all(argv):
    timeout = 15.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        timeout = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    d, event, kv, labels = argv[0], argv[1], argv[2], argv[3:]
    key, value = kv.split("=", 1)

    def cond():
        return all(has(lb.log(d, l), event, key, value) for l in labels)

    code = lb.wait_until(cond, timeout)
    if code:
        print(f"registry_lan.py: wait-all {event} {kv}: timed out after {timeout} s", file=sys.stderr)
    return code


def net_dev(pid):
    """eth0's counters in the namespace of PID: rx/tx bytes and packets."""
    try:
        with open(f"/proc/{pid}/net/dev", encoding="utf-8") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == "eth0":
                    v = [int(x) for x in rest.split()]
                    return {"rx_bytes": v[0], "rx_packets": v[1], "tx_bytes": v[8], "tx_packets": v[9]}
    except (OSError, ValueError, IndexError):
        pass
    return None


def cmd_sample(pids):
    out = {"t": time.time() * 1000.0, "pids": {}}
    for pid in pids:
        s = lb.proc_stat(pid)
        if s is not None:
            s["net"] = net_dev(pid)
        out["pids"][pid] = s
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- report


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    # nearest rank
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def f1(x):
    return "-" if x is None else f"{x:.1f}"


def latency(d):
    """Per repetition: the owner's t0 and the last observer's line, for the
    add and for the remove."""
    reps = read_json(os.path.join(d, "reps.json")) or []
    adds, removes, missing = [], [], 0
    for rep in reps:
        owner = lb.log(d, rep["owner"])
        rid = rep["id"]
        t_reg = [t for t in (first_t(owner, "registered"), first_t(owner, "reg_online", "id", rid)) if t]
        t_dereg = [t for t in (first_t(owner, "deregistered"), first_t(owner, "reg_offline", "id", rid)) if t]
        seen_on = [first_t(lb.log(d, o), "reg_online", "id", rid) for o in rep["observers"]]
        seen_off = [first_t(lb.log(d, o), "reg_offline", "id", rid) for o in rep["observers"]]
        if not t_reg or not t_dereg or None in seen_on or None in seen_off:
            missing += 1
            continue
        adds.append(max(seen_on) - min(t_reg))
        removes.append(max(seen_off) - min(t_dereg))
    return adds, removes, missing


def window(d, name):
    """Per node per second over the window: tx/rx packets and bytes, and
    the RSS at its end."""
    a = read_json(os.path.join(d, f"{name}0.json"))
    b = read_json(os.path.join(d, f"{name}1.json"))
    if not a or not b:
        return None
    secs = (b["t"] - a["t"]) / 1000.0
    rows = []
    for pid, s1 in b["pids"].items():
        s0 = a["pids"].get(pid)
        if not s0 or not s1 or not s0.get("net") or not s1.get("net"):
            continue
        n0, n1 = s0["net"], s1["net"]
        rows.append({k: (n1[k] - n0[k]) / secs for k in n1} | {"rss_kb": s1["rss_kb"]})
    if not rows:
        return None
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"nodes": len(rows), "secs": secs}


def newcomers(d):
    """Per newcomer: ready -> reg_count EXPECT (ms), and its RSS once synced."""
    out = []
    for rep in read_json(os.path.join(d, "newcomers.json")) or []:
        lines = lb.log(d, rep["label"])
        ready = first_t(lines, "ready")
        done = first_t(lines, "reg_count", "count", str(rep["expect"])) if rep["expect"] else None
        st = read_json(os.path.join(d, rep["label"] + ".stat.json"))
        rss = None
        if st:
            s = next(iter(st["pids"].values()))
            rss = s and s["rss_kb"]
        out.append({"sync_ms": None if ready is None or done is None else done - ready, "rss_kb": rss})
    return out


def cmd_report(d):
    print("## Registry on a namespace LAN\n")
    try:
        with open(os.path.join(d, "env.txt"), encoding="utf-8") as f:
            for line in f:
                print("    " + line.rstrip())
    except OSError:
        pass
    print()
    adds, removes, missing = latency(os.path.join(d, "latency"))
    print("| one registration, seen by every node | reps | median | p95 | max |")
    print("|---|---:|---:|---:|---:|")
    for what, xs in (("added", adds), ("removed", removes)):
        print(f"| {what} (ms) | {len(xs)} | {f1(statistics.median(xs) if xs else None)} | {f1(pct(xs, 95))} | {f1(max(xs) if xs else None)} |")
    if missing:
        print(f"\n{missing} repetition(s) incomplete (an observer never logged the line).")
    settings = {}
    try:
        with open(os.path.join(d, "env.txt"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("settings:"):
                    settings = dict(kv.split("=", 1) for kv in line.split()[1:])
    except OSError:
        pass
    hosts, per = int(settings.get("HOSTS", 20)), int(settings.get("PER_HOST", 500))
    full = f"{hosts * per:,} registrations ({hosts} x {per})"
    print()
    print("| LAN | nodes | window | tx pkt/s per node | tx B/s per node | rx pkt/s per node | rx B/s per node | RSS per node (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, sub in (("0 registrations", "zero"), (full, "full")):
        w = window(os.path.join(d, sub), "steady")
        if w is None:
            print(f"| {label} | - | - | - | - | - | - | - |")
            continue
        print(
            f"| {label} | {w['nodes']} | {w['secs']:.0f} s | {w['tx_packets']:.2f} | {w['tx_bytes']:.0f} | "
            f"{w['rx_packets']:.1f} | {w['rx_bytes']:.0f} | {w['rss_kb'] / 1024:.1f} MiB |"
        )
    print()
    zero, with_regs = window(os.path.join(d, "zero"), "steady"), window(os.path.join(d, "full"), "steady")
    if zero and with_regs:
        extra = (with_regs["rss_kb"] - zero["rss_kb"]) / 1024
        print(f"RSS with {full} held (and {per} own) minus RSS with none: {extra:.1f} MiB per node (medians).")
        print()
    print("| newcomer joins a LAN holding | joins | ready -> holds all (median, max) | newcomer RSS once synced (median) |")
    print("|---|---:|---:|---:|")
    newcomer_rss = []
    for label, sub in (("0 registrations", "zero"), (full, "full")):
        n = newcomers(os.path.join(d, sub))
        sync = [x["sync_ms"] for x in n if x["sync_ms"] is not None]
        rss = [x["rss_kb"] for x in n if x["rss_kb"] is not None]
        sync_s = f"{statistics.median(sync):.0f} ms, {max(sync):.0f} ms" if sync else "-"
        rss_s = f"{statistics.median(rss) / 1024:.1f} MiB" if rss else "-"
        print(f"| {label} | {len(n)} | {sync_s} | {rss_s} |")
        newcomer_rss.append(statistics.median(rss) if rss else None)
    if None not in newcomer_rss:
        extra = (newcomer_rss[1] - newcomer_rss[0]) / 1024
        print(f"\nNewcomer RSS with {full} held minus with none: {extra:.1f} MiB (medians).")
    return 0


def main():
    argv = sys.argv[1:]
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "wait-all":
        return cmd_wait_all(rest)
    if cmd == "sample":
        return cmd_sample(rest)
    if cmd == "report":
        return cmd_report(rest[0])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
