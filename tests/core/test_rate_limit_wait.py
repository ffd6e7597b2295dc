"""A manual sync honours the server's Retry-After (docs/plugins.md: "never sooner than
retry_after"): a charm waiting for the server is not contacted, the others still sync.

Real engine, real store, a real HTTP server on 127.0.0.1 that counts its requests.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trayapp.api import BaseModel, Pattern, RunReport, UpdateContext, raise_for_status
from trayapp.cli.output import result_json, sync_line
from trayapp.core.clock import FakeClock
from trayapp.core.engine import Engine
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import PatternRegistry

WAIT_S = 120


class _Handler(BaseHTTPRequestHandler):
    hits: Counter[str]

    def do_GET(self) -> None:
        self.hits[self.path] += 1
        if self.path == "/limited":
            self.send_response(429)
            self.send_header("Retry-After", str(WAIT_S))
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Counter[str]]]:
    hits: Counter[str] = Counter()
    handler = type("Handler", (_Handler,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    finally:
        httpd.shutdown()
        httpd.server_close()


class GetSettings(BaseModel):
    url: str


class Getter(Pattern[GetSettings]):
    id = "getter"
    title = "Getter"
    Settings = GetSettings
    default_interval = timedelta(hours=1)

    async def bg_updater(self, ctx: UpdateContext[GetSettings]) -> RunReport:
        raise_for_status(await ctx.http.get(ctx.settings.url), ctx.now())
        return RunReport(updated=1)


async def test_a_manual_sync_waits_for_the_servers_retry_after(
    tmp_path: Path, server: tuple[str, Counter[str]]
) -> None:
    base, hits = server
    clock = FakeClock(datetime.now(UTC))
    registry = PatternRegistry()
    registry.register(Getter, source="test")
    engine = Engine(tmp_path / "p", patterns=registry, clock=clock)
    try:
        limited = engine.add_charm("getter", {"url": f"{base}/limited"}, name="limited").id
        fine = engine.add_charm("getter", {"url": f"{base}/fine"}, name="fine").id

        first = await engine.sync([limited, fine])
        assert first[limited].kind is OutcomeKind.RATE_LIMITED
        assert first[fine].ok
        assert hits == {"/limited": 1, "/fine": 1}
        asked = engine.status(limited).retry_after
        assert asked == first[limited].retry_after
        assert asked is not None and asked - clock.now() == timedelta(seconds=WAIT_S)

        # Within the wait: the limited charm is not contacted at all; the other one syncs.
        clock.advance(WAIT_S - 10)
        second = await engine.sync([limited, fine])
        assert hits == {"/limited": 1, "/fine": 2}
        waiting = second[limited]
        assert waiting.kind is OutcomeKind.RATE_LIMITED and waiting.retry_after == asked
        at = asked.astimezone().strftime("%H:%M")
        assert sync_line(result_json(limited, waiting)) == (
            f"{limited}: the server asked to wait; next try at {at}"
        )
        assert second[fine].ok
        # Nothing ran, so nothing is recorded: one run in its history, its due time kept.
        assert len(engine.history(limited)) == 1
        due_before = engine.status(limited).next_due_at
        # The tray's "Sync now" on an engine not running: not made due before the server allows.
        engine.sync_now(limited)
        assert engine.status(limited).next_due_at == due_before
        assert due_before is not None and due_before >= asked

        # After the wait: one request again.
        clock.advance(11)
        third = await engine.sync([limited])
        assert hits["/limited"] == 2
        assert third[limited].kind is OutcomeKind.RATE_LIMITED
        assert len(engine.history(limited)) == 2
    finally:
        await engine.aclose()
