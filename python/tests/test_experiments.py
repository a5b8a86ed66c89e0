"""prl.Client against a real learner: submit in every form, bad specs, list/get/stop, watch to
the end of a tiny SAC run, its curve as a DataFrame and as a plot, auth and deadlines."""

import math
import os
import socket
import threading
import time

import grpc
import numpy as np
import pandas as pd
import pytest

import prl
from conftest import TOKEN

# a spec that is valid and would run for long: the tests stop it
LONG_SAC = {
    "name": "py-long-sac",
    "kind": "KIND_TRAIN",
    "labels": {"method": "sac"},
    "env": {"domain": "DOMAIN_CHEETAH", "task": "run_forward", "episode_length": 100},
    "algorithm": {"sac": {}, "network": {"hidden_sizes": [16, 16]}, "batch_size": 16},
    "stop": {"max_env_steps": 10_000_000},
}


def test_watch_follows_a_run_to_its_end(client, sac_experiment, capsys):
    snapshots = list(client.watch(sac_experiment, progress=True, min_interval=0.2))
    assert snapshots, "watch yielded nothing"
    last = snapshots[-1]
    assert last.state == prl.v1.EXPERIMENT_STATE_SUCCEEDED, (last.state, last.failure_reason)
    assert last.end_reason == "max_env_steps reached"
    assert last.progress.env_steps >= 8000
    assert any(s.state == prl.v1.EXPERIMENT_STATE_RUNNING for s in snapshots), \
        "no RUNNING snapshot: the watch did not follow the run"
    steps = [s.progress.env_steps for s in snapshots]
    assert steps == sorted(steps), f"env steps went backwards: {steps}"
    assert all(s.id == sac_experiment for s in snapshots)
    # the progress bar: state, steps against the limit, updates, policy version
    err = capsys.readouterr().err
    assert "SUCCEEDED" in err and "/8000" in err and "updates" in err, err[-500:]
    # watching an ended experiment gives its final snapshot and ends
    again = list(client.watch(sac_experiment))
    assert len(again) == 1 and again[0].state == prl.v1.EXPERIMENT_STATE_SUCCEEDED
    assert client.wait(sac_experiment).state == prl.v1.EXPERIMENT_STATE_SUCCEEDED


def test_curve_is_a_dataframe_of_the_curve_points(client, sac_experiment):
    client.wait(sac_experiment)
    frame = client.curve(sac_experiment)
    assert list(frame.columns) == prl.curves.CURVE_COLUMNS
    # an evaluation round every 800 of 8000 env steps; a round reaches the actors a report and a
    # heartbeat (about 2 s) after it is due, so a run that outpaces that skips some: 8000 steps
    # last several seconds even on a fast machine
    assert len(frame) >= 2, frame
    assert (frame["experiment"] == sac_experiment).all()
    assert (frame["name"] == "py-tiny-sac").all() and (frame["group"] == "py-tiny-sac").all()
    assert frame["env_steps"].dtype == np.int64 and frame["eval_return"].dtype == np.float64
    assert frame["env_steps"].is_monotonic_increasing
    evaluated = frame[frame["eval_episodes"] > 0]
    assert len(evaluated) >= 2 and evaluated["eval_return"].notna().all()
    assert frame.loc[frame["eval_episodes"] == 0, "eval_return"].isna().all()
    assert (frame["updates"] > 0).any() and (frame["elapsed_seconds"] > 0).all()
    # the same points as Get with include_curve
    raw = client.get(sac_experiment, include_curve=True).curve
    assert [p.env_steps for p in raw] == frame["env_steps"].tolist()


def test_curves_group_by_name_or_label(client, sac_experiment):
    client.wait(sac_experiment)
    by_name = client.curves([sac_experiment])
    assert list(by_name.columns) == prl.curves.CURVE_COLUMNS
    assert set(by_name["group"]) == {"py-tiny-sac"}
    # submitted with seed=1: the label "seed" is "1"
    assert set(client.curves([sac_experiment], group_by="seed")["group"]) == {"1"}
    assert set(client.curves(sac_experiment, group_by="method")["group"]) == {"(no method)"}


