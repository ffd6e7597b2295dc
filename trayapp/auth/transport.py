"""A ``google.auth.transport.Request`` over httpx.

google-auth 2.63 ships transports for requests, urllib3, grpc and aiohttp but none for httpx,
which is what the rest of the app uses; pulling in ``requests`` only for the token refresh would
add a second HTTP stack with its own proxy and TLS settings. This adapter is the ~30 lines
google-auth asks of a transport.

It is synchronous on purpose: google-auth's refresh is synchronous (and sleeps between its own
retries), so the token provider runs it in ``asyncio.to_thread``, off the event loop.

It also records the HTTP status of every exchange, because google-auth's exceptions do not keep
it: a 503 with an HTML body reaches us as ``RefreshError('<html>...', retryable=False)``, and
triage must still know it was a server error, not a rejected grant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from google.auth import exceptions as ga_exceptions
from google.auth import transport as ga_transport

DEFAULT_TIMEOUT = 30.0


class _Response(ga_transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxRequest(ga_transport.Request):
    """Make google-auth's HTTP calls with a synchronous ``httpx.Client``.

    ``statuses`` lists the status of each response in order (``None`` for a transport failure),
    so the caller can tell how many attempts google-auth made and how the last one ended.
    """

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(timeout=DEFAULT_TIMEOUT, trust_env=True)
        self._owns_client = client is None
        self.statuses: list[int | None] = []
        # The ``scope`` of the last successful token answer: google-auth keeps it only when
        # the refresh asked for scopes, and ours asks for none (it wants the grant as it is).
        self.granted_scope: str | None = None

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        try:
            response = self._client.request(
                method,
                url,
                content=body,
                headers=dict(headers or {}),
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            self.statuses.append(None)
            # The URL is safe to show (endpoints carry no secrets); the body is never shown.
            raise ga_exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"{type(exc).__name__} talking to {url}: {exc}"
            ) from exc
        self.statuses.append(response.status_code)
        if response.status_code == 200:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            scope = answer.get("scope") if isinstance(answer, dict) else None
            self.granted_scope = scope if isinstance(scope, str) else None
        return _Response(response)

    @property
    def last_status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
