"""What a rule of Disco103's architecture has learned (the paper's Fig. 4, Oh et al. 2025).

* :mod:`~.run_state`: a run's agent, rule and newest checkpoint; fresh trajectories;
* :mod:`~.golden`: the golden rule-step inputs as the rule's inputs;
* :mod:`~.sensitivity`: how much the targets at t depend on the predictions at t+k (Fig. 4d);
* :mod:`~.traces`: one episode's rewards, policy entropy and predictions (Fig. 4a);
* :mod:`~.probes`: MLP probes of future events from y, z, the policy, the value (Fig. 4c);
* :mod:`~.write`: tables and figures written to ``--out``.

The ablations of Fig. 4e are rule variants (:mod:`disco_eval.rules.variants`), run as any
rule.
"""
