"""Single instance: a per-user private local socket to the running engine (tray or headless).

A second ``trayapp`` launch, or ``trayapp sync`` while the tray runs, sends its request here
instead of opening the same profile with a second engine. Qt-free (plain asyncio), so the
headless engine serves it too.

Privacy: on POSIX a Unix socket in a 0700 directory of the user's runtime dir (falling back to
a per-user 0700 directory under the temp dir), the socket itself 0600, and on Linux the peer's
uid is checked with SO_PEERCRED. The socket name is derived from the profile path, so two
profiles can run side by side. On Windows (untested here) it is a loopback TCP port whose
number and a random token sit in a 0600 file in the profile; requests without the token are
refused.

Wire format: one JSON object per line, one response line per request. Requests:
``{"cmd": "ping"}``, ``{"cmd": "activate"}`` (also ``"show-menu"``), ``{"cmd": "status"}``,
``{"cmd": "sync", "charms": [ids] | null, "wait": bool}``, and the CLI's change commands of
:func:`register_engine_commands`. Responses carry ``"ok": true`` or
``"ok": false, "error": "..."``.

The client half (socket path, :func:`try_send`) lives in :mod:`trayapp.ipc_client`, which
imports no asyncio: the tray asks it before its icon shows. Its names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trayapp.auth.accounts import AccountManager
    from trayapp.core.engine import Engine

from trayapp.ipc_client import (  # the blocking client half; callers may import it from here
    IS_WINDOWS,
    MAX_LINE,
    SocketDirError,
    _key,
    _pointer_file,
    _token_file,
    send_sync,
    socket_path,
    socket_problem,
    try_send,
)

__all__ = [
    "IS_WINDOWS",
    "MAX_LINE",
    "AlreadyRunning",
    "Server",
    "SocketDirError",
    "register_engine_commands",
    "send_sync",
    "serve",
    "socket_path",
    "socket_problem",
    "try_send",
]

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    """Another instance serves this profile; talk to it with :func:`try_send`."""


def _record_socket(profile_dir: Path, path: Path) -> None:
    pointer = _pointer_file(profile_dir)
    fd = os.open(pointer, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(str(path))


def _fallback_socket(profile_dir: Path, problem: SocketDirError) -> Path:
    """A socket path in a fresh private folder, recorded in the profile for the CLI to find.

    When the shared socket folder is not safely ours (another local user created it first, or
    planted a symlink there), refusing to start would let that user block our engine. A folder
    from ``mkdtemp`` has a random name made with ``O_EXCL`` semantics and mode 0700: nobody can
    have planted it. The profile is private, so the pointer to it cannot be redirected either.
    """
    base = Path(tempfile.mkdtemp(prefix=f"trayapp-{os.getuid()}-"))
    path = base / f"{_key(profile_dir)}.sock"
    log.warning("%s; using the private folder %s for the control socket instead", problem, base)
    return path


@dataclass
class Server:
    """A running IPC server; ``close()`` stops it and removes the socket."""

    server: asyncio.AbstractServer
    path: Path | None
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    token: str | None = None  # Windows only: requests must carry it
    _lock_fd: int | None = None
    _pointer: Path | None = None  # the profile's record of the socket (see _pointer_file)
    _fallback: bool = False  # the socket's folder is a private mkdtemp one of ours

    def on(self, cmd: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Register a handler (e.g. the tray's ``activate``); may return a value or awaitable."""
        self.handlers[cmd] = handler

    async def close(self) -> None:
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._pointer is not None and self.path is not None:
            with contextlib.suppress(OSError):
                if self._pointer.read_text(encoding="utf-8").strip() == str(self.path):
                    self._pointer.unlink()
            self._pointer = None
        if self._fallback and self.path is not None:
            # A fallback folder of our own: nothing else lives in it.
            with contextlib.suppress(OSError):
                os.unlink(f"{self.path}.lock")
            with contextlib.suppress(OSError):
                os.rmdir(self.path.parent)
            self._fallback = False


