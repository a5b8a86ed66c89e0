#!/usr/bin/env python3
"""Ray Serve peer for the prior server benchmark: the same TorchScript prior, served by Ray Serve.

A Ray Serve deployment loads the prior module (a TorchScript file written by
examples/torchscript_prior/export_prior.py) with torch.jit.load and batches requests with
`@serve.batch`: it concatenates the requests' z [b, latent_dim] and state [b, obs_dim] along dim 0,
calls `decode(z, state) -> actions [B, horizon, action_dim]` once under torch.inference_mode, and
splits the actions back per request. A load generator then calls it the way Ray Serve users do:

  * ray_serve_http (every point): HTTP POST to the Serve HTTP proxy at
    http://127.0.0.1:<port>/prior. `clients` threads each own a requests.Session (keep-alive) and
    send requests back to back. Wire format, the fastest plain one a user would pick: the body is
    raw little-endian float32 bytes, z ([b, latent_dim], row-major) followed by state
    ([b, obs_dim], row-major), Content-Type application/octet-stream; the row count b follows
    from the body length. The response body is the actions as raw float32 bytes
    ([b, horizon, action_dim], row-major). No JSON or base64 encoding on either side.
  * ray_serve_handle (--handle_points, default batch 1 with 16 clients): Python-side
    DeploymentHandle calls, `handle.decode.remote(z, state).result()` with numpy arrays, from
    `clients` threads of this process; no HTTP proxy in the path.

Batch size mapping: PRL's prior server caps a batch in rows (--max_batch_size rows), whereas
`@serve.batch(max_batch_size=N)` caps it in requests. Every request of a point carries the same
number of rows b, so the deployment gets max_batch_size = max(1, rows // b) requests (64 rows:
64 requests at b=1, 4 at b=16, 1 at b=64), which bounds a batch by the same number of rows.
(Ray's batch_size_fn could count rows instead; with one b per point it gives the same batches.)
--batch_wait_us sets batch_wait_timeout_s. The deployment runs one replica with one CPU and
`--threads` torch intra-op threads; max_ongoing_requests is raised so that a full batch can be
in flight. Serve's per-request access log is off unless --access_log (a usual production setting).
Ray starts its worker processes (Serve proxy, controller, replica) at nice 15 by default, below
the load generator; --worker_niceness (default 0) puts them level with it, as PRL's server is.

Measurement per point: a warm-up (--warmup seconds), then --seconds of measurement; requests
completed inside the measurement window give requests/s, rows/s and the p50/p99 latency (send to
full response, in ms). Each point prints one JSON line on stdout; --json_out gets a JSON list of
all of them. Clients, the Serve proxy, the controller and the replica share this machine's cores.

    scripts/setup.sh --venv      # ray[serve] lives in .venv/
    .venv/bin/python bench/prior_server_ray_peer.py --model prior.pt --json_out ray_peer.json
"""

import argparse
import json
import os
import sys
import threading
import time

import numpy as np
import torch

APP_NAME = "prior"
ROUTE = "/prior"


def make_deployment():
    """The Serve deployment class; Ray is imported only once its environment is set."""
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    @serve.deployment(ray_actor_options={"num_cpus": 1})
    class PriorDeployment:
        """Serves a TorchScript prior's decode(z, state) with @serve.batch."""

        def __init__(self, model_path, threads):
            torch.set_num_threads(threads)
            self.module = torch.jit.load(model_path, map_location="cpu")
            self.module.eval()
            self.obs_dim = int(self.module.obs_dim)
            self.latent_dim = int(self.module.latent_dim)

        def reconfigure(self, config):
            # user_config: the batch limits of the current point, updated without a restart.
            self._decode_batch.set_max_batch_size(int(config["max_batch_size"]))
            self._decode_batch.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

        @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
        async def _decode_batch(self, items):
            rows = [z.shape[0] for z, _ in items]
            z = torch.from_numpy(np.concatenate([z for z, _ in items], axis=0))
            state = torch.from_numpy(np.concatenate([s for _, s in items], axis=0))
            with torch.inference_mode():
                actions = self.module.decode(z, state).numpy()
            return np.split(actions, np.cumsum(rows)[:-1], axis=0)

        async def __call__(self, request: Request) -> Response:
            body = await request.body()
            row_floats = self.latent_dim + self.obs_dim
            if len(body) == 0 or len(body) % (4 * row_floats) != 0:
                return Response(f"body must be b*{row_floats} float32 values", status_code=400)
            flat = np.frombuffer(body, dtype="<f4")
            b = flat.size // row_floats
            z = flat[: b * self.latent_dim].reshape(b, self.latent_dim)
            state = flat[b * self.latent_dim :].reshape(b, self.obs_dim)
            actions = await self._decode_batch((z, state))
            return Response(np.ascontiguousarray(actions, dtype="<f4").tobytes(),
                            media_type="application/octet-stream")

        async def decode(self, z, state):
            """DeploymentHandle entry: numpy z [b, latent_dim], state [b, obs_dim] -> actions."""
            return await self._decode_batch((z, state))

    return PriorDeployment


