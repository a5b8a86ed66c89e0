#!/usr/bin/env bash
# Runs a binary of a CUDA build bundle (scripts/cuda_build.sh --bundle) on a machine with PyPI's
# torch installed: LibTorch and the CUDA libraries come from that install, everything else from
# the bundle's lib/.
#   run.sh BINARY [flags]      e.g. run.sh learner_bench --device=cuda --seconds=10
#   run.sh --library_path      prints the LD_LIBRARY_PATH it would run with
# PYTHON names the interpreter whose torch to use (default python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 1 ]] || { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# where torch is installed, without importing it (an import takes seconds)
torch_dir="$("${PYTHON:-python3}" -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')"
paths="${here}/lib:${torch_dir}/lib"
for d in "${torch_dir}"/../nvidia/*/lib "${torch_dir}"/../nvidia/*/*/lib; do
  [[ -d "${d}" ]] && paths="${paths}:${d}"
done
# libraries the bundle carries xz-compressed (oneDNN: 40 MB, 7 MB packed; every other one above
# 1 MiB), unpacked once into a writable directory (the bundle may lie read-only) with Python's
# lzma, which any torch install has
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
if [[ "$1" == --library_path ]]; then
  echo "${LD_LIBRARY_PATH}"
  exit 0
fi
binary="$1"
shift
exec "${here}/bin/${binary}" "$@"
