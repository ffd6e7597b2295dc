"""A translation is a .qm file dropped in a folder: no code change (issue 15, item 7)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
from PySide6.QtWidgets import QApplication

from trayapp.ui import i18n
from trayapp.ui.model import build_menu, make_snapshot, summary

GERMAN = {
    "Sync all now": "Jetzt alles synchronisieren",
    "No charms yet: add one in Settings": "Noch keine Charms: in den Einstellungen hinzufügen",
}
UI = Path(__file__).resolve().parents[2] / "trayapp" / "ui"


def tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    found = shutil.which(name) or str(beside)
    return found if Path(found).exists() else None


@pytest.mark.skipif(
    tool("pyside6-lrelease") is None or tool("pyside6-lupdate") is None,
    reason="pyside6-lupdate/lrelease missing",
)
def test_a_dropped_in_qm_translates_the_menu(
    qapp: QApplication, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a translator does: extract the catalog from the sources, translate, compile.
    ts = tmp_path / "trayapp_de.ts"
    sources = [str(UI / "model.py"), str(UI / "notify_policy.py")]
    subprocess.run([str(tool("pyside6-lupdate")), *sources, "-ts", str(ts)], check=True)
    tree = ElementTree.parse(ts)
    done = 0
    for message in tree.iter("message"):
        source = message.findtext("source")
        translation = message.find("translation")
        if source in GERMAN and translation is not None:
            translation.text = GERMAN[source]
            translation.attrib.pop("type", None)  # "unfinished" no more
            done += 1
    assert done == len(GERMAN)  # lupdate found the strings where the code uses them
    tree.write(ts, encoding="utf-8", xml_declaration=True)
    qm = tmp_path / "trayapp_de.qm"
    subprocess.run([str(tool("pyside6-lrelease")), str(ts), "-qm", str(qm)], check=True)
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


@pytest.mark.skipif(tool("pyside6-lupdate") is None, reason="pyside6-lupdate missing")
def test_the_gui_sentences_for_errors_reach_the_catalog(tmp_path: Path) -> None:
    # The sentences live in a table and are translated where shown (tr(variable)), which lupdate
    # cannot follow: QT_TR_NOOP marks them where they are written.
    from trayapp.ui import wording

    ts = tmp_path / "trayapp_de.ts"
    subprocess.run(
        [str(tool("pyside6-lupdate")), str(UI / "wording.py"), "-ts", str(ts)], check=True
    )
    sources = {m.findtext("source") for m in ElementTree.parse(ts).iter("message")}
    assert {sentence for _, sentence in wording._KNOWN} <= sources
    assert "Something went wrong: the details are in the log." in sources