def int_list(text):
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"need a comma-separated list of positive ints: {text!r}")
    return values


def point_list(text):
    """'1x16,16x8' -> [(1, 16), (16, 8)] as (batch, clients); '' -> []."""
    points = []
    for item in text.split(","):
        if item.strip():
            batch, clients = item.lower().split("x")
            points.append((int(batch), int(clients)))
    return points


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="TorchScript prior (.pt) with decode(z, state)")
    p.add_argument("--batch_sizes", type=int_list, default=[1, 16, 64],
                   help="rows per request (default 1,16,64)")
    p.add_argument("--clients", type=int_list, default=[1, 8, 32],
                   help="concurrent client threads (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement time per point")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up time per point, seconds")
    p.add_argument("--max_batch_size", type=int, default=64,
                   help="max rows per model call; @serve.batch gets max(1, rows // batch) requests")
    p.add_argument("--batch_wait_us", type=int, default=500,
                   help="@serve.batch batch_wait_timeout_s, in microseconds")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads in the replica")
    p.add_argument("--port", type=int, default=8000, help="Serve HTTP proxy port on 127.0.0.1")
    p.add_argument("--handle_points", type=point_list, default=[(1, 16)],
                   help="BATCHxCLIENTS points also run through a DeploymentHandle "
                        "(default 1x16; empty for none)")
    p.add_argument("--access_log", action="store_true", help="keep Serve's per-request access log")
    p.add_argument("--worker_niceness", type=int, default=0,
                   help="nice value of Ray's worker processes (Serve proxy, controller, replica); "
                        "Ray's own default is 15, below the load generator's 0")
    p.add_argument("--json_out", help="write all points here as a JSON list")
    args = p.parse_args(argv)
    if args.max_batch_size < 1 or args.threads < 1 or args.seconds <= 0 or args.warmup < 0:
        p.error("--max_batch_size and --threads must be >= 1, --seconds > 0, --warmup >= 0")
    return args


def batch_requests(max_rows, batch):
    """@serve.batch's max_batch_size (requests) for requests of `batch` rows each."""
    return max(1, max_rows // batch)


def deploy(serve, deployment, args, batch, max_ongoing):
    config = {
        "max_batch_size": batch_requests(args.max_batch_size, batch),
        "batch_wait_timeout_s": args.batch_wait_us / 1e6,
    }
    app = deployment.options(
        user_config=config,
        max_ongoing_requests=max_ongoing,
        logging_config={"enable_access_log": bool(args.access_log)},
    ).bind(os.path.abspath(args.model), args.threads)
    return serve.run(app, name=APP_NAME, route_prefix=ROUTE)


def make_inputs(rng, batch, dims):
    z = rng.standard_normal((batch, dims["latent_dim"]), dtype=np.float32)
    state = rng.standard_normal((batch, dims["obs_dim"]), dtype=np.float32)
    return z, state


def http_sender(url, batch, dims, seed):
    import requests

    session = requests.Session()
    z, state = make_inputs(np.random.default_rng(seed), batch, dims)
    body = z.tobytes() + state.tobytes()
    headers = {"Content-Type": "application/octet-stream"}
    expect = batch * dims["horizon"] * dims["action_dim"] * 4

    def send():
        r = session.post(url, data=body, headers=headers)
        return r.status_code == 200 and len(r.content) == expect

    return send


def handle_sender(handle, batch, dims, seed):
    z, state = make_inputs(np.random.default_rng(seed), batch, dims)
    shape = (batch, dims["horizon"], dims["action_dim"])

    def send():
        return handle.decode.remote(z, state).result().shape == shape

    return send


def run_point(make_sender, clients, warmup, seconds):
    """Runs `clients` threads back to back; returns per-window stats."""
    senders = [make_sender(i) for i in range(clients)]
    results = [None] * clients
    barrier = threading.Barrier(clients + 1)
    window = {}
    first_error = []

    def loop(i):
        send = senders[i]
        lat, errors = [], 0
        barrier.wait()
        start, end = window["start"], window["end"]
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            try:
                ok = send()
            except Exception as e:  # noqa: BLE001  (a failed request counts as an error)
                ok = False
                if not first_error:
                    first_error.append(f"{type(e).__name__}: {e}")
            t1 = time.perf_counter()
            if start <= t1 <= end:
                if ok:
                    lat.append(t1 - t0)
                else:
                    errors += 1
        results[i] = (lat, errors)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["start"] = now + warmup
    window["end"] = now + warmup + seconds
    barrier.wait()
    time.sleep(warmup)
    cpu0 = time.process_time()
    time.sleep(seconds)
    cpu1 = time.process_time()
    for t in threads:
        t.join()
    lat = np.array([x for r in results for x in r[0]], dtype=np.float64)
    errors = sum(r[1] for r in results)
    if first_error:
        print(f"first failed request: {first_error[0][:2000]}", file=sys.stderr)
    return {
        "requests": int(lat.size),
        "errors": int(errors),
        "requests_per_s": lat.size / seconds,
        "p50_ms": float(np.percentile(lat, 50) * 1e3) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99) * 1e3) if lat.size else None,
        "client_cpu_per_s": (cpu1 - cpu0) / seconds,
        "loadavg_1m": os.getloadavg()[0],
    }


