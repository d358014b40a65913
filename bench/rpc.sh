#!/usr/bin/env bash
# bench/rpc.sh BUILD_DIR [--echo-only]
#
# Side-by-side varlink RPC benchmark: berthd against berth-varlink-echo (a
# responder that does no work, i.e. the load client's own ceiling).
# BUILD_DIR must hold cmd/berthd, bench/berth-varlink-load and
# bench/berth-varlink-echo. See bench/README.md, "RPC benchmark".
#
# Environment knobs (defaults in brackets):
#   RPC_SECONDS [2]   length of each scenario
#   RPC_WARMUP [0.2]  seconds at the start of each scenario left out of the figures
#   RPC_IDLE [1000]   connections in the idle-connection step
#   RPC_HOLD [2]      seconds the idle connections are held
#   RPC_CPUS [unset]  if set (e.g. "0" or "0-1"), run daemons and load client
#                     under taskset -c RPC_CPUS (steadier latency on small VMs)
#   RPC_GO_REF [0]    1: add a third target, Debian's Go reference server
#                     (varlink-go-certification, package varlink-go; podman 1.x
#                     served io.podman with that Go library). It has no io.podman,
#                     so it is called with org.varlink.service.GetInfo for
#                     GetVersion and describes org.varlink.certification.
#   BERTHD [BUILD_DIR/cmd/berthd]  daemon binary
#
# Exit status: 0 if every run saw zero error replies, no transport errors and
# as many replies as calls; non-zero otherwise.
set -uo pipefail

