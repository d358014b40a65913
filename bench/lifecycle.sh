#!/usr/bin/env bash
# bench/lifecycle.sh BUILD_DIR [--quick]
#
# Container lifecycle benchmark (issue 4, item 9): create + start + wait + remove of
# /bin/true without a network, side by side in one run through
#   berth         berthd's varlink API, one kept-alive connection
#   runc run      of a busybox bundle (and crun run, in a private mount namespace in
#                 which /sys/fs/cgroup/unified is unmounted, so the host is untouched)
#   conmon + runc the cycle berthd drives: conmon with sync and start pipes, runc
#                 start, the exit file (inotify), runc delete (and conmon + crun)
#   podman        `podman run --rm --network none`, and create/start/wait/delete
#                 through `podman system service` (libpod REST, one kept-alive
#                 connection), both with podman's own temporary storage and runc
# then ListContainers with 100 and 1,000 containers (podman's containers/json at 100),
# and berthd's VmRSS/VmHWM with 1,000 containers, again after a restart and a full
# list. See bench/README.md, "Lifecycle benchmark".
#
# Every lifecycle round runs each tool once (order rotated per round), so load
# changes hit them alike. Timing and the clients are in bench/lifecycle_client.py.
#
# Environment knobs (defaults in brackets; --quick changes the ones marked *):
#   LIFECYCLE_ROUNDS [30, quick 10]*   timed rounds
#   LIFECYCLE_WARMUP [2, quick 1]*    untimed rounds first
#   LIFECYCLE_LIST_CALLS [200, quick 50]*         ListContainers calls per step
#   LIFECYCLE_PODMAN_LIST_CALLS [30, quick 10]*   podman containers/json calls
#   LIFECYCLE_SMALL [100]             containers in the first list step
#   LIFECYCLE_BIG [1000, quick 0]*    containers in the second list step and the
#                                     memory step (0: the restart and memory step
#                                     run with LIFECYCLE_SMALL containers)
#   LIFECYCLE_EXITED [5]              of those, started and exited
#   LIFECYCLE_PODMAN [1]              0: leave podman out
#   LIFECYCLE_FIXTURES [BUILD_DIR/bench/lifecycle-fixtures]  images.py cache
#   LIFECYCLE_KEEP [unset]            a directory to copy the raw results and
#                                     berthd's log into
#   BERTHD [BUILD_DIR/cmd/berthd]
#
# Exit status: 0 if every operation succeeded (every container exited 0, every
# list held every container, berthd restarted); 1 if one failed; 2 on a usage or
# set-up problem. Missed goals are reported, not failed.
set -uo pipefail
export LC_ALL=C

