"""Google batch requests: many API calls in one HTTP round trip (``multipart/mixed``).

Wire format (Google's batch guide, and googleapiclient's ``BatchHttpRequest``)::

    POST /batch/gmail/v1                 Content-Type: multipart/mixed; boundary=B
    --B
    Content-Type: application/http
    Content-ID: <PREFIX+1>

    GET /gmail/v1/users/me/messages/ID?format=metadata HTTP/1.1

    --B--

The reply is ``multipart/mixed`` too; each part holds a whole HTTP response (status line,
headers, JSON) and the ``Content-ID`` ``<response-PREFIX+1>``. Parts may come back in any order
and each has its own status (a 404 for a message deleted meanwhile, a 429 for one part alone).
The outer request's headers apply to every inner call (the guide says so), so the
``Authorization`` header is sent once, on the outer request.

:func:`run_batched` is what the service clients use: it splits calls into batches, sends them
(a few in parallel, paced by the account's quota), retries only the parts that failed with a
retryable status, and returns one :class:`CallResult` per call.

Encoding is written by hand because the format is a few fixed lines and ``email``'s generator
adds headers Google does not expect; decoding uses the standard library's MIME parser, which
copes with preambles, LF-only line ends and padding.
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import logging
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx

from trayapp.core.clock import sleep
from trayapp.core.errors import RateLimited, SyncError
from trayapp.google.errors import (
    GoogleApiError,
    GoogleAuthRequired,
    classify,
    parse_error,
    unreadable_response,
)

if TYPE_CHECKING:
    from trayapp.google.wire import ServiceName, ServiceTransport

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 50  # Google: "sending batches larger than 50 requests is not recommended"
MAX_BATCH_SIZE = 100  # Google's hard limit
DEFAULT_PARALLEL_BATCHES = 3


@dataclass(frozen=True, slots=True)
class BatchCall:
    """One inner GET: ``path`` relative to the service root (``gmail/v1/users/me/...``)."""

    method_id: str
    path: str
    params: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True, slots=True)
class PartResponse:
    """One inner HTTP response of a batch reply."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of one call of a batch: ``data`` on success, else ``error``."""

    data: dict[str, Any] | None = None
    error: SyncError | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> int:
        """HTTP status of the call (200 on success; 0 if unknown)."""
        if self.error is None:
            return 200
        api_error: GoogleApiError | None = getattr(self.error, "api_error", None)
        return api_error.status if api_error is not None else 0


# ---- codec --------------------------------------------------------------------------------


def request_line(origin_path: str, call: BatchCall) -> str:
    """``GET /gmail/v1/...?a=b HTTP/1.1`` for ``call`` on an API rooted at ``origin_path``."""
    url = httpx.URL(origin_path.rstrip("/") + "/" + call.path.lstrip("/"), params=list(call.params))
    target = url.raw_path.decode("ascii")
    return f"GET {target} HTTP/1.1"


def encode_batch(
    calls: Sequence[BatchCall], *, origin_path: str, boundary: str, id_prefix: str
) -> bytes:
    """The body of a batch request; part ``i`` (0-based) gets Content-ID ``<id_prefix+{i+1}>``."""
    lines: list[str] = []
    for number, call in enumerate(calls, start=1):
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: <{id_prefix}+{number}>",
            "",
            request_line(origin_path, call),
            "",
            "",
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def content_id_number(header: str, id_prefix: str) -> int | None:
    """The call number in ``<response-PREFIX+N>`` (also tolerates missing ``<>`` or prefix)."""
    value = header.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    value = value.removeprefix("response-")
    base, sep, number = value.rpartition("+")
    if not sep or unquote(base) != id_prefix:
        return None
    try:
        return int(unquote(number))
    except ValueError:
        return None


def decode_batch(content_type: str, body: bytes, *, id_prefix: str) -> dict[int, PartResponse]:
    """Parse a batch reply into ``{call number: response}``; unknown or repeated ids are dropped.

    Raises ``ValueError`` if the body is not a multipart reply at all.
    """
    if "multipart/" not in content_type.lower():
        raise ValueError(f"expected a multipart reply, got {content_type or 'no content type'}")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("the batch reply has no parts")
    parts: dict[int, PartResponse] = {}
    for part in message.get_payload():
        if not isinstance(part, email.message.Message):
            continue
        number = content_id_number(str(part.get("Content-ID", "")), id_prefix)
        if number is None or number in parts:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        parsed = parse_http_response(payload)
        if parsed is not None:
            parts[number] = parsed
    return parts


