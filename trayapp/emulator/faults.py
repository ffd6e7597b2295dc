"""Fault rules: which requests misbehave, and how.

A rule matches on the discovery method id (``endpoint``, a glob such as ``gmail.users.messages.*``
or ``oauth.token``), the URL path (glob), the HTTP method and the account; it fires ``times``
times (forever when None) with ``probability``. Rules are tried in the order they were added;
``latency`` rules add up and let the request go on, every other kind ends it.

``body`` answers 200 with a given JSON body instead of the real one: a response that is valid
HTTP but whose content is malformed (``{"messages": [{"id": 5}, {"id": null}]}``), to check that
a client never advances a cursor past entries it could not read.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from trayapp.emulator.errors import CANONICAL_NAMES

ALIASES = ("401-authError", "404-notFound", "410-fullSyncRequired", "429-rateLimitExceeded")

FaultKind = Literal[
    "status", "latency", "hang", "reset", "reset_after_headers", "truncate", "token_error", "body"
]
FAULT_KINDS = (
    "status",
    "latency",
    "hang",
    "reset",
    "reset_after_headers",
    "truncate",
    "token_error",
    "body",
)
TOKEN_ERRORS = (
    "invalid_grant",
    "invalid_client",
    "invalid_rapt",
    "temporarily_unavailable",
    "500",
    "503",
    "503-html",
)

_ids = itertools.count(1)


@dataclass
class FaultRule:
    kind: FaultKind
    #: For kind="status": a canonical error name (see ``errors.CANONICAL_NAMES``), e.g. "429".
    status: str | None = None
    #: For kind="token_error": one of TOKEN_ERRORS.
    token_error: str | None = None
    endpoint: str | None = None
    path: str | None = None
    method: str | None = None
    account: str | None = None
    times: int | None = None
    probability: float = 1.0
    latency_ms: int = 0
    hang_seconds: float = 300.0
    #: Adds a ``Retry-After: N`` header to status faults (Google does not document one; optional).
    retry_after: int | None = None
    #: For "...-retry-after" bodies: how far ahead the ISO time in the message is (seconds).
    retry_after_message_seconds: int = 900
    #: For kind="body": the JSON answered with status 200 in place of the real response.
    body: Any = None
    #: Whether the rule also applies to the inner calls of a batch request.
    batch_parts: bool = True
    id: str = field(default_factory=lambda: f"fault-{next(_ids)}")
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; use one of {', '.join(FAULT_KINDS)}"
            )
        if self.kind == "status" and self.status not in (*CANONICAL_NAMES, *ALIASES):
            raise ValueError(
                f"unknown canonical error {self.status!r} for a status fault; "
                f"use one of {', '.join(CANONICAL_NAMES)}"
            )
        if self.kind == "token_error" and self.token_error not in TOKEN_ERRORS:
            raise ValueError(f"token_error must be one of {', '.join(TOKEN_ERRORS)}")
        if self.kind == "token_error" and self.endpoint is None and self.path is None:
            self.endpoint = "oauth.token"
        if self.kind == "body" and self.body is None:
            raise ValueError("a body fault needs the JSON body to answer with")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")

    def matches(
        self, *, api_method: str | None, path: str, method: str, account: str | None
    ) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.endpoint is not None and not fnmatch.fnmatchcase(api_method or "", self.endpoint):
            return False
        if self.path is not None and not fnmatch.fnmatchcase(path, self.path):
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.account is None or (account or "").lower() == self.account.lower()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultSet:
    def __init__(self, rng: random.Random) -> None:
        self.rules: list[FaultRule] = []
        self.rng = rng

    def add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule

    def clear(self, rule_id: str | None = None) -> None:
        self.rules = [] if rule_id is None else [r for r in self.rules if r.id != rule_id]

    def needs_account(self) -> bool:
        return any(r.account is not None for r in self.rules)

    def select(
        self,
        *,
        api_method: str | None,
        path: str,
        method: str,
        account: str | None,
        batch_part: bool,
    ) -> tuple[int, FaultRule | None]:
        """Return (total added latency in ms, the terminal rule that fires or None)."""
        latency = 0
        for rule in self.rules:
            if batch_part and (
                not rule.batch_parts
                or rule.kind in ("hang", "reset", "reset_after_headers", "truncate")
            ):
                continue
            if not rule.matches(api_method=api_method, path=path, method=method, account=account):
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule.hits += 1
            if rule.kind == "latency":
                latency += rule.latency_ms
                continue
            return latency, rule
        return latency, None
