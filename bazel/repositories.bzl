"""Local repositories for an offline build on Debian 12 packages."""

load("//bazel:libtorch.bzl", "libtorch_repository")

def prl_repositories():
    """Declares every external repository the build uses; none downloads."""

    # Stand-ins for the rule sets Bazel 4 would fetch: the native rules are enough.
    native.local_repository(name = "rules_cc", path = "bazel/rules_cc")
    native.local_repository(name = "rules_java", path = "bazel/rules_java")
    native.local_repository(
        name = "remote_coverage_tools",
        path = "bazel/remote_coverage_tools",
    )

    # Debian's bazel-platforms package.
    native.local_repository(name = "platforms", path = "/usr/share/bazel/tools/platforms")

    # HDF5's C++ API lives in its own include directory on Debian.
    native.new_local_repository(
        name = "hdf5",
        path = "/usr/include/hdf5/serial",
        build_file = "//bazel/third_party:hdf5.BUILD",
    )

    # LibTorch: Debian's CPU build by default, or any LibTorch tree (for
    # example a CUDA one) named by PRL_LIBTORCH_ROOT.
    libtorch_repository(name = "libtorch")
