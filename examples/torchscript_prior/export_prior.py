#!/usr/bin/env python3
"""Trains a tiny state-conditioned prior in PyTorch and exports it as TorchScript for PRL.

The exported module follows the contract of prl.v1.LoadModelRequest (proto/prior.proto);
every tensor is float32 and batch-first:

  decode(z [B, latent_dim], state [B, obs_dim])  -> actions [B, horizon, action_dim]
  prior(state [B, obs_dim])                      -> (mean, log_std), each [B, latent_dim]
  flow_forward(z [B, action_dim], state)         -> (actions [B, action_dim], log_det [B])
  flow_inverse(actions [B, action_dim], state)   -> (z [B, action_dim], log_det [B])

and the int attributes obs_dim, action_dim, latent_dim and horizon.

What is inside:
  * decoder: an MLP [z, state] -> horizon * action_dim, squashed with tanh and reshaped to
    [B, horizon, action_dim], trained as the decoder of a small conditional VAE (the encoder
    q(z | state, actions) is used for training only and is not exported);
  * prior: an MLP state -> (mean, log_std) with log_std clamped to [-10, 2], trained with
    KL(stop_grad(q) || p(z | state));
  * flow: a conditional affine-coupling flow with two coupling layers and alternating masks.
    Each layer keeps half of the dimensions and feeds [kept dims, state] to an MLP that gives
    a log-scale (bounded as 3 * tanh(x / 3)) and a shift for the other half. The flow is
    unbounded (no tanh squashing), so flow_inverse accepts any real actions; flow_forward
    returns log |det da/dz| and flow_inverse log |det dz/da| (its negative), both summed over
    the dimensions. The base distribution is N(0, I); it is trained by maximum likelihood on
    (state, first action) pairs.

The training data is synthetic and generated here: states uniform in [-1, 1]^obs_dim, a hidden
skill c ~ N(0, I) of latent_dim dimensions, and action sequences
a_h = tanh(W s + V c * (h + 1) / horizon) + noise. Training is seeded and short; the losses
before and after are printed.

Outputs, in --out_dir:
  prior.pt       the scripted module (torch.jit.script + torch.jit.save);
  reference.txt  fixed seeded inputs (batch --batch) and the outputs of every method, one
                 tensor per line: "<name> <rank> <d0> ... <d_{rank-1}> <v0> <v1> ..." with
                 values printed as '%.9g', after a '#' header line naming the torch version.

Usage:
  python3 export_prior.py --out_dir /some/dir [--steps 200] [--batch 7] [--seed 0]
      [--obs_dim 4] [--action_dim 2] [--latent_dim 3] [--horizon 5] [--hidden 32]
      [--variant script|freeze|optimize] [--strip_debug_info]

--variant freeze additionally runs torch.jit.freeze (keeping the exported methods and the
attributes); --variant optimize runs torch.jit.optimize_for_inference (keeping the exported
methods). All three load in LibTorch 1.13; see README.md next to this file.
--strip_debug_info leaves out the archive's debug records, which hold the absolute paths of
the Python sources on the exporting machine.

Works with PyTorch 1.13 and 2.x.
"""

import argparse
import math
import os
import zipfile
from typing import Tuple

import torch
from torch import nn

EXPORTED_METHODS = ["decode", "prior", "flow_forward", "flow_inverse"]
ATTRIBUTES = ["obs_dim", "action_dim", "latent_dim", "horizon"]


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, out_dim))


