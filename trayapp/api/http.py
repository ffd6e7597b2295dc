"""HTTP helpers for patterns that talk to a server themselves (through ``ctx.http``).

What ``ctx.http`` is
--------------------
``ctx.http`` is the app's one shared ``httpx.AsyncClient``, used by every charm:

* **timeouts**: :data:`HTTP_TIMEOUT` (60 s to read, 15 s to connect); pass ``timeout=`` on a
  request that needs longer (a large download). The run as a whole is bounded by the pattern's
  ``timeout`` (5 minutes by default) whatever the requests do;
* **redirects are not followed** (httpx's default): a 301/302/307/308 comes back as the
  response; pass ``follow_redirects=True`` on a request that should follow them;
* **User-Agent**: :data:`USER_AGENT` (``PatternSync/<version>``); set your own header per
  request if the service asks plugins to identify themselves;
* **it cannot be closed** by a pattern: ``await ctx.http.aclose()`` and ``async with ctx.http``
  are logged and ignored, so one plugin cannot break every other charm's HTTP;
* a transport failure raises ``httpx.TransportError`` (``ConnectError``, ``ReadTimeout``...):
  end the run with :class:`~trayapp.api.Offline`.

Ending a run from a response
----------------------------
:func:`raise_for_status` turns a response that is not a success into the outcome the app
understands (see :func:`outcome_for_status` for the table)::

    resp = await ctx.http.get(url, headers={"If-None-Match": etag})
    raise_for_status(resp, ctx.now(), what="the notifications API")
    if resp.status_code == 304:
        return RunReport(message="not modified")

A rate-limit answer carries the server's wish, parsed by :func:`parse_retry_after` (the parser
the app itself uses: delta-seconds or an HTTP date, at most :data:`MAX_RETRY_AFTER`, a day,
ahead; the scheduler caps any ``retry_after`` the same way). :class:`BackoffPolicy` is the app's
ladder of waits, for a pattern that retries something within its run.

Asking for a later poll
-----------------------
A successful run may ask for a longer wait than the charm's interval with
``RunReport(next_poll=...)``; :func:`poll_interval_hint` reads a server's ``X-Poll-Interval``
(GitHub's convention: seconds to wait before polling again)::

    return RunReport(added=n, next_poll=poll_interval_hint(resp))
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import httpx

from trayapp.core.engine import HTTP_TIMEOUT, USER_AGENT
from trayapp.core.errors import (
    AuthRequired,
    ConfigProblem,
    Offline,
    RateLimited,
    ServerError,
    SyncError,
)
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.retry import MAX_RETRY_AFTER, BackoffPolicy, cap_retry_at, parse_retry_after

__all__ = [
    "HTTP_TIMEOUT",
    "MAX_RETRY_AFTER",
    "USER_AGENT",
    "BackoffPolicy",
    "cap_retry_at",
    "error_for_response",
    "outcome_for_status",
    "parse_retry_after",
    "poll_interval_hint",
    "raise_for_status",
]


def outcome_for_status(status: int) -> OutcomeKind | None:
    """The outcome an HTTP status code means for a run; None for a success (2xx, 304).

    =====================  ========================  ==========================================
    status                 outcome                   why
    =====================  ========================  ==========================================
    2xx, 304               (none: go on)             success / not modified
    other 3xx              ``config_error``          a redirect the request did not follow:
                                                     the URL in the settings moved
    401, 403               ``auth_required``         the credentials were refused: the user
                                                     must sign in or enter a new token
    408                    ``offline``               the server timed the request out
    429                    ``rate_limited``          slow down (honour ``Retry-After``)
    400, 404, 410, other   ``config_error``          the request as configured cannot work
    4xx
    503 with Retry-After   ``rate_limited``          maintenance with a stated end
    5xx                    ``server_error``          the server failed; retried with backoff
    =====================  ========================  ==========================================
    """
    if 200 <= status < 300 or status == 304:
        return None
    if status in (401, 403):
        return OutcomeKind.AUTH_REQUIRED
    if status == 408:
        return OutcomeKind.OFFLINE
    if status == 429:
        return OutcomeKind.RATE_LIMITED
    if status >= 500:
        return OutcomeKind.SERVER_ERROR
    return OutcomeKind.CONFIG_ERROR


def error_for_response(
    response: httpx.Response, now: datetime, *, what: str | None = None
) -> SyncError | None:
    """The :class:`~trayapp.api.SyncError` that ends a run for ``response``; None on success.

    ``what`` names the service in the message ("the notifications API"); by default the host.
    The message never contains the URL's query or the response body (either may hold a secret).
    """
    status = response.status_code
    kind = outcome_for_status(status)
    if kind is None:
        return None
    name = what or response.request.url.host or "the server"
    code = f"HTTP {status}"
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    if status == 503 and retry_after is not None:
        kind = OutcomeKind.RATE_LIMITED
    if kind is OutcomeKind.RATE_LIMITED:
        until = f"; it asked to wait until {retry_after:%H:%M:%S} UTC" if retry_after else ""
        return RateLimited(f"{name} is limiting requests ({code}){until}", retry_after=retry_after)
    if kind is OutcomeKind.AUTH_REQUIRED:
        return AuthRequired(
            f"{name} refused the credentials ({code}); sign in again or enter a new token in "
            "the charm's settings"
        )
    if kind is OutcomeKind.OFFLINE:
        return Offline(f"{name} timed the request out ({code})")
    if kind is OutcomeKind.SERVER_ERROR:
        return ServerError(f"{name} failed ({code}); it will be tried again later")
    if 300 <= status < 400:
        return ConfigProblem(f"{name} moved ({code}); change the address in the charm's settings")
    if status in (404, 410):
        return ConfigProblem(f"{name} was not found ({code}); check the charm's settings")
    return ConfigProblem(f"{name} refused the request ({code}); check the charm's settings")


def raise_for_status(response: httpx.Response, now: datetime, *, what: str | None = None) -> None:
    """Raise :func:`error_for_response`'s error, if any: end the run with the right outcome."""
    error = error_for_response(response, now, what=what)
    if error is not None:
        raise error


def poll_interval_hint(
    response: httpx.Response | Mapping[str, str], header: str = "x-poll-interval"
) -> timedelta | None:
    """A server's "poll again in N seconds" header as a ``timedelta`` (None if absent or bad).

    Pass it as ``RunReport(next_poll=...)``: the scheduler then waits at least that long (and at
    most a day) before the charm's next run.
    """
    headers = response.headers if isinstance(response, httpx.Response) else response
    value = headers.get(header)
    if value is None:
        # httpx.Headers is case-insensitive; a plain mapping may not be.
        value = next((v for k, v in headers.items() if k.lower() == header.lower()), None)
    if value is None or not value.strip().isdigit():
        return None
    return min(timedelta(seconds=int(value.strip())), MAX_RETRY_AFTER)
