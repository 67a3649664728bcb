"""``run --config FILE`` and ``plan --config FILE``: options from an experiment file.

The file's values (``disco_eval.config.experiment_file``) fill the options
left at their defaults on the command line; ``--set`` items are added after
the file's. ``run`` saves the resolved options (file and command line) as
an experiment file beside the results:
``<out>/experiments/<UTC time>-<suite>.toml``, which ``run --config``
runs again.
"""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer

from disco_eval import __version__, provenance
from disco_eval.config import experiment_file
from disco_eval.errors import UserError

EXPERIMENTS_DIR = "experiments"
ConfigOpt = typer.Option(
  "--config",
  help="Experiment file (TOML) with the options of this command; options given "
  "here win (--set items are added). See examples/experiment.toml.",
  metavar="FILE",
)
_PATHS = ("out_dir", "slurm_profile")


def _defaulted(ctx: typer.Context, name: str) -> bool:
  """Whether the command line left parameter `name` at its default."""
  source = ctx.get_parameter_source(name)
  return source is None or getattr(source, "name", "") in ("DEFAULT", "DEFAULT_MAP")


def resolve(ctx: typer.Context, config: Optional[Path], values: dict[str, Any]) -> dict[str, Any]:
  """`values` (the command's parameters) with those of the experiment file
  `config` where the command line left them at their defaults; the suite
  is required from one or the other."""
  values = dict(values)
  if config is not None:
    for name, value in experiment_file.load(config).items():
      if name not in values:  # e.g. launcher options, for `plan`
        continue
      if name in ("set_", "sweep"):
        values[name] = list(value) + list(values[name] or [])
      elif name == "suite":
        values["suite"] = values["suite"] or value
      elif _defaulted(ctx, name):
        values[name] = Path(value) if name in _PATHS else value
  if not values.get("suite"):
    raise UserError('name a SUITE, or give --config FILE with suite = "..." in it')
  return values


def save_resolved(values: dict[str, Any]) -> Path:
  """Writes the resolved options of `run` beside its results; the path."""
  from disco_eval.store import write_atomic  # here: the store's imports are not needed above

  now = datetime.now(timezone.utc)
  folder = Path(values["out_dir"]) / EXPERIMENTS_DIR
  path = folder / f"{now.strftime('%Y%m%dT%H%M%SZ')}-{values['suite']}.toml"
  header = (
    f"Resolved by disco-eval {__version__} on {now.isoformat(timespec='seconds')} from:\n"
    f"{provenance.command_line(provenance.command() or ['disco-eval', 'run'])}\n"
    "Run it again with: disco-eval run --config THIS_FILE"
  )
  kept = {k: v for k, v in values.items() if k not in ("ctx", "config", "as_json")}
  try:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, experiment_file.dumps(kept, header).encode())
  except OSError as e:
    raise UserError(
      f"cannot write {path} ({e.strerror}); pass --out DIR with a writable folder"
    ) from None
  return path
