#!/usr/bin/env bash
# shoal vs node-discovery@0.2.1-1 on a private virtual LAN, side by side.
#
#   sudo benches/lan_bench.sh [OUT_DIR]
#
# Needs root, iproute2, cargo, gcc, node (tests/node/node_modules installed:
# `cd tests/node && npm ci`) and python3. Builds examples/node in release
# (CARGO_TARGET_DIR, default /tmp/shoal-bench-target; or BIN=path/to/node
# runs that build and builds nothing), compiles benches/udp_pair.c and
# benches/idle_floor.c with gcc -O2 into OUT_DIR/_bin, builds its own LAN,
# runs every scenario for each implementation in turn, prints the results
# table (benches/lan_bench.py report) and leaves the raw JSON-line logs in
# OUT_DIR (default /tmp/shoal-lan-bench-<date>).
#
# Only the figures of issue 14 (idle CPU against the C floor and
# node-discovery, channel throughput against the C raw pair), ~6 minutes:
#
#   sudo SCENARIOS="cpu throughput" benches/lan_bench.sh [OUT_DIR]
#
# The LAN: a namespace "sbench-<pid>-sw" holding bridge br0, and HOSTS
# namespaces "sbench-<pid>-h<i>", each with one veth (eth0, 10.252.0.<i+1>/24)
# whose other end is a port of br0. Nothing is created in the root namespace,
# nothing is linked to a real interface: broadcasts stay inside. Every node,
# C floor and C raw UDP pair runs inside a host namespace (ip netns exec),
# and only there: udp_pair and idle_floor send where they are told. On exit,
# also on error or ^C, whatever still runs in these namespaces is killed and
# the namespaces are deleted by exact name.
#
# Variants (one column each in the report):
#   shoal      examples/node with shoal's defaults (hello 400 ms, node and
#              master timeout 2.6 s, check 400 ms, 5 missed hellos)
#   shoal-ndt  examples/node at node-discovery's timings (hello 1 s, check 2 s,
#              node and master timeout 2 s, --missed-hellos 0)
#   nd         node-discovery@0.2.1-1 unmodified (tests/node/peer.js), its
#              defaults (hello 1 s, check 2 s, node and master timeout 2 s)
#   floor      benches/idle_floor.c on every host at shoal's hello interval
#              (400 ms), datagrams the size of a shoal hello on this LAN
#              (captured in shoal's cpu scenario): the idle-CPU floor (cpu
#              scenario only)
#   floor-ndt  the same at node-discovery's hello interval (1 s)
#   udp-raw    benches/udp_pair.c, a C sender/receiver pair on the same two
#              hosts as shoal's throughput runs, interleaved with them (run
#              r of shoal, then run r of the pair), one datagram per sendto
#              / recv, the receiver only counting: the channel-throughput
#              reference. Its datagrams have the length of shoal's channel
#              datagrams for a TP_SIZE message, captured from shoal on a
#              third host before the runs (_sizes/channel.json).
#
# Throughput (shoal and nd; udp-raw with shoal): host 1 sends TP_COUNT
# messages of TP_SIZE bytes of JSON to host 0, yielding every TP_BATCH, as
# fast as it can; the rate is what the receiving application got per second
# from the sender's start to the last arrival. Then TP_PACED_RUNS paced runs:
# shoal's sender paced (examples/node --send-rate) to TP_PACE messages/s
# (default: TP_PACE_FRACTION x the median rate shoal's receiver sustained in
# the unpaced runs), and the C pair paced the same, each reporting its loss,
# which should be zero. The kernel's UDP counters of both hosts (per run,
# udp-before / udp-after) say where a loss happened. Every datagram is a
# broadcast, flooded by the bridge to all HOSTS hosts at the sender's
# expense: with HOSTS=20 the C pair is bound by its sender (about 20-30k/s
# here), with HOSTS=5 it went about twice as fast.
#
# CPU is on-CPU time from /proc/PID/task/*/schedstat (ns); clock ticks are
# reported too but are coarse (10 ms) and used for nothing. The cpu scenario
# runs CPU_ROUNDS times per variant, the rounds interleaved (round 1 of every
# variant, then round 2 of every variant, ...) so that a change of the
# host's background load hits every variant alike; ratios are per round.
#
# Knobs (environment): HOSTS (20), REPS (5: joins, leaves, crashes),
# FAILOVERS (4), STARTS (3), CPU_WINDOW (30 s), CPU_ROUNDS (3), TP_RUNS (3), TP_COUNT
# (50000), TP_SIZE (100 bytes of message JSON, as in issue 14), TP_BATCH
# (100, as in issue 14), TP_PACED_RUNS (2), TP_PACE (messages/s; default
# from the unpaced runs), TP_PACE_FRACTION (0.9), TP_CAPACITY (16384:
# shoal's receiver's --event-capacity), VARIANTS ("shoal
# shoal-ndt nd floor floor-ndt"; floor* need shoal's cpu scenario before
# them for the hello size, else a 3-node shoal cluster is measured for it),
# SCENARIOS ("start churn cpu throughput"), BIN (a built examples/node; no
# build), HELLO_SIZE / CHANNEL_SIZE (datagram lengths, instead of capturing
# them).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=(python3 "$REPO/benches/lan_bench.py")
HOSTS=${HOSTS:-20}
REPS=${REPS:-5}
FAILOVERS=${FAILOVERS:-4}
STARTS=${STARTS:-3}
CPU_WINDOW=${CPU_WINDOW:-30}
CPU_ROUNDS=${CPU_ROUNDS:-3}
TP_RUNS=${TP_RUNS:-3}
TP_COUNT=${TP_COUNT:-50000}
TP_SIZE=${TP_SIZE:-100}
TP_BATCH=${TP_BATCH:-100}
TP_PACED_RUNS=${TP_PACED_RUNS:-2}
TP_PACE=${TP_PACE:-}
TP_PACE_FRACTION=${TP_PACE_FRACTION:-0.9}
TP_CAPACITY=${TP_CAPACITY:-16384}
VARIANTS=${VARIANTS:-"shoal shoal-ndt nd floor floor-ndt"}
SCENARIOS=${SCENARIOS:-"start churn cpu throughput"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/shoal-bench-target}
OUT=${1:-/tmp/shoal-lan-bench-$(date +%Y%m%d-%H%M%S)}