class Coupling(nn.Module):
    """One conditional affine coupling layer: y = x on the mask, x * exp(s) + t elsewhere."""

    def __init__(self, action_dim: int, obs_dim: int, hidden: int, parity: int):
        super().__init__()
        mask = torch.tensor([1.0 if i % 2 == parity else 0.0 for i in range(action_dim)])
        self.register_buffer("mask", mask)
        self.net = mlp(action_dim + obs_dim, hidden, 2 * action_dim)

    def scale_shift(self, x: torch.Tensor,
                    state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.net(torch.cat([x * self.mask, state], dim=1))
        raw_s, t = h.chunk(2, dim=1)
        free = 1.0 - self.mask
        s = 3.0 * torch.tanh(raw_s / 3.0) * free
        return s, t * free

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s, t = self.scale_shift(x, state)
        y = x * self.mask + (1.0 - self.mask) * (x * torch.exp(s) + t)
        return y, s.sum(dim=1)

    @torch.jit.export
    def inverse(self, y: torch.Tensor, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # The masked dimensions pass through unchanged, so s and t are recomputed exactly.
        s, t = self.scale_shift(y, state)
        x = y * self.mask + (1.0 - self.mask) * ((y - t) * torch.exp(-s))
        return x, -s.sum(dim=1)


class TinyPrior(nn.Module):
    obs_dim: torch.jit.Final[int]
    action_dim: torch.jit.Final[int]
    latent_dim: torch.jit.Final[int]
    horizon: torch.jit.Final[int]

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, horizon: int, hidden: int):
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.latent_dim = latent_dim
        self.horizon = horizon
        self.decoder = mlp(latent_dim + obs_dim, hidden, horizon * action_dim)
        self.prior_net = mlp(obs_dim, hidden, 2 * latent_dim)
        self.coupling0 = Coupling(action_dim, obs_dim, hidden, parity=0)
        self.coupling1 = Coupling(action_dim, obs_dim, hidden, parity=1)

    def forward(self, z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.decode(z, state)

    @torch.jit.export
    def decode(self, z: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(self.decoder(torch.cat([z, state], dim=1)))
        return out.reshape(z.shape[0], self.horizon, self.action_dim)

    @torch.jit.export
    def prior(self, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.prior_net(state).chunk(2, dim=1)
        return mean, torch.clamp(log_std, -10.0, 2.0)

    @torch.jit.export
    def flow_forward(self, z: torch.Tensor,
                     state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x, ld0 = self.coupling0(z, state)
        a, ld1 = self.coupling1(x, state)
        return a, ld0 + ld1

    @torch.jit.export
    def flow_inverse(self, actions: torch.Tensor,
                     state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x, ld1 = self.coupling1.inverse(actions, state)
        z, ld0 = self.coupling0.inverse(x, state)
        return z, ld0 + ld1


class Encoder(nn.Module):
    """q(z | state, actions) of the conditional VAE; used for training only."""

    def __init__(self, obs_dim: int, action_dim: int, latent_dim: int, horizon: int, hidden: int):
        super().__init__()
        self.net = mlp(obs_dim + horizon * action_dim, hidden, 2 * latent_dim)

    def forward(self, state: torch.Tensor,
                actions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(torch.cat([state, actions.flatten(1)], dim=1)).chunk(2, dim=1)
        return mean, torch.clamp(log_std, -10.0, 2.0)


class SyntheticData:
    """Action sequences that are a smooth function of the state and a hidden skill, plus noise."""

    def __init__(self, args, gen: torch.Generator):
        self.args = args
        self.w = torch.randn(args.obs_dim, args.action_dim, generator=gen) * 0.8
        self.v = torch.randn(args.latent_dim, args.action_dim, generator=gen) * 0.5

    def sample(self, n: int, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        a = self.args
        state = torch.rand(n, a.obs_dim, generator=gen) * 2.0 - 1.0
        skill = torch.randn(n, a.latent_dim, generator=gen)
        phase = (torch.arange(a.horizon, dtype=torch.float32) + 1.0) / a.horizon
        mean = torch.tanh((state @ self.w).unsqueeze(1)
                          + (skill @ self.v).unsqueeze(1) * phase.view(1, -1, 1))
        actions = mean + 0.05 * torch.randn(n, a.horizon, a.action_dim, generator=gen)
        return state, actions


def gaussian_kl(q_mean, q_log_std, p_mean, p_log_std):
    """KL(N(q_mean, q_std^2) || N(p_mean, p_std^2)), summed over the last dimension."""
    return (p_log_std - q_log_std
            + (torch.exp(2 * q_log_std) + (q_mean - p_mean) ** 2) / (2 * torch.exp(2 * p_log_std))
            - 0.5).sum(dim=1)


def losses(model: TinyPrior, encoder: Encoder, state, actions, noise, beta: float):
    q_mean, q_log_std = encoder(state, actions)
    z = q_mean + torch.exp(q_log_std) * noise
    recon = ((model.decode(z, state) - actions) ** 2).sum(dim=(1, 2)).mean()
    zeros = torch.zeros_like(q_mean)
    kl = gaussian_kl(q_mean, q_log_std, zeros, zeros).mean()
    p_mean, p_log_std = model.prior(state)
    prior_loss = gaussian_kl(q_mean.detach(), q_log_std.detach(), p_mean, p_log_std).mean()
    first = actions[:, 0, :]
    base, log_det = model.flow_inverse(first, state)
    flow_nll = (0.5 * (base ** 2).sum(dim=1) + 0.5 * model.action_dim * math.log(2 * math.pi)
                - log_det).mean()
    total = recon + beta * kl + prior_loss + flow_nll
    return total, {"recon": recon.item(), "kl": kl.item(), "prior": prior_loss.item(),
                   "flow_nll": flow_nll.item(), "total": total.item()}


def format_losses(parts) -> str:
    return " ".join("%s=%.4f" % (k, v) for k, v in parts.items())


def train(model: TinyPrior, args) -> None:
    gen = torch.Generator().manual_seed(args.seed + 1)
    data = SyntheticData(args, gen)
    encoder = Encoder(args.obs_dim, args.action_dim, args.latent_dim, args.horizon, args.hidden)
    params = list(model.parameters()) + list(encoder.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)

    # A fixed held-out batch to report the losses before and after training.
    eval_state, eval_actions = data.sample(512, gen)
    eval_noise = torch.randn(512, args.latent_dim, generator=gen)
    with torch.no_grad():
        _, before = losses(model, encoder, eval_state, eval_actions, eval_noise, args.beta)
    print("before training: " + format_losses(before))
    for step in range(args.steps):
        state, actions = data.sample(args.train_batch, gen)
        noise = torch.randn(args.train_batch, args.latent_dim, generator=gen)
        total, _ = losses(model, encoder, state, actions, noise, args.beta)
        opt.zero_grad()
        total.backward()
        opt.step()
    with torch.no_grad():
        _, after = losses(model, encoder, eval_state, eval_actions, eval_noise, args.beta)
    print("after %d steps:  %s" % (args.steps, format_losses(after)))


def export(model: TinyPrior, variant: str) -> torch.jit.ScriptModule:
    scripted = torch.jit.script(model.eval())
    if variant == "script":
        return scripted
    if variant == "freeze":
        return torch.jit.freeze(scripted, preserved_attrs=EXPORTED_METHODS + ATTRIBUTES)
    if variant == "optimize":
        return torch.jit.optimize_for_inference(scripted, other_methods=EXPORTED_METHODS)
    raise ValueError("unknown variant %r" % variant)


def strip_debug_info(path: str) -> None:
    """Rewrites the archive without its *.debug_pkl records.

    TorchScript stores, next to the code of every class, a debug record mapping the code to the
    Python source it came from, with that source file's absolute path (the exporting machine's
    paths, including those of the torch installation). Loaders do not need it (only error
    messages quote the original source), so artifacts meant to be shared can leave it out.
    Entries keep their order and are stored uncompressed with a fixed time stamp.
    """
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue
            zout.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                          zin.read(info.filename))
    os.replace(tmp, path)


def tensor_line(name: str, t: torch.Tensor) -> str:
    t = t.detach().to(torch.float32).contiguous()
    dims = [str(d) for d in t.shape]
    values = ["%.9g" % v for v in t.reshape(-1).tolist()]
    return " ".join([name, str(t.dim())] + dims + values)


def write_reference(module, args, path: str) -> None:
    gen = torch.Generator().manual_seed(args.seed + 2)
    b = args.batch

    def state():
        return torch.rand(b, args.obs_dim, generator=gen) * 2.0 - 1.0

    lines = ["# torch %s; obs_dim %d action_dim %d latent_dim %d horizon %d batch %d"
             % (torch.__version__, args.obs_dim, args.action_dim, args.latent_dim,
                args.horizon, b)]
    with torch.no_grad():
        z, s = torch.randn(b, args.latent_dim, generator=gen), state()
        lines += [tensor_line("decode.z", z), tensor_line("decode.state", s),
                  tensor_line("decode.actions", module.decode(z, s))]

        s = state()
        mean, log_std = module.prior(s)
        lines += [tensor_line("prior.state", s), tensor_line("prior.mean", mean),
                  tensor_line("prior.log_std", log_std)]

        z, s = torch.randn(b, args.action_dim, generator=gen), state()
        actions, log_det = module.flow_forward(z, s)
        lines += [tensor_line("flow_forward.z", z), tensor_line("flow_forward.state", s),
                  tensor_line("flow_forward.actions", actions),
                  tensor_line("flow_forward.log_det", log_det)]

        a, s = torch.rand(b, args.action_dim, generator=gen) * 1.8 - 0.9, state()
        z, log_det = module.flow_inverse(a, s)
        lines += [tensor_line("flow_inverse.actions", a), tensor_line("flow_inverse.state", s),
                  tensor_line("flow_inverse.z", z),
                  tensor_line("flow_inverse.log_det", log_det)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def check_round_trip(module, args) -> None:
    """The exported flow_inverse must undo flow_forward, with opposite log-determinants."""
    gen = torch.Generator().manual_seed(args.seed + 3)
    with torch.no_grad():
        z = torch.randn(64, args.action_dim, generator=gen)
        s = torch.rand(64, args.obs_dim, generator=gen) * 2.0 - 1.0
        a, ld_f = module.flow_forward(z, s)
        z2, ld_i = module.flow_inverse(a, s)
    err_z = (z2 - z).abs().max().item()
    err_ld = (ld_f + ld_i).abs().max().item()
    print("flow round trip: max |z - inverse(forward(z))| = %.3g, max |ld_f + ld_i| = %.3g"
          % (err_z, err_ld))
    if err_z > 1e-4 or err_ld > 1e-4:
        raise SystemExit("flow_inverse does not invert flow_forward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", required=True, help="where prior.pt and reference.txt go")
    parser.add_argument("--obs_dim", type=int, default=4)
    parser.add_argument("--action_dim", type=int, default=2)
    parser.add_argument("--latent_dim", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200, help="Adam steps")
    parser.add_argument("--train_batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--beta", type=float, default=0.1, help="weight of the CVAE's KL term")
    parser.add_argument("--batch", type=int, default=7, help="batch size of the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=["script", "freeze", "optimize"], default="script")
    parser.add_argument("--strip_debug_info", action="store_true",
                        help="leave out the debug records (they hold absolute source paths)")
    args = parser.parse_args()
    if args.action_dim < 2:
        parser.error("--action_dim must be at least 2 (the coupling layers split the action)")

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    model = TinyPrior(args.obs_dim, args.action_dim, args.latent_dim, args.horizon, args.hidden)
    train(model, args)

    module = export(model, args.variant)
    os.makedirs(args.out_dir, exist_ok=True)
    pt_path = os.path.join(args.out_dir, "prior.pt")
    torch.jit.save(module, pt_path)
    if args.strip_debug_info:
        strip_debug_info(pt_path)
    # The reference comes from the saved file, as a loader will see it.
    loaded = torch.jit.load(pt_path)
    check_round_trip(loaded, args)
    write_reference(loaded, args, os.path.join(args.out_dir, "reference.txt"))
    print("wrote %s (%d bytes) and reference.txt (torch %s, variant %s)"
          % (pt_path, os.path.getsize(pt_path), torch.__version__, args.variant))


if __name__ == "__main__":
    main()
