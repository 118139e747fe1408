"""Constraints for targets that build for one platform only.

A target that cannot build for Windows yet says `target_compatible_with =
LINUX_ONLY`; `bazel test --config=mingw //...` then skips it and everything
that depends on it, instead of failing, and a Linux build is unchanged.
"""

LINUX_ONLY = ["@platforms//os:linux"]

# The Windows-only counterpart: a target that exists for the mingw build only
# (an _iocp test variant, say).
WINDOWS_ONLY = ["@platforms//os:windows"]
