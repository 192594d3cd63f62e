#!/usr/bin/env python3
"""Helper of benches/lan_bench.sh (Python 3 standard library only).

Subcommands:

  wait-mesh DIR LABEL...          until every LABEL's log (DIR/LABEL.log)
                                  holds every other LABEL as a current peer
  wait-removed DIR PEER LABEL...  until every LABEL logged `removed` of PEER
  wait-promoted DIR SINCE LABEL...
                                  until one LABEL logged `promotion` after
                                  SINCE (epoch ms) and every other LABEL then
                                  logged `master` of it
  wait-event DIR LABEL EVENT      until LABEL's log has an EVENT line
  stat PID...                     one JSON line: time, and per PID utime+stime
                                  ticks (/proc/PID/stat), CPU ns summed over
                                  its threads (/proc/PID/task/*/schedstat)
                                  and VmRSS kB
  capture PORT SECONDS            listen on 0.0.0.0:PORT (SO_REUSEADDR and
                                  SO_REUSEPORT, so beside a node on that
                                  port: a broadcast reaches both) for
                                  SECONDS; one JSON line: datagram lengths
                                  and how often each came
  size FILE median|mode           the median or commonest length of a
                                  capture's datagrams
  pace DIR FRACTION               FRACTION x the median rate (messages/s)
                                  the receiver got in the unpaced runs
                                  DIR/run*, as an integer
  report DIR                      compute the results tables from DIR

Every wait takes --timeout S (default 15) and exits 1 on timeout. Marks are
lines "<name> <epoch ms>" in DIR/marks, written by the shell script.
"""

import glob
import json
import os
import socket
import statistics
import sys
import time


# ---------------------------------------------------------------- logs


