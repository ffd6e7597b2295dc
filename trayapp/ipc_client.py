"""Finding and asking the running instance: the blocking client half of :mod:`trayapp.ipc`.

Every start of the tray asks "does an instance already serve this profile?" before it shows
anything, and ``trayapp sync``/``status`` ask the same before they open an engine. That question
needs the socket's path (a hash of the profile path, in a private folder) and a blocking
connect, nothing of asyncio: this module imports no asyncio, json or tempfile (the latter two
only when an instance answers, or without a runtime dir), so the tray's single-instance check
costs no imports before its icon that the icon does not need (issue 17). :mod:`trayapp.ipc`
(the asyncio server) re-exports every name here, so ``from trayapp.ipc import try_send`` keeps
working. Privacy rules of the socket folder: see :mod:`trayapp.ipc`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trayapp.core.errors import TrayappError

MAX_LINE = 64 * 1024
IS_WINDOWS = sys.platform == "win32"


def _key(profile_dir: Path) -> str:
    return hashlib.sha256(str(Path(profile_dir).resolve()).encode()).hexdigest()[:16]


class SocketDirError(TrayappError):
    """The folder for the control socket is not safely ours (planted, a symlink, shared)."""


def _socket_base() -> Path:
    """Where the socket folder goes: ``$XDG_RUNTIME_DIR/trayapp`` when the runtime dir is a real
    folder of ours, else ``trayapp-<uid>`` in the shared temp folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            st = os.lstat(runtime)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
            return Path(runtime) / "trayapp"
    import tempfile  # only without a usable runtime dir (random, shutil: not needed otherwise)

    return Path(tempfile.gettempdir()) / f"trayapp-{os.getuid()}"


def _private_dir(*, create: bool = True) -> Path:
    """A 0700 folder owned by us for the socket; :class:`SocketDirError` if it cannot be.

    Made with ``mkdir(0700)`` and then opened with ``O_NOFOLLOW``, so a symlink planted at its
    path is refused rather than followed, and checked on the open descriptor (no race between
    the check and the chmod): a folder owned by another user is refused, one of ours that was
    loosened is tightened back to 0700. With ``create=False`` a missing folder raises
    ``FileNotFoundError`` (nothing serves from it).
    """
    base = _socket_base()
    if create:
        try:
            os.mkdir(base, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SocketDirError(
                f"cannot create the folder for the control socket {base} ({exc.strerror}); "
                "make its parent writable or set XDG_RUNTIME_DIR to a private folder"
            ) from None
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError:
        raise SocketDirError(
            f"the folder for the control socket {base} is a symlink or not a folder, so it "
            "may have been planted by someone else; remove it (or set XDG_RUNTIME_DIR to a "
            "private folder) and start again"
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid():
            raise SocketDirError(
                f"the folder for the control socket {base} belongs to another user (uid "
                f"{st.st_uid}), so it may have been planted to intercept this app; ask an "
                "administrator to remove it, or set XDG_RUNTIME_DIR to a private folder"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return base


def socket_problem() -> str | None:
    """Why no control socket can be reached here (a planted folder), or None if none."""
    if IS_WINDOWS:
        return None
    try:
        _private_dir(create=False)
    except FileNotFoundError:
        return None
    except SocketDirError as exc:
        return str(exc)
    return None


def socket_path(profile_dir: Path, *, create: bool = True) -> Path:
    return _private_dir(create=create) / f"{_key(profile_dir)}.sock"


def _token_file(profile_dir: Path) -> Path:
    return Path(profile_dir) / "ipc-endpoint.json"


def _pointer_file(profile_dir: Path) -> Path:
    """Where the serving engine records its socket: inside the (0700) profile.

    Always written, not only for a fallback folder: a command started with another
    environment (a cron job without ``XDG_RUNTIME_DIR`` while the tray runs in the desktop
    session) computes another socket folder, and must still find the engine that holds the
    profile instead of reporting it unreachable.
    """
    return Path(profile_dir) / "ipc-socket"


def _recorded_socket(profile_dir: Path) -> Path | None:
    """The fallback socket recorded in the profile, if it is a socket of ours in a 0700 folder."""
    try:
        text = _pointer_file(profile_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = Path(text)
    try:
        folder = os.lstat(path.parent)
        sock = os.lstat(path)
    except OSError:
        return None
    uid = os.getuid()
    if (
        not stat.S_ISDIR(folder.st_mode)
        or folder.st_uid != uid
        or stat.S_IMODE(folder.st_mode) & 0o077
        or not stat.S_ISSOCK(sock.st_mode)
        or sock.st_uid != uid
    ):
        return None
    return path


def _connect(profile_dir: Path, timeout: float) -> socket.socket | None:
    """A connection to the engine serving this profile: at the socket it recorded in the
    profile (whatever environment it was started with, or its private fallback folder), else
    at the path this environment computes; None if neither answers."""
    candidates = [p for p in (_recorded_socket(profile_dir),) if p is not None]
    try:
        computed = socket_path(profile_dir, create=False)
    except (FileNotFoundError, SocketDirError):
        computed = None  # nothing serves there, or a folder we must not trust
    if computed is not None and computed.exists() and computed not in candidates:
        candidates.append(computed)
    for path in candidates:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            sock.close()
            continue
        return sock
    return None


def try_send(profile_dir: Path, command: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Send one request to the running instance; None when no instance serves this profile.

    Blocking on purpose: the CLI calls it before deciding whether to start an engine at all.
    """
    profile_dir = Path(profile_dir)
    sock: socket.socket | None
    try:
        if IS_WINDOWS:  # untested here
            import json

            info = json.loads(_token_file(profile_dir).read_text(encoding="utf-8"))
            sock = socket.create_connection(("127.0.0.1", int(info["port"])), timeout=timeout)
            command = {**command, "token": info["token"]}
        else:
            sock = _connect(profile_dir, timeout)
    except (OSError, ValueError, KeyError):
        return None
    if sock is None:
        return None
    import json  # only once an instance answers: at the usual start none does

    with sock:
        try:
            sock.sendall(json.dumps(command).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                buf += chunk
                if len(buf) > MAX_LINE * 16:
                    return None
        except OSError:
            return None
    try:
        resp = json.loads(buf)
    except ValueError:
        return None
    return resp if isinstance(resp, dict) else None


def send_sync(
    profile_dir: Path, charms: Sequence[str] | None, *, wait: bool, timeout: float
) -> dict[str, Any] | None:
    """Convenience for ``trayapp sync``: ask the running instance to sync."""
    return try_send(
        profile_dir,
        {"cmd": "sync", "charms": list(charms) if charms else None, "wait": wait},
        timeout,
    )