PREFIX="sbench-$$"
SWITCH="$PREFIX-sw"
NET=10.252.0
BCAST=$NET.255
DIR=                # the current scenario's log directory
VARIANT=

now_ms() { date +%s%3N; }
mark() { echo "$1 ${2:-$(now_ms)}" >>"$DIR/marks"; }

# ------------------------------------------------------------------ cleanup

NAME=lan_bench.sh
# shellcheck source=benches/lan_common.sh
source "$REPO/benches/lan_common.sh" # log, the cleanup trap, lan_build_node, lan_build, ns_of

# ------------------------------------------------------------------ checks

[ "$(id -u)" = 0 ] || { echo "lan_bench.sh: run as root (ip netns)" >&2; exit 2; }
for tool in ip cargo gcc node python3; do
    command -v "$tool" >/dev/null || { echo "lan_bench.sh: $tool not found" >&2; exit 2; }
done
[ -d "$REPO/tests/node/node_modules/node-discovery" ] ||
    { echo "lan_bench.sh: run 'npm ci' in tests/node first" >&2; exit 2; }
[ "$HOSTS" -ge 5 ] && [ "$HOSTS" -le 250 ] || { echo "HOSTS must be 5..250" >&2; exit 2; }
[ "$FAILOVERS" -le 4 ] || { echo "FAILOVERS must be at most 4" >&2; exit 2; }

lan_build_node
mkdir -p "$OUT/_bin" "$OUT/_sizes"
# The C references, built for this host.
gcc -O2 -o "$OUT/_bin/udp_pair" "$REPO/benches/udp_pair.c"
gcc -O2 -o "$OUT/_bin/idle_floor" "$REPO/benches/idle_floor.c"
UDP_PAIR=$OUT/_bin/udp_pair
FLOOR_BIN=$OUT/_bin/idle_floor
has() { [[ " $1 " == *" $2 "* ]]; } # has LIST WORD