def read_log(path):
    """The JSON lines of one node's log (a torn last line is skipped)."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def log(d, label):
    return read_log(os.path.join(d, label + ".log"))


def current_peers(lines):
    peers = set()
    for e in lines:
        if e.get("event") == "added" and e.get("peer") is not None:
            peers.add(e["peer"])
        elif e.get("event") == "removed":
            peers.discard(e.get("peer"))
    return peers


def first(lines, event, peer=None, since=None):
    """Time of the first EVENT line (about PEER, after SINCE)."""
    for e in lines:
        if e.get("event") != event:
            continue
        if peer is not None and e.get("peer") != peer:
            continue
        if since is not None and e["t"] < since:
            continue
        return e["t"]
    return None


# ---------------------------------------------------------------- waits


def wait_until(cond, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return 0
        if time.monotonic() >= deadline:
            return 1
        time.sleep(0.02)


def cmd_wait(argv):
    timeout = 15.0
    if "--timeout" in argv:
        i = argv.index("--timeout")
        timeout = float(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    what, d, rest = argv[0], argv[1], argv[2:]
    if what == "wait-mesh":
        labels = rest

        def cond():
            return all(
                set(labels) - {l} <= current_peers(log(d, l)) for l in labels
            )

    elif what == "wait-removed":
        peer, labels = rest[0], rest[1:]

        def cond():
            return all(first(log(d, l), "removed", peer) is not None for l in labels)

    elif what == "wait-promoted":
        since, labels = float(rest[0]), rest[1:]

        def cond():
            for l in labels:
                if first(log(d, l), "promotion", since=since) is not None:
                    return all(
                        first(log(d, o), "master", l, since) is not None
                        for o in labels
                        if o != l
                    )
            return False

    elif what == "wait-event":
        label, event = rest

        def cond():
            return first(log(d, label), event) is not None

    else:
        sys.exit(f"unknown wait {what}")
    code = wait_until(cond, timeout)
    if code:
        print(f"lan_bench.py: {what} {' '.join(rest)}: timed out after {timeout} s", file=sys.stderr)
    return code


# ---------------------------------------------------------------- /proc


def proc_stat(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15.
        ticks = int(fields[11]) + int(fields[12])
        ns = 0
        for p in glob.glob(f"/proc/{pid}/task/*/schedstat"):
            try:
                with open(p, encoding="utf-8") as f:
                    ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        rss = None
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        # Context switches of the live threads: wake-ups, roughly.
        switches = 0
        threads = 0
        for p in glob.glob(f"/proc/{pid}/task/*/status"):
            try:
                with open(p, encoding="utf-8") as f:
                    threads += 1
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                            switches += int(line.split()[1])
            except (OSError, ValueError):
                pass
        return {"ticks": ticks, "ns": ns, "rss_kb": rss, "switches": switches, "threads": threads}
    except (OSError, ValueError):
        return None


def cmd_stat(pids):
    out = {"t": time.time() * 1000.0, "hz": os.sysconf("SC_CLK_TCK"), "pids": {}}
    for pid in pids:
        out["pids"][pid] = proc_stat(pid)
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------- sizes


def cmd_capture(port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", int(port)))
    deadline = time.monotonic() + float(seconds)
    lengths = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        lengths[len(data)] = lengths.get(len(data), 0) + 1
    print(json.dumps({"port": int(port), "seconds": float(seconds),
                      "lengths": {str(k): v for k, v in sorted(lengths.items())}}))
    return 0


def cmd_size(path, how):
    with open(path, encoding="utf-8") as f:
        lengths = {int(k): v for k, v in json.load(f)["lengths"].items()}
    if not lengths:
        sys.exit(f"lan_bench.py: {path}: no datagram captured")
    if how == "mode":
        print(max(lengths, key=lambda k: (lengths[k], k)))
    else:
        print(int(statistics.median_low([k for k, v in lengths.items() for _ in range(v)])))
    return 0


def cmd_pace(d, fraction):
    rates = [r["rate"] for r in analyse_throughput(d) if not r.get("raw") and not r.get("paced")
             and r.get("rate")]
    if not rates:
        sys.exit(f"lan_bench.py: {d}: no unpaced run with a rate")
    print(int(statistics.median(rates) * float(fraction)))
    return 0


# ---------------------------------------------------------------- report


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, unit="", digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{unit}"


def spread(xs, unit="", digits=0):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{fmt(min(xs), '', digits)}–{fmt(max(xs), unit, digits)}"


def variants(d):
    return sorted(
        v for v in os.listdir(d) if os.path.isdir(os.path.join(d, v)) and not v.startswith("_")
    )


def scenario_dirs(vd, prefix):
    return sorted(glob.glob(os.path.join(vd, prefix + "*")))


def analyse_start(sd):
    """A simultaneous start: full-mesh time from the last ready, flaps."""
    labels = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(sd, "*.log")))
    logs = {l: read_log(os.path.join(sd, l + ".log")) for l in labels}
    stop = None
    try:
        with open(os.path.join(sd, "marks"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[0] == "stop":
                    stop = float(parts[1])
    except FileNotFoundError:
        pass
    if stop is not None:
        logs = {l: [e for e in lines if e["t"] < stop] for l, lines in logs.items()}
    readies = [first(logs[l], "ready") for l in labels]
    if None in readies:
        return None
    last_ready = max(readies)
    done = []
    for l in labels:
        for o in labels:
            if o != l:
                done.append(first(logs[l], "added", o))
    changes = sum(
        1 for l in labels for e in logs[l] if e.get("event") in ("promotion", "demotion")
    )
    promos = [(e["t"], l) for l in labels for e in logs[l] if e.get("event") == "promotion"]
    first_master = min(promos)[0] - last_ready if promos else None
    mesh = (max(done) - last_ready) if None not in done else None
    return {"mesh_ms": mesh, "flaps": max(changes - 1, 0), "changes": changes,
            "first_promotion_ms": first_master}


def analyse_joins(sd, marks):
    """Join / leave / crash samples of the churn scenario."""
    out = {"join": [], "leave": [], "crash": []}
    members = list(marks.get("_members", []))
    for name, t in marks.items():
        if not name.startswith("join:"):
            continue
        joiner = name.split(":", 1)[1]
        jl = read_log(os.path.join(sd, joiner + ".log"))
        ready = first(jl, "ready")
        if ready is None:
            continue
        times = [first(jl, "added", m) for m in members]
        times += [first(read_log(os.path.join(sd, m + ".log")), "added", joiner) for m in members]
        out["join"].append(None if None in times else max(times) - ready)
        for kind in ("leave", "crash"):
            tk = marks.get(f"{kind}:{joiner}")
            if tk is None:
                continue
            rm = [first(read_log(os.path.join(sd, m + ".log")), "removed", joiner, tk) for m in members]
            out[kind].append(None if None in rm else max(rm) - tk)
    return out


def analyse_failover(sd, marks):
    out = {"promoted": [], "agreed": []}
    kills = sorted((t, n) for n, t in marks.items() if n.startswith("failover:"))
    for t, name in kills:
        killed = name.split(":", 1)[1]
        survivors = [m for m in marks.get(f"_alive:{killed}", []) if m != killed]
        logs = {m: read_log(os.path.join(sd, m + ".log")) for m in survivors}
        promos = [(first(logs[m], "promotion", since=t), m) for m in survivors]
        promos = [(pt, m) for pt, m in promos if pt is not None]
        if not promos:
            out["promoted"].append(None)
            out["agreed"].append(None)
            continue
        pt, new = min(promos)
        out["promoted"].append(pt - t)
        agreed = [first(logs[m], "master", new, t) for m in survivors if m != new]
        out["agreed"].append(None if None in agreed else max(agreed + [pt]) - t)
    return out


def read_marks_lists(d):
    """Marks, plus list-valued marks ("_members a b c")."""
    marks = {}
    try:
        with open(os.path.join(d, "marks"), encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                if parts[0].startswith("_"):
                    marks[parts[0]] = parts[1:]
                elif len(parts) == 2:
                    marks[parts[0]] = float(parts[1])
    except FileNotFoundError:
        pass
    return marks


def cpu_per_minute(d):
    """CPU seconds per minute per node from two `stat` samples."""
    try:
        with open(os.path.join(d, "stat0.json"), encoding="utf-8") as f:
            a = json.load(f)
        with open(os.path.join(d, "stat1.json"), encoding="utf-8") as f:
            b = json.load(f)
    except (OSError, ValueError):
        return None
    minutes = (b["t"] - a["t"]) / 60000.0
    hz = a["hz"]
    ticks, ns, rss, switches, threads = [], [], [], [], []
    for pid, s0 in a["pids"].items():
        s1 = b["pids"].get(pid)
        if not s0 or not s1:
            continue
        ticks.append((s1["ticks"] - s0["ticks"]) / hz / minutes)
        ns.append((s1["ns"] - s0["ns"]) / 1e9 / minutes)
        rss.append(s1["rss_kb"])
        switches.append((s1["switches"] - s0["switches"]) / (minutes * 60))
        threads.append(s1["threads"])
    return {"nodes": len(ticks), "window_s": minutes * 60, "ticks": ticks, "ns": ns, "rss": rss,
            "switches": switches, "threads": threads}


def udp_deltas(rd):
    """Kernel UDP counters over a run (udp-before / udp-after, written by
    lan_bench.sh): the receiving host's RcvbufErrors and InErrors, the
    sending host's OutDatagrams and SndbufErrors."""
    def read(path):
        out = {}
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    parts = line.split()
                    # "h0 Udp: names... Udp: values..."
                    host, rest = parts[0], parts[1:]
                    i = rest.index("Udp:", 1)
                    names, values = rest[1:i], rest[i + 1:]
                    out[host] = dict(zip(names, map(int, values)))
        except (OSError, ValueError, IndexError):
            return None
        return out
    a, b = read(os.path.join(rd, "udp-before")), read(os.path.join(rd, "udp-after"))
    if not a or not b or "h0" not in a or "h1" not in a:
        return {}
    d = lambda h, k: b[h].get(k, 0) - a[h].get(k, 0)
    return {"rx_rcvbuf_errors": d("h0", "RcvbufErrors"), "rx_in_errors": d("h0", "InErrors"),
            "tx_out_datagrams": d("h1", "OutDatagrams"), "tx_sndbuf_errors": d("h1", "SndbufErrors")}


