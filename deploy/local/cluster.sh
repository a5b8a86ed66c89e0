#!/usr/bin/env bash
# Starts a whole PRL cluster on this machine: 2 replay shards, the prior server, the learner,
# N actors and a Prometheus server scraping all of them, every process on loopback with its
# log under one state directory. Waits until every service reports SERVING and Prometheus
# scrapes every /metrics endpoint, prints the cluster, then runs the default job — the maze
# transfer workflow, small: collect planner data on random mazes, train a skill prior on it,
# serve it, and train spirl and flat sac on a held-out maze with a sparse reward, ending with
# the comparison plot and a one-line summary (bench/maze_transfer.sh --cluster; about 17
# minutes on 2 cores) — or submits one experiment (--spec) and shows its progress. Then it runs
# until Ctrl-C or SIGTERM and stops every process cleanly (the learner checkpoints a running
# experiment and resumes it next time).
#
# While it runs it supervises every process: one that exits (crash, SIGKILL, even status 0) is
# restarted with the same flags on the same ports, the ones it first listened on, after 1 s,
# then 2, 4, ... up to 30 s if it keeps exiting (back to 1 s once it has stayed up 60 s). A
# process that exits again after --max_restarts restarts within 2 minutes is crash-looping: the
# launcher stops the whole cluster and exits 1. After Ctrl-C or SIGTERM it exits 0 if every
# process stopped cleanly.
#
#   deploy/local/cluster.sh                 # set up, build, run the maze workflow; Ctrl-C stops
#   deploy/local/cluster.sh --spec examples/cheetah_sac.textproto
#   deploy/local/cluster.sh --no_submit     # only the cluster
#   deploy/local/cluster.sh --check         # start, verify, stop; exit 0 if all was healthy
#
# Options (all optional):
#   --state_dir DIR      logs, generated configs and data (default: <repo>/state)
#   --actors N           actor processes (default 2)
#   --base_port P        gRPC ports P+2 learner, P+3 prior server, P+11.. replay shards,
#                        P+21.. actors; metrics ports 9150+ the same offsets; Prometheus 9090.
#                        0 lets every process pick free ports (tests). Default 50050.
#   --bin_dir DIR        use prebuilt binaries from DIR (laid out as bazel-bin) instead of
#                        building them with Bazel
#   --no_prometheus      do not start Prometheus
#   --check              exit after verifying the cluster instead of running until Ctrl-C
#   --no_setup           skip scripts/setup.sh (Debian packages)
#   --spec FILE          experiment to submit once the cluster is up, instead of the maze
#                        workflow
#   --workflow_steps N   env-step budget of each transfer run of the maze workflow
#                        (default 100000)
#   --no_submit          submit nothing
#   --learner_threads N  Torch threads of the learner's updates (default 2 for the maze
#                        workflow, whose point-mass actors use little CPU, on a machine with 2+
#                        cores; else 1: actors share the machine's cores)
#   --learner_flag FLAG  one more flag for prl_learner, as it spells it (repeatable), e.g.
#                        --learner_flag --learner_updates_per_graph=4
#   --max_restarts N     restarts of one process within 2 minutes before the launcher gives up
#                        and stops the cluster (default 5; 0: the first exit stops the cluster)
#
# state/cluster.env (rewritten whenever a process exits or restarts) has every process's gRPC
# address (PRL_LEARNER=..., PRL_REPLAY_1=...), metrics address (PRL_REPLAY_1_METRICS=...) and
# pid (PRL_REPLAY_1_PID=..., empty while it waits to be restarted), PRL_PROMETHEUS and
# PRL_CLUSTER_PID, the launcher's own pid.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state_dir="${ROOT}/state"
actors=2
base_port=50050
bin_dir=""
prometheus=1
check=0
setup=1
spec=""
workflow_steps=100000
submit=1
learner_threads=""
learner_flags=()
max_restarts=5

