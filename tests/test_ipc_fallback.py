"""A planted socket folder cannot block the engine (issue 14.2/14.9): it falls back to a fresh
private folder recorded in the profile, and the CLI's ``try_send`` finds it there.

Runs as any user: the "planted" folder is a symlink at the shared path, which our own user can
make too. tests/test_multi_user.py does the same with a second Unix user (as root).
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.ipc import serve, socket_problem, try_send


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp


async def test_a_planted_symlink_makes_the_engine_use_a_private_folder(
    tmp_path: Path, shared_tmp: Path
) -> None:
    import os

    bait = tmp_path / "bait"
    bait.mkdir(mode=0o777)
    bait.chmod(0o777)
    (shared_tmp / f"trayapp-{os.getuid()}").symlink_to(bait)
    assert socket_problem() is not None  # the shared folder is refused...

    profile = tmp_path / "profile"
    engine = Engine(profile, patterns=default_registry())
    server = await serve(engine, profile)  # ...yet the engine serves
    try:
        assert server.path is not None
        folder = server.path.parent
        assert folder.parent == shared_tmp and folder.name.startswith(f"trayapp-{os.getuid()}-")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE((profile / "ipc-socket").stat().st_mode) == 0o600
        assert list(bait.iterdir()) == [] and stat.S_IMODE(bait.stat().st_mode) == 0o777
        reply = await asyncio.get_running_loop().run_in_executor(
            None, try_send, profile, {"cmd": "ping"}, 10.0
        )
        assert reply is not None and reply["ok"] is True
    finally:
        await server.close()
        await engine.stop()
        engine.close()
    # Nothing left behind: the pointer, the socket and the private folder go with the server.
    assert not (profile / "ipc-socket").exists()
    assert not folder.exists()
    assert try_send(profile, {"cmd": "ping"}, 2.0) is None


async def test_a_pointer_to_someone_elses_socket_is_not_followed(
    tmp_path: Path, shared_tmp: Path
) -> None:
    profile = tmp_path / "profile"
    profile.mkdir(mode=0o700)
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    sock_path = loose / "x.sock"

    async def answer(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b'{"ok": true, "hijacked": true}\n')
        await w.drain()
        w.close()

    srv = await asyncio.start_unix_server(answer, path=str(sock_path))
    try:
        (profile / "ipc-socket").write_text(str(sock_path))
        reply = await asyncio.get_running_loop().run_in_executor(
            None, try_send, profile, {"cmd": "ping"}, 5.0
        )
        assert reply is None  # a socket in a folder others can enter is not ours to trust
    finally:
        srv.close()
        await srv.wait_closed()