def parse_http_response(raw: bytes) -> PartResponse | None:
    """Split ``HTTP/1.1 200 OK``, headers and body; None if the part is garbled."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines:
        return None
    status_parts = lines[0].split(None, 2)
    if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/"):
        return None
    try:
        status = int(status_parts[1])
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return PartResponse(status=status, headers=headers, body=body)


def encode_reply(parts: Mapping[int, PartResponse], *, boundary: str, id_prefix: str) -> bytes:
    """Encode a batch *reply* (tests use it to check the codec round-trips)."""
    lines: list[str] = []
    for number, part in parts.items():
        lines += [
            f"--{boundary}",
            "Content-Type: application/http",
            f"Content-ID: <response-{id_prefix}+{number}>",
            "",
            f"HTTP/1.1 {part.status} {_phrase(part.status)}",
            *(f"{k}: {v}" for k, v in part.headers.items()),
            "",
            part.body.decode("utf-8"),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


# ---- sending ------------------------------------------------------------------------------


async def send_batch(
    api: ServiceTransport, service: ServiceName, calls: Sequence[BatchCall]
) -> tuple[dict[int, PartResponse], str]:
    """Send one batch; return ``{call index (0-based): response}`` and the token it used.

    The outer request gets the client's full treatment (auth, quota for the sum of the parts,
    retries); missing parts are simply absent from the result.
    """
    if not 0 < len(calls) <= MAX_BATCH_SIZE:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_SIZE} calls, not {len(calls)}")
    boundary = f"batch_{uuid.uuid4().hex}"
    id_prefix = uuid.uuid4().hex
    origin_path = httpx.URL(api.base(service)).path
    body = encode_batch(calls, origin_path=origin_path, boundary=boundary, id_prefix=id_prefix)
    response = await api.send(
        service,
        f"{service}.batch",
        "POST",
        api.batch_url(service),
        content=body,
        headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
        cost=sum(api.cost(service, call.method_id) for call in calls),
    )
    token = response.request.headers.get("authorization", "").removeprefix("Bearer ")
    try:
        numbered = decode_batch(
            response.headers.get("content-type", ""), response.content, id_prefix=id_prefix
        )
    except ValueError as exc:
        raise unreadable_response(api.title(service), response.status_code, str(exc)) from None
    return {n - 1: part for n, part in numbered.items() if 0 < n <= len(calls)}, token


_MISSING_PART = GoogleApiError(status=503, reason="missingBatchPart", message="no reply for call")


async def run_batched(
    api: ServiceTransport,
    service: ServiceName,
    calls: Sequence[BatchCall],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    parallel: int = DEFAULT_PARALLEL_BATCHES,
) -> list[CallResult]:
    """Run ``calls`` as batches; one :class:`CallResult` per call, in the order given.

    Inner parts that fail with a retryable status (429, 5xx, 403 rate limit, or no reply at all)
    are retried on their own, in a smaller batch, after the client's backoff. An inner 401 gets
    one token refresh for the whole run; a 401 after that raises ``AuthRequired``. Other inner
    errors (a 404 for a message deleted since it was listed) are returned, not raised, so the
    caller can keep everything else. Errors of the outer request (offline, auth, exhausted
    retries) are raised.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    title = api.title(service)
    results: list[CallResult | None] = [None] * len(calls)
    pending = list(range(len(calls)))
    failures = 0
    refreshed = False
    gate = asyncio.Semaphore(max(1, parallel))
    while pending:
        round_ = _Round(api, service, calls, results, gate)
        chunks = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
        await _all_or_nothing([round_.run(chunk) for chunk in chunks])
        if not round_.failed:
            break
        pending = sorted(round_.failed)
        if round_.rejected_tokens:
            if refreshed:
                raise _auth_required(api, title, round_.failed)
            refreshed = True
            await api.tokens.refresh_after_rejection(round_.rejected_tokens[0])
            if all(err.status == 401 for err in round_.failed.values()):
                continue  # a new token is the remedy: no backoff needed
        others = [err for err in round_.failed.values() if err.status != 401]
        worst = max(others, key=lambda e: (e.is_rate_limit, e.retry_at or api.clock.now()))
        try:
            delay = api.plan_retry(service, f"{service}.batch", worst, failures)
        except SyncError as exc:
            # Out of attempts (or asked to wait too long): report these calls, keep the rest.
            log.info("%s batch: %d calls still failing: %s", title, len(pending), exc.message)
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            for index, err in round_.failed.items():
                error = classify(
                    err, service=title, account_id=api.account_id, retry_after=retry_after
                )
                results[index] = CallResult(error=error)
            break
        failures += 1
        log.info("%s batch: retrying %d failed calls in %.1f s", title, len(pending), delay)
        await sleep(api.clock, delay)
    done = [r for r in results if r is not None]
    assert len(done) == len(calls), "every call ends with a result or an error"
    return done


class _Round:
    """One pass over the pending calls: stores results, collects the calls to retry."""

    def __init__(
        self,
        api: ServiceTransport,
        service: ServiceName,
        calls: Sequence[BatchCall],
        results: list[CallResult | None],
        gate: asyncio.Semaphore,
    ) -> None:
        self.api = api
        self.service = service
        self.calls = calls
        self.results = results
        self.gate = gate
        self.failed: dict[int, GoogleApiError] = {}
        self.rejected_tokens: list[str] = []

    async def run(self, chunk: list[int]) -> None:
        api = self.api
        async with self.gate:
            parts, token = await send_batch(api, self.service, [self.calls[i] for i in chunk])
        for position, index in enumerate(chunk):
            part = parts.get(position)
            if part is None:
                self.failed[index] = _MISSING_PART
                continue
            if 200 <= part.status < 300:
                try:
                    data = api.json_object(self.service, part.status, part.body)
                except SyncError as exc:
                    self.results[index] = CallResult(error=exc)
                else:
                    self.results[index] = CallResult(data=data)
                continue
            err = parse_error(part.status, part.headers, part.body, now=api.clock.now())
            if err.status == 401:
                self.failed[index] = err
                self.rejected_tokens.append(token)
            elif err.is_retryable:
                self.failed[index] = err
            else:
                error = classify(err, service=api.title(self.service), account_id=api.account_id)
                self.results[index] = CallResult(error=error)


def _auth_required(
    api: ServiceTransport, title: str, errors: Mapping[int, GoogleApiError]
) -> GoogleAuthRequired:
    err = next(e for e in errors.values() if e.status == 401)
    exc = classify(err, service=title, account_id=api.account_id)
    assert isinstance(exc, GoogleAuthRequired)
    return exc


async def _all_or_nothing(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` concurrently; on the first failure cancel the rest and raise *that* error.

    (``asyncio.TaskGroup`` would wrap it in an ``ExceptionGroup``, which the engine would see as
    a bug instead of, say, ``Offline``.)
    """
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