log() { printf '[cluster] %s\n' "$*"; }
die() {
  printf '[cluster] ERROR: %s\n' "$*" >&2
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --state_dir) state_dir="$2"; shift 2 ;;
    --actors) actors="$2"; shift 2 ;;
    --base_port) base_port="$2"; shift 2 ;;
    --bin_dir) bin_dir="$2"; shift 2 ;;
    --no_prometheus) prometheus=0; shift ;;
    --check) check=1; shift ;;
    --no_setup) setup=0; shift ;;
    --spec) spec="$2"; shift 2 ;;
    --workflow_steps) workflow_steps="$2"; shift 2 ;;
    --no_submit) submit=0; shift ;;
    --learner_threads) learner_threads="$2"; shift 2 ;;
    --learner_flag)
      [[ "$2" == --learner_* ]] || die "--learner_flag takes one of prl_learner's flags (--learner_...), got '$2'"
      learner_flags+=("$2"); shift 2 ;;
    --max_restarts) max_restarts="$2"; shift 2 ;;
    -h | --help)
      awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
      exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "${actors}" =~ ^[0-9]+$ ]] || die "--actors must be a number >= 0, got '${actors}'"
if ! [[ "${workflow_steps}" =~ ^[0-9]+$ ]] || ((workflow_steps == 0)); then
  die "--workflow_steps must be a number > 0, got '${workflow_steps}'"
fi
[[ "${max_restarts}" =~ ^[0-9]+$ ]] ||
  die "--max_restarts must be a number >= 0, got '${max_restarts}'"
if [[ -z "${learner_threads}" ]]; then
  # the maze workflow's learner is the busy process: its actors step a point mass
  if [[ -z "${spec}" ]] && ((submit && !check)) && (($(nproc) >= 2)); then
    learner_threads=2
  else
    learner_threads=1
  fi
fi
if ! [[ "${learner_threads}" =~ ^[0-9]+$ ]] || ((learner_threads == 0)); then
  die "--learner_threads must be a number > 0, got '${learner_threads}'"
fi
if ! [[ "${base_port}" =~ ^[0-9]+$ ]] ||
  ! ((base_port == 0 || (base_port >= 1024 && base_port <= 65000))); then
  die "--base_port must be 0 or 1024-65000, got '${base_port}'"
fi

if ((setup)); then
  "${ROOT}/scripts/setup.sh"
fi

