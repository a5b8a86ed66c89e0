#!/usr/bin/env python3
"""SPiRL's skill model trained in PyTorch: the peer of bench/prior_training_bench.cc.

The same model and loss as models/skill_model.h, written the usual PyTorch way:

    encoder  q(z | a_{1:H})  MLP over the flattened window [B, H*A] -> mean, log_std (Gaussian)
    decoder  p(a_t | s_t, z) MLP over [s_t, z] -> the action (closed loop, same z for H steps)
    prior    p(z | s_1)      MLP over the window's first state -> mean, log_std
    loss = MSE(decoded, a) + beta * KL(q || N(0, I)) + KL(stop_grad(q) || p)

with element means, log_std clamped to [-10, 2], 5 x 128 ReLU trunks, Adam at lr 1e-3, H = 10,
latent 10, batch 128. Windows are every H consecutive steps inside one episode of a D4RL-layout
HDF5 file (read with h5py), 10% of the episodes held out, as learner/window_dataset.h cuts them.
Two ways to feed it (--loader):

    dataloader  a torch Dataset of windows and a DataLoader (batch 128, shuffle, num_workers=0:
                batches are collated in the training process, as PRL draws them), with
                torch.optim.Adam's defaults: the usual way to write it;
    tensor      the fast path: the whole file as tensors, each batch one random-index gather,
                and Adam's fused CPU kernel (fused=True; foreach=True where this torch has no
                fused CPU Adam).

Modes:

    # one measurement, appended to a JSON-lines file (bench/prior_training.sh runs them all)
    python3 bench/prior_training_vs_pytorch.py --dataset maze.hdf5 --loader tensor \
        --threads 1 --seconds 20 --json results.jsonl --label debian
    # the table: medians over rounds and PRL's ratio to each PyTorch row
    python3 bench/prior_training_vs_pytorch.py --summarize results.jsonl
    # equivalence: load the weights and batch prior_training_bench --check_dir wrote, and
    # compare this model's losses with PRL's
    python3 bench/prior_training_vs_pytorch.py --check DIR
"""

import argparse
import json
import os
import statistics
import sys
import time

# PRL's SkillModel::Evaluate draws its noise from a CPU generator seeded with seed + this.
EVALUATE_SEED_OFFSET = 0x9E3779B97F4A7C15
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


def build_model(obs_dim, act_dim, horizon, latent, hidden, layers, beta):
    import torch
    from torch import nn

    def trunk(inp):
        mods, d = [], inp
        for _ in range(layers):
            mods += [nn.Linear(d, hidden), nn.ReLU()]
            d = hidden
        return nn.Sequential(*mods)

    class GaussianNet(nn.Module):
        def __init__(self, inp, out):
            super().__init__()
            self.trunk = trunk(inp)
            self.mean = nn.Linear(hidden, out)
            self.log_std = nn.Linear(hidden, out)

        def forward(self, x):
            h = self.trunk(x)
            return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    class MeanNet(nn.Module):
        def __init__(self, inp, out):
            super().__init__()
            self.trunk = trunk(inp)
            self.mean = nn.Linear(hidden, out)

        def forward(self, x):
            return self.mean(self.trunk(x))

    def kl(mq, lq, mp, lp):
        # KL(q || p) per dimension of diagonal Gaussians
        return lp - lq + (torch.exp(2 * lq) + (mq - mp).square()) / (2 * torch.exp(2 * lp)) - 0.5

    class SkillModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = GaussianNet(horizon * act_dim, latent)
            self.decoder = MeanNet(obs_dim + latent, act_dim)
            self.prior = GaussianNet(obs_dim, latent)

        def losses(self, obs, actions, noise):
            b, h = obs.shape[0], obs.shape[1]
            mq, lq = self.encoder(actions.reshape(b, -1))
            z = mq + lq.exp() * noise
            z_steps = z.unsqueeze(1).expand(b, h, latent).reshape(b * h, latent)
            rec = self.decoder(torch.cat([obs.reshape(b * h, obs_dim), z_steps], -1))
            rec = rec.view(b, h, act_dim)
            mp, lp = self.prior(obs[:, 0])
            zeros = torch.zeros_like(mq)
            t = {"reconstruction_loss": (rec - actions).square().mean(),
                 "kl_loss": kl(mq, lq, zeros, zeros).mean(),
                 "prior_loss": kl(mq.detach(), lq.detach(), mp, lp).mean()}
            t["elbo_loss"] = t["reconstruction_loss"] + beta * t["kl_loss"]
            t["loss"] = t["elbo_loss"] + t["prior_loss"]
            return t

    return SkillModel()


