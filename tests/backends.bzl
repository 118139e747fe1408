"""One test source, run on every backend this machine can serve.

netloop_backend_test(name, ...) declares `name` (epoll) and `name_io_uring`:
the same cc_test with NETLOOP_BACKEND set, which Options::backend = kAuto (the
default every test and example uses) obeys, and which child processes (the
example servers some tests start) inherit. The test_suite `name_all` runs
both.
"""

BACKENDS = {
    "epoll": "",
    "io_uring": "_io_uring",
}

def netloop_backend_test(name, env = {}, **kwargs):
    for backend, suffix in BACKENDS.items():
        test_env = dict(env)
        test_env["NETLOOP_BACKEND"] = backend
        native.cc_test(name = name + suffix, env = test_env, **kwargs)
    native.test_suite(name = name + "_all", tests = [name + s for s in BACKENDS.values()])
