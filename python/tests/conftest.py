"""Fixtures: a real PRL cluster on loopback (prl_replay, prl_prior_server, prl_learner and one
prl_actor, every one on a port the OS picks, all requiring the bearer token TOKEN on mutating
calls), clients of it, and the paths of PRL's binaries and test data.

Binaries are looked up under $PRL_BIN_DIR (the Bazel test sets it to its runfiles), else in
the checkout's Bazel output (.bazel/bin, then the fastbuild and opt trees under .bazel/out,
after `bazel build //...`); test data and examples under $PRL_SOURCE_DIR, else the checkout. A
missing binary fails the test that needs it, naming it.
"""

import os
import signal
import subprocess
import time

import pytest

import prl

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(os.path.dirname(HERE))
BIN_DIRS = ([os.environ["PRL_BIN_DIR"]] if os.environ.get("PRL_BIN_DIR") else
            [os.path.join(CHECKOUT, ".bazel", *parts)
             for parts in (("bin",), ("out", "k8-fastbuild", "bin"), ("out", "k8-opt", "bin"))])
SOURCE_DIR = os.environ.get("PRL_SOURCE_DIR") or CHECKOUT

TOKEN = "python-client-test-token"

# A SAC run that ends in seconds: short cheetah episodes, tiny networks, an evaluation round
# every 800 env steps.
TINY_SAC = """
name: "py-tiny-sac"
kind: KIND_TRAIN
env { domain: DOMAIN_CHEETAH task: "run_forward" episode_length: 50 seed: 1 }
algorithm {
  sac {}
  network { hidden_sizes: [ 16, 16 ] }
  batch_size: 16
  warmup_env_steps: 200
}
replay { capacity: 10000 min_size_to_sample: 200 samples_per_insert: 8 }
resources { num_actors: 1 envs_per_actor: 2 }
stop { max_env_steps: 8000 }
evaluation { every_env_steps: 800 episodes: 1 }
"""


def binary(package_path):
    """The path of a PRL binary, e.g. binary("learner/prl_learner")."""
    for directory in BIN_DIRS:
        path = os.path.join(directory, package_path)
        if os.access(path, os.X_OK):
            return path
    pytest.fail(f"{package_path} is not in {BIN_DIRS}: build it (bazel build "
                f"//{os.path.dirname(package_path)}:{os.path.basename(package_path)}) or set "
                "PRL_BIN_DIR", pytrace=False)


def source(path):
    """The path of a file of the checkout, e.g. source("tests/data/...")."""
    return os.path.join(SOURCE_DIR, path)


class Server:
    """A PRL server process with its output in <dir>/<name>.log; `address` is its gRPC
    HOST:PORT once ready (its PRL_READY line)."""

    def __init__(self, name, argv, log_dir, env=None):
        self.name = name
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.address = None

    def wait_ready(self, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log_path, errors="replace") as f:
                for line in f:
                    if line.startswith("PRL_READY "):
                        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
                        self.address = fields["grpc"]
                        return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")

    def tail(self, n=30):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Cluster:
    """The servers, started in dependency order and stopped in reverse."""

    def __init__(self, root):
        self.root = root
        self.servers = []
        self.env = dict(os.environ, PRL_AUTH_TOKEN=TOKEN, OMP_NUM_THREADS="1",
                        OMP_WAIT_POLICY="PASSIVE")
        self.model_dir = os.path.join(root, "learner", "models")
        os.makedirs(self.model_dir)

    def start(self, name, argv):
        server = Server(name, argv, self.root, self.env)
        self.servers.append(server)
        return server.wait_ready()

    def logs(self):
        return "\n".join(f"--- {s.name}.log ---\n{s.tail()}" for s in self.servers)

    def stop(self):
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """A replay shard, a prior server over the learner's model store, the learner and one
    actor with two envs; every one requires TOKEN on mutating calls."""
    c = Cluster(str(tmp_path_factory.mktemp("cluster")))
    try:
        c.replay = c.start("replay", [binary("replay/prl_replay"), "--port=0",
                                      "--metrics_port=-1"]).address
        c.prior = c.start("prior_server", [
            binary("prior_server/prl_prior_server"), "--port=0", "--metrics_port=-1",
            f"--prior_model_dir={c.model_dir}"]).address
        c.learner = c.start("learner", [
            binary("learner/prl_learner"), "--port=0", "--metrics_port=-1",
            f"--learner_state_dir={os.path.join(c.root, 'learner')}", "--learner_device=cpu",
            f"--learner_replay={c.replay}", f"--learner_prior_address={c.prior}",
            "--learner_torch_threads=1", "--learner_heartbeat_interval=1s"]).address
        c.actor = c.start("actor", [
            binary("actor/prl_actor"), "--port=0", "--metrics_port=-1",
            f"--actor_learner={c.learner}", "--actor_num_envs=2",
            "--actor_name=python-client-test"]).address
    except BaseException:
        c.stop()
        raise
    yield c
    c.stop()


@pytest.fixture(scope="session")
def client(cluster):
    """A Client of the cluster's learner and prior server, with the token."""
    with prl.Client(cluster.learner, token=TOKEN, prior_address=cluster.prior,
                    timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def sac_experiment(client):
    """The id of TINY_SAC, submitted with seed 1 at the start of the session (it runs while
    other tests do)."""
    return client.submit(prl.parse_spec(TINY_SAC), seed=1)


def collect(tmp_path, name, *args):
    """Runs prl_collect with `args`; returns the dataset path."""
    path = str(tmp_path / f"{name}.hdf5")
    result = subprocess.run([binary("actor/collect/prl_collect"), *args, f"--output={path}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def maze_file(tmp_path_factory):
    """Planner episodes on a point maze: terminals, and infos goal/qpos/qvel."""
    return collect(tmp_path_factory.mktemp("maze"), "maze", "--domain=point_maze",
                   "--collector=planner", "--episodes=6", "--num_envs=2", "--seed=5",
                   "--action_noise=0.1", "--randomize_start_goal")


@pytest.fixture(scope="module")
def cheetah_file(tmp_path_factory):
    """Random cheetah episodes of 40 steps: timeouts."""
    tmp = tmp_path_factory.mktemp("cheetah")
    env = tmp / "env.textproto"
    env.write_text("domain: DOMAIN_CHEETAH\nepisode_length: 40\nseed: 9\n")
    return collect(tmp, "cheetah", f"--env_spec={env}", "--collector=random", "--episodes=3",
                   "--num_envs=2", "--seed=9")
