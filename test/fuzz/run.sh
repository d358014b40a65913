#!/bin/sh
# Runs the frame fuzzer for a bounded time from a small seed corpus.
# Usage: test/fuzz/run.sh BUILD_DIR SECONDS
# Exits non-zero when the fuzzer finds a crash, leak or timeout; the input
# that caused it is kept in BUILD_DIR/fuzz-artifacts.
set -eu

if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
seconds=$2
fuzzer=$build/test/fuzz/fuzz_frame
if [ ! -x "$fuzzer" ]; then
  echo "$fuzzer is missing: configure with -DBERTH_FUZZ=ON and clang," \
       "then ninja -C $build fuzz_frame" >&2
  exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
corpus=$work/corpus
artifacts=$build/fuzz-artifacts
mkdir -p "$corpus" "$artifacts"

# Seed layout: method selector, limit selector (0: 16 MiB, 1: 64, 2: 1024,
# 3: 300), count of read sizes, that many little-endian u16 read sizes minus
# one, then the byte stream of NUL-terminated messages.
seed() {
  name=$1
  header=$2
  shift 2
  {
    printf "$header"
    for msg in "$@"; do
      printf '%s\000' "$msg"
    done
  } > "$corpus/$name"
}
seed version '\033\000\000' '{"method":"io.podman.GetVersion"}'
seed create '\012\000\002\003\000\017\000' \
  '{"method":"io.podman.CreateContainer","parameters":{"create":{"image":"alpine","command":["sh","-c","echo \"hi\\n\""],"env":{"A":"1"},"labels":{},"resources":{"cpus":1.5,"memory":1048576,"blkio_weight_device":[]},"id_mappings":{"uid_map":[{"container_id":0,"host_id":1000,"size":1}]}}}}'
seed search '\072\002\001\000\000' \
  '{"method":"io.podman.SearchImages","parameters":{"query":"alpine","limit":5,"tlsVerify":null,"filter":{"is_official":true,"star_count":3}}}'
seed pipelined '\000\000\001\004\000' \
  '{"method":"io.podman.ListContainers","more":true}' \
  '{"method":"io.podman.GetContainer","parameters":{"id":"c1"}}' \
  '{"method":"io.podman.StopContainer","parameters":{"name":"c1","timeout":-1}}' \
  '{"method":"io.podman.Commit","parameters":{"name":"c1","image_name":"x","changes":["CMD=/bin/sh"],"author":"\u00e9","message":"m","pause":true,"manifestType":"oci"}}'
seed bare_params '\065\003\000' '{"name":"c1","timeout":5}' '[1,2]' '"s"'
seed oversize '\000\001\000' \
  '{"method":"io.podman.GetInfo","parameters":{"padding":"0123456789012345678901234567890123456789"}}'
seed bad_types '\020\000\000' \
  '{"method":"io.podman.CreateContainer","parameters":{"create":{"resources":{"cpus":"x"}}}}' \
  '{"method":"io.podman.RestartContainer","parameters":{"timeout":9223372036854775808}}'

status=0
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"$fuzzer" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" || status=$?
if [ "$status" -ne 0 ]; then
  echo "fuzz_frame failed with status $status; inputs in $artifacts" >&2
fi
exit "$status"
