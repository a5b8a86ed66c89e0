#!/usr/bin/env bash
# The cheetah transfer workflow on a local cluster (docs/results.md): a prior learned from a
# policy that runs forward, used to learn to run backward.
#
#   1. SAC on run_forward (examples/cheetah_sac_small.textproto: 64x64 nets) for --forward_steps;
#   2. COLLECT with that policy (stochastic, plus Gaussian --action_noise when set; --episodes
#      episodes of 1,000 steps on run_forward) into the learner's dataset store as
#      "cheetah-forward" ("cheetah-forward-noise<N>" with noise);
#   3. TRAIN_PRIOR: the latent-SAC action generator, a horizon-1 CVAE g(a | s, z) with an
#      N(0, I) prior (latent = action dim 6) and KL weight --beta, as
#      "cheetah-cvae-beta<B>[-noise<N>]";
#   4. on run_backward, per seed: latent_sac (SAC over z, actions decoded through the CVAE;
#      the `parrot` algorithm with a horizon-1 CVAE prior), SAC from scratch and sac_finetune
#      (SAC started from the forward run's networks, algorithm.init_from, acting with that
#      policy from the first step), same nets, batch, learning rates and budget;
#   5. the evaluation-return curves (CSV + PNG, mean ± std over seeds) and, per run, the env
#      steps at which the evaluation return first reached --target.
#
#   bench/cheetah_transfer.sh [--seeds 1,2] [--max_env_steps N] [--forward_steps N]
#                             [--episodes N] [--action_noise N] [--beta B] [--target R]
#                             [--latent_squash scaled|unscaled] [--latent_kl DELTA]
#                             [--methods LIST] [--eval_every N] [--eval_episodes N]
#                             [--warmup N] [--latent_dim N]
#                             [--state_dir DIR] [--out PREFIX] [--cluster cluster.env]
#
# Defaults: seeds 1, 100,000 env steps per transfer run, 100,000 forward steps, 100 episodes,
# no action noise, beta 0.001, latent_sac's scaled squash (ParrotConfig.latent_squash), target 2,000, methods latent_sac,sac,sac_finetune, state in state/cheetah_transfer. Steps 1-3 are
# skipped when their result exists in the state directory (the cluster keeps it).
# --latent_kl DELTA regularises latent_sac by the KL to the generator's N(0, I) prior instead of
# the entropy (parrot.regularizer REGULARIZER_KL_TO_BASE, target_divergence DELTA).
# --eval_every N (default 5,000) and --eval_episodes N (default 4) set the evaluation schedule,
# which is the resolution of "env steps to the target"; --warmup N (default 5,000) sets the
# random warm-up and the replay's minimum size of latent_sac and sac alike. --latent_dim N
# (default 6, the action's dimension) sets the generator's latent, named "-z<N>" when not 6.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="1"
max_env_steps=100000
forward_steps=100000
episodes=100
action_noise=0
latent_squash=scaled
latent_kl=""
beta=0.001
target=2000
methods="latent_sac,sac,sac_finetune"
eval_every=5000
eval_episodes=4
warmup_steps=5000
latent_dim=6
state_dir=""
out=""
cluster_env=""
actors=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --max_env_steps) max_env_steps="$2"; shift 2 ;;
    --forward_steps) forward_steps="$2"; shift 2 ;;
    --episodes) episodes="$2"; shift 2 ;;
    --action_noise) action_noise="$2"; shift 2 ;;
    --latent_squash) latent_squash="$2"; shift 2 ;;
    --latent_kl) latent_kl="$2"; shift 2 ;;
    --beta) beta="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --eval_every) eval_every="$2"; shift 2 ;;
    --eval_episodes) eval_episodes="$2"; shift 2 ;;
    --warmup) warmup_steps="$2"; shift 2 ;;
    --latent_dim) latent_dim="$2"; shift 2 ;;
    --state_dir) state_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --cluster) cluster_env="$2"; shift 2 ;;
    -h | --help) sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cheetah_transfer: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "${latent_dim}" =~ ^[0-9]+$ ]] && ((latent_dim > 0)) ||
  { echo "cheetah_transfer: --latent_dim must be a number > 0" >&2; exit 2; }
[[ "${latent_squash}" == scaled || "${latent_squash}" == unscaled ]] ||
  { echo "cheetah_transfer: --latent_squash must be scaled or unscaled" >&2; exit 2; }
if [[ -n "${cluster_env}" ]]; then
  [[ -f "${cluster_env}" ]] || { echo "cheetah_transfer: --cluster: no file ${cluster_env}" >&2; exit 2; }
  [[ -n "${state_dir}" ]] || state_dir="$(dirname "${cluster_env}")"
fi
[[ -n "${state_dir}" ]] || state_dir="${ROOT}/state/cheetah_transfer"
mkdir -p "${state_dir}"
state_dir="$(cd "${state_dir}" && pwd)"
[[ -n "${out}" ]] || out="${state_dir}/cheetah_transfer"
mkdir -p "$(dirname "${out}")"
cd "${ROOT}"

source "${ROOT}/bench/cluster_lib.sh"
bench_cluster "${state_dir}" "${actors}" "${cluster_env}"

succeeded() { "${prlctl[@]}" get "$1" | grep -q EXPERIMENT_STATE_SUCCEEDED; }

# 1. the forward policy
forward_id_file="${state_dir}/forward.id"
if [[ ! -s "${forward_id_file}" ]]; then
  id="$("${prlctl[@]}" --seed=1 --max_env_steps="${forward_steps}" submit \
    examples/cheetah_sac_small.textproto)"
  echo "SAC on run_forward: ${id}"
  follow "${id}" 24h
  succeeded "${id}" || { echo "cheetah_transfer: ${id} did not succeed" >&2; exit 1; }
  echo "${id}" >"${forward_id_file}"
