"""Settings (schema-generated, validated forms; autostart; notification prefs) and Activity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QLineEdit
from pytestqt.qtbot import QtBot

from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.ui.autostart import Autostart
from trayapp.ui.prefs import UiPrefs
from trayapp.ui.tray import TrayController
from trayapp.ui.windows import ActivityWindow, SettingsWindow


@pytest.fixture
def ctl(
    qapp: QApplication, profile_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrayController]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    engine = Engine(profile_dir, patterns=default_registry())
    c = TrayController(
        engine, use_desktop_notifications=False, use_tray=False, report=lambda _l: None
    )
    yield c
    c.dispose()
    engine.close()


def engine_of(ctl: TrayController) -> Engine:
    assert isinstance(ctl.engine, Engine)
    return ctl.engine


def settings(ctl: TrayController) -> SettingsWindow:
    win = ctl.open_window("settings", "charms")
    assert isinstance(win, SettingsWindow)
    return win


def test_charm_form_is_generated_from_the_pattern_schema_and_validated_inline(
    ctl: TrayController,
) -> None:
    win = settings(ctl)
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    assert win.form is not None
    url = win.form.editor("url")
    assert isinstance(url, QLineEdit)
    assert "RSS or Atom" in url.toolTip()  # the field's description from the schema
    url.setText("not a url")
    max_items = win.form.editor("max_items")
    assert isinstance(max_items, QLineEdit)
    max_items.setText("0")
    assert win.save_charm() is False
    assert win.form.error_text("url") == "not a valid http(s) URL"
    # Rebuilding the form (new charm, pattern change) leaves exactly one form on screen.
    win.new_charm()
    win.new_charm()
    assert len([w for w in win.findChildren(QLineEdit, "field_url") if w.isVisible()]) == 1
    url = win.form.editor("url")
    assert isinstance(url, QLineEdit)
    url.setText("not a url")
    max_items = win.form.editor("max_items")
    assert isinstance(max_items, QLineEdit)
    max_items.setText("0")
    assert win.save_charm() is False
    assert win.form.error_text("url") == "not a valid http(s) URL"
    assert win.form.error_text("max_items") == "must be at least 1"
    assert engine_of(ctl).charms() == []

    url.setText("https://example.org/feed.xml")
    max_items.setText("")
    win.name.setText("Example feed")
    win.interval.setValue(45)
    assert win.save_charm() is True
    assert win.form.error_text("url") is None
    (charm,) = engine_of(ctl).charms()
    assert charm.name == "Example feed" and charm.interval == timedelta(minutes=45)
    assert charm.settings["url"] == "https://example.org/feed.xml"
    assert win.charm_list.count() == 1


def test_editing_a_charm_loads_its_settings_and_saves_through_the_engine(
    ctl: TrayController,
) -> None:
    engine_of(ctl).add_charm(
        "feed-importer",
        {"url": "https://example.org/a.xml"},
        name="A",
        interval=timedelta(minutes=30),
    )
    win = settings(ctl)
    win.charm_list.setCurrentRow(0)
    assert win.form is not None
    url = win.form.editor("url")
    assert isinstance(url, QLineEdit) and url.text() == "https://example.org/a.xml"
    assert win.interval.value() == 30 and not win.pattern.isEnabled()
    url.setText("https://example.org/b.xml")
    assert win.save_charm() is True
    (charm,) = engine_of(ctl).charms()
    assert charm.settings["url"] == "https://example.org/b.xml"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG autostart is Linux")
def test_autostart_entry_shows_its_mechanism_and_repairs_a_stale_path(tmp_path: Path) -> None:
    home = tmp_path / "home"
    exe = tmp_path / "bin" / "trayapp"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    auto = Autostart("linux", home=home, config_home=home / ".config", command=[str(exe)])
    st = auto.status()
    assert st.mechanism == "XDG autostart entry" and not st.enabled and st.tested
    st = auto.enable()
    assert st.enabled and not st.stale
    text = auto.desktop_path.read_text()
    assert f"Exec={exe}" in text and "Name=Pattern Sync" in text and "@" not in text
    # The app moved: the entry now points at a path that no longer exists.
    new_exe = tmp_path / "new" / "trayapp"
    new_exe.parent.mkdir()
    new_exe.write_text("#!/bin/sh\n")
    exe.unlink()
    moved = Autostart(
        "linux",
        home=home,
        config_home=home / ".config",
        command=[str(tmp_path / "new" / "trayapp")],
    )
    stale = moved.status()
    assert stale.enabled and stale.stale and "repair it" in stale.describe()
    fixed = moved.repair()
    assert fixed.enabled and not fixed.stale
    assert f"Exec={tmp_path / 'new' / 'trayapp'}" in auto.desktop_path.read_text()
    assert not moved.disable().enabled and not auto.desktop_path.exists()


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None,
    reason="desktop-file-validate missing (apt-get install desktop-file-utils)",
)
def test_autostart_entry_passes_desktop_file_validate_without_hints(tmp_path: Path) -> None:
    """Hints count too: two main categories made menus list the app twice. The command has
    every character the spec's Exec quoting treats specially, and reads back unchanged."""
    home = tmp_path / "home"
    exe = tmp_path / "my apps" / "trayapp"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    command = [str(exe), "--profile", "/home/a 'b' \"c\"/$x\\y%z`w`"]
    auto = Autostart("linux", home=home, config_home=home / ".config", command=command)
    auto.enable()
    assert Autostart._desktop_exec(auto.desktop_path.read_text()) == command
    assert auto.status().enabled and not auto.status().stale  # read back as this very command
    result = subprocess.run(
        ["desktop-file-validate", str(auto.desktop_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert "Categories=Network;\n" in auto.desktop_path.read_text()


def test_settings_general_tab_toggles_autostart_and_saves_notification_prefs(
    ctl: TrayController, tmp_path: Path
) -> None:
    win = settings(ctl)
    assert "XDG autostart entry" in win.autostart_info.text()
    win.autostart_box.setChecked(True)
    assert (tmp_path / "config" / "autostart" / "trayapp.desktop").is_file()
    assert ": on" in win.autostart_info.text()
    win.autostart_box.setChecked(False)
    assert not (tmp_path / "config" / "autostart" / "trayapp.desktop").exists()

    win.notify_new.setChecked(True)
    win.notify_errors.setChecked(False)
    profile = engine_of(ctl).profile.path
    prefs = UiPrefs.load(profile)
    assert prefs.notify_new_items is True and prefs.notify_errors is False
    assert ctl.policy.new_items_summary is True and ctl.policy.errors_enabled is False
    assert json.loads((profile / "ui.json").read_text())["notify_new_items"] is True


def test_activity_diagnostics_are_redacted(ctl: TrayController) -> None:
    engine_of(ctl).add_charm(
        "feed-importer",
        {"url": "https://example.org/feed.xml?access_token=ya29.SECRETSECRETSECRET"},
        name="Leaky ya29.SECRETSECRETSECRET",
    )
    win = ctl.open_window("activity")
    assert isinstance(win, ActivityWindow)
    text = win.diagnostics()
    data = json.loads(text)
    assert data["charms"][0]["pattern"] == "feed-importer"
    assert {"id": "feed-importer", "source": "built-in", "version": None} in data["patterns"]
    assert data["plugin_problems"] == []
    assert "SECRETSECRETSECRET" not in text
    win.copy_diagnostics()
    assert "SECRETSECRETSECRET" not in QApplication.clipboard().text()
    assert win.copy.text() == "Copied (secrets removed)"


def test_a_google_pattern_asks_for_an_account_and_the_engine_error_shows_inline(
    ctl: TrayController,
) -> None:
    win = settings(ctl)
    index = win.pattern.findData("gmail-importer")
    if index < 0:
        pytest.skip("the Gmail importer is not installed")
    win.pattern.setCurrentIndex(index)
    assert win.account.isVisible() and win.connect_account.isVisible()
    assert win.account.currentText() == "No account available"  # no accounts module here
    assert win.save_charm() is False
    # The engine's refusal, in the GUI's words: no CLI flag, no command.
    status = win.save_status.text()
    assert status == "Choose a Google account for this charm, or connect one."
    assert "--account" not in status and "trayapp" not in status
    assert engine_of(ctl).charms() == []
    win.pattern.setCurrentIndex(win.pattern.findData("feed-importer"))
    assert not win.account.isVisible()


def test_activity_charm_list_fits_long_lines_without_a_horizontal_scrollbar(
    ctl: TrayController, qtbot: QtBot
) -> None:
    engine_of(ctl).add_charm(
        "feed-importer",
        {"url": "https://example.org/feed.xml"},
        name="A charm whose name alone is longer than the list is wide, on purpose",
    )
    win = ctl.open_window("activity")
    assert isinstance(win, ActivityWindow)
    qtbot.waitExposed(win)
    # The list starts wide enough for a usual charm line; the history gets the rest.
    list_width, table_width = win.splitter.sizes()
    assert list_width >= 250 and table_width > list_width
    item = win.charms.item(0)
    assert item is not None and item.toolTip() == item.text()
    # The long line wraps inside the viewport: nothing to scroll sideways to.
    rect = win.charms.visualItemRect(item)
    assert rect.right() <= win.charms.viewport().width()
    assert rect.height() > win.charms.fontMetrics().height()  # wrapped onto a second line
    assert win.charms.horizontalScrollBar().maximum() == 0


def test_autostart_icon_is_the_theme_name_once_the_theme_has_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: the entry pointed inside the program folder; an installed app has a theme icon."""

    home = tmp_path / "home"
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_DATA_DIRS", str(tmp_path / "nothing"))
    auto = Autostart("linux", home=home, config_home=home / ".config", command=["/opt/x/trayapp"])
    auto.enable()
    icon = [ln for ln in auto.desktop_path.read_text().splitlines() if ln.startswith("Icon=")]
    assert icon and icon[0].endswith("tray-ok.svg")  # no theme icon (pip install): the file
    apps = home / ".local/share/icons/hicolor/48x48/apps"
    apps.mkdir(parents=True)
    (apps / "trayapp.png").write_bytes(b"\x89PNG")  # what install.sh / the .deb put there
    auto.enable()
    assert "Icon=trayapp\n" in auto.desktop_path.read_text()
