"""Configuration: manifests, protocols and overrides resolved into one run config.

* :mod:`~disco_eval.config.manifests` reads and checks the rule manifests
  (``rules/*.toml``), :mod:`~disco_eval.config.suites` the suite manifests
  (``suites/*.toml``) with their protocols.
* :mod:`~disco_eval.config.overrides` reads the user's ``--set`` overrides
  (global or scoped to one rule, ``train.*``, ``protocol.*``, aliases).
* :mod:`~disco_eval.config.resolve` applies them in one order of precedence
  and returns a :class:`~disco_eval.config.run_config.RunConfig`: the typed,
  frozen record of one run's settings that ``config.json`` stores.
* :mod:`~disco_eval.config.label` derives the protocol label of a run
  (``NAME``, ``NAME@STEPS``, ``+KEY=VALUE``) from a config, new or stored.
* :mod:`~disco_eval.config.schema` builds a rule's settings dataclass from its
  manifest tables (an unknown or missing key is a one-line error).
* :mod:`~disco_eval.config.setting` says how a setting is declared (once: name,
  type, default, range, label, help); :mod:`~disco_eval.config.train` declares
  the training loop's and the optimiser's settings, :mod:`~disco_eval.config.suites`
  the protocol items every suite reads.

Nothing here imports anything above it (envs, agents, rules, train, runs).
"""
