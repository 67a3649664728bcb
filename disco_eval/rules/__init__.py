"""Update rules: Disco103 (discovered) and hand-designed baselines."""
