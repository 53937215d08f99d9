"""The package's shape: no import cycle among its modules, no module over 400 lines.

Every module of the installed package (``mibench/`` and the folders that install as
``mibench.*``, read from ``pyproject.toml``) is parsed with :mod:`ast`; every import is an
arrow, including one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400


def package_modules() -> dict[str, Path]:
    """Dotted module name → source file, for every module the package installs."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    modules = {}
    for package, folder in dirs.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or its longest prefix that is one of ``modules``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its source."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    arrows = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                     for alias in node.names]
        else:
            continue
        arrows.update(found for name in names if (found := _known(name, modules)))
    arrows.discard(module)
    return arrows


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a → … → a``) per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_through(min(group), graph, group) for group in groups]


def _cycle_through(start: str, graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path ``start → … → start`` inside ``group`` (breadth first)."""
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for succ in sorted(graph[path[-1]] & group):
            if succ == start:
                return [*path, start]
            if succ not in path:
                paths.append([*path, succ])
    raise AssertionError(f"{start} is on no cycle of its group")


def test_the_package_has_no_import_cycle():
    modules = package_modules()
    assert {"mibench.cell", "mibench.executors.ray", "mibench.attacks",
            "mibench.reports.runs"} <= modules.keys()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    found = [" → ".join(cycle) for cycle in cycles(graph)]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_cells_and_executors_import_downwards_only():
    """cli → harness → executors → cell: an executor never reaches back into the harness."""
    modules = package_modules()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    upper = {"mibench.cli", "mibench.cli_commands", "mibench.harness"}
    executors = {name for name in modules if name.startswith("mibench.executors")}
    for name in executors:
        assert not graph[name] & upper, f"{name} imports {graph[name] & upper}"
    assert not graph["mibench.cell"] & (upper | executors)


def test_the_cycle_finder_names_a_lazy_cycle(tmp_path):
    lazy = tmp_path / "b.py"
    lazy.write_text("def f():\n    from pkg import a\n")
    (tmp_path / "a.py").write_text("from pkg.b import f\n")
    modules = {"pkg.a": tmp_path / "a.py", "pkg.b": lazy}
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_no_module_is_over_400_lines():
    long = {str(path.relative_to(ROOT)): lines for path in package_modules().values()
            if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
