"""The emulator's ASGI application: Google's URL layout on one base URL, plus the control plane.

Requests pass through one middleware (``EmulatorApp.__call__``) that records them, applies fault
rules and the per-user concurrency cap, and (in test mode) checks responses against the
discovery documents, before the Starlette router hands them to the OAuth, Gmail or Calendar
handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.routing import Match, Route, Router

from trayapp.emulator import errors
from trayapp.emulator.faults import FaultRule
from trayapp.emulator.state import (
    REDACTED_FORM_KEYS,
    EmulatorState,
    LogEntry,
    fingerprint,
    redact_headers,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRANSPORT_KEY = "trayapp.emulator.transport"
#: Query parameters that carry credentials; the request log keeps only a fingerprint.
REDACTED_QUERY_KEYS = frozenset({"access_token", "oauth_token", "key", "token"})


def iso_z(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


class ResponseCapture:
    """A buffered ASGI response, so it can be checked, truncated or embedded in a batch reply."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    async def replay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": bytes(self.body)})


def _abort(transport: Any) -> None:
    """Close with RST (SO_LINGER 0), which clients see as 'connection reset by peer'."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class EmulatorApp:
    """ASGI app; ``state`` can be swapped (reset) at any time between requests."""

    def __init__(self, state: EmulatorState | None = None, *, latency_ms: int = 0) -> None:
        from trayapp.emulator.routes import build_routes

        self.state = state or EmulatorState()
        self.latency_ms = latency_ms
        self.router = Router(routes=build_routes(), default=_google_404)
        self.in_flight: dict[str, int] = {}
        self.closing = False
        self._closing_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        #: Woken whenever the request log changes (an entry arrives or gets its status), so
        #: tests can wait for requests instead of sleeping: a condition for other threads,
        #: events for coroutines in the server's loop.
        self.log_condition = threading.Condition()
        self.log_waiters: set[asyncio.Event] = set()

    # ---- lifecycle ----

    def begin_shutdown(self) -> None:
        """Release hanging requests so the server can stop promptly. Call in the server loop."""
        self.closing = True
        if self._closing_event is not None:
            self._closing_event.set()

    def notify_log(self) -> None:
        with self.log_condition:
            self.log_condition.notify_all()
        for event in self.log_waiters:
            event.set()

    # ---- helpers used by handlers ----

    def route_name(self, scope: Scope) -> str | None:
        """The discovery method id (route name) a request is for, known before dispatch so
        faults, quotas and the log can use it."""
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL and isinstance(route, Route):
                return route.name
        return None

    def _account_for(
        self,
        api_method: str | None,
        headers: dict[str, str],
        body: bytes,
        query: list[tuple[str, str]],
    ) -> str | None:
        state = self.state
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else None
        if token is None:
            token = next((v for k, v in query if k in ("access_token", "oauth_token")), None)
        if token is not None:
            at = state.access_tokens.get(token)
            if at is not None:
                return at.email
        if api_method in ("oauth.token", "oauth.revoke"):
            form = dict(parse_qsl(body.decode("latin-1")))
            rt = state.refresh_tokens.get(form.get("refresh_token", form.get("token", "")))
            if rt is not None:
                return rt.email
            code = state.codes.get(form.get("code", ""))
            if code is not None:
                return code.email
            at2 = state.access_tokens.get(form.get("token", ""))
            if at2 is not None:
                return at2.email
        return None

    # ---- the middleware ----

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        scope["emu"] = self
        body = scope.get("emu.body")
        if body is None:
            body = await _read_body(receive)
            if body is None:
                return  # the client went away before sending its body
            scope["emu.body"] = body

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        if scope["path"].startswith("/__emu__/"):
            await self.router(scope, replay, send)  # the control plane is not logged or faulted
            return
        await self._serve_api(scope, body, replay, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                self.loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve_api(
        self, scope: Scope, body: bytes, replay: Receive, receive: Receive, send: Send
    ) -> None:
        """Log, check, fault, cap and dispatch one OAuth or API request."""
        state = self.state
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {val}" if name in headers else val
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        path: str = scope["path"]
        method: str = scope["method"]
        batch_part = bool(scope.get("emu.batch_part"))
        api_method = self.route_name(scope)
        account = self._account_for(api_method, headers, body, query)
        entry = LogEntry(
            seq=state.next_seq(),
            timestamp=state.clock.now(),
            method=method,
            path=path,
            query=[(k, fingerprint(v) if k in REDACTED_QUERY_KEYS else v) for k, v in query],
            headers=redact_headers(headers),
            body=_redact_body(body, headers.get("content-type", "")),
            api_method=api_method,
            account=account,
            batch_part=batch_part,
        )
        state.record(entry)
        self.notify_log()
        conf = state.conformance
        if conf is not None and api_method is not None:
            conf.check_request(api_method, method, path, query)

        # The per-user concurrency cap counts a request from arrival (including injected
        # latency) to its response; batch parts are counted one by one (they run concurrently,
        # so parts slowed by a fault overlap), not the envelope.
        cap_key = None
        if account is not None and _counts_for_concurrency(api_method):
            if (
                state.quota.enabled
                and self.in_flight.get(account, 0) >= state.quota.gmail_concurrency
            ):
                await self._send_capture(
                    api_error_capture(errors.too_many_concurrent()), send, entry
                )
                return
            cap_key = account
            self.in_flight[account] = self.in_flight.get(account, 0) + 1
        try:
            latency, rule = state.faults.select(
                api_method=api_method,
                path=path,
                method=method,
                account=account,
                batch_part=batch_part,
            )
            if not batch_part:
                # The server-wide latency models the network round trip: once per HTTP
                # request. Inner batch calls share their envelope's round trip (Google's
                # backend serves them in parallel), so only fault rules can slow one part.
                latency += self.latency_ms
            if latency:
                await asyncio.sleep(latency / 1000)
            if rule is not None:
                entry.fault = f"{rule.id}:{rule.kind}"
                await self._apply_fault(rule, scope, replay, receive, send, entry)
                return
            cap = ResponseCapture()
            await self.router(scope, replay, cap.send)
        finally:
            if cap_key is not None:
                self.in_flight[cap_key] -= 1
        if conf is not None and api_method is not None:
            problem = conf.check_response(
                api_method,
                cap.status,
                bytes(cap.body),
                cap.header("content-type"),
                partial=any(k == "fields" for k, _ in query),
            )
            if problem:
                # Test mode: a non-conforming response is an emulator bug; make it loud.
                cap = api_error_capture(
                    errors.ApiError(
                        500,
                        f"emulator bug: response of {api_method} does not conform: {problem}",
                        [{"message": problem, "domain": "emulator", "reason": "nonConforming"}],
                        "INTERNAL",
                    )
                )
        await self._send_capture(cap, send, entry)

    async def _send_capture(self, cap: ResponseCapture, send: Send, entry: LogEntry) -> None:
        entry.status = cap.status
        self.notify_log()
        await cap.replay(send)

    async def _apply_fault(
        self,
        rule: FaultRule,
        scope: Scope,
        replay: Receive,
        receive: Receive,
        send: Send,
        entry: LogEntry,
    ) -> None:
        transport = scope.get("extensions", {}).get(TRANSPORT_KEY)
        if rule.kind == "status":
            assert rule.status is not None
            await self._send_capture(self.status_fault_capture(rule), send, entry)
        elif rule.kind == "token_error":
            assert rule.token_error is not None
            await self._send_capture(token_fault_capture(rule.token_error), send, entry)
        elif rule.kind == "body":
            cap = ResponseCapture()
            cap.status = 200
            cap.headers = [(b"content-type", b"application/json; charset=UTF-8")]
            cap.body += json.dumps(rule.body).encode()
            await self._send_capture(cap, send, entry)
        elif rule.kind == "hang":
            await self._hang(rule.hang_seconds, receive)
            if transport is not None:
                transport.close()
            else:
                await self._send_capture(api_error_capture(errors.backend_error_503()), send, entry)
        elif rule.kind == "reset":
            if transport is None:
                raise ConnectionResetError("emulator fault: connection reset")
            _abort(transport)
        elif rule.kind == "reset_after_headers":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json; charset=UTF-8"),
                        (b"content-length", b"4096"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})
            entry.status = 200
            if transport is None:
                raise ConnectionResetError("emulator fault: connection reset after headers")
            await asyncio.sleep(0.01)
            _abort(transport)
        elif rule.kind == "truncate":
            cap = ResponseCapture()
            await self.router(scope, replay, cap.send)
            entry.status = cap.status
            full = bytes(cap.body)
            hdrs = [(k, v) for k, v in cap.headers if k.lower() != b"content-length"]
            hdrs.append((b"content-length", str(len(full)).encode()))
            await send({"type": "http.response.start", "status": cap.status, "headers": hdrs})
            await send(
                {"type": "http.response.body", "body": full[: len(full) // 2], "more_body": True}
            )
            if transport is None:
                raise ConnectionResetError("emulator fault: truncated body")
            transport.close()

    def status_fault_capture(self, rule: FaultRule) -> ResponseCapture:
        assert rule.status is not None
        if rule.status == "502-html":
            cap = ResponseCapture()
            cap.status = 502
            cap.headers = [(b"content-type", b"text/html; charset=UTF-8")]
            cap.body += errors.HTML_502.encode()
        else:
            retry_at = iso_z(self.state.clock.now() + rule.retry_after_message_seconds)
            cap = api_error_capture(errors.canonical(rule.status, retry_at_iso=retry_at))
        if rule.retry_after is not None:
            cap.headers.append((b"retry-after", str(rule.retry_after).encode()))
        return cap

    async def _hang(self, seconds: float, receive: Receive) -> None:
        if self._closing_event is None:
            self._closing_event = asyncio.Event()
        if self.closing:
            return
        waiters = [
            asyncio.ensure_future(asyncio.sleep(seconds)),
            asyncio.ensure_future(self._closing_event.wait()),
            asyncio.ensure_future(_wait_disconnect(receive)),
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    # ---- batch support ----

    async def dispatch_inner(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: list[tuple[str, str]],
        body: bytes,
        outer: Scope,
    ) -> ResponseCapture:
        """Run one inner batch call through the full middleware (log, faults, auth, quota)."""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.upper(),
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode("latin-1"),
            "root_path": "",
            "query_string": query_string.encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            "server": outer.get("server"),
            "client": outer.get("client"),
            "emu.batch_part": True,
            "emu.body": body,
        }

        async def receive() -> Message:
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        cap = ResponseCapture()
        await self(scope, receive, cap.send)
        return cap


async def _google_404(scope: Scope, receive: Receive, send: Send) -> None:
    """Google's front end answers unknown paths with its HTML error page."""
    path = html.escape(str(scope.get("path", "")))
    body = (
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
        "  <title>Error 404 (Not Found)!!1</title>\n"
        "  <p><b>404.</b> <ins>That\u2019s an error.</ins>\n"
        f"  <p>The requested URL <code>{path}</code> was not found on this server."
        "  <ins>That\u2019s all we know.</ins>\n"
    ).encode()
    headers = [
        (b"content-type", b"text/html; charset=UTF-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _counts_for_concurrency(api_method: str | None) -> bool:
    return (
        api_method is not None and api_method.startswith("gmail.") and api_method != "gmail.batch"
    )


async def _read_body(receive: Receive) -> bytes | None:
    body = bytearray()
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return bytes(body)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


def api_error_capture(err: errors.ApiError) -> ResponseCapture:
    """An API error with Google's front-end headers, as a buffered response."""
    cap = ResponseCapture()
    cap.status = err.code
    hdrs = dict(errors.ERROR_HEADERS)
    hdrs.update(err.headers)
    cap.headers = [(k.encode(), v.encode("latin-1")) for k, v in hdrs.items()]
    cap.body += err.render()
    return cap


def token_fault_capture(kind: str) -> ResponseCapture:
    cap = ResponseCapture()
    if kind == "503-html":
        cap.status = 503
        cap.headers = [(b"content-type", b"text/html; charset=UTF-8")]
        cap.body += (
            b"<html><head><title>503 Service Unavailable</title></head>"
            b"<body>Service Unavailable</body></html>"
        )
        return cap
    bodies: dict[str, tuple[int, dict[str, str]]] = {
        "invalid_grant": (400, errors.invalid_grant().body()),
        "invalid_client": (401, errors.invalid_client_not_found().body()),
        "invalid_rapt": (
            400,
            {
                "error": "invalid_grant",
                "error_description": "reauth related error (invalid_rapt)",
                "error_subtype": "invalid_rapt",
            },
        ),
        "temporarily_unavailable": (
            503,
            {
                "error": "temporarily_unavailable",
                "error_description": "The service is currently unavailable.",
            },
        ),
        "500": (
            500,
            {"error": "internal_failure", "error_description": "Internal error encountered."},
        ),
        "503": (
            503,
            {"error": "temporarily_unavailable", "error_description": "Service Unavailable"},
        ),
    }
    status, body = bodies[kind]
    cap.status = status
    cap.headers = [(b"content-type", b"application/json; charset=utf-8")]
    cap.body += json.dumps(body, indent=2).encode()
    return cap


def _redact_body(body: bytes, content_type: str) -> bytes:
    if "application/x-www-form-urlencoded" not in content_type or not body:
        return body
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    out = [(k, fingerprint(v) if k in REDACTED_FORM_KEYS else v) for k, v in pairs]
    return "&".join(f"{k}={v}" for k, v in out).encode()
