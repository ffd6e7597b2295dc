"""The house rule: nothing outside ``trayapp/ui`` imports Qt, so the engine runs headless.

Two complementary checks: every import statement in the source (including lazy ones inside
functions) is read with ``ast``; and every non-UI module is really imported in a fresh
interpreter, which catches Qt arriving indirectly through another module or a library.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import trayapp

PACKAGE = Path(trayapp.__file__).resolve().parent
ROOT = PACKAGE.parent
QT = ("PySide6", "shiboken6", "qasync", "PyQt5", "PyQt6")


def _non_ui_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "ui":
            continue
        parts = ["trayapp", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__":
            continue  # importing it runs the program
        out.append((".".join(parts), path))
    return out


def _is_qt(name: str) -> bool:
    return name.split(".")[0] in QT


def test_no_module_outside_ui_has_a_qt_import_statement() -> None:
    offenders = []
    for module, path in _non_ui_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{module}:{node.lineno} imports {n}" for n in names if _is_qt(n)]
    assert offenders == []


def test_importing_every_module_outside_ui_loads_no_qt() -> None:
    modules = [m for m, _ in _non_ui_modules()]
    script = f"""
import importlib, json, sys
qt = {QT!r}
result = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except Exception as exc:
        result[name] = "import failed: " + type(exc).__name__ + ": " + str(exc)
        continue
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in qt)
    if loaded:
        result[name] = "loaded " + ", ".join(loaded)
        break
print(json.dumps(result))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    problems = json.loads(proc.stdout.strip().splitlines()[-1])
    qt_problems = {k: v for k, v in problems.items() if v.startswith("loaded")}
    assert qt_problems == {}, qt_problems
    assert problems == {}, f"modules that fail to import: {problems}"
    assert len(modules) > 10  # the walk found the package
