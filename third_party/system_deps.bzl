"""netloop's external dependencies, offline, from the Debian packages.

Each repository is exposed under the name and labels of its upstream project
(@com_google_absl//absl/status:statusor, @com_google_googletest//:gtest_main,
@com_google_benchmark//:benchmark, @cli11//:cli11, @boost//:context,
@liburing//:liburing, @openssl//:ssl), so a consumer that has the network can replace these
definitions with the upstream archives and change nothing else.

Headers: each repository symlinks the package's directories from /usr/include
under include/ and exports them with `includes`, so Bazel tracks them as inputs
(an upgraded Debian package rebuilds what uses it) and the -isystem path it
adds is searched before /usr/include. Libraries: `linkopts` only; for Abseil
they come from pkg-config, run when the repository is fetched.
"""

# Where each Abseil component (pkg-config name absl_<component>) lives
# upstream: "package:target". The pkg-config names are CMake's, which flatten
# the package into the name (random_internal_randen is
# //absl/random/internal:randen). Components missing here fall back to the
# prefix rules in _absl_label, then to the directory holding <component>.h.
_ABSL_LABELS = {
    # absl/algorithm
    "algorithm": "algorithm:algorithm",
    "algorithm_container": "algorithm:container",
    # absl/base
    "atomic_hook": "base:atomic_hook",
    "base": "base:base",
    "base_internal": "base:base_internal",
    "config": "base:config",
    "core_headers": "base:core_headers",
    "dynamic_annotations": "base:dynamic_annotations",
    "endian": "base:endian",
    "errno_saver": "base:errno_saver",
    "fast_type_id": "base:fast_type_id",
    "log_severity": "base:log_severity",
    "malloc_internal": "base:malloc_internal",
    "prefetch": "base:prefetch",
    "pretty_function": "base:pretty_function",
    "raw_logging_internal": "base:raw_logging_internal",
    "scoped_set_env": "base:scoped_set_env",
    "spinlock_wait": "base:spinlock_wait",
    "strerror": "base:strerror",
    "throw_delegate": "base:throw_delegate",
    # absl/cleanup
    "cleanup": "cleanup:cleanup",
    "cleanup_internal": "cleanup:cleanup_internal",
    # absl/container
    "btree": "container:btree",
    "compressed_tuple": "container:compressed_tuple",
    "container_common": "container:common",
    "container_memory": "container:container_memory",
    "counting_allocator": "container:counting_allocator",
    "fixed_array": "container:fixed_array",
    "flat_hash_map": "container:flat_hash_map",
    "flat_hash_set": "container:flat_hash_set",
    "hash_function_defaults": "container:hash_function_defaults",
    "hash_policy_traits": "container:hash_policy_traits",
    "hashtable_debug": "container:hashtable_debug",
    "hashtable_debug_hooks": "container:hashtable_debug_hooks",
    "hashtablez_sampler": "container:hashtablez_sampler",
    "inlined_vector": "container:inlined_vector",
    "inlined_vector_internal": "container:inlined_vector_internal",
    "layout": "container:layout",
    "node_hash_map": "container:node_hash_map",
    "node_hash_set": "container:node_hash_set",
    "node_slot_policy": "container:node_slot_policy",
    "raw_hash_map": "container:raw_hash_map",
    "raw_hash_set": "container:raw_hash_set",
    # absl/debugging
    "debugging": "debugging:debugging",  # CMake-only aggregate
    "debugging_internal": "debugging:debugging_internal",
    "demangle_internal": "debugging:demangle_internal",
    "examine_stack": "debugging:examine_stack",
    "failure_signal_handler": "debugging:failure_signal_handler",
    "leak_check": "debugging:leak_check",
    "stacktrace": "debugging:stacktrace",
    "symbolize": "debugging:symbolize",
    # absl/flags (flags_<x> is //absl/flags:<x>, see _absl_label)
    "flags": "flags:flag",
    "flags_internal": "flags:flag_internal",
    # absl/functional
    "any_invocable": "functional:any_invocable",
    "bind_front": "functional:bind_front",
    "function_ref": "functional:function_ref",
    # absl/hash
    "city": "hash:city",
    "hash": "hash:hash",
    "low_level_hash": "hash:low_level_hash",
    # absl/memory, absl/meta
    "memory": "memory:memory",
    "meta": "meta:meta",  # CMake-only aggregate
    "type_traits": "meta:type_traits",
    # absl/numeric
    "bits": "numeric:bits",
    "int128": "numeric:int128",
    "numeric": "numeric:numeric",  # CMake-only aggregate
    "numeric_representation": "numeric:representation",
    # absl/profiling
    "exponential_biased": "profiling:exponential_biased",
    "periodic_sampler": "profiling:periodic_sampler",
    "sample_recorder": "profiling:sample_recorder",
    # absl/random (random_internal_<x> is //absl/random/internal:<x>)
    "random_bit_gen_ref": "random:bit_gen_ref",
    "random_distributions": "random:distributions",
    "random_random": "random:random",
    "random_seed_gen_exception": "random:seed_gen_exception",
    "random_seed_sequences": "random:seed_sequences",
    # absl/status
    "status": "status:status",
    "statusor": "status:statusor",
    # absl/strings (and every cordz_<x>)
    "cord": "strings:cord",
    "cord_internal": "strings:cord_internal",
    "str_format": "strings:str_format",
    "str_format_internal": "strings:str_format_internal",
    "strings": "strings:strings",
    "strings_internal": "strings:internal",
    # absl/synchronization
    "graphcycles_internal": "synchronization:graphcycles_internal",
    "kernel_timeout_internal": "synchronization:kernel_timeout_internal",
    "synchronization": "synchronization:synchronization",
    # absl/time
    "civil_time": "time/internal/cctz:civil_time",
    "time": "time:time",
    "time_zone": "time/internal/cctz:time_zone",
    # absl/types
    "any": "types:any",
    "bad_any_cast": "types:bad_any_cast",
    "bad_any_cast_impl": "types:bad_any_cast_impl",
    "bad_optional_access": "types:bad_optional_access",
    "bad_variant_access": "types:bad_variant_access",
    "compare": "types:compare",
    "optional": "types:optional",
    "span": "types:span",
    "variant": "types:variant",
    # absl/utility
    "utility": "utility:utility",
}

