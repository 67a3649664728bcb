"""Experiment tracking: a run's records as TensorBoard or Weights & Biases logs.

The run records (``disco_eval.store``) stay the results; trackers only show
them. Every scalar is derived from a record (:mod:`~disco_eval.track.scalars`),
so a log can be written while a sweep runs (``run --track``, fed from the
records as their rows are appended, in a thread of its own:
:mod:`~disco_eval.track.live`) or afterwards (``export tensorboard``), and
reads the same either way (the rates of ``perf/``, measured while training,
are the exception: only a live log has them).

* :mod:`~disco_eval.track.scalars`: (tag, env step, value) of a run's records;
* :mod:`~disco_eval.track.sinks`: where they go (TensorBoard event files in
  ``<run>/tensorboard/``, or offline Weights & Biases runs in ``<run>/wandb/``);
* :mod:`~disco_eval.track.live`: following a sweep's runs as they train.
"""

from disco_eval.track.sinks import TRACKERS, check_available, export_tensorboard, open_sink

__all__ = ["TRACKERS", "check_available", "export_tensorboard", "open_sink"]
