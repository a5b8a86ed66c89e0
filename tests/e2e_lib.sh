#!/usr/bin/env bash
# Shared by the end-to-end sh_tests (source it; list it in the test's data):
#   e2e_init NAME    S (the test's scratch directory), OMP_WAIT_POLICY, process cleanup on exit
#   bin PATH         a built binary from the runfiles ("learner/prl_learner")
#   pids+=($!)       processes to stop on exit
#   fail MESSAGE     prints it with the tail of every log under S, exits 1
#   ready LOG FIELD  waits for LOG's PRL_READY line and prints FIELD (grpc, metrics)
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
pids=()
e2e_name=""

bin() { echo "${runfiles}/$1"; }

e2e_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "${p}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

e2e_init() {
  e2e_name="$1"
  S="${TEST_TMPDIR}/${e2e_name}"
  mkdir -p "${S}"
  export S
  export OMP_WAIT_POLICY=PASSIVE
  trap e2e_cleanup EXIT
}

fail() {
  echo "${e2e_name}: $*" >&2
  for f in "${S}"/*.log; do
    echo "== ${f}" >&2
    tail -20 "${f}" >&2
  done
  exit 1
}

ready() {
  for _ in $(seq 1 1200); do
    local line
    line="$(grep -m1 PRL_READY "$1" 2>/dev/null || true)"
    if [[ "${line}" =~ \ $2=([^ ]+) ]]; then
      echo "${BASH_REMATCH[1]}"
      return
    fi
    sleep 0.1
  done
  fail "no PRL_READY in $1"
}

# run_to_success LABEL SPEC: submits SPEC with the caller's `prlctl` array, follows it to its
# end and fails unless it SUCCEEDED with at least one update; sets id, experiment (prlctl get's
# text) and updates.
# shellcheck disable=SC2154  # prlctl is the sourcing script's
run_to_success() {
  local label="$1" spec="$2"
  id="$("${prlctl[@]}" submit "${spec}")" || fail "${label} submit failed"
  "${prlctl[@]}" watch "${id}" >/dev/null || true
  experiment="$("${prlctl[@]}" get "${id}")"
  grep -q "EXPERIMENT_STATE_SUCCEEDED" <<<"${experiment}" ||
    fail "${label} did not succeed: $(grep -E 'state|reason|message' <<<"${experiment}")"
  updates="$(sed -n 's/^ *updates: \([0-9]*\)$/\1/p' <<<"${experiment}" | head -1)"
  [[ "${updates:-0}" -gt 0 ]] || fail "${label} made no updates"
}