# ------------------------------------------------------------------ the LAN

lan_build

# ------------------------------------------------------------------ nodes

# start_node HOST LABEL [flags...]: starts a node of $VARIANT on host HOST,
# logging to $DIR/LABEL.log.
start_node() {
    local h=$1 label=$2
    shift 2
    local cmd
    case $VARIANT in
    shoal) cmd=("$NODE_BIN" --port 47001) ;;
    shoal-ndt) cmd=("$NODE_BIN" --port 47002 --hello-interval 1000 --check-interval 2000
        --node-timeout 2000 --master-timeout 2000 --missed-hellos 0) ;;
    nd) cmd=(node -r "$REPO/tests/node/shim.js" "$REPO/tests/node/peer.js" --port 47003) ;;
    # The floor takes the broadcast flag and ignores --id, --log and the rest.
    floor) cmd=("$FLOOR_BIN" --port 47004 --interval 400 --size "$HELLO_SIZE") ;;
    floor-ndt) cmd=("$FLOOR_BIN" --port 47005 --interval 1000 --size "$HELLO_SIZE") ;;
    *) echo "unknown variant $VARIANT" >&2; exit 2 ;;
    esac
    # ip netns exec execs the program: $! is the node's own pid.
    ip netns exec "$PREFIX-h$h" "${cmd[@]}" --broadcast "$BCAST" --id "$label" \
        --log "$DIR/$label.log" "$@" </dev/null >/dev/null 2>>"$DIR/stderr.txt" &
    PID_OF[$label]=$!
    disown "$!" # no job-status noise; reaped all the same
    HOST_OF[$label]=$h
}

settle() { # seconds to let elections settle: node-discovery checks every 2 s
    case $VARIANT in shoal | floor*) echo 3 ;; *) echo 5 ;; esac
}

# ------------------------------------------------------------------ scenarios

# STARTS times: 5 nodes (random weights) started at once; flaps, mesh time,
# and the RSS of each idle node once the cluster has run 8 s.
scenario_start() {
    local r i labels
    for ((r = 1; r <= STARTS; r++)); do
        DIR="$OUT/$VARIANT/start$r"
        mkdir -p "$DIR" "$OUT/$VARIANT/idle"
        labels=()
        for i in 0 1 2 3 4; do labels+=("s$i"); done
        for i in 0 1 2 3 4; do start_node "$i" "s$i"; done
        "${PY[@]}" wait-mesh "$DIR" "${labels[@]}" --timeout 15 || true
        sleep 8
        "${PY[@]}" stat $(pids_of "${labels[@]}") >"$OUT/$VARIANT/idle/stat-$r.json"
        # Stopping makes survivors promote (goodbyes, timeouts): not flaps.
        mark stop
        stop_all
    done
}

