#!/usr/bin/env python3
"""PRL replay against DeepMind Reverb on the same workloads, in one run.

Runs PRL's replay benchmark (bench/replay_bench.cc: in-process table vs prl_replay over gRPC),
then the same workloads against Reverb, a Reverb server in its own process, on two paths each:

- the per-step Python path most code writes: writer processes with Reverb's TrajectoryWriter
  (append and create_item per step, flushed every batch) and a sampler calling Client.sample
  (batches of 256, items yielded one at a time);
- Reverb's fast paths: its StructuredWriter (the item pattern is given once, and each append
  makes the item in C++; flushed every batch) and its tf.data TrajectoryDataset (samples
  streamed in C++, batched by tf.data with prefetch, as Acme feeds its learners).

Prints PRL/Reverb ratios against each path.

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


def write_structured(address, workload, batch, seconds, ready, go, counts):
    """Reverb's fast write path: a StructuredWriter whose config makes one item per step."""
    quiet_tensorflow()
    import reverb
    from reverb import structured_writer as sw

    client = reverb.Client(address)
    step = step_for(workload)
    pattern = sw.pattern_from_transform(
        {k: None for k in step}, lambda ref: {k: ref[k][-1:] for k in step}
    )
    writer = client.structured_writer([sw.create_config(pattern, table=workload)])
    ready.put(1)
    go.wait()
    n = 0
    deadline = time.time() + seconds
    while time.time() < deadline:
        for _ in range(batch):
            writer.append(step)
        writer.flush()
        n += batch
    counts.put(n)


def sample_summary(latencies, batch, elapsed):
    """Items/s and the p50/p99 batch latency (ms) of one sampler's timed loop."""
    latencies = sorted(latencies)
    return {
        "items_per_second": len(latencies) * batch / elapsed,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
    }


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
    results.put(sample_summary(latencies, batch, time.time() - start))


def sample_dataset(address, workload, batch, seconds, results):
    """Reverb's fast sample path: a tf.data TrajectoryDataset, batched, with prefetch."""
    quiet_tensorflow()
    import reverb
    import tensorflow as tf

    columns = WORKLOADS[workload]["columns"]
    dataset = reverb.TrajectoryDataset(
        server_address=address,
        table=workload,
        dtypes={k: tf.as_dtype(dtype) for k, (_, dtype) in columns.items()},
        # items written as history[k][-1:]: one step with a leading length-1 axis
        shapes={k: tf.TensorShape((1,) + shape) for k, (shape, _) in columns.items()},
        max_in_flight_samples_per_worker=2 * batch,
    )
    it = iter(dataset.batch(batch, drop_remainder=True).prefetch(2))
    for _ in range(5):  # the pipeline's start-up is not what is measured
        next(it)
    latencies = []
    start = time.time()
    while time.time() - start < seconds:
        t0 = time.time()
        sample = next(it)
        arrays = {k: v.numpy() for k, v in sample.data.items()}  # what a learner would feed
        latencies.append((time.time() - t0) * 1000)
        assert arrays["obs"].shape[0] == batch
    results.put(sample_summary(latencies, batch, time.time() - start))


def run_reverb(seconds, writer_counts, insert_batch, sample_batch, fast):
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
                        target=write_structured if fast else write,
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
            sampler = ctx.Process(
                target=sample_dataset if fast else sample,
                args=(address, workload, sample_batch, seconds, out),
            )
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
    parser.add_argument(
        "--paths",
        choices=("both", "per_step", "fast"),
        default="both",
        help="Reverb's per-step Python path, its fast paths, or both",
    )
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
    paths = {}
    if args.paths in ("both", "per_step"):
        print("-- per-step Python path: TrajectoryWriter, Client.sample", flush=True)
        paths["per-step"] = run_reverb(
            args.seconds, writer_counts, args.insert_batch, args.sample_batch, fast=False
        )
    if args.paths in ("both", "fast"):
        print("-- fast paths: StructuredWriter, tf.data TrajectoryDataset", flush=True)
        paths["fast"] = run_reverb(
            args.seconds, writer_counts, args.insert_batch, args.sample_batch, fast=True
        )

    header = f"{'case':<34} {'PRL gRPC/s':>12}"
    for name in paths:
        header += f" {'Reverb ' + name + '/s':>18} {'PRL/' + name:>13}"
    print("\n" + header + "  target >= 1.0")
    worst = {name: float("inf") for name in paths}
    cases = [c for c in next(iter(paths.values())) if not c.endswith("_ms")]
    for case in cases:
        prl_rate = prl[f"{case}/grpc"]
        line = f"{case:<34} {prl_rate:>12.0f}"
        for name, rates in paths.items():
            ratio = prl_rate / rates[case] if rates[case] > 0 else float("inf")
            worst[name] = min(worst[name], ratio)
            line += f" {rates[case]:>18.0f} {ratio:>13.2f}"
        print(line)
    for workload in WORKLOADS:
        key = f"{workload}/sample/batch={args.sample_batch}"
        line = (f"{key + ' p50/p99 ms':<34} PRL {prl[key + '/grpc_p50_ms']:.3f}/"
                f"{prl[key + '/grpc_p99_ms']:.3f}")
        for name, rates in paths.items():
            line += f"  Reverb {name} {rates[key + '/p50_ms']:.3f}/{rates[key + '/p99_ms']:.3f}"
        print(line)
    for name in paths:
        print(f"lowest PRL/Reverb ratio, {name} path: {worst[name]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
