"""Fast construction of frozen, slotted dataclasses, for the scheduler's per-run values.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__`` (the frozen
``__setattr__`` refuses), and ``dataclasses.replace`` goes through that ``__init__`` after checking
every field's kind. At thousands of runs a second that showed up in the scheduler's profile
(issue 17.6): a run builds two statuses, a record and an outcome. The functions here are written
out once per class at import, as dataclasses writes ``__init__``, and set the slots directly
through their descriptors: the same object ``__init__`` would build, without a loop per call.

Only for classes whose ``__init__`` does nothing else: no ``__post_init__`` (no validation to
skip) and every field an init field. :func:`_fields` checks that at import.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _fields(cls: type[Any]) -> tuple[str, ...]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} validates in __post_init__: build it with its __init__")
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise TypeError(f"{cls.__name__} has fields __init__ does not set")
    return tuple(f.name for f in fields)


def _compile(cls: type[Any], name: str, params: str, lines: list[str]) -> Any:
    names = _fields(cls)
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": cls,
        **{f"_set_{n}": getattr(cls, n).__set__ for n in names},
    }
    body = "".join(f"    {line}\n" for line in lines)
    source = f"def {name}({params}):\n    new = _new(_cls)\n{body}    return new\n"
    exec(source, namespace)  # field names of our own dataclasses, generated once at import
    return namespace[name]


def builder(cls: type[T]) -> Callable[..., T]:
    """``build(*values)``: a ``cls`` from every field's value, positionally in field order (no
    defaults: give them all)."""
    names = _fields(cls)
    build: Callable[..., T] = _compile(
        cls, "build", ", ".join(names), [f"_set_{n}(new, {n})" for n in names]
    )
    return build


def copier(cls: type[T]) -> Callable[[T, dict[str, Any]], T]:
    """``copy(obj, changes)``: ``obj`` with the fields named in ``changes`` replaced. The names
    are not checked: callers pass their own literal field names (or check first)."""
    names = _fields(cls)
    copy: Callable[[T, dict[str, Any]], T] = _compile(
        cls,
        "copy",
        "old, changes",
        [f"_set_{n}(new, changes[{n!r}] if {n!r} in changes else old.{n})" for n in names],
    )
    return copy


def replacer(cls: type[T], *changed: str) -> Callable[..., T]:
    """``replace(obj, *values)``: ``obj`` with the fields named in ``changed`` set to
    ``values`` (positionally, in that order) and every other field copied. The names are
    checked here, once; a call costs one slot write per field and no dictionary lookups, for a
    transition that always changes the same fields (a run starting or ending)."""
    names = _fields(cls)
    unknown = [n for n in changed if n not in names]
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {unknown[0]!r}")
    if len(set(changed)) != len(changed):
        raise TypeError(f"{cls.__name__}: a field is named twice in {changed!r}")
    args = {n: f"v_{n}" for n in changed}
    replace: Callable[..., T] = _compile(
        cls,
        "replace",
        ", ".join(["old", *args.values()]),
        [f"_set_{n}(new, {args.get(n, f'old.{n}')})" for n in names],
    )
    return replace
