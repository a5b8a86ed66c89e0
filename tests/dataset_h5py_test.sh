#!/usr/bin/env bash
# Runs dataset_h5py_test.py (PRL's HDF5 datasets against h5py) with the first python3 on PATH
# that has h5py and numpy: Debian's python3-h5py, which a pyenv or venv python3 earlier on
# PATH may lack.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
python=""
for candidate in $(type -ap python3); do
  if "${candidate}" -c 'import h5py, numpy' 2>/dev/null; then
    python="${candidate}"
    break
  fi
done
if [[ -z "${python}" ]]; then
  echo "no python3 with h5py on PATH (${PATH}); install python3-h5py" >&2
  exit 1
fi
echo "using ${python}"
scratch="${TEST_TMPDIR}/dataset_h5py"
mkdir -p "${scratch}"
exec "${python}" "${runfiles}/tests/dataset_h5py_test.py" "${runfiles}/tests/dataset_tool" \
  "${scratch}"
