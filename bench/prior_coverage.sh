#!/usr/bin/env bash
# Are the learned priors useful for exploration? The whole pipeline, reproducibly:
#   1. prl_collect: noisy planner episodes on 4 random mazes (seeds 1000..1003);
#   2. a prl_learner on a fresh state directory trains a SKILL_VAE prior and a REAL_NVP_FLOW
#      prior on them (TRAIN_PRIOR, submitted and followed with prlctl);
#   3. prior_coverage: distinct cells visited per --steps env steps on a held-out maze of the
#      same size (seed 7, not in the data): skill-prior rollouts (SPiRL), flow rollouts with
#      z ~ N(0, I) every step (PARROT before learning), uniform random actions, and uniform
#      random actions held for the skills' 10 steps.
# Takes a few minutes on 2 cores (docs/results.md has a run).
#
#   bench/prior_coverage.sh [--out DIR] [--episodes N] [--epochs N] [--size ROWSxCOLS]
#                           [--maze_seed S] [--steps N] [--seeds N] [--flow_steps N]
#
# Options (defaults in brackets):
#   --out DIR        dataset, learner state, logs and coverage.csv [state/prior_coverage]
#   --episodes N     planner episodes in the dataset [200]
#   --epochs N       skill-prior training epochs [20]
#   --flow_steps N   flow training steps (batch 128, PARROT's lr 1e-4) [20000]
#   --size RxC       maze size, border included [10x10]
#   --maze_seed S    held-out maze [7]; the data uses 1000..1003
#   --steps N        env steps per rollout [1000]
#   --seeds N        rollouts per policy [3]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ROOT}/state/prior_coverage"
episodes=200
epochs=20
size="10x10"
maze_seed=7
steps=1000
seeds=3
flow_steps=20000
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --episodes) episodes="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --maze_seed) maze_seed="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --flow_steps) flow_steps="$2"; shift 2 ;;
    -h | --help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prior_coverage: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
rows="${size%x*}"
cols="${size#*x}"
data_seed=1000
num_envs=4
if ((maze_seed >= data_seed && maze_seed < data_seed + num_envs)); then
  echo "prior_coverage: --maze_seed ${maze_seed} is one of the dataset's mazes" >&2
  exit 2
fi

cd "${ROOT}"
bazel build -c opt //actor/collect:prl_collect //learner:prl_learner //cli:prlctl \
  //bench:prior_coverage
bin="$(bazel info -c opt bazel-bin)"

rm -rf "${out}"
mkdir -p "${out}/learner"
started=${SECONDS}

# 1. the dataset: planner episodes with noise, random start and goal, one maze per env
"${bin}/actor/collect/prl_collect" --domain=point_maze --random_maze="${size}" \
  --maze_seed="${data_seed}" --maze_per_env --num_envs="${num_envs}" --seed="${data_seed}" \
  --collector=planner --action_noise=0.1 --randomize_start_goal --episodes="${episodes}" \
  --output="${out}/maze.hdf5" 2>&1 | tail -3

# 2. a learner of its own (free port, no metrics) trains the prior
"${bin}/learner/prl_learner" --learner_state_dir="${out}/learner" --learner_device=cpu \
  --port=0 --metrics_port=-1 >"${out}/learner.log" 2>&1 &
learner=$!
trap 'kill -TERM ${learner} 2>/dev/null; wait ${learner} 2>/dev/null || true' EXIT
address=""
for _ in $(seq 1 600); do
  line="$(grep -m1 "PRL_READY" "${out}/learner.log" 2>/dev/null || true)"
  if [[ "${line}" =~ \ grpc=([^ ]+) ]]; then
    address="${BASH_REMATCH[1]}"
    break
  fi
  kill -0 "${learner}" 2>/dev/null || { cat "${out}/learner.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n "${address}" ]] || { echo "prior_coverage: the learner did not start" >&2; exit 1; }

cat >"${out}/train_prior.textproto" <<EOF
name: "prior-coverage"
kind: KIND_TRAIN_PRIOR
description: "skill prior for bench/prior_coverage.sh"
prior_training {
  kind: PRIOR_KIND_SKILL_VAE
  dataset: "${out}/maze.hdf5"
  output_model: "maze-skills"
  horizon: 10
  latent_dim: 10
  beta: 1e-2
  network { hidden_sizes: [128, 128] }
  epochs: ${epochs}
  batch_size: 128
  seed: 1
}
EOF
prlctl=("${bin}/cli/prlctl" --learner="${address}")
id="$("${prlctl[@]}" submit "${out}/train_prior.textproto")"
echo "training the prior: experiment ${id}"
"${prlctl[@]}" watch "${id}" | tr '\r' '\n' | grep -v '^ *$' | tail -3
model="${out}/learner/models/maze-skills/v1.prl"
[[ -f "${model}" ]] || { echo "prior_coverage: no model at ${model}" >&2; exit 1; }
cat >"${out}/train_flow.textproto" <<EOF
name: "prior-coverage-flow"
kind: KIND_TRAIN_PRIOR
description: "PARROT flow for bench/prior_coverage.sh"
prior_training {
  kind: PRIOR_KIND_REAL_NVP_FLOW
  dataset: "${out}/maze.hdf5"
  output_model: "maze-flow"
  max_steps: ${flow_steps}
  batch_size: 128
  seed: 1
}
EOF
id="$("${prlctl[@]}" submit "${out}/train_flow.textproto")"
echo "training the flow: experiment ${id}"
"${prlctl[@]}" watch "${id}" | tr '\r' '\n' | grep -v '^ *$' | tail -3
flow="${out}/learner/models/maze-flow/v1.prl"
[[ -f "${flow}" ]] || { echo "prior_coverage: no flow at ${flow}" >&2; exit 1; }
echo "data and training took $((SECONDS - started)) s"

# 3. coverage on the held-out maze
"${bin}/bench/prior_coverage" --model="${model}" --flow="${flow}" --maze_rows="${rows}" \
  --maze_cols="${cols}" --maze_seed="${maze_seed}" --steps="${steps}" --seeds="${seeds}" \
  --output="${out}/coverage.csv"
echo "wrote ${out}/coverage.csv ($((SECONDS - started)) s in all)"
