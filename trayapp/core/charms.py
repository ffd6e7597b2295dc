"""Charms: configured instances of a pattern, persisted in the store, and their cell bindings.

A charm binds a pattern's declared slots to concrete cells and carries its validated settings,
account and interval. Bindings are checked when the charm is created: a slot the pattern writes
(its cursor, a token write-back) bound to a read-only derived cell is refused then, with a
message that names the binding to change, instead of every later write failing (or, as in the
service we replace, silently doing nothing).

Definitions live in the store collection ``app:charms`` (one item per charm), so they share the
profile's database, transactions and crash safety with the data they describe.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trayapp.core.errors import BindingError, ConfigError, NotFoundError
from trayapp.core.patterns import Pattern
from trayapp.core.store import Store

CHARMS_COLLECTION = "app:charms"
MAX_SLUG = 40
_CELL_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*:[^\s]+$")


@dataclass(frozen=True, slots=True)
class CharmInfo:
    """One charm's definition (what the user configured; its status lives elsewhere)."""

    id: str
    pattern_id: str
    name: str
    settings: dict[str, Any]
    account_id: str | None
    interval: timedelta
    bindings: dict[str, str] = field(default_factory=dict)
    created_at: datetime = datetime.min

    def prefix(self) -> str:
        """The store prefix of everything the charm owns (cells and collections)."""
        return charm_prefix(self.id)

    def to_json(self) -> dict[str, Any]:
        """The stable shape used in ``--json`` output and in the store (see docs/cli.md)."""
        return {
            "id": self.id,
            "pattern_id": self.pattern_id,
            "name": self.name,
            "settings": self.settings,
            "account_id": self.account_id,
            "interval_s": int(self.interval.total_seconds()),
            "bindings": dict(self.bindings),
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CharmInfo:
        return cls(
            id=str(data["id"]),
            pattern_id=str(data["pattern_id"]),
            name=str(data["name"]),
            settings=dict(data.get("settings") or {}),
            account_id=data.get("account_id"),
            interval=timedelta(seconds=float(data["interval_s"])),
            bindings={str(k): str(v) for k, v in (data.get("bindings") or {}).items()},
            created_at=datetime.fromisoformat(str(data["created_at"])),
        )


def charm_prefix(charm_id: str) -> str:
    return f"charm:{charm_id}:"


def slugify(name: str, *, fallback: str = "charm") -> str:
    """A short, readable id from a display name: ``"Café News!"`` -> ``"cafe-news"``."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:MAX_SLUG].rstrip("-")
    return slug or fallback


class CharmRepo:
    """Charm definitions in the store, by id, in creation order."""

    def __init__(self, store: Store) -> None:
        self._items = store.collection(CHARMS_COLLECTION)

    def all(self) -> list[CharmInfo]:
        return [CharmInfo.from_json(v) for _, v in self._items.items()]

    def find(self, charm_id: str) -> CharmInfo | None:
        data = self._items.get(charm_id)
        return None if data is None else CharmInfo.from_json(data)

    def get(self, charm_id: str) -> CharmInfo:
        info = self.find(charm_id)
        if info is None:
            known = ", ".join(self._items.keys()) or "none yet"
            raise NotFoundError(
                f"unknown charm {charm_id!r}; existing charms: {known} (see 'trayapp charms list')"
            )
        return info

    def save(self, info: CharmInfo) -> None:
        self._items.upsert(info.id, info.to_json(), sort_key=info.created_at.timestamp())

    def delete(self, charm_id: str) -> bool:
        return self._items.delete(charm_id)

    def new_id(self, name: str, *, fallback: str = "charm") -> str:
        """A unique slug for ``name``: ``news``, then ``news-2``, ``news-3``..."""
        base = slugify(name, fallback=fallback)
        candidate, n = base, 2
        while candidate in self._items:
            suffix = f"-{n}"
            candidate = base[: MAX_SLUG - len(suffix)].rstrip("-") + suffix
            n += 1
        return candidate


def default_binding(pattern: Pattern[Any], slot: str, charm_id: str, account_id: str | None) -> str:
    spec = pattern.cell_spec(slot)
    if spec.owner == "account":
        if account_id is None:
            raise ConfigError(
                f"pattern {pattern.id!r} needs an account for its {slot!r} cell; "
                "add the charm with --account ACCOUNT (see 'trayapp accounts list')"
            )
        return f"account:{account_id}:{slot}"
    return f"{charm_prefix(charm_id)}{slot}"


def resolve_bindings(
    pattern: Pattern[Any],
    charm_id: str,
    account_id: str | None,
    explicit: Mapping[str, str] | None,
    store: Store,
) -> dict[str, str]:
    """Every slot's cell name (defaults, overridden by ``explicit``), checked against the store.

    Raises :class:`BindingError` for an unknown slot, a malformed cell name, or a slot the
    pattern writes bound to a read-only (derived) cell.
    """
    explicit = dict(explicit or {})
    slots = [spec.name for spec in pattern.cells]
    for slot, cell_name in explicit.items():
        if slot not in slots:
            have = ", ".join(slots) or "none"
            raise BindingError(
                f"pattern {pattern.id!r} has no input called {slot!r} to bind (its inputs: {have})"
            )
        if not _CELL_NAME_RE.match(cell_name):
            raise BindingError(
                f"cannot bind {slot!r} to {cell_name!r}: a cell name looks like "
                f"'namespace:id:slot', e.g. "
                f"{default_binding(pattern, slot, charm_id, account_id)!r}"
            )
    bindings: dict[str, str] = {}
    for spec in pattern.cells:
        name = explicit.get(spec.name) or default_binding(pattern, spec.name, charm_id, account_id)
        if spec.writes and not _writable(store, name):
            raise BindingError(
                _read_only_message(pattern, spec.name, name, charm_id, account_id, store)
            )
        bindings[spec.name] = name
    return bindings


def _writable(store: Store, name: str) -> bool:
    """A name nobody declared yet is writable: writing it will create a plain cell."""
    try:
        return store.is_writable(name)
    except NotFoundError:
        return True


def _read_only_message(
    pattern: Pattern[Any],
    slot: str,
    name: str,
    charm_id: str,
    account_id: str | None,
    store: Store,
) -> str:
    try:
        suggestion: str | None = default_binding(pattern, slot, charm_id, account_id)
    except ConfigError:
        suggestion = None
    if suggestion is not None and (suggestion == name or not _writable(store, suggestion)):
        suggestion = None
    fix = (
        f"Bind {slot!r} to a writable cell such as {suggestion!r}."
        if suggestion
        else f"Bind {slot!r} to a writable cell (not a derived view)."
    )
    return (
        f"pattern {pattern.id!r} writes its {slot!r} input, but {name!r} is read-only (derived). "
        + fix
    )
