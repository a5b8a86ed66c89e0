#!/usr/bin/env python3
"""The learner's GPU figures from one bench/learner_gpu.sh run, against issue 19's targets.

Reads what learner_gpu.sh wrote into its OUT directory (learner_gpu.log and the JSON files of
learner_bench, learner_vs_pytorch.py and feed_bench; bench/cluster_gpu.sh's summary.json when it
ran into the same directory) and prints a Markdown summary: which steps passed, the GPU update
rates against PyTorch's and the targets (>= 2,000 SAC updates/s at batch 256, >= 1,500 at 4,096),
the largest loss difference against the CPU (<= 4e-6), updates per graph launch, what the GPU
runs per update, the feed's staging, and the CPU against PyPI's PyTorch (>= 1.5x). Parts that did
not run say so. Only the standard library: it runs on the GPU machine as it is.

    python3 bench/gpu_summary.py OUT [--write OUT/summary.md]
"""

import argparse
import json
import os
import re
import sys

TARGET_RATE = {256: 2000.0, 4096: 1500.0}
TARGET_LOSS_MATCH = 4e-6
TARGET_CPU_RATIO = 1.5


def load(out, name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"gpu_summary: {path}: {e}", file=sys.stderr)
        return None


def verdict(value, target, at_least=True):
    if value is None:
        return "not run"
    met = value >= target if at_least else value <= target
    return "met" if met else "**missed**"


def fmt(value, digits=1):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def prl_case(bench, gemm):
    """updates/s of one learner_bench case ("graph", "eager", "onednn", ...) or None."""
    if not bench:
        return None
    for case in bench.get("cases", []):
        if case.get("gemm") == gemm:
            return case
    return None


def rate(case):
    return None if case is None else case.get("updates_per_second")


def steps(log_text):
    """[(step, exit code)] in the order the log has them."""
    return [(m.group(1), int(m.group(2)))
            for m in re.finditer(r"^=== (\S+): exit (\d+)$", log_text, re.M)]


def loss_match(log_text):
    """{loss: largest relative difference} from learner_bench's CPU-vs-GPU check, or {}."""
    m = re.search(r"check: \d+ updates on cpu and \S+ \(CUDA graphs\): largest relative "
                  r"difference(.*)$", log_text, re.M)
    if not m:
        return {}
    return {k: float(v) for k, v in re.findall(r"(\w+) ([-+0-9.eE]+)", m.group(1))}


def section(log_text, name):
    """The output of one learner_gpu.sh step, or ""."""
    m = re.search(rf"^=== {re.escape(name)} \(.*?\n(.*?)^=== {re.escape(name)}: exit", log_text,
                  re.M | re.S)
    return m.group(1) if m else ""


