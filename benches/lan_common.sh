# Shared by lan_bench.sh and registry_lan.sh (sourced, not run): the log
# line, the cleanup trap, the release build of examples/node and the
# namespace LAN itself, and the helpers that signal and reap the nodes a
# script started (its start_node fills PID_OF and HOST_OF). The caller sets
# PREFIX, SWITCH, HOSTS, NET (the /24's first three octets), REPO,
# CARGO_TARGET_DIR and NAME (its own name, for messages), then calls
# lan_build_node and lan_build.
#
# The LAN: a namespace $SWITCH holding bridge br0, and HOSTS namespaces
# $PREFIX-h<i>, each with one veth (eth0, $NET.<i+1>/24) whose other end is
# a port of br0. Nothing is created in the root namespace, nothing is linked
# to a real interface. On exit, also on error or ^C, whatever runs in these
# namespaces is killed and they are deleted by exact name.

CREATED=()         # namespaces we created, in order
declare -A PID_OF  # label -> pid of a node process
declare -A HOST_OF # label -> host index

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Kills whatever runs in our namespaces (only our processes can be there),
# then deletes the namespaces by exact name, newest first.
lan_cleanup() {
    local code=$? ns pid i
    trap - EXIT INT TERM
    for ns in "${CREATED[@]}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    done
    sleep 0.2
    for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do
        ip netns delete "${CREATED[$i]}" 2>/dev/null ||
            log "cleanup: could not delete namespace ${CREATED[$i]}"
    done
    if ip netns list 2>/dev/null | awk '{print $1}' | grep -q "^$PREFIX-"; then
        log "cleanup: namespaces left behind:"
        ip netns list | grep "^$PREFIX-" >&2
        code=1
    else
        log "cleanup: all ${#CREATED[@]} namespaces deleted"
    fi
    exit "$code"
}
trap lan_cleanup EXIT
trap 'exit 130' INT TERM

# Builds examples/node in release and sets NODE_BIN; with BIN set, uses
# that binary instead and builds nothing (another build's node).
lan_build_node() {
    if [ -n "${BIN:-}" ]; then
        NODE_BIN=$BIN
        [ -x "$NODE_BIN" ] || { echo "$NAME: BIN=$NODE_BIN is not executable" >&2; exit 1; }
        log "using BIN=$NODE_BIN (not built)"
        return
    fi
    log "building examples/node (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$REPO" && cargo build --release --example node -q)
    NODE_BIN="$CARGO_TARGET_DIR/release/examples/node"
    [ -x "$NODE_BIN" ] || { echo "$NAME: $NODE_BIN missing" >&2; exit 1; }
}

# Builds the switch and the HOSTS hosts, and waits until every link is up.
lan_build() {
    local i ns
    log "building the LAN: $SWITCH + $HOSTS hosts"
    ip netns add "$SWITCH"
    CREATED+=("$SWITCH")
    ip -n "$SWITCH" link set lo up
    ip -n "$SWITCH" link add name br0 type bridge mcast_snooping 0
    ip -n "$SWITCH" link set br0 up
    for ((i = 0; i < HOSTS; i++)); do
        ns="$PREFIX-h$i"
        ip netns add "$ns"
        CREATED+=("$ns")
        # Made inside the switch namespace, the peer moved straight into the
        # host: neither end ever exists in the root namespace.
        ip -n "$SWITCH" link add name "vh$i" type veth peer name eth0 netns "$ns"
        ip -n "$SWITCH" link set "vh$i" master br0
        ip -n "$SWITCH" link set "vh$i" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$NET.$((i + 1))/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    for ((i = 0; i < HOSTS; i++)); do
        for _ in $(seq 100); do
            ip -n "$PREFIX-h$i" link show dev eth0 | grep -q LOWER_UP && break
            sleep 0.05
        done
    done
    sleep 1 # bridge ports leave the learning state
}

# ns_of PID: the namespace a process runs in ("" if none of ours / gone).
ns_of() { ip netns identify "$1" 2>/dev/null || true; }

# The callers' start_node records each node in PID_OF and HOST_OF.

# signal_node SIGNAL LABEL: signals a node we started, after checking that
# its pid still is a process in that node's namespace.
signal_node() {
    local sig=$1 label=$2 pid=${PID_OF[$2]:-}
    [ -n "$pid" ] || return 0
    if [ "$(ns_of "$pid")" = "$PREFIX-h${HOST_OF[$label]}" ]; then
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}

# running PID: the process exists and is not a zombie.
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# wait_gone LABEL: waits up to 3 s for the node to exit, then SIGKILLs it.
wait_gone() {
    local label=$1 pid=${PID_OF[$1]:-} i
    [ -n "$pid" ] || return 0
    for i in $(seq 60); do
        running "$pid" || break
        sleep 0.05
    done
    signal_node KILL "$label"
    unset "PID_OF[$label]"
}

stop_all() {
    local label
    for label in "${!PID_OF[@]}"; do signal_node TERM "$label"; done
    for label in "${!PID_OF[@]}"; do wait_gone "$label"; done
}

pids_of() {
    local label
    for label in "$@"; do echo "${PID_OF[$label]}"; done
}
