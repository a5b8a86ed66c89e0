#!/usr/bin/env python3
"""PRL's SAC update against the same update in PyTorch and against stable-baselines3, one run.

Runs PRL's learner benchmark (bench/learner_bench.cc: prl::learner::Agent SAC updates per second
with each GEMM backend), then the same SAC update written in PyTorch (same shapes, losses and
update order: twin critics, automatic temperature, Adam, Polyak averaging), then
stable-baselines3's SAC.train(gradient_steps=N, batch_size=256) on a replay buffer pre-filled
with random HalfCheetah-shaped data. All on the CPU with the same number of torch threads
(PRL and the PyTorch reference on --device when given).
Prints updates per second (wall clock and per process CPU-second) and the PRL/PyTorch and
PRL/SB3 ratios. With --device=cuda it also measures, as the GPU peer, PyTorch's update captured
as one CUDA graph (capturable Adam, static input buffers, replayed per update), and skips SB3.

    scripts/setup.sh --venv    # stable-baselines3 (the venv sees Debian's python3-torch)
    bazel build -c opt //bench:learner_bench
    .venv/bin/python bench/learner_vs_pytorch.py --prl .bazel/bin/bench/learner_bench
    .venv/bin/python bench/learner_vs_pytorch.py --prl .bazel/bin/bench/learner_bench \
        --threads=2 --omp_wait_policy=passive
    .venv-torch/bin/python bench/learner_vs_pytorch.py --prl .bazel/bin/bench/learner_bench \
        --skip_sb3 --threads=1   # against PyPI's torch (MKL), plain and with fused Adam
    # on a GPU machine, from a CUDA build bundle (scripts/cuda_build.sh --bundle), whose run.sh
    # sets LD_LIBRARY_PATH; --prl is split like a shell command line
    python3 bench/learner_vs_pytorch.py --prl ".device-bundle/run.sh learner_bench" --device=cuda

The PyTorch reference should run on the LibTorch PRL links (Debian's 1.13 here); the script
prints both versions and warns when they differ.
"""

import argparse
import copy
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

OBS, ACT, HIDDEN = 17, 6, 256


class Rate:
    """Updates per wall-clock second and per process CPU second (all threads)."""

    def __init__(self, updates, seconds, cpu_seconds):
        self.updates, self.seconds, self.cpu_seconds = updates, seconds, cpu_seconds
        self.wall = updates / seconds
        self.cpu = updates / cpu_seconds

    def __str__(self):
        return (f"{self.wall:10.2f} updates/s {self.cpu:10.2f} updates/CPU-s  "
                f"({self.updates} updates in {self.seconds:.2f} s)")


def timed(update, warmup, seconds, min_updates):
    """Rate of `update()` after `warmup` calls."""
    for _ in range(warmup):
        update()
    n, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        update()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= min_updates:
            return Rate(n, elapsed, time.process_time() - cpu_start)


def torch_at_least(major, minor):
    return tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (major, minor)


def random_batches(count, batch, gen, device="cpu"):
    return [tuple(t.to(device) for t in (
        torch.randn(batch, OBS, generator=gen),
        torch.rand(batch, ACT, generator=gen) * 2 - 1,
        torch.randn(batch, generator=gen),
        torch.randn(batch, OBS, generator=gen),
        torch.ones(batch))) for _ in range(count)]


# ---- the PyTorch reference: PRL's SAC update, written the usual PyTorch way ----

class Actor(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(OBS, HIDDEN), nn.ReLU(),
                                   nn.Linear(HIDDEN, HIDDEN), nn.ReLU())
        self.mean = nn.Linear(HIDDEN, ACT)
        self.log_std = nn.Linear(HIDDEN, ACT)

    def sample(self, obs):
        h = self.trunk(obs)
        mean, log_std = self.mean(h), self.log_std(h).clamp(-20, 2)
        noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        # log N(u) + log |d tanh(u)/du|⁻¹, the correction computed stably
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
                    - 2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), log_prob


class QNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(OBS + ACT, HIDDEN), nn.ReLU(),
                                 nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))

    def forward(self, obs, action):
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


class Sac:
    """The networks, optimizers and batches of one PyTorch contender, and its update."""

    def __init__(self, args, adam_kwargs):
        torch.manual_seed(1)
        gen = torch.Generator().manual_seed(42)
        self.batches = random_batches(8, args.batch, gen, args.device)
        self.actor = Actor().to(args.device)
        self.q1, self.q2 = QNet().to(args.device), QNet().to(args.device)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.critic_params = list(self.q1.parameters()) + list(self.q2.parameters())
        self.target_params = (list(self.q1_target.parameters())
                              + list(self.q2_target.parameters()))
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=3e-4, **adam_kwargs)
        self.critic_opt = torch.optim.Adam(self.critic_params, lr=3e-4, **adam_kwargs)
        self.log_alpha = torch.zeros(1, requires_grad=True, device=args.device)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=3e-4, **adam_kwargs)
        self.gamma, self.tau, self.target_entropy = 0.99, 0.005, -float(ACT)

    def step(self, batch, set_to_none, foreach_polyak):
        """One update on `batch`; returns critic loss, actor loss, α, α's loss and the per-item
        TD errors as tensors. `set_to_none=False` keeps the .grad tensors (a CUDA graph needs
        them static); `foreach_polyak` averages the targets in one torch._foreach_lerp_."""
        obs, action, reward, next_obs, discount = batch
        # one policy sample on s for the temperature and actor losses (SB3's order)
        action_pi, log_prob = self.actor.sample(obs)
        alpha = self.log_alpha.exp().detach()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=set_to_none)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            next_q = torch.min(self.q1_target(next_obs, next_action),
                               self.q2_target(next_obs, next_action))
            target = reward + self.gamma * discount * (next_q - alpha * next_log_prob)
        q1_value, q2_value = self.q1(obs, action), self.q2(obs, action)
        critic_loss = 0.5 * (F.mse_loss(q1_value, target) + F.mse_loss(q2_value, target))
        self.critic_opt.zero_grad(set_to_none=set_to_none)
        critic_loss.backward()
        self.critic_opt.step()
        td_error_abs = ((q1_value - target).abs() + (q2_value - target).abs()).detach() / 2
        q_pi = torch.min(self.q1(obs, action_pi), self.q2(obs, action_pi))
        actor_loss = (alpha * log_prob - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=set_to_none)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            if foreach_polyak:
                torch._foreach_lerp_(self.target_params, self.critic_params, self.tau)
            else:
                for p, tp in zip(self.critic_params, self.target_params):
                    tp.mul_(1 - self.tau).add_(p, alpha=self.tau)
        return critic_loss.detach(), actor_loss.detach(), alpha, alpha_loss.detach(), td_error_abs


def pytorch_sac_rate(args, adam="default"):
    """`adam`: "default" (torch.optim.Adam as constructed by most code) or "fused" (its fused
    kernel, on the CPU since torch 2.4) with the Polyak update as one torch._foreach call."""
    sac = Sac(args, {"fused": True} if adam == "fused" else {})
    step = [0]

    def update():
        batch = sac.batches[step[0] % len(sac.batches)]
        step[0] += 1
        critic_loss, actor_loss, alpha, alpha_loss, td_error_abs = sac.step(
            batch, set_to_none=True, foreach_polyak=adam == "fused")
        # the statistics PRL's Update returns
        return (critic_loss.item(), actor_loss.item(), alpha.item(), alpha_loss.item(),
                td_error_abs.tolist())

    return timed(update, args.warmup, args.seconds, args.min_updates)


