"""disco-eval: evaluate discovered RL update rules with honest statistics."""

__version__ = "0.1.0"
