"""Client: a PRL learner's experiments (proto/experiment.proto's ExperimentService), their
learning curves, and optionally the prior server's models.

Every call has a deadline: the client's `timeout` (10 s by default), or a call's own `timeout=`;
watch() streams under `watch_timeout` (24 h by default). A failed call raises PrlError with the
gRPC status code and the server's message.

Thread-safe (one channel per server, immutable settings); close() it, or use it as a context
manager.
"""

import grpc
import pandas as pd

from prl import v1
from prl._channel import DEFAULT_MAX_MESSAGE_BYTES, Connection, check_timeout
from prl.curves import CURVE_COLUMNS, curve_frame, plot_curves
from prl.errors import PrlError
from prl.prior import PriorClient
from prl.specs import to_spec
from prl.watch import watch_experiment

TERMINAL_STATES = (v1.EXPERIMENT_STATE_SUCCEEDED, v1.EXPERIMENT_STATE_FAILED,
                   v1.EXPERIMENT_STATE_STOPPED)


def state_name(state):
    """A state's short name: "RUNNING" for v1.EXPERIMENT_STATE_RUNNING, and so on."""
    return v1.ExperimentState.Name(state).removeprefix("EXPERIMENT_STATE_")


def _state_number(state):
    if isinstance(state, str):
        name = state.upper()
        if not name.startswith("EXPERIMENT_STATE_"):
            name = "EXPERIMENT_STATE_" + name
        try:
            number = v1.ExperimentState.Value(name)
        except ValueError:
            number = None
    elif isinstance(state, int) and not isinstance(state, bool):
        number = state if state in v1.ExperimentState.values() else None
    else:
        number = None
    if not number:  # unknown, or UNSPECIFIED (rejected by the server)
        allowed = [state_name(s) for s in v1.ExperimentState.values() if s]
        raise ValueError(f"unknown experiment state {state!r}; use one of {allowed}")
    return number


def _check_id(experiment_id):
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError(f"experiment id must be a non-empty str, got {experiment_id!r}")
    return experiment_id