def read_windows(path, horizon, validation_fraction, seed):
    """Observations and actions (float32 numpy) and the training windows' first rows."""
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        obs = np.asarray(f["observations"], dtype=np.float32)
        act = np.asarray(f["actions"], dtype=np.float32)
        done = np.asarray(f["terminals"], dtype=bool) | np.asarray(f["timeouts"], dtype=bool)
    ends = list(np.flatnonzero(done) + 1)
    if not ends or ends[-1] != len(obs):
        ends.append(len(obs))
    episodes, begin = [], 0
    for end in ends:
        if end - begin >= horizon:
            episodes.append((begin, end))
        begin = end
    order = np.random.default_rng(seed).permutation(len(episodes))
    held_out = max(1, int(validation_fraction * len(episodes)))
    starts = [s for k in order[held_out:] for s in range(episodes[k][0],
                                                         episodes[k][1] - horizon + 1)]
    return obs, act, np.array(sorted(starts), dtype=np.int64)


def batches_dataloader(obs, act, starts, horizon, batch):
    """The usual way: a Dataset of windows, a shuffling DataLoader, collated in-process."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Windows(Dataset):
        def __init__(self):
            self.obs, self.act = torch.from_numpy(obs), torch.from_numpy(act)

        def __len__(self):
            return len(starts)

        def __getitem__(self, i):
            s = int(starts[i])
            return self.obs[s:s + horizon], self.act[s:s + horizon]

    loader = DataLoader(Windows(), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=0)
    while True:
        yield from loader


def batches_tensor(obs, act, starts, horizon, batch):
    """The fast path: preloaded tensors, one random-index gather per batch."""
    import torch
    obs_t, act_t = torch.from_numpy(obs), torch.from_numpy(act)
    starts_t = torch.from_numpy(starts)
    offsets = torch.arange(horizon)
    while True:
        rows = starts_t[torch.randint(len(starts_t), (batch,))].unsqueeze(1) + offsets
        yield obs_t[rows], act_t[rows]


def make_adam(params, lr, fast):
    import torch
    if fast:
        for kw in ({"fused": True}, {"foreach": True}):
            try:
                opt = torch.optim.Adam(params, lr=lr, **kw)
                # fused CPU Adam exists from torch 2.4; older versions refuse it at the first step
                return opt, next(iter(kw))
            except (RuntimeError, TypeError, ValueError):
                continue
    return torch.optim.Adam(params, lr=lr), "default"


def measure(args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    obs, act, starts = read_windows(args.dataset, args.horizon, 0.1, args.seed)
    model = build_model(obs.shape[1], act.shape[1], args.horizon, args.latent, args.hidden,
                        args.layers, args.beta)
    fast = args.loader == "tensor"
    params = list(model.parameters())
    opt, adam = make_adam(params, args.lr, fast)
    source = (batches_tensor if fast else batches_dataloader)(obs, act, starts, args.horizon,
                                                               args.batch)
    noise_shape = (args.batch, args.latent)

    def train_step(o, a):
        opt.zero_grad(set_to_none=True)
        terms = model.losses(o, a, torch.randn(noise_shape))
        terms["loss"].backward()
        opt.step()
        return terms["loss"].item()

    try:
        for _ in range(args.warmup):
            train_step(*next(source))
    except RuntimeError as e:
        if adam != "fused":
            raise
        print(f"fused Adam refused ({e}); using foreach", file=sys.stderr)
        opt, adam = torch.optim.Adam(params, lr=args.lr, foreach=True), "foreach"
        for _ in range(args.warmup):
            train_step(*next(source))

    wait = compute = 0.0
    steps, loss = 0, float("nan")
    cpu0 = time.process_time()
    start = now = time.perf_counter()
    while now - start < args.seconds or steps < 10:
        t0 = now
        o, a = next(source)
        t1 = time.perf_counter()
        loss = train_step(o, a)
        now = time.perf_counter()
        wait += t1 - t0
        compute += now - t1
        steps += 1
    wall = now - start
    cpu = time.process_time() - cpu0
    result = {
        "contender": args.label, "model": "skill", "loader": args.loader, "adam": adam,
        "threads": args.threads, "torch": torch.__version__, "batch": args.batch,
        "steps": steps, "seconds": wall, "cpu_seconds": cpu,
        "samples_per_second": steps * args.batch / wall, "data_wait_fraction": wait / wall,
        "data_ms_per_step": 1e3 * wait / steps, "step_ms_per_step": 1e3 * compute / steps,
        "loss": loss,
    }
    print(f"{args.label} torch {torch.__version__} {args.loader} (Adam {adam}), "
          f"{args.threads} thread(s): {steps} steps in {wall:.2f} s: "
          f"{result['samples_per_second']:.0f} samples/s "
          f"({steps * args.batch / cpu:.0f} per CPU-second), {1e3 * wall / steps:.2f} ms per "
          f"step: data {result['data_ms_per_step']:.3f} ms "
          f"({100 * result['data_wait_fraction']:.2f}% of the time), train step "
          f"{result['step_ms_per_step']:.3f} ms; last loss {loss:.4f}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


def check(directory):
    """Loads prior_training_bench --check_dir's weights and batch; compares the losses."""
    import numpy as np
    import torch
    meta, prl = {}, {}
    with open(os.path.join(directory, "check.txt")) as f:
        for line in f:
            key, value = line.split()
            if key.endswith("_loss") or key == "loss":
                prl[key] = float(value)
            else:
                meta[key] = int(value)
    b, h, o, a, latent = (meta[k] for k in ("batch", "horizon", "obs_dim", "act_dim", "latent"))
    names, shapes = [], []
    with open(os.path.join(directory, "params.txt")) as f:
        for line in f:
            name, *dims = line.split()
            names.append(name)
            shapes.append(tuple(int(d) for d in dims))
    flat = np.fromfile(os.path.join(directory, "params.bin"), dtype=np.float32)
    layers = sum(1 for n in names if n.startswith("encoder.trunk.") and n.endswith(".weight"))
    hidden = shapes[names.index("encoder.mean.weight")][1]
    model = build_model(o, a, h, latent, hidden, layers, beta=1e-2)
    state = model.state_dict()
    if sorted(state) != sorted(names):
        sys.exit(f"parameter names differ:\n  PRL {sorted(names)}\n  PyTorch {sorted(state)}")
    offset = 0
    for name, shape in zip(names, shapes):
        if tuple(state[name].shape) != shape:
            sys.exit(f"{name}: PRL shape {shape}, PyTorch {tuple(state[name].shape)}")
        n = int(np.prod(shape))
        state[name] = torch.from_numpy(flat[offset:offset + n].reshape(shape).copy())
        offset += n
    model.load_state_dict(state)
    obs = torch.from_numpy(np.fromfile(os.path.join(directory, "obs.bin"), np.float32))
    act = torch.from_numpy(np.fromfile(os.path.join(directory, "actions.bin"), np.float32))
    gen = torch.Generator().manual_seed((meta["seed"] + EVALUATE_SEED_OFFSET) % 2**64)
    noise = torch.randn(b, latent, generator=gen)
    with torch.no_grad():
        terms = model.losses(obs.view(b, h, o), act.view(b, h, a), noise)
    print(f"torch {torch.__version__}: {len(names)} parameters "
          f"({sum(p.numel() for p in model.parameters())} values) load with PRL's names and "
          f"shapes")
    worst = 0.0
    for key in ("reconstruction_loss", "kl_loss", "prior_loss", "elbo_loss", "loss"):
        ours = terms[key].item()
        rel = abs(ours - prl[key]) / max(abs(prl[key]), 1e-12)
        worst = max(worst, rel)
        print(f"  {key:20s} PRL {prl[key]:.7g}  PyTorch {ours:.7g}  relative difference {rel:.1e}")
    # kl_loss and prior_loss do not depend on the noise; the reconstruction matches when this
    # torch's CPU generator draws the same normals as PRL's LibTorch
    print("same losses" if worst < 1e-4 else "LOSSES DIFFER (beyond float32 rounding)")
    return 0 if worst < 1e-4 else 1


