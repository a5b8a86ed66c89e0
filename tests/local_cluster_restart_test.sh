#!/usr/bin/env bash
# The local launcher supervises its processes: SIGKILL a replay shard and an actor of a running
# cluster (ports picked by the OS) and both come back, logged, on the same gRPC and metrics ports
# while the launcher keeps running; SIGTERM then stops every process and the launcher exits 0.
# Then a shard killed again right after its restart with --max_restarts 1 is a crash loop: the
# launcher stops the cluster and exits 1.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
launcher="${runfiles}/deploy/local/cluster.sh"
tmp="${TEST_TMPDIR}"

cluster=""     # the launcher's pid while it runs
out=""         # its output
state=""       # its state directory

fail() {
  echo "FAIL: $*" >&2
  if [[ -n "${out}" && -f "${out}" ]]; then
    echo "--- launcher output (${out}):" >&2
    tail -n 60 "${out}" >&2
  fi
  exit 1
}

# Whatever happens, nothing started here outlives the test: a launcher still running (the test
# failed) is stopped, and then any of its processes left.
cleanup() {
  local line
  [[ -n "${cluster}" ]] || return 0
  kill -TERM "${cluster}" 2>/dev/null || true
  wait "${cluster}" 2>/dev/null || true
  [[ -f "${state}/cluster.env" ]] || return 0
  while IFS= read -r line; do
    if [[ "${line}" =~ ^PRL_[A-Z0-9_]*_PID=([0-9]+)$ ]]; then
      kill -KILL "${BASH_REMATCH[1]}" 2>/dev/null || true
    fi
  done <"${state}/cluster.env"
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails
# the test after SECONDS or as soon as the launcher has exited.
wait_for() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    kill -0 "${cluster}" 2>/dev/null || fail "the launcher exited while waiting for ${what}"
    ((SECONDS < deadline)) || fail "no ${what} after ${seconds} s"
    sleep 0.2
  done
}
logged() { grep -qF -- "$1" "${out}"; } # logged TEXT: the launcher printed TEXT

# launch NAME FLAGS...: starts the launcher on free ports, waits until the cluster runs.
launch() {
  local name="$1"
  shift
  out="${tmp}/${name}.out"
  state="${tmp}/${name}"
  "${launcher}" --no_setup --no_submit --no_prometheus --base_port 0 --bin_dir "${runfiles}" \
    --state_dir "${state}" "$@" >"${out}" 2>&1 &
  cluster=$!
  wait_for 150 "running cluster" logged "running; Ctrl-C stops the cluster"
  load_env
}

# load_env: reads the launcher's state/cluster.env into this shell.
load_env() {
  [[ -f "${state}/cluster.env" ]] || fail "no ${state}/cluster.env"
  # shellcheck disable=SC1091
  source "${state}/cluster.env"
}

# all_stopped: every process of the cluster has exited.
all_stopped() {
  local line
  while IFS= read -r line; do
    [[ "${line}" =~ ^PRL_[A-Z0-9_]*_PID=([0-9]+)$ ]] || continue
    if kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
      fail "${line%%=*} ${BASH_REMATCH[1]} is still running after the launcher exited"
    fi
  done <"${state}/cluster.env"
}

start_s=${SECONDS}

# --- 1. a replay shard and an actor are SIGKILLed and come back on their ports ---------------
launch supervised --actors 2
prlctl="${state}/bin/prlctl"
old_replay="${PRL_REPLAY_1}" old_replay_metrics="${PRL_REPLAY_1_METRICS}"
old_replay_pid="${PRL_REPLAY_1_PID}"
old_actor="${PRL_ACTOR_1}" old_actor_metrics="${PRL_ACTOR_1_METRICS}"
old_actor_pid="${PRL_ACTOR_1_PID}"
[[ "${old_replay}" == 127.0.0.1:* && "${old_replay_metrics}" == 127.0.0.1:* ]] ||
  fail "cluster.env lacks replay-1's addresses"
# scrapes before the kill leave connections on the metrics ports: the restart binds them again.
curl -fsS "http://${old_replay_metrics}/metrics" >/dev/null || fail "replay-1 metrics"
curl -fsS "http://${old_actor_metrics}/metrics" >/dev/null || fail "actor-1 metrics"
echo "cluster up after $((SECONDS - start_s)) s; killing replay-1 (${old_replay_pid})" \
  "and actor-1 (${old_actor_pid})"

kill -KILL "${old_replay_pid}" "${old_actor_pid}"
killed_s=${SECONDS}
for name in replay-1 actor-1; do
  wait_for 30 "restart of ${name}" logged "${name} is back"
done
echo "both back after $((SECONDS - killed_s)) s"
for name in replay-1 actor-1; do
  logged "restarting ${name} in 1 s" || fail "no backoff logged for ${name}"
