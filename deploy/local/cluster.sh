#!/usr/bin/env bash
# Starts a whole PRL cluster on this machine: 2 replay shards, the prior server, the learner,
# N actors and a Prometheus server scraping all of them, every process on loopback with its
# log under one state directory. Waits until every service reports SERVING and Prometheus
# scrapes every /metrics endpoint, prints the cluster, submits the default experiment (SAC on
# cheetah run-forward) and shows its progress, then runs until Ctrl-C or SIGTERM and stops every
# process cleanly (the learner checkpoints a running experiment and resumes it next time).
#
#   deploy/local/cluster.sh                 # set up, build, run, train; Ctrl-C stops
#   deploy/local/cluster.sh --spec examples/cheetah_td3.textproto
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
#   --spec FILE          experiment to submit once the cluster is up
#                        (default examples/cheetah_sac.textproto)
#   --no_submit          submit nothing
#   --learner_threads N  Torch threads of the learner's updates (default 1: actors share the
#                        machine's cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
state_dir="${ROOT}/state"
actors=2
base_port=50050
bin_dir=""
prometheus=1
check=0
setup=1
spec="examples/cheetah_sac.textproto"
submit=1
learner_threads=1

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
    --no_submit) submit=0; shift ;;
    --learner_threads) learner_threads="$2"; shift 2 ;;
    -h | --help) sed -n '2,33p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
[[ "${actors}" =~ ^[0-9]+$ ]] || die "--actors must be a number >= 0, got '${actors}'"
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
# a stable path to this cluster's prlctl, whatever Bazel configuration built it.
ln -sf "${bin_dir}/cli/prlctl" "${state_dir}/bin/prlctl"
prlctl="${state_dir}/bin/prlctl"

# --- process table -------------------------------------------------------------------------
names=()
pids=()
grpc_addrs=()
metrics_addrs=()

stop_all() {
  local rc=0 i code waited
  trap - INT TERM EXIT
  log "stopping ${#pids[@]} processes"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for i in "${!pids[@]}"; do
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

# Starts a PRL server; records it once it prints its PRL_READY line.
#   start NAME BINARY GRPC_PORT METRICS_PORT [FLAGS...]
start() {
  local name="$1" binary="$2" port="$3" metrics_port="$4"
  shift 4
  local logfile="${state_dir}/logs/${name}.log"
  "${bin_dir}/${binary}" --port="${port}" --metrics_port="${metrics_port}" "$@" \
    >"${logfile}" 2>&1 &
  local pid=$!
  names+=("${name}")
  pids+=("${pid}")
  local ready="" waited=0
  while [[ -z "${ready}" ]]; do
    ready="$(grep -m1 '^PRL_READY ' "${logfile}" || true)"
    [[ -n "${ready}" ]] && break
    if ! kill -0 "${pid}" 2>/dev/null; then
      tail -n 20 "${logfile}" >&2
      die "${name} exited during start-up (log: ${logfile})"
    fi
    ((waited < 600)) || die "${name} not ready after 60 s (log: ${logfile})"
    sleep 0.1
    waited=$((waited + 1))
  done
  local grpc metrics
  grpc="$(sed -n 's/.* grpc=\([^ ]*\).*/\1/p' <<<"${ready}")"
  metrics="$(sed -n 's/.* metrics=\([^ ]*\).*/\1/p' <<<"${ready}")"
  grpc_addrs+=("${grpc}")
  metrics_addrs+=("${metrics}")
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
start prior_server prior_server/prl_prior_server "$(port_for 3 grpc)" "$(port_for 3 metrics)"
replay_addrs="${grpc_addrs[0]},${grpc_addrs[1]}"
start learner learner/prl_learner "$(port_for 2 grpc)" "$(port_for 2 metrics)" \
  --learner_replay="${replay_addrs}" --learner_state_dir="${state_dir}/learner" \
  --learner_torch_threads="${learner_threads}"
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
    echo "scrape_configs:"
    for i in "${!names[@]}"; do
      echo "  - job_name: ${names[i]}"
      echo "    static_configs:"
      echo "      - targets: ['${metrics_addrs[i]}']"
      echo "        labels: {service: '${names[i]%%-[0-9]*}'}"
    done
  } >"${state_dir}/prometheus/prometheus.yml"
  if command -v promtool >/dev/null; then
    promtool check config "${state_dir}/prometheus/prometheus.yml" >/dev/null ||
      die "generated Prometheus config is invalid"
  fi
  prometheus --config.file="${state_dir}/prometheus/prometheus.yml" \
    --storage.tsdb.path="${state_dir}/prometheus/data" \
    --web.listen-address="127.0.0.1:${prom_port}" \
    >"${state_dir}/logs/prometheus.log" 2>&1 &
  names+=(prometheus)
  pids+=($!)
  prometheus_url="http://127.0.0.1:${prom_port}"

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
{
  echo "PRL_LEARNER=${learner_addr}"
  for i in "${!names[@]}"; do
    [[ "${names[i]}" == prometheus ]] && continue
    echo "PRL_$(tr 'a-z-' 'A-Z_' <<<"${names[i]}")=${grpc_addrs[i]}"
  done
  [[ -n "${prometheus_url}" ]] && echo "PRL_PROMETHEUS=${prometheus_url}"
} >"${state_dir}/cluster.env"

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

if ((submit)); then
  [[ -f "${spec}" ]] || spec="${ROOT}/${spec}"
  [[ -f "${spec}" ]] || die "--spec: no file ${spec}"
  id="$("${prlctl}" --learner="${learner_addr}" submit "${spec}")" || die "submit failed"
  log "submitted ${spec} as ${id}; following it (Ctrl-C stops the cluster; the experiment"
  log "resumes from its checkpoint at the next start)"
  log "elsewhere: ${prlctl} --learner=${learner_addr} get ${id} | plot ${id} | stop ${id}"
  set +e
  "${prlctl}" --learner="${learner_addr}" watch "${id}"
  set -e
  "${prlctl}" --learner="${learner_addr}" --output="${state_dir}/${id}.png" plot "${id}" || true
else
  log "try: ${prlctl} --learner=${learner_addr} submit examples/cheetah_sac.textproto"
fi

log "running; Ctrl-C stops the cluster"
# returns when any process exits: that is a failure of the cluster.
set +e
wait -n "${pids[@]}"
code=$?
set -e
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[i]}" 2>/dev/null; then
    log "${names[i]} exited unexpectedly (status ${code}); last lines of its log:"
    tail -n 20 "${state_dir}/logs/${names[i]}.log" >&2 || true
  fi
done
exit 1