# CMake prefixes that stand for an upstream package: (prefix, package, whether
# the upstream target name drops the prefix).
_ABSL_PREFIXES = [
    ("random_internal_", "random/internal", True),
    ("flags_", "flags", True),
    ("cordz_", "strings", False),
]

def _run(ctx, args):
    result = ctx.execute(args)
    if result.return_code != 0:
        fail("%s failed: %s" % (" ".join(args), result.stderr))
    return result.stdout.strip()

def _absl_label(ctx, component):
    """Returns (package under absl/, target name) for a pkg-config component."""
    label = _ABSL_LABELS.get(component)
    if label == None:
        for prefix, package, strip in _ABSL_PREFIXES:
            if component.startswith(prefix):
                label = "%s:%s" % (package, component[len(prefix):] if strip else component)
                break
    if label == None:
        # A component newer than this table: guess from its header's place.
        found = _run(ctx, ["sh", "-c", "ls /usr/include/absl/*/%s.h 2>/dev/null | head -1" % component])
        label = "%s:%s" % (found.split("/")[-2] if found else "base", component)
    package, name = label.split(":")
    return package, name

def _link_include_dir(ctx, paths):
    """Symlinks /usr/include/<path> to include/<path> and returns its BUILD."""
    for path in paths:
        source = ctx.path("/usr/include/" + path)
        if not source.exists:
            fail("/usr/include/%s is missing: run tools/setup" % path)
        ctx.symlink(source, "include/" + path)
    return """package(default_visibility = ["//:__subpackages__"])

cc_library(
    name = "headers",
    hdrs = glob(%r),
    includes = ["."],
)
""" % [p + "/**" if not p.endswith(".h") else p for p in paths]

def _absl_impl(ctx):
    listing = _run(ctx, ["pkg-config", "--list-all"])
    components = sorted([
        line.split(" ")[0][len("absl_"):]
        for line in listing.split("\n")
        if line.startswith("absl_")
    ])
    if not components:
        fail("pkg-config knows no absl_* package: install libabsl-dev (tools/setup)")
    packages = {}
    for component in components:
        libs = _run(ctx, ["pkg-config", "--libs", "absl_" + component])
        package, name = _absl_label(ctx, component)
        packages.setdefault(package, []).append((name, [f for f in libs.split(" ") if f]))
    for package, targets in packages.items():
        lines = ['package(default_visibility = ["//visibility:public"])', ""]
        for name, flags in targets:
            lines += [
                "cc_library(",
                "    name = %r," % name,
                "    deps = select({",
                '        "@platforms//os:windows": ["@com_google_absl_source//absl/%s:%s"],' % (package, name),
                '        "//conditions:default": ["//include:headers"],',
                "    }),",
                "    linkopts = select({",
                '        "@platforms//os:windows": [],',
                '        "//conditions:default": %r,' % flags,
                "    }),",
                ")",
                "",
            ]
        ctx.file("absl/%s/BUILD.bazel" % package, "\n".join(lines))
    ctx.file("include/BUILD.bazel", _link_include_dir(ctx, ["absl"]))
    ctx.file("WORKSPACE", 'workspace(name = "com_google_absl")\n')
    ctx.file("BUILD.bazel", "")

