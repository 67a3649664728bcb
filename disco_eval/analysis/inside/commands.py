"""The work of ``disco-eval analyze bootstrap|traces|probes``: read, compute, write ``--out``.

Each function returns the lines the command prints; bad input is a UserError naming the fix.
"""

import glob
import os
from pathlib import Path

import jax
import numpy as np

from disco_eval.analysis.inside import golden, probes, run_state, sensitivity, traces, write
from disco_eval.errors import UserError
from disco_eval.rules import variants, weights

GOLDEN_ENV = "DISCO_EVAL_GOLDEN"  # a glob of golden files, when no --run is given


def _golden_files(pattern: str | None) -> list[Path]:
  pattern = pattern or os.environ.get(GOLDEN_ENV)
  if not pattern:
    raise UserError(
      "no run and no golden files given; pass --run RUN_DIR or --golden 'FOLDER/*.npz'"
    )
  files = sorted(Path(p) for p in glob.glob(pattern) if p.endswith(".npz"))
  if not files:
    raise UserError(
      f"no golden files match {pattern}; pass --run RUN_DIR or --golden 'FOLDER/*.npz'"
    )
  return files


def _pool(per_file: list[dict]) -> dict:
  """Golden files of different T: pad each [T, T+1, B] array to the longest, NaN outside."""
  steps = max(next(iter(s.values())).shape[0] for s in per_file)
  pooled = {}
  for key in per_file[0]:
    parts = []
    for s in per_file:
      a = s[key]
      pad = np.full((steps, steps + 1, a.shape[2]), np.nan)
      pad[: a.shape[0], : a.shape[1]] = a
      parts.append(pad)
    pooled[key] = np.concatenate(parts, axis=2)
  return pooled


def _nanmean_curves(s: dict, probes_n: int) -> sensitivity.Curves:
  first = next(iter(s.values()))
  steps, length, _ = first.shape
  ks = np.arange(length)
  mean, count = {}, np.zeros(length, np.int64)
  for key, arr in s.items():
    m = np.full(length, np.nan)
    for k in ks:
      vals = np.concatenate([arr[t, t + k] for t in range(steps) if t + k < length] or [[]])
      vals = vals[np.isfinite(vals)]
      if vals.size:
        m[k] = float(vals.mean())
        count[k] = vals.size
    mean[key] = m
  return sensitivity.Curves(ks, mean, count, probes_n)


def bootstrap(
  rule_spec: str,
  run_dir: Path | None,
  out: Path,
  golden_glob: str | None = None,
  trajectories: int = 4,
  probes_n: int = 2,
  seed: int = 0,
) -> list[str]:
  """Sensitivity curves of the targets to the predictions at t+k (see analysis.inside.sensitivity)."""
  fmt = write.out_format(out)
  rule = weights.resolve_rule(rule_spec, download=False)
  if rule.manifest.kind != "disco":
    raise UserError(
      f"rule '{rule.label}' is not of Disco103's architecture (kind '{rule.manifest.kind}'); "
      "pass a disco rule, NAME:VARIANT or PATH.npz"
    )
  if run_dir is not None:
    run = run_state.load_run(run_dir)
    length = run.cfg.learner_batch_shape[0]
    rollout = run_state.collect(run, seed, trajectories, length)
    inp = run_state.meta_inputs(run, rollout)
    s = sensitivity.sensitivity(
      rule.params, run_state.meta_state(run), inp, run.rule_obj.cfg, rule.variant, probes_n, seed
    )
    where = f"{trajectories} fresh trajectories of {length} steps of the agent of {run_dir} at {run.env_steps:,} env steps"
    curves = sensitivity.curves(s, probes_n)
  else:
    files = _golden_files(golden_glob)
    per_file = []
    for f in files:
      inp, state, cfg = golden.golden_inputs(f)
      per_file.append(
        sensitivity.sensitivity(rule.params, state, inp, cfg, rule.variant, probes_n, seed)
      )
    curves = _nanmean_curves(_pool(per_file), probes_n)
    where = f"the golden inputs ({len(files)} files: {', '.join(f.name for f in files)})"
  caption = [
    f"rule {rule.label}"
    + (f" ({variants.VARIANTS[rule.variant]}; {variants.SOURCE})" if rule.variant else ""),
    f"on {where}",
    "||d X_t / d P_(t+k)||_F for target X and prediction P (online and target copies), "
    f"mean over t and trajectories, {probes_n} Gaussian probes per target",
  ]
  header = ["k", "pairs"] + [f"{x}_hat<-{p}" for x, p in curves.mean]
  rows = [
    [int(k), int(curves.count[i])] + [float(v[i]) for v in curves.mean.values()]
    for i, k in enumerate(curves.k)
  ]
  if fmt == "csv":
    data = write.csv_bytes(header, rows, caption)
  else:
    series = {
      "y target <- y": curves.mean[("y", "y")],
      "z target <- z": curves.mean[("z", "z")],
      "policy target <- y": curves.mean[("pi", "y")],
      "policy target <- z": curves.mean[("pi", "z")],
    }
    data = write.curves_figure(curves.k, series, caption, fmt)
  write.write(out, data)
  first = {h: rows[1][i] for i, h in enumerate(header)} if len(rows) > 1 else {}
  return [f"wrote {out}", "; ".join(caption)] + (
    ["k=1: " + ", ".join(f"{h} {v:.4g}" for h, v in first.items() if "<-" in h)] if first else []
  )


