"""HTTP helpers for patterns that talk to a server themselves (through ``ctx.http``).

``ctx.http`` is the app's shared ``httpx.AsyncClient`` (60 s read / 15 s connect timeout, the
app's User-Agent, redirects not followed unless a request asks). A rate-limit answer is ended
with :class:`~trayapp.api.RateLimited` carrying the server's wish::

    if resp.status_code == 429:
        raise RateLimited("the server is busy", retry_after=parse_retry_after(
            resp.headers.get("retry-after"), ctx.now()))

:func:`parse_retry_after` is the parser the app itself uses (the Google client, the feed
importer): delta-seconds or an HTTP date, at most :data:`MAX_RETRY_AFTER` (a day) ahead. The
scheduler caps any ``retry_after`` the same way. :class:`BackoffPolicy` is the app's ladder of
waits, for a pattern that retries something within its run.
"""

from __future__ import annotations

from trayapp.core.retry import MAX_RETRY_AFTER, BackoffPolicy, cap_retry_at, parse_retry_after

__all__ = ["MAX_RETRY_AFTER", "BackoffPolicy", "cap_retry_at", "parse_retry_after"]