# Churn: 4 members (weights .9 .8 .7 .6); REPS times a joiner comes and
# leaves with SIGTERM, and another comes and is SIGKILLed. Then a fifth
# member (.5) and FAILOVERS times the master is SIGKILLed and restarted
# with a low weight.
scenario_churn() {
    DIR="$OUT/$VARIANT/churn"
    mkdir -p "$DIR"
    local members=(m0 m1 m2 m3) w=(0.9 0.8 0.7 0.6) r i j t
    for i in 0 1 2 3; do start_node "$i" "m$i" --weight "${w[$i]}"; done
    echo "_members ${members[*]}" >>"$DIR/marks"
    "${PY[@]}" wait-mesh "$DIR" "${members[@]}" --timeout 15
    "${PY[@]}" wait-event "$DIR" m0 promotion --timeout 15
    sleep 1
    for ((r = 1; r <= REPS; r++)); do
        for kind in leave crash; do
            j="j$kind$r"
            mark "join:$j"
            start_node 4 "$j" --weight 0.3
            "${PY[@]}" wait-mesh "$DIR" "${members[@]}" "$j" --timeout 15 || true
            # A random phase against the hello timers.
            sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
            sleep 0.3
            mark "$kind:$j"
            if [ "$kind" = leave ]; then signal_node TERM "$j"; else signal_node KILL "$j"; fi
            "${PY[@]}" wait-removed "$DIR" "$j" "${members[@]}" --timeout 15 || true
            wait_gone "$j"
        done
    done
    # Failover.
    start_node 4 m4 --weight 0.5
    local alive=(m0 m1 m2 m3 m4) master=m0 low=(0.09 0.08 0.07 0.06 0.05 0.04 0.03 0.02)
    "${PY[@]}" wait-mesh "$DIR" "${alive[@]}" --timeout 15 || true
    sleep 1
    for ((r = 0; r < FAILOVERS; r++)); do
        local h=${HOST_OF[$master]} survivors=() next
        for t in "${alive[@]}"; do [ "$t" = "$master" ] || survivors+=("$t"); done
        echo "_alive:$master ${alive[*]}" >>"$DIR/marks"
        sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
        t=$(now_ms)
        mark "failover:$master" "$t"
        signal_node KILL "$master"
        "${PY[@]}" wait-promoted "$DIR" "$t" "${survivors[@]}" --timeout 15 || true
        wait_gone "$master"
        # The successor: the highest weight among the survivors, which is
        # the next of m0..m4 (restarted nodes come back lower).
        next="m$((${master#m} + 1))"
        # Restart the killed one under a new name, below everyone.
        local label="${master}r$r"
        start_node "$h" "$label" --weight "${low[$r]}"
        alive=("${survivors[@]}" "$label")
        "${PY[@]}" wait-mesh "$DIR" "${alive[@]}" --timeout 15 || true
        sleep 1
        master=$next
    done
    stop_all
}

# 20 nodes (or HOSTS), random weights; CPU over CPU_WINDOW seconds once the
# cluster has settled.
scenario_cpu() {
    DIR="$OUT/$VARIANT/cpu20${ROUND:+-r$ROUND}"
    mkdir -p "$DIR"
    local labels=() i n=$((HOSTS < 20 ? HOSTS : 20))
    for ((i = 0; i < n; i++)); do
        labels+=("c$i")
        start_node "$i" "c$i"
    done
    case $VARIANT in
    floor*) ;; # no log, no peers: nothing to wait for
    *) "${PY[@]}" wait-mesh "$DIR" "${labels[@]}" --timeout 30 || true ;;
    esac
    if [ "$VARIANT" = shoal ] && [ -z "${HELLO_SIZE:-}" ]; then
        # A shoal hello on this LAN, 20 nodes: heard on host 0 beside its
        # node (shoal's socket has SO_REUSEPORT; a broadcast reaches both),
        # during the settling time.
        ip netns exec "$PREFIX-h0" "${PY[@]}" capture 47001 "$(settle)" >"$OUT/_sizes/hello.json"
    else
        sleep "$(settle)"
    fi
    "${PY[@]}" stat $(pids_of "${labels[@]}") >"$DIR/stat0.json"
    sleep "$CPU_WINDOW"
    "${PY[@]}" stat $(pids_of "${labels[@]}") >"$DIR/stat1.json"
    stop_all
}

# hello_size: the median length of the shoal hellos captured in shoal's cpu
# scenario, else of a 3-node shoal cluster's (hosts 0-2, heard on host 3).
hello_size() {
    local saved=$VARIANT i
    if [ ! -s "$OUT/_sizes/hello.json" ]; then
        VARIANT=shoal
        DIR="$OUT/_sizes/hello-cluster"
        mkdir -p "$DIR"
        for i in 0 1 2; do start_node "$i" "z$i"; done
        "${PY[@]}" wait-mesh "$DIR" z0 z1 z2 --timeout 15 >&2 || true
        ip netns exec "$PREFIX-h3" "${PY[@]}" capture 47001 3 >"$OUT/_sizes/hello.json"
        stop_all
        VARIANT=$saved
    fi
    "${PY[@]}" size "$OUT/_sizes/hello.json" median
}

