#!/usr/bin/env bash
# The maze transfer study on a local cluster, end to end and reproducible:
#   1. COLLECT: noisy planner episodes on random mazes (one per env, seeds from 1000), start
#      and goal at random — the "old tasks";
#   2. TRAIN_PRIOR on that dataset: a SPiRL skill prior ("maze-skills"), an EAP CVAE with a
#      state prior ("maze-eap") and a PARROT flow ("maze-flow"), each only if a method needs it;
#   3. the new task — the held-out maze of examples/maze_spirl.textproto, sparse reward — with
#      spirl, eap, parrot and flat sac for every seed (they queue on the learner);
#   4. one PNG of evaluation return (= success rate: the reward is 1 at the goal) against env
#      steps, mean ± std over seeds per method, the CSV behind it, and a summary line.
# Long (hours at the full budget on 2 cores): tagged out of the test suite; run it by hand.
# deploy/local/cluster.sh runs a small version of it as its default job (--cluster).
#
#   bench/maze_transfer.sh [--seeds 1,2,3] [--max_env_steps N] [--out PREFIX]
#
# Options (defaults in brackets):
#   --seeds LIST         seeds of the transfer runs [1,2,3]
#   --max_env_steps N    budget of each transfer run [the specs' 1,000,000]
#   --methods LIST       among spirl, eap, parrot, sac [spirl,eap,parrot,sac]
#   --episodes N         planner episodes in the dataset [400]
#   --prior_epochs N     epochs of each prior [20]
#   --actors N           actor processes [2]
#   --out PREFIX         writes PREFIX.csv, PREFIX.png [state/maze_transfer/maze_transfer]
#   --state_dir DIR      cluster state, dataset and specs [state/maze_transfer]
#   --discount G         per-step discount of the methods that decide every step (parrot,
#                        sac) instead of the specs' 0.99, labelled METHOD-gG; 0.999 gives them
#                        the horizon spirl and eap have with 0.99 per 10-step decision
#   --n_step N           n-step returns (algorithm.n_step) for parrot and sac, labelled
#                        METHOD-nN: rows of N env steps spread the sparse reward N times
#                        faster, as spirl's and eap's 10-step decisions do
#   --parrot_kl DELTA    parrot regularised by the KL to the flow's base with target
#                        divergence DELTA (the example's is 1), labelled parrot-klDELTA
#   --spirl_delta DELTA  spirl's target divergence δ (the example's is 1), labelled spirl-dDELTA
#   --maze ROWSxCOLS:SEED  the new task's maze: a random layout (MazeSpec.random) of that size
#                        and seed, start and goal its own, instead of the specs' fixed 7x9 maze
#   --cluster ENV        use the running cluster ENV (a cluster.env) instead of starting one;
#                        its state directory holds the dataset and specs unless --state_dir
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="1,2,3"
max_env_steps=0
methods="spirl,eap,parrot,sac"
episodes=400
prior_epochs=20
actors=2
state_dir=""
out=""
cluster_env=""
maze=""
discount=""
n_step=""
parrot_kl=""
spirl_delta=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --max_env_steps) max_env_steps="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --episodes) episodes="$2"; shift 2 ;;
    --prior_epochs) prior_epochs="$2"; shift 2 ;;
    --actors) actors="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --state_dir) state_dir="$2"; shift 2 ;;
    --cluster) cluster_env="$2"; shift 2 ;;
    --maze) maze="$2"; shift 2 ;;
    --discount) discount="$2"; shift 2 ;;
    --n_step) n_step="$2"; shift 2 ;;
    --parrot_kl) parrot_kl="$2"; shift 2 ;;
    --spirl_delta) spirl_delta="$2"; shift 2 ;;
    -h | --help) sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "maze_transfer: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
maze_block=""
if [[ -n "${maze}" ]]; then
  [[ "${maze}" =~ ^([0-9]+)x([0-9]+):([0-9]+)$ ]] ||
    { echo "maze_transfer: --maze must look like 16x16:7, got '${maze}'" >&2; exit 2; }
  # the dataset's mazes are 10x10 of seeds 1000-1007 (one per env): the new task must not be one
  if [[ "${BASH_REMATCH[1]}x${BASH_REMATCH[2]}" == 10x10 ]] &&
    ((BASH_REMATCH[3] >= 1000 && BASH_REMATCH[3] <= 1007)); then
    echo "maze_transfer: --maze ${maze} is one of the dataset's mazes; hold it out" >&2
    exit 2
  fi
  maze_block="maze { random { rows: ${BASH_REMATCH[1]} cols: ${BASH_REMATCH[2]} seed: ${BASH_REMATCH[3]} } }"
