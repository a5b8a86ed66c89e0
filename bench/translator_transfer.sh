#!/usr/bin/env bash
# MCAT's policy transfer through an action translator trained offline between two tasks, on a
# local cluster (docs/results.md): a policy of the normal cheetah run on a heavier one, as is
# and through translators.
#
#   1. SAC on the normal cheetah's run_forward (examples/cheetah_sac_small.textproto: 64x64
#      nets, seed --source_seed) for --source_steps env steps;
#   2. COLLECT uniform random actions, --collect_steps transitions each, on the source task
#      (the normal cheetah) and on the target task (every body's mass x --mass_scale)
#      (examples/cheetah_collect_{light,heavy}.textproto);
#   3. per seed: TRAIN_PRIOR a PRIOR_KIND_ACTION_TRANSLATOR from the source dataset to the target
#      one (examples/cheetah_translator.textproto);
#   4. EVALUATE the SAC policy (--episodes episodes, acting with its mean): on the source task,
#      on the target task as is, and on the target task through each seed's translator
#      (evaluate.translator: a = H(s, pi(s)), served by the prior server);
#   5. a CSV of every evaluation (mean, std, min, max return) and a summary line.
#
#   bench/translator_transfer.sh [--seeds 1,2,3] [--source_seed N] [--source_steps N]
#                                [--collect_steps N]
#                                [--mass_scale X] [--episodes N] [--state_dir DIR]
#                                [--out PREFIX] [--cluster cluster.env]
#
# Defaults: seeds 1,2,3, source seed 1, 60,000 source steps, 40,000 transitions per dataset, mass scale 2.5,
# 20 episodes, state in state/translator_transfer, results in
# docs/results/cheetah_translator_transfer.csv. The datasets are collected once per state
# directory (a dataset name is written once).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seeds="1,2,3"
source_seed=1
source_steps=60000
collect_steps=40000
mass_scale=2.5
episodes=20
state_dir=""
out=""
cluster_env=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --source_seed) source_seed="$2"; shift 2 ;;
    --source_steps) source_steps="$2"; shift 2 ;;
    --collect_steps) collect_steps="$2"; shift 2 ;;
    --mass_scale) mass_scale="$2"; shift 2 ;;
    --episodes) episodes="$2"; shift 2 ;;
    --state_dir) state_dir="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --cluster) cluster_env="$2"; shift 2 ;;
    -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "translator_transfer: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
state_dir="${state_dir:-${ROOT}/state/translator_transfer}"
out="${out:-${ROOT}/docs/results/cheetah_translator_transfer}"
mkdir -p "${state_dir}" "$(dirname "${out}")"
specs="${state_dir}/specs"
mkdir -p "${specs}"

# shellcheck source=bench/cluster_lib.sh
source "${ROOT}/bench/cluster_lib.sh"
bench_cluster "${state_dir}" 2 "${cluster_env}"

submit() { "${prlctl[@]}" "$@" | tail -1; }
# The first value of `key:` in an experiment's record.
field() { "${prlctl[@]}" get "$1" | awk -v k="$2:" '$1 == k {print $2; exit}'; }

log() { echo "[translator_transfer] $*"; }

# 1. the source policy
log "SAC on the normal cheetah for ${source_steps} env steps (seed ${source_seed})"
policy="$(submit --seed="${source_seed}" --max_env_steps="${source_steps}" submit \
  "${ROOT}/examples/cheetah_sac_small.textproto")"
follow "${policy}" 60m
[[ "$(field "${policy}" state)" == EXPERIMENT_STATE_SUCCEEDED ]] ||
  { log "${policy} did not succeed"; exit 1; }

