"""The import graph of a package, read from the source with `ast` (nothing is imported).

Used by tests/test_architecture.py, and as a script for the numbers in a closing note:
`python tests/import_graph.py [bootstrap]` prints modules, import cycles (strongly
connected components of more than one module, or a module importing itself) and every
import of another module's `_private` name.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PrivateImport:
    importer: str
    module: str
    name: str
    line: int


def module_files(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Every module of `package` by dotted name (a package is its `__init__`)."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _edges_and_privates(
    modules: dict[str, Path],
) -> tuple[dict[str, set[str]], list[PrivateImport]]:
    edges: dict[str, set[str]] = {name: set() for name in modules}
    privates: list[PrivateImport] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        aliases: dict[str, str] = {}  # local name -> package module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname and alias.name in modules:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
                and aliases[node.value.id] != name
            ):
                privates.append(
                    PrivateImport(name, aliases[node.value.id], node.attr, node.lineno)
                )
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _owning_module(alias.name, modules)
                    if target is not None and target != name:
                        edges[name].add(target)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    if full in modules:  # `from pkg import submodule`
                        if full != name:
                            edges[name].add(full)
                        continue
                    target = _owning_module(base, modules)
                    if target is None:
                        continue
                    if target != name:
                        edges[name].add(target)
                    if _is_private(alias.name) and target != name:
                        privates.append(PrivateImport(name, target, alias.name, node.lineno))
    return edges, privates


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owning_module(dotted: str, modules: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle in them (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


def analyse(package: str = "bootstrap", root: Path = ROOT, also: tuple[str, ...] = ()) -> tuple[
    dict[str, Path], dict[str, set[str]], list[list[str]], list[PrivateImport]
]:
    """`also`: packages whose modules count as import targets too (their own imports
    are read as well), e.g. to see the tests' imports of bootstrap's private names."""
    modules = module_files(package, root)
    for other in also:
        modules.update(module_files(other, root))
    edges, privates = _edges_and_privates(modules)
    return modules, edges, cycles(edges), privates


def main(argv: list[str]) -> int:
    package = argv[0] if argv else "bootstrap"
    modules, edges, found, privates = analyse(package)
    print(f"modules: {len(modules)}")
    print(f"import edges: {sum(len(v) for v in edges.values())}")
    print(f"cycles: {len(found)}" + "".join(f"\n  {len(c)}: {' '.join(c)}" for c in found))
    print(f"cross-module private imports: {len(privates)}")
    for p in privates:
        print(f"  {p.importer}:{p.line} imports {p.module}.{p.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