def summarize(path, wait_target, speed_target):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    groups = {}
    for r in rows:
        key = (r["threads"], r["contender"] != "prl", r["model"], r["contender"], r["loader"])
        groups.setdefault(key, []).append(r)
    prl = {k[0]: g for k, g in groups.items() if k[3] == "prl" and k[2] == "skill"}
    print(f"{'contender':52s} {'threads':>7s} {'samples/s: median (range)':>26s} "
          f"{'per CPU-s':>9s} {'data wait':>9s} {'PRL / this: wall (range)':>28s} "
          f"{'per CPU-s':>9s}")
    def per_cpu(g):
        return statistics.median(r["steps"] * r["batch"] / r["cpu_seconds"] for r in g)

    for key, g in sorted(groups.items()):
        threads, _, model, contender, loader = key
        sps = [r["samples_per_second"] for r in g]
        wait = statistics.median(r["data_wait_fraction"] for r in g)
        name = f"PRL {model} (WindowDataset)"
        if contender != "prl":
            name = f"PyTorch {g[0]['torch']} ({contender}) {loader}, Adam {g[0]['adam']}"
        ratio = cpu_ratio = ""
        if contender != "prl" and threads in prl:
            # rounds pair the contenders: PRL's run i against this one's run i
            pairs = [p["samples_per_second"] / r["samples_per_second"]
                     for p, r in zip(prl[threads], g)]
            med = statistics.median(pairs)
            ratio = f"{med:.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
            ratio += " met" if med >= speed_target else " MISSED"
            cpu_ratio = f"{per_cpu(prl[threads]) / per_cpu(g):.2f}"
        print(f"{name:52s} {threads:7d} {statistics.median(sps):7,.0f} "
              f"({min(sps):,.0f}-{max(sps):,.0f}) {per_cpu(g):9,.0f} {100 * wait:8.2f}% "
              f"{ratio:>28s} {cpu_ratio:>9s}")
    for key, g in sorted(groups.items()):
        threads, _, model, contender, _ = key
        if contender != "prl":
            continue
        wait = statistics.median(r["data_wait_fraction"] for r in g)
        verdict = "met" if wait <= wait_target else "MISSED"
        print(f"PRL {model} data wait at {threads} thread(s): {100 * wait:.2f}% of training time "
              f"(target <= {100 * wait_target:.0f}%: {verdict})")
    print(f"{len(rows)} runs; targets: PRL >= {speed_target}x each PyTorch row at the same "
          f"threads (median of the per-round ratios); data wait <= {100 * wait_target:.0f}%")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset")
    p.add_argument("--loader", choices=["dataloader", "tensor"], default="tensor")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--latent", type=int, default=10)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--beta", type=float, default=1e-2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--label", default="pytorch")
    p.add_argument("--json", help="append the result as one JSON line to this file")
    p.add_argument("--check", metavar="DIR", help="compare losses with prior_training_bench's")
    p.add_argument("--summarize", metavar="JSONL", help="print the table of a run's results")
    p.add_argument("--wait_target", type=float, default=0.05)
    p.add_argument("--speed_target", type=float, default=1.5)
    args = p.parse_args()
    if args.check:
        return check(args.check)
    if args.summarize:
        return summarize(args.summarize, args.wait_target, args.speed_target)
    if not args.dataset:
        p.error("--dataset is required")
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
