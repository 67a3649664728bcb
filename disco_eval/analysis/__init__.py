"""Analysis of run records: statistics, comparison tables, CSV export, plots.

Split by concern, as rliable splits metrics / library / plot_utils; data flows
one way (nothing imports a module further down this list):

* ``bootstrap``: stratified-bootstrap resampling and percentile intervals;
* ``stats``: rliable-style aggregate metrics and their intervals;
* ``labels``: a run's protocol label, re-derived from its config;
* ``rule_kinds``: each rule's kind and whether a suite is held out for it;
* ``collect``: scan a results folder into usable and excluded runs;
* ``curves``: training curves read from run records;
* ``published``: published reference rows from the suite manifests, and
  whether a row is comparable with a group of runs;
* ``at_steps``: runs' training curves read at a budget (``--at STEPS``);
* ``compare``: per-task, aggregate and pairwise statistics per group;
* ``render``: rich tables of a comparison;
* ``export``: one tidy CSV table;
* ``plots``: publication plots.
"""
