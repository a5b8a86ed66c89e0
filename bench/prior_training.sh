#!/usr/bin/env bash
# Prior training speed: PRL against the same model in PyTorch on the same CPU, in one run.
#   1. prl_collect: noisy planner episodes on 8 random 10x10 mazes (a D4RL-layout HDF5 file);
#   2. checks that bench/prior_training_vs_pytorch.py's model computes PRL's losses (the same
#      weights and batch give the same five loss terms) under each PyTorch;
#   3. rounds of 20 s measurements, interleaved: PRL's TRAIN_PRIOR loop
#      (//bench:prior_training_bench: the skill model, and PARROT's flow) and the skill model in
#      Debian's PyTorch (python3-torch) and in PyPI's (a virtualenv), each with a DataLoader and
#      with the tensor-indexing fast path, at each thread count;
#   4. the table: median samples/s per row, PRL's ratio to each PyTorch row (median of the
#      per-round ratios) and the fraction of time spent waiting for data, against the targets
#      (>= 1.5x PyTorch, <= 5% waiting).
# About 20 minutes with the defaults (docs/benchmarks.md has a run).
#
#   bench/prior_training.sh [--out DIR] [--seconds S] [--rounds N] [--threads LIST]
#                           [--venv DIR] [--omp_wait_policy P] [--no_flow]
#
# Options (defaults in brackets):
#   --out DIR            dataset, results.jsonl and the logs [state/prior_training]
#   --seconds S          measured seconds per run [20]
#   --rounds N           runs per row; the table shows medians [3]
#   --threads LIST       torch threads, comma-separated [1,2]
#   --venv DIR           virtualenv with PyPI's torch, h5py and numpy [.venv-torch]; without it
#                        the PyPI rows are skipped. Make it with
#                          python3 -m venv .venv-torch
#                          .venv-torch/bin/pip install torch h5py numpy
#   --omp_wait_policy P  OMP_WAIT_POLICY for every contender [PASSIVE]; "" keeps OpenMP's
#                        default (threads spin, which on busy cores stalls every parallel region)
#   --no_flow            skip PRL's flow rows
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ROOT}/state/prior_training"
seconds=20
rounds=3
threads_list="1,2"
venv="${ROOT}/.venv-torch"
wait_policy="PASSIVE"
flow=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --threads) threads_list="$2"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --omp_wait_policy) wait_policy="$2"; shift 2 ;;
    --no_flow) flow=0; shift ;;
    -h | --help) sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prior_training: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
IFS=',' read -r -a thread_counts <<<"${threads_list}"
if [[ -n "${wait_policy}" ]]; then export OMP_WAIT_POLICY="${wait_policy}"; fi

cd "${ROOT}"
bazel build -c opt //actor/collect:prl_collect //bench:prior_training_bench
bin="$(bazel info -c opt bazel-bin)"
peer="${ROOT}/bench/prior_training_vs_pytorch.py"
# the PyTorch contenders: label and interpreter
pythons=("debian" "/usr/bin/python3")
if [[ -x "${venv}/bin/python" ]]; then
  pythons+=("pypi" "${venv}/bin/python")
else
  echo "prior_training: no virtualenv at ${venv}; skipping PyPI's torch (see --help)" >&2
fi

mkdir -p "${out}"
data="${out}/maze.hdf5"
results="${out}/results.jsonl"
rm -f "${results}" "${data}"

# 1. the dataset (the maze workflow's: planner with noise, random start and goal)
"${bin}/actor/collect/prl_collect" --domain=point_maze --random_maze=10x10 --maze_seed=1000 \
  --maze_per_env --num_envs=8 --seed=1000 --collector=planner --action_noise=0.1 \
  --randomize_start_goal --episodes=200 --output="${data}" 2>&1 | tail -1

# 2. the same model: PRL's fresh weights and one batch, PyTorch's losses on them
rm -rf "${out}/check"
mkdir -p "${out}/check"
"${bin}/bench/prior_training_bench" --dataset="${data}" --check_dir="${out}/check"
for ((i = 0; i < ${#pythons[@]}; i += 2)); do
  "${pythons[i + 1]}" "${peer}" --check "${out}/check"
done

# 3. interleaved rounds, so that the load of a shared machine falls on every contender alike
echo "uname: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for ((round = 1; round <= rounds; round++)); do
  echo "== round ${round}/${rounds} (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for t in "${thread_counts[@]}"; do
    "${bin}/bench/prior_training_bench" --dataset="${data}" --model=skill --threads="${t}" \
      --seconds="${seconds}" --warmup=10 --json="${results}" | tail -1 | sed "s/^/prl skill ${t}t: /"
    if ((flow)); then
      "${bin}/bench/prior_training_bench" --dataset="${data}" --model=flow --threads="${t}" \
        --seconds="${seconds}" --warmup=10 --json="${results}" | tail -1 | sed "s/^/prl flow ${t}t: /"
    fi
    for ((i = 0; i < ${#pythons[@]}; i += 2)); do
      for loader in dataloader tensor; do
        "${pythons[i + 1]}" "${peer}" --dataset "${data}" --loader "${loader}" --threads "${t}" \
          --seconds "${seconds}" --warmup 10 --label "${pythons[i]}" --json "${results}"
      done
    done
  done
done
echo "== done (load average $(cut -d' ' -f1-3 /proc/loadavg))"

# 4. the table
/usr/bin/python3 "${peer}" --summarize "${results}"
