#!/usr/bin/env bash
# The Python client's tests (python/tests, pytest) against real prl_replay, prl_prior_server,
# prl_learner, prl_actor, prl_collect and dataset_tool from this build. The client is built
# from the sources in the runfiles (its stubs generated from proto/) into a scratch directory,
# so the tests run what is checked out, with the packages of the client virtualenv: .venv in
# the checkout (scripts/setup.sh --client creates it; scripts/test.sh runs that), or
# $PRL_CLIENT_VENV. Without that virtualenv the test fails, saying so.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
fail() {
  echo "python_client_test: FAILED: $*" >&2
  exit 1
}

# the checkout: this script's runfile links back into it
checkout="$(dirname "$(dirname "$(readlink -f "${runfiles}/tests/python_client_test.sh")")")"
venv="${PRL_CLIENT_VENV:-${checkout}/.venv}"
python="${venv}/bin/python"
[[ -x "${python}" ]] ||
  fail "no client virtualenv at ${venv}: create it with scripts/setup.sh --client (scripts/test.sh does), or point PRL_CLIENT_VENV at one (bazel test --test_env=PRL_CLIENT_VENV=...)"
"${python}" -c 'import grpc, grpc_tools, google.protobuf, pandas, matplotlib, tqdm, h5py, minari, pytest, setuptools, wheel' ||
  fail "the virtualenv ${venv} lacks some of the client's packages (above): run scripts/setup.sh --client"

# build the client from the runfiles, offline, with the virtualenv's grpcio-tools
scratch="${TEST_TMPDIR}/python_client"
rm -rf "${scratch}"
mkdir -p "${scratch}/src/proto"
cp -RL "${runfiles}/python" "${scratch}/src/python"
chmod -R u+w "${scratch}/src"
cp -L "${runfiles}"/proto/*.proto "${scratch}/src/proto/"
PIP_NO_CACHE_DIR=1 "${python}" -m pip install --disable-pip-version-check -q --no-deps \
  --no-build-isolation --no-index --target "${scratch}/site" "${scratch}/src/python" ||
  fail "pip could not build the client from python/ (above)"
export PYTHONPATH="${scratch}/site"
"${python}" -c 'import prl, sys; print("prl", prl.__version__, "from", prl.__file__, "python", sys.version.split()[0])'

export PRL_BIN_DIR="${runfiles}" PRL_SOURCE_DIR="${runfiles}"
export HOME="${TEST_TMPDIR}" MPLCONFIGDIR="${TEST_TMPDIR}/matplotlib" MPLBACKEND=Agg
junit=()
if [[ -n "${XML_OUTPUT_FILE:-}" ]]; then
  junit=(--junitxml="${XML_OUTPUT_FILE}")
fi
cd "${scratch}"
exec "${python}" -m pytest -p no:cacheprovider -q -rfE --basetemp="${scratch}/pytest" \
  "${junit[@]}" "${scratch}/src/python/tests"
