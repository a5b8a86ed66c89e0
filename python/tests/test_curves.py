"""Curve frames and their plot without a server: the grouping and mean ± std of prlctl plot."""

import math

import numpy as np
import pandas as pd
import pytest

import prl


def experiment(eid, name, points, labels=None):
    """A prl.v1.Experiment with curve points (env_steps, eval_return, eval_episodes)."""
    e = prl.v1.Experiment(id=eid)
    e.spec.name = name
    e.spec.labels.update(labels or {})
    for steps, value, episodes in points:
        e.curve.add(env_steps=steps, eval_return=value, eval_episodes=episodes,
                    train_return=value / 2, train_episodes=3, elapsed_seconds=steps / 100,
                    updates=steps // 2)
    return e


def frame():
    return pd.concat([
        prl.curve_frame(experiment("exp-1", "a", [(0, 0, 1), (100, 10, 1), (200, 20, 1)],
                                   {"seed": "1"})),
        # a point without an evaluation round, and a repeated env step (the last one counts)
        prl.curve_frame(experiment("exp-2", "a", [(50, 99, 1), (50, 15, 1), (120, 7, 0),
                                                  (150, 25, 1), (250, 35, 1)], {"seed": "2"})),
        prl.curve_frame(experiment("exp-3", "b", [(0, 1, 1), (300, 4, 1)])),
    ], ignore_index=True)


def test_curve_frame_columns_and_missing_values():
    f = prl.curve_frame(experiment("exp-9", "run", [(10, 1.5, 2), (20, 0, 0)], {"m": "x"}),
                        group_by="m")
    assert list(f.columns) == prl.curves.CURVE_COLUMNS
    assert f["group"].tolist() == ["x", "x"] and f["experiment"].tolist() == ["exp-9"] * 2
    assert f["eval_return"][0] == 1.5 and math.isnan(f["eval_return"][1])
    assert math.isnan(f["eval_success_rate"][1])
    assert f["env_steps"].dtype == np.int64
    empty = prl.curve_frame(experiment("exp-0", "none", []))
    assert list(empty.columns) == prl.curves.CURVE_COLUMNS and len(empty) == 0
    assert prl.curves.group_of(experiment("e", "n", []), "seed") == "(no seed)"


def test_mean_and_std_over_runs_on_a_common_grid():
    stats = prl.curves.group_statistics(frame())
    xs, mean, std, runs = stats["a"]
    # the range both runs cover (50..200), as many points as the median run (3 each)
    np.testing.assert_allclose(xs, [50, 125, 200])
    # run 1 at the grid: 5, 12.5, 20; run 2: 15, 22.5, 30
    np.testing.assert_allclose(mean, [10, 17.5, 25])
    np.testing.assert_allclose(std, [5, 5, 5])
    assert runs == 2
    xs, mean, std, runs = stats["b"]
    np.testing.assert_allclose(xs, [0, 300])
    np.testing.assert_allclose(mean, [1, 4])
    assert runs == 1 and not std.any()
    train = prl.curves.group_statistics(frame(), "train")
    assert train["a"][3] == 2  # every point has training episodes


def test_plot_curves_draws_a_band_per_group_with_runs(tmp_path):
    path = tmp_path / "c.png"
    fig = prl.plot_curves(frame(), str(path), title="my runs")
    assert path.read_bytes()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (2 runs)", "b (1 run)"]
    assert len(ax.collections) == 1  # the ± std band of group a only
    assert ax.get_title() == "my runs" and ax.get_ylabel() == "mean return"
    by_seed = frame().assign(group=lambda f: f["experiment"])
    assert len(prl.plot_curves(by_seed).axes[0].get_lines()) == 3
    with pytest.raises(ValueError, match="no curve points"):
        prl.plot_curves(frame().assign(eval_episodes=0))
    with pytest.raises(ValueError, match="lacks the curve columns"):
        prl.plot_curves(pd.DataFrame({"x": [1]}))


def test_messages_belong_to_the_package_and_pickle():
    import pickle

    assert prl.v1.Experiment.__module__ == "prl._proto.experiment_pb2"
    e = experiment("exp-7", "p", [(1, 2.0, 1)], {"k": "v"})
    assert pickle.loads(pickle.dumps(e)) == e


def test_errors_pickle():
    import pickle

    import grpc

    for error in (prl.PrlError(grpc.StatusCode.NOT_FOUND, "no exp-1", "Get", "h:1"),
                  prl.SpecError("a.textproto:1:2: bad")):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
        assert back.code == error.code and back.details == error.details
