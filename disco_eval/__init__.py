"""disco-eval: evaluate discovered RL update rules with honest statistics."""

__version__ = "0.1.0"

# First of all: a Ctrl-C from here on is marked, never lost (see the module).
from disco_eval import interrupts as _interrupts  # noqa: E402, F401