def test_plot_writes_a_png(client, sac_experiment, tmp_path):
    client.wait(sac_experiment)
    path = tmp_path / "curves.png"
    fig = client.plot([sac_experiment], str(path))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > 5000
    ax = fig.axes[0]
    assert ax.get_xlabel() == "env steps" and ax.get_title() == "evaluation return"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["py-tiny-sac (1 run)"]
    train = client.plot([sac_experiment], tmp_path / "train.png", metric="train")
    assert train.axes[0].get_title() == "training return"
    with pytest.raises(ValueError, match="metric"):
        client.plot([sac_experiment], metric="loss")


def test_submit_a_path_a_dict_and_a_message(client, tmp_path):
    path = tmp_path / "long.textproto"
    message = prl.to_spec(LONG_SAC)
    path.write_text(str(message))
    ids = [client.submit(str(path)), client.submit(path), client.submit(LONG_SAC),
           client.submit(message, labels={"form": "message"})]
    assert len(set(ids)) == 4 and all(i.startswith("exp-") for i in ids)
    try:
        for i in ids:
            e = client.get(i)
            assert e.id == i and e.spec.name == "py-long-sac"
            assert e.spec.labels["method"] == "sac"
            assert e.state in (prl.v1.EXPERIMENT_STATE_QUEUED, prl.v1.EXPERIMENT_STATE_RUNNING)
            # the learner stores the spec with its defaults filled in
            assert e.spec.algorithm.discount > 0
        assert client.get(ids[3]).spec.labels["form"] == "message"
        listed = {e.id: e for e in client.list()}
        assert set(ids) <= set(listed)
        assert [e.id for e in client.list(page_size=1)] == list(listed)  # pages followed
    finally:
        for i in ids:
            client.stop(i, reason="stopped by the python client test")
    for i in ids:
        e = client.get(i)
        assert e.state == prl.v1.EXPERIMENT_STATE_STOPPED
        assert e.end_reason == "stopped by the python client test"
    stopped = {e.id for e in client.list(states=["STOPPED"])}
    assert set(ids) <= stopped
    assert not set(ids) & {e.id for e in client.list(prl.v1.EXPERIMENT_STATE_SUCCEEDED)}
    frame = client.experiments()
    assert {"id", "name", "state", "env_steps"} <= set(frame.columns)
    assert set(frame.loc[frame["id"].isin(ids), "state"]) == {"STOPPED"}
    # stop is idempotent for ended experiments
    assert client.stop(ids[0]).state == prl.v1.EXPERIMENT_STATE_STOPPED


def test_bad_spec_raises_invalid_argument_naming_the_field(client):
    bad = dict(LONG_SAC, algorithm=dict(LONG_SAC["algorithm"], batch_size=-5))
    with pytest.raises(prl.PrlError) as raised:
        client.submit(bad)
    e = raised.value
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT and e.code_name == "INVALID_ARGUMENT"
    assert "algorithm.batch_size" in e.details and e.method == "Submit"
    assert e.target == client.address and "INVALID_ARGUMENT" in str(e)
    with pytest.raises(prl.PrlError) as raised:
        client.submit({"name": "no-kind"})
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "kind" in raised.value.details


def test_spec_problems_found_locally(client, tmp_path):
    with pytest.raises(prl.SpecError) as raised:
        client.submit({"name": "x", "no_such_field": 1})
    assert "no_such_field" in str(raised.value)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    broken = tmp_path / "broken.textproto"
    broken.write_text('name: "x"\nkind: KIND_TRAIN\nenv { domain: DOMAIN_NOPE }\n')
    with pytest.raises(prl.SpecError, match=r"broken\.textproto:3:\d+: .*DOMAIN_NOPE"):
        client.submit(broken)
    with pytest.raises(prl.SpecError) as raised:
        client.submit(tmp_path / "missing.textproto")
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(raised.value, ValueError)
    with pytest.raises(TypeError):
        client.submit(42)
    with pytest.raises(ValueError, match="seed"):
        client.submit(LONG_SAC, seed=-1)
    # an example spec of the repository parses
    from conftest import source
    spec = prl.read_spec_file(source("examples/cheetah_sac.textproto"))
    assert spec.name == "cheetah-sac" and spec.kind == prl.v1.ExperimentSpec.KIND_TRAIN


