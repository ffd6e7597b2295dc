"""A translation is a .qm file dropped in a folder: no code change (issue 15, item 7)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

from trayapp.ui import i18n
from trayapp.ui.model import build_menu, make_snapshot, summary

TS = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="de">
<context>
    <name>trayapp</name>
    <message>
        <source>Sync all now</source>
        <translation>Jetzt alles synchronisieren</translation>
    </message>
    <message>
        <source>No charms yet: add one in Settings</source>
        <translation>Noch keine Charms: in den Einstellungen hinzufügen</translation>
    </message>
</context>
</TS>
"""


def lrelease() -> str | None:
    beside = Path(sys.executable).parent / "pyside6-lrelease"
    found = shutil.which("pyside6-lrelease") or str(beside)
    return found if Path(found).exists() else None


@pytest.mark.skipif(lrelease() is None, reason="pyside6-lrelease missing")
def test_a_dropped_in_qm_translates_the_menu(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ts = tmp_path / "trayapp_de.ts"
    ts.write_text(TS, encoding="utf-8")
    subprocess.run([str(lrelease()), str(ts), "-qm", str(tmp_path / "trayapp_de.qm")], check=True)
    monkeypatch.setenv(i18n.TRANSLATIONS_ENV, str(tmp_path))
    snap = make_snapshot(datetime(2026, 3, 2, tzinfo=UTC), [], {})
    assert build_menu(snap).find("sync_all").text == "Sync all now"  # type: ignore[union-attr]
    try:
        loaded = i18n.install("de_DE")
        assert str(tmp_path / "trayapp_de.qm") in loaded
        assert build_menu(snap).find("sync_all").text == "Jetzt alles synchronisieren"  # type: ignore[union-attr]
        assert summary(snap) == "Noch keine Charms: in den Einstellungen hinzufügen"
        # Untranslated strings stay English rather than vanish.
        assert build_menu(snap).find("settings").text == "Settings…"  # type: ignore[union-attr]
    finally:
        i18n.uninstall()
    assert build_menu(snap).find("sync_all").text == "Sync all now"  # type: ignore[union-attr]
