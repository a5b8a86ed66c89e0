#!/usr/bin/env bash
# Learning curves of an experiment spec over several seeds, measured on a local cluster:
# starts deploy/local/cluster.sh (without its default experiment), submits the spec once per
# seed (they queue on the learner and run one after another), follows each to its end, then
# writes the curves as CSV and a PNG (mean ± std over seeds) with prlctl plot.
#
#   bench/learning_curves.sh --spec examples/cheetah_sac.textproto --seeds 1,2,3 \
#       --out docs/results/cheetah_sac
#
# Options:
#   --spec FILE          experiment spec (default examples/cheetah_sac.textproto)
#   --seeds LIST         comma-separated seeds (default 1,2,3)
#   --max_env_steps N    override the spec's stop.max_env_steps (default: the spec's)
#   --actors N           actor processes (default 2)
#   --out PREFIX         writes PREFIX.csv (eval), PREFIX_train.csv, PREFIX.png (default
#                        state/curves/curves)
#   --state_dir DIR      cluster state (default state/curves)
# Long: tagged out of the test suite; run it by hand.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
spec="examples/cheetah_sac.textproto"
seeds="1,2,3"
max_env_steps=0
actors=2
state_dir="${ROOT}/state/curves"
out=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --spec) spec="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --max_env_steps) max_env_steps="$2"; shift 2 ;;
    --actors) actors="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --state_dir) state_dir="$2"; shift 2 ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "learning_curves: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n "${out}" ]] || out="${state_dir}/curves"
[[ -f "${spec}" ]] || { echo "learning_curves: no spec file ${spec}" >&2; exit 2; }
mkdir -p "${state_dir}" "$(dirname "${out}")"

# the cluster runs in the background until this script ends
"${ROOT}/deploy/local/cluster.sh" --state_dir "${state_dir}" --actors "${actors}" --no_submit \
  --base_port 0 --no_prometheus >"${state_dir}/cluster.out" 2>&1 &
cluster=$!
trap 'kill -TERM ${cluster} 2>/dev/null; wait ${cluster} 2>/dev/null || true' EXIT
for _ in $(seq 1 3000); do
  grep -q "running; Ctrl-C" "${state_dir}/cluster.out" 2>/dev/null && break
  kill -0 "${cluster}" 2>/dev/null || { cat "${state_dir}/cluster.out" >&2; exit 1; }
  sleep 0.2
done
# shellcheck disable=SC1091
source "${state_dir}/cluster.env"
prlctl="${state_dir}/bin/prlctl"

ids=()
for seed in ${seeds//,/ }; do
  args=(--learner="${PRL_LEARNER}" --seed="${seed}")
  ((max_env_steps > 0)) && args+=(--max_env_steps="${max_env_steps}")
  id="$("${prlctl}" "${args[@]}" submit "${spec}")"
  echo "seed ${seed}: ${id}"
  ids+=("${id}")
done
for id in "${ids[@]}"; do
  echo "following ${id}"
  "${prlctl}" --learner="${PRL_LEARNER}" watch "${id}" || true
done
"${prlctl}" --learner="${PRL_LEARNER}" --metric=eval --csv="${out}.csv" --output="${out}.png" \
  plot "${ids[@]}"
"${prlctl}" --learner="${PRL_LEARNER}" --metric=train --csv="${out}_train.csv" \
  --output="${out}_train.png" plot "${ids[@]}"
for id in "${ids[@]}"; do
  "${prlctl}" --learner="${PRL_LEARNER}" get "${id}" | grep -E "^id:|^state:|end_reason|latest_eval_return|best_eval_return|env_steps:" | head -8
done
echo "wrote ${out}.csv ${out}.png ${out}_train.csv ${out}_train.png"
