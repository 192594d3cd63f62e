#!/usr/bin/env bash
# CPU per hello of one shoal node that hears 2,000 peers (issue 14, figure 2).
#
#   sudo benches/load_cpu.sh
#   sudo MODE=secure BIN=/tmp/new/node benches/load_cpu.sh
#
# Builds its own two-host LAN (lan_common.sh: a switch namespace with a
# bridge, hosts sload-<pid>-h0 and -h1 at $NET.1 and $NET.2/24; nothing in
# the root namespace, nothing linked to a real interface, all deleted by
# exact name on exit, also on error or ^C). In h0 it runs one examples/node
# (`--broadcast $NET.255 --port $PORT`, plus `--key` in secure mode); in h1
# benches/hello_replay sends it the hellos of NODES nodes at RATE a second,
# evenly spread, from one socket, to the subnet broadcast address $NET.255
# as peers on a LAN do (TARGET=unicast: to $NET.1 instead). Once the node's
# log shows all NODES peers `added`, it waits SETTLE seconds, then samples
# the node over WINDOW seconds:
#   cpu_us_per_hello  on-CPU time of all the node's threads
#                     (/proc/PID/task/*/schedstat, ns) over the datagrams
#                     delivered to its socket in the window
#   hellos_per_s      those datagrams per second: UDP InDatagrams of h0's
#                     namespace (/proc/net/snmp; the node's is the only UDP
#                     socket there; about 2.5/s of them are its own hellos
#                     looping back); the generator's own count over the same
#                     window (SIGUSR1 progress lines) is `gen_sent_per_s`
#   rcvbuf_errors     datagrams the kernel dropped because the node's
#                     socket buffer was full, in the window (should be 0)
#   vol/invol_ctxsw_per_s  context switches, summed over the threads
#   rss_kib, hwm_kib  VmRSS and VmHWM at the end of the window
#   peers             `added` minus `removed` events in the node's log
#   removed_in_window `removed` events in the window (must be 0)
#   gen_cpu_pct       the generator's CPU (% of one core): it shares the
#                     host's cores with the node
# then stops both (SIGTERM) and prints the node's own exit `stats`
# (hellos_in, packets_in, drops) for the whole run as a cross-check.
# examples/node reports its stats only when it exits, so the window counts
# come from the kernel. A table, the raw samples and every log stay in OUT.
#
# Knobs (environment): MODE (both | plain | secure), NODES (2000), RATE
# (5000), WINDOW (20 s), REPS (1: windows back to back, one line each),
# SETTLE (5 s), PORT (47400), TARGET (broadcast | unicast), NET (10.253.0,
# the LAN's /24), BIN (the node, default: build
# examples/node in release), GEN_BIN (default: build hello_replay in
# release), CARGO_TARGET_DIR (default /tmp/shoal-bench-target), OUT (default
# a fresh /tmp/shoal-load-cpu.XXXXXX). The secure key is fresh for each run
# (32 random bytes in hex, OUT/key): hello_replay reads it with --key-file,
# the node gets it with --key (examples/node has no --key-file; the key is
# thus on its command line, visible to `ps` on this host: a throwaway key).
#
# FLOOR=1 takes a BIN that writes no log, benches/idle_floor.c (it wakes for
# every datagram and reads until the socket is empty, parsing nothing):
# the least CPU per hello a process that wakes per datagram pays on this
# host. `peers` is then meaningless (no log to count).
#   gcc -O2 -o /tmp/idle_floor benches/idle_floor.c
#   FLOOR=1 MODE=plain BIN=/tmp/idle_floor benches/load_cpu.sh
#
# Comparing two builds of the node:
#   BIN=/tmp/old/node benches/load_cpu.sh; BIN=/tmp/new/node benches/load_cpu.sh
set -euo pipefail

MODE=${MODE:-both}
NODES=${NODES:-2000}
RATE=${RATE:-5000}
WINDOW=${WINDOW:-20}
SETTLE=${SETTLE:-5}
REPS=${REPS:-1}
PORT=${PORT:-47400}
TARGET=${TARGET:-broadcast}
NET=${NET:-10.253.0}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/shoal-bench-target}

case $MODE in
    both) MODES=(plain secure) ;;
    plain | secure) MODES=("$MODE") ;;
    *) echo "load_cpu.sh: MODE must be plain, secure or both" >&2; exit 2 ;;
