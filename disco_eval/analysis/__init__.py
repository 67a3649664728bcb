"""Analysis of run records: statistics, comparison tables, CSV export, plots.

Split by concern, as rliable splits metrics / library / plot_utils; data flows
one way (nothing imports a module further down this list):

* ``bootstrap``: stratified-bootstrap resampling and percentile intervals;
* ``stats``: rliable-style aggregate metrics and their intervals;
* ``labels``: a run's protocol label, re-derived from its config;
* ``collect``: scan a results folder into usable and excluded runs;
* ``published``: published reference rows from the suite manifests;
* ``compare``: per-task, aggregate and pairwise statistics per group;
* ``render``: rich tables of a comparison;
* ``export``: one tidy CSV table;
* ``plots``: publication plots.
"""
