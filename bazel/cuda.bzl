"""CUDA kernels of PRL's own, compiled by the toolkit's nvcc in CUDA builds only.

In a CPU build (Debian's LibTorch, or any LibTorch without libtorch_cuda) the library holds only
its headers, and the code calling the kernels is compiled out (PRL_WITH_CUDA undefined).
"""

load("@libtorch//:defs.bzl", "NVCC")

# The GPUs the kernels are built for (the GPU machines' H200 is sm_90), with PTX of the newest
# for later ones.
_GENCODE = " ".join([
    "-gencode arch=compute_80,code=sm_80",
    "-gencode arch=compute_90,code=sm_90",
    "-gencode arch=compute_100,code=sm_100",
    "-gencode arch=compute_120,code=[sm_120,compute_120]",
])

def prl_cuda_library(name, cu, hdrs, deps = [], **kwargs):
    """A cc_library of the kernels in `cu` (one .cu file) and their C++ headers `hdrs`."""
    srcs = []
    if NVCC:
        obj = name + "_cu.pic.o"
        native.genrule(
            name = name + "_nvcc",
            srcs = [cu] + hdrs,
            outs = [obj],
            cmd = "%s -O3 -std=c++17 -Xcompiler -fPIC %s -I. -c $(location %s) -o $@" % (
                NVCC,
                _GENCODE,
                cu,
            ),
        )
        srcs = [obj]
    native.cc_library(
        name = name,
        srcs = srcs,
        hdrs = hdrs,
        deps = deps,
        **kwargs
    )