fi
forward_id="$(cat "${forward_id_file}")"

# 2. its data, and 3. the generator: named after the settings that make them
dataset="cheetah-forward"
model="cheetah-cvae-beta${beta}"
if [[ "${action_noise}" != "0" ]]; then
  dataset+="-noise${action_noise}"
  model+="-noise${action_noise}"
fi
((latent_dim == 6)) || model+="-z${latent_dim}"
if ! "${prlctl[@]}" datasets "${dataset}" >/dev/null 2>&1; then
  cat >"${state_dir}/cheetah-collect.textproto" <<EOF
name: "cheetah-collect"
kind: KIND_COLLECT
description: "run_forward SAC policy rollouts for bench/cheetah_transfer.sh"
env { domain: DOMAIN_CHEETAH task: "run_forward" seed: 1000 }
resources { num_actors: 2 envs_per_actor: 2 }
collect {
  collector: COLLECTOR_POLICY
  policy { experiment_id: "${forward_id}" }
  num_episodes: ${episodes}
  action_noise: ${action_noise}
  output_dataset: "${dataset}"
}
EOF
  id="$("${prlctl[@]}" submit "${state_dir}/cheetah-collect.textproto")"
  echo "collecting ${dataset} with ${forward_id}'s policy: ${id}"
  follow "${id}" 24h
  succeeded "${id}" || { echo "cheetah_transfer: the collection ${id} did not succeed" >&2; exit 1; }
fi

# 3. the action generator
if [[ ! -d "${state_dir}/learner/models/${model}" ]]; then
  cat >"${state_dir}/${model}.textproto" <<EOF
name: "${model}"
kind: KIND_TRAIN_PRIOR
description: "latent-SAC action generator for bench/cheetah_transfer.sh"
prior_training {
  kind: PRIOR_KIND_CVAE
  dataset: "${dataset}"
  output_model: "${model}"
  horizon: 1
  latent_dim: ${latent_dim}
  beta: ${beta}
  epochs: 10
  batch_size: 256
  seed: 1
}
EOF
  id="$("${prlctl[@]}" submit "${state_dir}/${model}.textproto")"
  echo "training ${model}: ${id}"
  follow "${id}" 24h
  succeeded "${id}" || { echo "cheetah_transfer: prior training ${id} did not succeed" >&2; exit 1; }
fi

# 4. run_backward: the same agent settings as cheetah_sac_small, latent or flat
backward_spec() {  # METHOD
  local algorithm prior="" warmup="${warmup_steps}" label="$1"
  case "$1" in
    latent_sac)
      # the policy starts as the prior N(0, I)
      algorithm="parrot { latent_squash: LATENT_SQUASH_${latent_squash^^}"
      [[ -z "${latent_kl}" ]] ||
        algorithm+=" regularizer: REGULARIZER_KL_TO_BASE target_divergence: ${latent_kl}"
      algorithm+=" }"
      prior="prior { name: \"${model}\" version: 0 }"
      label="latent_sac-${model#cheetah-cvae-}"
      [[ "${latent_squash}" == scaled ]] || label+="-${latent_squash}"
      [[ -z "${latent_kl}" ]] || label+="-kl${latent_kl}"
      ;;
    sac) algorithm="sac {}" ;;
    sac_finetune)
      # the forward run's policy, critics and temperature; acting with that policy at once
      algorithm="sac {} init_from { experiment_id: \"${forward_id}\" }"
      warmup=-1
      ;;
    *)
      echo "cheetah_transfer: unknown method '$1' (latent_sac, sac or sac_finetune)" >&2
      exit 2
      ;;
  esac
  cat <<EOF
name: "cheetah-backward-$1"
kind: KIND_TRAIN
description: "$1 on cheetah run_backward for bench/cheetah_transfer.sh"
labels { key: "method" value: "${label}" }
env { domain: DOMAIN_CHEETAH task: "run_backward" seed: 1 }
algorithm {
  ${algorithm}
  network { hidden_sizes: [64, 64] }
  batch_size: 128
  actor_lr: 1e-3
  critic_lr: 1e-3
  warmup_env_steps: ${warmup}
}
${prior}
replay { capacity: 1000000 samples_per_insert: 128 min_size_to_sample: ${warmup_steps} }
resources { num_actors: 2 envs_per_actor: 1 }
stop { max_env_steps: ${max_env_steps} }
evaluation { every_env_steps: ${eval_every} episodes: ${eval_episodes} }
EOF
}
ids=()
for method in ${methods//,/ }; do
  backward_spec "${method}" >"${state_dir}/backward_${method}.textproto"
  for seed in ${seeds//,/ }; do
    id="$("${prlctl[@]}" --seed="${seed}" submit "${state_dir}/backward_${method}.textproto")"
    echo "${method} seed ${seed}: ${id}"
    ids+=("${id}")
  done
done
for id in "${ids[@]}"; do follow "${id}" 72h; done

# 5. curves and the steps to the target
"${prlctl[@]}" --metric=eval --group_by=method --csv="${out}.csv" --output="${out}.png" \
  plot "${ids[@]}" || echo "cheetah_transfer: no curve to plot" >&2
echo "env steps to an evaluation return of ${target}, per run (CSV: ${out}.csv):"
awk -F, -v target="${target}" 'NR == 1 { next }
  { key = $1 " " $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if ($4 + 0 >= target && !(key in hit)) hit[key] = $3 + 0
    if (!(key in best) || $4 + 0 > best[key]) best[key] = $4 + 0 }
  END { for (i = 1; i <= n; ++i) { k = order[i]
          printf "  %s: %s (best evaluation %.0f)\n", k,
                 (k in hit ? hit[k] : "not reached"), best[k] } }' "${out}.csv"
