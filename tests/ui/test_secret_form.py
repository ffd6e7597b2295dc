"""A secret setting (``SecretStr``) typed into the Settings form reaches the keyring as typed.

The form validates into the pattern's model; dumping that model to JSON writes a ``SecretStr`` as
``"**********"``, which the engine then kept as the secret (a plugin sent ``Bearer **********``),
and saving an edited charm overwrote the stored secret with the stars in the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication, QLineEdit

from trayapp.api import BaseModel, Field, HttpUrl, Pattern, RunReport, SecretStr, UpdateContext
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.patterns import SECRET_PLACEHOLDER
from trayapp.ui.tray import TrayController
from trayapp.ui.windows import SettingsWindow

TOKEN = "tok-7c1e55a0b2d94f38-FORM"
NEW_TOKEN = "tok-93d0e4f1a6b27c85-ROTATED"


class StatusSettings(BaseModel):
    url: HttpUrl = Field(description="Incidents JSON address")
    api_key: SecretStr = Field(description="API key")


class StatusPage(Pattern[StatusSettings]):
    id = "status-page"
    title = "Status page"
    Settings = StatusSettings

    async def bg_updater(self, ctx: UpdateContext[StatusSettings]) -> RunReport:
        return RunReport()


@pytest.fixture
def ctl(
    qapp: QApplication, profile_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TrayController]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TRAYAPP_SECRET_STORE", "file")
    registry = default_registry()
    registry.register(StatusPage)
    engine = Engine(profile_dir, patterns=registry)
    c = TrayController(
        engine, use_desktop_notifications=False, use_tray=False, report=lambda _l: None
    )
    yield c
    c.dispose()
    engine.close()


def stored_secrets(profile: Path) -> str:
    return (profile / "secrets.json").read_text()


def line_edit(win: SettingsWindow, name: str) -> QLineEdit:
    assert win.form is not None
    editor = win.form.editor(name)
    assert isinstance(editor, QLineEdit)
    return editor


def test_the_typed_secret_is_kept_then_kept_on_edit_then_replaced(
    ctl: TrayController, profile_dir: Path
) -> None:
    win = ctl.open_window("settings", "charms")
    assert isinstance(win, SettingsWindow)
    win.pattern.setCurrentIndex(win.pattern.findData("status-page"))
    assert line_edit(win, "api_key").echoMode() == QLineEdit.EchoMode.Password
    line_edit(win, "url").setText("https://status.example.test/incidents.json")
    line_edit(win, "api_key").setText(TOKEN)
    assert win.save_charm() is True
    (charm,) = ctl.engine.charms()
    assert charm.settings["api_key"] == SECRET_PLACEHOLDER
    assert TOKEN in stored_secrets(profile_dir)
    assert "**********" not in stored_secrets(profile_dir)

    # Editing another field gives the placeholder back: the stored secret stays.
    win.charm_list.setCurrentRow(0)
    assert line_edit(win, "api_key").text() == SECRET_PLACEHOLDER
    line_edit(win, "url").setText("https://status.example.test/v2/incidents.json")
    assert win.save_charm() is True
    assert TOKEN in stored_secrets(profile_dir)
    assert "**********" not in stored_secrets(profile_dir)

    # Re-entered: the new value replaces it.
    line_edit(win, "api_key").setText(NEW_TOKEN)
    assert win.save_charm() is True
    text = stored_secrets(profile_dir)
    assert NEW_TOKEN in text and TOKEN not in text
