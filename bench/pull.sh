#!/usr/bin/env bash
# bench/pull.sh BUILD_DIR [--debian] [--no-list500 | --list-only] [--runs N]
#
# Image pull benchmark (issue 3, item 7): berth against Debian's podman, skopeo and the
# floor (curl + tar), side by side in one run, from a docker-registry on 127.0.0.1.
# See bench/README.md, "Pull benchmark".
#
# For each image (busybox: 1 layer; busybox5: 5 layers; with --debian the Debian minbase
# image, ~58 MB gzip), after PULL_WARMUP untimed rounds, N rounds; each round runs every
# tool once, each from an EMPTY store:
#   berth     a fresh berthd (own --root/--runroot) per run, started before the clock;
#             timed: `berth pull -q --tls-verify=false REF`; RSS: berthd's VmHWM after the
#             pull, the client's max RSS beside it
#   podman    podman --root/--runroot fresh dirs, --storage-driver overlay, its own
#             containers.conf / registries.conf / storage.conf (CONTAINERS_*), pull -q
#   skopeo    skopeo copy docker://REF dir:FRESH
#   curl+tar  curl the manifest and config, every layer `curl | tar -xz` into a fresh dir
#             (layers in parallel, as berth does); no digest verification
# Wall time from the shell (EPOCHREALTIME around the command), peak RSS from
# /usr/bin/time -f %M (the largest single process). Then (unless --no-list500)
# PULL_LIST_N tiny distinct images are pushed, pulled into one berthd 8 at a time, and
# io.podman.ListImages is timed with bench/berth-varlink-load (1 connection, sequential),
# then again right after each of PULL_LIST_CHANGES TagImage calls (the list must show it)
# and after each of as many CreateContainer and RemoveContainer calls (the list must count
# the image's containers).
# --list-only runs just that ListImages step (no timed pulls).
#
# Environment knobs (defaults in brackets):
#   PULL_RUNS [5]        timed rounds per image (--runs N overrides)
#   PULL_WARMUP [1]      untimed rounds per image first
#   PULL_FIXTURES [BUILD_DIR/bench/pull-fixtures]  images.py cache directory
#   PULL_LIST_N [500]    images in the ListImages step
#   PULL_LIST_CALLS [200] ListImages calls
#   PULL_LIST_CHANGES [50] ListImages calls each after a TagImage, and twice as many
#                        each after a container create or remove (from python3)
#   PULL_PARALLEL [8]    concurrent `berth pull`s while filling the ListImages store
#   BERTHD [BUILD_DIR/cmd/berthd], BERTH [BUILD_DIR/cmd/berth]
#
# Exit status: 0 if every pull succeeded and gave the fixture's image ID (berth, podman),
# the right blobs (skopeo, curl+tar), and the ListImages step saw every image and no
# error; 1 otherwise; 2 on a usage or set-up problem. Missed goals are reported, not
# failed.
set -uo pipefail
export LC_ALL=C

