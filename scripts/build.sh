#!/usr/bin/env bash
# Configures and builds berth. Usage: scripts/build.sh [BUILD_DIR] [cmake args]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shift || true
cmake -S "$src" -B "$build" -G Ninja "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
