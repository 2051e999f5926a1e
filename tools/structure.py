"""Structure rules of the code base: no import cycle, no file over 600 lines, no class over 350
lines, no ``__new__`` that can return another class. ``python -m tools.structure`` prints every
breach; the test suite runs the same checks."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "world", "tools", "perf", "tests")
MAX_FILE_LINES = 600
MAX_CLASS_LINES = 350


@dataclass(frozen=True)
class Module:
    """One Python module of the project: its dotted name, path and parsed source."""

    name: str
    path: Path
    relative: str
    tree: ast.Module
    lines: int
    is_package: bool


def project_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module under the project's top-level packages, by dotted name."""
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if any(part.startswith(".") for part in parts):     # virtual environments, caches
                continue
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            text = path.read_text(encoding="utf-8")
            modules[".".join(parts)] = Module(".".join(parts), path,
                                              str(path.relative_to(root)), ast.parse(text),
                                              len(text.splitlines()), is_package)
    return modules


def _imported(module: Module, node: ast.Import | ast.ImportFrom,
              modules: dict[str, Module]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in modules:
                yield alias.name
        return
    if node.level:
        package = module.name.split(".")
        if not module.is_package:
            package = package[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in modules:
            yield sub
        elif base in modules:
            yield base


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (functions and
    ``TYPE_CHECKING`` blocks included); a package's parents are not counted."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, module in modules.items():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                graph[name].update(m for m in _imported(module, node, modules) if m != name)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def long_files(modules: dict[str, Module]) -> list[str]:
    """Files over :data:`MAX_FILE_LINES` lines."""
    return [f"{m.relative}: {m.lines} lines" for m in modules.values()
            if m.lines > MAX_FILE_LINES]


def long_classes(modules: dict[str, Module]) -> list[str]:
    """Classes over :data:`MAX_CLASS_LINES` lines."""
    found = []
    for m in modules.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    found.append(f"{m.relative}: class {node.name}, {length} lines")
    return found


def custom_constructors(modules: dict[str, Module]) -> list[str]:
    """Classes that define ``__new__`` (which could hand back an object of another class)."""
    found = []
    for m in modules.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__new__":
                        found.append(f"{m.relative}: {node.name}.__new__")
    return found


def breaches(root: Path = ROOT) -> list[str]:
    """Every breach of the structure rules, one line each."""
    modules = project_modules(root)
    cycles = [" <-> ".join(c) for c in import_cycles(import_graph(modules))]
    return ([f"import cycle: {c}" for c in cycles] + long_files(modules)
            + long_classes(modules) + custom_constructors(modules))


def main() -> int:
    """Print every breach; exit 1 when there is one."""
    found = breaches()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
