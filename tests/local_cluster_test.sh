#!/usr/bin/env bash
# The README's main job in check mode: the local launcher starts every service from the
# binaries Bazel just built (on free ports), verifies health and that a real Prometheus server
# scrapes prl_build_info from every process, then stops them all with SIGTERM, each exiting 0.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
"${runfiles}/deploy/local/cluster.sh" --check --no_setup --base_port 0 --actors 2 \
  --bin_dir "${runfiles}" --state_dir "${TEST_TMPDIR}/state"
# every process wrote its log, and each server logged a clean stop.
for name in replay-1 replay-2 prior_server learner actor-1 actor-2; do
  grep -q " stopped$" "${TEST_TMPDIR}/state/logs/${name}.log" ||
    { echo "${name} did not log a clean stop" >&2; exit 1; }
done
grep -q '^PRL_LEARNER=127.0.0.1:' "${TEST_TMPDIR}/state/cluster.env"
echo "local cluster check passed"
