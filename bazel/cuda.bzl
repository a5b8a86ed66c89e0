"""CUDA kernels of PRL's own, compiled by the toolkit's nvcc in CUDA builds only.

In a CPU build (Debian's LibTorch, or any LibTorch without libtorch_cuda) the library holds only
its headers, and the code calling the kernels is compiled out (PRL_WITH_CUDA_KERNELS, defined by
the library in CUDA builds, is undefined).
"""

load("@libtorch//:defs.bzl", "NVCC", "NVCC_GPU_ARCHS", "NVCC_VERSION")

# The GPUs the kernels are built for where the toolkit knows them (the GPU machines' H200 is
# sm_90), with PTX of the newest for later ones.
_WANTED_ARCHS = ["80", "90", "100", "120"]

def _gencode():
    archs = [a for a in _WANTED_ARCHS if "compute_" + a in NVCC_GPU_ARCHS]
    if not archs:
        fail("nvcc (%s) builds for none of sm_%s" % (NVCC_VERSION, ", sm_".join(_WANTED_ARCHS)))
    flags = ["-gencode arch=compute_%s,code=sm_%s" % (a, a) for a in archs[:-1]]
    flags.append("-gencode arch=compute_{0},code=[sm_{0},compute_{0}]".format(archs[-1]))
    return " ".join(flags)

def prl_cuda_library(name, cu, hdrs, deps = [], **kwargs):
    """A cc_library of the kernels in `cu` (one .cu file) and their C++ headers `hdrs`."""
    srcs = []
    defines = []
    if NVCC:
        obj = name + "_cu.pic.o"
        native.genrule(
            name = name + "_nvcc",
            srcs = [cu] + hdrs,
            outs = [obj],
            # the toolkit's version in the command, so a new toolkit rebuilds the object
            cmd = "%s -O3 -std=c++17 -Xcompiler -fPIC %s -I. -c $(location %s) -o $@  # %s" % (
                NVCC,
                _gencode(),
                cu,
                NVCC_VERSION,
            ),
        )
        srcs = [obj]
        defines = ["PRL_WITH_CUDA_KERNELS"]

        # the CUDA runtime the object calls (linked with a CUDA LibTorch)
        deps = deps + ["//bazel:libtorch"]
    native.cc_library(
        name = name,
        srcs = srcs,
        hdrs = hdrs,
        defines = defines,
        deps = deps,
        **kwargs
    )
