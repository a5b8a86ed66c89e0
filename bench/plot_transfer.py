"""Success-rate curves of transfer runs by method, for docs/results.md.

Input: the CSV `prlctl plot --csv` writes (group,experiment,env_steps,value), the evaluation
return of each run, which on the sparse-reward maze is its success rate. Transfer runs stop once
every evaluation episode succeeds (stop.target_return 1), so a run whose last point reached the
target keeps that value up to the longest run of its method, as does a run that used the whole
budget (its last point within 1% of the longest run's); a run stopped by hand ends where it
ended. Prints, per method, the env steps at which each run first
reached `--threshold` (0.8).

Usage: python3 bench/plot_transfer.py CSV OUTPUT_PNG [--target 1.0] [--threshold 0.8] [--title T]
           [--ylabel L] [--ylim LO,HI | --ylim auto]

For returns rather than success rates (e.g. the cheetah study): --target inf --threshold 2000
--ylabel "evaluation return" --ylim auto.
"""

import argparse
import collections
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("output")
    parser.add_argument("--target", type=float, default=1.0)
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--title", default="held-out maze: success rate by method")
    parser.add_argument("--ylabel", default="success rate (evaluation)")
    parser.add_argument("--ylim", default="-0.05,1.05", help="LO,HI or auto")
    args = parser.parse_args()

    runs = collections.defaultdict(lambda: collections.defaultdict(dict))
    with open(args.csv, newline="") as f:
        for row in csv.DictReader(f):
            runs[row["group"]][row["experiment"]][int(row["env_steps"])] = float(row["value"])
    if not runs:
        print("plot_transfer: no points", file=sys.stderr)
        return 1

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for group, by_run in sorted(runs.items()):
        series = [np.array(sorted(points.items()), dtype=float) for points in by_run.values()]
        hi = max(s[-1, 0] for s in series)
        lo = min(s[0, 0] for s in series)
        xs = np.linspace(lo, hi, 50)
        values = []
        reached = []
        for s in series:
            # a run that reached the target, or ran to (within 1% of) its method's longest run,
            # keeps its last value; one cut short ends where it ended
            done = s[-1, 1] >= args.target or s[-1, 0] >= 0.99 * hi
            ys = np.interp(xs, s[:, 0], s[:, 1])
            ys[xs > s[-1, 0]] = s[-1, 1] if done else np.nan
            values.append(ys)
            hits = s[s[:, 1] >= args.threshold]
            reached.append(int(hits[0, 0]) if len(hits) else None)
        values = np.array(values)
        means = np.nanmean(values, axis=0)
        stds = np.nanstd(values, axis=0)
        label = f"{group} ({len(series)} run{'s' if len(series) != 1 else ''})"
        # a method whose runs all stopped at their first evaluation spans almost no env steps:
        # mark its points, or its line would be invisible
        short = hi - lo < 1000
        (line,) = ax.plot(xs[[0, -1]] if short else xs, means[[0, -1]] if short else means,
                          label=label, marker="o" if short else None)
        if len(series) > 1:
            ax.fill_between(xs, means - stds, means + stds, color=line.get_color(), alpha=0.2)
        shown = ", ".join("never" if r is None else f"{r:,}" for r in reached)
        got = [r for r in reached if r is not None]
        mean = f"{np.mean(got):,.0f} over {len(got)}/{len(reached)} runs" if got else "none"
        print(f"{group}: env steps to {args.threshold:g} per run: {shown} (mean {mean})")
    ax.set_xlabel("env steps")
    ax.set_ylabel(args.ylabel)
    if args.ylim != "auto":
        lo, hi = (float(v) for v in args.ylim.split(","))
        ax.set_ylim(lo, hi)
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
