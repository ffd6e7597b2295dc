"""The system browser is started, never waited for: a ``$BROWSER`` that keeps running (as a
browser that was not open before does) must not hold up sign-in or the process's exit."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import pytest

from trayapp.auth.signin import default_opener

URL = "http://127.0.0.1:9/o/oauth2/auth?client_id=x&state=y"


def _never_exiting_browser(tmp_path: Path) -> tuple[Path, Path]:
    seen = tmp_path / "seen"
    script = tmp_path / "browser.sh"
    os.mkfifo(seen)  # the test reads it: no polling for the script to have run
    script.write_text(f'#!/bin/sh\necho "$$ $1" > "{seen}"\nexec sleep 600\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, seen


async def _read_what_the_browser_saw(seen: Path) -> tuple[int, str]:
    """Its pid and URL; opening the FIFO waits until the script writes to it."""
    try:
        text = await asyncio.wait_for(asyncio.to_thread(seen.read_text), 20)
    except TimeoutError:
        os.close(os.open(seen, os.O_WRONLY | os.O_NONBLOCK))  # release the reader thread
        raise AssertionError("the browser command never ran") from None
    pid, url = text.split()
    return int(pid), url


async def test_a_browser_that_never_exits_does_not_block_the_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, seen = _never_exiting_browser(tmp_path)
    monkeypatch.setenv("BROWSER", f"{tmp_path / 'missing-browser'}{os.pathsep}{script}")
    # webbrowser.open would wait the browser's 600 s
    assert await asyncio.wait_for(default_opener(URL), 20) is True
    pid, url = await _read_what_the_browser_saw(seen)
    try:
        assert url == URL  # the first entry does not exist: the next one got the URL
        os.kill(pid, 0)  # still running: we did not wait for it
        assert os.getpgid(pid) == pid  # its own session, away from our Ctrl+C
    finally:
        os.killpg(pid, signal.SIGKILL)


async def test_percent_s_in_browser_says_where_the_url_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, seen = _never_exiting_browser(tmp_path)
    monkeypatch.setenv("BROWSER", f"{script} %s")
    assert await asyncio.wait_for(default_opener(URL), 20) is True
    pid, url = await _read_what_the_browser_saw(seen)
    os.killpg(pid, signal.SIGKILL)
    assert url == URL
