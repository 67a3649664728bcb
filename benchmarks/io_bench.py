"""Checkpoint and metrics I/O costs on this machine (docs/benchmarks.md).

  PYTHONPATH=. python3 benchmarks/io_bench.py [--dir FOLDER] [--gb 1.5] [--rows 200000]
  PYTHONPATH=. python3 benchmarks/io_bench.py --levels 900000   # Sokoban's table, compiled

Writes under FOLDER (default: the system's temp folder; pass one on the disk
the results go to) and deletes what it wrote. Prints one JSON object.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from disco_eval.bench.io import checkpoint_bench, level_table_bench, metrics_bench


def main(argv: list[str]) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
  p.add_argument("--gb", type=float, default=1.5, help="checkpointed state, GB")
  p.add_argument("--rows", type=int, default=200_000, help="metrics rows already written")
  p.add_argument("--chunk", type=int, default=50, help="metrics rows added per chunk")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--levels", type=int, help="instead: compile a Sokoban loop with N levels")
  args = p.parse_args(argv)
  if args.levels:
    return print(json.dumps(level_table_bench(args.levels), indent=2))
  args.dir.mkdir(parents=True, exist_ok=True)
  out = {
    "metrics": metrics_bench(args.dir, args.rows, args.chunk, args.repeats),
    "checkpoint": checkpoint_bench(args.dir, args.gb, args.repeats),
  }
  print(json.dumps(out, indent=2))


if __name__ == "__main__":
  main(sys.argv[1:])