def _peer_is_us(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return True  # other POSIX systems: the 0700 directory and 0600 socket protect it
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


async def _dispatch(engine: Engine, server: Server, req: dict[str, Any]) -> dict[str, Any]:
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        return {"ok": False, "error": "request has no 'cmd'"}
    if cmd == "show-menu":
        cmd = "activate"
    if cmd in server.handlers:
        result = server.handlers[cmd](req)
        if asyncio.iscoroutine(result):
            result = await result
        return {"ok": True, **(result if isinstance(result, dict) else {})}
    if cmd == "ping":
        return {"ok": True, "pid": os.getpid()}
    if cmd == "activate":
        return {"ok": True, "shown": False}  # headless: nothing to show
    if cmd == "status":
        statuses = engine.statuses()
        return {
            "ok": True,
            "statuses": {k: v.to_json() for k, v in statuses.items()},
        }
    if cmd == "sync":
        charms = req.get("charms")
        if charms is not None and not (
            isinstance(charms, list) and all(isinstance(c, str) for c in charms)
        ):
            return {"ok": False, "error": "'charms' must be a list of charm ids or null"}
        if req.get("wait"):
            outcomes = await engine.sync(charms)
            return {"ok": True, "outcomes": {k: v.to_json() for k, v in outcomes.items()}}
        for cid in charms or [None]:
            engine.sync_now(cid)
        return {"ok": True, "queued": charms}
    return {"ok": False, "error": f"unknown command {cmd!r}"}


async def serve(engine: Engine, profile_dir: Path) -> Server:
    """Start serving this profile; raises :class:`AlreadyRunning` if another instance does."""
    holder: list[Server] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not IS_WINDOWS and not _peer_is_us(writer):
                return
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                    if IS_WINDOWS and req.get("token") != holder[0].token:
                        resp: dict[str, Any] = {"ok": False, "error": "bad token"}
                    else:
                        resp = await _dispatch(engine, holder[0], req)
                except asyncio.CancelledError:
                    raise
                except ValueError:
                    resp = {"ok": False, "error": "request is not a JSON object"}
                except Exception as exc:
                    log.exception("IPC request failed")
                    resp = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(resp, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    profile_dir = Path(profile_dir)
    if IS_WINDOWS:  # untested here
        if try_send(profile_dir, {"cmd": "ping"}, 1.0) is not None:
            raise AlreadyRunning(str(profile_dir))
        srv = await asyncio.start_server(handle, "127.0.0.1", 0, limit=MAX_LINE)
        port = srv.sockets[0].getsockname()[1]
        token = secrets.token_urlsafe(24)
        fd = os.open(_token_file(profile_dir), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"port": port, "token": token}, fh)
        server = Server(srv, None, token=token)
        holder.append(server)
        return server

    fallback = False
    try:
        path = socket_path(profile_dir)
    except SocketDirError as problem:
        path = _fallback_socket(profile_dir, problem)
        fallback = True
    import fcntl

    lock_fd = os.open(str(path) + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise AlreadyRunning(str(profile_dir)) from None
    # We hold the lock: any socket file left is from a crashed instance.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o177)
    try:
        srv = await asyncio.start_unix_server(handle, path=str(path), limit=MAX_LINE)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    _record_socket(profile_dir, path)
    server = Server(
        srv, path, _lock_fd=lock_fd, _pointer=_pointer_file(profile_dir), _fallback=fallback
    )
    holder.append(server)
    return server


def register_engine_commands(
    server: Server, engine: Engine, accounts: AccountManager | None = None
) -> None:
    """Serve the CLI's changes to a running engine; the tray and the headless engine both call it.

    The engine keeps its schedule and the accounts layer its tokens in memory, so a change the
    CLI makes in the shared store reaches them only through these commands: ``reload`` (charms
    added or edited), ``pause``/``resume`` (``charm``, optional ISO ``until``), ``remove``
    (``charm``), ``edit`` (``charm``, optional ``settings`` object, ``name``, ``interval_s``),
    ``reset`` (``charm``), and ``account-changed`` (``account``: signed in, out or added
    elsewhere; the account is re-read and published, and one that is usable again unparks its
    charms).
    """

    def reload(_req: dict[str, Any]) -> dict[str, Any]:
        engine.reload_charms()
        return {}

    def pause(req: dict[str, Any]) -> dict[str, Any]:
        until = req.get("until")
        engine.pause(req.get("charm"), datetime.fromisoformat(until) if until else None)
        return {}

    def resume(req: dict[str, Any]) -> dict[str, Any]:
        engine.resume(req.get("charm"))
        return {}

    def remove(req: dict[str, Any]) -> dict[str, Any]:
        engine.remove_charm(str(req.get("charm")))
        return {}

    def edit(req: dict[str, Any]) -> dict[str, Any]:
        settings = req.get("settings")
        interval = req.get("interval_s")
        if settings is not None and not isinstance(settings, dict):
            return {"ok": False, "error": "'settings' must be an object"}
        engine.update_charm(
            str(req.get("charm")),
            settings=settings,
            name=req.get("name") if isinstance(req.get("name"), str) else None,
            interval=timedelta(seconds=float(interval)) if interval is not None else None,
        )
        return {}

    def reset(req: dict[str, Any]) -> dict[str, Any]:
        engine.reset_charm(str(req.get("charm")))
        return {}

    async def account_changed(req: dict[str, Any]) -> dict[str, Any]:
        account_id = req.get("account")
        if not isinstance(account_id, str):
            return {"ok": False, "error": "'account' must be an account id"}
        if accounts is None:
            return {"ok": False, "error": "this app runs without Google accounts"}
        account = await accounts.reload(account_id)
        return {"usable": account is not None and account.usable}

    server.on("reload", reload)
    server.on("pause", pause)
    server.on("resume", resume)
    server.on("remove", remove)
    server.on("edit", edit)
    server.on("reset", reset)
    server.on("account-changed", account_changed)