def pytorch_sac_graph_rate(args):
    """The update of pytorch_sac_rate(adam="fused") captured whole as one CUDA graph, the way the
    PyTorch docs capture a whole network: capturable Adam (fused since torch 2.4, else foreach),
    static input buffers each batch is copied into, then one replay per update. CUDA only.
    Returns the Rate and the Adam implementation used."""
    assert args.device.startswith("cuda"), "CUDA graphs need a CUDA device"
    # capture needs capturable=True: the step counts stay on the device and no step() syncs
    kind = "fused" if torch_at_least(2, 4) else "foreach"
    sac = Sac(args, {"capturable": True, kind: True})
    # the graph reads its inputs from fixed addresses, so batches are copied into these
    static = tuple(t.clone() for t in sac.batches[0])

    def step():
        # zero_grad(set_to_none=False): the graph must find the same .grad tensors each replay
        critic_loss, actor_loss, alpha, alpha_loss, td_error_abs = sac.step(
            static, set_to_none=False, foreach_polyak=True)
        # the statistics PRL's Update returns, in one tensor for one device-to-host copy
        return torch.cat([critic_loss.reshape(1), actor_loss.reshape(1), alpha.reshape(1),
                          alpha_loss.reshape(1), td_error_abs])

    # warm-up on a side stream (the docs' recipe): creates the grads and the optimizer state, and
    # keeps the lazy initialisations out of the capture
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()
    index = [0]

    def update():
        for buffer, value in zip(static, sac.batches[index[0] % len(sac.batches)]):
            buffer.copy_(value)
        index[0] += 1
        graph.replay()
        # one transfer, which also waits for the replay, as PRL's Update syncs once
        out = static_out.tolist()
        return out[0], out[1], out[2], out[3], out[4:]

    return timed(update, args.warmup, args.seconds, args.min_updates), kind


# ---- stable-baselines3 ----

