"""A real local HTTP server (127.0.0.1) serving JSON with ETags, for plugin tests."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class JsonServer:
    """Serves ``documents[path]`` as JSON with a strong ETag; 304 on a matching If-None-Match.

    ``requests`` records (method, path, If-None-Match, Authorization) of every request;
    ``status[path]`` forces a status (with ``headers[path]``) instead; ``tokens[path]`` makes
    the path answer 401 unless the request carries ``Authorization: Bearer <that token>`` (as
    GitHub's API answers a bad token: 401 with a JSON message).
    """

    documents: dict[str, Any] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    url: str = ""

    def etag(self, path: str) -> str:
        body = json.dumps(self.documents[path], sort_keys=True).encode()
        return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _handler(server: JsonServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            match = self.headers.get("If-None-Match")
            server.requests.append(("GET", path, match, self.headers.get("Authorization")))
            extra = server.headers.get(path, {})
            wanted = server.tokens.get(path)
            if wanted is not None and self.headers.get("Authorization") != f"Bearer {wanted}":
                self._send(401, b'{"message": "Bad credentials"}', extra)
            elif path in server.status:
                self._send(server.status[path], b"", extra)
            elif path not in server.documents:
                self._send(404, b'{"error": "not found"}', extra)
            elif match == server.etag(path):
                self._send(304, b"", {"ETag": server.etag(path), **extra})
            else:
                body = json.dumps(server.documents[path]).encode()
                self._send(200, body, {"ETag": server.etag(path), **extra})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for key, value in headers.items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def json_server() -> Iterator[JsonServer]:
    state = JsonServer()
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