# 2. the two datasets, once per state directory
light="cheetah-m1-random-${collect_steps}"
heavy="cheetah-m${mass_scale}-random-${collect_steps}"
collect() {  # NAME SPEC MASS
  local name="$1" spec="$2" mass="$3" file="${specs}/collect-$1.textproto" id
  if "${prlctl[@]}" datasets "${name}" >/dev/null 2>&1; then
    log "dataset ${name} is stored already"
    return
  fi
  sed -e "s/num_env_steps: [0-9]*/num_env_steps: ${collect_steps}/" \
    -e "s/output_dataset: \"[^\"]*\"/output_dataset: \"${name}\"/" \
    -e "s/mass_scale: [0-9.]*/mass_scale: ${mass}/" "${spec}" >"${file}"
  id="$(submit submit "${file}")"
  log "COLLECT ${name}: ${id}"
  follow "${id}" 60m
}
collect "${light}" "${ROOT}/examples/cheetah_collect_light.textproto" 1
collect "${heavy}" "${ROOT}/examples/cheetah_collect_heavy.textproto" "${mass_scale}"

# 3. a translator per seed
model="cheetah-m${mass_scale}-translator"
declare -A translator_version
for seed in ${seeds//,/ }; do
  file="${specs}/translator-${seed}.textproto"
  sed -e "s/dataset: \"cheetah-light-random\"/dataset: \"${light}\"/" \
    -e "s/target_dataset: \"cheetah-heavy-random\"/target_dataset: \"${heavy}\"/" \
    -e "s/output_model: \"[^\"]*\"/output_model: \"${model}\"/" \
    -e "s/seed: [0-9]*/seed: ${seed}/" "${ROOT}/examples/cheetah_translator.textproto" >"${file}"
  id="$(submit submit "${file}")"
  log "TRAIN_PRIOR translator seed ${seed}: ${id}"
  follow "${id}" 60m
  [[ "$(field "${id}" state)" == EXPERIMENT_STATE_SUCCEEDED ]] ||
    { log "${id} did not succeed"; exit 1; }
  translator_version[${seed}]="$("${prlctl[@]}" get "${id}" |
    awk '/prior_model \{/{p=1} p && $1 == "version:" {print $2; exit}')"
done

# 4. the evaluations
evaluate() {  # VARIANT SEED MASS [TRANSLATOR_VERSION]
  local variant="$1" seed="$2" mass="$3" version="${4:-}" file id
  file="${specs}/evaluate-${variant}-${seed}.textproto"
  sed -e "s/experiment_id: \"[^\"]*\"/experiment_id: \"${policy}\"/" \
    -e "s/mass_scale: [0-9.]*/mass_scale: ${mass}/" \
    -e "s/episodes: [0-9]*/episodes: ${episodes}/" \
    "${ROOT}/examples/cheetah_evaluate.textproto" >"${file}"
  if [[ -n "${version}" ]]; then
    sed -i -e "s/^  episodes: \(.*\)$/  episodes: \1\n  translator { name: \"${model}\" version: ${version} }/" \
      "${file}"
  fi
  id="$(submit submit "${file}")"
  follow "${id}" 60m
  [[ "$(field "${id}" state)" == EXPERIMENT_STATE_SUCCEEDED ]] ||
    { log "${id} did not succeed"; exit 1; }
  echo "${variant},${seed},${mass},$(field "${id}" mean_return),$(field "${id}" std_return),$(field "${id}" min_return),$(field "${id}" max_return),${id}" >>"${out}.csv"
  log "${variant} (seed ${seed}): mean return $(field "${id}" mean_return) ($(field "${id}" std_return) std) [${id}]"
}
echo "variant,seed,mass_scale,mean_return,std_return,min_return,max_return,experiment" >"${out}.csv"
evaluate source 0 1
evaluate target 0 "${mass_scale}"
for seed in ${seeds//,/ }; do
  evaluate target_translated "${seed}" "${mass_scale}" "${translator_version[${seed}]}"
done

# 5. the summary
awk -F, 'NR > 1 {sum[$1] += $4; n[$1]++}
  END {printf "[translator_transfer] mean return: source %.1f, target %.1f, target through the translator %.1f (%d seeds)\n",
       sum["source"] / n["source"], sum["target"] / n["target"],
       sum["target_translated"] / n["target_translated"], n["target_translated"]}' "${out}.csv"
log "wrote ${out}.csv"