usage() { echo "usage: $0 BUILD_DIR [--echo-only]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
ECHO_ONLY=0
[[ ${2:-} == --echo-only ]] && ECHO_ONLY=1
[[ $# -le 2 ]] || usage

LOAD=$BUILD/bench/berth-varlink-load
ECHO=$BUILD/bench/berth-varlink-echo
BERTHD=${BERTHD:-$BUILD/cmd/berthd}
SECS=${RPC_SECONDS:-2}
WARMUP=${RPC_WARMUP:-0.2}
IDLE=${RPC_IDLE:-1000}
HOLD=${RPC_HOLD:-2}
RUN=()
[[ -n ${RPC_CPUS:-} ]] && RUN=(taskset -c "$RPC_CPUS")

for b in "$LOAD" "$ECHO"; do
    [[ -x $b ]] || { echo "rpc.sh: missing $b (build the bench targets first)" >&2; exit 2; }
done
GO_REF=${RPC_GO_REF:-0}
if [[ $GO_REF == 1 ]] && ! command -v varlink-go-certification >/dev/null; then
    echo "rpc.sh: RPC_GO_REF=1 needs varlink-go-certification (apt-get install varlink-go)" >&2
    exit 2
fi
if (( ! ECHO_ONLY )) && [[ ! -x $BERTHD ]]; then
    echo "rpc.sh: missing $BERTHD (set BERTHD=..., or pass --echo-only)" >&2
    exit 2
fi

# Enough descriptors for the idle step; raised before the daemons start so
# they inherit it.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
ulimit -n "$hard" 2>/dev/null || true
if (( $(ulimit -n) < IDLE + 64 )); then
    echo "rpc.sh: ulimit -n is $(ulimit -n) (hard $hard); need $((IDLE + 64)) for $IDLE idle connections" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-rpc.XXXXXX") || exit 2
PIDS=()
cleanup() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILS=()
fail() { FAILS+=("$*"); }

# jget JSON KEY: value of a top-level scalar in the load client's flat JSON.
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# wait_ready NAME PID SOCKET METHOD: socket exists and one call succeeds.
wait_ready() {
    local name=$1 pid=$2 sock=$3 method=$4 i
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "rpc.sh: $name exited during start-up; its log:" >&2
            sed 's/^/  /' "$TMP/$name.log" >&2
            exit 1
        fi
        if [[ -S $sock ]] &&
            "$LOAD" --address "unix:$sock" --calls 1 --method "$method" --timeout 2 >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "rpc.sh: $name did not answer $method on $sock within 10 s; its log:" >&2
    sed 's/^/  /' "$TMP/$name.log" >&2
    exit 1
}

"${RUN[@]}" "$ECHO" --address "unix:$TMP/echo.sock" >"$TMP/echo.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
TARGETS=(echo)
declare -A SOCK=([echo]=$TMP/echo.sock) PID=([echo]=$ECHO_PID)
if (( ! ECHO_ONLY )); then
    "${RUN[@]}" "$BERTHD" --address "unix:$TMP/berthd.sock" --root "$TMP/root" --runroot "$TMP/run" --log-level warn \
        >"$TMP/berthd.log" 2>&1 &
    BERTHD_PID=$!
    PIDS+=("$BERTHD_PID")
    TARGETS+=(berthd)
    SOCK[berthd]=$TMP/berthd.sock
    PID[berthd]=$BERTHD_PID
fi
wait_ready echo "$ECHO_PID" "$TMP/echo.sock" io.podman.GetVersion
(( ECHO_ONLY )) || wait_ready berthd "$BERTHD_PID" "$TMP/berthd.sock" io.podman.GetVersion
if [[ $GO_REF == 1 ]]; then
    "${RUN[@]}" varlink-go-certification -varlink "unix:$TMP/go-ref.sock" >"$TMP/go-ref.log" 2>&1 &
    PID[go-ref]=$!
    PIDS+=("${PID[go-ref]}")
    SOCK[go-ref]=$TMP/go-ref.sock
    TARGETS+=(go-ref)
    wait_ready go-ref "${PID[go-ref]}" "$TMP/go-ref.sock" org.varlink.service.GetInfo
fi
(( ECHO_ONLY )) || BERTHD_RSS0=$(rss_kb "$BERTHD_PID" VmRSS)

declare -A RATE
row() { printf '%-7s %-34s %11s %9s %9s %9s %8s\n' "$@"; }
echo "varlink RPC benchmark: ${SECS}s per scenario (first ${WARMUP}s left out), $(nproc) CPUs${RPC_CPUS:+, pinned to CPUs $RPC_CPUS}, load client: 1 thread"
row target scenario calls/s "p50 us" "p99 us" "p99.9 us" "% echo"
row ------- ---------------------------------- ----------- --------- --------- --------- --------

# The Go reference server has no io.podman: call its nearest equivalents.
map_method() {
    if [[ $1 == go-ref && $2 == io.podman.GetVersion ]]; then echo org.varlink.service.GetInfo; else echo "$2"; fi
}
map_params() {
    if [[ $1 == go-ref && $2 == org.varlink.service.GetInterfaceDescription ]]; then
        echo '{"interface":"org.varlink.certification"}'
    else
        echo "$3"
    fi
}

# scenario TARGET LABEL METHOD PARAMS CONNECTIONS DEPTH
scenario() {
    local target=$1 label=$2 method params=$4 conns=$5 depth=$6 out rc
    params=$(map_params "$target" "$3" "$params")
    method=$(map_method "$target" "$3")
    out=$("${RUN[@]}" "$LOAD" --address "unix:${SOCK[$target]}" --connections "$conns" --depth "$depth" \
        --seconds "$SECS" --warmup "$WARMUP" --method "$method" --params "$params" --json 2>"$TMP/load.err")
    rc=$?
    local rate p50 p99 p999 errors cerr calls sent pct=""
    rate=$(jget "$out" calls_per_s); p50=$(jget "$out" p50_us); p99=$(jget "$out" p99_us)
    p999=$(jget "$out" p999_us); errors=$(jget "$out" errors); cerr=$(jget "$out" conn_errors)
    calls=$(jget "$out" calls); sent=$(jget "$out" sent)
    RATE[$target/$label]=${rate:-0}
    if [[ $target != echo && -n ${RATE[echo/$label]:-} ]]; then
        pct=$(awk -v a="${rate:-0}" -v b="${RATE[echo/$label]}" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b }')
    fi
    local nfails=${#FAILS[@]}
    if [[ -z $out ]]; then
        fail "$target $label: load client printed nothing (exit $rc): $(head -c 400 "$TMP/load.err")"
    elif (( rc != 0 )) || [[ $errors != 0 || $cerr != 0 || $calls != "$sent" || $calls == 0 ]]; then
        fail "$target $label: exit $rc, errors $errors, conn_errors $cerr, replies $calls of $sent calls;" \
            "$(tr '\n' ' ' <"$TMP/load.err" | head -c 400)"
    fi
    (( ${#FAILS[@]} == nfails )) || pct=FAIL
    row "$target" "$label" "$(printf %.0f "${rate:-0}")" "${p50:--}" "${p99:--}" "${p999:--}" "$pct"
}

both() { local t; for t in "${TARGETS[@]}"; do scenario "$t" "$@"; done; }

DESC='{"interface":"io.podman"}'
both "GetVersion 1 conn sequential" io.podman.GetVersion '{}' 1 1
both "GetVersion 64 conn sequential" io.podman.GetVersion '{}' 64 1
both "GetVersion 64 conn depth 16" io.podman.GetVersion '{}' 64 16
both "GetInterfaceDescription 1 conn" org.varlink.service.GetInterfaceDescription "$DESC" 1 1
both "GetInterfaceDescription 64 conn" org.varlink.service.GetInterfaceDescription "$DESC" 64 1
(( ECHO_ONLY )) || scenario berthd "GetInfo 1 conn sequential" io.podman.GetInfo '{}' 1 1

echo
echo "idle connections: $IDLE, each pinged once (GetVersion), held ${HOLD}s"
idlerow() { printf '%-7s %12s %12s %10s %12s\n' "$@"; }
idlerow target "RSS before" "RSS holding" "delta" "per conn"
for t in "${TARGETS[@]}"; do
    pid=${PID[$t]}
    before=$(rss_kb "$pid" VmRSS)
    "${RUN[@]}" "$LOAD" --address "unix:${SOCK[$t]}" --idle "$IDLE" --hold "$HOLD" \
        --method "$(map_method "$t" io.podman.GetVersion)" --json \
        >"$TMP/idle.out" 2>"$TMP/idle.err" &
    lpid=$!
    PIDS+=("$lpid")
    during=""
    for ((i = 0; i < 300; i++)); do
        if grep -qs '"ready"' "$TMP/idle.out"; then
            # Sample at once and again half-way through the hold; keep the larger.
            during=$(rss_kb "$pid" VmRSS)
            sleep "$(awk -v h="$HOLD" 'BEGIN { print h / 2 }')"
            again=$(rss_kb "$pid" VmRSS)
            [[ -n $again && -n $during ]] && (( again > during )) && during=$again
            break
        fi
        kill -0 "$lpid" 2>/dev/null || break
        sleep 0.05
    done
    wait "$lpid"
    rc=$?
    unset 'PIDS[-1]'
    res=$(grep '"mode":"idle"' "$TMP/idle.out")
    if [[ -z $during || -z $before ]]; then
        fail "$t idle: never got ready (exit $rc): $(tr '\n' ' ' <"$TMP/idle.err" | head -c 400)"
        idlerow "$t" "$(mb "${before:-0}") MB" - - -
        continue
    fi
    delta=$((during - before))
    idlerow "$t" "$(mb "$before") MB" "$(mb "$during") MB" "$(mb "$delta") MB" \
        "$(awk -v d="$delta" -v n="$IDLE" 'BEGIN { printf "%.1f KB", d / n }')"
    if (( rc != 0 )) || [[ $(jget "$res" errors) != 0 || $(jget "$res" closed_by_server) != 0 ]]; then
        fail "$t idle: exit $rc: $res $(tr '\n' ' ' <"$TMP/idle.err" | head -c 400)"
    fi
done

echo
for t in "${TARGETS[@]}"; do
    pid=${PID[$t]}
    if kill -0 "$pid" 2>/dev/null; then
        extra=""
        [[ $t == berthd ]] && extra=" (RSS after start-up $(mb "${BERTHD_RSS0:-0}") MB)"
        echo "$t at end: VmRSS $(mb "$(rss_kb "$pid" VmRSS)") MB, VmHWM $(mb "$(rss_kb "$pid" VmHWM)") MB$extra"
    else
        fail "$t is no longer running"
        sed 's/^/  /' "$TMP/$t.log" >&2
    fi
done

if (( ${#FAILS[@]} )); then
    echo
    echo "rpc.sh: ${#FAILS[@]} check(s) failed:"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo "rpc.sh: all checks passed"
