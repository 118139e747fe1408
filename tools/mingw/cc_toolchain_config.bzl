"""A C++ toolchain for x86_64-w64-mingw32: Debian's mingw-w64 cross compilers.

The -posix compilers (the win32 thread model has no std::thread or std::mutex,
which GoogleTest and the library need); static linking, so a test .exe needs
no DLL beside it under wine; .exe outputs.
"""

load(
    "@bazel_tools//tools/cpp:cc_toolchain_config_lib.bzl",
    "artifact_name_pattern",
    "feature",
    "flag_group",
    "flag_set",
    "tool_path",
)
load("@bazel_tools//tools/build_defs/cc:action_names.bzl", "ACTION_NAMES")

_COMPILE = [
    ACTION_NAMES.c_compile,
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
]
_CXX_COMPILE = [
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
]
_LINK = [
    ACTION_NAMES.cpp_link_executable,
    ACTION_NAMES.cpp_link_dynamic_library,
    ACTION_NAMES.cpp_link_nodeps_dynamic_library,
]

def _flags(actions, flags):
    return flag_set(actions = actions, flag_groups = [flag_group(flags = flags)])

def _impl(ctx):
    prefix = "/usr/bin/x86_64-w64-mingw32-"
    tools = {
        "gcc": prefix + "gcc-posix",
        "g++": prefix + "g++-posix",
        "cpp": prefix + "cpp-posix",
        "ar": prefix + "ar",
        "ld": prefix + "ld",
        "nm": prefix + "nm",
        "objcopy": prefix + "objcopy",
        "objdump": prefix + "objdump",
        "strip": prefix + "strip",
        "gcov": prefix + "gcov-posix",
        "dwp": "/bin/false",
        "llvm-cov": "/bin/false",
    }
    features = [
        feature(
            name = "default_flags",
            enabled = True,
            flag_sets = [
                _flags(_COMPILE, ["-Wall", "-Wno-sign-compare", "-fno-omit-frame-pointer"]),
                _flags(_CXX_COMPILE, ["-std=c++20"]),
                # The whole runtime is linked in. These come after every
                # library on the line: Winsock and its extension functions
                # (AcceptEx, ConnectEx) in ws2_32 and mswsock; Abseil's
                # symbolizer needs dbghelp, its CPU and time zone code advapi32.
                _flags(_LINK, [
                    "-static",
                    "-lstdc++",
                    "-lws2_32",
                    "-lmswsock",
                    "-ldbghelp",
                    "-ladvapi32",
                ]),
            ],
        ),
        feature(
            name = "opt",
            flag_sets = [
                _flags(_COMPILE, ["-O2", "-DNDEBUG", "-ffunction-sections", "-fdata-sections"]),
                _flags(_LINK, ["-Wl,--gc-sections"]),
            ],
        ),
        feature(name = "dbg", flag_sets = [_flags(_COMPILE, ["-g", "-O0"])]),
        feature(name = "fastbuild", flag_sets = [_flags(_COMPILE, ["-O1"])]),
        # The .d file Bazel reads to check that every included header is
        # declared.
        feature(name = "dependency_file", enabled = True, flag_sets = [
            flag_set(
                actions = _COMPILE,
                flag_groups = [flag_group(
                    flags = ["-MD", "-MF", "%{dependency_file}"],
                    expand_if_available = "dependency_file",
                )],
            ),
        ]),
        feature(name = "supports_dynamic_linker", enabled = False),
        feature(name = "supports_pic", enabled = False),
    ]
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        toolchain_identifier = "x86_64-w64-mingw32",
        host_system_name = "x86_64-linux-gnu",
        target_system_name = "x86_64-w64-mingw32",
        target_cpu = "x64_windows",
        target_libc = "msvcrt",
        compiler = "mingw-gcc",
        abi_version = "gcc-12",
        abi_libc_version = "msvcrt",
        tool_paths = [tool_path(name = k, path = v) for k, v in tools.items()],
        cxx_builtin_include_directories = [
            "/usr/lib/gcc/x86_64-w64-mingw32",
            "/usr/x86_64-w64-mingw32/include",
            "/usr/share/mingw-w64/include",
            # GoogleTest's sources, which @com_google_googletest links for
            # this build: the compiler names their headers by these paths.
            "/usr/src/googletest",
            # CLI11 (header-only, the examples' flags): @cli11 symlinks these
            # from Debian's package, and the compiler names them by the
            # target. Only this directory of /usr/include: nothing else of
            # Linux's headers may reach a Windows build.
            "/usr/include/CLI",
        ],
        features = features,
        artifact_name_patterns = [
            artifact_name_pattern(category_name = "executable", prefix = "", extension = ".exe"),
            artifact_name_pattern(category_name = "static_library", prefix = "lib", extension = ".a"),
            artifact_name_pattern(category_name = "dynamic_library", prefix = "", extension = ".dll"),
        ],
    )

mingw_cc_toolchain_config = rule(
    implementation = _impl,
    attrs = {},
    provides = [CcToolchainConfigInfo],
)
