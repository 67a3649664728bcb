"""Compare Catch learning curves of our runs with the reference implementation's.

Usage: python benchmarks/fidelity_catch.py RESULTS_DIR [--reference DIR] [--png FILE]

Reads `RESULTS_DIR/catch/catch/<rule>/seed*/metrics.csv` and the reference curves
(`catch_<rule>_s*.csv` in ../shared/reference, columns step, env_steps, avg_return),
prints a markdown table of mean avg_return in 100-iteration blocks and the summary
numbers the fidelity criterion uses, and draws both on the same env-step axis.
"""

import argparse
import csv
import math
from pathlib import Path

import numpy as np


def read_curve(path: Path, x="env_steps", y="avg_return") -> tuple[np.ndarray, np.ndarray]:
  with open(path) as f:
    rows = list(csv.DictReader(f))
  xs = np.array([float(r[x]) for r in rows])
  ys = np.array([float(r[y]) if r[y] not in ("", "nan") else math.nan for r in rows])
  return xs, ys


def summarise(ys: np.ndarray) -> dict:
  blocks = [float(np.nanmean(ys[i : i + 100])) for i in range(0, len(ys), 100)]
  smooth = np.convolve(np.nan_to_num(ys, nan=-1.0), np.ones(50) / 50, mode="valid")
  # Report the last iteration of the first 50-iteration window with mean >= 0.5.
  first = next((i + 49 for i, v in enumerate(smooth) if v >= 0.5), None)
  return {"blocks": blocks, "last100": float(np.nanmean(ys[-100:])), "first_window_ge_0.5": first}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("results", type=Path)
  p.add_argument(
    "--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference"
  )
  p.add_argument("--png", type=Path)
  args = p.parse_args()
  curves = {}
  for f in sorted(args.reference.glob("catch_*_s*.csv")):
    curves[f"reference {f.stem[len('catch_') :]}"] = read_curve(f)
  for run in sorted((args.results / "catch" / "catch").glob("*/seed*")):
    curves[f"ours {run.parent.name}_{run.name}"] = read_curve(run / "metrics.csv")
  names = list(curves)
  n_blocks = max(len(summarise(curves[k][1])["blocks"]) for k in names)
  print("| iterations | " + " | ".join(f"`{k}`" for k in names) + " |")
  print("|---|" + "---|" * len(names))
  sums = {k: summarise(curves[k][1]) for k in names}
  for b in range(n_blocks):
    cells = [f"{sums[k]['blocks'][b]:+.3f}" if b < len(sums[k]["blocks"]) else "" for k in names]
    print(f"| {b * 100}-{b * 100 + 99} | " + " | ".join(cells) + " |")
  print()
  print(
    "| run | mean of last 100 iterations | first 50-iteration window with mean >= 0.5 (iteration, env steps) |"
  )
  print("|---|---|---|")
  for k in names:
    s = sums[k]
    f = s["first_window_ge_0.5"]
    where = "never" if f is None else f"{f} ({int(curves[k][0][f])} env steps)"
    print(f"| `{k}` | {s['last100']:+.3f} | {where} |")
  if args.png:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=150)
    for k in names:
      x, y = curves[k]
      sm = np.convolve(np.nan_to_num(y, nan=0.0), np.ones(20) / 20, mode="valid")
      ax.plot(
        x[19:],
        sm,
        lw=2.2 if k.startswith("reference") else 1.2,
        ls="--" if k.startswith("reference") else "-",
        label=k,
      )
    ax.set_xlabel("env steps")
    ax.set_ylabel("average episode return\n(trailing 20-iteration mean)")
    ax.set_title("Catch 8x8, reference example config")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.png)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
  main()
