"""A tiny real OAuth 2.0 provider + API on 127.0.0.1, for the non-Google credential tests.

It speaks the parts of RFC 6749 / RFC 7636 a native app uses: ``GET /authorize`` answers at
once with a 302 to the ``redirect_uri`` with a code and the ``state`` (as a provider does after
the user clicks "Authorize"; GitHub's and GitLab's authorize endpoints redirect the same way),
``POST /token`` exchanges the code (checking the PKCE S256 verifier, client id and redirect
URI, section 4.1.3) or a refresh token (section 6; an unknown one is ``400 invalid_grant``,
section 5.2), ``POST /revoke`` (RFC 7009). The API (``GET /user``, ``GET /items``) wants
``Authorization: Bearer <token>`` and answers ``401`` otherwise, as GitHub's REST API does for a
bad token. Static API tokens (``api_tokens``) are accepted by the API as well.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

CLIENT_ID = "pattern-sync-test-client"


@dataclass
class Provider:
    url: str = ""
    login: str = "octo"
    items: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": "1", "title": "first"}, {"id": "2", "title": "second"}]
    )
    api_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (challenge, uri)
    expires_in: int = 3600
    rotate_refresh: bool = True
    deny: bool = False
    token_requests: list[dict[str, str]] = field(default_factory=list)
    api_auth: list[str | None] = field(default_factory=list)  # Authorization of API requests
    lock: threading.Lock = field(default_factory=threading.Lock)

    def revoke_access(self) -> None:
        """Every access token stops working (expired early, as a provider may do)."""
        with self.lock:
            self.access_tokens.clear()

    def revoke_all(self) -> None:
        """The user removed the app's access: no token works, refreshes are invalid_grant."""
        with self.lock:
            self.access_tokens.clear()
            self.refresh_tokens.clear()

    def _issue(self) -> dict[str, Any]:
        access, refresh = "at-" + secrets.token_hex(8), "rt-" + secrets.token_hex(8)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": "read",
        }


def _handler(p: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/authorize":
                self._authorize(query)
                return
            auth = self.headers.get("Authorization")
            p.api_auth.append(auth)
            token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
            with p.lock:
                ok = token is not None and (token in p.access_tokens or token in p.api_tokens)
            if not ok:
                self._json(401, {"message": "Bad credentials"})
            elif parts.path == "/user":
                self._json(200, {"login": p.login})
            elif parts.path == "/items":
                self._json(200, p.items)
            else:
                self._json(404, {"message": "Not Found"})

        def _authorize(self, query: dict[str, str]) -> None:
            uri = query.get("redirect_uri", "")
            if not uri.startswith("http://127.0.0.1:") or query.get("client_id") != CLIENT_ID:
                self._json(400, {"error": "invalid_request"})
                return
            if p.deny:
                back = {"error": "access_denied", "state": query.get("state", "")}
            else:
                code = secrets.token_hex(8)
                with p.lock:
                    p.codes[code] = (query.get("code_challenge", ""), uri)
                back = {"code": code, "state": query.get("state", "")}
            self.send_response(302)
            self.send_header("Location", uri + "?" + urlencode(back))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            path = urlsplit(self.path).path
            if path == "/revoke":
                with p.lock:
                    p.refresh_tokens.discard(form.get("token", ""))
                    p.access_tokens.discard(form.get("token", ""))
                self._json(200, {})
                return
            if path != "/token":
                self._json(404, {})
                return
            p.token_requests.append(form)
            with p.lock:
                if form.get("client_id") != CLIENT_ID:
                    self._json(401, {"error": "invalid_client"})
                elif form.get("grant_type") == "authorization_code":
                    challenge, uri = p.codes.pop(form.get("code", ""), ("", ""))
                    digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                    want = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                    if not challenge or want != challenge or uri != form.get("redirect_uri"):
                        self._json(400, {"error": "invalid_grant"})
                    else:
                        self._json(200, p._issue())
                elif form.get("grant_type") == "refresh_token":
                    refresh = form.get("refresh_token", "")
                    if refresh not in p.refresh_tokens:
                        self._json(
                            400,
                            {"error": "invalid_grant", "error_description": "token revoked"},
                        )
                    else:
                        issued = p._issue()
                        p.refresh_tokens.discard(issued["refresh_token"])
                        if p.rotate_refresh:
                            p.refresh_tokens.discard(refresh)
                            p.refresh_tokens.add(issued["refresh_token"])
                        else:
                            del issued["refresh_token"]
                        self._json(200, issued)
                else:
                    self._json(400, {"error": "unsupported_grant_type"})

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_provider() -> Iterator[Provider]:
    state = Provider()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
