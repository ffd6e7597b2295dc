"""``GoogleApi``: one account's HTTP connection to Google, with auth, retries and quota.

Every request of every Gmail or Calendar call goes through :meth:`GoogleApi.send`, so the rules
live in one place:

* ``Authorization`` comes from the account's :class:`~trayapp.google.tokens.TokenSource`. A 401
  triggers exactly one forced refresh and one retry; a second 401 ends the run with
  ``auth_required`` (no loop, however the refresh went).
* 429, 5xx and 403 rate-limit reasons are retried with truncated exponential backoff and
  jitter (:class:`~trayapp.core.retry.RetryPolicy`), waiting at least as long as Google asked
  ("Retry after <time>" or ``Retry-After``). When the attempts run out, or Google asks for a
  longer pause than a run should block, the request raises ``RateLimited``/``ServerError`` with
  ``retry_after`` set, and the scheduler does the waiting.
* Any other 4xx raises at once (:class:`~trayapp.google.errors.GoogleRequestError`).
* Connection failures and timeouts are retried a couple of times, then raise ``Offline``.
* Each request is charged to the account's :class:`~trayapp.google.quota.AccountQuota` first.

Query parameters are encoded the way Google's discovery documents spell them: booleans as
``true``/``false`` (never Python's ``True``), repeated parameters as repeated keys, datetimes
as RFC 3339 with an offset.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx

from trayapp.core.clock import Clock, SystemClock, sleep
from trayapp.core.errors import Offline
from trayapp.core.httptransport import LazyTLSTransport
from trayapp.core.retry import RetryPolicy
from trayapp.google.calendar import CalendarClient
from trayapp.google.endpoints import GoogleEndpoints
from trayapp.google.errors import (
    GoogleApiError,
    classify,
    parse_error,
    unreadable_response,
)
from trayapp.google.gmail import GmailClient
from trayapp.google.quota import AccountQuota, RateBudget, gmail_cost
from trayapp.google.tokens import TokenSource
from trayapp.google.wire import Params, ServiceName, encode_params

log = logging.getLogger(__name__)

_TITLES: dict[str, str] = {"gmail": "Gmail", "calendar": "Google Calendar"}
_BATCH_PATHS: dict[str, str] = {"gmail": "batch/gmail/v1", "calendar": "batch/calendar/v3"}
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class GoogleApi:
    """One account's connection to Gmail and Calendar (one ``httpx.AsyncClient``).

    Create one per account and share it between that account's charms; close it with
    :meth:`aclose` (or ``async with``). ``quota`` is the account's budget (the app shares one
    ``GoogleApi`` per account, so one ``AccountQuota``); pass the same ``AccountQuota`` to
    another ``GoogleApi`` of the account to make them share it.
    ``clock`` and ``rng`` make the backoff deterministic in tests; ``transport`` lets tests use
    ``httpx.MockTransport``.
    """

    def __init__(
        self,
        tokens: TokenSource,
        *,
        endpoints: GoogleEndpoints | None = None,
        account_id: str | None = None,
        quota: AccountQuota | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        user_agent: str = "trayapp (Pattern Sync)",
        on_scope_refused: Callable[[Sequence[str]], object] | None = None,
    ) -> None:
        self.tokens = tokens
        # Told the scopes a call accepts when Google answers 403 insufficient scope: the
        # accounts layer then knows the grant lacks them (the account needs permission).
        self._on_scope_refused = on_scope_refused
        self.endpoints = endpoints or GoogleEndpoints()
        self.account_id = account_id
        self.clock: Clock = clock or SystemClock()
        self.quota = quota or AccountQuota.create(clock=self.clock)
        self.retry = retry or RetryPolicy()
        self.rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            transport=transport or LazyTLSTransport(),  # no CA store for the emulator's http
            timeout=timeout,
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,
        )
        self.requests_sent = 0  # HTTP requests that left the client (tests and benchmarks)

    async def __aenter__(self) -> GoogleApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def gmail(self) -> GmailClient:
        return GmailClient(self)

    def calendar(self) -> CalendarClient:
        return CalendarClient(self)

    # ---- plumbing shared by the service clients ----------------------------------------------

    def base(self, service: ServiceName) -> str:
        return self.endpoints.gmail_base if service == "gmail" else self.endpoints.calendar_base

    def url(self, service: ServiceName, path: str) -> str:
        """Absolute URL of ``path`` (relative to the service's root, e.g. ``gmail/v1/...``)."""
        return self.base(service) + path.lstrip("/")

    def batch_url(self, service: ServiceName) -> str:
        return self.url(service, _BATCH_PATHS[service])

    def budget(self, service: ServiceName) -> RateBudget:
        return self.quota.gmail if service == "gmail" else self.quota.calendar

    def cost(self, service: ServiceName, method_id: str) -> int:
        return gmail_cost(method_id) if service == "gmail" else 1

    @staticmethod
    def title(service: ServiceName) -> str:
        return _TITLES[service]

    async def get_json(
        self, service: ServiceName, method_id: str, path: str, params: Params | None = None
    ) -> dict[str, Any]:
        """GET ``path`` and return its JSON object (errors raised as described above)."""
        response = await self.send(
            service,
            method_id,
            "GET",
            self.url(service, path),
            params=encode_params(params or {}),
            cost=self.cost(service, method_id),
        )
        return self.json_object(service, response.status_code, response.content)

    def json_object(self, service: ServiceName, status: int, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise unreadable_response(self.title(service), status, "not JSON") from None
        if not isinstance(data, dict):
            raise unreadable_response(self.title(service), status, "not a JSON object")
        return data

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
    ) -> httpx.Response:
        """Send one request with auth, quota, retries; return the 2xx response or raise."""
        title = self.title(service)
        budget = self.budget(service)
        refreshed = False
        failures = 0  # retryable HTTP errors so far
        transport_failures = 0
        while True:
            response: httpx.Response | None = None
            delay = 0.0
            # The token first: a refresh (seconds, with google-auth's own retries) must not hold
            # one of the account's request slots, and a failed one must not spend quota.
            token = await self.tokens.access_token()
            async with budget.reserve(cost):
                try:
                    response = await self._http.request(
                        method,
                        url,
                        params=list(params),
                        content=content,
                        headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                    )
                except httpx.TransportError as exc:
                    transport_failures += 1
                    problem = _transport_problem(exc)
                    if transport_failures >= self.retry.transport_attempts:
                        raise Offline(
                            f"Could not reach {title} ({problem}); "
                            "check the network connection. The sync will be retried."
                        ) from exc
                    delay = self.retry.backoff(transport_failures - 1, self.rng)
                    log.info("%s %s: %s; retrying in %.1f s", title, method_id, problem, delay)
                finally:
                    self.requests_sent += 1
            if response is None:
                await sleep(self.clock, delay)
                continue
            if response.is_success:
                return response

            err = parse_error(
                response.status_code, response.headers, response.content, now=self.clock.now()
            )
            if err.is_insufficient_scope and self._on_scope_refused is not None:
                named = refused_scopes(response.headers.get("www-authenticate", ""))
                self._on_scope_refused(named or SERVICE_READ_SCOPES[service])
            if err.status == 401 and not refreshed:
                # Exactly one forced refresh and one retry: a second 401 is classified below.
                refreshed = True
                log.info("%s %s: 401, refreshing the access token once", title, method_id)
                await self.tokens.refresh_after_rejection(token)
                continue
            delay = self.plan_retry(service, method_id, err, failures)
            failures += 1
            await sleep(self.clock, delay)

    def plan_retry(
        self, service: ServiceName, method_id: str, err: GoogleApiError, failures: int
    ) -> float:
        """Seconds to wait before retrying after ``err``, or raise if it must not be retried.

        ``failures`` is how many retryable errors this call has already had.
        """
        title = self.title(service)
        if err.is_rate_limit:
            self.budget(service).note_rate_limited()
        now = self.clock.now()
        if not err.is_retryable:
            raise classify(err, service=title, account_id=self.account_id, retry_after=err.retry_at)
        delay = self.retry.wait_for(failures, self.rng, now, err.retry_at)
        if failures + 1 >= self.retry.max_attempts or delay > self.retry.max_wait:
            raise classify(
                err,
                service=title,
                account_id=self.account_id,
                retry_after=now + timedelta(seconds=delay),
            )
        log.info(
            "%s %s: %s; retry %d/%d in %.1f s",
            title,
            method_id,
            err.describe(),
            failures + 1,
            self.retry.max_attempts - 1,
            delay,
        )
        return delay


# The scopes that let an API's read methods run (the discovery documents' `scopes` of
# users.messages.list / events.list): assumed refused when a 403 insufficient_scope names none.
SERVICE_READ_SCOPES: dict[ServiceName, tuple[str, ...]] = {
    "gmail": (
        "https://mail.google.com/",
        "https://www.googleapis.com/auth/gmail.modify",
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/gmail.metadata",
    ),
    "calendar": (
        "https://www.googleapis.com/auth/calendar",
        "https://www.googleapis.com/auth/calendar.readonly",
        "https://www.googleapis.com/auth/calendar.events",
        "https://www.googleapis.com/auth/calendar.events.readonly",
    ),
}

_WWW_AUTH_SCOPE = re.compile(r'\bscope="([^"]*)"')


def refused_scopes(www_authenticate: str) -> tuple[str, ...]:
    """The scopes a 403 ``insufficient_scope`` names (RFC 6750 3: ``scope="a b"``): the ones
    the call would have accepted, none of which the token has."""
    match = _WWW_AUTH_SCOPE.search(www_authenticate)
    return tuple(match.group(1).split()) if match else ()


def _transport_problem(exc: httpx.TransportError) -> str:
    """A short, secret-free description (httpx messages can carry whole URLs)."""
    if isinstance(exc, httpx.TimeoutException):
        return "the request timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was cut"
    return type(exc).__name__
