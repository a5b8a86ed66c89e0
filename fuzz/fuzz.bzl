"""One small macro for fuzz targets: the libFuzzer binary and its corpus-replay test."""

def prl_fuzz_target(name, srcs, deps, corpus, mutations = 20000, size = "small"):
    """A fuzz target `name` with LLVMFuzzerTestOneInput in `srcs`.

    Makes:
      name + "_lib": the target's code (alwayslink).
      name: the fuzzer. Under --config=fuzz (libFuzzer + AddressSanitizer, clang) it is a
        libFuzzer binary; otherwise it links :fuzz_main, which runs the target on the files
        it is given (and on random mutations of them).
      name + "_test": replays `corpus` and `mutations` random mutations of it with
        :fuzz_main, in the default build (bazel test //...).

    Args:
      name: the fuzzer's name, "<what>_fuzzer".
      srcs: the target's sources.
      deps: what they use.
      corpus: a filegroup of the seed corpus' files.
      mutations: how many mutations the test runs.
      size: the test's size.
    """
    native.cc_library(
        name = name + "_lib",
        srcs = srcs,
        deps = deps,
        alwayslink = True,
    )
    native.cc_binary(
        name = name,
        linkopts = select({
            ":libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = [":" + name + "_lib"] + select({
            ":libfuzzer": [],
            "//conditions:default": [":fuzz_main"],
        }),
    )
    native.cc_test(
        name = name + "_test",
        size = size,
        args = [
            "--mutations=%d" % mutations,
            "$(locations %s)" % corpus,
        ],
        data = [corpus],
        deps = [
            ":fuzz_main",
            ":" + name + "_lib",
        ],
    )