def analyse_node_run(rd, paced):
    """One run of examples/node or peer.js: tx.log and rx.log."""
    recv = read_log(os.path.join(rd, "rx.log"))
    send = read_log(os.path.join(rd, "tx.log"))
    start = first(send, "send_start")
    done = first(send, "send_done")
    count = next((e.get("count") for e in send if e.get("event") == "send_start"), None)
    msgs = [e["t"] for e in recv if e.get("event") == "msg"]
    if not msgs or start is None or not count:
        return {"paced": paced, "received": len(msgs), "count": count, "rate": None,
                "loss": None, "lost": None}
    span = msgs[-1] - start
    stats = next((e.get("stats") for e in recv if e.get("event") == "stats"), None) or {}
    lib = (stats["messages_in"] - stats.get("hellos_in", 0)
           - stats.get("dropped", {}).get("own", 0)) if stats else None
    return {
        **udp_deltas(rd),
        "paced": paced,
        "count": count,
        "received": len(msgs),
        # shoal only: messages the library decoded, and those its
        # subscription dropped because the consumer lagged.
        "lib_received": lib,
        "events_lost": stats.get("events_lost") if stats else None,
        "lib_rate": lib / (span / 1000.0) if lib is not None and span > 0 else None,
        "rate": len(msgs) / (span / 1000.0) if span > 0 else None,
        "send_rate": count / ((done - start) / 1000.0) if done and done > start else None,
        "loss": 1.0 - len(msgs) / count,
        "lost": count - len(msgs),
    }