# channel_size: the length of shoal's channel datagrams for a TP_SIZE
# message: host 1 sends 500 (paced, 2000/s) to host 0, and host 2 hears
# them (they are broadcast); the commonest length.
channel_size() {
    local saved=$VARIANT
    if [ ! -s "$OUT/_sizes/channel.json" ]; then
        VARIANT=shoal
        DIR="$OUT/_sizes/channel-run"
        mkdir -p "$DIR"
        start_node 0 rx --join ch
        "${PY[@]}" wait-event "$DIR" rx ready --timeout 15 >&2
        start_node 1 tx --send-channel ch --send-count 500 --send-size "$TP_SIZE" \
            --send-batch "$TP_BATCH" --send-delay 1000 --send-rate 2000
        ip netns exec "$PREFIX-h2" "${PY[@]}" capture 47001 2.5 >"$OUT/_sizes/channel.json"
        "${PY[@]}" wait-event "$DIR" tx send_done --timeout 30 >&2 || true
        stop_all
        VARIANT=$saved
    fi
    "${PY[@]}" size "$OUT/_sizes/channel.json" mode
}

# udp_counters DIR WHEN: the kernel's UDP counters (/proc/net/snmp, per
# namespace) of the receiving host 0 and the sending host 1, to DIR/udp-WHEN:
# where a lost datagram was lost (RcvbufErrors: the receiver's socket was
# full; SndbufErrors: the sender's).
udp_counters() {
    local h
    for h in 0 1; do
        echo "h$h $(ip netns exec "$PREFIX-h$h" cat /proc/net/snmp | grep '^Udp:' | tr '\n' ' ')"
    done >"$1/udp-$2"
}

# tp_node DIR [flags]: one throughput run of $VARIANT: host 1 sends
# TP_COUNT messages of TP_SIZE bytes to host 0 (broadcast, like every
# datagram), yielding every TP_BATCH.
tp_node() {
    DIR=$1
    shift
    mkdir -p "$DIR"
    # shoal's receiver buffers TP_CAPACITY messages for its consumer (the
    # default 1,024 is 8 ms at 120,000/s: a consumer descheduled that long
    # on these 2 shared cores loses the overflow, counted as events_lost).
    local rx=()
    [[ $VARIANT == shoal* ]] && rx=(--event-capacity "$TP_CAPACITY")
    start_node 0 rx --join ch "${rx[@]}"
    "${PY[@]}" wait-event "$DIR" rx ready --timeout 15
    udp_counters "$DIR" before
    start_node 1 tx --send-channel ch --send-count "$TP_COUNT" --send-size "$TP_SIZE" \
        --send-batch "$TP_BATCH" --send-delay 1500 "$@"
    "${PY[@]}" wait-event "$DIR" tx send_done --timeout 120 || true
    sleep 2 # the receiver drains its socket
    udp_counters "$DIR" after
    stop_all
}

# tp_raw DIR [--rate R]: one run of the C pair, on the same hosts, to the
# same broadcast address, with datagrams of CHANNEL_SIZE bytes.
tp_raw() {
    local dir=$1 pid_rx
    shift
    mkdir -p "$dir"
    # timeout: before its first datagram the receiver would wait forever.
    ip netns exec "$PREFIX-h0" timeout 120 "$UDP_PAIR" recv --port 47009 --count "$TP_COUNT" \
        --idle 1 >"$dir/rx.log" 2>>"$dir/stderr.txt" &
    pid_rx=$!
    for _ in $(seq 100); do grep -q ready "$dir/rx.log" 2>/dev/null && break; sleep 0.05; done
    udp_counters "$dir" before
    ip netns exec "$PREFIX-h1" "$UDP_PAIR" send --to "$BCAST" --port 47009 --count "$TP_COUNT" \
        --size "$CHANNEL_SIZE" "$@" >"$dir/tx.log" 2>>"$dir/stderr.txt" || true
    wait "$pid_rx" || true
    udp_counters "$dir" after
}

