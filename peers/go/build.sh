#!/usr/bin/env bash
# Builds the Go peers of tools/duel into OUT_DIR: OUT_DIR/echo, OUT_DIR/http.
#
#   bash peers/go/build.sh OUT_DIR
#
# Bazel 4 has no Go rules offline here, so the Go peers are not Bazel
# targets: tools/duel runs this script (found in its runfiles) into its
# temporary directory before it measures, and skips the Go rows if it
# fails. It needs only Debian's golang-go (tools/setup installs it): the
# module has no requirements, and GOPROXY=off makes sure nothing is fetched.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: go not installed (apt-get install golang-go)" >&2
  exit 1
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")"

export GOPROXY=off GOSUMDB=off GOFLAGS=-mod=mod CGO_ENABLED=0
# bazel run keeps HOME, so the build cache persists between runs. Without
# HOME, or where HOME's cache cannot be made (a test's sandbox mounts it read
# only, and on a new machine ~/.cache/go-build does not exist yet), the cache
# goes to OUT_DIR.
cache=""
if [[ -n "${HOME:-}" ]]; then cache=$(go env GOCACHE 2>/dev/null || true); fi
if [[ -z "$cache" ]] || ! mkdir -p "$cache" 2>/dev/null || [[ ! -w "$cache" ]]; then
  export GOCACHE="$out/.gocache" GOPATH="${GOPATH:-$out/.gopath}"
fi
# -buildvcs=false: the runfiles tree is no checkout, and a checkout's VCS
# state is of no use to a benchmark peer.
for cmd in echo http; do
  go build -buildvcs=false -trimpath -o "$out/$cmd" "./$cmd"
done
