"""The generated settings form can set up an exec-importer charm (a list and a JSON object)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication, QLabel, QLineEdit

from trayapp.patterns.exec_importer import ExecSettings
from trayapp.ui.schema_form import SchemaForm

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exec-pattern" / "notes-importer.sh"


def test_form_reads_arguments_and_json_options(qapp: QApplication) -> None:
    form = SchemaForm(ExecSettings)
    for name, text in (
        ("command", str(EXAMPLE)),
        ("args", "--quiet, --all"),
        ("options", '{"folder": "/home/me/notes", "wait_for_lock": true}'),
    ):
        editor = form.editor(name)
        assert isinstance(editor, QLineEdit)
        editor.setText(text)
    settings = form.validate()
    assert isinstance(settings, ExecSettings)
    assert settings.args == ["--quiet", "--all"]
    assert settings.options == {"folder": "/home/me/notes", "wait_for_lock": True}
    assert settings.timeout_seconds == 300


def test_form_says_which_field_is_wrong(qapp: QApplication) -> None:
    form = SchemaForm(ExecSettings)
    command = form.editor("command")
    options = form.editor("options")
    assert isinstance(command, QLineEdit) and isinstance(options, QLineEdit)
    command.setText("/no/such/program")
    options.setText("{not json")
    assert form.validate() is None
    command_error = form.findChild(QLabel, "error_command")
    options_error = form.findChild(QLabel, "error_options")
    assert isinstance(command_error, QLabel) and isinstance(options_error, QLabel)
    assert "does not exist" in command_error.text()
    assert "not an object" in options_error.text()
