"""The (measurement, value) rows of a bench result, for the CLI's table."""

from typing import Any


def report_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
  """(measurement, value) rows of a ``run_bench`` result, for a table."""
  rows = [("device", res["device"])]
  pkgs = [f"{k} {res[k]}" for k in ("envpool", "crafter", "nle") if k in res]
  rows.append(("versions", ", ".join([f"jax {res['jax']}", *pkgs, f"python {res['python']}"])))
  rows.append(("loop", res["loop"]))
  rows.append(("env-only steps/s (random actions)", f"{res['env_steps_per_s']:,.0f}"))
  if "one_seed" in res:  # host-stepped suites
    m = res["one_seed"]
    sp = m["split_per_iteration"]
    rate = (
      f"{m['train_steps_per_s']:,.0f} "
      f"({m['train_steps_per_s'] / res['env_steps_per_s']:.1%} of env-only); "
      f"actor alone {m['actor_steps_per_s']:,.0f} "
      f"({m['actor_steps_per_s'] / res['env_steps_per_s']:.1%})"
    )
    rows.append(("training steps/s, 1 seed", rate))
    split = (
      f"{m['iteration_s']:.3f} s: env {sp['env_s']:.3f}, policy {sp['policy_s']:.3f}, "
      f"host {sp['host_s']:.3f}, learner {sp['learner_s']:.3f} s"
    )
    rows.append(("  per iteration", split))
  else:
    rows.append(("training steps/s (1 seed)", f"{res['train_steps_per_s']:,.0f}"))
  rows.append(("training / env-only", f"{res['train_over_env_ratio']:.1%}"))
  lr = res["learner"]
  rows.append(("learner step", f"{lr['step_s'] * 1000:.1f} ms"))
  rows.append(("  agent forward + backward", f"{lr['agent_forward_backward_s'] * 1000:.1f} ms"))
  if "target_forward_s" in lr:
    rows.append(("  target network forward", f"{lr['target_forward_s'] * 1000:.1f} ms"))
  rows.append(
    (
      "  rule (targets + loss gradient)",
      f"{lr['rule_s'] * 1000:.1f} ms ({lr['rule_share']:.0%} of the step)",
    )
  )
  if "chunk_steps_per_s" in res:
    rows.append(
      (
        f"1 seed, chunks (policy_lag {res['policy_lag']})",
        f"{res['chunk_steps_per_s']:,.0f} steps/s",
      )
    )
  for mode, v in res["scaling"].items():
    rows.append(
      (
        f"{res['seeds']} seeds, {mode.replace('_', ' ')}",
        f"{v['steps_per_s']:,.0f} steps/s; wall {v['wall_vs_one_seed']:.2f}x one seed's",
      )
    )
  return rows
