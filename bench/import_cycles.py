"""Count import circles among ``trayapp`` modules, and find ``Any`` on the pattern-to-Google seam.

Usage::

    python bench/import_cycles.py            # list the circles, exit 1 if any outside the emulator
    python bench/import_cycles.py --all      # also fail on circles inside trayapp.emulator
    python bench/import_cycles.py --json     # machine-readable

An *import circle* is a strongly connected component of more than one module in the graph of
run-time imports: module-level and function-level ``import``/``from ... import`` statements.
Imports under ``if TYPE_CHECKING:`` are not run and are left out. Importing ``a.b.c`` runs
``a/__init__`` and ``a/b/__init__`` too, so those count as edges; ``from pkg import name`` counts
as importing ``pkg.name`` when that is a module. Reading the source with :mod:`ast` (nothing is
imported) keeps the script safe to run anywhere, Qt or not.

tests/test_architecture.py runs :func:`import_graph` and :func:`circles` and asserts the goal
(no circle outside the emulator).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "trayapp"


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name (packages as their name)."""
    out: dict[str, Path] = {}
    base = root / package
    for path in sorted(base.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    if isinstance(test, ast.Attribute):
        return test.attr == "TYPE_CHECKING"
    return False


def _imports(
    tree: ast.AST, module: str, is_package: bool, *, typing: bool = False
) -> Iterator[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every run-time import in ``tree``.

    With ``typing``, imports under ``if TYPE_CHECKING:`` are included too.
    """
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if not typing and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [alias.name for alias in node.names]
        todo.extend(ast.iter_child_nodes(node))


def import_graph(
    root: Path = ROOT, package: str = PACKAGE, *, typing: bool = False
) -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time (``typing``: and for type checks)."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, names in _imports(tree, name, path.name == "__init__.py", typing=typing):
            if not (target == package or target.startswith(package + ".")):
                continue
            parts = target.split(".")
            for i in range(1, len(parts)):  # a.b.c runs a and a.b first
                prefix = ".".join(parts[:i])
                # ...but a module inside a.b has a.b running already: that is no edge.
                if prefix in files and not name.startswith(prefix + "."):
                    graph[name].add(prefix)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            # ``from pkg import submodule`` inside pkg needs pkg/__init__ no more than any other
            # import from inside it does; importing *names* from it does.
            own_package = name.startswith(target + ".")
            needs_init = not own_package or len(submodules) < len(names) or not names
            if target in files and target != name and needs_init:
                graph[name].add(target)
            for sub in submodules:
                if sub != name:
                    graph[name].add(sub)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
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
                if len(component) > 1:
                    out.append(sorted(component))
    return sorted(out)


def outside_emulator(found: Iterable[list[str]]) -> list[list[str]]:
    """The circles that involve any module outside ``trayapp.emulator``."""
    emulator = f"{PACKAGE}.emulator"
    return [c for c in found if any(not (m == emulator or m.startswith(emulator + ".")) for m in c)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="fail on emulator circles too")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--typing", action="store_true", help="count imports under 'if TYPE_CHECKING:' too"
    )
    args = parser.parse_args(argv)
    found = circles(import_graph(typing=args.typing))
    bad = found if args.all else outside_emulator(found)
    if args.json:
        print(json.dumps({"circles": found, "outside_emulator": outside_emulator(found)}))
    else:
        for component in found:
            print(f"{len(component)} modules: {' '.join(component)}")
        print(f"{len(found)} import circle(s), {len(outside_emulator(found))} outside the emulator")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
