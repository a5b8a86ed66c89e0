#!/usr/bin/env bash
# MCAT's delayed-reward benchmark on a local cluster, reproducible: half-cheetah armature tasks
# (examples/cheetah_mcat.textproto's setting, made smaller to fit 2 cores), three variants with
# the same seeds, queued on the learner one after another:
#   mcat         context TD3 + self-imitation + policy transfer (the translator)
#   mcat-no-pt   the same agent without policy transfer (the paper's "MCAT w/o PT" ablation)
#   td3-context  context-conditioned TD3 alone (no self-imitation, no transfer)
# Evaluation rounds run the held-out armatures only, so the evaluation return is the test-task
# return. Writes one PNG of it against env steps (mean ± std over seeds per variant), the CSV
# behind it, and a summary line with the final test return per variant and the gain of mcat
# over mcat-no-pt. Long (about 1.5 hours at the defaults on 2 cores: 9 runs of 100k env steps
# at about 170 env steps/s): run it by hand.
#
#   bench/mcat_transfer.sh [--seeds 1,2,3] [--max_env_steps N] [--out PREFIX]
#
# Options (defaults in brackets):
#   --seeds LIST          seeds [1,2,3]
#   --variants LIST       among mcat, mcat-no-pt, td3-context [all three]
#   --max_env_steps N     budget of each run [100000]
#   --episode_length N    env steps per episode [200]
#   --reward_delay N      rewards delayed and summed over N steps [50]
#   --hidden N            width of the two hidden layers of every network [64]
#   --eval_every N        env steps between evaluation rounds [5000]
#   --actors N            actor processes [2]
#   --out PREFIX          writes PREFIX.csv, PREFIX.png [state/mcat_transfer/mcat_transfer]
#   --state_dir DIR       cluster state and specs [state/mcat_transfer]
#   --cluster ENV         use the running cluster ENV (a cluster.env) instead of starting one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="1,2,3"
variants="mcat,mcat-no-pt,td3-context"
max_env_steps=100000
episode_length=200
reward_delay=50
hidden=64
eval_every=5000
actors=2
state_dir=""
out=""
cluster_env=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --variants) variants="$2"; shift 2 ;;
    --max_env_steps) max_env_steps="$2"; shift 2 ;;
    --episode_length) episode_length="$2"; shift 2 ;;
    --reward_delay) reward_delay="$2"; shift 2 ;;
    --hidden) hidden="$2"; shift 2 ;;
    --eval_every) eval_every="$2"; shift 2 ;;
    --actors) actors="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --state_dir) state_dir="$2"; shift 2 ;;
    --cluster) cluster_env="$2"; shift 2 ;;
    -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mcat_transfer: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -n "${cluster_env}" ]]; then
  [[ -f "${cluster_env}" ]] || { echo "mcat_transfer: --cluster: no file ${cluster_env}" >&2; exit 2; }
  [[ -n "${state_dir}" ]] || state_dir="$(dirname "${cluster_env}")"
fi
[[ -n "${state_dir}" ]] || state_dir="${ROOT}/state/mcat_transfer"
mkdir -p "${state_dir}"
state_dir="$(cd "${state_dir}" && pwd)"
[[ -n "${out}" ]] || out="${state_dir}/mcat_transfer"
mkdir -p "$(dirname "${out}")"
cd "${ROOT}"

# shellcheck source=bench/cluster_lib.sh
source "${ROOT}/bench/cluster_lib.sh"
bench_cluster "${state_dir}" "${actors}" "${cluster_env}"

spec() {  # VARIANT: the spec of one variant
  local variant="$1" flags=""
  case "${variant}" in
    mcat) ;;
    mcat-no-pt) flags="disable_policy_transfer: true" ;;
    td3-context) flags="disable_policy_transfer: true disable_self_imitation: true" ;;
    *) echo "mcat_transfer: unknown variant '${variant}'" >&2; exit 2 ;;
  esac
  cat <<SPEC
name: "cheetah-${variant}"
kind: KIND_TRAIN
description: "bench/mcat_transfer.sh: ${variant} on cheetah armature tasks"
labels { key: "method" value: "${variant}" }
env {
  domain: DOMAIN_CHEETAH
  task: "run_forward"
  episode_length: ${episode_length}
  reward_delay: ${reward_delay}
  seed: 1
}
algorithm {
  mcat {
    train_tasks { armature_scale: 1 }
    train_tasks { armature_scale: 2 }
    train_tasks { armature_scale: 3 }
    train_tasks { armature_scale: 4 }
    test_tasks { armature_scale: 1.5 }
    test_tasks { armature_scale: 3.5 }
    ${flags}
  }
  network { hidden_sizes: [${hidden}, ${hidden}] }
  batch_size: 128
  warmup_env_steps: 4000
}
replay { capacity: 200000 samples_per_insert: 128 min_size_to_sample: 2000 }
resources { num_actors: ${actors} envs_per_actor: 2 }
stop { max_env_steps: ${max_env_steps} }
evaluation { every_env_steps: ${eval_every} episodes: 4 }
SPEC
}

for variant in ${variants//,/ }; do spec "${variant}" >"${state_dir}/${variant}.textproto"; done
# seed by seed, so a study cut short still compares the variants on the seeds it finished
ids=()
for seed in ${seeds//,/ }; do
  for variant in ${variants//,/ }; do
    id="$("${prlctl[@]}" --seed="${seed}" submit "${state_dir}/${variant}.textproto")"
    echo "${variant} seed ${seed}: ${id}"
    ids+=("${id}")
  done
done
for id in "${ids[@]}"; do follow "${id}" 72h; done

"${prlctl[@]}" --metric=eval --group_by=method --csv="${out}.csv" --output="${out}.png" \
  plot "${ids[@]}" || echo "mcat_transfer: no curve to plot (no evaluation round yet)" >&2
echo "test-task return (evaluation on the held-out armatures) at the end, per run:"
for id in "${ids[@]}"; do
  "${prlctl[@]}" get "${id}" |
    awk -v id="${id}" '/key: "method"/{getline; m=$2; gsub(/"/, "", m)}
         /latest_eval_return:/{r=$2} /^  env_steps:/{s=$2}
         END{printf "  %s %s: %s at %s env steps\n", id, m, (r == "" ? "-" : r), s}'
done
# per variant: the mean over seeds of each run's last evaluation and of its last three (less
# noisy); and mcat's gain over mcat-no-pt on the latter
awk -F, 'NR > 1 {
    key = $1 SUBSEP $2; g[key] = $1
    n[key]++; v[key, n[key]] = $4 + 0
  }
  END {
    for (key in n) {
      k = n[key]; m = 0; c = 0
      for (i = (k > 3 ? k - 2 : 1); i <= k; i++) { m += v[key, i]; c++ }
      last[g[key]] += v[key, k]; tail[g[key]] += m / c; runs[g[key]]++
    }
    line = "summary (test return, mean over seeds: last round / mean of the last 3):"
    for (x in runs) line = line sprintf("  %s %.1f / %.1f;", x, last[x] / runs[x], tail[x] / runs[x])
    if (("mcat" in runs) && ("mcat-no-pt" in runs)) {
      a = tail["mcat"] / runs["mcat"]; b = tail["mcat-no-pt"] / runs["mcat-no-pt"]
      line = line sprintf("  translator gain %+.1f (%+.0f%% of |mcat-no-pt|)", a - b,
                          b != 0 ? 100 * (a - b) / (b < 0 ? -b : b) : 0)
    }
    print line
  }' "${out}.csv" 2>/dev/null || true
if [[ -f "${out}.png" ]]; then echo "wrote ${out}.csv ${out}.png"; fi
