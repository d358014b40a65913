#!/usr/bin/env bash
# bench/logs.sh BUILD_DIR [--quick]
#
# Log streaming benchmark (issue 5, item 8), berth and podman 4.3 side by side
# in one run:
#   A  a container writes 100 MiB of 16-byte lines (yes | head -c)
#   B  a container writes 100 MiB of 64 KiB lines
#      followed through berthd's GetContainerLogs with `more` (the follow is
#      in place before StartContainer) and through `podman logs -f`; every
#      line is checked; delivered MB/s, lines/s, the follower's CPU and RSS
#      growth, and the lag after the last line; and once under berthd with
#      no follower: what conmon writes alone, the ceiling of a follower
#   replay   each finished log read again from its start (berth: the same
#      call on the exited container; podman: `podman logs`): the engine's
#      own rate, without conmon in front
#   latency  a line every 10 ms, each line's receive time against conmon's
#      timestamp on it (p50/p99)
#   stats    100 GetContainerStats watchers (`more`) of 20 running
#      containers, each on its own connection: berthd's CPU
# See bench/README.md, "Log streaming benchmark". The follower and its checks
# are bench/logs_follow.cpp (berth-logs-follow); set-up helpers and the
# report are bench/logs_client.py.
#
# Environment knobs (defaults in brackets; --quick changes the ones marked *):
#   LOGS_ROUNDS [3, quick 1]*        rounds of A and B per engine
#   LOGS_MIB [100]                   MiB written by A and by B
#   LOGS_LATENCY_LINES [1000, quick 300]*   lines of the latency writer
#   LOGS_STATS_CONTAINERS [20]       running containers watched
#   LOGS_STATS_WATCHERS [5]          watchers per container
#   LOGS_STATS_SECONDS [10, quick 5]*        measured window
#   LOGS_PODMAN_REPLAY_A [1, quick 0]*   podman reads A's finished log again
#                                    in round 1 (about 45 s here)
#   LOGS_DELAY [1.5]                 seconds each writer sleeps before it
#                                    writes, so both followers are in place
#   LOGS_PODMAN [1]                  0: leave podman out
#   LOGS_FIXTURES [BUILD_DIR/bench/lifecycle-fixtures]  images.py cache
#   LOGS_KEEP [unset]                a directory to copy the raw results into
#   BERTHD [BUILD_DIR/cmd/berthd]
#   FOLLOW [BUILD_DIR/bench/berth-logs-follow]
#
# Exit status: 0 if every operation succeeded and berth lost no line; 1 if an
# operation failed or berth lost a line; 2 on a usage or set-up problem.
# Missed goals, and lines podman lost, are reported, not failed.
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
CLIENT=$HERE/logs_client.py
LC_CLIENT=$HERE/lifecycle_client.py
BERTHD=${BERTHD:-$BUILD/cmd/berthd}
FOLLOW=${FOLLOW:-$BUILD/bench/berth-logs-follow}
FIXTURES=${LOGS_FIXTURES:-$BUILD/bench/lifecycle-fixtures}
MIB=${LOGS_MIB:-100}
STATS_CONTAINERS=${LOGS_STATS_CONTAINERS:-20}
STATS_WATCHERS=${LOGS_STATS_WATCHERS:-5}
DELAY=${LOGS_DELAY:-1.5}
WITH_PODMAN=${LOGS_PODMAN:-1}
if ((QUICK)); then
    ROUNDS=${LOGS_ROUNDS:-1}
    LATENCY_LINES=${LOGS_LATENCY_LINES:-300}
    STATS_SECONDS=${LOGS_STATS_SECONDS:-5}
    PODMAN_REPLAY_A=${LOGS_PODMAN_REPLAY_A:-0}
    IDLE=2
else
    ROUNDS=${LOGS_ROUNDS:-3}
    LATENCY_LINES=${LOGS_LATENCY_LINES:-1000}
    STATS_SECONDS=${LOGS_STATS_SECONDS:-10}
    PODMAN_REPLAY_A=${LOGS_PODMAN_REPLAY_A:-1}
    IDLE=3
fi
IMAGE=localhost/busybox:latest
BYTES=$((MIB * 1048576))