def _trace_rollout(run, seed: int, steps: int):
  rollout = run_state.collect(run, seed, 1, steps)
  try:
    traces.first_episode(rollout)
  except ValueError:
    raise UserError(
      f"no episode of the agent of {run.path} ended within {steps} steps; pass a larger --steps"
    ) from None
  return rollout


def trace(run_dir: Path, out: Path, seed: int = 0, steps: int = 1000) -> list[str]:
  """One episode of the run's agent (rewards, entropy, predictions) to `out`."""
  fmt = write.out_format(out)
  run = run_state.load_run(run_dir)
  rollout = _trace_rollout(run, seed, steps)
  agent_out = jax.device_get(run.agent.apply(run.params, rollout.observations))
  columns = traces.trace(rollout, agent_out, run.rule_obj.cfg.max_abs_value)
  caption = [
    f"rule {run.rule.label}, task {run.config.get('task')}",
    f"first episode (seed {seed}) of the agent of {run_dir} at {run.env_steps:,} env steps",
    "reward = r_(t+1) of the action at t; *_change: total-variation distance to step t-1",
  ]
  if fmt == "csv":
    rows = list(zip(*(columns[c].tolist() for c in traces.COLUMNS)))
    data = write.csv_bytes(traces.COLUMNS, rows, caption)
  else:
    names = ("reward", "policy_entropy", "value", "y_entropy", "y_change", "z_entropy", "z_change")
    data = write.trace_figure(columns, names, caption, fmt)
  write.write(out, data)
  ret = float(np.sum(columns["reward"]))
  return [f"wrote {out}", f"episode of {len(columns['t'])} steps, return {ret:.3g}"]


def probe(
  run_dir: Path,
  out: Path,
  seed: int = 0,
  envs: int = 32,
  steps: int = 200,
  horizon: int = 5,
  threshold: float = 1.0,
  train_steps: int = 1000,
) -> list[str]:
  """The probe table of the run's agent (see analysis.inside.probes) to `out`."""
  fmt = write.out_format(out)
  run = run_state.load_run(run_dir)
  rollout = run_state.collect(run, seed, envs, steps)
  agent_out = jax.device_get(run.agent.apply(run.params, rollout.observations))
  entropy = traces._entropy(agent_out["logits"])
  features = {
    "y": np.asarray(agent_out["y"]),
    "z": np.asarray(agent_out["z"]).reshape(steps, envs, -1),
    "policy": np.asarray(jax.nn.softmax(agent_out["logits"])),
    "value": traces.value(agent_out, run.rule_obj.cfg.max_abs_value)[..., None],
  }
  targets = probes.future_targets(
    np.asarray(rollout.rewards), np.asarray(rollout.discounts), entropy, horizon, threshold
  )
  scores = probes.probe_table(features, targets, seed, train_steps)
  caption = [
    f"rule {run.rule.label}, task {run.config.get('task')}",
    f"agent of {run_dir} at {run.env_steps:,} env steps, {envs} envs x {steps} steps (seed {seed})",
    f"MLP probes {probes.HIDDEN} ({probes.HIGH_DIM_FIRST} first for > {probes.HIGH_DIM} "
    f"features), {probes.FOLDS}-fold cross-validation, mean and std over folds",
    f"large reward: >= {threshold:g} within {horizon} steps; entropy: mean over the next "
    f"{horizon} steps of the episode",
  ]
  header = ["input", "target", "metric", "mean", "std", "baseline", "samples", "features"]
  rows = [
    [s.input, s.target, s.metric, s.mean, s.std, s.baseline, s.samples, s.features] for s in scores
  ]
  if fmt == "csv":
    data = write.csv_bytes(header, rows, caption)
  else:
    text = [[str(v) if not isinstance(v, float) else f"{v:.3f}" for v in r] for r in rows]
    data = write.table_figure(header, text, caption, fmt)
  write.write(out, data)
  lines = [f"wrote {out}"]
  lines += [
    f"{s.input:>7} -> {s.target}: {s.metric} {s.mean:.3f} +- {s.std:.3f}"
    + (f" (majority {s.baseline:.3f})" if s.metric == "accuracy" else "")
    + f", n={s.samples}"
    for s in scores
  ]
  return lines