# Channel throughput, unpaced then (shoal) paced; shoal's runs each
# followed by a run of the C pair.
scenario_throughput() {
    local r pace
    if [ "$VARIANT" = shoal ]; then
        CHANNEL_SIZE=${CHANNEL_SIZE:-$(channel_size)}
        log "shoal's channel datagram for a $TP_SIZE-byte message: $CHANNEL_SIZE bytes"
        echo "channel_size $CHANNEL_SIZE" >>"$OUT/_sizes/used"
    fi
    for ((r = 1; r <= TP_RUNS; r++)); do
        tp_node "$OUT/$VARIANT/throughput/run$r"
        if [ "$VARIANT" = shoal ]; then
            tp_raw "$OUT/udp-raw/throughput/raw$r"
        fi
    done
    [ "$VARIANT" = shoal ] || return 0
    pace=${TP_PACE:-$("${PY[@]}" pace "$OUT/shoal/throughput" "$TP_PACE_FRACTION")}
    echo "pace $pace" >>"$OUT/_sizes/used"
    log "shoal: paced throughput x $TP_PACED_RUNS at $pace messages/s, each beside the C pair at it"
    for ((r = 1; r <= TP_PACED_RUNS; r++)); do
        tp_node "$OUT/shoal/throughput/prun$r" --send-rate "$pace"
        tp_raw "$OUT/udp-raw/throughput/praw$r" --rate "$pace"
    done
}

# ------------------------------------------------------------------ run

START=$(date +%s)
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: nproc=$(nproc); $(lscpu | grep 'Model name' | sed 's/  */ /g'); kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "shoal: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'); node $(node --version)"
    echo "node binary: $NODE_BIN"
    echo "settings: HOSTS=$HOSTS REPS=$REPS FAILOVERS=$FAILOVERS STARTS=$STARTS CPU_WINDOW=$CPU_WINDOW CPU_ROUNDS=$CPU_ROUNDS TP_RUNS=$TP_RUNS TP_COUNT=$TP_COUNT TP_SIZE=$TP_SIZE TP_BATCH=$TP_BATCH TP_PACED_RUNS=$TP_PACED_RUNS TP_PACE=${TP_PACE:-auto} TP_PACE_FRACTION=$TP_PACE_FRACTION"
    echo "variants: $VARIANTS; scenarios: $SCENARIOS"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

for VARIANT in $VARIANTS; do
    case $VARIANT in
    floor*)
        # The floor only idles: its CPU scenario alone.
        has "$SCENARIOS" cpu || continue
        HELLO_SIZE=${HELLO_SIZE:-$(hello_size)}
        echo "hello_size $HELLO_SIZE" >>"$OUT/_sizes/used"
        log "$VARIANT: CPU of 20 C floors ($HELLO_SIZE-byte datagrams) over ${CPU_WINDOW} s, round 1"
        ROUND=1 scenario_cpu
        continue
        ;;
    esac
    if has "$SCENARIOS" start; then
        log "$VARIANT: 5 nodes started at once x $STARTS"
        scenario_start
    fi
    if has "$SCENARIOS" churn; then
        log "$VARIANT: joins, leaves, crashes x $REPS; failovers x $FAILOVERS"
        scenario_churn
    fi
    if has "$SCENARIOS" cpu; then
        log "$VARIANT: CPU of a 20-node cluster over ${CPU_WINDOW} s, round 1"
        ROUND=1 scenario_cpu
    fi
    if has "$SCENARIOS" throughput && [ "$VARIANT" != shoal-ndt ]; then
        log "$VARIANT: channel throughput x $TP_RUNS"
        scenario_throughput
    fi
done
# The other CPU rounds, interleaved: every variant once per round.
if has "$SCENARIOS" cpu; then
    for ((ROUND = 2; ROUND <= CPU_ROUNDS; ROUND++)); do
        for VARIANT in $VARIANTS; do
            log "$VARIANT: CPU over ${CPU_WINDOW} s, round $ROUND"
            scenario_cpu
        done
    done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); run time $(($(date +%s) - START)) s" >>"$OUT/env.txt"
"${PY[@]}" report "$OUT" | tee "$OUT/report.md"
tail -1 "$OUT/env.txt" >&2
