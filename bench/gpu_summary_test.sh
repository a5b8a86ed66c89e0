#!/usr/bin/env bash
# bench/gpu_summary.py on a learner_gpu.sh output directory made up here: every section is read
# from its file, each target is called met or missed from the figures, and missing parts say
# "not run".
set -euo pipefail
summary="${TEST_SRCDIR}/${TEST_WORKSPACE}/bench/gpu_summary.py"
out="${TEST_TMPDIR}/gpu_out"
mkdir -p "${out}"
cat > "${out}/learner_gpu.log" <<'LOG'
=== machine (10:00:00)
NVIDIA H200, 580.1, 143771 MiB
=== machine: exit 0
=== agent_cuda_test (10:00:05)
=== agent_cuda_test: exit 1
=== td3_check (10:00:08)
  check: 100 updates on cpu and cuda:0 (CUDA graphs): largest relative difference critic_loss 9.90e-01 actor_loss 9.90e-01 alpha 0.00e+00
=== td3_check: exit 0
=== sac_check_cpu_vs_gpu (10:00:10)
  check: 100 updates on cpu and cuda:0 (CUDA graphs): largest relative difference critic_loss 2.50e-07 actor_loss 6.20e-06 alpha 3.00e-08
=== sac_check_cpu_vs_gpu: exit 0
=== sac_check_tf32 (10:00:20)
  check: 100 updates on cpu and cuda:0 (CUDA graphs): largest relative difference critic_loss 1.20e-03 actor_loss 4.00e-04 alpha 1.00e-07
=== sac_check_tf32: exit 0
LOG
echo '{"batch": 4096, "tf32": true, "prl": {"cases": [{"gemm": "graph", "updates_per_second": 3100}]}, "pytorch_cuda_graph": {"wall": 2050}}' > "${out}/sac_gpu_tf32_4096.json"
echo '{"threads": 16, "batch": 256, "prl": {"cases": [{"gemm": "graph", "updates_per_second": 2100.5}, {"gemm": "eager", "updates_per_second": 180}]}, "pytorch": {"wall": 137}, "pytorch_fused_adam": {"wall": 150}, "pytorch_cuda_graph": {"wall": 992}}' > "${out}/sac_gpu_256.json"
echo '{"threads": 16, "batch": 4096, "prl": {"cases": [{"gemm": "graph", "updates_per_second": 1200}]}, "pytorch": {"wall": 148}, "pytorch_cuda_graph": {"wall": 712}}' > "${out}/sac_gpu_4096.json"
echo '{"cases": [{"gemm": "graph", "updates_per_second": 1900, "gpu_kernels_per_update": 150.25, "gpu_kernel_us_per_update": 420.5, "gpu_copies_per_update": 8}]}' > "${out}/sac_gpu_kernels_256.json"
echo '{"cases": [{"gemm": "graph", "updates_per_second": 2000}]}' > "${out}/sac_gpu_many_256_graph_1.json"
echo '{"cases": [{"gemm": "graph", "updates_per_second": 2300}]}' > "${out}/sac_gpu_many_256_graph_4.json"
echo '{"device": "cuda", "work": 1024, "results": [{"workload": "cheetah", "path": "limit (batches on device)", "batches_per_s": 5000}, {"workload": "cheetah", "path": "pinned staging", "batches_per_s": 4800}]}' > "${out}/feed_gpu_work_1024.json"
echo '{"threads": 1, "prl": {"cases": [{"gemm": "onednn", "updates_per_second": 150}]}, "pytorch": {"wall": 100}, "pytorch_fused_adam": {"wall": 120}}' > "${out}/sac_cpu_1.json"
echo '{"threads": 16, "prl": {"cases": [{"gemm": "onednn", "updates_per_second": 300}]}, "pytorch": {"wall": 100}, "pytorch_fused_adam": {"wall": 120}}' > "${out}/sac_cpu_16.json"

python3 "${summary}" "${out}" --write "${out}/summary.md" > "${out}/stdout.md"
cmp "${out}/stdout.md" <(cat "${out}/summary.md")
expect() {  # expect PATTERN: a line of the summary matches it
  grep -qE "$1" "${out}/summary.md" || { echo "no line matches: $1" >&2; cat "${out}/summary.md" >&2; exit 1; }
}
expect '^Steps: 4 of 5 exited 0; \*\*failed: agent_cuda_test\*\*'
expect '^\| critic_loss \| 2\.50e-07 \| met \|'
expect '^\| actor_loss \| 6\.20e-06 \| \*\*missed\*\* \|'
expect '^\| 256 \| 2,100\.5 \| 180\.0 \| 137\.0 \| 150\.0 \| 992\.0 \| 2\.12 \| >= 2,000 \| met \|'
expect '^\| 4096 \| 1,200\.0 \| - \| 148\.0 \| - \| 712\.0 \| 1\.69 \| >= 1,500 \| \*\*missed\*\* \|'
expect '^\| 3,100\.0 \| 2,050\.0 \| 1\.51 \| 1\.20e-03 \|'
expect '^\| 256 \| 2,000\.0 \| 2,300\.0 \| 1\.15 \|'
expect '^\| 4096 \| - \| - \| - \|'
expect '^\| 256 \| graph \| 150\.2 \| 420\.5 \| 8\.0 \|'
expect '^- work 1024: cheetah pinned staging: 4,800 \(0\.96\)'
expect '^- work 0: not run'
expect '^\| 1 \| 150\.0 \| 100\.0 \| 120\.0 \| 1\.25 \| \*\*missed\*\* \|'
expect '^\| 16 \| 300\.0 \| 100\.0 \| 120\.0 \| 2\.50 \| met \|'
# a missing directory is an error, not an empty summary
if python3 "${summary}" "${out}/none" > /dev/null 2>&1; then
  echo "a missing directory was accepted" >&2
  exit 1
fi
echo "PASS"
