"""The house rules of the package's layout, checked on its source.

- no module over `MAX_MODULE_LINES` lines;
- no function (or method) over `MAX_FUNCTION_LINES` lines;
- no import cycle between the package's modules, counting imports made inside
  functions too (a lazy import hides a cycle, it does not remove it); imports
  under ``if TYPE_CHECKING:`` are not counted, since they never run.

An import ``from pkg import name`` counts as an edge to ``pkg.name`` when that
is a module, else to ``pkg``; importing a submodule is not counted as
importing its parent packages (their ``__init__`` re-exports are the parents'
own edges).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = "disco_eval"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
  parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
  test = node.test
  return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
  )


def _walk_runtime(tree: ast.AST):
  """All nodes of `tree` except those under ``if TYPE_CHECKING:``."""
  stack = [tree]
  while stack:
    node = stack.pop()
    yield node
    for child in ast.iter_child_nodes(node):
      if isinstance(child, ast.If) and _is_type_checking(child):
        stack.extend(child.orelse)
        continue
      stack.append(child)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
  """The absolute module name a ``from X import ...`` statement names."""
  if not node.level:
    return node.module or ""
  base = module.split(".")
  if path.name != "__init__.py":
    base = base[:-1]
  base = base[: len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> set[str]:
  """The package modules that `module` imports anywhere in its code."""
  tree = ast.parse(path.read_text(), str(path))
  found = set()
  for node in _walk_runtime(tree):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      target = _resolve(module, path, node)
      for alias in node.names:
        sub = f"{target}.{alias.name}"
        found.add(sub if sub in MODULES else target)
  return {name for name in found if name in MODULES and name != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, on_stack, stack, out = {}, {}, set(), [], []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_checker_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
  graph = {name: _imports(name, path) for name, path in MODULES.items()}
  assert _cycles(graph) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name):
  lines = len(MODULES[name].read_text().splitlines())
  assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"


def test_functions_are_short():
  long = []
  for name, path in MODULES.items():
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        size = node.end_lineno - node.lineno + 1
        if size > MAX_FUNCTION_LINES:
          long.append(f"{name}.{node.name}: {size} lines")
  assert long == []
