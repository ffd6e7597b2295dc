"""httpx's default transport, with the TLS certificate store loaded once, at the first https use.

``httpx.AsyncClient()`` builds an SSL context when it is made: it parses the whole CA bundle
(certifi's, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), about 0.8 MiB of memory and 80-200 ms of
CPU on this project's test machine, once per client. The app makes several clients (the
engine's shared one, one per Google account, the sign-in client), and many never speak https:
feeds over plain http, the demo's Google emulator on 127.0.0.1 (issue 17).

:class:`LazyTLSTransport` sends http requests through a pool whose context has no CA loaded
(and still demands verification, so it could never accept a certificate), and https requests
through a pool made at the first https request with :func:`shared_tls_context`: the one
context every client of the process shares, built as httpx builds its default
(``httpx.create_ssl_context()``: certifi, or the ``SSL_CERT_*`` variables). A redirect from
http to https is just the next request and takes the https pool. Proxies configured in the
environment are untouched: httpx mounts its own transports for them, as before.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once per process (certifi or SSL_CERT_*)."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


def _no_ca_context() -> ssl.SSLContext:
    # Hostname check and CERT_REQUIRED are the defaults of PROTOCOL_TLS_CLIENT: with no CA
    # loaded, any TLS handshake on this pool would fail rather than go unverified.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class LazyTLSTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncHTTPTransport(**options)``, split by scheme, its TLS context made on demand.

    ``options`` are AsyncHTTPTransport's (``limits``, ``http2``, ``retries``...), except
    ``verify``, which is always the shared default context for https.
    """

    def __init__(self, **options: Any) -> None:
        if "verify" in options:
            raise TypeError("LazyTLSTransport always verifies with the shared default context")
        self._options = options
        self._plain: httpx.AsyncHTTPTransport | None = None
        self._tls: httpx.AsyncHTTPTransport | None = None

    @property
    def tls_started(self) -> bool:
        """Has an https request been sent (so the certificate store is loaded)?"""
        return self._tls is not None

    def _for(self, scheme: str) -> httpx.AsyncHTTPTransport:
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.AsyncHTTPTransport(verify=shared_tls_context(), **self._options)
            return self._tls
        if self._plain is None:
            self._plain = httpx.AsyncHTTPTransport(verify=_no_ca_context(), **self._options)
        return self._plain

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._for(request.url.scheme).handle_async_request(request)

    async def aclose(self) -> None:
        for transport in (self._plain, self._tls):
            if transport is not None:
                await transport.aclose()
