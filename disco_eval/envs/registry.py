"""Environment backends by suite backend name (a suite manifest's ``backend``).

``BACKENDS`` maps each backend name to a :class:`Backend`: its factory of
tasks (which imports the backend's module only when a task of that backend
is made, so a suite's optional packages are needed only by that suite) and
the packages it needs, checked first so that a missing one is reported with
its fix. Every backend module has ``make_task(suite, task) -> EnvSpec`` (the
contracts are in :mod:`disco_eval.envs.base`); the pure-JAX backend picks
the module by task family (``JAX_TASKS``).

Adding a host-stepped backend: a module with ``make_task`` and one
``BACKENDS`` entry (an EnvPool suite: one ``ENVPOOL_SUITES`` entry); adding a pure-JAX task family: a module with
``make_task`` and one ``JAX_TASKS`` entry.
"""

import dataclasses
import importlib
from typing import Any, Callable

from disco_eval.envs.base import EnvSpec
from disco_eval.errors import UserError


def _require(module: str, fix: str) -> Callable[[], None]:
  """A check raising UserError naming `fix` when `module` cannot be imported."""

  def check() -> None:
    try:
      importlib.import_module(module)
    except ImportError as e:
      raise UserError(f"cannot import {module} ({e}); {fix}") from None

  return check


def _require_envpool() -> None:
  try:
    import envpool  # noqa: F401
  except (ImportError, OSError) as e:
    if "Qt5" in str(e) or "libQt" in str(e):
      raise UserError(
        f"envpool needs the Qt5 runtime ({e}); install it with `apt-get install libqt5gui5`"
      ) from None
    raise UserError(f"cannot import envpool ({e}); pip install envpool==1.2.5") from None


def _from_module(module: str) -> Callable[[Any, str], EnvSpec]:
  """A factory calling ``make_task`` of `module`, imported on first use."""

  def make_task(suite: Any, task: str) -> EnvSpec:
    return importlib.import_module(module).make_task(suite, task)

  return make_task


# EnvPool suites by suite name: the module (with ``make_task``) of each.
ENVPOOL_SUITES = {"procgen": "disco_eval.envs.procgen", "atari": "disco_eval.envs.atari"}


def _envpool_task(suite: Any, task: str) -> EnvSpec:
  """A task of an EnvPool suite, from the suite's module (``ENVPOOL_SUITES``)."""
  return importlib.import_module(ENVPOOL_SUITES[suite.name]).make_task(suite, task)


@dataclasses.dataclass(frozen=True)
class JaxFamily:
  """A family of pure-JAX tasks: its module (with ``make_task``) and whether
  it has its own final evaluation (``evaluate_protocol(protocol, apply_fn,
  params, rng)``, e.g. Sokoban's fixed level splits)."""

  module: str
  own_evaluation: bool = False


# Pure-JAX tasks by family: the task's name, or its name up to the first "-" and "-".
JAX_TASKS = {
  "catch": JaxFamily("disco_eval.envs.catch"),
  "boxoban-": JaxFamily("disco_eval.envs.sokoban", own_evaluation=True),
  "minatar-": JaxFamily("disco_eval.envs.minatar"),
  "craftax-classic-symbolic": JaxFamily("disco_eval.envs.craftax", own_evaluation=True),
  "craftax-classic-pixels": JaxFamily("disco_eval.envs.craftax_pixels", own_evaluation=True),
}


def jax_family(task: str) -> JaxFamily | None:
  """The family of a pure-JAX task (``JAX_TASKS``), or None."""
  prefix = task[: task.index("-") + 1] if "-" in task else task
  return JAX_TASKS.get(task, JAX_TASKS.get(prefix))


def _make_jax(suite: Any, task: str) -> EnvSpec:
  family = jax_family(task)
  if family is None:
    raise _no_backend(suite, task)
  return importlib.import_module(family.module).make_task(suite, task)


@dataclasses.dataclass(frozen=True)
class Backend:
  """How one backend makes its tasks.

  Attributes:
    make: ``make(suite, task) -> EnvSpec`` (imports the backend's module).
    requires: checks run first (each raises a UserError naming the fix).
    suites: the suites this backend serves (empty: every suite naming it).
  """

  make: Callable[[Any, str], EnvSpec]
  requires: tuple[Callable[[], None], ...] = ()
  suites: tuple[str, ...] = ()


BACKENDS = {
  "jax": Backend(_make_jax),
  "envpool": Backend(_envpool_task, (_require_envpool,), suites=tuple(ENVPOOL_SUITES)),
  "crafter": Backend(
    _from_module("disco_eval.envs.crafter"),
    (
      _require("crafter", "pip install crafter==1.8.3"),
      _require("numba", "pip install numba (crafter's world generation is ~20x slower without it)"),
    ),
  ),
  "nle": Backend(
    _from_module("disco_eval.envs.nethack"), (_require("nle", "pip install nle==1.3.0"),)
  ),
}


def _no_backend(suite: Any, task: str) -> UserError:
  return UserError(
    f"no backend for task '{task}' of suite '{suite.name}' "
    f"(backend '{suite.backend}') in this version of disco-eval"
  )


def make(suite: Any, task: str) -> EnvSpec:
  """An environment (:class:`~disco_eval.envs.base.JaxEnv`) or host task
  (:class:`~disco_eval.envs.base.HostTask`) for `task` of `suite` (a
  SuiteManifest)."""
  backend = BACKENDS.get(suite.backend)
  if backend is None or (backend.suites and suite.name not in backend.suites):
    raise _no_backend(suite, task)
  for check in backend.requires:
    check()
  return backend.make(suite, task)


def evaluate(
  suite: Any, task: str, protocol: Any, apply_fn: Any, params: Any, rng: Any
) -> tuple[Any, dict[str, Any]] | None:
  """A protocol's own final evaluation, or None for the trainer's generic one.

  Returns the per-episode returns and extra summary fields (e.g. Sokoban
  protocols naming ``eval_levels`` play each level of that split once).
  """
  family = jax_family(task) if suite.backend == "jax" else None
  if family is None or not family.own_evaluation:
    return None
  return importlib.import_module(family.module).evaluate_protocol(protocol, apply_fn, params, rng)
