"""What the Gmail and Calendar clients share below :class:`~trayapp.google.client.GoogleApi`.

Google's spelling of query parameters, of enum values and of JSON lists, and page-token
following that refuses a loop. Kept apart from ``client.py`` so that the service clients
(``gmail.py``, ``calendar.py``) and the account connection (``client.py``, which builds them)
do not import each other: the clients are typed against :class:`ServiceTransport`, the part
of ``GoogleApi`` they use, which mypy checks ``GoogleApi`` provides where it builds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Literal, Protocol, TypeVar

import httpx

from trayapp.core.clock import Clock
from trayapp.google.errors import GoogleApiError, unreadable_response
from trayapp.google.tokens import TokenSource

ServiceName = Literal["gmail", "calendar"]
ParamValue = str | int | bool | datetime | Enum | Iterable[str | int | Enum] | None
Params = Mapping[str, ParamValue]
QueryItems = list[tuple[str, str]]


def encode_params(params: Params) -> QueryItems:
    """Google's spelling of query parameters, as ordered ``(name, value)`` pairs.

    ``None`` drops the parameter; a list or tuple repeats it; ``bool`` becomes ``true``/``false``;
    an aware ``datetime`` becomes RFC 3339 (Calendar rejects times without an offset, so a naive
    one raises ``ValueError`` here instead of a 400 from Google).
    """
    items: QueryItems = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, str | int | bool | datetime | Enum):
            items.append((name, _scalar(name, value)))
        else:
            items.extend((name, _scalar(name, v)) for v in value)
    return items


def _scalar(name: str, value: str | int | bool | datetime | Enum) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"parameter {name!r} needs a timezone-aware datetime")
        return value.isoformat()
    return str(value)


_E = TypeVar("_E", bound=str)


def canonical(value: str, allowed: tuple[_E, ...], what: str) -> _E:
    """Discovery's spelling of an enum value (``"FULL"`` → ``"full"``), else ``ValueError``.

    Google's discovery enums are case-sensitive (``format=FULL`` fails validation), so values
    are matched without case and sent exactly as the document spells them.
    """
    for option in allowed:
        if option.lower() == value.lower():
            return option
    raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def json_list(title: str, data: Mapping[str, Any], key: str) -> list[Any]:
    """``data[key]`` as a list; Google omits empty lists, so a missing key is ``[]``."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise unreadable_response(title, 200, f"{key!r} is not a list")
    return value


def json_str(data: Mapping[str, Any], key: str) -> str | None:
    """``data[key]`` if it is a non-empty string, else None."""
    value = data.get(key)
    return value if isinstance(value, str) and value else None


class PageTokens:
    """Follows ``nextPageToken``s, refusing one seen before: a server loop must not hang a run."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._seen: set[str] = set()

    def follow(self, token: str | None) -> str | None:
        if token is None:
            return None
        if token in self._seen:
            raise unreadable_response(self.title, 200, "the same page token came back twice")
        self._seen.add(token)
        return token


class ServiceTransport(Protocol):
    """What the service clients and batches use of :class:`~trayapp.google.client.GoogleApi`."""

    @property
    def tokens(self) -> TokenSource: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def account_id(self) -> str | None: ...

    def base(self, service: ServiceName) -> str: ...
    def batch_url(self, service: ServiceName) -> str: ...
    def cost(self, service: ServiceName, method_id: str) -> int: ...
    def title(self, service: ServiceName) -> str: ...
    def json_object(self, service: ServiceName, status: int, body: bytes) -> dict[str, Any]: ...
    def plan_retry(
        self, service: ServiceName, method_id: str, err: GoogleApiError, failures: int
    ) -> float: ...
    async def get_json(
        self, service: ServiceName, method_id: str, path: str, params: Params | None = None
    ) -> dict[str, Any]: ...
    async def send(
        self,
        service: ServiceName,
        method_id: str,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        cost: float = 1,
    ) -> httpx.Response: ...
