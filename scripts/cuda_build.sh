#!/usr/bin/env bash
# The CUDA build: PRL's learner, actor, prior server and learner benchmarks against PyPI's CUDA
# LibTorch, compiled with the CUDA toolkit on this machine. `scripts/setup.sh --cuda` runs it.
#
#   1. fetches torch==2.11.0 (CUDA 13.0) from PyPI with the two CUDA libraries a toolkit-only
#      machine lacks (cuSPARSELt, cuFile, NVSHMEM), into the git-ignored .libtorch-cuda/ (once; a stamp
#      records what is there), and unpacks the wheel's include/ and lib/ as a LibTorch root;
#   2. builds with Bazel in an output base of its own (~/.cache/prl-bazel-cuda; symlinks under
#      .bazel-cuda/), so the default CPU build's outputs are never invalidated;
#   3. checks the result: the CUDA kernels' arithmetic compiled for the host equals the CPU
#      kernels' (models/cuda_kernels_host_check.cu; no GPU needed);
#      learner_bench loads every CUDA library, reports whether it sees a GPU,
#      runs SAC updates on the CPU, and (without a GPU) refuses --device=cuda with a clear error;
#      with a GPU, runs learner/agent_cuda_test (CUDA-graph updates against eager ones) and
#      learner/replay_feed_cuda_test (batches staged through pinned memory on a copy stream) and
#      models/cuda_kernels_test (PRL's fused kernels against LibTorch's composite);
#   4. with --bundle DIR: stripped binaries plus the shared libraries they need that a machine
#      with PyPI's torch 2.11 does not already have (no LibTorch, no CUDA), and run.sh, which
#      points LD_LIBRARY_PATH at that machine's torch/lib and nvidia/*/lib (docs/development.md).
#
#   scripts/cuda_build.sh [--bundle DIR] [--targets "T ..."] [--no_check]
#
# Environment: PRL_CUDA_HOME (the toolkit, default /usr/local/cuda), PRL_TORCH_VERSION (default
# 2.11.0, the version the GPU machines have), PIP_INDEX_URL and friends as pip reads them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${ROOT}/.libtorch-cuda"
CUDA_HOME="${PRL_CUDA_HOME:-/usr/local/cuda}"
TORCH_VERSION="${PRL_TORCH_VERSION:-2.11.0}"
# torch 2.11.0's own pins (its Requires-Dist) for the libraries a CUDA toolkit does not ship
EXTRA_WHEELS=(nvidia-cusparselt-cu13==0.8.0 nvidia-cufile==1.15.1.6 nvidia-nvshmem-cu13==3.4.5)
TARGETS="//replay:prl_replay //cli:prlctl //learner:prl_learner //actor:prl_actor //prior_server:prl_prior_server //bench:learner_bench //bench:prior_training_bench //bench:feed_bench //learner:agent_cuda_test //learner:replay_feed_cuda_test //models:cuda_kernels_test //learner:device_math_test"
bundle=""
check=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --targets) TARGETS="$2"; shift 2 ;;
    --no_check) check=0; shift ;;
    -h | --help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cuda_build: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[cuda_build] %s\n' "$*"; }
die() {
  printf '[cuda_build] ERROR: %s\n' "$*" >&2
  exit 1
}

# 0. the toolkit: nvcc of the wheel's CUDA major version
[[ -x "${CUDA_HOME}/bin/nvcc" ]] || die "no CUDA toolkit at ${CUDA_HOME} (set PRL_CUDA_HOME)"
nvcc_release="$("${CUDA_HOME}/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
[[ "${nvcc_release%%.*}" == "13" ]] ||
  die "torch ${TORCH_VERSION} is built with CUDA 13; ${CUDA_HOME} has CUDA ${nvcc_release:-?}"
log "CUDA toolkit ${nvcc_release} at ${CUDA_HOME}"