# The writers (busybox sh in the fixture image). A: 15 characters and a
# newline per line; B: 65535 and a newline; latency: the line's number.
WRITE_A="sleep $DELAY; yes 0123456789abcde | head -c $BYTES"
CHECK_A=(--text 0123456789abcde --lines $((BYTES / 16)))
WRITE_B="sleep $DELAY; x=\$(head -c 65535 /dev/zero | tr '\\0' a); yes \"\$x\" | head -c $BYTES"
CHECK_B=(--text a --repeat 65535 --lines $((BYTES / 65536)))
WRITE_L="sleep $DELAY; i=0; while [ \$i -lt $LATENCY_LINES ]; do echo \$i; usleep 10000;"
WRITE_L+=" i=\$((i + 1)); done"
CHECK_L=(--seq "$LATENCY_LINES")

[[ -x $BERTHD ]] || { echo "logs.sh: missing $BERTHD (build berthd first)" >&2; exit 2; }
[[ -x $FOLLOW ]] ||
    { echo "logs.sh: missing $FOLLOW (ninja -C BUILD_DIR berth-logs-follow)" >&2; exit 2; }
for c in python3 runc conmon skopeo; do
    command -v "$c" >/dev/null ||
        { echo "logs.sh: $c is not installed (scripts/deps.sh)" >&2; exit 2; }
done
if [[ $(id -u) != 0 ]]; then
    echo "logs.sh: run as root (containers, mounts and podman's storage need it)" >&2
    exit 2
fi
if ((WITH_PODMAN)) && ! command -v podman >/dev/null; then
    echo "logs.sh: podman is not installed: its rows are left out" >&2
    WITH_PODMAN=0
fi
((BYTES % 65536 == 0)) || { echo "logs.sh: LOGS_MIB must be a whole number" >&2; exit 2; }

# Short: podman refuses a runroot path longer than 50 characters.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-lg.XXXXXX") || exit 2
OUT=$TMP/out
mkdir -p "$OUT" "$TMP/b"
BPID=""
LIBPOD_CG_BEFORE=0
[[ -d /sys/fs/cgroup/memory/libpod_parent ]] && LIBPOD_CG_BEFORE=1

