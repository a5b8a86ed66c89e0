#!/usr/bin/env bash
# How well does PARROT's flow model held-out actions? The whole pipeline, reproducibly:
#   1. prl_collect: noisy planner episodes on 8 random 10x10 mazes (seeds 1000..1007);
#   2. a prl_learner on a fresh state directory trains a REAL_NVP_FLOW prior on them once per
#      training seed (TRAIN_PRIOR, submitted and followed with prlctl; the seed also chooses the
#      held-out episodes);
#   3. prior_nll: each flow's mean NLL per held-out transition against Gaussians fitted to the
#      same training transitions (unconditional and linear in the state, on a and on atanh(a));
#   4. mean ± std over the seeds.
# About 10 minutes on 2 cores with the defaults (docs/results.md has a run).
#
#   bench/prior_nll.sh [--out DIR] [--episodes N] [--steps N] [--seeds LIST]
#
# Options (defaults in brackets):
#   --out DIR       dataset, learner state, logs and nll.jsonl [state/prior_nll]
#   --episodes N    planner episodes in the dataset [200]
#   --steps N       training steps per flow (batch 128, PARROT's lr 1e-4) [20000]
#   --seeds LIST    training seeds, comma-separated [1,2,3]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ROOT}/state/prior_nll"
episodes=200
steps=20000
seeds="1,2,3"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --episodes) episodes="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prior_nll: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
IFS=',' read -r -a seed_list <<<"${seeds}"

cd "${ROOT}"
bazel build -c opt //actor/collect:prl_collect //learner:prl_learner //cli:prlctl \
  //bench:prior_nll
bin="$(bazel info -c opt bazel-bin)"

rm -rf "${out}"
mkdir -p "${out}/learner"
started=${SECONDS}

# 1. the dataset: planner episodes with noise, random start and goal, one maze per env
"${bin}/actor/collect/prl_collect" --domain=point_maze --random_maze=10x10 --maze_seed=1000 \
  --maze_per_env --num_envs=8 --seed=1000 --collector=planner --action_noise=0.1 \
  --randomize_start_goal --episodes="${episodes}" --output="${out}/maze.hdf5" 2>&1 | tail -1

# 2. a learner of its own (free port, no metrics, one torch thread) trains the flows
"${bin}/learner/prl_learner" --learner_state_dir="${out}/learner" --learner_device=cpu \
  --learner_torch_threads=1 --port=0 --metrics_port=-1 >"${out}/learner.log" 2>&1 &
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
[[ -n "${address}" ]] || { echo "prior_nll: the learner did not start" >&2; exit 1; }
prlctl=("${bin}/cli/prlctl" --learner="${address}")

for seed in "${seed_list[@]}"; do
  cat >"${out}/flow_${seed}.textproto" <<EOF
name: "prior-nll-${seed}"
kind: KIND_TRAIN_PRIOR
description: "PARROT flow for bench/prior_nll.sh, training seed ${seed}"
prior_training {
  kind: PRIOR_KIND_REAL_NVP_FLOW
  dataset: "${out}/maze.hdf5"
  output_model: "maze-flow-${seed}"
  max_steps: ${steps}
  batch_size: 128
  seed: ${seed}
}
EOF
  id="$("${prlctl[@]}" submit "${out}/flow_${seed}.textproto")"
  echo "training flow seed ${seed}: experiment ${id}"
  "${prlctl[@]}" watch "${id}" | tr '\r' '\n' | grep -v '^ *$' | tail -2
  model="${out}/learner/models/maze-flow-${seed}/v1.prl"
  [[ -f "${model}" ]] || { echo "prior_nll: no model at ${model}" >&2; exit 1; }
  # 3. held-out NLL against the baselines (the dataset and the split come from the artifact)
  "${bin}/bench/prior_nll" --model="${model}" --json="${out}/nll.jsonl"
done
echo "data, training and evaluation took $((SECONDS - started)) s"

# 4. mean ± std over the training seeds
/usr/bin/python3 - "${out}/nll.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
models = [k for k in rows[0] if isinstance(rows[0][k], list)]
print(f"{len(rows)} seeds, {rows[0]['validation']} validation transitions "
      f"({rows[0]['edge']} with an action on the edge) for seed {rows[0]['seed']}")
print(f"{'NLL, nats/transition':22s} {'all':>16s} {'interior':>16s} {'edge':>16s}")
for m in models:
    cells = []
    for i in range(3):
        v = [r[m][i] for r in rows]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        cells.append(f"{statistics.mean(v):8.3f} ± {sd:5.3f}")
    print(f"{m:22s} " + " ".join(f"{c:>16s}" for c in cells))
EOF