def check_http(url, module, dims, timeout_s=60.0):
    """Waits for the proxy to route to the app, then checks one answer against the module."""
    import requests

    z, state = make_inputs(np.random.default_rng(0), 3, dims)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            r = requests.post(url, data=z.tobytes() + state.tobytes(), timeout=10,
                              headers={"Content-Type": "application/octet-stream"})
            if r.status_code == 200:
                break
            err = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            err = str(e)
        if time.monotonic() > deadline:
            raise RuntimeError(f"Serve did not answer at {url}: {err}")
        time.sleep(0.2)
    got = np.frombuffer(r.content, dtype="<f4").reshape(3, dims["horizon"], dims["action_dim"])
    with torch.inference_mode():
        want = module.decode(torch.from_numpy(z), torch.from_numpy(state)).numpy()
    if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
        raise RuntimeError("Ray Serve's actions differ from the module's own decode")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    module = torch.jit.load(args.model, map_location="cpu")
    module.eval()
    dims = {k: int(getattr(module, k)) for k in ("obs_dim", "action_dim", "latent_dim", "horizon")}
    url = f"http://127.0.0.1:{args.port}{ROUTE}"
    all_batches = list(args.batch_sizes) + [b for b, _ in args.handle_points]
    all_clients = list(args.clients) + [c for _, c in args.handle_points]
    max_ongoing = 2 * max(max(all_clients),
                          max(batch_requests(args.max_batch_size, b) for b in all_batches))
    common = {
        "max_batch_size_rows": args.max_batch_size,
        "batch_wait_us": args.batch_wait_us,
        "threads": args.threads,
        "worker_niceness": args.worker_niceness,
        "seconds": args.seconds,
        "torch_version": torch.__version__,
    }

    points = []

    def emit(peer, batch, clients, stats):
        point = {"peer": peer, "batch": batch, "clients": clients,
                 "requests_per_s": stats["requests_per_s"],
                 "rows_per_s": stats["requests_per_s"] * batch,
                 "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"],
                 "max_batch_requests": batch_requests(args.max_batch_size, batch),
                 **{k: stats[k] for k in ("requests", "errors", "client_cpu_per_s", "loadavg_1m")},
                 **common}
        points.append(point)
        print(json.dumps(point), flush=True)

    # Ray reads these at import (this process) and when it starts its processes (which inherit
    # this environment); no usage-stats reporting from a benchmark run.
    os.environ["RAY_worker_niceness"] = str(args.worker_niceness)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    deployment = make_deployment()
    common["ray_version"] = ray.__version__
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        for batch in args.batch_sizes:
            deploy(serve, deployment, args, batch, max_ongoing)
            check_http(url, module, dims)
            for clients in args.clients:
                stats = run_point(lambda i, b=batch: http_sender(url, b, dims, 1 + i),
                                  clients, args.warmup, args.seconds)
                emit("ray_serve_http", batch, clients, stats)
        for batch, clients in args.handle_points:
            handle = deploy(serve, deployment, args, batch, max_ongoing)
            stats = run_point(lambda i, b=batch: handle_sender(handle, b, dims, 1 + i),
                              clients, args.warmup, args.seconds)
            emit("ray_serve_handle", batch, clients, stats)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(points, f, indent=1)
            f.write("\n")
    if any(p["errors"] for p in points):
        print("some requests failed (see \"errors\")", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
