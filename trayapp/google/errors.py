"""Google's error responses, parsed once and sorted into the engine's outcome kinds.

Google wraps every API error in one envelope::

    {"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
               "errors": [{"domain": "global", "reason": "rateLimitExceeded", "message": "..."}]}}

but not always: ``status`` is missing from Calendar errors, and the front end can answer with an
HTML page (a 502) or nothing at all. :func:`parse_error` accepts all of these and returns a
:class:`GoogleApiError` value; :func:`classify` turns it into the exception a run ends with.

The exception hierarchy (every class carries the parsed ``api_error``):

* :class:`GoogleAuthRequired` (``auth_required``): a 401 that a fresh token did not cure, or a
  403 for missing scopes: only the user can fix either, by signing in again.
* :class:`GoogleRateLimited` (``rate_limited``): 429, or 403 with a rate-limit reason; its
  ``retry_after`` is when Google said (or our backoff says) to come back.
* :class:`GoogleServerError` (``server_error``): 5xx, or a response that cannot be read.
* :class:`GoogleRequestError` (``bug``): any other 4xx. Google refused the request as such, so
  repeating it cannot help; either our code or a setting Google does not accept (a malformed
  search query) built it. It is a ``bug`` rather than a ``server_error`` because the server is
  fine and telling the user "Google is having trouble" would send them looking in the wrong
  place; the message quotes Google's reason so the setting case is recognisable.
  :class:`HistoryExpired` (Gmail history 404) and :class:`SyncTokenExpired` (Calendar 410) are
  subclasses with their own types because patterns must catch them and resync.

Transport failures become the engine's plain :class:`~trayapp.core.errors.Offline`.
Messages are short and human, and never contain tokens: nothing here sees one, and text quoted
from the server is redacted (a proxy or a buggy server may echo a request's credentials) and cut
to one short line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from trayapp.core.errors import AuthRequired, RateLimited, ServerError, SyncError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.redact import redact
from trayapp.core.retry import cap_retry_at, parse_retry_after

#: 403 reasons that mean "slow down" rather than "forbidden". The first two are the ones
#: googleapiclient retries; ``dailyLimitExceeded`` is a rate limit too, just a long one.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded"})
#: Rate-limit reasons worth retrying within the same run (the daily limit is not).
SHORT_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})

_MAX_QUOTED = 200  # characters of Google's own message kept in ours
_RETRY_AFTER_TEXT = re.compile(
    r"retry after\s+(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)",
    re.IGNORECASE,
)
_WWW_AUTH_ERROR = re.compile(r'error="([^"]*)"')


@dataclass(frozen=True, slots=True)
class GoogleApiError:
    """What Google said, whatever shape the body had.

    ``reason`` and ``domain`` come from ``errors[0]`` (empty when absent); ``message`` is the
    most specific human text available (``errors[0].message``, else the top ``message``, else
    the HTTP reason phrase). ``retry_at`` is the latest of the ``Retry-After`` header and a
    "Retry after <time>" in the message, as an aware UTC time, at most a day ahead
    (:func:`trayapp.core.retry.cap_retry_at`).
    """

    status: int
    reason: str = ""
    domain: str = ""
    message: str = ""
    rpc_status: str = ""
    location: str = ""
    details_reasons: tuple[str, ...] = ()
    www_authenticate_error: str = ""
    retry_at: datetime | None = None

    @property
    def is_rate_limit(self) -> bool:
        return self.status == 429 or (self.status == 403 and self.reason in RATE_LIMIT_REASONS)

    @property
    def is_insufficient_scope(self) -> bool:
        return self.status == 403 and (
            self.reason == "insufficientPermissions"
            or "ACCESS_TOKEN_SCOPE_INSUFFICIENT" in self.details_reasons
            or self.www_authenticate_error == "insufficient_scope"
        )

    @property
    def is_retryable(self) -> bool:
        """Worth repeating within the same run, after a backoff (Google's retry guidance)."""
        if self.status >= 500 or self.status == 429:
            return True
        return self.status == 403 and self.reason in SHORT_RATE_LIMIT_REASONS

    def describe(self) -> str:
        """``HTTP 404 notFound: Requested entity was not found.``: for logs and messages."""
        head = f"HTTP {self.status}" + (f" {self.reason}" if self.reason else "")
        return f"{head}: {self.message}" if self.message else head


def parse_error(
    status: int,
    headers: Any,
    body: bytes,
    *,
    now: datetime | None = None,
) -> GoogleApiError:
    """Parse an error response; never raises, whatever the body.

    ``headers`` is any case-insensitive mapping with ``.get`` (``httpx.Headers``). ``now`` turns
    a relative ``Retry-After: <seconds>`` into a time; it defaults to the real clock.
    """
    now = now or datetime.now(UTC)
    payload = _json_object(body)
    err = payload.get("error") if payload is not None else None
    reason = domain = location = rpc_status = ""
    message = ""
    details: tuple[str, ...] = ()
    if isinstance(err, dict):
        rpc_status = _text(err.get("status"))
        message = _text(err.get("message"))
        items = err.get("errors")
        if isinstance(items, list) and items and isinstance(items[0], dict):
            first = items[0]
            reason = _text(first.get("reason"))
            domain = _text(first.get("domain"))
            location = _text(first.get("location"))
            message = _text(first.get("message")) or message
        raw_details = err.get("details")
        if isinstance(raw_details, list):
            details = tuple(
                _text(d.get("reason"))
                for d in raw_details
                if isinstance(d, dict) and d.get("reason")
            )
    elif isinstance(err, str):
        # OAuth-style {"error": "invalid_token", "error_description": "..."}.
        reason = err
        message = _text(payload.get("error_description")) if payload else ""
    if not message:
        message = _phrase(status)

    www_auth = _header(headers, "www-authenticate")
    match = _WWW_AUTH_ERROR.search(www_auth)
    retry_at = cap_retry_at(
        _latest(
            parse_retry_after(_header(headers, "retry-after"), now),
            parse_retry_after_text(message),
            parse_retry_after_text(_text(err.get("message")) if isinstance(err, dict) else ""),
        ),
        now,
    )
    return GoogleApiError(
        status=status,
        reason=reason,
        domain=domain,
        message=_one_line(message),
        rpc_status=rpc_status,
        location=location,
        details_reasons=details,
        www_authenticate_error=match.group(1) if match else "",
        retry_at=retry_at,
    )


def parse_retry_after_text(message: str) -> datetime | None:
    """The time in Google's "User-rate limit exceeded.  Retry after 2024-11-12T11:16:42.247Z"."""
    match = _RETRY_AFTER_TEXT.search(message)
    if not match:
        return None
    try:
        when = datetime.fromisoformat(match.group(1))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---- exceptions ---------------------------------------------------------------------------


class GoogleAuthRequired(AuthRequired):
    """The account must be signed in again (rejected credentials or missing permission)."""

    def __init__(
        self,
        message: str,
        *,
        api_error: GoogleApiError | None = None,
        account_id: str | None = None,
        charm_only: bool = False,
    ) -> None:
        super().__init__(message, account_id=account_id, charm_only=charm_only)
        self.api_error = api_error


class GoogleRateLimited(RateLimited):
    """Google asked us to slow down and retrying within the run did not get through."""

    def __init__(
        self,
        message: str,
        *,
        api_error: GoogleApiError | None = None,
        retry_after: datetime | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.api_error = api_error


class GoogleServerError(ServerError):
    """Google failed (5xx) or sent something unreadable, and retries did not get through."""

    def __init__(self, message: str, *, api_error: GoogleApiError | None = None) -> None:
        super().__init__(message)
        self.api_error = api_error


class GoogleRequestError(SyncError):
    """Google refused the request itself (a 4xx that is neither auth nor rate limit).

    Never retried. Outcome ``bug``: see the module docstring for why.
    """

    kind = OutcomeKind.BUG

    def __init__(self, message: str, *, api_error: GoogleApiError) -> None:
        super().__init__(message)
        self.api_error = api_error

    @property
    def status(self) -> int:
        return self.api_error.status


class HistoryExpired(GoogleRequestError):
    """Gmail no longer has history from the stored historyId (404): do a full sync."""


class SyncTokenExpired(GoogleRequestError):
    """Calendar's sync token (or updatedMin) is no longer valid (410): clear and full sync."""


def classify(
    err: GoogleApiError,
    *,
    service: str,
    account_id: str | None = None,
    retry_after: datetime | None = None,
) -> SyncError:
    """The exception a run ends with for ``err`` (after any retries were spent).

    ``service`` names the API for the user ("Gmail", "Google Calendar"). ``retry_after`` is the
    caller's backoff suggestion for rate limits; the later of it and Google's own wins.
    """
    quoted = err.describe()
    if err.status == 401:
        return GoogleAuthRequired(
            f"{service} no longer accepts this account's sign-in; sign in again.",
            api_error=err,
            account_id=account_id,
        )
    if err.is_insufficient_scope:
        return GoogleAuthRequired(
            f"{service} needs more permission than this account granted; "
            f"sign in again and allow access to {service}.",
            api_error=err,
            account_id=account_id,
            charm_only=True,  # the grant works for the account's other charms
        )
    if err.is_rate_limit:
        when = _latest(retry_after, err.retry_at)
        until = f" until {when:%H:%M} UTC" if when else ""
        return GoogleRateLimited(
            f"{service} is limiting how fast this account can sync ({quoted}); "
            f"syncing pauses{until} and then resumes.",
            api_error=err,
            retry_after=when,
        )
    if err.status >= 500:
        return GoogleServerError(
            f"{service} had a server problem ({quoted}); the sync will be retried.", api_error=err
        )
    if err.status == 410:
        return SyncTokenExpired(
            f"{service} needs a full sync: its change token is no longer valid ({quoted}).",
            api_error=err,
        )
    return GoogleRequestError(f"{service} refused a request ({quoted}).", api_error=err)


def unreadable_response(service: str, status: int, problem: str) -> GoogleServerError:
    """A success status whose body we cannot use: treat as a server fault (retried later)."""
    return GoogleServerError(
        f"{service} sent a response that could not be read (HTTP {status}: {problem}); "
        "the sync will be retried.",
        api_error=GoogleApiError(status=status, message=problem),
    )


# ---- helpers ------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _header(headers: Any, name: str) -> str:
    value = headers.get(name) if headers is not None else None
    return value if isinstance(value, str) else ""


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unexpected response"


def _one_line(text: str) -> str:
    text = " ".join(redact(text).split())
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 1] + "…"


def _latest(*times: datetime | None) -> datetime | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None
