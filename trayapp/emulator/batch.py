"""The batch endpoints: ``multipart/mixed`` in, ``multipart/mixed`` out (reference section 3.4).

Each inner call runs through the full emulator stack (request log, faults, auth, quota), so a
single part can fail on its own; replies carry ``Content-ID: <response-ID>`` and, with
``set_batch_shuffle(True)``, come back in random order as Google allows; with
``set_batch_duplicate(True)`` one reply comes twice (a fault).
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import secrets
from http import HTTPStatus
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from trayapp.emulator import errors
from trayapp.emulator.app import EmulatorApp, ResponseCapture, api_error_capture
from trayapp.emulator.common import error_response

MAX_PARTS = 100
_PARSER = email.parser.BytesParser(policy=email.policy.compat32)


class BatchFormatError(ValueError):
    pass


def parse_inner(payload: bytes) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """Parse one ``application/http`` part: request line, headers, body."""
    text = payload.replace(b"\r\n", b"\n")
    head, _, body = text.partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise BatchFormatError("empty batch part")
    parts = lines[0].split()
    if len(parts) < 2:
        raise BatchFormatError(f"bad request line {lines[0]!r}")
    method, target = parts[0], parts[1]
    url = urlsplit(target)
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
    return method, url.path, url.query, headers, body.rstrip(b"\n")


def render_part(content_id: str | None, cap: ResponseCapture) -> bytes:
    reason = HTTPStatus(cap.status).phrase if cap.status in HTTPStatus._value2member_map_ else ""
    lines = ["Content-Type: application/http"]
    if content_id is not None:
        lines.append(f"Content-ID: <response-{content_id}>")
    lines += ["", f"HTTP/1.1 {cap.status} {reason}"]
    for k, v in cap.headers:
        name = k.decode("latin-1")
        if name.lower() in ("content-length", "server", "vary"):
            continue
        lines.append(f"{name.title()}: {v.decode('latin-1')}")
    lines += ["Vary: Origin", "Vary: X-Origin", "Vary: Referer", "", ""]
    return "\r\n".join(lines).encode("latin-1") + bytes(cap.body) + b"\r\n"


async def _batch(request: Request, api_prefix: str) -> Response:
    emu: EmulatorApp = request.scope["emu"]
    ctype = request.headers.get("content-type", "")
    body = await request.body()
    if not ctype.lower().startswith("multipart/mixed") or "boundary=" not in ctype:
        return error_response(
            errors.invalid_argument("Batch requests must be multipart/mixed with a boundary.")
        )
    outer = _PARSER.parsebytes(b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + body)
    subparts = outer.get_payload()
    if not isinstance(subparts, list) or not subparts:
        return error_response(errors.invalid_argument("Batch request has no parts."))
    if len(subparts) > MAX_PARTS:
        # Message as captured from Gmail (mhasbini/gmail_analyzer#12, HTTP 400).
        return error_response(
            errors.invalid_argument(
                "Inner request count exceeds the limit. "
                f"Received: {len(subparts)}, Limit: {MAX_PARTS}"
            )
        )
    outer_auth = request.headers.get("authorization")
    calls = [_serve_part(emu, part, api_prefix, outer_auth, request) for part in subparts]
    # Google's backend serves the inner calls in parallel: a batch takes as long as its
    # slowest part, not the sum of them.
    replies = list(await asyncio.gather(*calls))
    if emu.state.batch_duplicate and replies:
        # A fault from the reference's list (5.2): a part answered twice; clients match
        # replies by Content-ID and must not process one call's reply twice.
        replies.append(emu.state.rng.choice(replies))
    if emu.state.batch_shuffle:
        emu.state.rng.shuffle(replies)
    boundary = "batch_" + secrets.token_urlsafe(12)
    out = (
        b"".join(f"--{boundary}\r\n".encode() + r for r in replies) + f"--{boundary}--\r\n".encode()
    )
    return Response(out, media_type=f"multipart/mixed; boundary={boundary}")


async def _serve_part(
    emu: EmulatorApp, part: object, api_prefix: str, outer_auth: str | None, request: Request
) -> bytes:
    if not isinstance(part, email.message.Message):
        return _render_error(None, "Batch part is not a MIME part.")
    cid_raw = part.get("Content-ID")
    content_id = str(cid_raw).strip().strip("<>") if cid_raw is not None else None
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = str(part.get_payload()).encode("latin-1")
    try:
        method, path, query, headers, inner_body = parse_inner(payload)
    except BatchFormatError as exc:
        return _render_error(content_id, str(exc))
    if not path.startswith(api_prefix):
        return _render_error(content_id, f"All calls in this batch must go to {api_prefix}...")
    if outer_auth and not any(k.lower() == "authorization" for k, _ in headers):
        headers.append(("authorization", outer_auth))
    cap = await emu.dispatch_inner(method, path, query, headers, inner_body, request.scope)
    return render_part(content_id, cap)


def _render_error(content_id: str | None, message: str) -> bytes:
    return render_part(content_id, api_error_capture(errors.invalid_argument(message)))


async def gmail_batch(request: Request) -> Response:
    return await _batch(request, "/gmail/v1/")


async def calendar_batch(request: Request) -> Response:
    return await _batch(request, "/calendar/v3/")
