#!/usr/bin/env python3
"""PRL replay against DeepMind Reverb on the same workloads, in one run.

Runs PRL's replay benchmark (bench/replay_bench.cc: in-process table vs prl_replay over gRPC),
then the same workloads against Reverb: a Reverb server in its own process, writer processes
using Reverb's own client library (TrajectoryWriter, one item per step, flushed every batch),
and a sampler process (Client.sample, batches of 256). Prints PRL/Reverb ratios.

    scripts/setup.sh --venv                      # Reverb (dm-reverb) and TensorFlow live here
    bazel build -c opt //bench:replay_bench
    .venv/bin/python bench/replay_vs_reverb.py --prl .bazel/bin/bench/replay_bench
"""

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

WORKLOADS = {
    "cheetah": {
        "columns": {
            "obs": ((17,), np.float32),
            "action": ((6,), np.float32),
            "reward": ((), np.float32),
            "next_obs": ((17,), np.float32),
            "discount": ((), np.float32),
        },
        "capacity": 1_000_000,
    },
    "image64": {
        "columns": {
            "obs": ((64, 64, 3), np.uint8),
            "action": ((6,), np.float32),
            "reward": ((), np.float32),
        },
        "capacity": 20_000,
    },
}


def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def serve(port_queue, stop_event):
    quiet_tensorflow()
    import reverb

    tables = [
        reverb.Table(
            name=name,
            sampler=reverb.selectors.Uniform(),
            remover=reverb.selectors.Fifo(),
            max_size=spec["capacity"],
            rate_limiter=reverb.rate_limiters.MinSize(1),
        )
        for name, spec in WORKLOADS.items()
    ]
    server = reverb.Server(tables=tables)
    port_queue.put(server.port)
    stop_event.wait()
    server.stop()


def step_for(workload):
    rng = np.random.default_rng(0)
    step = {}
    for name, (shape, dtype) in WORKLOADS[workload]["columns"].items():
        if dtype == np.uint8:
            step[name] = rng.integers(0, 255, size=shape, dtype=np.uint8)
        else:
            step[name] = rng.standard_normal(size=shape).astype(dtype)
    return step


def write(address, workload, batch, seconds, ready, go, counts):
    quiet_tensorflow()
    import reverb

    client = reverb.Client(address)
    step = step_for(workload)
    n = 0
    with client.trajectory_writer(num_keep_alive_refs=1) as writer:
        # every writer imports and connects before the clock starts.
        ready.put(1)
        go.wait()
        deadline = time.time() + seconds
        while time.time() < deadline:
            for _ in range(batch):
                writer.append(step)
                writer.create_item(
                    workload,
                    priority=1.0,
                    trajectory={k: writer.history[k][-1:] for k in step},
                )
            writer.flush()
            n += batch
    counts.put(n)


def fill(address, workload, items):
    quiet_tensorflow()
    import reverb

    client = reverb.Client(address)
    step = step_for(workload)
    with client.trajectory_writer(num_keep_alive_refs=1) as writer:
        for i in range(items):
            writer.append(step)
            writer.create_item(
                workload, priority=1.0, trajectory={k: writer.history[k][-1:] for k in step}
            )
            if i % 256 == 255:
                writer.flush()
        writer.flush()


def sample(address, workload, batch, seconds, results):
    quiet_tensorflow()
    import reverb

    client = reverb.Client(address)
    latencies = []
    start = time.time()
    while time.time() - start < seconds:
        t0 = time.time()
        got = 0
        for _ in client.sample(workload, num_samples=batch):
            got += 1
        latencies.append((time.time() - t0) * 1000)
        assert got == batch
    elapsed = time.time() - start
    latencies.sort()
    results.put(
        {
            "items_per_second": len(latencies) * batch / elapsed,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
        }
    )


def run_reverb(seconds, writer_counts, insert_batch, sample_batch):
    ctx = mp.get_context("spawn")
    port_queue, stop_event = ctx.Queue(), ctx.Event()
    server = ctx.Process(target=serve, args=(port_queue, stop_event))
    server.start()
    address = f"localhost:{port_queue.get(timeout=120)}"
    results = {}
    try:
        for workload in WORKLOADS:
            for writers in writer_counts:
                counts, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
                procs = [
                    ctx.Process(
                        target=write,
                        args=(address, workload, insert_batch, seconds, ready, go, counts),
                    )
                    for _ in range(writers)
                ]
                for p in procs:
                    p.start()
                for _ in procs:
                    ready.get(timeout=300)
                go.set()
                total = sum(counts.get(timeout=seconds + 120) for _ in procs)
                for p in procs:
                    p.join()
                results[f"{workload}/insert/writers={writers}"] = total / seconds
            filler = ctx.Process(
                target=fill, args=(address, workload, min(WORKLOADS[workload]["capacity"], 20000))
            )
            filler.start()
            filler.join()
            out = ctx.Queue()
            sampler = ctx.Process(target=sample, args=(address, workload, sample_batch, seconds, out))
            sampler.start()
            r = out.get(timeout=seconds + 120)
            sampler.join()
            results[f"{workload}/sample/batch={sample_batch}"] = r["items_per_second"]
            results[f"{workload}/sample/batch={sample_batch}/p50_ms"] = r["p50_ms"]
            results[f"{workload}/sample/batch={sample_batch}/p99_ms"] = r["p99_ms"]
    finally:
        stop_event.set()
        server.join(timeout=30)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prl", required=True, help="path to the built replay_bench binary")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--insert_batch", type=int, default=64)
    parser.add_argument("--sample_batch", type=int, default=256)
    args = parser.parse_args()
    writer_counts = [int(w) for w in args.writers.split(",")]

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        print("== PRL: in-process table vs prl_replay over gRPC ==", flush=True)
        subprocess.run(
            [
                args.prl,
                f"--seconds={args.seconds}",
                f"--writers={args.writers}",
                f"--insert_batch={args.insert_batch}",
                f"--sample_batch={args.sample_batch}",
                f"--json={out.name}",
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        prl = json.load(open(out.name))

    print("\n== Reverb: its server and its client library, same workloads ==", flush=True)
    reverb = run_reverb(args.seconds, writer_counts, args.insert_batch, args.sample_batch)

    print(f"\n{'case':<34} {'PRL gRPC/s':>12} {'Reverb/s':>12} {'PRL/Reverb':>10}  target >= 1.0")
    worst = float("inf")
    for case, reverb_rate in reverb.items():
        if case.endswith("_ms"):
            continue
        prl_rate = prl[f"{case}/grpc"]
        ratio = prl_rate / reverb_rate if reverb_rate > 0 else float("inf")
        worst = min(worst, ratio)
        print(f"{case:<34} {prl_rate:>12.0f} {reverb_rate:>12.0f} {ratio:>10.2f}  "
              f"{'ok' if ratio >= 1.0 else 'MISSED'}")
    for workload in WORKLOADS:
        key = f"{workload}/sample/batch={args.sample_batch}"
        print(f"{key + ' p50/p99 ms':<34} PRL {prl[key + '/grpc_p50_ms']:.3f}/"
              f"{prl[key + '/grpc_p99_ms']:.3f}  Reverb {reverb[key + '/p50_ms']:.3f}/"
              f"{reverb[key + '/p99_ms']:.3f}")
    print(f"\nlowest PRL/Reverb ratio: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
