"""Learning curves as pandas DataFrames, and their plot: mean ± std over the runs of each
group, the way `prlctl plot` draws them (cli/plot_curves.py)."""

import math

import numpy as np
import pandas as pd

# the columns of a curve frame, in order: who, then proto/experiment.proto's CurvePoint
CURVE_COLUMNS = [
    "experiment", "name", "group", "env_steps", "elapsed_seconds", "updates", "train_return",
    "train_episodes", "eval_return", "eval_episodes", "eval_success_rate",
]

METRICS = {"eval": ("eval_return", "eval_episodes", "evaluation return"),
           "train": ("train_return", "train_episodes", "training return")}


def group_of(experiment, group_by="name"):
    """The group of an experiment as prlctl plot --group_by has it: its spec's name for
    "name", otherwise the value of that label, or "(no LABEL)" when it has none."""
    if group_by == "name":
        return experiment.spec.name
    labels = experiment.spec.labels
    return labels[group_by] if group_by in labels else f"(no {group_by})"


def curve_frame(experiment, group_by="name"):
    """The learning curve of a prl.v1.Experiment (fetched with its curve) as a DataFrame with
    CURVE_COLUMNS, one row per CurvePoint. Returns meaningless while no episode stands behind
    them (train_episodes or eval_episodes 0) are NaN, and so is eval_success_rate then."""
    rows = []
    name, group = experiment.spec.name, group_of(experiment, group_by)
    for p in experiment.curve:
        rows.append((
            experiment.id, name, group, p.env_steps, p.elapsed_seconds, p.updates,
            p.train_return if p.train_episodes > 0 else math.nan, p.train_episodes,
            p.eval_return if p.eval_episodes > 0 else math.nan, p.eval_episodes,
            p.eval_success_rate if p.eval_episodes > 0 else math.nan,
        ))
    frame = pd.DataFrame.from_records(rows, columns=CURVE_COLUMNS)
    return frame.astype({"env_steps": "int64", "updates": "int64", "train_episodes": "int64",
                         "eval_episodes": "int64", "elapsed_seconds": "float64",
                         "train_return": "float64", "eval_return": "float64",
                         "eval_success_rate": "float64"})


def group_statistics(frame, metric="eval"):
    """{group: (env_steps, mean, std, runs)} of a curve frame: per group, every run's points
    that have the metric interpolated onto a common grid over the env-step range all its runs
    cover (as many points as the median run has, at least 2), then the mean and the population
    std over the runs at each grid point."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    value, episodes, _ = METRICS[metric]
    missing = [c for c in ("experiment", "group", "env_steps", value, episodes)
               if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks the curve columns {missing} (see curve_frame)")
    points = frame[frame[episodes] > 0]
    result = {}
    for group, runs in sorted(points.groupby("group"), key=lambda item: str(item[0])):
        series = []
        for _, run in runs.groupby("experiment"):
            # the last value taken at an env step wins, as in prlctl's CSV
            by_step = run.drop_duplicates("env_steps", keep="last").sort_values("env_steps")
            series.append(np.column_stack([by_step["env_steps"].to_numpy(dtype=float),
                                           by_step[value].to_numpy(dtype=float)]))
        lo = max(s[0, 0] for s in series)
        hi = min(s[-1, 0] for s in series)
        count = max(2, int(np.median([len(s) for s in series])))
        xs = np.linspace(lo, hi, count) if hi > lo else np.array([lo])
        values = np.array([np.interp(xs, s[:, 0], s[:, 1]) for s in series])
        result[group] = (xs, values.mean(axis=0), values.std(axis=0), len(series))
    return result


def plot_curves(frame, path=None, metric="eval", title=None):
    """Plots a curve frame (curve_frame, Client.curves): one line per group, the mean over its
    runs with a ± std band when it has more than one, env steps on x. Writes a PNG to `path`
    when given and returns the matplotlib Figure (shown inline by notebooks).

    Raises ValueError when no row has the metric (no evaluation round or training episode
    yet) or for an unknown metric ("eval" or "train").
    """
    from matplotlib.figure import Figure

    stats = group_statistics(frame, metric)
    if not stats:
        raise ValueError(f"the experiments have no curve points with a {METRICS[metric][2]} "
                         "yet")
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    for group, (xs, means, stds, runs) in stats.items():
        (line,) = ax.plot(xs, means, label=f"{group} ({runs} run{'s' if runs != 1 else ''})")
        if runs > 1:
            ax.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return")
    ax.set_title(title if title is not None else METRICS[metric][2])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
