#!/usr/bin/env bash
# Shared by the studies that run on a local cluster (bench/maze_transfer.sh,
# bench/mcat_transfer.sh); source it after setting ROOT:
#   bench_cluster STATE_DIR ACTORS [CLUSTER_ENV]
#       uses the running cluster CLUSTER_ENV (a cluster.env), or starts
#       deploy/local/cluster.sh in STATE_DIR (stopped when the study exits; the learner's torch
#       threads from PRL_LEARNER_THREADS, default 1; more prl_learner flags from
#       PRL_LEARNER_FLAGS, space-separated; prebuilt binaries from PRL_BIN_DIR, laid out
#       as bazel-bin, when set: no build and no scripts/setup.sh); then sets PRL_LEARNER and the
#       other addresses, and `prlctl` (an array) to reach the learner
#   follow ID TIMEOUT
#       prlctl watch ID to its end, again after a learner restart cut it short

bench_cluster() {
  local state_dir="$1" actors="$2" cluster_env="${3:-}"
  if [[ -z "${cluster_env}" ]]; then
    # a previous cluster's output and addresses must not be read as this one's (the wait below
    # can run before the new cluster.sh has truncated its output)
    rm -f "${state_dir}/cluster.out" "${state_dir}/cluster.env"
    local prebuilt=()
    [[ -n "${PRL_BIN_DIR:-}" ]] && prebuilt=(--bin_dir "${PRL_BIN_DIR}" --no_setup)
    local flag
    for flag in ${PRL_LEARNER_FLAGS:-}; do prebuilt+=(--learner_flag "${flag}"); done
    mkdir -p "${state_dir}"
    "${ROOT}/deploy/local/cluster.sh" --state_dir "${state_dir}" --actors "${actors}" \
      --learner_threads "${PRL_LEARNER_THREADS:-1}" --no_submit --base_port 0 --no_prometheus \
      "${prebuilt[@]}" >"${state_dir}/cluster.out" 2>&1 &
    bench_cluster_pid=$!
    trap 'kill -TERM ${bench_cluster_pid} 2>/dev/null; wait ${bench_cluster_pid} 2>/dev/null || true' EXIT
    for _ in $(seq 1 6000); do
      grep -q "running; Ctrl-C" "${state_dir}/cluster.out" 2>/dev/null && break
      kill -0 "${bench_cluster_pid}" 2>/dev/null || { cat "${state_dir}/cluster.out" >&2; exit 1; }
      sleep 0.2
    done
    cluster_env="${state_dir}/cluster.env"
  fi
  # shellcheck disable=SC1090
  source "${cluster_env}"
  prlctl=("$(dirname "${cluster_env}")/bin/prlctl" --learner="${PRL_LEARNER}")
}

follow() {
  local id="$1" timeout="$2" state
  for _ in $(seq 1 1000); do
    if [[ -t 1 ]]; then
      "${prlctl[@]}" --watch_timeout="${timeout}" watch "${id}" || true
    else
      "${prlctl[@]}" --watch_timeout="${timeout}" watch "${id}" | tr '\r' '\n' |
        grep -v '^ *$' | tail -1 || true
    fi
    state="$("${prlctl[@]}" get "${id}" 2>/dev/null | awk '/^state:/{print $2; exit}')" || true
    case "${state}" in
      EXPERIMENT_STATE_SUCCEEDED | EXPERIMENT_STATE_FAILED | EXPERIMENT_STATE_STOPPED) return 0 ;;
    esac
    sleep 2
  done
}
