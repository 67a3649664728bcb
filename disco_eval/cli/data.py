"""Command-line commands for data sets: ``data pull boxoban``.

Errors are ``UserError``s, which the main CLI prints as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from disco_eval.cli.helptext import Command, Group
from disco_eval.envs import boxoban
from disco_eval.errors import UserError

DATASETS = ("boxoban",)


def pull_command(
  name: Annotated[
    str, typer.Argument(help="Data set: " + ", ".join(DATASETS) + ".", metavar="NAME")
  ],
  source: Annotated[
    Optional[Path],
    typer.Option(
      "--from",
      help="Import a local copy (a folder laid out like the repository: "
      "unfiltered/{train,valid,test}/*.txt, hard/*.txt) instead of downloading.",
      metavar="FOLDER",
    ),
  ] = None,
  url: Annotated[
    Optional[str],
    typer.Option("--url", help="Download the archive from this URL instead.", metavar="URL"),
  ] = None,
  force: Annotated[
    bool,
    typer.Option("--force", help="Download (and convert) again even if the levels are cached."),
  ] = False,
) -> None:
  """Download (or import) a data set into the cache and convert it once."""
  if name != "boxoban":
    raise UserError(f"unknown data set '{name}'; data sets: {', '.join(DATASETS)}")
  if source is not None and not force and boxoban.cached_record() is not None:
    old = boxoban.cached_record() or {}
    counts = ", ".join(f"{k} {v.get('levels')}" for k, v in sorted(old.get("splits", {}).items()))
    raise UserError(
      f"Boxoban levels are already cached in {boxoban.data_dir()} (from "
      f"{old.get('source', '?')}: {counts}); pass --force to replace them with {source} "
      "(runs record the level set's sha256, so old and new runs are never pooled)"
    )
  cached = None if source is not None or force else boxoban.cached_record()
  if cached is not None:
    cached = boxoban.pull()  # nothing to convert; checks a cached archive's sha256
    typer.echo(
      f"Boxoban levels already cached in {boxoban.data_dir()} (from {cached.get('source', '?')}); "
      "nothing to do (--force downloads them again)"
    )
    _echo_splits(cached)
    return
  had_sha = "archive_sha256" in boxoban.read_record()
  record = boxoban.pull(source, url=url or boxoban.ARCHIVE_URL, force=force)
  if source is None:
    verb = "checked against the recorded" if had_sha else "recorded as the reference"
    typer.echo(f"archive sha256 {record.get('archive_sha256', '')} ({verb} sha256)")
  _echo_splits(record)


def _echo_splits(record: dict) -> None:
  """One line per cached split of the cache `record`."""
  for split, info in sorted(record.get("splits", {}).items()):
    typer.echo(
      f"{split}: {info['levels']} levels from {info['files']} files -> {boxoban.split_path(split)}"
    )


def register(app: typer.Typer) -> None:
  """Adds ``data pull`` to `app`."""
  data_app = typer.Typer(
    help="Data sets (level files) in the cache.", no_args_is_help=True, cls=Group
  )
  data_app.command("pull", cls=Command)(pull_command)
  app.add_typer(data_app, name="data")
