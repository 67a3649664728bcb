"""Run records that survive crashes, kills and full disks.

Every run owns one folder, ``<root>/<suite>/<task>/<rule>/seed<k>/``::

  config.json      the complete config of the run (written by RunRecord.open)
  status.json      {"status": "running"|"complete"|"failed"|"diverged"|"interrupted",
                    "error", "updated", "env_steps", "host", "pid", "diverged"}
                   ("diverged": {"iteration", "env_steps"} where the loss or the
                   parameters were first seen non-finite, else absent)
  metrics.csv      one row per logging step; the first row fixes the header
  summary.json     the final evaluation, written once by mark_complete (a
                   diverged run's holds "diverged" too)
  checkpoint/      the latest training checkpoint (the learner state):
    checkpoint.json  structure (leaf paths, shapes, dtypes), env_steps, extra
                     metadata and the name and sha256 of the arrays file
    state-*.npz      the arrays, one entry per pytree leaf
  .lock            flock()ed by the process writing the run (holds its pid)

Guarantees:

* Every record file is written through :func:`write_atomic` (temp file in the
  same folder, fsync, ``os.replace``, fsync of the folder), so a crash, a
  SIGKILL or a full disk at any moment leaves either the old or the new
  complete version of each file, never a torn one. A kill can leave a hidden
  temp file (``.<name>.<pid>.<hex>.tmp``) behind; :meth:`RunRecord.lock` deletes
  those whose writer is gone.
* The only writes that are not atomic replacements touch ``.lock``, whose
  content (the holder's pid) is advisory.
* Nothing outside the run folder is written, except that
  :meth:`RunRecord.open` creates the folder and its parents.
* JSON is strict JSON, with sorted keys and an indent of 2: NaN and
  +/-infinity (a diverged run's loss or score) are written as ``null``, never
  as the bare ``NaN``/``Infinity`` tokens; numpy and jax scalars and arrays are
  written as numbers and lists.
* A damaged record (config.json lost while other files remain, metrics.csv
  lost while the status says the run trained, an unreadable file) is never
  overwritten: :meth:`RunRecord.open` refuses it with a UserError saying how
  to redo the run, and :func:`scan_runs` reports it with its reason.

Typical use by a training loop::

  record = RunRecord.open(root, suite, task, rule, seed, config)
  with record.lock():
    restored = record.load_checkpoint(template)
    if restored is not None:
      state, steps, extra = restored
      record.truncate_metrics(steps)
    record.mark_running(steps)
    ...  # record.append_metrics(rows); record.save_checkpoint(state, steps)
    record.mark_complete(summary)

The modules, one concern each (nothing here imports anything outside
``disco_eval.errors`` and ``disco_eval.__version__``; jax is imported only
when a checkpoint is saved or loaded):

  atomic               write_atomic, the record's JSON, stale temp files
  layout               file names, run_dir, versions
  config_match         whether a stored config.json is the same run
  metrics              the metrics.csv table
  damage               what makes a run folder unusable (missing, unreadable)
  training_checkpoint  saving and loading the learner state, two newest kept
  record               RunRecord (config, status, metrics, summary, lock)
  scan                 RunInfo, scan_runs
  schema               schema_version: the JSON layout's version, in every record
"""

from disco_eval.store.atomic import write_atomic, write_json_atomic
from disco_eval.store.config_match import LATER_CONFIG_KEYS, VOLATILE_CONFIG_KEYS
from disco_eval.store.layout import (
  CHECKPOINT_DIR,
  CHECKPOINT_META,
  CONFIG_FILE,
  LOCK_FILE,
  METRICS_FILE,
  STATUS_FILE,
  STATUSES,
  SUMMARY_FILE,
  run_dir,
  versions,
)
from disco_eval.store.metrics import STEP_COLUMN
from disco_eval.store.record import RunBusy, RunRecord, writer_elsewhere, writer_gone
from disco_eval.store.scan import RunInfo, scan_runs
from disco_eval.store.schema import SCHEMA_KEY, SCHEMA_VERSION, schema_version, versioned
from disco_eval.store.training_checkpoint import check_resume_point

__all__ = [
  "CHECKPOINT_DIR",
  "CHECKPOINT_META",
  "CONFIG_FILE",
  "LATER_CONFIG_KEYS",
  "LOCK_FILE",
  "METRICS_FILE",
  "STATUSES",
  "STATUS_FILE",
  "STEP_COLUMN",
  "SUMMARY_FILE",
  "VOLATILE_CONFIG_KEYS",
  "RunBusy",
  "RunInfo",
  "RunRecord",
  "SCHEMA_KEY",
  "SCHEMA_VERSION",
  "check_resume_point",
  "run_dir",
  "scan_runs",
  "schema_version",
  "versioned",
  "versions",
  "write_atomic",
  "write_json_atomic",
  "writer_elsewhere",
  "writer_gone",
]
