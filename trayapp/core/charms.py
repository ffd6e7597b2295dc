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

import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trayapp.core.errors import BindingError, ConfigError, DamagedRecordError, NotFoundError
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
        self._store = store
        self._items = store.collection(CHARMS_COLLECTION)
        self.damaged: dict[str, str] = {}  # charm id -> why its row cannot be read (last all())
        # The decoded list, kept while nobody changed the charms: this repo's own writes drop
        # it, another connection's commits show in the store's data_version (issue 17.6: the
        # tray read and decoded every charm twice per menu refresh).
        self._cache: tuple[CharmInfo, ...] | None = None
        self._cache_version = -1
        self.reads = 0  # full reads of the charm rows: tests count them

    def all(self) -> list[CharmInfo]:
        """Every readable charm. A damaged row (invalid JSON, missing fields) is left out and
        recorded in :attr:`damaged`, so one bad row never takes the others down."""
        version = self._store.data_version()
        if self._cache is not None and version == self._cache_version:
            return list(self._cache)
        self.reads += 1
        rows, damaged = self._items.items_checked()
        out: list[CharmInfo] = []
        for key, value in rows:
            try:
                out.append(CharmInfo.from_json(value))
            except _DECODE_ERRORS as exc:
                damaged[key] = _reason(exc)
        for key, reason in damaged.items():
            if _warned.get(key) != reason:
                _warned[key] = reason
                log.warning("charm %s: %s", key, damaged_message(key, reason))
        self.damaged = damaged
        # Inside a transaction the rows may still be rolled back: not kept.
        if not self._store.in_transaction:
            self._cache, self._cache_version = tuple(out), version
        return out

    def find(self, charm_id: str) -> CharmInfo | None:
        """The charm, None if there is none; :class:`DamagedRecordError` if its row is damaged."""
        try:
            data = self._items.get(charm_id)
            return None if data is None else CharmInfo.from_json(data)
        except _DECODE_ERRORS as exc:
            raise DamagedRecordError(damaged_message(charm_id, _reason(exc))) from None

    def exists(self, charm_id: str) -> bool:
        """A row for this id, readable or not (a damaged charm can still be removed)."""
        return charm_id in self._items

    def get(self, charm_id: str) -> CharmInfo:
        info = self.find(charm_id)
        if info is None:
            known = ", ".join(self._items.keys()) or "none yet"
            raise NotFoundError(
                f"unknown charm {charm_id!r}; existing charms: {known} (see 'trayapp charms list')"
            )
        return info

    def save(self, info: CharmInfo) -> None:
        self._cache = None
        self._items.upsert(info.id, info.to_json(), sort_key=info.created_at.timestamp())

    def delete(self, charm_id: str) -> bool:
        self._cache = None
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


_DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError)
_warned: dict[str, str] = {}  # charm id -> reason already logged (once per process)
log = logging.getLogger(__name__)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if text.startswith("not valid JSON") else f"unreadable ({text[:80]})"


def damaged_message(charm_id: str, reason: str) -> str:
    """One line saying which charm is damaged and what to do."""
    return (
        f"the stored settings of charm {charm_id!r} are damaged ({reason}); it is skipped "
        f"until you remove it ('trayapp charms remove {charm_id}') and add it again"
    )


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
        problem = _foreign_cell(pattern.cell_spec(slot).owner, cell_name, charm_id, account_id)
        if problem:
            raise BindingError(f"cannot bind {slot!r} to {cell_name!r}: {problem}")
    bindings: dict[str, str] = {}
    for spec in pattern.cells:
        name = explicit.get(spec.name) or default_binding(pattern, spec.name, charm_id, account_id)
        if spec.writes and not _writable(store, name):
            raise BindingError(
                _read_only_message(pattern, spec.name, name, charm_id, account_id, store)
            )
        bindings[spec.name] = name
    return bindings


# The app's own records (charm definitions, statuses, run history); other "app:" names are
# cells the app shares on purpose (derived views).
PRIVATE_APP_CELLS = ("app:charms", "app:status", "app:runs:")


def _foreign_cell(owner: str, name: str, charm_id: str, account_id: str | None) -> str | None:
    """Why ``name`` is not this charm's to bind (another charm's or an account's private
    cell, or the app's own records), or None. Shared names in other namespaces are fine."""
    own_charm = charm_prefix(charm_id)
    if name.startswith("charm:") and not name.startswith(own_charm):
        return (
            f"it belongs to another charm; a charm binds only its own cells ('{own_charm}...') "
            "or shared cells outside the 'charm:' and 'account:' namespaces (e.g. 'shared:news')"
        )
    if name.startswith("account:"):
        own_account = f"account:{account_id}:" if account_id else None
        if owner != "account" or own_account is None or not name.startswith(own_account):
            return (
                "cells under 'account:' are private to the accounts; only an account input of "
                "the pattern may use them, and only for the charm's own account"
            )
        if name == f"{own_account}record":
            return "that is the account's own record, which only the accounts layer writes"
    if name in PRIVATE_APP_CELLS[:2] or name.startswith(PRIVATE_APP_CELLS[2]):
        return "that is one of the app's own records (charms, statuses, run history)"
    return None


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
