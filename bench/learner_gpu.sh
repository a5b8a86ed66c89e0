#!/usr/bin/env bash
# The learner's figures on a GPU machine, one run: CUDA-graph updates tested against eager ones,
# PRL's SAC/TD3/spirl update rates on the GPU (CUDA graphs and eager; one update per call, and eight
# queued per Agent::UpdateMany call, in one graph launch each or per group of four) against
# PyTorch's eager, fused and CUDA-graph updates, the losses of the GPU path against the CPU's,
# the replay feed's batches staged on the GPU (tested, and measured against batches already
# there), and the CPU rates of the same binary against PyPI's torch at 1, 2 and all threads.
# Runs from a CUDA build bundle (scripts/cuda_build.sh --bundle DIR) on a machine with PyPI's
# torch (python3 -c 'import torch' must work); writes logs and JSON files into OUT, with what the
# GPU runs per update (kernels and their times), and summary.md (bench/gpu_summary.py: the
# figures against the targets). The whole cluster on the GPU:
# bench/cluster_gpu.sh.
#
#   bench/learner_gpu.sh [--bundle .device-bundle] [--out DIR] [--seconds 8] [--cpu_threads 1,2,16]
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="${ROOT}/.device-bundle"
out="${OUT:-/tmp/prl-learner-gpu}"
seconds=8
cpu_threads="1,2,$(nproc)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bundle) bundle="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --cpu_threads) cpu_threads="$2"; shift 2 ;;
    -h | --help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "learner_gpu: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "${out}"
export PYTHONUNBUFFERED=1
run="${bundle}/run.sh"
log="${out}/learner_gpu.log"
step() {  # step NAME TIMEOUT_S COMMAND...: runs one part; a failure does not stop the others
  local name="$1" limit="$2"
  shift 2
  echo "=== ${name} ($(date -u +%T))" | tee -a "${log}"
  timeout "${limit}" "$@" 2>&1 | tee -a "${log}"
  echo "=== ${name}: exit ${PIPESTATUS[0]}" | tee -a "${log}"
}

step machine 30 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  nproc; python3 -c "import torch; print(\"torch\", torch.__version__, torch.version.cuda)"'
step cuda_kernels_test 60 "${run}" cuda_kernels_test
step device_math_test 30 "${run}" device_math_test
step agent_cuda_test 120 "${run}" agent_cuda_test
step replay_feed_cuda_test 60 "${run}" replay_feed_cuda_test
step sac_check_cpu_vs_gpu 60 "${run}" learner_bench --device=cuda --check_updates=100 \
  --gemm=graph --seconds=2
step td3_gpu 60 "${run}" learner_bench --device=cuda --algorithm=td3 --check_updates=100 \
  --seconds="${seconds}" --json="${out}/td3_gpu_256.json"
# spirl (the prior-guided agent of the transfer studies, its skill prior's forward passes inside
# the captured update) at the maze's shapes: obs 4, 10 latents, the prior's and policy's 5x128,
# critics 256x256, batch 256
step spirl_gpu 60 "${run}" learner_bench --device=cuda --algorithm=spirl --obs_dim=4 \
  --act_dim=10 --check_updates=100 --seconds="${seconds}" --json="${out}/spirl_gpu_256.json"
# what the GPU runs per SAC update, captured and eager: kernels, copies, their GPU time, the
# kernels that take most of it (Kineto/CUPTI)
for batch in 256 4096; do
  step "sac_gpu_kernels_${batch}" 60 "${run}" learner_bench --device=cuda --gemm=graph,eager \
    --batch="${batch}" --seconds=1 --gpu_kernels=20 --json="${out}/sac_gpu_kernels_${batch}.json"
done
for batch in 256 4096; do
  step "sac_gpu_vs_pytorch_${batch}" 150 python3 "${ROOT}/bench/learner_vs_pytorch.py" \
    --prl "${run} learner_bench" --device=cuda --batch="${batch}" --seconds="${seconds}" \
    --json="${out}/sac_gpu_${batch}.json"
done
# batch 4,096 with TF32 products (opt-in: prl_learner --learner_tf32_products) for PRL and
# PyTorch alike, and PRL's losses against the CPU's with them
step sac_gpu_tf32_4096 150 python3 "${ROOT}/bench/learner_vs_pytorch.py" \
  --prl "${run} learner_bench --gemm=graph" --device=cuda --batch=4096 --tf32 \
  --seconds="${seconds}" --json="${out}/sac_gpu_tf32_4096.json"
step sac_check_tf32 60 "${run}" learner_bench --device=cuda --check_updates=100 --tf32 \
  --gemm=graph --seconds=1
# eight updates per UpdateMany call, one graph launch per update and one per group of four
# (AgentOptions::updates_per_graph); agent_cuda_test checks that both compute the same
for batch in 256 4096; do
  for per_graph in 1 4; do
    step "sac_gpu_update_many_${batch}_per_graph_${per_graph}" 60 "${run}" learner_bench \
      --device=cuda --gemm=graph --batch="${batch}" --updates_per_call=8 \
      --updates_per_graph="${per_graph}" --seconds="${seconds}" \
      --json="${out}/sac_gpu_many_${batch}_graph_${per_graph}.json"
  done
done
step td3_gpu_update_many_256_per_graph_4 60 "${run}" learner_bench --device=cuda --algorithm=td3 \
  --gemm=graph --updates_per_call=8 --updates_per_graph=4 --seconds="${seconds}" \
  --json="${out}/td3_gpu_many_256_graph_4.json"
# the replay feed's batches on the GPU (pinned staging and plain copies) against batches already
# there, behind a stand-in update of about an SAC update's GPU time and behind none
for work in 1024 0; do
  step "feed_gpu_work_${work}" 60 "${run}" feed_bench --device=cuda --work="${work}" --seconds=3 \
    --json="${out}/feed_gpu_work_${work}.json"
done
for t in ${cpu_threads//,/ }; do
  step "sac_cpu_${t}_threads" 100 python3 "${ROOT}/bench/learner_vs_pytorch.py" \
    --prl "${run} learner_bench" --device=cpu --skip_sb3 --threads="${t}" \
    --seconds="${seconds}" --json="${out}/sac_cpu_${t}.json"
done
# the figures against the issue's targets, as Markdown (OUT/summary.md)
python3 "${ROOT}/bench/gpu_summary.py" "${out}" --write "${out}/summary.md" > /dev/null ||
  echo "learner_gpu: the summary failed (bench/gpu_summary.py)" | tee -a "${log}"
echo "learner_gpu: done; logs, JSON and summary.md in ${out}" | tee -a "${log}"
