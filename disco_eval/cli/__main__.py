"""``python3 -m disco_eval.cli``: the same as the ``disco-eval`` command."""

from disco_eval.cli import main

main()
