#!/usr/bin/env bash
# Runs a binary of a CUDA build bundle (scripts/cuda_build.sh --bundle) on a machine with PyPI's
# torch installed: LibTorch and the CUDA libraries come from that install, everything else from
# the bundle's lib/.
#   run.sh BINARY [flags]      e.g. run.sh learner_bench --device=cuda --seconds=10
# PYTHON names the interpreter whose torch to use (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 1 ]] || { sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
torch_dir="$("${PYTHON:-python3}" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
paths="${here}/lib:${torch_dir}/lib"
for d in "${torch_dir}"/../nvidia/*/lib "${torch_dir}"/../nvidia/*/*/lib; do
  [[ -d "${d}" ]] && paths="${paths}:${d}"
done
export LD_LIBRARY_PATH="${paths}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
binary="$1"
shift
exec "${here}/bin/${binary}" "$@"
