#!/usr/bin/env bash
# CPU and context switches of idle shoal nodes on loopback, no namespaces.
#
#   benches/idle_cpu.sh [-- EXTRA NODE FLAGS...]
#
# Starts NODES examples/node processes on this host, all on 127.0.0.1's
# loopback broadcast (--broadcast 127.255.255.255, one shared PORT; the
# socket has SO_REUSEADDR/SO_REUSEPORT and SO_BROADCAST), lets them SETTLE,
# then samples every process twice, WINDOW seconds apart, and prints per
# node and the median:
#   cpu_s_per_min   utime+stime from /proc/PID/stat (clock ticks, coarse:
#                   one tick is 10 ms, so use a long WINDOW for small values)
#   sched_s_per_min on-CPU time from /proc/PID/task/*/schedstat (ns, precise)
#   ctxsw_per_s     voluntary (and involuntary) context switches, summed over
#                   the process's threads (/proc/PID/task/*/status)
# Nothing leaves loopback: the script refuses to run unless the kernel routes
# 127.255.255.255 to lo. It kills only the PIDs it started, by PID.
#
# Knobs (environment): NODES (20), SETTLE (5 s), WINDOW (30 s), PORT (47321),
# BIN (default: build examples/node in release into CARGO_TARGET_DIR, default
# /tmp/shoal-bench-target), OUT (log dir, default a fresh /tmp directory).
# Extra arguments after -- go to every node, e.g. `-- --hello-interval 1000`.
#
# Example, comparing two builds:
#   BIN=/tmp/old/node benches/idle_cpu.sh; BIN=/tmp/new/node benches/idle_cpu.sh
set -euo pipefail

NODES=${NODES:-20}
SETTLE=${SETTLE:-5}
WINDOW=${WINDOW:-30}
PORT=${PORT:-47321}
BCAST=127.255.255.255
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ ${1:-} == -- ]] && shift
EXTRA=("$@")

if ! ip route get "$BCAST" 2>/dev/null | grep -q 'dev lo'; then
    echo "idle_cpu.sh: $BCAST is not routed to lo here; refusing to run" >&2
    exit 1
fi

if [[ -z ${BIN:-} ]]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/shoal-bench-target}
    (cd "$REPO" && cargo build --quiet --release --example node)
    BIN=$CARGO_TARGET_DIR/release/examples/node
fi
OUT=${OUT:-$(mktemp -d /tmp/shoal-idle-cpu.XXXXXX)}
mkdir -p "$OUT"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

for ((i = 0; i < NODES; i++)); do
    "$BIN" --id "idle$i" --port "$PORT" --broadcast "$BCAST" "${EXTRA[@]}" \
        --log "$OUT/n$i.log" >/dev/null 2>>"$OUT/stderr.txt" &
    PIDS+=($!)
done

# One line per pid: pid ticks(utime+stime) sched_ns voluntary involuntary
sample() {
    local pid task stat ns vol inv
    for pid in "${PIDS[@]}"; do
        stat=$(<"/proc/$pid/stat")
        stat=${stat##*) } # fields from 3 (state) on; comm may hold spaces
        read -r -a f <<<"$stat"
        ns=0 vol=0 inv=0
        for task in /proc/"$pid"/task/*; do
            # A thread may end between listing and reading: skip it.
            { read -r t _ <"$task/schedstat"; } 2>/dev/null || continue
            ns=$((ns + t))
            { while read -r key value; do
                case $key in
                    voluntary_ctxt_switches:) vol=$((vol + value)) ;;
                    nonvoluntary_ctxt_switches:) inv=$((inv + value)) ;;
                esac
            done <"$task/status"; } 2>/dev/null || true
        done
        # utime and stime are fields 14 and 15, i.e. 11 and 12 after state.
        echo "$pid $((f[11] + f[12])) $ns $vol $inv"
    done
}

sleep "$SETTLE"
for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "node $pid died; see $OUT" >&2; exit 1; }
done
sample >"$OUT/stat0"
sleep "$WINDOW"
sample >"$OUT/stat1"
peers=$(grep -c '"event":"added"' "$OUT/n0.log" || true)

join "$OUT/stat0" "$OUT/stat1" | awk -v w="$WINDOW" -v hz="$(getconf CLK_TCK)" \
    -v n="$NODES" -v peers="$peers" -v bin="$BIN" '
    function median(a, k,   i, j, t) {
        for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    {
        k++
        cpu[k] = ($6 - $2) / hz / w * 60
        sch[k] = ($7 - $3) / 1e9 / w * 60
        vol[k] = ($8 - $4) / w
        inv[k] = ($9 - $5) / w
        printf "pid %-8s cpu_s_per_min %.4f sched_s_per_min %.4f vol_ctxsw_per_s %.1f invol_ctxsw_per_s %.1f\n", $1, cpu[k], sch[k], vol[k], inv[k]
    }
    END {
        printf "\n%s: %d nodes, window %d s, node 0 saw %d peers added\n", bin, n, w, peers
        printf "median cpu_s_per_min %.4f  sched_s_per_min %.4f  vol_ctxsw_per_s %.1f  invol_ctxsw_per_s %.1f\n", median(cpu, k), median(sch, k), median(vol, k), median(inv, k)
    }'
echo "logs: $OUT"
