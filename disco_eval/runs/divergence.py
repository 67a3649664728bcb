"""Divergence: a seed whose loss or parameters became non-finite.

After each chunk, :func:`check_chunk` reads the chunk's losses (``[S, count]``,
counted only where the learner stepped) and asks one jitted reduction whether
each seed's parameters are still finite (``train.seed_group.Snapshot``). A
seed seen non-finite for the first time gets
:meth:`~disco_eval.store.RunRecord.note_divergence` with the first bad
iteration (the chunk's last one when only the parameters show it), so that
its run ends ``diverged``, never ``complete``.

Seeds trained together share one program, so a diverged seed keeps being
trained with the others (its numbers are not used); when every seed of the
group has diverged, :class:`GroupDiverged` stops the group at once, carrying
the parameters so that they are still evaluated.
"""

from __future__ import annotations

import numpy as np

from disco_eval.train.seed_group import Snapshot


class GroupDiverged(Exception):
  """Every seed of a seed group diverged: training stops after the chunk
  that ended at `iteration`; `snapshot` holds the seeds' parameters then."""

  def __init__(self, snapshot: Snapshot, iteration: int):
    super().__init__(f"every seed diverged by iteration {iteration}")
    self.snapshot = snapshot
    self.iteration = iteration


def first_bad_losses(loss: np.ndarray, learned: np.ndarray) -> list[int | None]:
  """Per seed, the index in the chunk of the first non-finite loss among the
  iterations where the learner stepped (loss, learned: [S, count]), or None."""
  bad = np.asarray(learned, bool) & ~np.isfinite(np.asarray(loss, np.float64))
  return [int(np.argmax(row)) if row.any() else None for row in bad]


def check_chunk(records, seeds, snapshot: Snapshot, m, it: int, count: int, spi: int) -> None:
  """Notes each seed that diverged in the chunk of iterations ``it ..
  it + count - 1`` (metrics `m` on the host, arrays [S, count]; `spi` env
  steps per iteration; `snapshot` the parameters at the chunk's end) in its
  record; raises GroupDiverged when every seed of the group has now
  diverged."""
  finite = snapshot.finite()
  firsts = first_bad_losses(m.loss[:, :count], m.learned[:, :count])
  bad = [j for j, first in enumerate(firsts) if first is not None or not finite[j]]
  if not bad:  # the usual chunk: no record is read or written
    return
  for j in bad:
    k = firsts[j] if firsts[j] is not None else count - 1
    records[seeds[j]].note_divergence(it + k, (it + k + 1) * spi)
  if all(records[s].divergence is not None for s in seeds):
    raise GroupDiverged(snapshot, it + count)