FAILS=()
fail() { FAILS+=("$*"); echo "logs.sh: FAIL: $*" >&2; }
note() { echo "$*" >>"$OUT/notes.txt"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
client() { python3 "$CLIENT" "$@"; }

mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_under() {
    local m
    while read -r m; do
        [[ -n $m ]] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
            echo "logs.sh: could not unmount $m" >&2
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
    if [[ -n $BPID ]] && kill -0 "$BPID" 2>/dev/null; then
        python3 "$LC_CLIENT" clean --berth "$TMP/b/sock" >/dev/null 2>&1
        stop_pid "$BPID"
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
            echo "logs.sh: berthd exited during start-up; its log:" >&2
            sed 's/^/  /' "$TMP/b/berthd.log" >&2
            return 1
        fi
        [[ -S $TMP/b/sock ]] &&
            python3 "$LC_CLIENT" call "$TMP/b/sock" io.podman.GetVersion >/dev/null 2>&1 &&
            return 0
        sleep 0.05
    done
    echo "logs.sh: berthd did not answer within 10 s" >&2
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

# After a followed run, the finished log is read again through the same
# engine into $REPLAY (when set): the engine's own rate, without conmon.

# berth_run FILE WRITER CHECK...: one followed container through berthd.
berth_run() {
    local file=$1 writer=$2 id log rc
    shift 2
    if ! read -r id log < <(client create --berth "$TMP/b/sock" --image "$IMAGE" \
        --shell "$writer" 2>"$TMP/create.err") || [[ -z $id ]]; then
        fail "berth: creating a container: $(head -c 300 "$TMP/create.err")"
        return
    fi
    "$FOLLOW" --berth "$TMP/b/sock" --container "$id" --berthd-pid "$BPID" \
        --log-file "$log" "$@" >"$file" 2>"$TMP/follow.err"
    rc=$?
    if ((rc != 0)); then
        if [[ -s $file ]]; then
            fail "berth lost lines ($(basename "$file")): $(head -c 300 "$TMP/follow.err")"
        else
            fail "berth: following $(basename "$file"): $(head -c 300 "$TMP/follow.err")"
        fi
    fi
    if [[ -n $REPLAY ]]; then
        "$FOLLOW" --berth "$TMP/b/sock" --container "$id" --berthd-pid "$BPID" --replay \
            "$@" >"$REPLAY" 2>"$TMP/follow.err" ||
            fail "berth: replaying $(basename "$REPLAY"): $(head -c 300 "$TMP/follow.err")"
    fi
    python3 "$LC_CLIENT" call "$TMP/b/sock" io.podman.RemoveContainer \
        "{\"name\":\"$id\",\"force\":true}" >/dev/null 2>"$TMP/rm.err" ||
        fail "berth: removing $id: $(head -c 300 "$TMP/rm.err")"
}

# alone_run FILE WRITER: the writer under berthd without a follower; only
# the span conmon stamped, the ceiling for the followed runs.
alone_run() {
    local file=$1 writer=$2 id log
    if ! read -r id log < <(client create --berth "$TMP/b/sock" --image "$IMAGE" \
        --shell "$writer" --start 2>"$TMP/create.err") || [[ -z $id ]]; then
        fail "berth: creating a container: $(head -c 300 "$TMP/create.err")"
        return
    fi
    python3 "$LC_CLIENT" call "$TMP/b/sock" io.podman.WaitContainer "{\"name\":\"$id\"}" \
        >/dev/null 2>"$TMP/wait.err" ||
        fail "berth: waiting for $id: $(head -c 300 "$TMP/wait.err")"
    "$FOLLOW" --span-only "$log" >"$file" 2>"$TMP/follow.err" ||
        fail "reading $log: $(head -c 300 "$TMP/follow.err")"
    python3 "$LC_CLIENT" call "$TMP/b/sock" io.podman.RemoveContainer \
        "{\"name\":\"$id\",\"force\":true}" >/dev/null 2>"$TMP/rm.err" ||
        fail "berth: removing $id: $(head -c 300 "$TMP/rm.err")"
}

# podman_run FILE WRITER CHECK...: the same with podman start + podman logs -f.
podman_run() {
    local file=$1 writer=$2 id log rc
    shift 2
    if ! id=$("${PODMAN[@]}" create --network none "$IMAGE" sh -c "$writer" \
        2>"$TMP/create.err"); then
        fail "podman: creating a container: $(head -c 300 "$TMP/create.err")"
        return
    fi
    log=$("${PODMAN[@]}" inspect --format '{{.HostConfig.LogConfig.Path}}' "$id")
    "$FOLLOW" --podman "$id" --log-file "$log" "$@" -- "${PODMAN[@]}" \
        >"$file" 2>"$TMP/follow.err"
    rc=$?
    # podman 4.3's follow stops when the container exits: lines it lost are
    # figures in the report, not failures of this run.
    if ((rc != 0)) && [[ ! -s $file ]]; then
        fail "podman: following $(basename "$file"): $(head -c 300 "$TMP/follow.err")"
    fi
    if [[ -n $REPLAY ]]; then
        "$FOLLOW" --podman "$id" --replay "$@" -- "${PODMAN[@]}" >"$REPLAY" \
            2>"$TMP/follow.err" ||
            fail "podman: replaying $(basename "$REPLAY"): $(head -c 300 "$TMP/follow.err")"
    fi
    "${PODMAN[@]}" rm -f "$id" >/dev/null 2>"$TMP/rm.err" ||
        fail "podman: removing $id: $(head -c 300 "$TMP/rm.err")"
}

LOAD_BEFORE=$(loadavg)

# ---------------------------------------------------------------- set-up
echo "logs.sh: fixtures in $FIXTURES" >&2
python3 "$REPO/test/fixtures/images.py" build "$FIXTURES" --quiet ||
    { echo "logs.sh: images.py build failed" >&2; exit 2; }
ARCHIVE=$FIXTURES/busybox-docker.tar

start_berthd || exit 2
python3 "$LC_CLIENT" call "$TMP/b/sock" io.podman.PullImage \
    "{\"name\":\"docker-archive:$ARCHIVE\"}" >"$TMP/pull.json" 2>"$TMP/pull.err" ||
    { echo "logs.sh: loading busybox into berthd failed: $(cat "$TMP/pull.err")" >&2; exit 2; }
if ((WITH_PODMAN)); then
    write_podman_conf
    "${PODMAN[@]}" load -q -i "$ARCHIVE" >"$PD/load.out" 2>&1 ||
        { echo "logs.sh: podman load failed: $(cat "$PD/load.out")" >&2; exit 2; }
fi

# ---------------------------------------------------------------- throughput
ENGINES=(berth)
((WITH_PODMAN)) && ENGINES+=(podman)
RUNNERS=(alone "${ENGINES[@]}")
echo "{\"bytes\": $BYTES}" >"$OUT/meta.json"
echo "logs.sh: $ROUNDS round(s) of A and B ($MIB MiB each); load average $LOAD_BEFORE" >&2
for ((r = 1; r <= ROUNDS; r++)); do
    for w in A B; do
        # Rotate the order per round, so load changes hit all alike.
        k=$(( (r - 1) % ${#RUNNERS[@]} ))
        order=("${RUNNERS[@]:k}" "${RUNNERS[@]:0:k}")
        for eng in "${order[@]}"; do
            echo "logs.sh: round $r, $w, $eng" >&2
            if [[ $w == A ]]; then
                writer=$WRITE_A check=("${CHECK_A[@]}")
            else
                writer=$WRITE_B check=("${CHECK_B[@]}")
            fi
            REPLAY=$OUT/replay-$w-$eng-$r.json
            # podman reads a 100 MiB log of short lines at about 2.5 MB/s.
            [[ $eng == podman && $w == A ]] && ((r > 1 || !PODMAN_REPLAY_A)) && REPLAY=""
            [[ $eng == alone ]] && REPLAY=""
            "${eng}_run" "$OUT/run-$w-$eng-$r.json" "$writer" "${check[@]}"
        done
    done
done
LOAD_AFTER_RUNS=$(loadavg)

REPLAY=""

# ---------------------------------------------------------------- latency
echo "logs.sh: latency, $LATENCY_LINES lines 10 ms apart" >&2
for eng in "${ENGINES[@]}"; do
    "${eng}_run" "$OUT/latency-$eng.json" "$WRITE_L" "${CHECK_L[@]}"
done

# ---------------------------------------------------------------- stats
echo "logs.sh: stats, $STATS_CONTAINERS containers x $STATS_WATCHERS watchers" >&2
if client create --berth "$TMP/b/sock" --image "$IMAGE" --shell "exec sleep 100000" \
    --count "$STATS_CONTAINERS" --start >"$TMP/stats-ids" 2>"$TMP/create.err"; then
    mapfile -t ids < <(cut -d' ' -f1 "$TMP/stats-ids")
    client stats --berth "$TMP/b/sock" --pid "$BPID" --ids "${ids[@]}" \
        --watchers "$STATS_WATCHERS" --seconds "$STATS_SECONDS" --idle "$IDLE" \
        >"$OUT/stats.json" 2>"$TMP/stats.err" ||
        fail "stats watchers: $(head -c 300 "$TMP/stats.err") $(head -c 300 "$OUT/stats.json")"
else
    fail "stats: starting $STATS_CONTAINERS containers: $(head -c 300 "$TMP/create.err")"
fi

# ---------------------------------------------------------------- report
kill -0 "$BPID" 2>/dev/null || fail "berthd is gone"
note "berthd at the end: $(awk '/^Vm(RSS|HWM)/ { printf "%s %d MB  ", $1, $2 / 1024 }' \
    "/proc/$BPID/status" 2>/dev/null)"
note "load average: $LOAD_BEFORE before, $LOAD_AFTER_RUNS after A and B, $(loadavg) at the end;" \
    "$(nproc) CPUs"
versions=("$(runc --version | head -n1)" "$(conmon --version | head -n1)")
((WITH_PODMAN)) && versions+=("$(podman --version)")
note "versions: $(printf '%s; ' "${versions[@]}")"
echo
client report "$OUT" || fail "the report could not be made"
if [[ -n ${LOGS_KEEP:-} ]]; then
    mkdir -p "$LOGS_KEEP" && cp -r "$OUT"/. "$TMP/b/berthd.log" "$LOGS_KEEP"/
fi

echo
if ((${#FAILS[@]})); then
    echo "logs.sh: ${#FAILS[@]} operation(s) failed:"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo "logs.sh: every operation succeeded and berth lost no line"
