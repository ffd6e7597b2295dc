"""Typed state containers persisted in the store.

A :class:`Cell` is a writable, persisted value of a declared type; a :class:`DerivedCell` is a
read-only view computed from other cells. Both are created through the store
(:meth:`Store.cell <trayapp.core.store.Store.cell>`, :meth:`Store.derived
<trayapp.core.store.Store.derived>`), which keeps one object per name so every part of the app
that names a cell shares its declared type.

Values cross the database boundary as JSON, validated and encoded by a pydantic ``TypeAdapter``
of the declared type, so a cell of ``datetime`` or of a pydantic model round-trips as that type
and a wrong-typed write fails at the ``set`` that caused it rather than at the next read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

from trayapp.core.errors import ReadOnlyCellError, StoreError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

T = TypeVar("T")


class CellStore(Protocol):
    """What a cell needs of :class:`~trayapp.core.store.Store` (which provides it)."""

    def _read_cell(self, name: str) -> str | None: ...
    def _write_cell(self, name: str, value: str) -> None: ...
    def transaction(self) -> AbstractContextManager[Any]: ...


class Cell(Generic[T]):
    """A writable, persisted, typed value.

    ``get()`` reads the committed value (or the value written earlier in the current
    transaction); when nothing was ever stored it returns the declared default, which is not
    written to the database.
    """

    writable = True

    def __init__(
        self, store: CellStore, name: str, type_: Any, default: T, *, declared: bool = True
    ) -> None:
        self._store = store
        self._name = name
        self._type: Any = type_
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)
        self._default = default
        # False for a cell found in the database but not declared by code in this process: it
        # is typed ``Any`` (plain JSON values) until someone declares it with a real type.
        self.declared = declared

    @property
    def name(self) -> str:
        return self._name

    @property
    def type(self) -> Any:
        return self._type

    @property
    def default(self) -> T:
        return self._default

    def __repr__(self) -> str:
        return f"Cell({self._name!r})"

    def get(self) -> T:
        raw = self._store._read_cell(self._name)
        if raw is None:
            return self._default
        try:
            return self._adapter.validate_json(raw)
        except ValidationError as exc:
            raise StoreError(
                f"cell {self._name!r} holds a value that is not a valid {self._type_name()} "
                f"({_first_error(exc)}); reset the charm or account that owns it"
            ) from exc

    def set(self, value: T) -> None:
        self._store._write_cell(self._name, self.encode(value))

    def update(self, fn: Callable[[T], T]) -> T:
        """Read-modify-write in one transaction; returns the new value."""
        with self._store.transaction():
            new = fn(self.get())
            self.set(new)
        return new

    def encode(self, value: T) -> str:
        """Validate ``value`` against the declared type and return its JSON.

        Validation is strict: ``"5"`` is not silently turned into ``5``, so a caller that mixes
        up types finds out at the write.
        """
        try:
            checked = self._adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            raise TypeError(
                # The value itself is never shown: an auth cell holds tokens.
                f"cannot store a {type(value).__name__} in cell {self._name!r}: expected "
                f"{self._type_name()} ({_first_error(exc)})"
            ) from exc
        return self._adapter.dump_json(checked).decode()

    def _type_name(self) -> str:
        return getattr(self._type, "__name__", None) or repr(self._type)

    def _redeclare(self, type_: Any, default: T) -> None:
        """Give a cell discovered in the database (typed ``Any``) its real type."""
        self._type = type_
        self._adapter = TypeAdapter(type_)
        self._default = default
        self.declared = True


class DerivedCell(Generic[T]):
    """A read-only view computed from source cells.

    The value is computed on every ``get()`` (sources are cheap primary-key reads, and this
    can never serve a stale value). Writing through it raises :class:`ReadOnlyCellError`
    naming it: a charm bound to a view must fail loudly, never write nowhere.
    """

    writable = False

    def __init__(
        self,
        store: CellStore,
        name: str,
        sources: Sequence[Cell[Any] | DerivedCell[Any]],
        compute: Callable[..., T],
    ) -> None:
        self._store = store
        self._name = name
        self.sources: tuple[Cell[Any] | DerivedCell[Any], ...] = tuple(sources)
        self._compute = compute

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"DerivedCell({self._name!r})"

    def get(self) -> T:
        return self._compute(*(source.get() for source in self.sources))

    def set(self, value: T) -> None:
        raise ReadOnlyCellError(self._name)

    def update(self, fn: Callable[[T], T]) -> T:
        raise ReadOnlyCellError(self._name)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return str(exc)
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])
