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
# A prefix is made once (wineboot takes seconds) as a template, and each test
# runs in a copy of its own, hard-linked but for the registry files (931
# files, about 10 ms), so each has its own wineserver. A shared one did not survive: the server was seen to
# vanish and restart while tests ran (Bazel ends what a finished test leaves
# running, and the shared server belongs to whichever test started it), and
# the other tests running at that moment stalled for good on its pipe (tests
# hanging at random places, with no wineserver running). A test's own server
# ends with it.
# (wine writes its registry files late, when its server exits: the template
# is copied only after its server has gone, and a marker says it is whole.)
# (NETLOOP_WINEPREFIX reaches a test only through --test_env.)
template=${NETLOOP_WINEPREFIX:-/tmp/netloop-wine-$(id -u)}
(
  flock 9
  if [[ ! -f "$template/.netloop-ready" ]]; then
    # 9>&-: the servers wine leaves running must not inherit the lock,
    # or the next test would wait for them to exit.
    WINEPREFIX=$template timeout 120 wine wineboot -i >/dev/null 2>&1 9>&-
    WINEPREFIX=$template timeout 60 wineserver -w >/dev/null 2>&1 9>&- || true
    touch "$template/.netloop-ready"
  fi
) 9>"$template.lock"
export WINEPREFIX=$template
if [[ -n ${TEST_TMPDIR:-} ]]; then
  # Under `bazel test`: the copy lives in the test's own temporary directory,
  # which Bazel removes. Hard links need one file system; where the copy
  # cannot be made, the template is shared as before.
  own=$(mktemp -d "$TEST_TMPDIR/wineprefix.XXXXXX")
  # The registry files are copied, not linked: a wineserver rewrites them
  # in place when it exits, which through a link would rewrite the
  # template (and every copy) under tests starting at that moment (seen:
  # "system.reg is not a valid registry file", then a 64-bit program
  # refused by a prefix taken for 32-bit).
  copy_prefix() {
    cp -al "$template/." "$1/" 2>/dev/null || return 1
    local reg
    for reg in "$template"/*.reg; do
      cp --remove-destination "$reg" "$1/${reg##*/}" || return 1
    done
  }
  if copy_prefix "$own"; then
    export WINEPREFIX=$own
  else
    rm -rf "$own"
  fi
fi
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
