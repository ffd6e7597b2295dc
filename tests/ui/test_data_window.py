"""The "Your data" and About windows on a real engine, profile and local feed server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication

from tests.ui.conftest import QLoop, until
from tests.ui.test_tray import Env, scenario


def test_data_window_lists_what_each_feed_charm_holds_and_exports(
    qloop: QLoop, profile_dir: Path, tmp_path: Path
) -> None:
    async def body(env: Env) -> None:
        env.trigger("data")
        win = env.ctl._windows["data"]
        from trayapp.ui.data_window import DataWindow

        assert isinstance(win, DataWindow)
        await until(lambda: win.loads >= 1)
        names = [win.charm_list.item(i).text() for i in range(win.charm_list.count())]  # type: ignore[union-attr]
        assert sorted(names) == ["Project news", "Release notes", "Team blog"]
        for row in range(win.charm_list.count()):
            if row != win.charm_list.currentRow():
                before = win.loads
                win.charm_list.setCurrentRow(row)
                await until(lambda b=before: win.loads > b)  # type: ignore[misc]
            cid = win.current_charm()
            assert cid is not None
            stored = env.engine.store.collection(f"charm:{cid}:items")
            titles = {v["title"] for _k, v in stored.items()}
            shown = {win.table.item(r, 1).text() for r in range(win.table.rowCount())}  # type: ignore[union-attr]
            assert shown == titles and len(titles) == len(stored) > 0
        # Search narrows the list; the first item's link is what "Open link" opens.
        first = win.table.item(0, 1).text()  # type: ignore[union-attr]
        before = win.loads
        win.search.setText(first)
        await until(lambda: win.loads > before)
        assert win.table.rowCount() >= 1 and win.table.item(0, 1).text() == first  # type: ignore[union-attr]
        assert win.open_button.isEnabled()
        # Export through the pattern, from the window.
        charm = win._charm()
        assert charm is not None
        dest = tmp_path / "out.jsonl"
        win.start_export(charm, "jsonl", dest)
        await until(lambda: any(ln.startswith("TRAYAPP_DATA_EXPORTED") for ln in env.lines))
        stored = env.engine.store.collection(f"charm:{charm.id}:items")
        assert len(dest.read_text().splitlines()) == len(stored)
        # Every control has a name a screen reader can say.
        for w in (win.search, win.table, win.charm_list, win.export_button):
            assert w.accessibleName()

    scenario(qloop, profile_dir, body)


def test_about_shows_versions_licence_log_and_copies_diagnostics(
    qloop: QLoop, profile_dir: Path
) -> None:
    async def body(env: Env) -> None:
        env.trigger("about")
        win = env.ctl._windows["about"]
        from trayapp.ui.about import AboutWindow

        assert isinstance(win, AboutWindow)
        text = win.details.toPlainText()
        for name in ("Pattern Sync", "Python", "Qt", "PySide6", "httpx", "pydantic"):
            assert f"{name}: " in text
        assert str(env.engine.profile.logs_dir) in win.where.text()
        assert all("&" in b.text() for b in (win.logs_button, win.copy_button))  # mnemonics
        win.copy_button.click()
        data = json.loads(QGuiApplication.clipboard().text())
        assert data["qt"] and data["version"] and len(data["charms"]) == 3
        assert win.copy_button.text() == "Copied (secrets removed)"
        win.logs_button.click()
        assert f"TRAYAPP_OPENED_FOLDER {env.engine.profile.logs_dir}" in env.lines
        assert env.engine.profile.logs_dir.is_dir()
        assert win.close_button.isDefault()

    scenario(qloop, profile_dir, body)


def test_the_data_and_about_windows_load_only_when_opened() -> None:
    import subprocess
    import sys

    code = (
        "import os, sys, asyncio, tempfile, pathlib\n"
        "os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import qasync\n"
        "from trayapp.core.engine import Engine\n"
        "from trayapp.ui.tray import TrayController\n"
        "app = QApplication([])\n"
        "loop = qasync.QEventLoop(app); asyncio.set_event_loop(loop)\n"
        "from trayapp.core.patterns import PatternRegistry\n"
        "engine = Engine(pathlib.Path(tempfile.mkdtemp()), patterns=PatternRegistry())\n"
        "ctl = TrayController(engine, use_desktop_notifications=False, use_tray=False,\n"
        "                     report=lambda _l: None)\n"
        "ctl.refresh()\n"
        "names = ('data_window', 'data_reader', 'about')\n"
        "print(sorted(n for n in names if 'trayapp.ui.' + n in sys.modules))\n"
        "ctl.dispose(); engine.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_open_as_eml_writes_a_private_file_and_hands_it_to_the_desktop(
    qloop: QLoop, profile_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtGui import QDesktopServices

    from trayapp.ui.data_reader import MailRow

    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))

    async def body(env: Env) -> None:
        env.trigger("data")
        win = env.ctl._windows["data"]
        charm = win._charm()  # type: ignore[attr-defined]
        assert charm is not None

        async def eml(_charm: object, key: str) -> bytes:  # the reader's part is tested apart
            return b"Subject: hi\r\n\r\nbody\r\n" if key == "m1" else b""

        monkeypatch.setattr(win.reader, "eml", eml)  # type: ignore[attr-defined]
        row = MailRow("m1", "Bob", "hi", None, ("INBOX",), "")
        await win._open_eml(charm, row)  # type: ignore[attr-defined]

    scenario(qloop, profile_dir, body)
    assert len(opened) == 1
    path = Path(opened[0])
    assert path.name == "m1.eml" and path.read_bytes().startswith(b"Subject: hi")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
