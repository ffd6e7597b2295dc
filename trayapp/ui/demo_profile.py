"""The demo's throwaway profile (``trayapp --demo`` without ``--profile``).

Its own light module (no asyncio, no HTTP, no e-mail parsing): the tray picks the profile before
its icon shows, while :mod:`trayapp.ui.demo` (the feed server, the demo charms, the emulator
child) loads after the icon (issue 17). :mod:`trayapp.ui.demo` re-exports both functions.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("trayapp.ui.demo")


# The throwaway profiles this process made: only these are ever deleted, so a user's own
# ``--demo --profile DIR`` is never removed.
_temp_profiles: set[Path] = set()


def make_demo_profile() -> Path:
    """The demo's throwaway profile for ``--demo`` without ``--profile``: never the user's real one.

    One per user (``$XDG_RUNTIME_DIR/trayapp-demo-<uid>``, else the temp folder), not one per
    launch: a second ``trayapp --demo`` then finds the first through the profile's control
    socket and shows its menu, instead of adding a second tray icon. A folder there that is not
    ours (another owner, a symlink, open to others) is never used: a fresh one is made instead.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime)
    else:
        import tempfile

        base = Path(tempfile.gettempdir())
    path = base / f"trayapp-demo-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        mine = stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077
        if not mine:
            raise PermissionError(f"{path} is not a private folder of this user")
    except OSError as exc:
        import tempfile

        log.info("demo profile: %s; using a fresh temporary folder", exc)
        path = Path(tempfile.mkdtemp(prefix="trayapp-demo-"))
    _temp_profiles.add(path)
    return path


def remove_demo_profile(path: Path) -> bool:
    """Delete a profile made by :func:`make_demo_profile`, on clean shutdown; True if removed.

    Called after the engine and account stores are closed. Any other path is left alone (a
    ``--profile`` the user chose), so the call needs no condition at the call site.
    """
    if path not in _temp_profiles:
        return False
    _temp_profiles.discard(path)
    import shutil

    from trayapp.ipc_client import try_send

    if try_send(path, {"cmd": "ping"}, timeout=2.0) is not None:
        return False  # another demo instance runs on it (ours stopped serving before this)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        log.warning("could not remove the demo profile %s", path)
        return False
    return True
