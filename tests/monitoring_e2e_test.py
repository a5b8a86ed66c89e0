#!/usr/bin/env python3
"""PRL's monitoring against a real cluster and a real Prometheus.

Starts a replay shard, the prior server, the learner, one actor and a second actor whose
learner address is wrong (its failing RPCs feed the RPC-error panels), each with --port=0
--metrics_port=0. The prior server loads a TorchScript prior exported by PyTorch
(tests/data/torchscript_prior_torch2/prior.pt) with LoadModel and answers Decode calls made
throughout the test (and calls naming an unknown model, NOT_FOUND), so its model, batch, queue
and compute metrics have series. Debian's Prometheus scrapes their /metrics every second
through deploy/prometheus/prometheus-kubernetes.yml's relabeling (its pod discovery swapped for
a file of targets carrying the labels Kubernetes would give the pods; Debian's Prometheus has
no Kubernetes discovery) with deploy/prometheus/alerts.yml loaded. The test submits a tiny SAC
experiment and checks:

  - the relabeling: every process is a target named prl-<component> with namespace, pod and
    container labels, and pods that do not opt in are dropped;
  - training shows through PromQL: env steps/s > 0, replay table size > 0, learner updates > 0,
    and so do the prior server's Decode calls/s;
  - every query of every panel of deploy/grafana/prl.json (template variables substituted) is
    valid PromQL, names only metrics some process exports (or Prometheus's `up`), and returns
    data (except panels that are empty while nothing fails);
  - the experiment template variable lists the experiment;
  - every alert rule evaluates without error, names only exported metrics, each of its
    selectors with label matchers matches some series (negative matchers, which filter out
    what is normal, e.g. code!~"OK|...", left out), and none fires on this cluster (its one
    fault, the lost actor, has never stepped: not a stalled actor).

The test speaks gRPC with curl (--http2-prior-knowledge) and encodes the few protobuf messages
it sends by hand (pb_* below).
"""
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

RUNFILES = os.path.join(os.environ["TEST_SRCDIR"], os.environ["TEST_WORKSPACE"])
sys.path.insert(0, os.path.join(RUNFILES, "tests"))
import monitoring_lib  # noqa: E402

TMP = os.environ.get("TEST_TMPDIR", "/tmp")
START = time.monotonic()
# the whole test must end well within 3 minutes on two cores.
DEADLINE = START + 170

# Metrics Prometheus makes itself; everything else must come from a PRL process.
PROMETHEUS_METRICS = {"up"}

SPEC = """
name: "monitoring-sac"
kind: KIND_TRAIN
env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 100 seed: 3 }
algorithm {
  sac {}
  network { hidden_sizes: [ 32, 32 ] }
  batch_size: 32
  actor_lr: 1e-3
  critic_lr: 1e-3
  warmup_env_steps: 200
}
replay { capacity: 20000 min_size_to_sample: 200 samples_per_insert: 32 }
resources { num_actors: 1 envs_per_actor: 2 }
stop { max_env_steps: 10000000 }
evaluation { every_env_steps: 1000 episodes: 1 }
"""

failures = []


class Abort(Exception):
    """Ends the test after a reported failure that leaves nothing more to check."""


def log(msg):
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


