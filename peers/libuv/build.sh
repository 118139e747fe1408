#!/usr/bin/env bash
# Builds the libuv echo peer of tools/duel into OUT_DIR/echo.
#
#   bash peers/libuv/build.sh OUT_DIR
#
# libuv1-dev is an optional package (tools/setup never fails without it), so
# a Bazel target that links -luv would break `bazel build //...` on machines
# without it. tools/duel runs this script (found in its runfiles) into its
# temporary directory instead, as it does peers/go/build.sh, and leaves the
# libuv row out when it fails.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)  # holds peers/listen_address.h
if [[ ! -f /usr/include/uv.h ]]; then
  echo "build.sh: libuv headers not installed (apt-get install libuv1-dev)" >&2
  exit 1
fi
mkdir -p "$1"
"${CXX:-c++}" -std=c++20 -O2 -Wall -I"$root" "$here/echo.cc" -o "$1/echo" -luv