esac
case $TARGET in
    broadcast) DEST=$NET.255 ;;
    unicast) DEST=$NET.1 ;;
    *) echo "load_cpu.sh: TARGET must be broadcast or unicast" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "load_cpu.sh: run as root (ip netns)" >&2; exit 2; }
command -v ip >/dev/null || { echo "load_cpu.sh: ip (iproute2) not found" >&2; exit 2; }

PREFIX="sload-$$"
SWITCH="$PREFIX-sw"
HOSTS=2
NAME=load_cpu.sh
# shellcheck source=benches/lan_common.sh
source "$REPO/benches/lan_common.sh" # log, the cleanup trap, lan_build_node, lan_build

if [ -z "${BIN:-}" ]; then
    lan_build_node
    BIN=$NODE_BIN
fi
if [ -z "${GEN_BIN:-}" ]; then
    log "building hello_replay (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release -q -p shoal-benches --bin hello_replay)
    GEN_BIN=$CARGO_TARGET_DIR/release/hello_replay
fi
for b in "$BIN" "$GEN_BIN"; do
    [ -x "$b" ] || { echo "load_cpu.sh: $b is not an executable" >&2; exit 2; }
done
OUT=${OUT:-$(mktemp -d /tmp/shoal-load-cpu.XXXXXX)}
mkdir -p "$OUT"
od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$OUT/key"
chmod 600 "$OUT/key"

lan_build

# One line for a pid: sched_ns voluntary involuntary, summed over its
# threads (a thread that ends between listing and reading is skipped).
sample() {
    awk 'FILENAME ~ /schedstat$/ { ns += $1; next }
        $1 == "voluntary_ctxt_switches:" { vol += $2 }
        $1 == "nonvoluntary_ctxt_switches:" { inv += $2 }
        END { printf "%.0f %.0f %.0f\n", ns, vol, inv }' \
        /proc/"$1"/task/*/schedstat /proc/"$1"/task/*/status 2>/dev/null
}