def analyse_raw_run(rd, paced):
    """One run of benches/udp_pair.c: the same measure, sender's start to
    the last arrival."""
    recv = read_log(os.path.join(rd, "rx.log"))
    send = read_log(os.path.join(rd, "tx.log"))
    r = next((e for e in recv if e.get("event") == "done"), None)
    s = next((e for e in send if e.get("event") == "sent"), None)
    if not r or not s or not r["received"]:
        return {"raw": True, "paced": paced, "received": r and r["received"], "rate": None,
                "loss": None, "lost": None}
    span = r["t_last"] - s["t_start"]
    return {
        **udp_deltas(rd),
        "raw": True,
        "paced": paced,
        "count": s["count"],
        "size": s.get("size"),
        "received": r["received"],
        "rate": r["received"] / (span / 1000.0) if span > 0 else None,
        "send_rate": s["count"] / ((s["t_done"] - s["t_start"]) / 1000.0)
        if s["t_done"] > s["t_start"] else None,
        "loss": 1.0 - r["received"] / s["count"],
        "lost": s["count"] - r["received"],
        "send_errors": s["errors"],
        "pace": s.get("paced"),
    }


def analyse_throughput(sd):
    """Unpaced runs run* / raw*, paced runs prun* / praw*, in run order."""
    runs = []
    for prefix, fn, paced in (("run", analyse_node_run, False), ("prun", analyse_node_run, True),
                              ("raw", analyse_raw_run, False), ("praw", analyse_raw_run, True)):
        dirs = glob.glob(os.path.join(sd, prefix + "[0-9]*"))
        for rd in sorted(dirs, key=lambda p: int(os.path.basename(p)[len(prefix):])):
            runs.append(fn(rd, paced))
    return runs