def summarize(out):
    lines = []
    log_path = os.path.join(out, "learner_gpu.log")
    log_text = open(log_path).read() if os.path.exists(log_path) else ""
    lines.append(f"# Learner on the GPU: {out}\n")
    machine = re.search(r"^=== machine.*?\n(.*?)^=== machine: exit", log_text, re.M | re.S)
    if machine:
        lines.append("Machine: " + " · ".join(
            l.strip() for l in machine.group(1).splitlines() if l.strip()) + "\n")

    ran = steps(log_text)
    if ran:
        failed = [name for name, code in ran if code != 0]
        lines.append(f"Steps: {len(ran) - len(failed)} of {len(ran)} exited 0" +
                     (f"; **failed: {', '.join(failed)}**" if failed else "") + "\n")
    else:
        lines.append("Steps: no learner_gpu.log\n")

    match = loss_match(section(log_text, "sac_check_cpu_vs_gpu"))
    worst = max(match.values()) if match else None
    lines.append("## Losses against the CPU (100 SAC updates, batch 256)\n")
    lines.append("| loss | largest relative difference | target <= 4e-6 |")
    lines.append("|---|---:|---|")
    if match:
        for name, value in match.items():
            lines.append(f"| {name} | {value:.2e} | {verdict(value, TARGET_LOSS_MATCH, False)} |")
    else:
        lines.append("| - | - | not run |")
    lines.append("")

    lines.append("## SAC updates/s on the GPU against PyTorch\n")
    lines.append("| batch | PRL graph | PRL eager | PyTorch eager | PyTorch fused Adam | "
                 "PyTorch CUDA graph | PRL graph / PyTorch graph | target | |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for batch, target in TARGET_RATE.items():
        vs = load(out, f"sac_gpu_{batch}.json")
        prl = (vs or {}).get("prl")
        graph, eager = rate(prl_case(prl, "graph")), rate(prl_case(prl, "eager"))
        peer = lambda key: (vs or {}).get(key, {}).get("wall")  # noqa: E731
        torch_graph = peer("pytorch_cuda_graph")
        ratio = graph / torch_graph if graph and torch_graph else None
        lines.append(f"| {batch} | {fmt(graph)} | {fmt(eager)} | {fmt(peer('pytorch'))} | "
                     f"{fmt(peer('pytorch_fused_adam'))} | {fmt(torch_graph)} | {fmt(ratio, 2)} | "
                     f">= {target:,.0f} | {verdict(graph, target)} |")
    lines.append("")

    lines.append("## Batch 4,096 with TF32 products (opt-in, --learner_tf32_products)\n")
    tf32 = load(out, "sac_gpu_tf32_4096.json")
    tf32_graph = rate(prl_case((tf32 or {}).get("prl"), "graph"))
    tf32_torch = (tf32 or {}).get("pytorch_cuda_graph", {}).get("wall")
    tf32_match = loss_match(section(log_text, "sac_check_tf32"))
    lines.append("| PRL graph | PyTorch CUDA graph (TF32) | PRL / PyTorch | largest loss difference "
                 "against the CPU (batch 256) |")
    lines.append("|---:|---:|---:|---:|")
    tf32_ratio = tf32_graph / tf32_torch if tf32_graph and tf32_torch else None
    worst_tf32 = max(tf32_match.values()) if tf32_match else None
    lines.append(f"| {fmt(tf32_graph)} | {fmt(tf32_torch)} | {fmt(tf32_ratio, 2)} | "
                 f"{'-' if worst_tf32 is None else f'{worst_tf32:.2e}'} |")
    lines.append("\n(Not the issue's target, which asks for float32 losses matching the CPU's: TF32 "
                 "rounds the products' inputs to 10 bits.)\n")

    lines.append("## Eight updates per call (Agent::UpdateMany)\n")
    lines.append("| batch | one graph launch per update | one per group of 4 | group / one |")
    lines.append("|---:|---:|---:|---:|")
    for batch in TARGET_RATE:
        one = rate(prl_case(load(out, f"sac_gpu_many_{batch}_graph_1.json"), "graph"))
        four = rate(prl_case(load(out, f"sac_gpu_many_{batch}_graph_4.json"), "graph"))
        ratio = four / one if one and four else None
        lines.append(f"| {batch} | {fmt(one)} | {fmt(four)} | {fmt(ratio, 2)} |")
    td3 = rate(prl_case(load(out, "td3_gpu_256.json"), "graph"))
    td3_four = rate(prl_case(load(out, "td3_gpu_many_256_graph_4.json"), "graph"))
    lines.append(f"\nTD3 at batch 256: {fmt(td3)} updates/s one per call, {fmt(td3_four)} eight per "
                 "call in groups of 4.\n")
    spirl = load(out, "spirl_gpu_256.json")
    spirl_match = loss_match(section(log_text, "spirl_gpu"))
    worst_spirl = max(spirl_match.values()) if spirl_match else None
    lines.append(f"spirl at batch 256 (the maze's shapes: a 5x128 skill prior and policy, 10 "
                 f"latents, 256x256 critics): "
                 f"{fmt(rate(prl_case(spirl, 'graph')))} updates/s captured, "
                 f"{fmt(rate(prl_case(spirl, 'eager')))} eager; losses against the CPU's within "
                 f"{'-' if worst_spirl is None else f'{worst_spirl:.2e}'}.\n")

    lines.append("## What the GPU runs per SAC update (Kineto)\n")
    lines.append("| batch | case | kernels | kernel µs | copies |")
    lines.append("|---:|---|---:|---:|---:|")
    for batch in TARGET_RATE:
        bench = load(out, f"sac_gpu_kernels_{batch}.json")
        for gemm in ("graph", "eager"):
            case = prl_case(bench, gemm)
            if case is None or "gpu_kernels_per_update" not in case:
                lines.append(f"| {batch} | {gemm} | - | - | - |")
                continue
            lines.append(f"| {batch} | {gemm} | {fmt(case['gpu_kernels_per_update'])} | "
                         f"{fmt(case.get('gpu_kernel_us_per_update'))} | "
                         f"{fmt(case.get('gpu_copies_per_update'))} |")
    lines.append("")

    lines.append("## The replay feed's batches on the GPU (batches/s, share of the limit)\n")
    for work in (1024, 0):
        feed = load(out, f"feed_gpu_work_{work}.json")
        if not feed:
            lines.append(f"- work {work}: not run")
            continue
        results = feed.get("results", [])
        limits = {r["workload"]: r["batches_per_s"] for r in results
                  if r["path"].startswith("limit")}
        parts = [f"{r['workload']} {r['path']}: {fmt(r['batches_per_s'], 0)}"
                 f" ({fmt(r['batches_per_s'] / limits[r['workload']], 2)})"
                 for r in results if not r["path"].startswith("limit")
                 and limits.get(r["workload"])]
        lines.append(f"- work {work}: " + "; ".join(parts))
    lines.append("")

    lines.append("## CPU: PRL against PyPI's PyTorch (batch 256)\n")
    lines.append("| threads | PRL (oneDNN) | PyTorch | PyTorch fused Adam | PRL / fastest | "
                 "target >= 1.5x |")
    lines.append("|---:|---:|---:|---:|---:|---|")
    cpu_files = sorted((f for f in os.listdir(out) if re.fullmatch(r"sac_cpu_\d+\.json", f)),
                       key=lambda f: int(re.findall(r"\d+", f)[0])) if os.path.isdir(out) else []
    for name in cpu_files:
        vs = load(out, name) or {}
        prl = rate(prl_case(vs.get("prl"), "onednn"))
        torch_eager = vs.get("pytorch", {}).get("wall")
        fused = vs.get("pytorch_fused_adam", {}).get("wall")
        fastest = max([r for r in (torch_eager, fused) if r], default=None)
        ratio = prl / fastest if prl and fastest else None
        lines.append(f"| {vs.get('threads', '?')} | {fmt(prl)} | {fmt(torch_eager)} | "
                     f"{fmt(fused)} | {fmt(ratio, 2)} | {verdict(ratio, TARGET_CPU_RATIO)} |")
    if not cpu_files:
        lines.append("| - | - | - | - | - | not run |")
    lines.append("")

    cluster = load(out, "summary.json")
    if cluster:
        lines.append("## The whole cluster (bench/cluster_gpu.sh)\n")
        lines.append("```\n" + json.dumps(cluster, indent=1) + "\n```\n")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the directory bench/learner_gpu.sh wrote")
    parser.add_argument("--write", help="also write the summary to this file")
    args = parser.parse_args()
    if not os.path.isdir(args.out):
        print(f"gpu_summary: {args.out} is not a directory", file=sys.stderr)
        return 2
    text = summarize(args.out)
    print(text)
    if args.write:
        with open(args.write, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
