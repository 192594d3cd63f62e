#!/usr/bin/env bash
# The registry's figures (issue 11) on a private virtual LAN of HOSTS hosts.
#
#   sudo benches/registry_lan.sh [OUT_DIR]
#
# Needs root, iproute2, cargo and python3. Builds examples/node in release
# (CARGO_TARGET_DIR, default /tmp/shoal-bench-target), builds its own LAN,
# runs the scenarios below, prints the results tables (benches/registry_lan.py
# report) and leaves the raw JSON-line logs in OUT_DIR (default
# /tmp/shoal-registry-lan-<date>).
#
# The LAN is lan_bench.sh's: a namespace "sreg-<pid>-sw" holding bridge br0,
# and HOSTS namespaces "sreg-<pid>-h<i>", each with one veth (eth0,
# 10.253.0.<i+1>/24) whose other end is a port of br0. Nothing is created in
# the root namespace, nothing is linked to a real interface: broadcasts stay
# inside. On exit, also on error or ^C, whatever still runs in these
# namespaces is killed and the namespaces are deleted by exact name.
#
# Scenarios (examples/node, shoal's defaults: hello 400 ms, node timeout
# 2.6 s; registrations with a 30 s time to live, refreshed every 10 s):
#   latency  one observer per host; REPS times a new node on host r % HOSTS
#            registers one registration 1.5 s after its ready, deregisters it
#            1 s later and leaves. Latency: from the owner's `registered` (or
#            its own `reg_online`, whichever is first) to the last observer's
#            `reg_online`, and the same for `deregistered` / `reg_offline`.
#            All hosts share one clock.
#   zero     one node per host, nothing registered: eth0 counters and RSS
#            over WINDOW seconds of steady state, then JOINS newcomers
#            (RSS 2 s after ready).
#   full     one node per host, each registering PER_HOST registrations
#            (svc@1.0.0, ports 10000.., host = its own address, so ids are
#            distinct): once every node holds all, the same window, then JOINS
#            newcomers on host j % HOSTS: time from their `ready` to their
#            `reg_count` of HOSTS x PER_HOST, and their RSS 2 s after that.
#
# Knobs (environment): HOSTS (20), REPS (20), PER_HOST (500), WINDOW (30 s),
# JOINS (5), SCENARIOS ("latency zero full").
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=(python3 "$REPO/benches/lan_bench.py")
RPY=(python3 "$REPO/benches/registry_lan.py")
HOSTS=${HOSTS:-20}
REPS=${REPS:-20}
PER_HOST=${PER_HOST:-500}
WINDOW=${WINDOW:-30}
JOINS=${JOINS:-5}
SCENARIOS=${SCENARIOS:-"latency zero full"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/shoal-bench-target}
OUT=${1:-/tmp/shoal-registry-lan-$(date +%Y%m%d-%H%M%S)}

PREFIX="sreg-$$"
SWITCH="$PREFIX-sw"
NET=10.253.0
BCAST=$NET.255
DIR=                # the current scenario's log directory


# ------------------------------------------------------------------ cleanup

NAME=registry_lan.sh
# shellcheck source=benches/lan_common.sh
source "$REPO/benches/lan_common.sh" # log, the cleanup trap, lan_build_node, lan_build, ns_of

# ------------------------------------------------------------------ checks

[ "$(id -u)" = 0 ] || { echo "registry_lan.sh: run as root (ip netns)" >&2; exit 2; }
for tool in ip cargo python3; do
    command -v "$tool" >/dev/null || { echo "registry_lan.sh: $tool not found" >&2; exit 2; }
done
[ "$HOSTS" -ge 2 ] && [ "$HOSTS" -le 250 ] || { echo "HOSTS must be 2..250" >&2; exit 2; }

lan_build_node
mkdir -p "$OUT"

# ------------------------------------------------------------------ the LAN

lan_build

# ------------------------------------------------------------------ nodes

# start_node HOST LABEL [flags...]: starts examples/node on host HOST,
# logging to $DIR/LABEL.log.
start_node() {
    local h=$1 label=$2
    shift 2
    # ip netns exec execs the program: $! is the node's own pid.
    ip netns exec "$PREFIX-h$h" "$NODE_BIN" --port 47011 --broadcast "$BCAST" --id "$label" \
        --log "$DIR/$label.log" "$@" </dev/null >/dev/null 2>>"$DIR/stderr.txt" &
    PID_OF[$label]=$!
    disown "$!"
    HOST_OF[$label]=$h
}

# ------------------------------------------------------------------ scenarios