system_absl = repository_rule(
    implementation = _absl_impl,
    local = True,
    doc = "Abseil from the system (pkg-config), under upstream labels; on Windows " +
          "(--config=mingw) each label forwards to the same target of @com_google_absl_source.",
)

def _link_tree(ctx, root, edits):
    """Symlinks root's entries into the repository; files named in edits are
    copied with each (old, new) replacement made, and a directory holding such
    a file is made real and its entries linked one by one. (Starlark has no
    recursion: a work list.)"""
    todo = [(root, "")]
    for _ in range(1000):
        if not todo:
            break
        source, dest = todo.pop()
        for child in source.readdir():
            path = child.basename if not dest else dest + "/" + child.basename
            if path in edits:
                content = ctx.read(child)
                for old, new in edits[path]:
                    if old not in content:
                        fail("%s no longer contains %r: update system_deps.bzl" % (child, old))
                    content = content.replace(old, new)
                ctx.file(path, content, executable = False)
            elif [p for p in edits if p.startswith(path + "/")]:
                todo.append((child, path))
            else:
                ctx.symlink(child, path)
    if todo:
        fail("%s: more directories to edit than _link_tree walks" % root)

def _source_tree_impl(ctx):
    """A source tree unpacked on this machine, used as it is; empty if absent.

    Only the Windows build reads these trees, so a Linux machine without them
    still builds: the repository is empty and nothing asks for its targets.
    """
    root = ctx.path(ctx.attr.path)
    if not root.exists:
        ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
        ctx.file("BUILD.bazel", "# %s is missing: run tools/setup\n" % ctx.attr.path)
        return
    edits = {}
    for path, pairs in ctx.attr.edits.items():
        for p in pairs:
            if "=>" not in p:
                fail("edit %r of %s is not \"old=>new\"" % (p, path))
        edits[path] = [tuple(p.split("=>", 1)) for p in pairs]
    _link_tree(ctx, root, edits)
    for path, content in ctx.attr.extra_files.items():
        ctx.file(path, content)

_source_tree = repository_rule(
    implementation = _source_tree_impl,
    local = True,
    attrs = {
        "path": attr.string(mandatory = True),
        "edits": attr.string_list_dict(doc = "file: [\"old=>new\", ...] replacements"),
        "extra_files": attr.string_dict(doc = "files added to the tree: path: content"),
    },
)

# Bazel 4.2.3's bundled @platforms has no wasm CPUs, which Abseil's BUILD
# names in two config_settings; they point at constraint values no platform
# here carries instead.
_ABSL_SOURCE_EDITS = {
    "absl/BUILD.bazel": [
        '"@platforms//cpu:wasm32"=>"//netloop_stubs:wasm32"',
        '"@platforms//cpu:wasm64"=>"//netloop_stubs:wasm64"',
    ],
}

_ABSL_SOURCE_STUBS = {
    "netloop_stubs/BUILD.bazel": """package(default_visibility = ["//visibility:public"])

constraint_setting(name = "absent_cpu")

constraint_value(name = "wasm32", constraint_setting = ":absent_cpu")

constraint_value(name = "wasm64", constraint_setting = ":absent_cpu")
""",
}

# Where tools/setup unpacks Debian's Abseil source package (the same version as
# libabsl-dev) for the Windows build, which cannot use Linux's shared libraries.
ABSL_SOURCE_DIR = "/opt/netloop/src/abseil"

def _system_library_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)
    ctx.file("include/BUILD.bazel", _link_include_dir(ctx, ctx.attr.include_dirs))
    ctx.file("BUILD.bazel", ctx.attr.build_file_content)
    if ctx.attr.source_dir and ctx.path(ctx.attr.source_dir).exists:
        ctx.symlink(ctx.path(ctx.attr.source_dir), "src")

_system_library = repository_rule(
    implementation = _system_library_impl,
    local = True,
    attrs = {
        "build_file_content": attr.string(),
        "include_dirs": attr.string_list(doc = "Paths under /usr/include to export."),
        "source_dir": attr.string(doc = "Sources linked under src/ where present (Windows builds)."),
    },
)