usage() { echo "usage: $0 BUILD_DIR [--quick]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
QUICK=0
if [[ $# -eq 2 ]]; then
    [[ $2 == --quick ]] || usage
    QUICK=1
fi

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
CLIENT=$HERE/lifecycle_client.py
BERTHD=${BERTHD:-$BUILD/cmd/berthd}
FIXTURES=${LIFECYCLE_FIXTURES:-$BUILD/bench/lifecycle-fixtures}
SMALL=${LIFECYCLE_SMALL:-100}
EXITED=${LIFECYCLE_EXITED:-5}
WITH_PODMAN=${LIFECYCLE_PODMAN:-1}
if ((QUICK)); then
    ROUNDS=${LIFECYCLE_ROUNDS:-10}
    WARMUP=${LIFECYCLE_WARMUP:-1}
    LIST_CALLS=${LIFECYCLE_LIST_CALLS:-50}
    PODMAN_LIST_CALLS=${LIFECYCLE_PODMAN_LIST_CALLS:-10}
    BIG=${LIFECYCLE_BIG:-0}
else
    ROUNDS=${LIFECYCLE_ROUNDS:-30}
    WARMUP=${LIFECYCLE_WARMUP:-2}
    LIST_CALLS=${LIFECYCLE_LIST_CALLS:-200}
    PODMAN_LIST_CALLS=${LIFECYCLE_PODMAN_LIST_CALLS:-30}
    BIG=${LIFECYCLE_BIG:-1000}
fi
IMAGE=localhost/busybox:latest

[[ -x $BERTHD ]] || { echo "lifecycle.sh: missing $BERTHD (build berthd first)" >&2; exit 2; }
for c in python3 runc conmon unshare skopeo; do
    command -v "$c" >/dev/null ||
        { echo "lifecycle.sh: $c is not installed (scripts/deps.sh)" >&2; exit 2; }
done
if [[ $(id -u) != 0 ]]; then
    echo "lifecycle.sh: run as root (containers, mounts and podman's storage need it)" >&2
    exit 2
fi
if ((WITH_PODMAN)) && ! command -v podman >/dev/null; then
    echo "lifecycle.sh: podman is not installed: its rows are left out" >&2
    WITH_PODMAN=0
fi
if ((BIG > 0 && BIG <= SMALL)); then
    echo "lifecycle.sh: LIFECYCLE_BIG ($BIG) must exceed LIFECYCLE_SMALL ($SMALL)" >&2
    exit 2
fi

# Short: podman refuses a runroot path longer than 50 characters.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-lc.XXXXXX") || exit 2
OUT=$TMP/out
mkdir -p "$OUT" "$TMP/b" "$TMP/w"
BPID=""
SVC_PID=""
# podman (cgroupfs manager) leaves its parent cgroups behind; remove them at the end
# if this run made them.
LIBPOD_CG_BEFORE=0
[[ -d /sys/fs/cgroup/memory/libpod_parent ]] && LIBPOD_CG_BEFORE=1

FAILS=()
fail() { FAILS+=("$*"); echo "lifecycle.sh: FAIL: $*" >&2; }
note() { echo "$*" >>"$OUT/notes.txt"; }
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
client() { python3 "$CLIENT" "$@"; }

mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_under() {
    local m
    while read -r m; do
        [[ -n $m ]] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
            echo "lifecycle.sh: could not unmount $m" >&2
    done < <(mounts_under "$1")
}
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
    for ((i = 0; i < 200; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

# Podman's command line with its own configuration and storage.
PD=$TMP/p
PODMAN=(env "CONTAINERS_CONF=$PD/containers.conf" "CONTAINERS_REGISTRIES_CONF=$PD/registries.conf"
    "CONTAINERS_STORAGE_CONF=$PD/storage.conf" "TMPDIR=$PD/tmp"
    podman --root "$PD/root" --runroot "$PD/rr" --storage-driver overlay)

cleanup() {
    local p
    if [[ -n $BPID ]] && kill -0 "$BPID" 2>/dev/null; then
        client clean --berth "$TMP/b/sock" >/dev/null 2>&1
        stop_pid "$BPID"
    fi
    if [[ -n $SVC_PID ]] && kill -0 "$SVC_PID" 2>/dev/null; then
        client clean --podman "$PD/api.sock" >/dev/null 2>&1
        stop_pid "$SVC_PID"
    fi
    if ((WITH_PODMAN)) && [[ -d $PD/root ]]; then
        timeout 60 "${PODMAN[@]}" rm -af >/dev/null 2>&1
    fi
    unmount_under "$TMP"
    rm -rf "$TMP"
    if ((!LIBPOD_CG_BEFORE)); then
        # Deepest first; rmdir only removes empty cgroups, so one in use stays.
        find /sys/fs/cgroup/*/libpod_parent -depth -type d -exec rmdir {} + 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_berthd() {
    local i
    "$BERTHD" --address "unix:$TMP/b/sock" --root "$TMP/b/root" --runroot "$TMP/b/run" \
        --log-level warn >>"$TMP/b/berthd.log" 2>&1 &
    BPID=$!
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$BPID" 2>/dev/null; then
            echo "lifecycle.sh: berthd exited during start-up; its log:" >&2
            sed 's/^/  /' "$TMP/b/berthd.log" >&2
            return 1
        fi
        [[ -S $TMP/b/sock ]] && client call "$TMP/b/sock" io.podman.GetVersion >/dev/null 2>&1 &&
            return 0
        sleep 0.05
    done
    echo "lifecycle.sh: berthd did not answer within 10 s" >&2
    return 1
}

write_podman_conf() {
    mkdir -p "$PD"/{root,rr,tmp,static,volumes,networks}
    cat >"$PD/containers.conf" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$PD/tmp"
static_dir = "$PD/static"
volume_path = "$PD/volumes"

[network]
network_config_dir = "$PD/networks"
EOF
    echo 'unqualified-search-registries = []' >"$PD/registries.conf"
    cat >"$PD/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PD/root"
runroot = "$PD/rr"
EOF
}

start_podman_service() {
    local i
    "${PODMAN[@]}" system service --time=0 "unix://$PD/api.sock" >"$PD/service.log" 2>&1 &
    SVC_PID=$!
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$SVC_PID" 2>/dev/null; then
            echo "lifecycle.sh: podman system service exited; its log:" >&2
            sed 's/^/  /' "$PD/service.log" >&2
            return 1
        fi
        [[ -S $PD/api.sock ]] && client list --podman "$PD/api.sock" --calls 1 >/dev/null 2>&1 &&
            return 0
        sleep 0.1
    done
    echo "lifecycle.sh: podman's REST service did not answer within 30 s" >&2
    return 1
}

# memory N LABEL: berthd's VmRSS and VmHWM now, with N containers
memory() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$(rss_kb "$BPID" VmRSS)" "$(rss_kb "$BPID" VmHWM)" \
        >>"$OUT/rss.tsv"
}

# list_step ENGINE N LABEL CALLS [GOAL_MS] [SEED]: list latency, every container listed
LIST_NO=0
list_step() {
    local eng=$1 n=$2 label=$3 calls=$4 goal=${5:-} seed=${6:-} sock file
    [[ $eng == berth ]] && sock=$TMP/b/sock || sock=$PD/api.sock
    LIST_NO=$((LIST_NO + 1))
    file=$OUT/list-$LIST_NO.json
    local args=(list "--$eng" "$sock" --calls "$calls" --expect "$n" --label "$label"
        ${goal:+--goal-ms "$goal"} ${seed:+--seed "$seed"})
    client "${args[@]}" >"$file" 2>"$TMP/list.err" || fail "$label: $(head -c 300 "$TMP/list.err")"
}

# fill ENGINE COUNT EXITED: create COUNT more containers, start EXITED of them
fill() {
    local eng=$1 sock out
    [[ $eng == berth ]] && sock=$TMP/b/sock || sock=$PD/api.sock
    if out=$(client fill "--$eng" "$sock" --image "$IMAGE" --count "$2" --exited "$3" 2>&1); then
        echo "lifecycle.sh: $eng: $out" >&2
        return 0
    fi
    fail "$eng: filling the store: $out"
    return 1
}

LOAD_BEFORE=$(loadavg)

# ---------------------------------------------------------------- set-up
echo "lifecycle.sh: fixtures in $FIXTURES" >&2
python3 "$REPO/test/fixtures/images.py" build "$FIXTURES" --quiet ||
    { echo "lifecycle.sh: images.py build failed" >&2; exit 2; }
ARCHIVE=$FIXTURES/busybox-docker.tar
client bundle "$ARCHIVE" "$TMP/bundle" ||
    { echo "lifecycle.sh: making the bundle failed" >&2; exit 2; }

start_berthd || exit 2
client call "$TMP/b/sock" io.podman.PullImage "{\"name\":\"docker-archive:$ARCHIVE\"}" \
    >"$TMP/pull.json" 2>"$TMP/pull.err" ||
    { echo "lifecycle.sh: loading busybox into berthd failed: $(cat "$TMP/pull.err")" >&2; exit 2; }

ROUND_ARGS=(--berth "$TMP/b/sock" --image "$IMAGE")
if ((WITH_PODMAN)); then
    write_podman_conf
    "${PODMAN[@]}" load -q -i "$ARCHIVE" >"$PD/load.out" 2>&1 ||
        { echo "lifecycle.sh: podman load failed: $(cat "$PD/load.out")" >&2; exit 2; }
    start_podman_service || exit 2
    PODMAN_JSON=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "${PODMAN[@]}")
    ROUND_ARGS+=(--podman "$PD/api.sock" --podman-image "$IMAGE" --podman-cmd "$PODMAN_JSON")
fi
if command -v crun >/dev/null; then
    ROUND_ARGS+=(--crun)
else
    ROUND_ARGS+=(--crun-skip "crun is not installed")
fi

# ---------------------------------------------------------------- lifecycle rounds
echo "lifecycle.sh: $ROUNDS rounds after $WARMUP warm-up round(s); load average $LOAD_BEFORE" >&2
client rounds --out "$OUT/rounds.json" --rounds "$ROUNDS" --warmup "$WARMUP" --work "$TMP/w" \
    --bundle "$TMP/bundle" "${ROUND_ARGS[@]}" ||
    { fail "lifecycle rounds: the driver failed"; exit 1; }
while read -r line; do
    [[ -n $line ]] && fail "$line"
done < <(python3 -c '
import json, sys
for t, r in json.load(open(sys.argv[1]))["tools"].items():
    for e in r["errors"][:3]:
        print("%s: %s" % (t, e[:400]))' "$OUT/rounds.json")
LOAD_AFTER_ROUNDS=$(loadavg)

# ---------------------------------------------------------------- lists and memory
echo "lifecycle.sh: $SMALL containers ($EXITED exited) in berthd$( ((WITH_PODMAN)) &&
    echo " and podman")" >&2
if fill berth "$SMALL" "$EXITED"; then
    list_step berth "$SMALL" "berth ListContainers, $SMALL containers" "$LIST_CALLS" 1 \
        "$( ((SMALL == 100)) && echo "111 ms")"
fi
if ((WITH_PODMAN)) && fill podman "$SMALL" "$EXITED"; then
    list_step podman "$SMALL" "podman containers/json?all, $SMALL" "$PODMAN_LIST_CALLS"
fi
N=$SMALL
if ((BIG > 0)); then
    echo "lifecycle.sh: $BIG containers in berthd" >&2
    if fill berth $((BIG - SMALL)) 0; then
        N=$BIG
        memory "$BIG" "$BIG containers: after creating them"
        list_step berth "$BIG" "berth ListContainers, $BIG containers" "$LIST_CALLS" 5 \
            "$( ((BIG == 1000)) && echo "1.2 s")"
        memory "$BIG" "$BIG containers: after $LIST_CALLS lists"
    fi
fi

# Restart: SIGTERM, start again on the same store, one full list.
echo "lifecycle.sh: restarting berthd with $N containers" >&2
stop_pid "$BPID"
t0=$(now_us)
if start_berthd; then
    t1=$(now_us)
    note "berthd restart with $N containers: answering after $(( (t1 - t0) / 1000 )) ms"
    list_step berth "$N" "berth ListContainers, $N, after a restart" 1
    memory "$N" "$N containers: after a restart and a full list"
else
    fail "berthd did not start again with $N containers"
fi

# ---------------------------------------------------------------- report
LOAD_END=$(loadavg)
note "load average: $LOAD_BEFORE before, $LOAD_AFTER_ROUNDS after the rounds," \
    "$LOAD_END at the end; $(nproc) CPUs"
versions=("$(runc --version | head -n1)" "$(conmon --version | head -n1)")
command -v crun >/dev/null && versions+=("$(crun --version | head -n1)")
((WITH_PODMAN)) && versions+=("$(podman --version)")
note "versions: $(printf '%s; ' "${versions[@]}")"
echo
client report "$OUT" || fail "the report could not be made"
if [[ -n ${LIFECYCLE_KEEP:-} ]]; then
    mkdir -p "$LIFECYCLE_KEEP" && cp -r "$OUT"/. "$TMP/b/berthd.log" "$LIFECYCLE_KEEP"/
fi

# ---------------------------------------------------------------- clean-up checks
if kill -0 "$BPID" 2>/dev/null; then
    out=$(client clean --berth "$TMP/b/sock" 2>&1) || fail "berth: removing the containers: $out"
fi
if ((WITH_PODMAN)) && [[ -n $SVC_PID ]]; then
    out=$(client clean --podman "$PD/api.sock" 2>&1) ||
        fail "podman: removing the containers: $out"
fi

echo
if ((${#FAILS[@]})); then
    echo "lifecycle.sh: ${#FAILS[@]} operation(s) failed:"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo "lifecycle.sh: every operation succeeded"
