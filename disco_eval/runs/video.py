"""``disco-eval render``: episodes of a finished run's final policy, as a GIF or MP4.

The frames are the agent's own observations, drawn as pictures: RGB
observations as they are (Crafter, ProcGen), grids of channels (Catch,
MinAtar, Sokoban) with one colour per channel; each cell is scaled up.
The policy acts as in its evaluation (the rule's evaluation policy). GIFs are
written with imageio (pillow); MP4 needs the ffmpeg that ``imageio-ffmpeg``
ships (``pip install "disco-eval[video]"``).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from disco_eval.envs.base import HostTask
from disco_eval.errors import UserError
from disco_eval.rules.base import acting_logits
from disco_eval.runs.evaluate import Loaded, loaded_run

FORMATS = (".gif", ".mp4")
_PALETTE = np.array(
  [
    [230, 230, 230],
    [228, 26, 28],
    [55, 126, 184],
    [77, 175, 74],
    [152, 78, 163],
    [255, 127, 0],
    [255, 255, 51],
    [166, 86, 40],
    [247, 129, 191],
    [153, 153, 153],
  ],
  np.float32,
)


def to_picture(obs: np.ndarray, height: int = 256) -> np.ndarray:
  """One observation as an RGB picture [H', W', 3] uint8, scaled up."""
  x = np.asarray(obs, np.float32)
  if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
    x = np.moveaxis(x, 0, -1)  # channels first (envpool) -> last
  if x.ndim == 2:
    x = x[..., None]
  if x.ndim != 3:
    raise UserError(f"render draws image-like observations; this task's have shape {obs.shape}")
  if x.max(initial=0.0) > 1.0:
    x = x / 255.0
  if x.shape[-1] == 3:
    rgb = x * 255.0
  elif x.shape[-1] == 1:
    rgb = np.repeat(x, 3, -1) * 255.0
  else:
    colours = _PALETTE[np.arange(x.shape[-1]) % len(_PALETTE)]
    rgb = np.clip(np.einsum("hwc,ck->hwk", x, colours), 0, 255)
    rgb[x.sum(-1) == 0] = 0.0
  scale = max(1, height // rgb.shape[0])
  rgb = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
  return rgb.astype(np.uint8)


def _jax_frames(loaded: Loaded, key, episodes: int, max_steps: int) -> list[np.ndarray]:
  env, agent, rule = loaded.env, loaded.agent, loaded.rule
  data = env.device_data()

  @jax.jit
  def reset(data, key):
    with env.reading(data):
      return env.reset(key)

  @jax.jit
  def step(data, params, state, obs, key):
    with env.reading(data):
      key, sub = jax.random.split(key)
      logits = acting_logits(rule, agent.apply(params, obs[None]), 0.0, evaluation=True)
      action = jax.random.categorical(sub, logits)[0].astype(jnp.int32)
      state, ts = env.step(state, action)
    return state, ts, key

  key, sub = jax.random.split(key)
  state, ts = reset(data, sub)
  frames, ended = [np.asarray(ts.observation)], 0
  for _ in range(max_steps):
    state, ts, key = step(data, loaded.params, state, ts.observation, key)
    frames.append(np.asarray(ts.observation))
    ended += bool(ts.last)
    if ended >= episodes:
      break
  return frames


def _host_frames(loaded: Loaded, key, episodes: int, max_steps: int) -> list[np.ndarray]:
  task, agent, rule = loaded.env, loaded.agent, loaded.rule
  protocol = loaded.rebuilt.run_config.protocol
  seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
  pool = task.pool(1, seed, protocol, evaluation=True)

  @jax.jit
  def act(params, obs, key):
    key, sub = jax.random.split(key)
    logits = acting_logits(rule, agent.apply(params, obs), 0.0, evaluation=True)
    return jax.random.categorical(sub, logits).astype(jnp.int32), key

  try:
    obs = pool.reset()
    frames, ended = [np.asarray(obs[0])], 0
    for _ in range(max_steps):
      action, key = act(loaded.params, obs, key)
      obs, _, done, *_ = pool.step(np.asarray(action))
      frames.append(np.asarray(obs[0]))
      ended += bool(np.asarray(done)[0])
      if ended >= episodes:
        break
  finally:
    pool.close()
  return frames


def _write(path: Path, pictures: list[np.ndarray], fps: float) -> None:
  import imageio.v2 as imageio

  try:
    if path.suffix == ".gif":
      imageio.mimsave(path, pictures, duration=1000.0 / fps, loop=0)
    else:
      pad = [(0, -s % 16) for s in pictures[0].shape[:2]] + [(0, 0)]
      pictures = [np.pad(p, pad) for p in pictures]
      with warnings.catch_warnings():  # ffmpeg is a subprocess that execs at once
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        imageio.mimsave(path, pictures, fps=fps, codec="libx264", quality=8)
  except OSError as e:
    raise UserError(f"cannot write {path} ({e}); pass --out with a writable path") from None


def render_run(
  run: Path, out: Path, episodes: int = 1, fps: float = 8.0, max_steps: int = 2000
) -> tuple[int, str | None]:
  """Writes `episodes` episodes of the run's final policy to `out` (.gif or
  .mp4, at most `max_steps` steps); (frames written, config note or None)."""
  out = Path(out)
  if out.suffix.lower() not in FORMATS:
    raise UserError(f"--out must end in .gif or .mp4, got {out.name}")
  if out.suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
    raise UserError(
      'an MP4 needs the imageio-ffmpeg package: pip install "disco-eval[video]", or write a .gif'
    )
  if episodes < 1 or max_steps < 1 or not fps > 0:
    raise UserError("--episodes and --max-steps must be 1 or more, --fps above 0")
  with loaded_run(Path(run)) as loaded:
    key = jax.random.PRNGKey(40_000 + loaded.rebuilt.seed)
    host = isinstance(loaded.env, HostTask)
    frames = (_host_frames if host else _jax_frames)(loaded, key, episodes, max_steps)
    note = loaded.note
  pictures = [to_picture(f) for f in frames]
  out.parent.mkdir(parents=True, exist_ok=True)
  _write(out, pictures, fps)
  return len(pictures), note