done
logged "replay-1 (pid ${old_replay_pid}) exited unexpectedly (status 137, SIGKILL)" ||
  fail "replay-1's exit was not logged"
logged "actor-1 (pid ${old_actor_pid}) exited unexpectedly (status 137, SIGKILL)" ||
  fail "actor-1's exit was not logged"
kill -0 "${cluster}" 2>/dev/null || fail "the launcher exited after the kills"

load_env
[[ "${PRL_REPLAY_1}" == "${old_replay}" && "${PRL_REPLAY_1_METRICS}" == "${old_replay_metrics}" ]] ||
  fail "replay-1 moved from ${old_replay}/${old_replay_metrics} to ${PRL_REPLAY_1}/${PRL_REPLAY_1_METRICS}"
[[ "${PRL_ACTOR_1}" == "${old_actor}" && "${PRL_ACTOR_1_METRICS}" == "${old_actor_metrics}" ]] ||
  fail "actor-1 moved from ${old_actor}/${old_actor_metrics} to ${PRL_ACTOR_1}/${PRL_ACTOR_1_METRICS}"
[[ -n "${PRL_REPLAY_1_PID}" && "${PRL_REPLAY_1_PID}" != "${old_replay_pid}" ]] ||
  fail "cluster.env has no new pid for replay-1: '${PRL_REPLAY_1_PID}'"
[[ -n "${PRL_ACTOR_1_PID}" && "${PRL_ACTOR_1_PID}" != "${old_actor_pid}" ]] ||
  fail "cluster.env has no new pid for actor-1: '${PRL_ACTOR_1_PID}'"
kill -0 "${PRL_REPLAY_1_PID}" "${PRL_ACTOR_1_PID}" 2>/dev/null || fail "restarted pids not running"

# each process said where it listens, twice, the same both times.
for name in replay-1 actor-1; do
  readies="$(grep '^PRL_READY ' "${state}/logs/${name}.log" || true)"
  [[ "$(wc -l <<<"${readies}")" == 2 ]] || fail "${name}.log: want 2 PRL_READY lines: ${readies}"
  [[ "$(sort -u <<<"${readies}" | wc -l)" == 1 ]] || fail "${name} came back elsewhere: ${readies}"
done
curl -fsS "http://${PRL_REPLAY_1_METRICS}/metrics" | grep -q '^prl_build_info{service="replay"' ||
  fail "restarted replay-1 serves no metrics on ${PRL_REPLAY_1_METRICS}"
curl -fsS "http://${PRL_ACTOR_1_METRICS}/metrics" | grep -q '^prl_build_info{service="actor"' ||
  fail "restarted actor-1 serves no metrics on ${PRL_ACTOR_1_METRICS}"
"${prlctl}" --timeout=5s health "${PRL_REPLAY_1}" "${PRL_REPLAY_2}" "${PRL_PRIOR_SERVER}" \
  "${PRL_LEARNER}" "${PRL_ACTOR_1}" "${PRL_ACTOR_2}" || fail "a service is not healthy"
# the new actor joined the learner at the old address.
actor_rejoined() { (($(grep -c "joined the learner" "${state}/logs/actor-1.log") >= 2)); }
wait_for 30 "actor-1 joining the learner again" actor_rejoined

echo "stopping the launcher (SIGTERM)"
kill -TERM "${cluster}"
rc=0
wait "${cluster}" || rc=$?
cluster=""
((rc == 0)) || fail "the launcher exited with status ${rc} after SIGTERM, want 0"
logged "received SIGTERM" || fail "the launcher did not log SIGTERM"
all_stopped
for name in replay-1 replay-2 prior_server learner actor-1 actor-2; do
  grep -q " stopped$" "${state}/logs/${name}.log" || fail "${name} did not log a clean stop"
done
echo "part 1 passed after $((SECONDS - start_s)) s"

# --- 2. crash loop: killed again after its one allowed restart, a shard stops the cluster ----
launch crashloop --actors 1 --max_restarts 1
# shellcheck disable=SC2153 # PRL_REPLAY_2_PID comes from cluster.env
kill -KILL "${PRL_REPLAY_2_PID}"
wait_for 30 "restart of replay-2" logged "replay-2 is back"
load_env
kill -KILL "${PRL_REPLAY_2_PID}"
rc=0
wait "${cluster}" || rc=$?
cluster=""
((rc == 1)) || fail "the launcher exited with status ${rc} after a crash loop, want 1"
logged "giving up on replay-2: it exited after 1 restarts within 120 s (--max_restarts 1)" ||
  fail "the crash loop was not logged"
all_stopped
echo "local cluster restart test passed after $((SECONDS - start_s)) s"
