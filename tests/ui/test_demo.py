"""Demo mode's own pieces: the feed server ends its connections, the temp profile goes away."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trayapp.ui.demo import DemoFeedServer, make_demo_profile, remove_demo_profile


async def test_stop_closes_keep_alive_connections_while_the_loop_runs() -> None:
    """A connection left open (a browser, a pooled client) must end in stop(), not at loop
    teardown, where qasync's timers are already gone."""
    server = DemoFeedServer()
    await server.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /team-blog.xml HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(server.stop(), 10)
        # The server hung up: the rest of the response, then end-of-stream (no wait forever).
        await asyncio.wait_for(reader.read(), 10)
        assert reader.at_eof()
        assert server.requests == ["/team-blog.xml"]
    finally:
        writer.close()


def test_the_demo_profile_is_removed_and_a_chosen_profile_never_is(tmp_path: Path) -> None:
    temp = make_demo_profile()
    assert temp.is_dir() and temp.name.startswith("trayapp-demo-")
    (temp / "state.sqlite").write_bytes(b"x")
    (temp / "nested").mkdir()
    assert remove_demo_profile(temp) is True
    assert not temp.exists()
    assert remove_demo_profile(temp) is False  # twice is harmless
    chosen = tmp_path / "trayapp-demo-mine"
    chosen.mkdir()
    assert remove_demo_profile(chosen) is False
    assert chosen.is_dir()