usage() { echo "usage: $0 BUILD_DIR [--debian] [--no-list500 | --list-only] [--runs N]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
BUILD=$(cd "$1" && pwd) || usage
shift
DEBIAN=0
LIST=1
PULLS=1
RUNS=${PULL_RUNS:-5}
while [[ $# -gt 0 ]]; do
    case $1 in
        --debian) DEBIAN=1 ;;
        --no-list500) LIST=0 ;;
        --list500) LIST=1 ;;
        --list-only) LIST=1; PULLS=0 ;;
        --runs) [[ $# -ge 2 ]] || usage; RUNS=$2; shift ;;
        *) usage ;;
    esac
    shift
done
((LIST || PULLS)) || usage
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || usage

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BERTHD=${BERTHD:-$BUILD/cmd/berthd}
BERTH=${BERTH:-$BUILD/cmd/berth}
LOAD=$BUILD/bench/berth-varlink-load
WARMUP=${PULL_WARMUP:-1}
FIXTURES=${PULL_FIXTURES:-$BUILD/bench/pull-fixtures}
LIST_N=${PULL_LIST_N:-500}
LIST_CALLS=${PULL_LIST_CALLS:-200}
LIST_CHANGES=${PULL_LIST_CHANGES:-50}
PARALLEL=${PULL_PARALLEL:-8}

for b in "$BERTHD" "$BERTH"; do
    [[ -x $b ]] || { echo "pull.sh: missing $b (build berthd and berth first)" >&2; exit 2; }
done
if (( LIST )) && [[ ! -x $LOAD ]]; then
    echo "pull.sh: missing $LOAD (build berth-varlink-load, or pass --no-list500)" >&2
    exit 2
fi
for c in podman skopeo curl tar docker-registry python3; do
    command -v "$c" >/dev/null || { echo "pull.sh: $c is not installed (scripts/deps.sh)" >&2; exit 2; }
done
[[ -x /usr/bin/time ]] || { echo "pull.sh: /usr/bin/time is missing (package time)" >&2; exit 2; }
if [[ $(id -u) != 0 ]]; then
    echo "pull.sh: run as root (podman's overlay storage and berthd's layer owners need it)" >&2
    exit 2
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-pull.XXXXXX") || exit 2
PIDS=()
REG_PID=""
REG_CHILD=""

# Mount points at or below $1 (deepest first).
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}
unmount_under() {
    local m
    while read -r m; do
        [[ -n $m ]] || continue
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null ||
            echo "pull.sh: could not unmount $m" >&2
    done < <(mounts_under "$1")
}
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
    for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    [[ -n $REG_PID ]] && stop_pid "$REG_PID"
    # The registry helper stops its docker-registry on SIGTERM; if it could not, do it.
    if [[ -n $REG_CHILD ]] && kill -0 "$REG_CHILD" 2>/dev/null; then
        kill -TERM "$REG_CHILD" 2>/dev/null; sleep 0.5; kill -KILL "$REG_CHILD" 2>/dev/null
    fi
    unmount_under "$TMP"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILS=()