# --- binaries ------------------------------------------------------------------------------
if [[ -z "${bin_dir}" ]]; then
  log "building binaries (bazel build -c opt; incremental after the first time)"
  (cd "${ROOT}" && bazel build -c opt //replay:prl_replay //prior_server:prl_prior_server \
    //learner:prl_learner //actor:prl_actor //cli:prlctl)
  bin_dir="$(cd "${ROOT}" && bazel info -c opt bazel-bin 2>/dev/null)"
fi
for b in replay/prl_replay prior_server/prl_prior_server learner/prl_learner actor/prl_actor \
  cli/prlctl; do
  [[ -x "${bin_dir}/${b}" ]] || die "missing binary ${bin_dir}/${b}"
done
mkdir -p "${state_dir}/logs" "${state_dir}/bin"
state_dir="$(cd "${state_dir}" && pwd)"
# written again once this cluster is up; a stale one must not be taken for it.
rm -f "${state_dir}/cluster.env"
# a stable path to this cluster's prlctl, whatever Bazel configuration built it.
ln -sf "${bin_dir}/cli/prlctl" "${state_dir}/bin/prlctl"
prlctl="${state_dir}/bin/prlctl"

# --- process table -------------------------------------------------------------------------
# One entry per process, by index. argv_<index> holds its command without the port flags;
# every (re)start passes --port/--metrics_port from grpc_ports/metrics_ports, which hold the
# ports of its first start once it has reported them (the ones the OS picked with port 0).
names=()
pids=()          # "" while the process waits to be restarted
grpc_addrs=()    # host:port from its PRL_READY line ("-" for Prometheus)
metrics_addrs=()
grpc_ports=()    # "" for a process without --port/--metrics_port flags (Prometheus)
metrics_ports=()
started_ms=()    # when the current pid started
backoff_ms=()    # delay before its next restart
restart_at_ms=() # when, after it exited, it is due to be restarted
restart_times=() # start times of its restarts within the crash-loop window, space-separated
restarts=()      # restarts so far
ready_from=()    # restarted and not yet ready: log offset where this run's output starts
watch_pid=""     # prlctl watch, following the submitted experiment
rewatch=""       # set when watch ended because the learner restarted: follow again once back
learner_index="" # the learner's index
stop_signal=""   # set by the INT/TERM traps while the cluster runs
crash_loop=""    # set when a process has crash-looped

readonly backoff_first_ms=1000 backoff_max_ms=30000 backoff_reset_ms=60000
readonly restart_window_ms=120000

now_ms() { # sets now to the time in milliseconds (no fork)
  now="${EPOCHREALTIME//[!0-9]/}"
  now=$((10#${now} / 1000))
}

stop_all() {
  local rc=0 i code waited running=0
  trap - INT TERM EXIT
  if [[ -n "${watch_pid}" ]]; then
    kill -TERM "${watch_pid}" 2>/dev/null || true
    wait "${watch_pid}" 2>/dev/null || true
    watch_pid=""
  fi
  for i in "${!pids[@]}"; do
    if [[ -n "${pids[i]}" ]]; then running=$((running + 1)); fi
  done
  log "stopping ${running} processes"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    if [[ -n "${pids[i]}" ]]; then kill -TERM "${pids[i]}" 2>/dev/null || true; fi
  done
  for i in "${!pids[@]}"; do
    [[ -n "${pids[i]}" ]] || continue
    waited=0
    while kill -0 "${pids[i]}" 2>/dev/null && ((waited < 100)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "${pids[i]}" 2>/dev/null; then
      log "${names[i]} did not stop within 10 s of SIGTERM; killing it"
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
    code=0
    wait "${pids[i]}" 2>/dev/null || code=$?
    if ((code != 0)); then
      log "${names[i]} exited with status ${code} (log: ${state_dir}/logs/${names[i]}.log)"
      rc=1
    fi
  done
  log "stopped"
  return "${rc}"
}

# spawn INDEX: starts process INDEX, its output appended to its log.
spawn() {
  local i="$1"
  local -n argv="argv_${i}"
  local cmd=("${argv[0]}")
  if [[ -n "${grpc_ports[i]}" ]]; then
    cmd+=(--port="${grpc_ports[i]}" --metrics_port="${metrics_ports[i]}")
  fi
  cmd+=("${argv[@]:1}")
  "${cmd[@]}" >>"${state_dir}/logs/${names[i]}.log" 2>&1 &
  pids[i]=$!
  now_ms
  started_ms[i]="${now}"
}

# add NAME GRPC_PORT METRICS_PORT COMMAND...: adds a process to the table (ports "" for one
# without port flags) and starts it with a fresh log.
add() {
  local i="${#names[@]}"
  names+=("$1")
  grpc_ports+=("$2")
  metrics_ports+=("$3")
  shift 3
  declare -ga "argv_${i}=()"
  local -n argv="argv_${i}"
  argv=("$@")
  pids+=("")
  grpc_addrs+=(-)
  metrics_addrs+=(-)
  started_ms+=(0)
  backoff_ms+=("${backoff_first_ms}")
  restart_at_ms+=(0)
  restart_times+=("")
  restarts+=(0)
  ready_from+=("")
  : >"${state_dir}/logs/${names[i]}.log"
  spawn "${i}"
}

# ready_addrs LINE: sets grpc and metrics from a PRL_READY line.
ready_addrs() {
  grpc=""
  metrics=""
  if [[ "$1" =~ \ grpc=([^ ]+) ]]; then grpc="${BASH_REMATCH[1]}"; fi
  if [[ "$1" =~ \ metrics=([^ ]+) ]]; then metrics="${BASH_REMATCH[1]}"; fi
}

# Starts a PRL server; records it once it prints its PRL_READY line, and from then on restarts
# it on the ports that line reports.
#   start NAME BINARY GRPC_PORT METRICS_PORT [FLAGS...]
start() {
  local name="$1" binary="$2" port="$3" metrics_port="$4"
  shift 4
  local i="${#names[@]}" logfile="${state_dir}/logs/${name}.log"
  add "${name}" "${port}" "${metrics_port}" "${bin_dir}/${binary}" "$@"
  local ready="" waited=0
  while [[ -z "${ready}" ]]; do
    ready="$(grep -m1 '^PRL_READY ' "${logfile}" || true)"
    [[ -n "${ready}" ]] && break
    if ! kill -0 "${pids[i]}" 2>/dev/null; then
      tail -n 20 "${logfile}" >&2
      die "${name} exited during start-up (log: ${logfile})"
    fi
    ((waited < 600)) || die "${name} not ready after 60 s (log: ${logfile})"
    sleep 0.1
    waited=$((waited + 1))
  done
  local grpc metrics
  ready_addrs "${ready}"
  grpc_addrs[i]="${grpc}"
  metrics_addrs[i]="${metrics}"
  grpc_ports[i]="${grpc##*:}"
  metrics_ports[i]="${metrics##*:}"
}

# Writes state/cluster.env (atomically: readers never see half of it).
write_env() {
  local i key
  {
    echo "PRL_LEARNER=${learner_addr}"
    for i in "${!names[@]}"; do
      key="${names[i]^^}"
      key="PRL_${key//-/_}"
      if [[ "${names[i]}" == prometheus ]]; then
        echo "${key}=${prometheus_url}"
      else
        echo "${key}=${grpc_addrs[i]}"
        echo "${key}_METRICS=${metrics_addrs[i]}"
      fi
      echo "${key}_PID=${pids[i]}"
    done
    echo "PRL_CLUSTER_PID=$$"
  } >"${state_dir}/cluster.env.tmp"
  mv -f "${state_dir}/cluster.env.tmp" "${state_dir}/cluster.env"
}

# --- supervision ---------------------------------------------------------------------------
# Like Kubernetes' restartPolicy Always with its CrashLoopBackOff, or systemd's Restart= with
# StartLimitBurst: a process that exits is restarted after backoff_ms (doubling up to 30 s,
# back to 1 s once it stayed up 60 s); one that exits again after max_restarts restarts within
# 2 minutes stops the cluster.

describe_status() { # describe_status STATUS: e.g. "status 137, SIGKILL"
  if (($1 > 128)); then
    printf 'status %d, SIG%s' "$1" "$(kill -l "$1" 2>/dev/null || echo "$(($1 - 128))")"
  else
    printf 'status %d' "$1"
  fi
}

# exited INDEX STATUS: process INDEX exited: schedules its restart, or sets crash_loop.
exited() {
  local i="$1" code="$2" up_ms t recent=()
  local name="${names[i]}" logfile="${state_dir}/logs/${names[i]}.log"
  now_ms
  up_ms=$((now - started_ms[i]))
  log "${name} (pid ${pids[i]}) exited unexpectedly ($(describe_status "${code}")) after" \
    "$((up_ms / 1000)) s; last lines of ${logfile}:"
  tail -n 10 "${logfile}" | sed 's/^/    /' >&2 || true
  pids[i]=""
  ready_from[i]=""
  for t in ${restart_times[i]}; do
    if ((now - t < restart_window_ms)); then recent+=("${t}"); fi
  done
  restart_times[i]="${recent[*]}"
  if ((${#recent[@]} >= max_restarts)); then
    log "giving up on ${name}: it exited after ${#recent[@]} restarts within" \
      "$((restart_window_ms / 1000)) s (--max_restarts ${max_restarts}); stopping the cluster"
    crash_loop="${name}"
    write_env
    return 0
  fi
  if ((up_ms >= backoff_reset_ms)); then backoff_ms[i]="${backoff_first_ms}"; fi
  restart_at_ms[i]=$((now + backoff_ms[i]))
  log "restarting ${name} in $((backoff_ms[i] / 1000)) s" \
    "(restart $((restarts[i] + 1)), $((${#recent[@]} + 1)) within $((restart_window_ms / 1000)) s)"
  backoff_ms[i]=$((backoff_ms[i] * 2))
  if ((backoff_ms[i] > backoff_max_ms)); then backoff_ms[i]="${backoff_max_ms}"; fi
  write_env
}

# restart INDEX: starts process INDEX again, same command and ports, appending to its log.
restart() {
  local i="$1" ports=""
  local logfile="${state_dir}/logs/${names[i]}.log"
  restarts[i]=$((restarts[i] + 1))
  printf '[cluster] %(%F %T)T restart %d\n' -1 "${restarts[i]}" >>"${logfile}"
  ready_from[i]=""
  if [[ -n "${grpc_ports[i]}" ]]; then
    ready_from[i]="$(wc -c <"${logfile}")"
    ports=", ports ${grpc_ports[i]} and ${metrics_ports[i]}"
  fi
  spawn "${i}"
  restart_times[i]="${restart_times[i]:+${restart_times[i]} }${started_ms[i]}"
  log "restarted ${names[i]} (pid ${pids[i]}${ports})"
  write_env
}

# check_ready INDEX: reports a restarted server once its PRL_READY line is out.
check_ready() {
  local i="$1" ready grpc metrics
  ready="$(tail -c "+$((ready_from[i] + 1))" "${state_dir}/logs/${names[i]}.log" |
    grep -m1 '^PRL_READY ' || true)"
  [[ -n "${ready}" ]] || return 0
  ready_from[i]=""
  ready_addrs "${ready}"
  if [[ "${grpc}" != "${grpc_addrs[i]}" || "${metrics}" != "${metrics_addrs[i]}" ]]; then
    log "WARNING: ${names[i]} came back on grpc=${grpc} metrics=${metrics}, not on" \
      "grpc=${grpc_addrs[i]} metrics=${metrics_addrs[i]}"
  fi
  log "${names[i]} is back (pid ${pids[i]}, grpc=${grpc} metrics=${metrics})"
  if [[ -n "${rewatch}" && "${i}" == "${learner_index}" ]]; then
    log "following ${id} again"
    start_watch
  fi
}

# start_watch: follows the submitted experiment, in the background.
start_watch() {
  rewatch=""
  "${prlctl}" --learner="${learner_addr}" watch "${id}" &
  watch_pid=$!
}

# start_workflow: the maze transfer workflow on this cluster, in the background (it follows its
# experiments across learner restarts itself). The dataset and prior are the study's (400
# planner episodes, 20 epochs: 2-3 minutes together); with half of each, spirl's success at 100k
# varied from 0 to 1 between seeds (docs/results.md).
start_workflow() {
  "${ROOT}/bench/maze_transfer.sh" --cluster "${state_dir}/cluster.env" --seeds 1 \
    --methods spirl,sac --max_env_steps "${workflow_steps}" --out "${state_dir}/maze_transfer" &
  watch_pid=$!
}

# check_watch: once prlctl watch has ended, plots the experiment (the workflow plots its own).
check_watch() {
  local code=0
  if [[ -z "${watch_pid}" ]] || kill -0 "${watch_pid}" 2>/dev/null; then return 0; fi
  wait "${watch_pid}" || code=$?
  watch_pid=""
  if [[ -z "${spec}" ]]; then
    if ((code == 0)); then
      log "maze workflow done: ${state_dir}/maze_transfer.png (curves), maze_transfer.csv"
    else
      log "maze workflow failed (status ${code}); the cluster keeps running"
    fi
  elif ((code == 0)); then
    "${prlctl}" --learner="${learner_addr}" --output="${state_dir}/${id}.png" plot "${id}" || true
  elif [[ -z "${pids[learner_index]}" || -n "${ready_from[learner_index]}" ]]; then
    log "stopped following ${id} while the learner restarts; following it again once it is back"
    rewatch=1
  else
    log "stopped following ${id} (prlctl watch: status ${code}); follow it again with"
    log "${prlctl} --learner=${learner_addr} watch ${id}"
  fi
}

# supervise: restarts every process that exits until INT or TERM arrives (sets stop_signal) or
# one crash-loops (sets crash_loop). Every half second it looks at every process; it waits on a
# sleep child, which the traps interrupt at once.
supervise() {
  local i code sleeper=""
  while [[ -z "${stop_signal}" && -z "${crash_loop}" ]]; do
    now_ms
    for i in "${!names[@]}"; do
      if [[ -z "${pids[i]}" ]]; then
        if ((now >= restart_at_ms[i])); then restart "${i}"; fi
      elif ! kill -0 "${pids[i]}" 2>/dev/null; then
        code=0
        wait "${pids[i]}" 2>/dev/null || code=$?
        exited "${i}" "${code}"
        if [[ -n "${crash_loop}" ]]; then return 0; fi
      elif [[ -n "${ready_from[i]}" ]]; then
        check_ready "${i}"
      fi
    done
    check_watch
    sleep 0.5 &
    sleeper=$!
    wait "${sleeper}" || true
  done
  if [[ -n "${sleeper}" ]]; then kill "${sleeper}" 2>/dev/null || true; fi
  log "received SIG${stop_signal}"
}

port_for() { # port_for OFFSET KIND(grpc|metrics)
  if ((base_port == 0)); then echo 0; return; fi
  if [[ "$2" == grpc ]]; then echo $((base_port + $1)); else echo $((9150 + $1)); fi
}

trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

if [[ -n "${PRL_AUTH_TOKEN:-}" ]]; then
  log "PRL_AUTH_TOKEN is set: every service requires it on mutating RPCs"
fi

# OpenMP threads in LibTorch spin while waiting by default; on cores shared by several
# processes that slows every one of them down many times (docs/benchmarks.md, learner).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

log "state directory: ${state_dir}"
for shard in 1 2; do
  start "replay-${shard}" replay/prl_replay "$(port_for $((10 + shard)) grpc)" \
    "$(port_for $((10 + shard)) metrics)" --replay_checkpoint_dir="${state_dir}/replay-${shard}"
done
# The prior server loads what TRAIN_PRIOR runs write to the learner's model store (one machine,
# one file system; on Kubernetes the learner pushes artifacts instead, docs/prior_server.md).
mkdir -p "${state_dir}/learner/models"
start prior_server prior_server/prl_prior_server "$(port_for 3 grpc)" "$(port_for 3 metrics)" \
  --prior_model_dir="${state_dir}/learner/models" --prior_threads=1
prior_addr="${grpc_addrs[${#grpc_addrs[@]} - 1]}"
replay_addrs="${grpc_addrs[0]},${grpc_addrs[1]}"
learner_index="${#names[@]}"
start learner learner/prl_learner "$(port_for 2 grpc)" "$(port_for 2 metrics)" \
  --learner_replay="${replay_addrs}" --learner_state_dir="${state_dir}/learner" \
  --learner_torch_threads="${learner_threads}" --learner_prior_address="${prior_addr}" \
  "${learner_flags[@]}"
learner_addr="${grpc_addrs[${#grpc_addrs[@]} - 1]}"
for ((a = 1; a <= actors; a++)); do
  start "actor-${a}" actor/prl_actor "$(port_for $((20 + a)) grpc)" \
    "$(port_for $((20 + a)) metrics)" --actor_learner="${learner_addr}"
done

# --- health --------------------------------------------------------------------------------
log "checking health"
"${prlctl}" --timeout=5s health "${grpc_addrs[@]}" || die "a service is not healthy"

# --- prometheus ----------------------------------------------------------------------------
prometheus_url=""
if ((prometheus)); then
  command -v prometheus >/dev/null || die "prometheus not installed (scripts/setup.sh installs it)"
  if ((base_port == 0)); then
    prom_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  else
    prom_port=9090
  fi
  mkdir -p "${state_dir}/prometheus"
  {
    echo "# Generated by deploy/local/cluster.sh: scrapes every process of the local cluster."
    echo "global:"
    echo "  scrape_interval: 5s"
    echo "  evaluation_interval: 5s"
    # the alert rules of deploy/prometheus (docs/dashboards.md), when this checkout has them
    if [[ -f "${ROOT}/deploy/prometheus/alerts.yml" ]]; then
      echo "rule_files: ['${ROOT}/deploy/prometheus/alerts.yml']"
    fi
    # one job per service, prl-<service> as the dashboard and alerts expect; each target
    # labelled with its process name (not "service": prl_build_info has that label)
    echo "scrape_configs:"
    for service in replay learner prior_server actor; do
      local_targets=()
      for i in "${!names[@]}"; do
        [[ "${names[i]%%-[0-9]*}" == "${service}" && -n "${metrics_addrs[i]}" ]] &&
          local_targets+=("${i}")
      done
      ((${#local_targets[@]} > 0)) || continue
      echo "  - job_name: prl-${service//_/-}"
      echo "    static_configs:"
      for i in "${local_targets[@]}"; do
        echo "      - targets: ['${metrics_addrs[i]}']"
        echo "        labels: {process: '${names[i]}'}"
      done
    done
  } >"${state_dir}/prometheus/prometheus.yml"
  if command -v promtool >/dev/null; then
    promtool check config "${state_dir}/prometheus/prometheus.yml" >/dev/null ||
      die "generated Prometheus config is invalid"
  fi
  prometheus_url="http://127.0.0.1:${prom_port}"
  add prometheus "" "" "$(command -v prometheus)" \
    --config.file="${state_dir}/prometheus/prometheus.yml" \
    --storage.tsdb.path="${state_dir}/prometheus/data" \
    --web.listen-address="127.0.0.1:${prom_port}"

  # every PRL process must be scraped successfully and report prl_build_info.
  want="$(( ${#names[@]} - 1 ))"
  log "waiting for Prometheus to scrape ${want} targets"
  up=0
  for _ in $(seq 1 150); do
    up="$(curl -fsS "${prometheus_url}/api/v1/query?query=count(prl_build_info)" 2>/dev/null |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' \
        2>/dev/null || echo 0)"
    [[ "${up}" == "${want}" ]] && break
    kill -0 "${pids[${#pids[@]} - 1]}" 2>/dev/null ||
      { tail -n 20 "${state_dir}/logs/prometheus.log" >&2; die "prometheus exited"; }
    sleep 0.2
  done
  [[ "${up}" == "${want}" ]] ||
    die "Prometheus sees prl_build_info from ${up} of ${want} processes (${prometheus_url}/targets)"
fi

# --- report --------------------------------------------------------------------------------
write_env

echo
printf '%-14s %-8s %-18s %-32s %s\n' PROCESS PID GRPC METRICS LOG
for i in "${!names[@]}"; do
  if [[ "${names[i]}" == prometheus ]]; then
    printf '%-14s %-8s %-18s %-32s %s\n' prometheus "${pids[i]}" - "${prometheus_url}" \
      "logs/prometheus.log"
  else
    printf '%-14s %-8s %-18s %-32s %s\n' "${names[i]}" "${pids[i]}" "${grpc_addrs[i]}" \
      "http://${metrics_addrs[i]}/metrics" "logs/${names[i]}.log"
  fi
done
echo
log "all ${#names[@]} processes healthy; addresses in ${state_dir}/cluster.env"

if ((check)); then
  stop_all
  exit $?
fi

if ((submit)) && [[ -z "${spec}" ]]; then
  log "running the maze transfer workflow (collect, skill prior, spirl vs sac on a held-out"
  log "maze, ${workflow_steps} env steps each); --spec FILE runs one experiment instead"
elif ((submit)); then
  [[ -f "${spec}" ]] || spec="${ROOT}/${spec}"
  [[ -f "${spec}" ]] || die "--spec: no file ${spec}"
  id="$("${prlctl}" --learner="${learner_addr}" submit "${spec}")" || die "submit failed"
  log "submitted ${spec} as ${id}; following it (Ctrl-C stops the cluster; the experiment"
  log "resumes from its checkpoint at the next start)"
  log "elsewhere: ${prlctl} --learner=${learner_addr} get ${id} | plot ${id} | stop ${id}"
else
  log "try: ${prlctl} --learner=${learner_addr} submit examples/cheetah_sac.textproto"
fi

# From here on INT and TERM only ask the supervisor to stop: it never leaves the process table
# half updated.
trap 'stop_signal=INT' INT
trap 'stop_signal=TERM' TERM
if ((submit)) && [[ -z "${spec}" ]]; then
  start_workflow
elif ((submit)); then
  # in the background: processes are restarted while it follows the experiment.
  start_watch
fi
log "running; Ctrl-C stops the cluster"
supervise
rc=0
stop_all || rc=$?
if [[ -n "${crash_loop}" ]]; then rc=1; fi
exit "${rc}"