scenario_latency() {
    DIR="$OUT/latency"
    mkdir -p "$DIR"
    local observers=() i r h w id reps=()
    for ((i = 0; i < HOSTS; i++)); do
        observers+=("o$i")
        start_node "$i" "o$i"
    done
    "${PY[@]}" wait-mesh "$DIR" "${observers[@]}" --timeout 30
    sleep 2
    for ((r = 1; r <= REPS; r++)); do
        h=$((r % HOSTS))
        w="w$r"
        id="/lat$r/1.0.0/$NET.$((h + 1))/7000"
        start_node "$h" "$w" --register "lat$r@1.0.0:7000" --register-host "$NET.$((h + 1))" \
            --register-delay 1500 --deregister-after 1000
        "${RPY[@]}" wait-all "$DIR" reg_online "id=$id" "${observers[@]}" --timeout 15 || true
        "${RPY[@]}" wait-all "$DIR" reg_offline "id=$id" "${observers[@]}" --timeout 15 || true
        signal_node TERM "$w"
        wait_gone "$w"
        reps+=("{\"owner\": \"$w\", \"id\": \"$id\"}")
        # A random phase against the hello timers.
        sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    done
    python3 -c 'import json,sys; obs=sys.argv[1].split(); print(json.dumps([dict(json.loads(r), observers=obs) for r in sys.argv[2:]]))' \
        "${observers[*]}" "${reps[@]}" >"$DIR/reps.json"
    stop_all
}

# steady_lan NAME PER: one node per host, each registering PER (0: none);
# once all hold HOSTS x PER, WINDOW seconds of eth0 counters and RSS, then
# JOINS newcomers.
steady_lan() {
    local name=$1 per=$2 labels=() i j label expect=$((HOSTS * $2)) joins=()
    DIR="$OUT/$name"
    mkdir -p "$DIR"
    for ((i = 0; i < HOSTS; i++)); do
        labels+=("b$i")
        if [ "$per" -gt 0 ]; then
            start_node "$i" "b$i" --registry-quiet --register "svc@1.0.0:10000" \
                --register-count "$per" --register-host "$NET.$((i + 1))"
        else
            start_node "$i" "b$i" --registry-quiet
        fi
    done
    "${PY[@]}" wait-mesh "$DIR" "${labels[@]}" --timeout 30 || true
    if [ "$per" -gt 0 ]; then
        "${RPY[@]}" wait-all "$DIR" reg_count "count=$expect" "${labels[@]}" --timeout 60 || true
    fi
    sleep 5
    "${RPY[@]}" sample $(pids_of "${labels[@]}") >"$DIR/steady0.json"
    sleep "$WINDOW"
    "${RPY[@]}" sample $(pids_of "${labels[@]}") >"$DIR/steady1.json"
    for ((j = 1; j <= JOINS; j++)); do
        label="n$j"
        start_node "$((j % HOSTS))" "$label" --registry-quiet
        "${PY[@]}" wait-event "$DIR" "$label" ready --timeout 15 || true
        if [ "$per" -gt 0 ]; then
            "${RPY[@]}" wait-all "$DIR" reg_count "count=$expect" "$label" --timeout 15 || true
        fi
        sleep 2
        "${RPY[@]}" sample "${PID_OF[$label]}" >"$DIR/$label.stat.json"
        signal_node TERM "$label"
        wait_gone "$label"
        joins+=("{\"label\": \"$label\", \"expect\": $((per > 0 ? expect : 0))}")
        sleep 1
    done
    (IFS=,; echo "[${joins[*]}]") >"$DIR/newcomers.json"
    stop_all
}

# ------------------------------------------------------------------ run

START=$(date +%s)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: nproc=$(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "shoal: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "settings: HOSTS=$HOSTS REPS=$REPS PER_HOST=$PER_HOST WINDOW=$WINDOW JOINS=$JOINS SCENARIOS=${SCENARIOS// /,}"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

for scenario in $SCENARIOS; do
    case $scenario in
    latency)
        log "latency: one registration added and removed x $REPS"
        scenario_latency ;;
    zero)
        log "zero: $HOSTS nodes, no registrations; window ${WINDOW} s; $JOINS newcomers"
        steady_lan zero 0 ;;
    full)
        log "full: $HOSTS nodes x $PER_HOST registrations; window ${WINDOW} s; $JOINS newcomers"
        steady_lan full "$PER_HOST" ;;
    *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); run time $(($(date +%s) - START)) s" >>"$OUT/env.txt"
"${RPY[@]}" report "$OUT" | tee "$OUT/report.md"
tail -1 "$OUT/env.txt" >&2