def test_get_and_stop_unknown_id_are_not_found(client):
    for call in (client.get, client.stop):
        with pytest.raises(prl.PrlError) as raised:
            call("exp-999999")
        assert raised.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(prl.PrlError) as raised:
        list(client.watch("exp-999999"))
    assert raised.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ValueError):
        client.get("")
    with pytest.raises(ValueError, match="unknown experiment state"):
        client.list(states=["SLEEPING"])


def test_wrong_or_missing_token_is_unauthenticated(cluster):
    for token in ("wrong-token", ""):
        with prl.Client(cluster.learner, token=token, prior_address=cluster.prior) as c:
            with pytest.raises(prl.PrlError) as raised:
                c.submit(LONG_SAC)
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED, raised.value
            with pytest.raises(prl.PrlError) as raised:
                c.stop("exp-000001")
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(prl.PrlError) as raised:
                c.load_model("nope", b"bytes")
            assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
            c.list()  # read-only calls need no token
            assert c.health() == "SERVING"
    # the token also comes from $PRL_AUTH_TOKEN, as for prlctl
    old = os.environ.get("PRL_AUTH_TOKEN")
    os.environ["PRL_AUTH_TOKEN"] = TOKEN
    try:
        with prl.Client(cluster.learner) as c:
            with pytest.raises(prl.PrlError) as raised:
                c.stop("exp-999999")
            assert raised.value.code == grpc.StatusCode.NOT_FOUND  # past the token check
    finally:
        if old is None:
            del os.environ["PRL_AUTH_TOKEN"]
        else:
            os.environ["PRL_AUTH_TOKEN"] = old


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: every call on it waits for its
    deadline."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "127.0.0.1:%d" % listener.getsockname()[1]
    stop.set()
    thread.join()
    for s in accepted:
        s.close()
    listener.close()