_GTEST_BUILD = """
package(default_visibility = ["//visibility:public"])

# Upstream's gtest target includes gmock; so does this one. On Windows
# (--config=mingw) both are compiled from Debian's googletest sources
# (/usr/src/googletest), linked under src/.
cc_library(
    name = "gtest",
    deps = select({
        "@platforms//os:windows": [":gtest_from_source"],
        "//conditions:default": ["//include:headers"],
    }),
    linkopts = select({
        "@platforms//os:windows": [],
        "//conditions:default": ["-lgmock", "-lgtest", "-lpthread"],
    }),
)

cc_library(
    name = "gtest_main",
    srcs = select({
        "@platforms//os:windows": ["src/googlemock/src/gmock_main.cc"],
        "//conditions:default": [],
    }),
    deps = select({
        "@platforms//os:windows": [":gtest_from_source"],
        "//conditions:default": ["//include:headers"],
    }),
    linkopts = select({
        "@platforms//os:windows": [],
        "//conditions:default": ["-lgtest_main", "-lgmock", "-lgtest", "-lpthread"],
    }),
)

cc_library(
    name = "gtest_from_source",
    srcs = [
        "src/googletest/src/gtest-all.cc",
        "src/googlemock/src/gmock-all.cc",
    ],
    hdrs = glob([
        "src/googletest/include/**/*.h",
        "src/googlemock/include/**/*.h",
    ]),
    # The -all.cc files include every other source by its path under the
    # project's root.
    textual_hdrs = glob([
        "src/googletest/src/*.cc",
        "src/googletest/src/*.h",
        "src/googlemock/src/*.cc",
    ]),
    includes = [
        "src/googlemock",
        "src/googlemock/include",
        "src/googletest",
        "src/googletest/include",
    ],
    visibility = ["//visibility:private"],
)

alias(name = "gmock", actual = ":gtest")

alias(name = "gmock_main", actual = ":gtest_main")
"""

_BENCHMARK_BUILD = """
package(default_visibility = ["//visibility:public"])

# Linux's package only: targets that need it are skipped on Windows.
_LINUX = ["@platforms//os:linux"]

cc_library(
    name = "benchmark",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-lbenchmark", "-lpthread"],
)

cc_library(
    name = "benchmark_main",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-lbenchmark_main", "-lbenchmark", "-lpthread"],
)
"""

_CLI11_BUILD = """
package(default_visibility = ["//visibility:public"])

# Header-only: the same headers serve the Windows (mingw) build.
cc_library(
    name = "cli11",
    deps = ["//include:headers"],
)
"""

_BOOST_BUILD = """
package(default_visibility = ["//visibility:public"])

# Linux's package only: targets that need it are skipped on Windows.
_LINUX = ["@platforms//os:linux"]

# rules_boost's name for Boost.Context. Only boost/context is exported: the
# rest of Boost it includes (config, assert, ...) comes from /usr/include.
cc_library(
    name = "context",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-lboost_context"],
)
"""

_LIBURING_BUILD = """
package(default_visibility = ["//visibility:public"])

# Linux's package only: targets that need it are skipped on Windows.
_LINUX = ["@platforms//os:linux"]

cc_library(
    name = "liburing",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-luring"],
)
"""

_OPENSSL_BUILD = """
package(default_visibility = ["//visibility:public"])

# Linux's package only: targets that need it are skipped on Windows.
_LINUX = ["@platforms//os:linux"]

# The upstream (Bazel Central Registry) openssl module's target names.
cc_library(
    name = "crypto",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-lcrypto"],
)

cc_library(
    name = "ssl",
    target_compatible_with = _LINUX,
    deps = ["//include:headers"],
    linkopts = ["-lssl", "-lcrypto"],
)
"""

def netloop_system_deps():
    """Declares every external repository netloop needs, from Debian packages."""
    system_absl(name = "com_google_absl")
    _source_tree(
        name = "com_google_absl_source",
        path = ABSL_SOURCE_DIR,
        edits = _ABSL_SOURCE_EDITS,
        extra_files = _ABSL_SOURCE_STUBS,
    )
    # Abseil's own BUILD files load bazel-skylib (Debian's bazel-skylib),
    # unless the workspace already has its own.
    if not native.existing_rule("bazel_skylib"):
        _source_tree(name = "bazel_skylib", path = "/usr/share/bazel/tools/skylib")
    _system_library(
        name = "com_google_googletest",
        build_file_content = _GTEST_BUILD,
        include_dirs = ["gtest", "gmock"],
        source_dir = "/usr/src/googletest",
    )
    _system_library(
        name = "com_google_benchmark",
        build_file_content = _BENCHMARK_BUILD,
        include_dirs = ["benchmark"],
    )
    _system_library(
        name = "cli11",
        build_file_content = _CLI11_BUILD,
        include_dirs = ["CLI"],
    )
    _system_library(
        name = "boost",
        build_file_content = _BOOST_BUILD,
        include_dirs = ["boost/context"],
    )
    _system_library(
        name = "liburing",
        build_file_content = _LIBURING_BUILD,
        include_dirs = ["liburing", "liburing.h"],
    )
    # OpenSSL 3 (libssl-dev). Debian keeps configuration.h and opensslconf.h
    # under /usr/include/<multiarch>/openssl, which the compiler searches by
    # default; only the architecture-independent headers are exported here.
    _system_library(
        name = "openssl",
        build_file_content = _OPENSSL_BUILD,
        include_dirs = ["openssl"],
    )
