#!/usr/bin/env bash
# Flat SAC on the cheetah end to end on a GPU machine: the whole local cluster (replay shards,
# prior server, learner, actors; deploy/local/cluster.sh) from a CUDA build bundle, one run with
# the learner on the GPU and one with it on the CPU (the limit to compare with, measured in the
# same run), each the same experiment: SAC with the SAC paper's networks (256x256) and batch
# (256), one update per env step (the replay's rate limiter), --env_steps env steps on --actors
# actors. Prints and writes (OUT/summary.txt, OUT/summary.json) per device: env steps/s,
# updates/s and the last evaluation return; the clusters' logs stay in OUT/state_<device>.
#
#   bench/cluster_gpu.sh [--bundle .device-bundle] [--out DIR] [--actors N] [--env_steps N]
#                        [--devices cuda,cpu] [--learner_threads N] [--updates_per_graph N]
#
# The bundle: scripts/cuda_build.sh --bundle DIR (its default targets include the cluster's).
# Defaults: actors = cores - 2 (at least 1), 30,000 env steps (5,000 of them random warm-up),
# devices cuda,cpu, learner threads 2, one update per CUDA graph launch (N > 1: the learner's
# --learner_updates_per_graph, its updates in graph launches of N). Needs python3 with torch
# (the bundle's run.sh) and no Bazel.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="${ROOT}/.device-bundle"
out="${OUT:-/tmp/prl-cluster-gpu}"
actors=$(($(nproc) > 3 ? $(nproc) - 2 : 1))
env_steps=30000
devices="cuda,cpu"
learner_threads=2
updates_per_graph=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --actors) actors="$2"; shift 2 ;;
    --env_steps) env_steps="$2"; shift 2 ;;
    --devices) devices="$2"; shift 2 ;;
    --learner_threads) learner_threads="$2"; shift 2 ;;
    --updates_per_graph) updates_per_graph="$2"; shift 2 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster_gpu: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "${env_steps}" =~ ^[0-9]+$ && "${env_steps}" -ge 10000 ]] ||
  { echo "cluster_gpu: --env_steps must be a whole number of at least 10000" >&2; exit 2; }
[[ "${actors}" =~ ^[1-9][0-9]*$ ]] || { echo "cluster_gpu: --actors must be positive" >&2; exit 2; }
bundle="$(cd "${bundle}" && pwd)"
mkdir -p "${out}"
out="$(cd "${out}" && pwd)"

# the cluster's binaries as deploy/local/cluster.sh expects them (laid out as bazel-bin): each
# a wrapper that runs the bundle's binary with the library path its run.sh works out once
library_path="$("${bundle}/run.sh" --library_path)"
bin_dir="${out}/bin"
for b in replay/prl_replay prior_server/prl_prior_server learner/prl_learner actor/prl_actor \
  cli/prlctl; do
  [[ -x "${bundle}/bin/$(basename "${b}")" ]] ||
    { echo "cluster_gpu: ${bundle}/bin has no $(basename "${b}") (see --help)" >&2; exit 1; }
  mkdir -p "${bin_dir}/$(dirname "${b}")"
  printf '#!/usr/bin/env bash\nexport LD_LIBRARY_PATH=%q\nexec %q "$@"\n' "${library_path}" \
    "${bundle}/bin/$(basename "${b}")" >"${bin_dir}/${b}"
  chmod +x "${bin_dir}/${b}"
done

# shellcheck source=bench/cluster_lib.sh
source "${ROOT}/bench/cluster_lib.sh"
summary="${out}/summary.txt"
: >"${summary}"
json=()
for device in ${devices//,/ }; do
  state="${out}/state_${device//:/_}"
  rm -rf "${state}"
  spec="${out}/cheetah_sac_${device//:/_}.textproto"
  cat >"${spec}" <<SPEC
name: "cheetah-sac-${device//:/-}"
kind: KIND_TRAIN
description: "bench/cluster_gpu.sh: SAC on cheetah run_forward, learner on ${device}"
env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 1000 seed: 1 }
algorithm {
  sac {}
  network { hidden_sizes: [256, 256] activation: ACTIVATION_RELU }
  batch_size: 256
  warmup_env_steps: 5000
}
replay { capacity: 1000000 sampler: SAMPLER_UNIFORM samples_per_insert: 256 min_size_to_sample: 5000 }
resources { num_actors: ${actors} envs_per_actor: 1 learner_device: "${device}" }
stop { max_env_steps: ${env_steps} }
evaluation { every_env_steps: $((env_steps / 2)) episodes: 2 }
SPEC
  echo "=== ${device}: cluster with ${actors} actors, ${env_steps} env steps" | tee -a "${summary}"
  PRL_BIN_DIR="${bin_dir}" PRL_LEARNER_THREADS="${learner_threads}" \
    PRL_LEARNER_FLAGS="--learner_updates_per_graph=${updates_per_graph}" bench_cluster "${state}" "${actors}"
  start=${SECONDS}
  id="$("${prlctl[@]}" submit "${spec}")"
  [[ -n "${id}" ]] || { echo "cluster_gpu: submit failed" >&2; exit 1; }
  follow "${id}" 1h
  wall=$((SECONDS - start))
  "${prlctl[@]}" get "${id}" >"${state}/experiment.txt"
  # fields of the experiment's progress message, and its state
  field() { awk -v k="$1:" '/^progress \{/ {p = 1} p && $1 == k {print $2; exit}' \
    "${state}/experiment.txt"; }
  steps="$(field env_steps)"
  updates="$(field updates)"
  last_return="$(field latest_eval_return)"
  final="$(awk '$1 == "state:" {print $2; exit}' "${state}/experiment.txt")"
  # rates over the run's wall time, warm-up (random actions, no updates) included
  line="$(awk -v d="${device}" -v s="${steps:-0}" -v u="${updates:-0}" -v w="${wall}" \
    -v r="${last_return:-nan}" -v f="${final}" 'BEGIN {
      printf "%s: %s, %d env steps and %d updates in %d s: %.0f env steps/s, %.0f updates/s, last evaluation return %s",
        d, f, s, u, w, s / (w > 0 ? w : 1), u / (w > 0 ? w : 1), r }')"
  echo "${line}" | tee -a "${summary}"
  json+=("{\"device\": \"${device}\", \"state\": \"${final}\", \"env_steps\": ${steps:-0}, \"updates\": ${updates:-0}, \"wall_s\": ${wall}, \"updates_per_graph\": ${updates_per_graph}, \"last_eval_return\": \"${last_return:-}\"}")
  # stop this cluster before the next device's
  kill -TERM "${bench_cluster_pid}" 2>/dev/null || true
  wait "${bench_cluster_pid}" 2>/dev/null || true
  trap - EXIT
done
(IFS=,; echo "[${json[*]}]") >"${out}/summary.json"
echo "cluster_gpu: done; ${summary}, ${out}/summary.json"
