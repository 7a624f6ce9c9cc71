"""The shape of the source, checked by walking it with ``ast``: short functions, short positional argument lists,
no import cycle between the package's modules, backend names declared only by the biases and the resolver."""

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spatialvit"
FILES = sorted(SRC.rglob("*.py"))
MAX_FUNCTION_LINES = 70
MAX_POSITIONAL = 5
# Calls whose positional arguments are a list by design: logging's format arguments, a tensor's dimensions, and
# autograd.Function.apply (which takes no keywords).
VARIADIC = {"debug", "info", "warning", "error", "exception", "reshape", "view", "permute", "expand", "apply"}


def _trees() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in FILES]


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{node.lineno}"


def test_no_function_is_longer_than_70_lines():
    long = [
        f"{_where(path, node)} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "functions over 70 lines:\n" + "\n".join(long)


def test_no_call_passes_more_than_five_positional_arguments():
    calls = []
    for path, tree in _trees():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or len(node.args) <= MAX_POSITIONAL:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in VARIADIC:
                calls.append(f"{_where(path, node)} {ast.unparse(func)}({len(node.args)} positional)")
    assert not calls, "use keywords or a named record:\n" + "\n".join(calls)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, tree: ast.Module, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at import time or later (inside functions); not those under
    ``TYPE_CHECKING``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom):
                base = package.split(".")
                base = base[: len(base) - sub.level + 1] if sub.level else []
                target = ".".join([*base, *([sub.module] if sub.module else [])])
                for alias in sub.names:
                    full = f"{target}.{alias.name}"
                    found.add(full if full in modules else target)
            elif isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
    return {m for m in found if m in modules and m != name}


def test_the_package_has_no_import_cycle():
    trees = _trees()
    modules = {_module_name(p) for p, _ in trees}
    graph = {_module_name(p): _imports(p, t, modules) for p, t in trees}
    # a package's __init__ importing its own modules is not a cycle of theirs: only module -> module edges count
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):  # a package and its own submodules
                continue
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


BACKEND = re.compile(r"""["'](factorised|flex|sdpa|bmm|chunked|reference)["']""")


@pytest.mark.parametrize("path", [p for p in FILES if "attention" in p.parts], ids=lambda p: p.name)
def test_backend_names_are_declared_only_by_the_biases_and_the_resolver(path):
    allowed = {"backend.py", "manhattan.py", "relpos.py"}  # the resolver, the Manhattan biases, the relpos bias
    code = [line.split("#")[0] for line in path.read_text().splitlines() if not line.strip().startswith(("#", "``"))]
    named = [line.strip() for line in code if BACKEND.search(line) and '"""' not in line and "``" not in line]
    assert path.name in allowed or not named, f"{path.name} names backends: {named}"
