"""The look of every plot: the colour-blind-safe palette, one colour per rule,
grey dashed lines for published baselines, and matplotlib's style settings."""

from typing import Sequence

# Okabe & Ito (2008), ordered for contrast on white (yellow last).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000", "#F0E442")
PUBLISHED_COLORS = ("#444444", "#888888")
PUBLISHED_DASHES = ((0, (6, 3)), (0, (2, 2)), (0, (8, 2, 2, 2)), (0, (4, 4)))
STYLE = {
  "font.size": 11,
  "axes.titlesize": 12,
  "axes.labelsize": 11,
  "xtick.labelsize": 10,
  "ytick.labelsize": 10,
  "legend.fontsize": 10,
  "figure.titlesize": 12,
  "axes.spines.top": False,
  "axes.spines.right": False,
  "axes.grid": True,
  "grid.alpha": 0.3,
  "grid.linewidth": 0.6,
  "pdf.fonttype": 42,
  "ps.fonttype": 42,
  "svg.fonttype": "none",
  "svg.hashsalt": "disco-eval",
  "savefig.dpi": 200,
  "figure.dpi": 100,
}
CAPTION_SIZE = 10


def rule_colors(all_rules: Sequence[str]) -> dict[str, str]:
  """A colour per rule: Okabe-Ito in the sorted order of `all_rules`
  (cycling after 8 rules)."""
  return {rule: PALETTE[i % len(PALETTE)] for i, rule in enumerate(sorted(set(all_rules)))}


def published_style(index: int) -> dict:
  """Line style of the `index`-th published baseline: grey and dashed."""
  return {
    "color": PUBLISHED_COLORS[index % len(PUBLISHED_COLORS)],
    "linestyle": PUBLISHED_DASHES[index % len(PUBLISHED_DASHES)],
    "linewidth": 1.6,
  }
