"""One test source, run on every backend a platform can serve.

netloop_backend_test(name, ...) declares `name` (epoll) and `name_io_uring`
for Linux: the same cc_test with NETLOOP_BACKEND set, which
Options::backend = kAuto (the default every test and example uses) obeys, and
which child processes (the example servers some tests start) inherit. With
`windows = True` it also declares `name_iocp`, the same source built for
Windows (`--config=mingw`) and run under wine. The test_suite `name_all` runs
them all (each where its platform is the target).
"""

load("//tools/mingw:platforms.bzl", "LINUX_ONLY", "WINDOWS_ONLY")

BACKENDS = {
    "epoll": "",
    "io_uring": "_io_uring",
}

def netloop_backend_test(name, env = {}, windows = False, target_compatible_with = [], **kwargs):
    names = []
    for backend, suffix in BACKENDS.items():
        test_env = dict(env)
        test_env["NETLOOP_BACKEND"] = backend
        native.cc_test(
            name = name + suffix,
            env = test_env,
            target_compatible_with = target_compatible_with + LINUX_ONLY,
            **kwargs
        )
        names.append(name + suffix)
    if windows:
        test_env = dict(env)
        test_env["NETLOOP_BACKEND"] = "iocp"
        iocp_kwargs = dict(kwargs)

        # With several wine processes at once, the shared wineserver was seen
        # to exit under running tests (every thread of a stalled test then
        # waits on the server's pipe, and no wineserver runs). Until the
        # runner isolates that (a prefix per test, say): a short timeout and
        # a retry, so a dead wineserver is not taken for a netloop failure.
        # A real failure fails every attempt.
        iocp_kwargs["timeout"] = "short"
        iocp_kwargs["flaky"] = True
        native.cc_test(
            name = name + "_iocp",
            env = test_env,
            target_compatible_with = target_compatible_with + WINDOWS_ONLY,
            **iocp_kwargs
        )
        names.append(name + "_iocp")
    native.test_suite(name = name + "_all", tests = names)
