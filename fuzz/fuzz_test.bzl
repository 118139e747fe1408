"""fuzz_test: a libFuzzer target replayed as an ordinary cc_test."""

def fuzz_test(name, deps, size = "small"):
    """Declares the test `name` from `name`.cc and its corpus.

    The test links the target with replay_main.cc (no libFuzzer: gcc has
    none, and the sanitizer configs must build it too) and runs it on every
    file in corpus/<name>/ plus 2000 fixed-seed mutations of them.

    If regressions/<name>/ holds files, `<name>_regressions` replays exactly
    those, reproducers of bugs found by fuzzing, in strict mode (checks
    skipped for known bugs fail; see check.h). While such a bug is open, tag
    the test manual (so //... stays green); every bug found so far is fixed.
    """
    native.filegroup(
        name = name + "_corpus",
        srcs = native.glob(["corpus/%s/*" % name]),
    )
    native.cc_test(
        name = name,
        size = size,
        srcs = [name + ".cc"],
        args = ["$(rootpaths :%s_corpus)" % name],
        data = [":%s_corpus" % name],
        # Static, so a target's own definitions (address_fuzz's getaddrinfo)
        # win over the system's without depending on dynamic-symbol export.
        linkstatic = True,
        deps = deps + [":check", ":replay_main"],
    )
    regressions = native.glob(["regressions/%s/*" % name])
    if regressions:
        native.filegroup(
            name = name + "_regressions_files",
            srcs = regressions,
        )
        native.cc_test(
            name = name + "_regressions",
            size = size,
            srcs = [name + ".cc"],
            args = ["--mutations=0", "--strict", "$(rootpaths :%s_regressions_files)" % name],
            data = [":%s_regressions_files" % name],
            linkstatic = True,
            deps = deps + [":check", ":replay_main"],
        )
