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
# libraries the bundle carries xz-compressed (oneDNN: 40 MB, 7 MB packed), unpacked once into a
# writable directory (the bundle may lie read-only) with Python's lzma, which any torch install has
unpacked="${PRL_BUNDLE_CACHE:-${TMPDIR:-/tmp}/prl-bundle-libs-$(id -u)}"
for packed in "${here}"/lib/*.xz; do
  [[ -e "${packed}" ]] || continue
  so="${unpacked}/$(basename "${packed}" .xz)"
  if [[ ! -e "${so}" || "${packed}" -nt "${so}" ]]; then
    mkdir -p "${unpacked}"
    "${PYTHON:-python3}" -c 'import lzma, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
with lzma.open(src) as i, open(dst + ".tmp", "wb") as o:
    shutil.copyfileobj(i, o)
os.replace(dst + ".tmp", dst)' "${packed}" "${so}"
  fi
  [[ ":${paths}:" == *":${unpacked}:"* ]] || paths="${unpacked}:${paths}"
done
export LD_LIBRARY_PATH="${paths}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}"
binary="$1"
shift
exec "${here}/bin/${binary}" "$@"
