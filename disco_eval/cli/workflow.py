"""``reproduce``, ``evaluate``, ``render`` and ``export tensorboard``: a recorded run, revisited."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from disco_eval.cli.common import err, esc, out, print_json
from disco_eval.cli.helptext import Command

RunArg = Annotated[
  Path,
  typer.Argument(help="A run folder: <out>/<suite>/<task>/<rule>/seed<k>.", metavar="RUN_DIR"),
]

REPRODUCE_EXAMPLES = """Examples:

  disco-eval reproduce results/catch/catch/disco103/seed0 --out reproduced
"""
EVALUATE_EXAMPLES = """Examples:

  disco-eval evaluate results/catch/catch/disco103/seed0 --episodes 1000
"""
RENDER_EXAMPLES = """Examples:

  disco-eval render results/catch/catch/disco103/seed0 --out catch.gif --episodes 3

  disco-eval render results/crafter/crafter/disco103/seed0 --out crafter.mp4 --fps 15
"""
TENSORBOARD_EXAMPLES = """Examples:

  disco-eval export tensorboard results && tensorboard --logdir results
"""


def register(app: typer.Typer) -> None:
  """Adds ``reproduce``, ``evaluate`` and ``render`` to `app`."""
  app.command("reproduce", cls=Command, epilog=REPRODUCE_EXAMPLES)(reproduce)
  app.command("evaluate", cls=Command, epilog=EVALUATE_EXAMPLES)(evaluate)
  app.command("render", cls=Command, epilog=RENDER_EXAMPLES)(render)


def _say(line: str) -> None:
  err.print(esc(line), highlight=False, soft_wrap=True)


def reproduce(
  run_dir: RunArg,
  out_dir: Annotated[
    Path, typer.Option("--out", help="Results folder of the new run.", metavar="FOLDER")
  ] = Path("reproduced"),
  force: Annotated[
    bool,
    typer.Option("--force", help="Train it although the code or the data differ from the run's."),
  ] = False,
  allow_cpu: Annotated[
    bool, typer.Option("--allow-cpu", help="Train on the CPU of a machine with a GPU.")
  ] = False,
):
  """Train a recorded run again with exactly its configuration, and compare the records."""
  from disco_eval import launch, runtime  # here, not at the top: they load jax
  from disco_eval.cli.run import _launch_sweep
  from disco_eval.runs import reproduce as rep

  recorded = (rep.read_config(run_dir).get("runtime") or {}).get("deterministic", False)
  runtime.apply_determinism(bool(recorded))
  runtime.check_backend(allow_cpu)
  rebuilt, notes = rep.prepare(run_dir, out_dir, force)
  for line in notes:
    _say(line)
  results = _launch_sweep(rebuilt.spec, launch.LaunchOptions(launcher="local"), out)
  new = results[0]
  if new.status != "complete":
    _say(f"error: the new run is {new.status}: {new.error or ''}".rstrip(": "))
    raise typer.Exit(1)
  same = rep.compare_records(run_dir, new.path)
  metrics = same["metrics"] or f"identical ({same['rows']} rows)"
  summary = "identical" if same["summary"] is None else "differs in " + ", ".join(same["summary"])
  out.print(f"new run: {esc(new.path)}", highlight=False)
  out.print(f"metrics.csv: {esc(metrics)}", highlight=False)
  out.print(f"summary.json: {esc(summary)} (train_wall_s aside)", highlight=False)


def evaluate(
  run_dir: RunArg,
  episodes: Annotated[
    Optional[int],
    typer.Option(
      help="Fresh episodes to play (default: the protocol's eval_episodes).", metavar="N"
    ),
  ] = None,
  as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
):
  """Evaluate a finished run's final policy again, on fresh episodes (summary.json is kept)."""
  from disco_eval.runs.evaluate import evaluate_run  # here, not at the top: it loads jax

  doc, path, note = evaluate_run(run_dir, episodes)
  if note:
    _say(f"note: the run's config differs from what this code makes of it: {note}")
  if as_json:
    return print_json(doc)
  out.print(
    f"{doc['episodes']} episodes: score {doc['score']:+.4f} ({doc['metric']}), mean return "
    f"{doc['mean_return']:+.4f} +/- {doc['return_std']:.4f} (std), median "
    f"{doc['median_return']:+.4f}; training's final evaluation: {doc['training_score']}",
    highlight=False,
  )
  out.print(f"wrote {esc(path)}", highlight=False)


def render(
  run_dir: RunArg,
  out_file: Annotated[
    Path, typer.Option("--out", help="The video: a .gif or an .mp4 file.", metavar="FILE")
  ],
  episodes: Annotated[int, typer.Option(help="Episodes to record.", metavar="N")] = 1,
  fps: Annotated[float, typer.Option(help="Frames per second.", metavar="N")] = 8.0,
  max_steps: Annotated[int, typer.Option(help="At most this many steps.", metavar="N")] = 2000,
):
  """Record episodes of a finished run's final policy as a GIF or MP4 (its observations)."""
  from disco_eval.runs.video import render_run  # here, not at the top: it loads jax

  frames, note = render_run(run_dir, out_file, episodes, fps, max_steps)
  if note:
    _say(f"note: the run's config differs from what this code makes of it: {note}")
  out.print(f"wrote {esc(out_file)}: {frames} frames, {episodes} episode(s)", highlight=False)


def export_tensorboard_command(
  root: Annotated[Path, typer.Argument(help="Results folder.", metavar="DIR")] = Path("results"),
):
  """Write TensorBoard event files for runs already made (in <run>/tensorboard/)."""
  from disco_eval.track import export_tensorboard

  written, problems = export_tensorboard(root)
  for line in problems:
    _say(f"skipped {line}")
  out.print(
    f"wrote the TensorBoard logs of {len(written)} run(s) under {esc(root)} "
    f"(<run>/tensorboard/); view them with: tensorboard --logdir {esc(root)}",
    highlight=False,
  )