# UDP InDatagrams RcvbufErrors of a host namespace (/proc/net/snmp).
udp_counts() {
    ip netns exec "$PREFIX-h$1" cat /proc/net/snmp | awk '
        $1 == "Udp:" && $2 == "InDatagrams" { for (i = 2; i <= NF; i++) col[$i] = i; next }
        $1 == "Udp:" { print $col["InDatagrams"], $col["RcvbufErrors"]; exit }'
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
count() { # EVENT FILE: lines of that event (0 without the file)
    local n
    n=$(grep -c "\"event\":\"$1\"" "$2" 2>/dev/null) || true
    echo "${n:-0}"
}
gen_sent() { # the `sent` of the generator's latest progress line
    local n
    n=$(grep '"event":"progress"' "$1" | tail -n 1 | sed 's/.*"sent":\([0-9]*\).*/\1/')
    echo "${n:-0}"
}

run_mode() {
    local mode=$1 dir="$OUT/$1" key_args=() gen_key=() i
    mkdir -p "$dir"
    if [ "$mode" = secure ]; then
        key_args=(--key "$(<"$OUT/key")")
        gen_key=(--key-file "$OUT/key")
    fi
    log "$mode: node in $PREFIX-h0, $NODES replayed nodes at $RATE hellos/s from $PREFIX-h1 to $DEST:$PORT"
    # ip netns exec execs the program: $! is the process's own pid.
    ip netns exec "$PREFIX-h0" "$BIN" --id load-target --port "$PORT" --broadcast "$NET.255" \
        "${key_args[@]}" --log "$dir/node.log" </dev/null >/dev/null 2>>"$dir/stderr.txt" &
    PID_OF[node]=$!
    HOST_OF[node]=0
    disown "$!"
    for i in $(seq 100); do
        [ -n "${FLOOR:-}" ] && { sleep 0.5; break; }
        grep -q '"event":"ready"' "$dir/node.log" 2>/dev/null && break
        running "${PID_OF[node]}" || { echo "load_cpu.sh: the node exited; see $dir" >&2; exit 1; }
        sleep 0.1
    done
    ip netns exec "$PREFIX-h1" "$GEN_BIN" --target "$DEST:$PORT" --nodes "$NODES" --rate "$RATE" \
        "${gen_key[@]}" </dev/null >"$dir/gen.jsonl" 2>>"$dir/stderr.txt" &
    PID_OF[gen]=$!
    HOST_OF[gen]=1
    disown "$!"

    local added=0
    for i in $(seq 600); do
        [ -n "${FLOOR:-}" ] && { sleep 1; added=$NODES; break; }
        added=$(count added "$dir/node.log")
        [ "$added" -ge "$NODES" ] && break
        running "${PID_OF[gen]}" || { echo "load_cpu.sh: hello_replay exited; see $dir" >&2; exit 1; }
        sleep 0.1
    done
    [ "$added" -ge "$NODES" ] ||
        { echo "load_cpu.sh: $mode: only $added of $NODES peers added in 60 s; see $dir" >&2; exit 1; }
    log "$mode: $added peers added; settling ${SETTLE}s, then sampling ${WINDOW}s"
    sleep "$SETTLE"

    # REPS windows back to back, each one line.
    local pid=${PID_OF[node]} gpid=${PID_OF[gen]} r before after rss hwm line
    signal_node USR1 gen
    sleep 0.1 # the generator wakes at least every 50 ms
    before=$(window_sample "$pid" "$gpid" "$dir")
    for ((r = 1; r <= REPS; r++)); do
        sleep "$WINDOW"
        signal_node USR1 gen
        sleep 0.1 # the generator wakes at least every 50 ms
        after=$(window_sample "$pid" "$gpid" "$dir")
        rss=$(status_kib "$pid" VmRSS) hwm=$(status_kib "$pid" VmHWM)
        echo "$before" >>"$dir/samples"
        echo "$after" >>"$dir/samples"
        line=$(window_line "$mode" "$r" "$before" "$after" "$rss" "$hwm" "$(count added "$dir/node.log")")
        echo "$line" | tee -a "$OUT/results.txt"
        [[ $line == *" removed_in_window 0 "* ]] || {
            log "$mode: FAIL: peers were removed during window $r; see $dir/node.log"
            FAILED=1
        }
        before=$after
    done

    signal_node TERM gen
    signal_node TERM node
    wait_gone gen
    wait_gone node
    # The node's own totals for the whole run (its exit line), and the
    # generator's.
    grep '"event":"stats"' "$dir/node.log" | sed 's/^/       node stats: /' | tee -a "$OUT/results.txt" >&2
    grep '"event":"done"' "$dir/gen.jsonl" | sed 's/^/       hello_replay: /' | tee -a "$OUT/results.txt" >&2
}

# window_sample NODE_PID GEN_PID DIR: one line, the fields window_line reads:
# node sched_ns vol inv, h0's UDP InDatagrams RcvbufErrors, time (ns),
# `removed` lines so far, the generator's `sent` at its latest progress line
# and its sched_ns.
window_sample() {
    local g
    read -r g _ <<<"$(sample "$2")"
    echo "$(sample "$1") $(udp_counts 0) $(date +%s%N) $(count removed "$3/node.log") $(gen_sent "$3/gen.jsonl") $g"
}

# window_line MODE REP BEFORE AFTER RSS HWM ADDED: the results line, with
# the host's load average (other work on the cores shows there).
window_line() {
    awk -v mode="$1" -v rep="$2" -v before="$3" -v after="$4" -v rss="$5" -v hwm="$6" \
        -v added="$7" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        split(before, a, " "); split(after, b, " ")
        w = (b[6] - a[6]) / 1e9; n = b[4] - a[4]
        printf "%-6s %d  cpu_us_per_hello %.3f  hellos_per_s %.0f  gen_sent_per_s %.0f  rcvbuf_errors %d  vol_ctxsw_per_s %.0f  invol_ctxsw_per_s %.0f  rss_kib %d  hwm_kib %d  peers %d  removed_in_window %d  gen_cpu_pct %.1f  window_s %.2f  load1 %s\n",
            mode, rep, (b[1] - a[1]) / 1e3 / (n > 0 ? n : 1), n / w, (b[8] - a[8]) / w, b[5] - a[5],
            (b[2] - a[2]) / w, (b[3] - a[3]) / w, rss, hwm, added - b[7], b[7] - a[7],
            (b[9] - a[9]) / 1e7 / w, w, load
    }'
}

FAILED=0
{
    echo "# $(date -u +%FT%TZ) node $BIN; hello_replay $GEN_BIN"
    echo "# NODES=$NODES RATE=$RATE WINDOW=$WINDOW REPS=$REPS SETTLE=$SETTLE TARGET=$TARGET ($DEST:$PORT)"
    echo "# $(uname -r), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/results.txt"
cat "$OUT/results.txt"
for mode in "${MODES[@]}"; do run_mode "$mode"; done
echo "results: $OUT/results.txt (logs in $OUT)"
exit "$FAILED"
