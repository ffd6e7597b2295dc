"""Architecture rules that a refactoring must not quietly undo.

* No import circle among ``trayapp`` modules outside the emulator (bench/import_cycles.py
  counts them; imports under ``if TYPE_CHECKING:`` too, for the seams this session fixed).
* ``trayapp.core`` imports no pattern: the app's start-up code passes the registry in.
* The pattern-to-Google seam (``ctx.google``, the Engine's Google factory, the Gmail and
  Calendar clients' methods and what they return) is typed end to end: no ``Any`` on it, and
  the built-in patterns declare no private copies of the clients' shape.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import import_cycles  # noqa: E402

from trayapp.core import cells, store  # noqa: E402
from trayapp.core import engine as engine_module  # noqa: E402
from trayapp.core.patterns import UpdateContext  # noqa: E402
from trayapp.google import calendar, client, gmail, services  # noqa: E402
from trayapp.google.calendar import CalendarClient  # noqa: E402
from trayapp.google.gmail import GmailClient  # noqa: E402
from trayapp.google.services import GoogleServices  # noqa: E402


def test_no_import_circle_outside_the_emulator() -> None:
    found = import_cycles.circles(import_cycles.import_graph())
    assert import_cycles.outside_emulator(found) == []


def test_the_circle_counter_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles.circles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    "area", ["trayapp.core", "trayapp.api", "trayapp.patterns", "trayapp.google"]
)
def test_no_circle_even_for_type_checking_in(area: str) -> None:
    found = import_cycles.circles(import_cycles.import_graph(typing=True))
    assert [c for c in found if any(m == area or m.startswith(area + ".") for m in c)] == []


def test_core_imports_no_pattern() -> None:
    graph = import_cycles.import_graph(typing=True)
    offenders = {
        module: sorted(t for t in targets if t.startswith("trayapp.patterns"))
        for module, targets in graph.items()
        if module.startswith("trayapp.core")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


# ---- no Any on the pattern-to-Google seam ---------------------------------------------------


def _any_in(tp: object, seen: set[int], path: str) -> Iterator[str]:
    """Paths at which ``Any`` occurs in ``tp``, following generics and the result types."""
    if tp is Any:
        yield path
        return
    if id(tp) in seen:
        return
    seen.add(id(tp))
    for arg in typing.get_args(tp):
        yield from _any_in(arg, seen, path)
    google_type = isinstance(tp, type) and tp.__module__.startswith("trayapp.google")
    if google_type and dataclasses.is_dataclass(tp):
        for name, hint in typing.get_type_hints(tp).items():
            yield from _any_in(hint, seen, f"{path} -> {getattr(tp, '__name__', tp)}.{name}")


def _hints(obj: object) -> dict[str, Any]:
    """``typing.get_type_hints`` with the names modules import only for type checking."""
    namespace: dict[str, Any] = {}
    for module in (cells, store, services, gmail, calendar, client, httpx):
        namespace.update(vars(module))
    return typing.get_type_hints(obj, localns=namespace)


def _seam() -> Iterator[tuple[str, object]]:
    yield "UpdateContext.google", _hints(UpdateContext.__init__)["google"]
    yield "Engine GoogleFactory", engine_module.GoogleFactory
    for cls in (GoogleServices, GmailClient, CalendarClient):
        for name, fn in inspect.getmembers(cls, inspect.isfunction):
            if name.startswith("_"):
                continue
            for param, hint in _hints(fn).items():
                yield f"{cls.__name__}.{name}({param})", hint


def test_the_pattern_to_google_seam_has_no_any() -> None:
    found: list[str] = []
    for where, hint in _seam():
        found.extend(_any_in(hint, set(), where))
    assert found == []


def test_the_seam_check_sees_any() -> None:
    assert list(_any_in(typing.Callable[[str], Any], set(), "x")) == ["x"]
    assert list(_any_in(dict[str, list[Any]], set(), "y")) == ["y"]


def test_ctx_google_is_the_typed_services() -> None:
    hint = _hints(UpdateContext.__init__)["google"]
    assert set(typing.get_args(hint)) == {GoogleServices, type(None)}
    assert _hints(GoogleServices.gmail)["return"] is GmailClient
    assert _hints(GoogleServices.calendar)["return"] is CalendarClient


@pytest.mark.parametrize("module", ["gmail.py", "gcalendar.py"])
def test_google_patterns_use_the_real_client_types(module: str) -> None:
    """No private Protocol re-declaring the client, no getattr duck-typing of its errors."""
    tree = ast.parse((ROOT / "trayapp" / "patterns" / module).read_text(encoding="utf-8"))
    protocols = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).endswith("Protocol") for base in node.bases)
    ]
    getattrs = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "getattr"
    ]
    assert (protocols, getattrs) == ([], [])


def test_the_shipped_package_imports_no_test_code_or_test_dependency() -> None:
    """Test-only modules (the emulator harness, discovery conformance) live under tests/."""
    test_only = ("tests", "pytest", "jsonschema", "googleapiclient")
    offenders = []
    for name, path in import_cycles.module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target, _names in import_cycles._imports(
            tree, name, path.name == "__init__.py", typing=True
        ):
            if target.split(".")[0] in test_only:
                offenders.append(f"{name} imports {target}")
    assert offenders == []
    assert not (ROOT / "trayapp" / "emulator" / "testing.py").exists()
    assert not (ROOT / "trayapp" / "emulator" / "conformance.py").exists()
