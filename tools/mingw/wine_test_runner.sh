#!/usr/bin/env bash
# Runs a Windows test program under wine: `bazel test --config=mingw` puts
# this in front of every test (--run_under).
set -euo pipefail
exe=$1
shift

export WINEDEBUG=-all
# No desktop integration, no .NET or Gecko installer prompts, and no debugger
# on a crash (it would wait for someone until the test times out): the test
# fails at once with the fault's address in its log.
export WINEDLLOVERRIDES="winemenubuilder.exe=d;mscoree=d;mshtml=d;winedbg.exe=d"
# One prefix for every test, made once (wineboot takes a few seconds), and
# one wineserver for it, started here under a lock: wine processes that start
# together while no server runs race to start one, and a loser crashes. The
# server stays up 30 s after its last client.
# (wine writes its registry files late, when its server exits: a marker of
# our own says the prefix is whole.)
# (NETLOOP_WINEPREFIX reaches a test only through --test_env.)
export WINEPREFIX=${NETLOOP_WINEPREFIX:-/tmp/netloop-wine-$(id -u)}
(
  flock 9
  if [[ ! -f "$WINEPREFIX/.netloop-ready" ]]; then
    # 9>&-: the servers wine leaves running must not inherit the lock,
    # or the next test would wait for them to exit.
    timeout 120 wine wineboot -i >/dev/null 2>&1 9>&-
    touch "$WINEPREFIX/.netloop-ready"
  fi
  wineserver -p30 >/dev/null 2>&1 9>&- || true  # fails when one already runs
) 9>"$WINEPREFIX.lock"
# Bazel's test environment passes through, its paths made Windows paths (wine
# maps the Unix root to drive Z:). GoogleTest on Windows does not take
# "/root/..." for an absolute path and wrote its XML under the runfiles
# instead; "Z:\root\..." it does.
for var in XML_OUTPUT_FILE TEST_TMPDIR TEST_UNDECLARED_OUTPUTS_DIR TEST_SRCDIR \
           TEST_PREMATURE_EXIT_FILE TEST_WARNINGS_OUTPUT_FILE RUNFILES_DIR \
           RUNFILES_MANIFEST_FILE TEST_SHARD_STATUS_FILE TEST_INFRASTRUCTURE_FAILURE_FILE; do
  value=${!var:-}
  if [[ $value == /* ]]; then
    value=Z:${value//\//\\}
    export "$var=$value"
  fi
done
# wine64 is not on PATH on Debian; `wine` picks the 64-bit loader for a PE32+.
exec wine "$exe" "$@"