fi
if [[ -n "${cluster_env}" ]]; then
  [[ -f "${cluster_env}" ]] || { echo "maze_transfer: --cluster: no file ${cluster_env}" >&2; exit 2; }
  [[ -n "${state_dir}" ]] || state_dir="$(dirname "${cluster_env}")"
fi
[[ -n "${state_dir}" ]] || state_dir="${ROOT}/state/maze_transfer"
mkdir -p "${state_dir}"
state_dir="$(cd "${state_dir}" && pwd)"
[[ -n "${out}" ]] || out="${state_dir}/maze_transfer"
mkdir -p "$(dirname "${out}")"
cd "${ROOT}"

# the cluster (learner, replay shards, prior server on the learner's store, actors)
# shellcheck source=bench/cluster_lib.sh
source "${ROOT}/bench/cluster_lib.sh"
bench_cluster "${state_dir}" "${actors}" "${cluster_env}"

# 1. the dataset (old tasks), collected by the cluster's actors into the learner's dataset store:
# random 10x10 mazes of seeds 1000-1007 (2 actors x 4 envs, one maze each), not the target maze
# (skipped when the store has it already)
if ! "${prlctl[@]}" datasets maze-planner >/dev/null 2>&1; then
  cat >"${state_dir}/maze-collect.textproto" <<EOF
name: "maze-collect"
kind: KIND_COLLECT
description: "planner data for bench/maze_transfer.sh"
env {
  domain: DOMAIN_POINT_MAZE
  task: "reach_goal"
  maze { random { rows: 10 cols: 10 seed: 1000 per_env: true } }
  episode_length: 500
  seed: 1000
}
resources { num_actors: 2 envs_per_actor: 4 }
collect {
  collector: COLLECTOR_SCRIPTED
  script: "planner"
  num_episodes: ${episodes}
  action_noise: 0.1
  randomize_start_goal: true
  output_dataset: "maze-planner"
}
EOF
  id="$("${prlctl[@]}" submit "${state_dir}/maze-collect.textproto")"
  echo "collecting maze-planner: ${id}"
  follow "${id}" 24h
  "${prlctl[@]}" get "${id}" | grep -q EXPERIMENT_STATE_SUCCEEDED ||
    { echo "maze_transfer: the collection ${id} did not succeed" >&2; exit 1; }
fi

# 2. the priors (skipped when the store has them already)
train_prior() {  # NAME KIND EXTRA
  local name="$1" kind="$2" extra="$3"
  [[ -d "${state_dir}/learner/models/${name}" ]] && return
  cat >"${state_dir}/${name}.textproto" <<EOF
name: "${name}"
kind: KIND_TRAIN_PRIOR
description: "prior for bench/maze_transfer.sh"
prior_training {
  kind: ${kind}
  dataset: "maze-planner"
  output_model: "${name}"
  ${extra}
  epochs: ${prior_epochs}
  batch_size: 128
  seed: 1
}
EOF
  local id
  id="$("${prlctl[@]}" submit "${state_dir}/${name}.textproto")"
  echo "training ${name}: ${id}"
  follow "${id}" 24h
}
[[ ",${methods}," == *",spirl,"* ]] &&
  train_prior maze-skills PRIOR_KIND_SKILL_VAE "horizon: 10 latent_dim: 10 beta: 1e-2"
[[ ",${methods}," == *",eap,"* ]] &&
  train_prior maze-eap PRIOR_KIND_CVAE "horizon: 10 latent_dim: 10 beta: 1e-2"
[[ ",${methods}," == *",parrot,"* ]] && train_prior maze-flow PRIOR_KIND_REAL_NVP_FLOW ""