def sb3_sac_rate(args):
    import gymnasium as gym
    import numpy as np
    import stable_baselines3
    from stable_baselines3 import SAC
    from stable_baselines3.common.logger import configure

    class CheetahShaped(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32)

        def reset(self, *, seed=None, options=None):
            return np.zeros(OBS, np.float32), {}

        def step(self, action):
            return np.zeros(OBS, np.float32), 0.0, False, False, {}

    size = 100_000
    model = SAC("MlpPolicy", CheetahShaped(), buffer_size=size, batch_size=args.batch,
                learning_starts=0, device="cpu", seed=1,
                policy_kwargs={"net_arch": [HIDDEN, HIDDEN]})
    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    buf = model.replay_buffer
    buf.observations[:] = rng.standard_normal(buf.observations.shape, np.float32)
    buf.next_observations[:] = rng.standard_normal(buf.next_observations.shape, np.float32)
    buf.actions[:] = rng.uniform(-1, 1, buf.actions.shape).astype(np.float32)
    buf.rewards[:] = rng.standard_normal(buf.rewards.shape, np.float32)
    buf.dones[:] = 0
    buf.full, buf.pos = True, 0
    torch.set_num_threads(args.threads)  # SB3 sets threads only in learn()
    # warm-up, which also sizes the timed call: one train(gradient_steps=N) of about `seconds`
    start = time.perf_counter()
    model.train(gradient_steps=max(args.warmup, 1), batch_size=args.batch)
    per_update = (time.perf_counter() - start) / max(args.warmup, 1)
    n = max(args.min_updates, math.ceil(args.seconds / per_update))
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train(gradient_steps=n, batch_size=args.batch)
    rate = Rate(n, time.perf_counter() - start, time.process_time() - cpu_start)
    return rate, stable_baselines3.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prl", required=True,
                        help="path of the learner_bench binary, or a command line that runs it "
                        "(split like a shell's, e.g. \".device-bundle/run.sh learner_bench\")")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch intra-op threads for every contender (default: all cores)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per case")
    parser.add_argument("--min_updates", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip_sb3", action="store_true")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda[:N], for PRL and the PyTorch reference alike")
    parser.add_argument("--omp_wait_policy", choices=["active", "passive"],
                        help="run every contender with this OMP_WAIT_POLICY (the script re-executes "
                        "itself so that this process's OpenMP reads it too); PASSIVE keeps idle "
                        "OpenMP threads from spinning, which matters when the cores are shared")
    parser.add_argument("--tf32", action="store_true",
                        help="on a GPU: float32 products on TF32 tensor cores for every contender "
                        "(PRL's --tf32, PyTorch's torch.backends.cuda.matmul.allow_tf32)")
    parser.add_argument("--json", help="also write the results as JSON to this file")
    args = parser.parse_args()
    if args.omp_wait_policy and os.environ.get("OMP_WAIT_POLICY") != args.omp_wait_policy.upper():
        env = dict(os.environ, OMP_WAIT_POLICY=args.omp_wait_policy.upper())
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    cuda = args.device.startswith("cuda")
    if cuda and not args.skip_sb3:
        print("note: skipping stable-baselines3, which runs on the CPU here", file=sys.stderr)
        args.skip_sb3 = True

    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(shlex.split(args.prl) + [
            f"--device={args.device}", f"--threads={args.threads}", f"--batch={args.batch}",
            f"--seconds={args.seconds}", f"--min_updates={args.min_updates}",
            f"--warmup={args.warmup}", f"--json={out.name}"] + (["--tf32"] if args.tf32 else []),
            check=True)
        prl = json.load(open(out.name))
    prl_rate = {c["gemm"]: (c["updates_per_second"], c["updates_per_cpu_second"])
                for c in prl["cases"]}

    torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    print(f"PyTorch {torch.__version__} ({os.path.dirname(torch.__file__)}), "
          f"{torch.get_num_threads()} threads; PRL linked LibTorch {prl['libtorch']}; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    if not torch.__version__.startswith(prl["libtorch"].rsplit(".", 1)[0]):
        print("note: the PyTorch reference is not the LibTorch version PRL links (as intended "
              "when the reference is PyPI's build)", file=sys.stderr)
    results = {"threads": args.threads, "batch": args.batch, "tf32": args.tf32, "prl": prl,
               "pytorch_version": torch.__version__,
               "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}
    pytorch = pytorch_sac_rate(args)
    results["pytorch"] = vars(pytorch)
    print(f"  PyTorch reference      {pytorch}")
    fused = None
    if torch_at_least(2, 4):
        fused = pytorch_sac_rate(args, adam="fused")
        results["pytorch_fused_adam"] = vars(fused)
        print(f"  PyTorch, fused Adam    {fused}")
    graph = None
    if cuda:
        graph, graph_adam = pytorch_sac_graph_rate(args)
        results["pytorch_cuda_graph"] = dict(vars(graph), adam=graph_adam)
        print(f"  PyTorch, CUDA graph    {graph}  ({graph_adam} capturable Adam)")
    sb3 = None
    if not args.skip_sb3:
        sb3, version = sb3_sac_rate(args)
        results["sb3"], results["sb3_version"] = vars(sb3), version
        print(f"  stable-baselines3 {version}  {sb3}")

    print(f"\nSAC updates/s (per CPU-second in brackets), batch {args.batch}, obs {OBS}, "
          f"act {ACT}, hidden [{HIDDEN}, {HIDDEN}], {args.threads} threads:")
    for gemm, (wall, cpu) in prl_rate.items():
        line = (f"  PRL (gemm {gemm:6s}) {wall:8.2f} [{cpu:8.2f}]   PRL/PyTorch "
                f"{wall / pytorch.wall:6.2f} [{cpu / pytorch.cpu:6.2f}]")
        if fused:
            line += f"   PRL/fused {wall / fused.wall:6.2f} [{cpu / fused.cpu:6.2f}]"
        if graph:
            line += f"   PRL/graph {wall / graph.wall:6.2f} [{cpu / graph.cpu:6.2f}]"
        if sb3:
            line += f"   PRL/SB3 {wall / sb3.wall:6.2f} [{cpu / sb3.cpu:6.2f}]"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
