#!/bin/sh
# Build berth-goclient offline into OUTDIR (the source dir is left untouched).
# usage: test/goclient/build.sh OUTDIR
# Needs Debian's golang-go (>= 1.19) and golang-github-varlink-go-dev (0.4.0).
set -eu
if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 64
fi
mkdir -p "$1"
outdir=$(cd "$1" && pwd)
srcdir=$(cd "$(dirname "$0")" && pwd)
cd "$srcdir"
env GOPROXY=off GOFLAGS='-mod=mod -modcacherw -buildvcs=false' GO111MODULE=on GOWORK=off \
	GOTOOLCHAIN=local GOSUMDB=off CGO_ENABLED=0 \
	GOCACHE="$outdir/gocache" GOPATH="$outdir/gopath" \
	go build -o "$outdir/berth-goclient" .
