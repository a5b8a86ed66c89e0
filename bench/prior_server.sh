#!/usr/bin/env bash
# The prior server's benchmark, in one run (docs/benchmarks.md, "Prior server"):
#   1. prior_server_bench on a SPiRL-size skill model (5 x 128, the point-maze shapes) and on a
#      large one (3 x 2048): prl_prior_server over gRPC against the same model called
#      in-process, at batch 1, 16, 64 with 1, 8, 32 clients; dynamic batching on/off for 16
#      batch-1 clients;
#   2. the same TorchScript module (exported by PyTorch with examples/torchscript_prior/) served
#      by PRL and by Ray Serve with @serve.batch (same rows per batch, same wait), called as
#      each one's users call it (PRL: RemotePrior over gRPC; Ray: HTTP to the Serve proxy);
#   3. a table of PRL / Ray Serve per point (rows/s and p99).
# Needs the virtualenv for the Ray Serve peer (scripts/setup.sh --venv); without it, step 2 runs
# PRL only. About 10 minutes on 2 cores.
#
#   bench/prior_server.sh [--out DIR] [--seconds S]
#
# Options (defaults in brackets):
#   --out DIR      JSON results and the exported module [state/prior_server_bench]
#   --seconds S    measured seconds per point [3]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${ROOT}/state/prior_server_bench"
seconds=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "prior_server.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "${out}"
out="$(cd "${out}" && pwd)"
cd "${ROOT}"

bazel build -c opt //bench:prior_server_bench
bin="$(bazel info -c opt bazel-bin)/bench/prior_server_bench"
# Ray's own processes and the clients share the cores with the server; keep OpenMP from spinning.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

echo "== SPiRL-size skill model (5 x 128)"
"${bin}" --model=skill --seconds="${seconds}" --json="${out}/skill_128x5.json"
echo "== large skill model (3 x 2048)"
"${bin}" --model=skill:2048x3 --seconds="${seconds}" --json="${out}/skill_2048x3.json"

echo "== TorchScript module exported by PyTorch (decoder 2 x 128, H 10, latent 10)"
/usr/bin/python3 examples/torchscript_prior/export_prior.py --out_dir "${out}/torchscript" \
  --latent_dim 10 --horizon 10 --hidden 128 --steps 50 --strip_debug_info >/dev/null
"${bin}" --model="${out}/torchscript/prior.pt" --seconds="${seconds}" \
  --json="${out}/torchscript_prl.json"

venv_python="${ROOT}/.venv/bin/python"
if [[ -x "${venv_python}" ]] && "${venv_python}" -c 'import ray.serve' 2>/dev/null; then
  echo "== the same module served by Ray Serve (@serve.batch, HTTP)"
  "${venv_python}" bench/prior_server_ray_peer.py --model "${out}/torchscript/prior.pt" \
    --max_batch_size 256 --batch_wait_us 200 --seconds "${seconds}" \
    --json_out "${out}/torchscript_ray.json"
  /usr/bin/python3 - "${out}/torchscript_prl.json" "${out}/torchscript_ray.json" <<'EOF'
import json, sys
prl = {(r["batch"], r["clients"]): r for r in json.load(open(sys.argv[1]))
       if r["peer"] == "prl_grpc"}
ray = {(r["batch"], r["clients"]): r for r in json.load(open(sys.argv[2]))
       if r["peer"] == "ray_serve_http"}
print("\n| batch | clients | PRL rows/s | Ray Serve rows/s | PRL / Ray | PRL p99 ms | Ray p99 ms |")
print("|---|---|---|---|---|---|---|")
ahead = True
for key in sorted(set(prl) & set(ray)):
    p, r = prl[key], ray[key]
    ratio = p["rows_per_s"] / max(r["rows_per_s"], 1e-9)
    ahead = ahead and ratio > 1 and p["p99_ms"] < r["p99_ms"]
    print(f"| {key[0]} | {key[1]} | {p['rows_per_s']:.0f} | {r['rows_per_s']:.0f} | "
          f"{ratio:.2f} | {p['p99_ms']:.2f} | {r['p99_ms']:.2f} |")
print(f"\nPRL ahead of Ray Serve in throughput and p99 at every point: {'yes' if ahead else 'no'}")
EOF
else
  echo "== Ray Serve peer skipped: ${venv_python} with ray[serve] not found (scripts/setup.sh --venv)"
fi
echo "results in ${out}"