def test_every_call_has_a_deadline(client, silent_server):
    with prl.Client(silent_server, timeout=0.5, watch_timeout=0.5,
                    prior_address=silent_server) as c:
        calls = [c.list, lambda: c.get("exp-000001"), lambda: c.submit(LONG_SAC),
                 lambda: c.stop("exp-000001"), lambda: list(c.watch("exp-000001")),
                 c.models, c.health]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(prl.PrlError) as raised:
                call()
            elapsed = time.monotonic() - start
            assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED, raised.value
            assert 0.3 < elapsed < 5, elapsed
        # a call's own timeout overrides the default
        start = time.monotonic()
        with pytest.raises(prl.PrlError) as raised:
            c.list(timeout=0.2)
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 0.45
    with pytest.raises(ValueError, match="timeout"):
        prl.Client(silent_server, timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        client.list(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        client.get("exp-000001", timeout=math.inf)
    # a watch of an experiment that does not end stops at its deadline
    running = client.submit(LONG_SAC)
    try:
        start = time.monotonic()
        with pytest.raises(prl.PrlError) as raised:
            for _ in client.watch(running, timeout=1.0):
                pass
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - start < 5
    finally:
        client.stop(running)


def test_nothing_listening_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with prl.Client(f"127.0.0.1:{port}", timeout=5) as c:
        with pytest.raises(prl.PrlError) as raised:
            c.list()
        assert raised.value.code == grpc.StatusCode.UNAVAILABLE


def test_train_prior_on_a_dataset_written_by_the_package(client, tmp_path):
    """A TRAIN_PRIOR run reads an HDF5 file prl.write_dataset wrote (the learner's C++ reader)
    and trains a flow into the learner's model store; the prior server, serving that store,
    loads it by name."""
    rng = np.random.default_rng(3)
    n = 400
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    dataset = prl.Dataset(
        observations=obs, actions=np.tanh(obs[:, :2] + 0.1 * rng.normal(size=(n, 2))),
        rewards=np.zeros(n), terminals=np.arange(n) % 50 == 49,
        metadata=prl.DatasetMetadata(collector="python test", seed=3))
    path = dataset.write(tmp_path / "flow.hdf5")
    experiment = client.submit({
        "name": "py-flow-prior", "kind": "KIND_TRAIN_PRIOR",
        "prior_training": {"kind": "PRIOR_KIND_REAL_NVP_FLOW", "dataset": str(path),
                           "output_model": "py-flow", "max_steps": 30,
                           "batch_size": 32, "num_coupling_layers": 2,
                           "network": {"hidden_sizes": [16]}, "seed": 1}})
    done = client.wait(experiment, timeout=120)
    assert done.state == prl.v1.EXPERIMENT_STATE_SUCCEEDED, done.failure_reason
    assert done.outputs.prior_model.name == "py-flow" and done.outputs.prior_model.version == 1
    listed = client.models("py-flow")
    assert [(m.name, m.version, m.loaded) for m in listed] == [("py-flow", 1, False)]
    assert listed[0].dataset == str(path) and listed[0].dataset_hash.startswith("sha256:")
    info = client.load_model("py-flow")  # from the server's model directory, newest version
    assert (info.name, info.version) == ("py-flow", 1)
    assert info.kind == prl.v1.PRIOR_KIND_REAL_NVP_FLOW
    assert info.obs_dim == 4 and info.action_dim == 2
    assert [m.loaded for m in client.models("py-flow")] == [True]
    # the published flow answers through the client
    z = rng.normal(size=(5, 2)).astype(np.float32)
    actions, log_det = client.prior.forward("py-flow", z, obs[:5])
    assert actions.shape == (5, 2) and log_det.shape == (5,)
    back, _ = client.prior.inverse("py-flow", actions, obs[:5])
    np.testing.assert_allclose(back, z, atol=1e-3)


def test_experiments_frame_is_empty_for_a_filter_without_matches(client):
    frame = client.experiments(states=["FAILED"])
    assert isinstance(frame, pd.DataFrame) and len(frame) == 0
    assert "state" in frame.columns


def test_datasets_lists_what_a_collect_experiment_stored(client):
    """A COLLECT experiment (the maze planner, on the fixture's actor) stores a dataset;
    datasets() lists it with its hash and counts; an unknown name is NOT_FOUND."""
    experiment = client.submit({
        "name": "py-collect", "kind": "KIND_COLLECT",
        "env": {"domain": "DOMAIN_POINT_MAZE", "task": "reach_goal", "episode_length": 200,
                "seed": 5},
        "resources": {"num_actors": 1, "envs_per_actor": 1},
        "collect": {"collector": "COLLECTOR_SCRIPTED", "num_episodes": 2,
                    "output_dataset": "py-maze"}})
    done = client.wait(experiment, timeout=120)
    assert done.state == prl.v1.EXPERIMENT_STATE_SUCCEEDED, done.failure_reason
    frame = client.datasets()
    assert "py-maze" in list(frame["name"])
    row = frame[frame["name"] == "py-maze"].iloc[0]
    assert row["episodes"] >= 2 and row["transitions"] > 0
    assert row["content_hash"].startswith("sha256:") and row["experiment_id"] == experiment
    assert (row["obs_dim"], row["action_dim"]) == (4, 2)
    assert frame.attrs["problems"] == []
    assert list(client.datasets("py-maze")["name"]) == ["py-maze"]
    with pytest.raises(prl.PrlError) as error:
        client.datasets("no-such-dataset")
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_evaluate_a_trained_policy(client, sac_experiment):
    client.wait(sac_experiment)
    spec = {
        "name": "py-evaluate", "kind": "KIND_EVALUATE",
        "env": {"domain": "DOMAIN_CHEETAH", "task": "run_forward", "episode_length": 50,
                "dynamics": {"mass_scale": 1.5}},
        "resources": {"num_actors": 1, "envs_per_actor": 2},
        "evaluate": {"policy": {"experiment_id": sac_experiment}, "episodes": 3},
    }
    evaluation = client.submit(spec)
    last = client.wait(evaluation, timeout=120)
    assert last.state == prl.v1.EXPERIMENT_STATE_SUCCEEDED, (last.failure_reason, last.end_reason)
    frame = client.evaluations(evaluation)
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["policy_experiment"] == sac_experiment and row["policy_version"] > 0
    assert row["episodes"] == 3 and row["mean_length"] == 50 and row["translator"] == ""
    assert row["min_return"] <= row["mean_return"] <= row["max_return"]
    assert row["std_return"] >= 0 and math.isfinite(row["mean_return"])
    assert evaluation in set(client.evaluations()["id"])
    with pytest.raises(ValueError, match="not KIND_EVALUATE"):
        client.evaluations(sac_experiment)