# 3. the new task, every method and seed
# variant SUFFIX CHECK EDIT: `spec` through the sed expression EDIT into a copy whose method
# label gains "-SUFFIX"; the copy must match the grep pattern CHECK. Sets `spec` to the copy.
variant() {
  local suffix="$1" check="$2" edit="$3" copy
  copy="${state_dir}/$(basename "${spec}" .textproto)_${suffix}.textproto"
  sed -e "${edit}" \
    -e "s/key: \"method\" value: \"\(${method}[^\"]*\)\"/key: \"method\" value: \"\1-${suffix}\"/" \
    "${spec}" >"${copy}"
  grep -q "${check}" "${copy}" || { echo "maze_transfer: could not make ${copy} from ${spec}" >&2; exit 2; }
  spec="${copy}"
}
ids=()
for method in ${methods//,/ }; do
  spec="examples/maze_${method}.textproto"
  [[ -f "${spec}" ]] || { echo "maze_transfer: no spec ${spec}" >&2; exit 2; }
  if [[ -n "${maze_block}" ]]; then
    # the spec with its maze { ... } block replaced by the random held-out maze
    awk -v block="${maze_block}" '
      skipping && /^  }$/ { skipping = 0; next }
      skipping { next }
      /^  maze \{$/ { print "  " block; skipping = 1; next }
      { print }' "${spec}" >"${state_dir}/maze_${method}.textproto"
    grep -q "random { rows" "${state_dir}/maze_${method}.textproto" ||
      { echo "maze_transfer: could not set the maze of ${spec}" >&2; exit 2; }
    spec="${state_dir}/maze_${method}.textproto"
  fi
  if [[ -n "${discount}" && ("${method}" == parrot || "${method}" == sac) ]]; then
    variant g"${discount}" "^  discount: ${discount}$" "s/^  discount: .*/  discount: ${discount}/"
  fi
  if [[ -n "${spirl_delta}" && "${method}" == spirl ]]; then
    variant d"${spirl_delta}" "^    target_divergence: ${spirl_delta}$" \
      "s/^    target_divergence: .*/    target_divergence: ${spirl_delta}/"
  fi
  if [[ -n "${parrot_kl}" && "${method}" == parrot ]]; then
    variant kl"${parrot_kl}" REGULARIZER_KL_TO_BASE \
      "s/^  parrot {.*}$/  parrot { regularizer: REGULARIZER_KL_TO_BASE target_divergence: ${parrot_kl} }/"
  fi
  if [[ -n "${n_step}" && ("${method}" == parrot || "${method}" == sac) ]]; then
    [[ "${n_step}" =~ ^[0-9]+$ ]] || { echo "maze_transfer: --n_step must be a count" >&2; exit 2; }
    variant n"${n_step}" "^  n_step: ${n_step}$" "s/^  discount: \(.*\)$/  discount: \1\n  n_step: ${n_step}/"
  fi
  for seed in ${seeds//,/ }; do
    args=(--seed="${seed}")
    ((max_env_steps > 0)) && args+=(--max_env_steps="${max_env_steps}")
    id="$("${prlctl[@]}" "${args[@]}" submit "${spec}")"
    echo "${method} seed ${seed}: ${id}"
    ids+=("${id}")
  done
done
for id in "${ids[@]}"; do follow "${id}" 72h; done

# 4. the curves, by method
if ! "${prlctl[@]}" --metric=eval --group_by=method --csv="${out}.csv" --output="${out}.png" \
  plot "${ids[@]}"; then
  echo "maze_transfer: no curve to plot: no run reached its first evaluation (every 20,000 env" >&2
  echo "steps in the specs); give a larger --max_env_steps" >&2
fi
echo "success rate (evaluation return) at the end, per run:"
for id in "${ids[@]}"; do
  "${prlctl[@]}" get "${id}" |
    awk -v id="${id}" '/key: "method"/{getline; m=$2; gsub(/"/, "", m)}
         /latest_eval_return:/{r=$2} /^  env_steps:/{s=$2}
         END{printf "  %s %s: %s at %s env steps\n", id, m, (r == "" ? 0 : r), s}'
done
# one line: per method, the final success rate (mean over seeds) and the first env step at which
# a run's evaluation reached 0.8 (mean over the runs that did)
awk -F, 'NR > 1 {
    key = $1 SUBSEP $2
    if (!(key in last_step) || $3 + 0 >= last_step[key]) { last_step[key] = $3 + 0; last[key] = $4 + 0 }
    if ($4 + 0 >= 0.8 && !(key in reached)) reached[key] = $3 + 0
    group[key] = $1
  }
  END {
    for (key in last) { n[group[key]]++; sum[group[key]] += last[key] }
    for (key in reached) { hits[group[key]]++; steps[group[key]] += reached[key] }
    line = "summary (success rate at the end, mean over seeds; env steps to 0.8):"
    for (g in n) {
      to = (g in hits) ? sprintf("%.0f (%d/%d runs)", steps[g] / hits[g], hits[g], n[g]) : "never"
      line = line sprintf("  %s %.2f, %s;", g, sum[g] / n[g], to)
    }
    print line
  }' "${out}.csv" 2>/dev/null || true
if [[ -f "${out}.png" ]]; then echo "wrote ${out}.csv ${out}.png"; fi