# 1. the LibTorch root and the extra libraries
stamp="${DEST}/stamp"
want_stamp="torch==${TORCH_VERSION} ${EXTRA_WHEELS[*]}"
if [[ ! -f "${stamp}" || "$(cat "${stamp}")" != "${want_stamp}" ]]; then
  rm -rf "${DEST}"
  mkdir -p "${DEST}/wheels"
  log "virtualenv for pip: ${DEST}/pip"
  /usr/bin/python3 -m venv "${DEST}/pip"
  log "downloading torch==${TORCH_VERSION} and ${EXTRA_WHEELS[*]} from PyPI (about 700 MB)"
  "${DEST}/pip/bin/pip" download --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.12 --abi cp312 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 \
    -d "${DEST}/wheels" "torch==${TORCH_VERSION}" "${EXTRA_WHEELS[@]}"
  log "unpacking"
  /usr/bin/python3 - "${DEST}" <<'EOF'
import glob, os, shutil, sys, zipfile
dest = sys.argv[1]
for wheel in glob.glob(os.path.join(dest, "wheels", "*.whl")):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith("/"):
                continue
            if name.startswith(("torch/include/", "torch/lib/")):
                out = os.path.join(dest, name)  # .libtorch-cuda/torch/{include,lib}/...
            elif name.startswith("nvidia/") and "/lib/" in name and ".so" in name:
                out = os.path.join(dest, "cuda-libs", os.path.basename(name))
            else:
                continue
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
EOF
  rm -rf "${DEST}/wheels" "${DEST}/pip"
  [[ -f "${DEST}/torch/lib/libtorch_cuda.so" ]] || die "the wheel had no torch/lib/libtorch_cuda.so"
  echo "${want_stamp}" >"${stamp}"
fi
log "LibTorch root: ${DEST}/torch ($(du -sh "${DEST}" | cut -f1) with the extra libraries)"

# 2. the build, in its own output base
export PRL_LIBTORCH_ROOT="${DEST}/torch"
export PRL_CUDA_HOME="${CUDA_HOME}"
export PRL_CUDA_LIBRARY_PATH="${DEST}/cuda-libs"
cuda_bazel() {
  bazel --output_base="${HOME}/.cache/prl-bazel-cuda" "$1" --symlink_prefix=.bazel-cuda/ \
    "${@:2}"
}
cd "${ROOT}"
start=${SECONDS}
# shellcheck disable=SC2086  # TARGETS is a list of labels
cuda_bazel build -c opt ${TARGETS}
log "built in $((SECONDS - start)) s: ${TARGETS}"
bin="$(cuda_bazel info -c opt bazel-bin 2>/dev/null)"
export LD_LIBRARY_PATH="${DEST}/cuda-libs:${CUDA_HOME}/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"

# 3. the check
if ((check)); then
  # no GPU needed: the kernels' per-element arithmetic, compiled for the host, against the CPU's
  log "check: the CUDA kernels' arithmetic on the host (models/cuda_kernels_host_check.cu)"
  host_check="$(mktemp -d)"
  "${CUDA_HOME}/bin/nvcc" -O2 -std=c++17 -I"${ROOT}" -Xcompiler -ffp-contract=off,-fno-math-errno \
    "${ROOT}/models/cuda_kernels_host_check.cu" "${ROOT}/models/cpu_kernels.cc" \
    -o "${host_check}/check" || die "cannot build models/cuda_kernels_host_check.cu"
  "${host_check}/check" || die "the CUDA kernels' arithmetic differs from the CPU kernels'"
  rm -rf "${host_check}"
