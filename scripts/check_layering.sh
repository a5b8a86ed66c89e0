#!/usr/bin/env bash
# Checks the package layering of docs/architecture.md with `bazel query`: the services
# (actor/, learner/, replay/, prior_server/) meet only through proto/, common/, models/,
# env_desc/ and the replay and prior client libraries, never through each other's internals;
# models/ and env_desc/ depend on no service. Bazel visibility already refuses most such edges at build
# time; this check names every offending dependency path. Exits 1 when a rule is broken.
#
#   scripts/check_layering.sh        # run by scripts/test.sh before the tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=0
# forbid FROM TO [ALLOWED]: no target under FROM may depend on a target under TO, except ALLOWED.
forbid() {
  local from="$1" to="$2" allowed="${3:-}"
  local query="deps(${from}) intersect (${to})"
  if [[ -n "${allowed}" ]]; then query="(${query}) except ${allowed}"; fi
  local found
  if ! found="$(bazel query --noshow_progress "${query}" 2>/tmp/prl-layering.$$)"; then
    cat /tmp/prl-layering.$$ >&2
    rm -f /tmp/prl-layering.$$
    echo "[layering] bazel query failed: ${query}" >&2
    exit 2
  fi
  rm -f /tmp/prl-layering.$$
  if [[ -n "${found}" ]]; then
    failed=1
    echo "[layering] FAILED: ${from} must not depend on ${to}; it depends on:" >&2
    sed 's/^/[layering]   /' <<<"${found}" >&2
    local first
    first="$(head -n1 <<<"${found}")"
    echo "[layering]   one path: $(bazel query --noshow_progress "somepath(${from}, ${first})" 2>/dev/null | tr '\n' ' ')" >&2
  else
    echo "[layering] ok: ${from} does not depend on ${to}${allowed:+ (except ${allowed})}"
  fi
}

forbid //actor/... //learner/...
forbid //learner/... //actor/...
# the prior client library is the only way into prior_server/
forbid //actor/... //prior_server/... "deps(//prior_server:prior_client)"
forbid //learner/... //prior_server/... "deps(//prior_server:prior_client)"
forbid //prior_server/... //actor/...
forbid //prior_server/... //learner/...
# the replay client library (and the batch format it sends) is the only way into replay/
forbid //learner/... //replay/... "deps(//replay:replay_client)"
forbid //models/... "//actor/... + //learner/... + //replay/... + //prior_server/... + //cli/..."
forbid //env_desc/... "//actor/... + //learner/... + //replay/... + //prior_server/... + //cli/... + //models/..."
forbid //replay/... "//actor/... + //learner/... + //prior_server/... + //models/..."

if [[ "${failed}" -ne 0 ]]; then
  echo "[layering] see docs/architecture.md (Packages and who may depend on whom)" >&2
  exit 1
fi
