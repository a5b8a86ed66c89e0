#!/usr/bin/env bash
# The CUDA build, so that it cannot rot unnoticed: runs scripts/cuda_build.sh (PyPI's CUDA
# LibTorch, the CUDA toolkit, an output base of its own) on the source tree this test comes from,
# with its checks (the CUDA libraries load, SAC updates on the CPU, --device=cuda refused without
# a GPU or run with one), then the CUDA-only test binaries (they skip without a GPU). Manual: the
# first run downloads about 700 MB, and a build without the disk cache compiles every target
# against it; with the disk cache warm it took 340 s on 2 cores (docs/development.md).
#   bazel test //tests:cuda_build_test --test_output=streamed
set -euo pipefail

# the source tree: this script's runfiles entry links to the checked-in file
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
[[ -x "${root}/scripts/cuda_build.sh" ]] || {
  echo "cuda_build_test: no scripts/cuda_build.sh under ${root}" >&2
  exit 1
}
# Bazel gives tests a HOME of their own; the nested build wants the user's (its output base and
# the disk cache live there)
HOME="$(getent passwd "$(id -u)" | cut -d: -f6)"
export HOME
cd "${root}"
start=${SECONDS}
scripts/cuda_build.sh
echo "cuda_build_test: CUDA build and checks in $((SECONDS - start)) s"

bin="$(bazel --output_base="${HOME}/.cache/prl-bazel-cuda" info -c opt bazel-bin 2>/dev/null)"
export LD_LIBRARY_PATH="${root}/.libtorch-cuda/cuda-libs:${PRL_CUDA_HOME:-/usr/local/cuda}/lib64"
for t in models/cuda_kernels_test learner/agent_cuda_test learner/replay_feed_cuda_test; do
  echo "cuda_build_test: ${t}"
  "${bin}/${t}" | tail -3
done
echo "cuda_build_test: passed in $((SECONDS - start)) s"