fi
if ((check)) && [[ -x "${bin}/bench/learner_bench" ]]; then
  log "check: learner_bench on the CPU"
  "${bin}/bench/learner_bench" --device=cpu --seconds=2 --threads=1 | tail -2
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    log "check: learner_bench on the GPU"
    "${bin}/bench/learner_bench" --device=cuda --seconds=2 | tail -2
    if [[ -x "${bin}/learner/agent_cuda_test" ]]; then
      log "check: CUDA-graph updates against eager ones"
      "${bin}/learner/agent_cuda_test" | tail -3
    fi
    if [[ -x "${bin}/learner/replay_feed_cuda_test" ]]; then
      log "check: the replay feed's pinned, side-stream staging"
      "${bin}/learner/replay_feed_cuda_test" | tail -3
    fi
    if [[ -x "${bin}/models/cuda_kernels_test" ]]; then
      log "check: fused CUDA kernels against LibTorch's composite"
      "${bin}/models/cuda_kernels_test" | tail -3
    fi
  else
    log "check: no GPU here; --device=cuda must be refused"
    if out="$("${bin}/bench/learner_bench" --device=cuda --seconds=1 2>&1)"; then
      die "learner_bench --device=cuda succeeded without a GPU: ${out}"
    fi
    printf '%s\n' "${out}" | tail -1
  fi
fi

# 4. the bundle for a machine with PyPI's torch
if [[ -n "${bundle}" ]]; then
  rm -rf "${bundle}"
  mkdir -p "${bundle}/bin" "${bundle}/lib"
  for t in ${TARGETS}; do
    f="${bin}/$(echo "${t#//}" | tr ':' '/')"
    [[ -x "${f}" ]] || continue
    strip -o "${bundle}/bin/$(basename "${f}")" "${f}"
    # the shared libraries it loads here, less LibTorch's, CUDA's and the C runtime's
    ldd "${f}" | awk '$3 ~ /^\// {print $3}' | while read -r so; do
      case "${so}" in
        "${DEST}"/* | "${CUDA_HOME}"/* | */libc.so.* | */libm.so.* | */libdl.so.* | \
          */libpthread.so.* | */librt.so.* | */ld-linux-* | */libgcc_s.so.* | */libstdc++.so.*) ;;
        *) cp -n "${so}" "${bundle}/lib/" ;;
      esac
    done
  done
  # oneDNN, which models/gemm.h loads with dlopen (so ldd does not list it) for the CPU's linear
  # layers; a machine with only PyPI's torch lacks it (its oneDNN is linked into libtorch_cpu).
  # It goes xz-compressed (40 MB to 7 MB; run.sh unpacks it once), so that the bundle stays well
  # under what can be carried to a GPU machine.
  so=/usr/lib/x86_64-linux-gnu/libdnnl.so.2
  if [[ -e "${so}" ]]; then
    /usr/bin/python3 -c 'import lzma, shutil, sys
with open(sys.argv[1], "rb") as i, lzma.open(sys.argv[2], "wb", preset=6) as o:
    shutil.copyfileobj(i, o)' "$(readlink -f "${so}")" "${bundle}/lib/libdnnl.so.2.xz"
  fi
  so=/usr/lib/x86_64-linux-gnu/libOpenCL.so.1
  [[ -e "${so}" ]] && strip --strip-unneeded -o "${bundle}/lib/$(basename "${so}")" "$(readlink -f "${so}")"
  # the other libraries above 1 MiB xz-compressed as well (gRPC, OpenSSL, HDF5, protobuf, ...:
  # about a third of their size), unpacked once by run.sh like oneDNN
  for so in "${bundle}"/lib/*.so*; do
    [[ "${so}" == *.xz || $(stat -c %s "${so}") -lt 1048576 ]] && continue
    /usr/bin/python3 -c 'import lzma, os, shutil, sys
with open(sys.argv[1], "rb") as i, lzma.open(sys.argv[1] + ".xz", "wb", preset=6) as o:
    shutil.copyfileobj(i, o)
os.remove(sys.argv[1])' "${so}"
  done
  cp "${ROOT}/scripts/cuda_bundle_run.sh" "${bundle}/run.sh"
  # what a GPU machine's session can carry (docs/development.md)
  size=$(du -sb "${bundle}" | cut -f1)
  ((size <= 60 * 1024 * 1024)) || die "the bundle is $((size / 1048576)) MiB, over the 60 MiB a GPU machine takes"
  log "bundle: ${bundle} ($((size / 1048576)) MiB); on the GPU machine: ${bundle}/run.sh BINARY [flags]"
fi
