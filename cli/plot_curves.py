"""Plots PRL learning curves: mean ± std over the experiments of each group, to a PNG.

Input: a CSV with columns group,experiment,env_steps,value (written by `prlctl plot`).
Usage: python3 plot_curves.py CSV OUTPUT_PNG TITLE YLABEL
"""

import collections
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    csv_path, output, title, ylabel = argv[1:]
    # group -> experiment -> {env_steps: value}
    curves = collections.defaultdict(lambda: collections.defaultdict(dict))
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            curves[row["group"]][row["experiment"]][int(row["env_steps"])] = float(row["value"])
    if not curves:
        print("plot_curves: no curve points to plot", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for group, runs in sorted(curves.items()):
        # runs take their points at slightly different env steps (rounds start when the step
        # count passes a multiple of the spacing): interpolate every run onto a common grid
        # over the range all runs cover
        series = [np.array(sorted(run.items()), dtype=float) for run in runs.values()]
        lo = max(s[0, 0] for s in series)
        hi = min(s[-1, 0] for s in series)
        count = max(2, int(np.median([len(s) for s in series])))
        xs = np.linspace(lo, hi, count) if hi > lo else np.array([lo])
        values = np.array([np.interp(xs, s[:, 0], s[:, 1]) for s in series])
        means, stds = values.mean(axis=0), values.std(axis=0)
        label = f"{group} ({len(runs)} run{'s' if len(runs) != 1 else ''})"
        (line,) = ax.plot(xs, means, label=label)
        if len(runs) > 1:
            ax.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