def fail(msg):
    log("FAIL: " + msg)
    failures.append(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


class Process:
    """A child process with its output in TMP/<name>.log."""

    def __init__(self, name, argv):
        self.name = name
        self.log_path = os.path.join(TMP, name + ".log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.grpc = self.metrics = None

    def wait_ready(self, timeout=60):
        """Waits for the PRL_READY line; sets grpc and metrics (HOST:PORT)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log_path) as f:
                for line in f:
                    if line.startswith("PRL_READY "):
                        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
                        self.grpc, self.metrics = fields["grpc"], fields["metrics"]
                        return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n=30):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        """Waits for the process to exit after terminate(); kills it after 10 s."""
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within 10 s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class Prometheus:
    def __init__(self, url):
        self.url = url

    def api(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        try:
            body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        except urllib.error.HTTPError as e:  # 400 for a bad query, with the error in the body
            body = e.read().decode("utf-8")
        return json.loads(body)

    def query(self, expr):
        """(result list, error or None) of an instant query."""
        r = self.api("query", query=expr)
        if r.get("status") != "success":
            return None, f"{r.get('errorType')}: {r.get('error')}"
        return r["data"]["result"], None

    def scalar(self, expr):
        """The first sample's value of `expr`, or 0 when it has none."""
        result, error = self.query(expr)
        if error or not result:
            return 0.0
        return float(result[0]["value"][1])


# --- protobuf by hand: the few messages the test sends and reads ------------------------------


def pb_varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_field(number, value):
    """One field: an int as a varint, str or bytes (a string, bytes or an embedded message)
    length-delimited."""
    if isinstance(value, int):
        return pb_varint(number << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def pb_tensor(shape, values):
    """prl.v1.Tensor: dtype FLOAT32 (1), shape (packed int64), data (little-endian float32)."""
    return (pb_field(1, 1) + pb_field(2, b"".join(pb_varint(d) for d in shape)) +
            pb_field(3, struct.pack(f"<{len(values)}f", *values)))


def pb_read_varint(data, i):
    n = shift = 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def pb_parse(data):
    """{field number: [values]} of a message: ints for varints, bytes for length-delimited
    fields (fixed-width fields are skipped)."""
    fields = {}
    i = 0
    while i < len(data):
        key, i = pb_read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = pb_read_varint(data, i)
        elif wire == 2:
            size, i = pb_read_varint(data, i)
            value, i = data[i:i + size], i + size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            continue
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {i}")
        fields.setdefault(number, []).append(value)
    return fields


def pb_parse_tensor(data):
    """(dtype, shape, float values) of a prl.v1.Tensor holding float32."""
    t = pb_parse(data)
    shape = []
    for packed in t.get(2, []):
        j = 0
        while j < len(packed):
            d, j = pb_read_varint(packed, j)
            shape.append(d)
    raw = t.get(3, [b""])[0]
    return t.get(1, [0])[0], shape, list(struct.unpack(f"<{len(raw) // 4}f", raw))


def grpc_unary(address, method, message=b""):
    """Calls a unary gRPC method over HTTP/2 with curl; returns (grpc-status or None, the
    response message's bytes or None, grpc-message)."""
    frame = b"\x00" + struct.pack(">I", len(message)) + message  # uncompressed
    fd, headers_file = tempfile.mkstemp(dir=TMP, prefix="grpc_headers_")
    os.close(fd)
    try:
        out = subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/grpc",
             "-H", "te: trailers", "--data-binary", "@-", "-o", "-", "-D", headers_file,
             f"http://{address}{method}"], input=frame, capture_output=True, timeout=10)
        with open(headers_file, errors="replace") as f:
            headers = f.read()
    finally:
        os.remove(headers_file)
    status = None
    grpc_message = ""
    for line in headers.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "grpc-status":
            status = value.strip()
        elif name.strip().lower() == "grpc-message":
            grpc_message = urllib.parse.unquote(value.strip())
    if status is None:
        log(f"curl {method} on {address}: rc {out.returncode} "
            f"{out.stderr.decode(errors='replace').strip()}")
        return None, None, ""
    body = out.stdout
    response = None
    if len(body) >= 5:
        size = struct.unpack(">I", body[1:5])[0]
        response = body[5:5 + size]
    return status, response, grpc_message


def grpc_call(address, method):
    """Calls a unary gRPC method with an empty request; returns the grpc-status it answered
    (a string), or None."""
    return grpc_unary(address, method)[0]


# the TorchScript prior of tests/data/torchscript_prior_torch2: obs_dim 4, action_dim 2,
# latent_dim 3, horizon 5.
PRIOR_MODEL = "e2e-prior"
OBS_DIM, ACTION_DIM, LATENT_DIM, HORIZON = 4, 2, 3, 5


def decode(address, model, rows, seed=0):
    """PriorService.Decode of `rows` rows on `model`; returns (grpc-status, actions tensor as
    (dtype, shape, values) or None, grpc-message)."""
    z = [math.sin(0.7 * (seed + i)) for i in range(rows * LATENT_DIM)]
    state = [math.cos(0.3 * (seed + i)) for i in range(rows * OBS_DIM)]
    request = (pb_field(1, pb_field(1, model)) +
               pb_field(2, pb_tensor([rows, LATENT_DIM], z)) +
               pb_field(3, pb_tensor([rows, OBS_DIM], state)))
    status, response, message = grpc_unary(address, "/prl.v1.PriorService/Decode", request)
    actions = None
    if status == "0" and response is not None:
        fields = pb_parse(response)
        if 1 in fields:
            actions = pb_parse_tensor(fields[1][0])
    return status, actions, message


def check_decode(address, rows, seed=0):
    """Decode on PRIOR_MODEL must answer OK with float32 actions [rows, HORIZON, ACTION_DIM]."""
    status, actions, message = decode(address, PRIOR_MODEL, rows, seed)
    if status != "0":
        return f"Decode of {rows} rows: grpc-status {status} {message}"
    want = [rows, HORIZON, ACTION_DIM]
    if actions is None:
        return f"Decode of {rows} rows: no actions in the response"
    dtype, shape, values = actions
    if dtype != 1 or shape != want or len(values) != rows * HORIZON * ACTION_DIM or \
            not all(math.isfinite(v) for v in values):
        return (f"Decode of {rows} rows: actions dtype {dtype} shape {shape} with "
                f"{len(values)} values, want float32 {want} with finite values")
    return None


class PriorTraffic:
    """Decode calls on the prior server every 0.2 s in a thread (batch sizes 1-8), and every
    tenth one on an unknown model (NOT_FOUND), so that the prior server's rates have moved in
    every scrape window."""

    def __init__(self, address):
        self.address = address
        self.stop_event = threading.Event()
        self.calls = 0
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop_event.is_set():
            i += 1
            if i % 10 == 0:
                status = decode(self.address, "no-such-model", 1)[0]
                if status != "5":
                    self.errors.append(f"Decode on an unknown model: grpc-status {status}, "
                                       "want 5 (NOT_FOUND)")
            else:
                error = check_decode(self.address, 1 + i % 8, seed=i)
                if error:
                    self.errors.append(error)
            self.calls += 1
            self.stop_event.wait(0.2)

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=15)


