#!/usr/bin/env bash
# The whole test suite: dependencies, a -Werror build with AddressSanitizer
# and UBSan, every unit and integration suite, a bounded fuzzing run and the
# RPC benchmark (figures printed, never asserted).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BERTH_TEST_BUILD:-$src/build-ci}
fuzz_seconds=${BERTH_FUZZ_SECONDS:-60}

"$src/scripts/deps.sh"

echo "== build (Werror, ASan+UBSan)"
"$src/scripts/build.sh" "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBERTH_WERROR=ON -DBERTH_SANITIZE=ON

echo "== fuzzing the frame reader and decoder for ${fuzz_seconds}s"
if [ -f "$src/test/fuzz/run.sh" ]; then
  # Only the fuzz target and the protocol library it tests: the rest of
  # the tree has nothing to do with it.
  CC=clang CXX=clang++ cmake -S "$src" -B "$build-fuzz" -G Ninja \
    -DBERTH_FUZZ=ON -DBERTH_BUILD_TESTS=OFF -DBERTH_BUILD_BENCH=OFF >/dev/null
  cmake --build "$build-fuzz" -j "$(nproc)" --target fuzz_frame
  "$src/test/fuzz/run.sh" "$build-fuzz" "$fuzz_seconds"
fi

echo "== RPC benchmark on an optimised build (figures only)"
cmake -S "$src" -B "$build-release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DBERTH_BUILD_TESTS=OFF >/dev/null
cmake --build "$build-release" -j "$(nproc)" \
  --target berthd berth-varlink-load berth-varlink-echo
RPC_SECONDS=1 "$src/bench/rpc.sh" "$build-release"

echo "== test suites"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$build" --output-on-failure -j 2
