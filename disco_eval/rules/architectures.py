"""Parameter layouts of known meta-network architectures.

Each layout maps the flat Haiku-style key of every array in a weights file
(``module/path/param``) to the array's shape. Weights files are checked against
these tables before use, so a wrong or truncated file fails with a clear
message instead of deep inside the update rule.
"""

from disco_eval.errors import UserError

# The 42 arrays (754,778 float32 numbers) of DiscoRL's published Disco103 rule.
DISCO103_SHAPES: dict[str, tuple[int, ...]] = {
  "lstm/linear/b": (256,),
  "lstm/linear/w": (128, 256),
  "lstm/linear_1/b": (1,),
  "lstm/linear_1/w": (256, 1),
  "lstm/linear_2/b": (600,),
  "lstm/linear_2/w": (256, 600),
  "lstm/linear_3/b": (600,),
  "lstm/linear_3/w": (256, 600),
  "lstm/linear_4/b": (1,),
  "lstm/linear_4/w": (16, 1),
  "lstm/lstm/linear/b": (1024,),
  "lstm/lstm/linear/w": (283, 1024),
  "lstm/mlp/~/linear_0/b": (16,),
  "lstm/mlp/~/linear_0/w": (600, 16),
  "lstm/mlp/~/linear_1/b": (1,),
  "lstm/mlp/~/linear_1/w": (16, 1),
  "lstm/mlp_1/~/linear_0/b": (16,),
  "lstm/mlp_1/~/linear_0/w": (600, 16),
  "lstm/mlp_1/~/linear_1/b": (1,),
  "lstm/mlp_1/~/linear_1/w": (16, 1),
  "lstm/sequential/conv1_d/b": (16,),
  "lstm/sequential/conv1_d/w": (1, 18, 16),
  "lstm/sequential/conv1_d_1/b": (2,),
  "lstm/sequential/conv1_d_1/w": (1, 32, 2),
  "lstm/sequential_1/conv1_d/b": (16,),
  "lstm/sequential_1/conv1_d/w": (1, 516, 16),
  "lstm/~/meta_lstm/~unroll/lstm/linear/b": (512,),
  "lstm/~/meta_lstm/~unroll/lstm/linear/w": (144, 512),
  "lstm/~/meta_lstm/~unroll/mlp/~/linear_0/b": (16,),
  "lstm/~/meta_lstm/~unroll/mlp/~/linear_0/w": (600, 16),
  "lstm/~/meta_lstm/~unroll/mlp/~/linear_1/b": (1,),
  "lstm/~/meta_lstm/~unroll/mlp/~/linear_1/w": (16, 1),
  "lstm/~/meta_lstm/~unroll/mlp_1/~/linear_0/b": (16,),
  "lstm/~/meta_lstm/~unroll/mlp_1/~/linear_0/w": (600, 16),
  "lstm/~/meta_lstm/~unroll/mlp_1/~/linear_1/b": (1,),
  "lstm/~/meta_lstm/~unroll/mlp_1/~/linear_1/w": (16, 1),
  "lstm/~/meta_lstm/~unroll/mlp_2/~/linear_0/b": (16,),
  "lstm/~/meta_lstm/~unroll/mlp_2/~/linear_0/w": (29, 16),
  "lstm/~/meta_lstm/~unroll/sequential/conv1_d/b": (16,),
  "lstm/~/meta_lstm/~unroll/sequential/conv1_d/w": (1, 18, 16),
  "lstm/~/meta_lstm/~unroll/sequential/conv1_d_1/b": (2,),
  "lstm/~/meta_lstm/~unroll/sequential/conv1_d_1/w": (1, 32, 2),
}

ARCHITECTURES: dict[str, dict[str, tuple[int, ...]]] = {
  "disco103": DISCO103_SHAPES,
}


def expected_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
  """The key -> shape table of `architecture` (a copy); UserError if unknown."""
  try:
    table = ARCHITECTURES[architecture]
  except KeyError:
    known = ", ".join(sorted(ARCHITECTURES))
    raise UserError(
      f"unknown architecture '{architecture}'; known architectures: {known}"
    ) from None
  return dict(table)
