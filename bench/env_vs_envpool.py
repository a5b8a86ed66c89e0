#!/usr/bin/env python3
"""PRL env stepping against EnvPool on the same machine, in one run.

Runs PRL's env benchmark (bench/env_bench.cc: Env::Step vs raw mj_step, batched 1 vs 2
workers), then EnvPool (PyPI `envpool`) stepping its HalfCheetah-v4 and Ant-v4 with the same
number of envs and threads, random actions, synchronous batches. Prints PRL/EnvPool per-thread
throughput for the comparable domains (cheetah ~ HalfCheetah, ant ~ Ant).

    scripts/setup.sh --venv
    bazel build -c opt //bench:env_bench
    .venv/bin/python bench/env_vs_envpool.py --prl .bazel/bin/bench/env_bench
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np

PEERS = {"cheetah": "HalfCheetah-v4", "ant": "Ant-v4"}


def envpool_rate(task_id, num_envs, threads, seconds):
    """Env steps per second of EnvPool's synchronous batched stepping."""
    import envpool

    env = envpool.make(task_id, env_type="gymnasium", num_envs=num_envs,
                       batch_size=num_envs, num_threads=threads, seed=1)
    env.reset()
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(0)
    shape = (num_envs,) + env.action_space.shape

    def step():
        env.step(rng.uniform(low, high, size=shape).astype(np.float32))

    for _ in range(50):
        step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            step()
        steps += 10 * num_envs
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prl", required=True, help="path of the env_bench binary")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--num_envs", type=int, default=8)
    args = parser.parse_args()

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([args.prl, f"--seconds={args.seconds}", f"--num_envs={args.num_envs}",
                        f"--json={out.name}"], check=True)
        prl = json.load(open(out.name))

    print(f"\nPRL vs EnvPool: {args.num_envs} envs, synchronous batches, random actions")
    print(f"{'domain':<9} {'peer':<15} {'threads':>7} {'PRL steps/s':>12} "
          f"{'EnvPool':>10} {'PRL/EnvPool':>12}")
    ok = True
    for domain, peer in PEERS.items():
        if domain not in prl["domains"]:
            continue
        for threads, key in ((1, "batch1"), (2, "batch2")):
            ours = prl["domains"][domain][key]
            theirs = envpool_rate(peer, args.num_envs, threads, args.seconds)
            ratio = ours / theirs
            if threads == 1:
                ok = ok and ratio >= 1.0
            print(f"{domain:<9} {peer:<15} {threads:>7} {ours:>12.0f} {theirs:>10.0f} "
                  f"{ratio:>11.2f}{'' if ratio >= 1.0 or threads > 1 else '!'}")
    print("target: per-thread (1 thread) PRL/EnvPool >= 1.0: " + ("met" if ok else "MISSED"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
