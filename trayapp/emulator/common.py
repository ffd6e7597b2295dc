"""Shared pieces of the API handlers: JSON responses, bearer auth, scope checks, quota."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from trayapp.emulator import errors
from trayapp.emulator.scopes import METHOD_SCOPES
from trayapp.emulator.state import Account, EmulatorState

#: Gmail quota units per method (reference section 3.4).
GMAIL_COSTS: dict[str, int] = {
    "gmail.users.getProfile": 1,
    "gmail.users.history.list": 2,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.messages.attachments.get": 5,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.messages.modify": 5,
    "gmail.users.messages.batchModify": 50,
    "gmail.users.messages.send": 100,
}


class JSONResponseGoogle(Response):
    media_type = "application/json; charset=UTF-8"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def emu_state(request: Request) -> EmulatorState:
    state: EmulatorState = request.scope["emu"].state
    return state


def error_response(err: errors.ApiError) -> Response:
    headers = dict(errors.ERROR_HEADERS)
    headers.update(err.headers)
    return Response(err.render(), status_code=err.code, headers=headers)


def bearer_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.query_params.get("access_token") or request.query_params.get("oauth_token")


def authorize(request: Request, method_id: str, user_id: str | None = None) -> Account:
    """Authenticate the bearer token, check scopes, the userId and the per-user quota."""
    state = emu_state(request)
    service = (
        "gmail.googleapis.com" if method_id.startswith("gmail.") else "calendar-json.googleapis.com"
    )
    if method_id.startswith("oauth2."):
        service = "oauth2.googleapis.com"
    token = bearer_token(request)
    if token is None:
        raise errors.login_required(service, method_id)
    at = state.access_tokens.get(token)
    if at is None or not state.access_valid(at):
        raise errors.auth_error()
    allowed = METHOD_SCOPES[method_id]
    if not set(at.scopes) & allowed:
        raise errors.insufficient_scope(service, sorted(allowed), method_id)
    acct = state.accounts.get(at.email)
    if acct is None:
        raise errors.auth_error()
    if user_id is not None and user_id != "me" and user_id.lower() != acct.email.lower():
        raise errors.delegation_denied(acct.email)  # names the signed-in user, as Google does
    quota = state.quota_usage
    now = state.clock.now()
    if state.quota.enabled:
        if method_id.startswith("gmail."):
            cost = GMAIL_COSTS.get(method_id, 5)
            retry = quota.charge(
                ("gmail", acct.email), now, cost, state.quota.gmail_units_per_minute
            )
            if retry is not None:
                from trayapp.emulator.app import iso_z

                raise errors.user_rate_retry_after(iso_z(retry), 429)
        elif method_id.startswith("calendar."):
            retry = quota.charge(
                ("calendar", acct.email), now, 1, state.quota.calendar_requests_per_minute
            )
            if retry is not None:
                raise errors.user_rate_limit_legacy(403)
    return acct


def token_scopes(request: Request) -> set[str]:
    state = emu_state(request)
    token = bearer_token(request)
    at = state.access_tokens.get(token or "")
    return set(at.scopes) if at else set()


def encode_token(payload: dict[str, Any]) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_token(token: str, fingerprint: str) -> dict[str, Any] | None:
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict) or payload.get("f") != fingerprint:
        return None
    return payload


def query_fingerprint(
    request: Request, exclude: tuple[str, ...] = ("pageToken", "maxResults")
) -> str:
    items = sorted(
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in exclude and k not in GLOBAL_PARAMS
    )
    items.append(("path", request.url.path))
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


GLOBAL_PARAMS = {
    "alt",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "$.xgafv",
    "access_token",
    "callback",
    "uploadType",
    "upload_protocol",
    "userIp",
}


# ---- partial responses (the global ``fields`` parameter) ----

FieldTree = dict[str, "FieldTree | None"]


def parse_fields(spec: str) -> FieldTree:
    """Parse Google's ``fields`` syntax: ``a,b/c,d(e,f/g)``, ``*`` as a wildcard."""
    pos = 0

    def selection_list(closing: str | None) -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while True:
            start = pos
            while pos < len(spec) and spec[pos] not in ",()":
                pos += 1
            path = spec[start:pos].strip()
            if not path or any(not p for p in path.split("/")):
                raise ValueError(f"Invalid field selection {spec}")
            sub: FieldTree | None = None
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = selection_list(")")
            _insert(tree, path.split("/"), sub)
            if pos >= len(spec):
                if closing is not None:
                    raise ValueError(f"Invalid field selection {spec}")
                return tree
            if spec[pos] == ",":
                pos += 1
                continue
            if spec[pos] == ")" and closing == ")":
                pos += 1
                return tree
            raise ValueError(f"Invalid field selection {spec}")

    return selection_list(None)


def _insert(tree: FieldTree, parts: list[str], sub: FieldTree | None) -> None:
    """Add one selection path; ``None`` means "the whole value" and absorbs narrower picks."""
    node = tree
    for name in parts[:-1]:
        if name in node and node[name] is None:
            return
        nxt = node.setdefault(name, {})
        assert nxt is not None
        node = nxt
    leaf = parts[-1]
    if leaf not in node:
        node[leaf] = sub
    else:
        prev = node[leaf]
        node[leaf] = None if prev is None or sub is None else {**prev, **sub}


def apply_fields(value: Any, tree: FieldTree | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key == "*":
            for k, v in value.items():
                out[k] = apply_fields(v, sub)
        elif key in value:
            out[key] = apply_fields(value[key], sub)
    return out


def partial_response(request: Request, body: Any) -> Any:
    spec = request.query_params.get("fields")
    if not spec:
        return body
    try:
        tree = parse_fields(spec)
    except ValueError as exc:
        raise errors.invalid_argument(str(exc)) from None
    return apply_fields(body, tree)
