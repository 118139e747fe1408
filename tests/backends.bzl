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

        # A test under wine that stops making progress is a failure, seen
        # within a minute. (Each test has its own wineserver: see
        # tools/mingw/wine_test_runner.sh for the shared one that died.)
        iocp_kwargs["timeout"] = "short"
        native.cc_test(
            name = name + "_iocp",
            env = test_env,
            target_compatible_with = target_compatible_with + WINDOWS_ONLY,
            **iocp_kwargs
        )
        names.append(name + "_iocp")
    native.test_suite(name = name + "_all", tests = names)