def wait_until(what, predicate, timeout):
    end = min(time.monotonic() + timeout, DEADLINE)
    while time.monotonic() < end:
        if predicate():
            log(what)
            return True
        time.sleep(0.5)
    fail(f"timed out waiting for: {what}")
    return False


def main():
    prometheus_bin = shutil.which("prometheus") or "/usr/bin/prometheus"
    if not os.access(prometheus_bin, os.X_OK):
        print("no prometheus binary: install Debian's prometheus (scripts/setup.sh)")
        return 1
    run = lambda path: os.path.join(RUNFILES, path)  # noqa: E731
    processes = []
    traffic = None
    try:
        # --- the cluster ----------------------------------------------------------------------
        replay = Process("replay", [run("replay/prl_replay"), "--port=0", "--metrics_port=0",
                                    "--replay_checkpoint_dir=" + os.path.join(TMP, "replay")])
        processes.append(replay)
        prior = Process("prior_server",
                        [run("prior_server/prl_prior_server"), "--port=0", "--metrics_port=0"])
        processes.append(prior)
        replay.wait_ready()
        prior.wait_ready()
        learner = Process("learner", [
            run("learner/prl_learner"), "--port=0", "--metrics_port=0",
            "--learner_replay=" + replay.grpc,
            "--learner_state_dir=" + os.path.join(TMP, "learner"),
            "--learner_torch_threads=1", "--learner_first_checkpoint=2s",
            "--learner_checkpoint_period=5s", "--learner_heartbeat_interval=1s"])
        processes.append(learner)
        learner.wait_ready()
        actor = Process("actor", [
            run("actor/prl_actor"), "--port=0", "--metrics_port=0",
            "--actor_learner=" + learner.grpc, "--actor_num_envs=2",
            "--actor_name=monitoring-actor"])
        processes.append(actor)
        actor.wait_ready()
        # an actor whose learner is unreachable: its failing Join calls are the RPC errors
        # the actor panels show (prometheus-cpp exports no family before its first series).
        lost_actor = Process("lost_actor", [
            run("actor/prl_actor"), "--port=0", "--metrics_port=0",
            "--actor_learner=127.0.0.1:%d" % free_port(), "--actor_num_envs=1",
            "--actor_name=lost-actor", "--actor_rpc_timeout=1s"])
        processes.append(lost_actor)
        lost_actor.wait_ready()
        servers = [replay, prior, learner, actor, lost_actor]
        log("cluster ready: " + ", ".join(f"{p.name} grpc={p.grpc} metrics={p.metrics}"
                                          for p in servers))
        # one RPC on every server, so every process has gRPC series.
        for p in servers:
            status = grpc_call(p.grpc, "/grpc.health.v1.Health/Check")
            if status != "0":
                fail(f"health check of {p.name}: grpc-status {status}")
        status = grpc_call(prior.grpc, "/prl.v1.PriorService/ListModels")
        if status != "0":
            fail(f"ListModels on the prior server: grpc-status {status}")

        # the prior server serves a real model: prl_prior_* families export series only once
        # a model is loaded and called.
        artifact = os.path.abspath(run("tests/data/torchscript_prior_torch2/prior.pt"))
        status, response, message = grpc_unary(
            prior.grpc, "/prl.v1.PriorService/LoadModel",
            pb_field(1, PRIOR_MODEL) + pb_field(3, artifact))
        if status != "0":
            fail(f"LoadModel {artifact}: grpc-status {status} {message}")
            raise Abort()
        info = pb_parse(pb_parse(response or b"").get(1, [b""])[0])
        if info.get(1) != [PRIOR_MODEL.encode()] or info.get(3) != [5]:
            fail(f"LoadModel answered model {info}: want name {PRIOR_MODEL}, kind TORCHSCRIPT")
        error = check_decode(prior.grpc, 3)
        if error:
            fail(error)
            raise Abort()
        log(f"prior server serves {PRIOR_MODEL} (TorchScript): Decode answers OK")
        traffic = PriorTraffic(prior.grpc)

        # --- prometheus -----------------------------------------------------------------------
        prom_dir = os.path.join(TMP, "prometheus")
        os.makedirs(prom_dir, exist_ok=True)
        targets_file = os.path.join(prom_dir, "targets.json")
        # (component, process, pod name)
        pods = [("replay", replay, "prl-replay-0"), ("prior-server", prior, "prl-prior-server-0"),
                ("learner", learner, "prl-learner-0"), ("actor", actor, "prl-actor-0"),
                ("actor", lost_actor, "prl-actor-1")]
        groups = []
        for i, (component, p, pod) in enumerate(pods):
            port = p.metrics.rsplit(":", 1)[1]
            # pod discovery gives IP:containerPort, or the bare IP for a pod without ports.
            address = "127.0.0.1:8080" if i % 2 == 0 else "127.0.0.1"
            groups.append(monitoring_lib.kubernetes_pod_target(address, component, port, pod=pod))
        # pods that must be dropped: another application's, one that opts out, a pending one.
        groups.append(monitoring_lib.kubernetes_pod_target(
            "127.0.0.1", "replay", replay.metrics.rsplit(":", 1)[1], pod="other-0",
            part_of="other"))
        groups.append(monitoring_lib.kubernetes_pod_target(
            "127.0.0.1", "replay", replay.metrics.rsplit(":", 1)[1], pod="prl-quiet-0",
            scrape="false"))
        groups.append(monitoring_lib.kubernetes_pod_target(
            "127.0.0.1", "replay", replay.metrics.rsplit(":", 1)[1], pod="prl-pending-0",
            phase="Pending"))
        with open(targets_file, "w") as f:
            json.dump(groups, f, indent=2)
        with open(run("deploy/prometheus/prometheus-kubernetes.yml")) as f:
            config = monitoring_lib.kubernetes_config_as_file_sd(
                f.read(), targets_file, scrape_interval="1s",
                rules_file=run("deploy/prometheus/alerts.yml"))
        config_file = os.path.join(prom_dir, "prometheus.yml")
        with open(config_file, "w") as f:
            f.write(config)
        prom_port = free_port()
        prometheus = Process("prometheus", [
            prometheus_bin, "--config.file=" + config_file,
            "--storage.tsdb.path=" + os.path.join(prom_dir, "data"),
            "--web.listen-address=127.0.0.1:%d" % prom_port])
        processes.append(prometheus)
        prom = Prometheus(f"http://127.0.0.1:{prom_port}")

        def ready():
            if prometheus.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{prometheus.tail()}")
            try:
                http_get(prom.url + "/-/ready", timeout=2)
                return True
            except (urllib.error.URLError, OSError):
                return False

        if not wait_until("prometheus ready", ready, 60):
            raise Abort()

        # --- the Kubernetes relabeling, on the discovered targets ----------------------------
        want_jobs = {"prl-" + c for c, _, _ in pods}
        by_pod = {pod: (c, p) for c, p, pod in pods}

        def all_up():
            targets = prom.api("targets")["data"]["activeTargets"]
            return (len(targets) == len(pods) and
                    all(t["health"] == "up" for t in targets) and
                    prom.scalar("count(prl_build_info)") == len(pods))

        if not wait_until(f"Prometheus scrapes all {len(pods)} processes", all_up, 60):
            log(json.dumps(prom.api("targets")["data"], indent=1)[:4000])
            raise Abort()
        data = prom.api("targets")["data"]
        jobs = {t["labels"]["job"] for t in data["activeTargets"]}
        if jobs != want_jobs:
            fail(f"scrape jobs {sorted(jobs)}, want {sorted(want_jobs)}")
        for t in data["activeTargets"]:
            labels = t["labels"]
            if labels.get("pod") not in by_pod:
                fail(f"target labels {labels}: no pod label naming one of {sorted(by_pod)}")
                continue
            component, p = by_pod[labels["pod"]]
            if labels.get("namespace") != "prl" or labels.get("container") != component or \
                    labels.get("job") != "prl-" + component:
                fail(f"target labels {labels}: want job prl-{component}, namespace prl and "
                     f"container {component}")
            want_address = p.metrics
            if labels.get("instance") != want_address:
                fail(f"target {labels['job']} scraped at {labels.get('instance')}, want "
                     f"{want_address} (the prometheus.io/port annotation)")
        dropped = {t["discoveredLabels"].get("__meta_kubernetes_pod_name")
                   for t in data["droppedTargets"]}
        if dropped != {"other-0", "prl-quiet-0", "prl-pending-0"}:
            fail(f"dropped targets {sorted(x for x in dropped if x)}, want the 3 decoys")

        # --- training --------------------------------------------------------------------------
        spec_file = os.path.join(TMP, "monitoring_sac.textproto")
        with open(spec_file, "w") as f:
            f.write(SPEC)
        submitted = subprocess.run([run("cli/prlctl"), "--learner=" + learner.grpc, "submit",
                                    spec_file], capture_output=True, text=True, timeout=30)
        if submitted.returncode != 0:
            fail(f"prlctl submit: {submitted.stdout}{submitted.stderr}")
            raise Abort()
        exp = submitted.stdout.strip().split()[-1]
        log(f"submitted {exp}")
        checks = [
            ("env steps/s", "sum(rate(prl_actor_env_steps_total[5s]))"),
            ("replay table size", f'sum(prl_replay_table_size{{table="{exp}"}})'),
            ("learner updates", f'sum(prl_learner_updates_total{{experiment="{exp}"}})'),
            ("prior Decode calls/s", f'sum(rate(prl_prior_requests_total{{model="{PRIOR_MODEL}",'
                                     'method="Decode",code="OK"}[5s]))'),
        ]
        values = {}

        def training():
            for name, expr in checks:
                values[name] = prom.scalar(expr)
            return all(v > 0 for v in values.values())

        if not wait_until("training shows in Prometheus", training, 120):
            log(f"last values: {values}\nlearner log:\n{learner.tail()}\nactor log:\n"
                f"{actor.tail()}")
            raise Abort()
        log("through PromQL: " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
        # a few more scrapes while it trains, so every rate has data points that moved.
        time.sleep(3)

        # --- what the processes export ---------------------------------------------------------
        exported = set()
        for p in servers:
            exported |= monitoring_lib.exported_metric_names(
                http_get(f"http://{p.metrics}/metrics"))
        process_metrics = sorted(n for n in exported if n.startswith("process_"))
        log(f"{len(exported)} metric names exported; process_* metrics: "
            f"{process_metrics or 'none'}")
        known = exported | PROMETHEUS_METRICS

        def check_names(where, expr):
            unknown = sorted(monitoring_lib.metric_names(expr) - known)
            if unknown:
                fail(f"{where}: {unknown} not exported by any process: {expr}")

        # --- every panel of the dashboard --------------------------------------------------------
        with open(run("deploy/grafana/prl.json")) as f:
            dashboard = json.load(f)
        variables = {"experiment": exp, "__rate_interval": "10s", "__interval": "5s",
                     "__range": "5m", "datasource": "prometheus"}
        queries = monitoring_lib.dashboard_queries(dashboard)
        if not queries:
            fail("the dashboard has no queries")
        for title, ref, expr, _ in queries:
            where = f"panel '{title}' query {ref}"
            try:
                promql = monitoring_lib.substitute(expr, variables)
            except KeyError as e:
                fail(f"{where}: {e}")
                continue
            result, error = prom.query(promql)
            if error:
                fail(f"{where}: invalid: {error}: {promql}")
                continue
            check_names(where, expr)
            if not result:
                fail(f"{where}: no data: {promql}")
        log(f"{len(queries)} queries of {len(monitoring_lib.dashboard_panels(dashboard))} "
            "dashboard panels run")

        # the template variables
        for var in dashboard["templating"]["list"]:
            if var["type"] != "query":
                continue
            definition = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            if not (definition.startswith("label_values(") and definition.endswith(")")):
                fail(f"variable {var['name']}: unsupported query {definition}")
                continue
            metric, label = [s.strip() for s in
                             definition[len("label_values("):-1].split(",")]
            check_names(f"variable {var['name']}", metric)
            values_list = prom.api(f"label/{label}/values", **{"match[]": metric})["data"]
            if exp not in values_list:
                fail(f"variable {var['name']}: {definition} gives {values_list}, not {exp}")

        # --- the alert rules ---------------------------------------------------------------------
        time.sleep(2)  # an evaluation or two with data
        rules = [r for g in prom.api("rules")["data"]["groups"] for r in g["rules"]]
        if len(rules) < 9:
            fail(f"Prometheus loaded {len(rules)} rules from alerts.yml")
        for r in rules:
            if r.get("health") != "ok":
                fail(f"rule {r['name']}: health {r.get('health')}: {r.get('lastError')}")
            check_names(f"rule {r['name']}", r["query"])
            # label matchers that match nothing would leave the rule silent for ever.
            for selector in monitoring_lib.selectors_with_matchers(r["query"]):
                selector = monitoring_lib.without_negative_matchers(selector)
                result, error = prom.query(f"count({selector})")
                if error or not result:
                    fail(f"rule {r['name']}: {selector} matches no series ({error})")
            if r.get("state") == "firing":
                fail(f"rule {r['name']} fires: {r.get('alerts')}")
        log(f"{len(rules)} alert rules checked")

        traffic.stop()
        if traffic.errors:
            fail(f"{len(traffic.errors)} of {traffic.calls} prior calls failed; first: "
                 f"{traffic.errors[0]}")
        else:
            log(f"{traffic.calls} prior calls answered as expected")
    except Abort:
        pass  # already reported
    except Exception as e:  # noqa: BLE001: report, then stop the processes
        fail(f"{type(e).__name__}: {e}")
    finally:
        if traffic is not None:
            traffic.stop()
        for p in reversed(processes):
            p.terminate()
        for p in processes:
            p.stop()
        if failures:
            for p in processes:
                log(f"--- last lines of {p.name}.log ---\n{p.tail(15)}")
    log(f"{'FAILED' if failures else 'PASSED'} in {time.monotonic() - START:.0f} s")
    for f in failures:
        print("  - " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
