"""netloop's external dependencies, offline, from the Debian packages.

Each repository is exposed under the name and labels of its upstream project
(@com_google_absl//absl/status:statusor, @com_google_googletest//:gtest_main,
@com_google_benchmark//:benchmark, @cli11//:cli11, @boost//:context,
@liburing//:liburing), so a consumer that has the network can replace these
definitions with the upstream archives and change nothing else.

Headers come from /usr/include (a builtin include directory of the host
toolchain); each target only carries the link flags.
"""

# Abseil components whose header is not named after the component: the
# package (directory under absl/) each belongs to upstream.
_ABSL_PACKAGE_OVERRIDES = {
    "base": "base",
    "core_headers": "base",
    "config": "base",
    "strings": "strings",
    "str_format": "strings",
    "str_format_internal": "strings",
    "synchronization": "synchronization",
    "status": "status",
    "statusor": "status",
    "time": "time",
    "civil_time": "time",
    "time_zone": "time",
    "span": "types",
    "optional": "types",
    "variant": "types",
    "any": "types",
    "compare": "types",
    "bad_optional_access": "types",
    "bad_variant_access": "types",
    "bad_any_cast": "types",
    "flat_hash_map": "container",
    "flat_hash_set": "container",
    "node_hash_map": "container",
    "node_hash_set": "container",
    "btree": "container",
    "fixed_array": "container",
    "inlined_vector": "container",
    "raw_hash_set": "container",
    "hash": "hash",
    "any_invocable": "functional",
    "bind_front": "functional",
    "function_ref": "functional",
    "memory": "memory",
    "meta": "meta",
    "type_traits": "meta",
    "numeric": "numeric",
    "int128": "numeric",
    "bits": "numeric",
    "random_random": "random",
    "random_distributions": "random",
    "cord": "strings",
    "cordz_info": "strings",
    "log_severity": "base",
    "raw_logging_internal": "base",
    "throw_delegate": "base",
    "cleanup": "cleanup",
    "utility": "utility",
    "algorithm": "algorithm",
    "algorithm_container": "algorithm",
    "debugging": "debugging",
    "stacktrace": "debugging",
    "symbolize": "debugging",
    "failure_signal_handler": "debugging",
    "flags": "flags",
    "flags_parse": "flags",
    "flags_usage": "flags",
    "flags_marshalling": "flags",
    "examine_stack": "debugging",
    "leak_check": "debugging",
}

# Upstream target names that differ from the pkg-config component names.
_ABSL_TARGET_RENAMES = {
    "random_random": "random",
    "flags": "flag",
    "flags_parse": "parse",
    "flags_usage": "usage",
    "flags_marshalling": "marshalling",
}

def _run(ctx, args):
    result = ctx.execute(args)
    if result.return_code != 0:
        fail("%s failed: %s" % (" ".join(args), result.stderr))
    return result.stdout.strip()

def _absl_impl(ctx):
    listing = _run(ctx, ["sh", "-c", "ls /usr/lib/*/pkgconfig/absl_*.pc /usr/lib/pkgconfig/absl_*.pc /usr/share/pkgconfig/absl_*.pc 2>/dev/null || true"])
    packages = {}
    for path in listing.split("\n"):
        if not path.endswith(".pc"):
            continue
        component = path.split("/")[-1][len("absl_"):-len(".pc")]
        libs = _run(ctx, ["pkg-config", "--libs", "absl_" + component])
        pkg = _ABSL_PACKAGE_OVERRIDES.get(component)
        if pkg == None:
            found = _run(ctx, ["sh", "-c", "ls /usr/include/absl/*/%s.h 2>/dev/null | head -1" % component])
            pkg = found.split("/")[-2] if found else "base"
        name = _ABSL_TARGET_RENAMES.get(component, component)
        packages.setdefault(pkg, []).append((name, [f for f in libs.split(" ") if f]))
    for pkg, targets in packages.items():
        lines = ['package(default_visibility = ["//visibility:public"])', ""]
        for name, flags in targets:
            lines.append("cc_library(")
            lines.append("    name = %r," % name)
            lines.append("    linkopts = %r," % flags)
            lines.append(")")
            lines.append("")
        # The bare package label (@com_google_absl//absl/strings) names the
        # target of the same name upstream; make sure it exists.
        names = [n for n, _ in targets]
        if pkg not in names:
            lines.append("cc_library(")
            lines.append("    name = %r," % pkg)
            lines.append("    deps = %r," % [":" + n for n in names])
            lines.append(")")
        ctx.file("absl/%s/BUILD.bazel" % pkg, "\n".join(lines) + "\n")
    ctx.file("WORKSPACE", 'workspace(name = "com_google_absl")\n')
    ctx.file("BUILD.bazel", "")

system_absl = repository_rule(
    implementation = _absl_impl,
    local = True,
    doc = "Abseil from the system (pkg-config), under upstream labels.",
)

def _simple_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("BUILD.bazel", ctx.attr.build_file_content)

_system_library = repository_rule(
    implementation = _simple_impl,
    local = True,
    attrs = {"build_file_content": attr.string()},
)

_GTEST_BUILD = """
package(default_visibility = ["//visibility:public"])

# Upstream's gtest target includes gmock; so does this one.
cc_library(
    name = "gtest",
    linkopts = ["-lgmock", "-lgtest", "-lpthread"],
)

cc_library(
    name = "gtest_main",
    linkopts = ["-lgtest_main", "-lgmock", "-lgtest", "-lpthread"],
)

alias(name = "gmock", actual = ":gtest")

alias(name = "gmock_main", actual = ":gtest_main")
"""

_BENCHMARK_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "benchmark",
    linkopts = ["-lbenchmark", "-lpthread"],
)

cc_library(
    name = "benchmark_main",
    linkopts = ["-lbenchmark_main", "-lbenchmark", "-lpthread"],
)
"""

_CLI11_BUILD = """
package(default_visibility = ["//visibility:public"])

# Header-only: /usr/include/CLI/CLI.hpp
cc_library(name = "cli11")
"""

_BOOST_BUILD = """
package(default_visibility = ["//visibility:public"])

# rules_boost's name for Boost.Context.
cc_library(
    name = "context",
    linkopts = ["-lboost_context"],
)
"""

_LIBURING_BUILD = """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "liburing",
    linkopts = ["-luring"],
)
"""

def netloop_system_deps():
    """Declares every external repository netloop needs, from Debian packages."""
    system_absl(name = "com_google_absl")
    _system_library(name = "com_google_googletest", build_file_content = _GTEST_BUILD)
    _system_library(name = "com_google_benchmark", build_file_content = _BENCHMARK_BUILD)
    _system_library(name = "cli11", build_file_content = _CLI11_BUILD)
    _system_library(name = "boost", build_file_content = _BOOST_BUILD)
    _system_library(name = "liburing", build_file_content = _LIBURING_BUILD)