class Client:
    """A client of one PRL learner (and, with prior_address, of a prior server).

    Args:
      address: HOST:PORT of prl_learner (the local cluster's default is 127.0.0.1:50052).
      token: bearer token for mutating calls (Submit, Stop; LoadModel and UnloadModel on the
        prior server) when the servers require one. None: $PRL_AUTH_TOKEN when set, as prlctl
        does; "": none.
      tls: False for plaintext; True to verify the server with the system's roots; a path to
        PEM CA certificates, or their bytes.
      tls_server_name: the name to expect in the server's certificate, when not the host.
      timeout: default deadline of each call, in seconds.
      watch_timeout: default deadline of a watch() stream, in seconds.
      prior_address: HOST:PORT of prl_prior_server for models(), load_model() and
        unload_model() (same token, TLS and timeout); or use a PriorClient.
    """

    def __init__(self, address="127.0.0.1:50052", *, token=None, tls=False,
                 tls_server_name=None, timeout=10.0, watch_timeout=24 * 3600.0,
                 prior_address=None, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES):
        self._conn = Connection(address, token=token, tls=tls, tls_server_name=tls_server_name,
                                timeout=timeout, max_message_bytes=max_message_bytes)
        self.watch_timeout = check_timeout(watch_timeout, "watch_timeout")
        self._stub = v1.ExperimentServiceStub(self._conn.channel)
        self.prior = None
        if prior_address is not None:
            self.prior = PriorClient(prior_address, token=token, tls=tls,
                                     tls_server_name=tls_server_name, timeout=timeout,
                                     max_message_bytes=max_message_bytes)

    @property
    def address(self):
        return self._conn.address

    def close(self):
        """Closes the channels; calls after it fail."""
        self._conn.close()
        if self.prior is not None:
            self.prior.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def health(self, timeout=None):
        """The learner's health status, "SERVING" when it is ready."""
        return self._conn.health(timeout=timeout)

    # --- experiments ---------------------------------------------------------------------------

    def submit(self, spec, *, seed=None, max_env_steps=None, labels=None, timeout=None):
        """Submits an experiment and returns its id.

        spec: a path to a text-format spec (examples/*.textproto), a dict (field names as in
          proto/experiment.proto, enums by name), or a prl.v1.ExperimentSpec.
        seed: as prlctl submit --seed: sets env.seed and algorithm.seed and the label "seed"
          (so runs over seeds group by name and plot as mean ± std).
        max_env_steps: overrides stop.max_env_steps.
        labels: merged into the spec's labels.
        Raises SpecError when the spec does not parse here, PrlError INVALID_ARGUMENT naming
        the field when the learner rejects it, UNAUTHENTICATED without the learner's token.
        """
        message = to_spec(spec)
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be an int >= 0, got {seed!r}")
            message.env.seed = seed
            message.algorithm.seed = seed
            message.labels["seed"] = str(seed)
        if max_env_steps is not None:
            if isinstance(max_env_steps, bool) or not isinstance(max_env_steps, int) \
                    or max_env_steps <= 0:
                raise ValueError(f"max_env_steps must be an int > 0, got {max_env_steps!r}")
            message.stop.max_env_steps = max_env_steps
        for key, value in (labels or {}).items():
            message.labels[key] = value
        request = v1.SubmitRequest(spec=message)
        return self._conn.call("Submit", self._stub.Submit, request, timeout).id

    def get(self, experiment_id, include_curve=False, timeout=None):
        """The prl.v1.Experiment `experiment_id`, with its learning curve when include_curve.
        NOT_FOUND when the learner does not know it."""
        request = v1.GetRequest(id=_check_id(experiment_id), include_curve=include_curve)
        return self._conn.call("Get", self._stub.Get, request, timeout).experiment

    def list(self, states=None, *, page_size=100, timeout=None):
        """Every experiment (prl.v1.Experiment, newest first, curves left empty), following
        the pages; `states` keeps those in the given states (names such as "RUNNING", or
        v1.EXPERIMENT_STATE_* values). Each page is one call with its own deadline."""
        if isinstance(states, (str, int)):
            states = [states]
        numbers = [_state_number(s) for s in (states or [])]
        if isinstance(page_size, bool) or not isinstance(page_size, int) \
                or not 1 <= page_size <= 1000:
            raise ValueError(f"page_size must be an int in 1..1000, got {page_size!r}")
        experiments, token = [], ""
        while True:
            request = v1.ListRequest(states=numbers, page_size=page_size, page_token=token)
            response = self._conn.call("List", self._stub.List, request, timeout)
            experiments.extend(response.experiments)
            token = response.next_page_token
            if not token:
                return experiments

    def experiments(self, states=None, timeout=None):
        """list() as a DataFrame, one row per experiment: id, name, kind, state, env_steps,
        updates, latest_eval_return, fraction_done, submit_time, end_reason, failure_reason."""
        rows = []
        for e in self.list(states, timeout=timeout):
            p = e.progress
            rows.append({
                "id": e.id, "name": e.spec.name,
                "kind": v1.ExperimentSpec.Kind.Name(e.spec.kind).removeprefix("KIND_"),
                "state": state_name(e.state), "env_steps": p.env_steps, "updates": p.updates,
                "latest_eval_return": p.latest_eval_return if p.eval_rounds > 0 else float("nan"),
                "fraction_done": p.fraction_done,
                "submit_time": pd.Timestamp(e.submit_time.ToDatetime(), tz="UTC")
                if e.HasField("submit_time") else pd.NaT,
                "end_reason": e.end_reason, "failure_reason": e.failure_reason,
            })
        columns = ["id", "name", "kind", "state", "env_steps", "updates", "latest_eval_return",
                   "fraction_done", "submit_time", "end_reason", "failure_reason"]
        return pd.DataFrame(rows, columns=columns)

    def evaluations(self, experiment_ids=None, timeout=None):
        """The results of EVALUATE experiments as a DataFrame, one row per experiment: id,
        name, state, policy_experiment, policy_version, policy_env_steps, translator ("name vN",
        "" without one), episodes, mean_return, std_return, min_return, max_return,
        success_rate, mean_length. `experiment_ids` (one id or a list) picks experiments (each
        must be an EVALUATE, else ValueError); None takes every EVALUATE on the learner. Rows of
        experiments that have not finished have NaN results and 0 episodes."""
        if experiment_ids is None:
            experiments = [e for e in self.list(timeout=timeout)
                           if e.spec.kind == v1.ExperimentSpec.KIND_EVALUATE]
        else:
            if isinstance(experiment_ids, str):
                experiment_ids = [experiment_ids]
            experiments = [self.get(i, timeout=timeout) for i in experiment_ids]
            for e in experiments:
                if e.spec.kind != v1.ExperimentSpec.KIND_EVALUATE:
                    raise ValueError(f"{e.id} is a "
                                     f"{v1.ExperimentSpec.Kind.Name(e.spec.kind)} experiment, "
                                     "not KIND_EVALUATE")
        columns = ["id", "name", "state", "policy_experiment", "policy_version",
                   "policy_env_steps", "translator", "episodes", "mean_return", "std_return",
                   "min_return", "max_return", "success_rate", "mean_length"]
        rows = []
        for e in experiments:
            r = e.outputs.evaluation
            done = e.outputs.HasField("evaluation")
            nan = float("nan")
            t = r.translator if r.HasField("translator") else e.spec.evaluate.translator
            rows.append({
                "id": e.id, "name": e.spec.name, "state": state_name(e.state),
                "policy_experiment": r.policy.experiment_id if done
                else e.spec.evaluate.policy.experiment_id,
                "policy_version": r.policy.version if done else e.spec.evaluate.policy.version,
                "policy_env_steps": r.policy_env_steps,
                "translator": f"{t.name} v{t.version}" if t.name else "",
                "episodes": r.episodes,
                "mean_return": r.mean_return if done else nan,
                "std_return": r.std_return if done else nan,
                "min_return": r.min_return if done else nan,
                "max_return": r.max_return if done else nan,
                "success_rate": r.success_rate if done else nan,
                "mean_length": r.mean_length if done else nan,
            })
        return pd.DataFrame(rows, columns=columns)

    def datasets(self, name=None, timeout=None):
        """The learner's stored datasets (written by COLLECT experiments) as a DataFrame, one
        row per dataset: name, version, path (on the learner's machine), content_hash,
        size_bytes, transitions, episodes, terminated_episodes, obs_dim, action_dim,
        experiment_id, create_time. `name` keeps that one (NOT_FOUND when it is not stored).
        Files of the store the learner could not read are in the frame's attrs["problems"]."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"dataset name must be a non-empty str, got {name!r}")
        request = v1.ListDatasetsRequest(name=name or "")
        response = self._conn.call("ListDatasets", self._stub.ListDatasets, request, timeout)
        columns = ["name", "version", "path", "content_hash", "size_bytes", "transitions",
                   "episodes", "terminated_episodes", "obs_dim", "action_dim", "experiment_id",
                   "create_time"]
        rows = [{
            "name": d.name, "version": d.version, "path": d.path,
            "content_hash": d.content_hash, "size_bytes": d.size_bytes,
            "transitions": d.transitions, "episodes": d.episodes,
            "terminated_episodes": d.terminated_episodes, "obs_dim": d.obs_dim,
            "action_dim": d.action_dim, "experiment_id": d.experiment_id,
            "create_time": pd.Timestamp(d.create_time.ToDatetime(), tz="UTC")
            if d.HasField("create_time") else pd.NaT,
        } for d in response.datasets]
        frame = pd.DataFrame(rows, columns=columns)
        frame.attrs["problems"] = list(response.problems)
        return frame

    def stop(self, experiment_id, reason="", timeout=None):
        """Stops a queued or running experiment (idempotent for ended ones) and returns it.
        `reason` is recorded as its end_reason ("stopped by user" when empty)."""
        request = v1.StopRequest(id=_check_id(experiment_id), reason=reason)
        return self._conn.call("Stop", self._stub.Stop, request, timeout).experiment

    def watch(self, experiment_id, *, progress=False, min_interval=None, timeout=None):
        """An iterator of prl.v1.Experiment snapshots of `experiment_id`: the current one at
        once, then one per change (at most one per min_interval seconds, default 1, at least
        0.1), ending after one in a terminal state. With progress=True a tqdm bar follows it
        (env steps of the stop condition, steps/s, updates, evaluation return, policy version).
        Breaking out of the loop cancels the stream.

        Raises PrlError while iterating: NOT_FOUND for an unknown id, DEADLINE_EXCEEDED when
        `timeout` (default: the client's watch_timeout) passes first.
        """
        request = v1.WatchRequest(id=_check_id(experiment_id))
        if min_interval is not None:
            request.min_interval_ms = max(100, int(check_timeout(min_interval,
                                                                 "min_interval") * 1000))
        timeout = self.watch_timeout if timeout is None else check_timeout(timeout)
        return watch_experiment(self._conn, self._stub, request, progress, timeout)

    def wait(self, experiment_id, *, progress=False, timeout=None):
        """Follows `experiment_id` until it ends (see watch) and returns its last snapshot."""
        last = None
        for last in self.watch(experiment_id, progress=progress, timeout=timeout):
            pass
        if last is None or last.state not in TERMINAL_STATES:
            raise PrlError(grpc.StatusCode.UNAVAILABLE,
                           f"the watch of {experiment_id} ended before the experiment did",
                           "Watch", self.address)
        return last

    # --- learning curves -------------------------------------------------------------------------

    def curve(self, experiment_id, *, group_by="name", timeout=None):
        """The learning curve of one experiment as a DataFrame: experiment, name, group (see
        curves), env_steps, elapsed_seconds, updates, train_return, train_episodes,
        eval_return, eval_episodes, eval_success_rate (proto/experiment.proto's CurvePoint;
        returns are NaN where no episode stands behind them)."""
        return curve_frame(self.get(experiment_id, include_curve=True, timeout=timeout),
                           group_by)

    def curves(self, experiment_ids, *, group_by="name", timeout=None):
        """The curves of several experiments in one DataFrame (columns as curve()). `group`
        is what plot() averages over: the spec's name (group_by="name", prlctl's default), or
        the value of the label group_by ("(no LABEL)" where it is missing)."""
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        frames = [self.curve(i, group_by=group_by, timeout=timeout) for i in experiment_ids]
        if not frames:
            raise ValueError("give at least one experiment id")
        frames = [f for f in frames if not f.empty] or frames[:1]
        return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]

    def plot(self, experiment_ids, path=None, *, metric="eval", group_by="name", title=None,
             timeout=None):
        """Plots the learning curves of `experiment_ids` as `prlctl plot` does: mean ± std
        over the experiments of each group (see curves), of the evaluation return
        (metric="eval") or the training return ("train"). Writes a PNG to `path` when given;
        returns the matplotlib Figure. ValueError when no experiment has a point yet."""
        return plot_curves(self.curves(experiment_ids, group_by=group_by, timeout=timeout),
                           path, metric=metric, title=title)

    # --- the prior server ------------------------------------------------------------------------

    def _prior_client(self):
        if self.prior is None:
            raise ValueError("this Client has no prior server: pass prior_address= (or use "
                             "prl.PriorClient)")
        return self.prior

    def models(self, name=None, include_unloaded=True, timeout=None):
        """PriorClient.models on the prior server at prior_address."""
        return self._prior_client().models(name, include_unloaded, timeout=timeout)

    def load_model(self, name, source=None, **kwargs):
        """PriorClient.load_model on the prior server at prior_address."""
        return self._prior_client().load_model(name, source, **kwargs)

    def unload_model(self, name, version=0, timeout=None):
        """PriorClient.unload_model on the prior server at prior_address."""
        return self._prior_client().unload_model(name, version, timeout=timeout)
