#!/usr/bin/env bash
# Installs everything berth needs to build, run and test, from Debian
# packages. Idempotent; refreshes the package lists only when needed.
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build pkg-config python3 git
  libcaf-dev libsimdjson-dev libuv1-dev liburing-dev libspdlog-dev
  libfmt-dev libboost-test-dev libsqlite3-dev libarchive-dev libzstd-dev
  libisal-dev
  libcurl4-openssl-dev libssl-dev
  # running containers: the OCI runtimes, their monitor, the init for --init
  runc crun conmon catatonit
  # tests: independent varlink clients, the fuzzer's compiler and runtime
  golang-go golang-github-varlink-go-dev varlink-go clang libclang-rt-14-dev
  # tests: a real registry on loopback and image fixtures built offline
  docker-registry skopeo umoci busybox-static mmdebstrap zstd openssl socat
  # benchmarks
  podman
)

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y -q --no-install-recommends "${packages[@]}"
}

missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' \
  "${packages[@]}" 2>&1 | grep -cv '^ii ' || true)
if [ "$missing" -eq 0 ]; then
  exit 0
fi
if ! apt_install; then
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt_install
fi