def cmd_report(d):
    samples = {}
    for v in variants(d):
        vd = os.path.join(d, v)
        res = {}
        starts = [analyse_start(sd) for sd in scenario_dirs(vd, "start")]
        res["start"] = [s for s in starts if s]
        churn = os.path.join(vd, "churn")
        if os.path.isdir(churn):
            marks = read_marks_lists(churn)
            res.update(analyse_joins(churn, marks))
            res.update(analyse_failover(churn, marks))
        # cpu20 (one round, older runs) or cpu20-r1, cpu20-r2, ...: the
        # table pools the nodes of every round; ratios are per round.
        rounds = {}
        for cd in glob.glob(os.path.join(vd, "cpu20*")):
            c = cpu_per_minute(cd)
            if c:
                name = os.path.basename(cd)
                rounds[int(name.split("-r")[1]) if "-r" in name else 1] = c
        if rounds:
            res["cpu_rounds"] = {str(k): v for k, v in sorted(rounds.items())}
            pooled = {key: [x for c in rounds.values() for x in c[key]]
                      for key in ("ticks", "ns", "rss", "switches", "threads")}
            pooled["nodes"] = sum(c["nodes"] for c in rounds.values())
            pooled["window_s"] = med([c["window_s"] for c in rounds.values()])
            pooled["rounds"] = len(rounds)
            res["cpu"] = pooled
        res["rss"] = []
        for path in sorted(glob.glob(os.path.join(vd, "idle", "stat-*.json"))):
            with open(path, encoding="utf-8") as f:
                st = json.load(f)
            res["rss"] += [p["rss_kb"] for p in st["pids"].values() if p and p.get("rss_kb")]
        tp = os.path.join(vd, "throughput")
        if os.path.isdir(tp):
            res["throughput"] = analyse_throughput(tp)
        samples[v] = res

    with open(os.path.join(d, "samples.json"), "w", encoding="utf-8") as f:
        json.dump(samples, f, indent=1, sort_keys=True)

    names = list(samples)
    print("| metric (median; range over runs) | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))

    def row(title, fn):
        print(f"| {title} | " + " | ".join(fn(samples[v]) for v in names) + " |")

    def ms_row(key):
        def f(r):
            xs = r.get(key) or []
            if not xs:
                return "–"
            return f"{fmt(med(xs), ' ms')} ({spread(xs)}, n={len(xs)})"
        return f

    row("discovery: joiner ready → it and all 4 peers added each other", ms_row("join"))
    row("graceful leave: SIGTERM → all 4 peers removed it", ms_row("leave"))
    row("crash detection: SIGKILL → all 4 peers removed it", ms_row("crash"))
    row("failover: SIGKILL of master → a survivor's promotion", ms_row("promoted"))
    row("failover: SIGKILL of master → all survivors report the new master", ms_row("agreed"))

    def start_row(key, unit):
        def f(r):
            xs = [s[key] for s in r.get("start", []) if s.get(key) is not None]
            if not xs:
                return "–"
            return f"{fmt(med(xs), unit)} ({spread(xs)}, n={len(xs)})"
        return f

    def flaps(r):
        xs = [s["flaps"] for s in r.get("start", [])]
        if not xs:
            return "–"
        return f"{sum(xs)} in {len(xs)} starts ({', '.join(map(str, xs))})"

    row("5 nodes started at once: last ready → full mesh", start_row("mesh_ms", " ms"))
    row("5 nodes started at once: last ready → first promotion", start_row("first_promotion_ms", " ms"))
    row("5 nodes started at once: election flaps (promotions + demotions − 1)", flaps)

    def rss(r):
        xs = r.get("rss") or []
        if not xs:
            return "–"
        return f"{fmt(med(xs) / 1024.0, ' MiB', 1)} ({spread([x / 1024 for x in xs], '', 1)}, n={len(xs)})"

    row("RSS of an idle node (VmRSS, 5-node cluster)", rss)

    def cpu(key):
        def f(r):
            c = r.get("cpu")
            if not c or not c[key]:
                return "–"
            total = sum(c[key]) / len(c[key])
            return (f"{fmt(med(c[key]), ' s', 3)} (mean {fmt(total, '', 3)}; "
                    f"{c['nodes']} node-rounds, {c.get('rounds', 1)} x {fmt(c['window_s'], ' s')})")
        return f

    row("CPU s per minute per node, 20-node cluster (schedstat ns)", cpu("ns"))
    row("CPU s per minute per node, 20-node cluster (utime+stime ticks, coarse)", cpu("ticks"))

    def cpu_rss(r):
        c = r.get("cpu")
        if not c or not c["rss"]:
            return "–"
        return fmt(med(c["rss"]) / 1024.0, " MiB", 1)

    row("RSS per node in the 20-node cluster", cpu_rss)

    def cpu_plain(key, unit, digits=0):
        def f(r):
            c = r.get("cpu")
            if not c or not c.get(key):
                return "–"
            return fmt(med(c[key]), unit, digits)
        return f

    row("context switches per second per node, 20-node cluster", cpu_plain("switches", "/s"))
    row("threads per node", cpu_plain("threads", ""))

    def tp(key, raw, unit, scale=1.0, digits=0, paced=False):
        def f(r):
            runs = [x for x in r.get("throughput", [])
                    if bool(x.get("raw")) == raw and bool(x.get("paced")) == paced]
            xs = [x.get(key) for x in runs if x.get(key) is not None]
            if not xs:
                return "–"
            xs = [x * scale for x in xs]
            return f"{fmt(med(xs), unit, digits)} ({spread(xs, '', digits)}, n={len(xs)})"
        return f

    row("channel messages received per second (sender → receiver host)", tp("rate", False, "/s"))
    row("channel message loss", tp("loss", False, " %", 100.0, 1))
    row("sender: messages handed to the library per second", tp("send_rate", False, "/s"))
    row("receiver library decoded (of sent; shoal's stats)", tp("lib_received", False, ""))
    row("receiver library decoded per second (until the last message was delivered)",
        tp("lib_rate", False, "/s"))
    row("lost in the receiver's subscription (consumer lagged)", tp("events_lost", False, ""))
    row("raw UDP (C, udp_pair.c) datagrams received per second", tp("rate", True, "/s"))
    row("raw UDP (C) loss", tp("loss", True, " %", 100.0, 1))
    row("raw UDP (C) sender: datagrams sent per second", tp("send_rate", True, "/s"))
    row("paced: sender's messages per second (the pace is a ceiling)",
        tp("send_rate", False, "/s", paced=True))
    row("paced: channel messages received per second", tp("rate", False, "/s", paced=True))
    row("paced: messages lost (of sent)", tp("lost", False, "", paced=True))
    row("paced: raw UDP (C) sender's datagrams per second",
        tp("send_rate", True, "/s", paced=True))
    row("paced: raw UDP (C) datagrams received per second", tp("rate", True, "/s", paced=True))
    row("paced: raw UDP (C) datagrams lost", tp("lost", True, "", paced=True))
    print()
    figures(d, samples)
    return 0


def figures(d, samples):
    """Issue 14's figures 1 and 3: each against its reference, same run."""
    used = {}
    try:
        with open(os.path.join(d, "_sizes", "used"), encoding="utf-8") as f:
            for line in f:
                k, _, v = line.strip().partition(" ")
                used[k] = v
    except FileNotFoundError:
        pass

    def cpu_med(v, rnd=None):
        r = samples.get(v, {})
        c = r.get("cpu") if rnd is None else r.get("cpu_rounds", {}).get(rnd)
        return med(c["ns"]) if c and c.get("ns") else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    rounds = sorted({k for r in samples.values() for k in r.get("cpu_rounds", {})}, key=int)
    if rounds:
        figure1(samples, rounds, cpu_med, ratio)
    if "hello_size" in used:
        print(f"Floor datagrams: {used['hello_size']} bytes (a shoal hello on this LAN).")
        print()
    figure3(samples, used, ratio)


def figure1(samples, rounds, cpu_med, ratio):
    """Issue 14, figure 1: the per-round CPU ratios."""
    print("Issue 14, figure 1: idle CPU per node, 20-node namespace LAN (schedstat, "
          "median s per minute; per round, and the median of the per-round ratios)")
    print()
    print("| ratio | " + " | ".join(f"round {k}" for k in rounds) + " | median | goal |")
    print("|---|" + "---:|" * (len(rounds) + 1) + "---|")
    for title, a, b, goal in (
        ("shoal / floor (400 ms hellos, shoal's defaults)", "shoal", "floor", "≤ 1.5"),
        ("shoal-ndt / nd (node-discovery's timings)", "shoal-ndt", "nd", "≤ 0.05 (1/20)"),
        ("shoal-ndt / floor-ndt (1 s hellos)", "shoal-ndt", "floor-ndt", "–"),
    ):
        cells, qs = [], []
        for k in rounds:
            x, y = cpu_med(a, k), cpu_med(b, k)
            q = ratio(x, y)
            if q is not None:
                qs.append(q)
            cells.append(f"{fmt(q, '', 2)} ({fmt(x, '', 4)} / {fmt(y, '', 4)})")
        print(f"| {title} | " + " | ".join(cells) + f" | {fmt(med(qs), '', 2)} | {goal} |")
    print()


def figure3(samples, used, ratio):
    """Issue 14, figure 3: shoal's runs beside the C pair's."""
    tp = samples.get("shoal", {}).get("throughput", [])
    raw = samples.get("udp-raw", {}).get("throughput", [])
    if not tp and not raw:
        return
    print("Issue 14, figure 3: channel throughput delivered to the application, host 1 → host 0")
    print()
    print("| run | shoal msgs/s | C pair datagrams/s | shoal / C pair | shoal lost | C pair lost "
          "| UDP sent by host 1 (shoal / C) | receiver socket full, RcvbufErrors (shoal / C) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {False: [], True: []}
    for paced in (False, True):
        a = [x for x in tp if bool(x.get("paced")) == paced]
        b = [x for x in raw if bool(x.get("paced")) == paced]
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else {}
            y = b[i] if i < len(b) else {}
            q = ratio(x.get("rate"), y.get("rate"))
            if q is not None:
                ratios[paced].append(q)
            name = f"{'paced ' if paced else ''}{i + 1}"
            print(f"| {name} | {fmt(x.get('rate'), '')} | {fmt(y.get('rate'), '')} | "
                  f"{fmt(q, '', 2)} | {fmt(x.get('lost'), '')} | {fmt(y.get('lost'), '')} | "
                  f"{fmt(x.get('tx_out_datagrams'), '')} / {fmt(y.get('tx_out_datagrams'), '')} | "
                  f"{fmt(x.get('rx_rcvbuf_errors'), '')} / {fmt(y.get('rx_rcvbuf_errors'), '')} |")
    print()
    for x in tp:
        if not x.get("lost") or x.get("tx_out_datagrams") is None:
            continue
        # With segmentation offload the kernel counts one datagram per send
        # of up to 64, so host 1's count says nothing of loss: where the
        # receiver's own stats say, from them.
        lib = x.get("lib_received")
        lagged = x.get("events_lost")
        if lib is not None and lib >= x["count"]:
            where = (f"after the receiving library got all {fmt(x['count'], '')}: its consumer "
                     f"lagged and its subscription dropped {fmt(lagged, '')}")
        elif x.get("rx_rcvbuf_errors"):
            where = "at the receiver's socket, full"
        else:
            where = "between the sender's send() and the receiver's socket"
        print(f"Shoal {'paced ' if x.get('paced') else ''}run lost {fmt(x['lost'], '')}, {where} "
              f"(the receiving library decoded {fmt(lib, '')}; its socket overflowed "
              f"{fmt(x.get('rx_rcvbuf_errors'), '')} times; host 1's kernel counted "
              f"{fmt(x['tx_out_datagrams'], '')} sends).")
    rate = lambda xs, p: med([x.get("rate") for x in xs if bool(x.get("paced")) == p])
    print(f"Unpaced medians: shoal {fmt(rate(tp, False), '/s')}, C pair {fmt(rate(raw, False), '/s')}: "
          f"shoal / C pair {fmt(ratio(rate(tp, False), rate(raw, False)), '', 2)} "
          f"(median of per-run ratios {fmt(med(ratios[False]), '', 2)}; goal ≥ 1.00).")
    lost = [x.get("lost") for x in tp if x.get("paced")]
    if lost:
        sent = [x.get("send_rate") for x in tp if x.get("paced")]
        print(f"Paced at {used.get('pace', '?')} messages/s (the sender reached "
              f"{', '.join(fmt(v, '/s') for v in sent)}): shoal lost "
              f"{', '.join(fmt(v, '') for v in lost)} (goal 0); the C pair lost "
              f"{', '.join(fmt(y.get('lost'), '') for y in raw if y.get('paced'))}.")
    if "channel_size" in used:
        print(f"C pair datagrams: {used['channel_size']} bytes, the length of shoal's channel "
              f"datagram for the same message (captured), one per sendto / recv.")


def main():
    argv = sys.argv[1:]
    if not argv:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd.startswith("wait-"):
        return cmd_wait([cmd] + rest)
    if cmd == "stat":
        return cmd_stat(rest)
    if cmd == "capture":
        return cmd_capture(*rest)
    if cmd == "size":
        return cmd_size(*rest)
    if cmd == "pace":
        return cmd_pace(*rest)
    if cmd == "report":
        return cmd_report(rest[0])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
