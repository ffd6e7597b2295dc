"""Two local users (issue 14.9): the second can read nothing of the first's profile and can
neither block nor hijack the first's engine.

Needs root, to create the second Unix user for the test (``useradd``; removed afterwards);
skipped otherwise. The first user is the one running the tests (root here: the checks are about
what the *other* user can do, and root running trayapp must not loosen anything for them). The
second user acts through a stdlib-only Python script run with their uid and gid (the project's
virtualenv may live where they cannot read), doing what any local account could: read files,
list folders, connect to sockets, plant a folder or a symlink in the shared temp folder before
the first user's engine starts.

Everything lives under a 0755 parent folder and a 1777 temp folder made for the test, so the
profile's own modes, not pytest's private temp root, are what keeps the second user out.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

import trayapp

ROOT = Path(trayapp.__file__).resolve().parents[1]  # the tree under test, for the children
FEEDS = Path(__file__).resolve().parent / "data" / "feeds"
WAIT = 60.0

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="the multi-user test creates a second Unix user: run the tests as root "
    "(with useradd) to include it",
)

# What the second user runs: stdlib only. Prints one JSON object of everything that worked.
ATTACKER = r"""
import json, os, socket, sqlite3, sys
args = json.loads(sys.argv[1])
got = {"read": [], "listed": [], "connected": [], "sqlite": []}
for path in args["paths"]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
            got["listed"].append(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
            got["read"].append(path)
    except OSError:
        pass
for path in args["sockets"]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(path)
        s.sendall(b'{"cmd": "status"}\n')
        got["connected"].append([path, s.recv(200).decode(errors="replace")])
    except OSError:
        pass
    finally:
        s.close()
for path in args["databases"]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("select count(*) from sqlite_master").fetchone()
        got["sqlite"].append(path)
    except sqlite3.Error:
        pass
print(json.dumps(got))
"""


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    python: str

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.python, "-c", script, *args],
            user=self.uid, group=self.gid, extra_groups=[], capture_output=True, text=True,
            timeout=WAIT, cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        )  # fmt: skip

    def attack(
        self,
        paths: list[str],
        sockets: list[str] = (),
        databases: list[str] = (),  # type: ignore[assignment]
    ) -> dict[str, list[object]]:
        args = {"paths": paths, "sockets": list(sockets), "databases": list(databases)}
        result = self.run(ATTACKER, json.dumps(args))
        assert result.returncode == 0, result.stderr
        got: dict[str, list[object]] = json.loads(result.stdout)
        return got


def _runs_as(python: str, uid: int, gid: int) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "pass"], user=uid, group=gid, extra_groups=[],
            capture_output=True, timeout=WAIT, cwd="/",
        )  # fmt: skip
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture
def other_user() -> Iterator[OtherUser]:
    name = f"tmu{secrets.token_hex(4)}"
    made = subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
        capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot create a second user with useradd: {made.stderr.strip()}")
    import pwd

    entry = pwd.getpwnam(name)
    try:
        python = next(
            (
                p
                for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                if _runs_as(p, entry.pw_uid, entry.pw_gid)
            ),
            None,
        )
        if python is None:
            pytest.skip("no Python the second user may run (the venv is in a private folder)")
        yield OtherUser(name, entry.pw_uid, entry.pw_gid, python)
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=WAIT)


@dataclass
class Shared:
    """A 0755 folder for the profile and a 1777 temp folder (like /tmp) for sockets."""

    top: Path
    tmp: Path

    @property
    def profile(self) -> Path:
        return self.top / "profile"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
        env.pop("XDG_RUNTIME_DIR", None)  # a cron job or an ssh session: the shared temp folder
        env["TMPDIR"] = str(self.tmp)
        env["TRAYAPP_SECRET_STORE"] = "file"
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def trayapp(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "trayapp", "--profile", str(self.profile), *args],
            capture_output=True, text=True, env=self.env(), timeout=WAIT, cwd=ROOT,
        )  # fmt: skip


@pytest.fixture
def shared() -> Iterator[Shared]:
    top = Path(tempfile.mkdtemp(prefix="trayapp-mu-", dir="/tmp"))
    top.chmod(0o755)
    tmp = top / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    try:
        yield Shared(top, tmp)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def feed_url() -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(FEEDS))

    class Quiet(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Quiet(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *_a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def everything_under(path: Path) -> list[str]:
    found = [str(path)]
    for root, dirs, files in os.walk(path):
        found += [os.path.join(root, name) for name in dirs + files]
    return found


def sockets_under(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                full = os.path.join(root, name)
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(full).st_mode):
                        found.append(full)
    return found


def filled_profile(shared: Shared, feed_url: str) -> None:
    """A profile with imported items, an OAuth client (with its secret) and run history."""
    added = shared.trayapp(
        "charms", "add", "feed-importer", "--name", "news", "--set", f"url={feed_url}/atom.xml"
    )
    assert added.returncode == 0, added.stderr
    client = shared.top / "client_secret.json"
    client.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": "mu-client.apps.googleusercontent.com",
                    "client_secret": "GOCSPX-multi-user-secret",
                    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                    "token_uri": "https://oauth2.googleapis.com/token",
                    "redirect_uris": ["http://localhost"],
                }
            }
        )
    )
    imported = shared.trayapp("accounts", "client", "import", str(client))
    assert imported.returncode == 0, imported.stderr
    client.unlink()
    synced = shared.trayapp("sync")
    assert synced.returncode == 0, synced.stdout + synced.stderr


def test_the_other_user_can_read_nothing_of_the_profile(
    other_user: OtherUser, shared: Shared, feed_url: str
) -> None:
    filled_profile(shared, feed_url)
    paths = everything_under(shared.profile)
    assert any(p.endswith("trayapp.db") for p in paths)

    got = other_user.attack(paths, databases=[str(shared.profile / "trayapp.db")])

    assert got == {"read": [], "listed": [], "connected": [], "sqlite": []}
    for path in paths:  # and not by luck of a missing execute bit: the modes say private
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        assert mode & 0o077 == 0, f"{path} is {mode:o}"


def wait_for(proc: subprocess.Popen[str], pattern: str) -> list[str]:
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no {pattern!r} from the engine: {''.join(seen)}")


@pytest.mark.parametrize("plant", ["folder", "symlink"])
def test_the_other_user_can_neither_block_nor_hijack_the_engine(
    other_user: OtherUser, shared: Shared, feed_url: str, plant: str
) -> None:
    # Before the first user runs anything, the other user plants the socket folder it would
    # use in the shared temp folder: their own folder (open to all), or a symlink to one.
    planted = shared.tmp / f"trayapp-{os.getuid()}"
    bait = shared.tmp / "bait"
    bait.mkdir(mode=0o777)
    os.chown(bait, other_user.uid, other_user.gid)
    bait.chmod(0o777)
    if plant == "folder":
        planted.mkdir(mode=0o777)
        os.chown(planted, other_user.uid, other_user.gid)
        planted.chmod(0o777)
    else:
        planted.symlink_to(bait)
        os.lchown(planted, other_user.uid, other_user.gid)
    filled_profile(shared, feed_url)  # the CLI works for its user despite the plant

    engine = subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(shared.profile), "run", "--headless"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=shared.env(), cwd=ROOT,
    )  # fmt: skip
    try:
        # Not blocked: the engine runs, and it is the one engine of the profile.
        wait_for(engine, r"running headless")
        try:
            second = shared.trayapp("run", "--headless")
        except subprocess.TimeoutExpired:
            pytest.fail("a second engine ran on the same profile (one engine per profile broke)")
        assert second.returncode != 0 and "already running" in second.stderr, second.stderr
        status = shared.trayapp("status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)

        # Not hijacked: nothing of ours is reachable by the other user, and what they planted
        # was neither used for our socket nor changed by us.
        assert sockets_under(bait) == []
        assert stat.S_IMODE(bait.stat().st_mode) == 0o777 and bait.stat().st_uid == other_user.uid
        if plant == "folder":
            assert planted.stat().st_uid == other_user.uid
            assert sockets_under(planted) == []
        ours = sockets_under(shared.tmp, shared.profile)
        got = other_user.attack(
            everything_under(shared.profile) + [str(p) for p in shared.tmp.iterdir()],
            sockets=ours,
            databases=[str(shared.profile / "trayapp.db")],
        )
        assert got["connected"] == [] and got["sqlite"] == [] and got["read"] == []
        theirs = (str(bait), str(planted))  # what they made themselves they may list
        assert not [p for p in got["listed"] if not str(p).startswith(theirs)]

        # The engine still serves its user: a sync through it works.
        synced = shared.trayapp("sync", "--json")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert engine.poll() is None
    finally:
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(WAIT)
        finally:
            if engine.poll() is None:
                engine.kill()
    assert engine.returncode == 0
    assert not (shared.profile / "ipc-socket").exists()  # the fallback folder went with it
    assert sorted(p.name for p in shared.tmp.iterdir()) == sorted({"bait", planted.name})
