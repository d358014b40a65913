#!/usr/bin/env bash
# Fresh Debian 12 machine to a running berthd: installs the dependencies,
# builds, starts the daemon on its default socket in the background, then
# pulls a real Debian image from a registry started on loopback for the
# purpose and runs a container from it that prints its /etc/os-release.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
"$src/scripts/deps.sh"
"$src/scripts/build.sh" "$src/build" -DCMAKE_BUILD_TYPE=Release

# The client and the first container talk to the first address berthd is
# given, and the pid file goes to its run directory.
address=""
runroot=/run/berth
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --address | --varlink) [ -n "$address" ] || address=${args[i + 1]:-} ;;
    --address=* | --varlink=*) [ -n "$address" ] || address=${args[i]#*=} ;;
    --runroot) runroot=${args[i + 1]:-$runroot} ;;
    --runroot=*) runroot=${args[i]#*=} ;;
  esac
done
client=("$src/build/cmd/berth")
[ -z "$address" ] || client+=(--address "$address")
mkdir -p "$runroot"
pidfile=$runroot/berthd.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null &&
   grep -q berthd "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
  echo "stopping the berthd started earlier (pid $(cat "$pidfile"))"
  kill -TERM "$(cat "$pidfile")"
  for _ in $(seq 50); do
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
fi
log=/var/log/berthd.log
nohup "$src/build/cmd/berthd" "$@" >>"$log" 2>&1 </dev/null &
pid=$!
echo $pid >"$pidfile"
# Ready once this daemon (not some other one) answers.
for _ in $(seq 100); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "berthd failed to start; the end of $log:" >&2
    tail -n 5 "$log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  "${client[@]}" version >/dev/null 2>&1 && break
  sleep 0.1
done
"${client[@]}" version
echo
"$src/scripts/first_container.py" "$src/build/cmd/berth" \
  ${address:+--address "$address"}
echo
echo "berthd is running (pid $pid, log $log) on ${address:-unix:/run/podman/io.podman}"
echo "try: ${client[*]} ps -a"