fail() { FAILS+=("$*"); echo "pull.sh: FAIL: $*" >&2; }
now_us() { local t=$EPOCHREALTIME; echo $((10#${t/./})); }
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
jfield() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): d=d[k]
print(d)' "$@"; }

LOAD_BEFORE=$(loadavg)

# ---------------------------------------------------------------- fixtures and registry
echo "pull.sh: building fixtures in $FIXTURES$( ((DEBIAN)) && echo " (with Debian: ~1 min the first time)")" >&2
DEB_ARG=()
((DEBIAN)) && DEB_ARG=(--debian)
python3 "$REPO/test/fixtures/images.py" build "$FIXTURES" "${DEB_ARG[@]}" --quiet ||
    { echo "pull.sh: images.py build failed" >&2; exit 2; }

IMAGES=(busybox busybox5)
((DEBIAN)) && IMAGES+=(debian)
echo "pull.sh: starting the registry and pushing ${IMAGES[*]}$( ((LIST)) && echo " and $LIST_N tiny images")" >&2
TINY_ARG=()
((LIST)) && TINY_ARG=(--tiny "$LIST_N")
TMPDIR=$TMP python3 "$HERE/pull_registry.py" serve "$FIXTURES" "$TMP/registry.json" \
    "${DEB_ARG[@]}" "${TINY_ARG[@]}" \
    >"$TMP/registry.log" 2>&1 &
REG_PID=$!
for ((i = 0; i < 3000; i++)); do
    [[ -f $TMP/registry.json ]] && break
    if ! kill -0 "$REG_PID" 2>/dev/null; then
        echo "pull.sh: the registry helper exited; its log:" >&2
        sed 's/^/  /' "$TMP/registry.log" >&2
        exit 2
    fi
    sleep 0.1
done
[[ -f $TMP/registry.json ]] || { echo "pull.sh: registry not ready after 300 s" >&2; exit 2; }
REG_CHILD=$(jfield "$TMP/registry.json" pid)
URL=$(jfield "$TMP/registry.json" url)
declare -A CONFIG NLAYERS SIZE
for img in "${IMAGES[@]}"; do
    CONFIG[$img]=$(jfield "$TMP/registry.json" "images.$img.config")
    NLAYERS[$img]=$(jfield "$TMP/registry.json" "images.$img.layers")
    SIZE[$img]=$(jfield "$TMP/registry.json" "images.$img.size")
done

# ---------------------------------------------------------------- the floor: curl + tar
# floor URL NAME DEST: manifest, config, then each layer streamed into tar (in parallel).
FLOOR_SRC='
set -o pipefail
base=http://$1/v2/$2; dest=$3
m=$(curl -sSf -H "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" "$base/manifests/latest") || exit 1
# parsed with bash built-ins only (no grep/sed processes): the first digest after
# "config" is the config blob, every digest after "layers" a layer
rest=${m#*\"config\"}
[[ $rest =~ (sha256:[0-9a-f]{64}) ]] || exit 1
cfg=${BASH_REMATCH[1]}
rest=${m#*\"layers\"}
layers=()
while [[ $rest =~ (sha256:[0-9a-f]{64}) ]]; do
    layers+=("${BASH_REMATCH[1]}")
    rest=${rest#*"${BASH_REMATCH[1]}"}
done
curl -sSf -o "$dest/config.json" "$base/blobs/$cfg" &
cpid=$!
i=0; pids=()
for d in "${layers[@]}"; do
    case $m in *zstd*) z=--zstd ;; *) z=-z ;; esac
    (mkdir "$dest/$i" && curl -sSf "$base/blobs/$d" | tar -x $z -f - -C "$dest/$i") &
    pids+=($!); i=$((i + 1))
done
rc=0
wait $cpid || rc=1
for p in "${pids[@]}"; do wait $p || rc=1; done
exit $rc
'

# ---------------------------------------------------------------- one run of each tool
# Each sets MS (wall ms), RSS (KB), CPU (user + system ms; for berth berthd's and the
# client's) and for berth CLIENT_RSS (KB); returns non-zero on a failed check (already
# recorded with fail).
MS=0; RSS=0; CPU=0; CLIENT_RSS=0
HZ=$(getconf CLK_TCK)
# read_time FILE: /usr/bin/time's "%M %U %S" (its last line) -> RSS, CPU
read_time() {
    local l
    l=$(tail -n1 "$1" 2>/dev/null)
    RSS=$(awk '{ print $1 }' <<<"$l")
    CPU=$(awk '{ printf "%.0f", ($2 + $3) * 1000 }' <<<"$l")
}
# cpu_ticks PID: utime + stime of a live process, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }
elapsed_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

start_berthd() { # DIR -> BPID
    local d=$1 i
    "$BERTHD" --address "unix:$d/sock" --root "$d/root" --runroot "$d/run" --log-level warn \
        >"$d/berthd.log" 2>&1 &
    BPID=$!
    PIDS+=("$BPID")
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$BPID" 2>/dev/null; then
            echo "pull.sh: berthd exited during start-up; its log:" >&2
            sed 's/^/  /' "$d/berthd.log" >&2
            return 1
        fi
        [[ -S $d/sock ]] && "$BERTH" --address "unix:$d/sock" version >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "pull.sh: berthd did not answer within 10 s" >&2
    return 1
}
stop_berthd() {
    stop_pid "$BPID"
    unset 'PIDS[-1]'
}

run_berth() { # IMG DIR
    local img=$1 d=$2 t0 t1 rc id n c0 c1
    mkdir -p "$d"
    start_berthd "$d" || { fail "$img berth: berthd did not start"; return 1; }
    c0=$(cpu_ticks "$BPID")
    t0=$(now_us)
    /usr/bin/time -f "%M %U %S" -o "$d/time" "$BERTH" --address "unix:$d/sock" pull -q --tls-verify=false \
        "$URL/$img:latest" >"$d/out" 2>"$d/err"
    rc=$?
    t1=$(now_us)
    MS=$(elapsed_ms "$t0" "$t1")
    c1=$(cpu_ticks "$BPID")
    read_time "$d/time"
    CLIENT_RSS=$RSS
    RSS=$(rss_kb "$BPID" VmHWM)
    CPU=$(awk -v c="$CPU" -v a="$c0" -v b="$c1" -v hz="$HZ" 'BEGIN { printf "%.0f", c + (b - a) * 1000 / hz }')
    stop_berthd
    id=$(tail -n1 "$d/out")
    n=$(find "$d/root/layers" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)
    if ((rc != 0)); then
        fail "$img berth: exit $rc: $(tr '\n' ' ' <"$d/err" | head -c 400)"; return 1
    elif [[ $id != "${CONFIG[$img]#sha256:}" ]]; then
        fail "$img berth: image ID '$id', expected ${CONFIG[$img]#sha256:}"; return 1
    elif ((n != NLAYERS[$img])); then
        fail "$img berth: $n layer directories in the store, expected ${NLAYERS[$img]}"; return 1
    fi
    return 0
}

run_podman() { # IMG DIR
    local img=$1 d=$2 t0 t1 rc id
    mkdir -p "$d"/{root,rr,tmp,static,volumes,networks}
    cat >"$d/containers.conf" <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
tmp_dir = "$d/tmp"
static_dir = "$d/static"
volume_path = "$d/volumes"

[network]
network_config_dir = "$d/networks"
EOF
    cat >"$d/registries.conf" <<EOF
unqualified-search-registries = []

[[registry]]
location = "$URL"
insecure = true
EOF
    cat >"$d/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$d/root"
runroot = "$d/rr"
EOF
    t0=$(now_us)
    CONTAINERS_CONF=$d/containers.conf CONTAINERS_REGISTRIES_CONF=$d/registries.conf \
        CONTAINERS_STORAGE_CONF=$d/storage.conf TMPDIR=$d/tmp \
        /usr/bin/time -f "%M %U %S" -o "$d/time" podman --root "$d/root" --runroot "$d/rr" \
        --storage-driver overlay pull -q --tls-verify=false "$URL/$img:latest" >"$d/out" 2>"$d/err"
    rc=$?
    t1=$(now_us)
    MS=$(elapsed_ms "$t0" "$t1")
    read_time "$d/time"
    unmount_under "$d"
    id=$(tail -n1 "$d/out")
    if ((rc != 0)); then
        [[ ${#d} -gt 47 ]] && echo "pull.sh: podman's runroot $d/rr is over 50 characters: set TMPDIR to a shorter directory" >&2
        fail "$img podman: exit $rc: $(tr '\n' ' ' <"$d/err" | head -c 400)"; return 1
    elif [[ $id != "${CONFIG[$img]#sha256:}" ]]; then
        fail "$img podman: image ID '$id', expected ${CONFIG[$img]#sha256:}"; return 1
    fi
    return 0
}

run_skopeo() { # IMG DIR
    local img=$1 d=$2 t0 t1 rc
    mkdir -p "$d/tmp"
    cat >"$d/registries.conf" <<EOF
[[registry]]
location = "$URL"
insecure = true
EOF
    t0=$(now_us)
    CONTAINERS_REGISTRIES_CONF=$d/registries.conf TMPDIR=$d/tmp \
        /usr/bin/time -f "%M %U %S" -o "$d/time" skopeo copy -q --src-tls-verify=false \
        "docker://$URL/$img:latest" "dir:$d/out" >"$d/stdout" 2>"$d/err"
    rc=$?
    t1=$(now_us)
    MS=$(elapsed_ms "$t0" "$t1")
    read_time "$d/time"
    if ((rc != 0)); then
        fail "$img skopeo: exit $rc: $(tr '\n' ' ' <"$d/err" | head -c 400)"; return 1
    elif [[ ! -s $d/out/${CONFIG[$img]#sha256:} ]]; then
        fail "$img skopeo: config blob ${CONFIG[$img]} missing in the dir: copy"; return 1
    fi
    return 0
}

run_floor() { # IMG DIR
    local img=$1 d=$2 t0 t1 rc sum n
    mkdir -p "$d/out"
    t0=$(now_us)
    /usr/bin/time -f "%M %U %S" -o "$d/time" bash -c "$FLOOR_SRC" floor "$URL" "$img" "$d/out" \
        >"$d/stdout" 2>"$d/err"
    rc=$?
    t1=$(now_us)
    MS=$(elapsed_ms "$t0" "$t1")
    read_time "$d/time"
    sum=$(sha256sum "$d/out/config.json" 2>/dev/null | cut -d' ' -f1)
    n=$(find "$d/out" -mindepth 1 -maxdepth 1 -type d -not -empty | wc -l)
    if ((rc != 0)); then
        fail "$img curl+tar: exit $rc: $(tr '\n' ' ' <"$d/err" | head -c 400)"; return 1
    elif [[ sha256:$sum != "${CONFIG[$img]}" ]]; then
        fail "$img curl+tar: config digest sha256:$sum, expected ${CONFIG[$img]}"; return 1
    elif ((n != NLAYERS[$img])); then
        fail "$img curl+tar: $n non-empty layer dirs, expected ${NLAYERS[$img]}"; return 1
    fi
    return 0
}

# ---------------------------------------------------------------- the runs
TOOLS=(berth podman skopeo curl+tar)
declare -A FN=([berth]=run_berth [podman]=run_podman [skopeo]=run_skopeo [curl+tar]=run_floor)
declare -A TIMES CPUS PEAK CPEAK
RUN_NO=0
NPROC=$(nproc)
# The images timed in pull rounds: none with --list-only.
TIMED=("${IMAGES[@]}")
((PULLS)) || TIMED=()
((PULLS)) && echo "pull.sh: registry $URL; $RUNS timed round(s) per image after $WARMUP warm-up round(s); load average $LOAD_BEFORE" >&2
for img in "${TIMED[@]}"; do
    for ((r = -WARMUP; r < RUNS; r++)); do
        for tool in "${TOOLS[@]}"; do
            # Short paths: podman refuses a runroot longer than 50 characters.
            RUN_NO=$((RUN_NO + 1))
            d=$TMP/$RUN_NO
            # Each tool starts with nothing left to write back: berth's
            # syncfs would otherwise also pay for the last tool's writes.
            sync
            if "${FN[$tool]}" "$img" "$d"; then
                if ((r >= 0)); then
                    TIMES[$img/$tool]+="$MS "
                    CPUS[$img/$tool]+="$CPU "
                    (( ${RSS:-0} > ${PEAK[$img/$tool]:-0} )) && PEAK[$img/$tool]=$RSS
                    if [[ $tool == berth ]] && (( ${CLIENT_RSS:-0} > ${CPEAK[$img]:-0} )); then
                        CPEAK[$img]=$CLIENT_RSS
                    fi
                fi
            fi
            # Removed at the end, not here: ext4 frees a big tree in the
            # background, and that would land on the next tool's clock.
            unmount_under "$d"
        done
        printf '.' >&2
    done
done
echo >&2

# stats "LIST" -> "median min"
stats() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
              m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.1f %.1f\n", m, v[1] }'
}
mb() { [[ -n ${1:-} && $1 != 0 ]] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' || echo -; }

LOAD_AFTER_PULLS=$(loadavg)
row() { printf '%-9s %-9s %10s %9s %8s  %-20s %-16s %s\n' "$@"; }
if ((PULLS)); then
    echo
    echo "pull benchmark: registry on $URL, $RUNS run(s) per tool and image, each from an empty store" \
        "($WARMUP warm-up round(s) first), $NPROC CPUs; load average $LOAD_BEFORE before, $LOAD_AFTER_PULLS after"
    row image tool "median ms" "min ms" "CPU ms" "peak RSS MB" "berth vs this" "goal"
    row --------- --------- ---------- --------- -------- -------------------- ---------------- ----------------
fi
for img in "${TIMED[@]}"; do
    read -r bmed _ <<<"$(stats "${TIMES[$img/berth]:-}")"
    label="$img"
    for tool in "${TOOLS[@]}"; do
        read -r med min <<<"$(stats "${TIMES[$img/$tool]:-}")"
        read -r cpu _ <<<"$(stats "${CPUS[$img/$tool]:-}")"
        rss=$(mb "${PEAK[$img/$tool]:-}")
        [[ $tool == berth ]] && rss="$rss (+$(mb "${CPEAK[$img]:-}") client)"
        ratio="" goal="" verdict=""
        if [[ $tool != berth && $med != - && $bmed != - ]]; then
            case $tool in
                podman)
                    ratio=$(awk -v p="$med" -v b="$bmed" 'BEGIN { if (p >= b) printf "%.2fx faster", p / b; else printf "%.2fx slower", b / p }')
                    verdict=$(awk -v p="$med" -v b="$bmed" 'BEGIN { print (p / b >= 1.5) ? "ok" : "MISS" }')
                    goal=">= 1.5x faster" ;;
                skopeo)
                    ratio=$(awk -v s="$med" -v b="$bmed" 'BEGIN { printf "%.2fx the time", b / s }')
                    verdict=$(awk -v s="$med" -v b="$bmed" 'BEGIN { print (b / s <= 1.5) ? "ok" : "MISS" }')
                    goal="<= 1.5x" ;;
                curl+tar)
                    ratio=$(awk -v s="$med" -v b="$bmed" 'BEGIN { printf "%.2fx the time", b / s }')
                    verdict=$(awk -v s="$med" -v b="$bmed" 'BEGIN { print (b / s <= 1.2) ? "ok" : "MISS" }')
                    goal="<= 1.2x" ;;
            esac
        fi
        row "$label" "$tool" "$med" "$min" "${cpu%.*}" "$rss" "$ratio" "$goal${verdict:+ $verdict}"
        label=""
    done
done
for img in "${TIMED[@]}"; do
    printf '%s: %s layer(s), %s MB compressed\n' "$img" "${NLAYERS[$img]}" \
        "$(awk -v s="${SIZE[$img]}" 'BEGIN { printf "%.1f", s / 1048576 }')"
done

# ---------------------------------------------------------------- ListImages with N images
if ((LIST)); then
    d=$TMP/list
    mkdir -p "$d"
    echo "pull.sh: pulling $LIST_N images into one berthd, $PARALLEL at a time" >&2
    if start_berthd "$d"; then
        t0=$(now_us)
        python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["tiny"]))' \
            "$TMP/registry.json" |
            xargs -P "$PARALLEL" -I{} "$BERTH" --address "unix:$d/sock" pull -q --tls-verify=false \
                "$URL/tiny:{}" >"$d/pulled" 2>"$d/pull.err"
        rc=$?
        t1=$(now_us)
        fill_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
        ((rc == 0)) || fail "ListImages: filling the store failed (xargs exit $rc): $(head -c 400 "$d/pull.err")"
        "$BERTH" --address "unix:$d/sock" images --format json >"$d/images.json" 2>"$d/images.err" ||
            fail "ListImages: berth images failed: $(head -c 400 "$d/images.err")"
        missing=$(python3 - "$TMP/registry.json" "$d/images.json" <<'EOF'
import json, sys
want = {v.split(":", 1)[1] for v in json.load(open(sys.argv[1]))["tiny"].values()}
try:
    have = {i["id"] for i in json.load(open(sys.argv[2]))}
except (ValueError, KeyError, TypeError) as e:
    print("unreadable ListImages output: %s" % e); sys.exit()
if want - have or len(have) != len(want):
    print("%d images listed, %d expected, %d missing" % (len(have), len(want), len(want - have)))
EOF
)
        [[ -z $missing ]] || fail "ListImages: $missing"
        out=$("$LOAD" --address "unix:$d/sock" --method io.podman.ListImages --connections 1 \
            --calls "$LIST_CALLS" --json 2>"$d/load.err")
        rc=$?
        jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" <<<"$1"; }
        p50=$(jget "$out" p50_us); p99=$(jget "$out" p99_us); errs=$(jget "$out" errors)
        calls=$(jget "$out" calls)
        if ((rc != 0)) || [[ $errs != 0 || $calls != "$LIST_CALLS" ]]; then
            fail "ListImages: load client exit $rc, errors ${errs:-?}, replies ${calls:-?} of $LIST_CALLS: $(head -c 400 "$d/load.err")"
        fi
        # Each round tags an image anew, then times the ListImages after it,
        # which must show the new name; then each round creates a container
        # of it and removes it, timing the ListImages after each, which must
        # count it.
        changed=$(python3 - "$d/sock" "$LIST_CHANGES" 2>"$d/changed.err" <<'EOF'
import json, socket, sys, time
conn = socket.socket(socket.AF_UNIX)
conn.connect(sys.argv[1])
pending = b""
def call(method, params):
    global pending
    conn.sendall(json.dumps({"method": "io.podman." + method,
                             "parameters": params}).encode() + b"\0")
    t0 = time.perf_counter()
    while b"\0" not in pending:
        pending += conn.recv(1 << 20)
    took = time.perf_counter() - t0
    msg, _, pending = pending.partition(b"\0")
    reply = json.loads(msg)
    if "error" in reply:
        sys.exit("%s: %s" % (method, reply))
    return reply["parameters"], took
images = call("ListImages", {})[0]["images"]
target = images[0]["id"]
times = []
for i in range(int(sys.argv[2])):
    name = "localhost/bench-change:%d" % (i % 2)
    call("TagImage", {"name": target, "tagged": name})
    out, took = call("ListImages", {})
    times.append(took)
    tags = next(img["repoTags"] for img in out["images"] if img["id"] == target)
    if name not in tags or len(out["images"]) != len(images):
        sys.exit("round %d: the list after tagging %s misses it" % (i, name))
def containers_of(out):
    return next(img["containers"] for img in out["images"] if img["id"] == target)
used = []
for i in range(int(sys.argv[2])):
    cid = call("CreateContainer", {"create": {"image": target,
                                              "command": ["true"]}})[0]["container"]
    out, took = call("ListImages", {})
    used.append(took)
    if containers_of(out) != 1:
        sys.exit("round %d: the list after a create counts %d containers"
                 % (i, containers_of(out)))
    call("RemoveContainer", {"name": cid})
    out, took = call("ListImages", {})
    used.append(took)
    if containers_of(out) != 0:
        sys.exit("round %d: the list after a removal counts %d containers"
                 % (i, containers_of(out)))
def p50_p99(v):
    v.sort()
    return "%.2f %.2f" % (v[len(v) // 2] * 1e3, v[len(v) * 99 // 100] * 1e3)
print(p50_p99(times), p50_p99(used))
EOF
)
        [[ $? == 0 && -n $changed ]] ||
            fail "ListImages after a change: $(head -c 400 "$d/changed.err")"
        read -r cp50 cp99 up50 up99 <<<"${changed:-- - - -}"
        hwm=$(rss_kb "$BPID" VmHWM)
        stop_berthd
        echo
        verdict=$(awk -v p="${p50:-1e9}" 'BEGIN { print (p < 2000) ? "ok" : "MISS" }')
        printf 'ListImages, %d images in the store (pushed in %ss, pulled in %ss, %d at a time):\n' \
            "$LIST_N" "$(jfield "$TMP/registry.json" tiny_push_s)" "$fill_s" "$PARALLEL"
        printf '  %d calls, 1 connection, sequential: p50 %s ms, p99 %s ms (goal: p50 < 2 ms %s); berthd VmHWM %s MB\n' \
            "$LIST_CALLS" "$(awk -v u="${p50:-0}" 'BEGIN { printf "%.2f", u / 1000 }')" \
            "$(awk -v u="${p99:-0}" 'BEGIN { printf "%.2f", u / 1000 }')" "$verdict" "$(mb "$hwm")"
        printf '  %d calls, each right after a TagImage: p50 %s ms, p99 %s ms\n' \
            "$LIST_CHANGES" "$cp50" "$cp99"
        printf '  %d calls, each right after a container create or remove: p50 %s ms, p99 %s ms\n' \
            "$((LIST_CHANGES * 2))" "$up50" "$up99"
    else
        fail "ListImages: berthd did not start"
    fi
fi

echo
echo "load average at the end: $(loadavg)"
if ((${#FAILS[@]})); then
    echo
    echo "pull.sh: ${#FAILS[@]} check(s) failed:"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo "pull.sh: all checks passed"
