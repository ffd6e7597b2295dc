"""A settings form generated from a pattern's pydantic ``Settings`` JSON schema.

Patterns (plugins included) declare their settings once, as a pydantic model; the form follows
from its JSON schema, so a new pattern needs no UI code. Validation is the pattern's own
(``Pattern.validate_settings`` semantics, via pydantic), and each problem is shown next to its
field in the words of :func:`trayapp.core.patterns.describe_validation_error`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from trayapp.core.patterns import describe_validation_error

_INT_RANGE = 2_000_000_000


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict(root.get("$defs", {}).get(ref.split("/")[-1], {}))
    return schema


def _field_schema(prop: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The effective schema of a property and whether it may be empty (``X | None``)."""
    prop = _resolve(prop, root)
    options = prop.get("anyOf")
    if isinstance(options, list):
        non_null = [_resolve(o, root) for o in options if o.get("type") != "null"]
        nullable = len(non_null) < len(options)
        if len(non_null) == 1:
            merged = {**non_null[0], **{k: v for k, v in prop.items() if k != "anyOf"}}
            return merged, nullable
        return {"type": "string", **{k: v for k, v in prop.items() if k != "anyOf"}}, nullable
    return prop, False


def settings_to_save(model: BaseModel) -> dict[str, Any]:
    """The JSON settings to hand to the engine, secret fields with their real values.

    ``model_dump(mode="json")`` writes a ``SecretStr`` as ``"**********"``: the engine would then
    keep those stars in the keyring as the secret. The engine needs the typed value (or the
    keep-the-stored-one placeholder the form was filled with, given back unchanged).
    """
    out = model.model_dump(mode="json", exclude_unset=True)
    for name, value in model:
        if name in out and isinstance(value, SecretStr):
            out[name] = value.get_secret_value()
    return out


class SchemaForm(QWidget):
    """Fields for one settings model; ``value()`` returns the dict to validate and save."""

    def __init__(self, model: type[BaseModel], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.schema = model.model_json_schema()
        self._editors: dict[str, tuple[QWidget, dict[str, Any], bool]] = {}
        self._errors: dict[str, QLabel] = {}
        self._labels: list[QLabel] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.general_error = QLabel("")
        self.general_error.setObjectName("general_error")
        self.general_error.setStyleSheet("color: #c0392b")
        self.general_error.setWordWrap(True)
        self.general_error.hide()
        outer.addWidget(self.general_error)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        self.form_layout = form
        outer.addLayout(form)
        required = set(self.schema.get("required", []))
        for name, raw in self.schema.get("properties", {}).items():
            prop, nullable = _field_schema(raw, self.schema)
            editor = self._editor(prop, nullable)
            editor.setObjectName(f"field_{name}")
            desc = prop.get("description") or raw.get("description")
            if desc:
                editor.setToolTip(str(desc))
            title = str(raw.get("title") or prop.get("title") or name)
            label = QLabel(title.replace("&", "&&") + (" *" if name in required else ""))
            label.setBuddy(editor)
            editor.setAccessibleName(title)
            if desc:
                editor.setAccessibleDescription(str(desc))
            self._labels.append(label)
            box = QWidget()
            col = QVBoxLayout(box)
            col.setContentsMargins(0, 0, 0, 0)
            col.addWidget(editor)
            err = QLabel("")
            err.setObjectName(f"error_{name}")
            err.setStyleSheet("color: #c0392b")
            err.setWordWrap(True)
            err.hide()
            col.addWidget(err)
            form.addRow(label, box)
            self._editors[name] = (editor, prop, nullable)
            self._errors[name] = err
            if "default" in raw and raw["default"] is not None:
                self._set(editor, prop, raw["default"])

    def _editor(self, prop: dict[str, Any], nullable: bool) -> QWidget:
        kind = prop.get("type")
        if "enum" in prop:
            combo = QComboBox()
            if nullable:
                combo.addItem("", None)
            for v in prop["enum"]:
                combo.addItem(str(v), v)
            return combo
        if kind == "boolean":
            return QCheckBox()
        if kind == "integer" and not nullable:
            spin = QSpinBox()
            spin.setRange(
                int(prop.get("minimum", -_INT_RANGE)), int(prop.get("maximum", _INT_RANGE))
            )
            return spin
        if kind == "number" and not nullable:
            dspin = QDoubleSpinBox()
            dspin.setDecimals(3)
            dspin.setRange(float(prop.get("minimum", -1e12)), float(prop.get("maximum", 1e12)))
            return dspin
        edit = QLineEdit()
        if kind == "array":
            edit.setPlaceholderText(self.tr("comma-separated"))
        elif kind == "object":
            edit.setPlaceholderText(self.tr('JSON, e.g. {"name": "value"}'))
        elif nullable:
            edit.setPlaceholderText(self.tr("(optional)"))
        if prop.get("format") == "password" or prop.get("writeOnly"):
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        return edit

    def _set(self, editor: QWidget, prop: dict[str, Any], value: Any) -> None:
        if isinstance(editor, QComboBox):
            idx = editor.findData(value)
            editor.setCurrentIndex(max(idx, 0))
        elif isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QSpinBox):
            editor.setValue(int(value))
        elif isinstance(editor, QDoubleSpinBox):
            editor.setValue(float(value))
        elif isinstance(editor, QLineEdit):
            if value is None:
                editor.setText("")
            elif isinstance(value, list):
                editor.setText(", ".join(str(v) for v in value))
            elif isinstance(value, (dict,)):
                editor.setText(json.dumps(value))
            else:
                editor.setText(str(value))

    def set_values(self, values: dict[str, Any]) -> None:
        for name, v in values.items():
            if name in self._editors:
                editor, prop, _ = self._editors[name]
                self._set(editor, prop, v)

    def labels(self) -> list[QLabel]:
        """The field labels, so a window can align them with its own form's labels."""
        return list(self._labels)

    def editor(self, name: str) -> QWidget:
        return self._editors[name][0]

    def value(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (editor, prop, nullable) in self._editors.items():
            v: Any
            if isinstance(editor, QComboBox):
                v = editor.currentData()
            elif isinstance(editor, QCheckBox):
                v = editor.isChecked()
            elif isinstance(editor, (QSpinBox, QDoubleSpinBox)):
                v = editor.value()
            else:
                assert isinstance(editor, QLineEdit)
                text = editor.text().strip()
                if prop.get("type") == "array":
                    v = [p.strip() for p in text.split(",") if p.strip()]
                elif prop.get("type") == "object" and text:
                    try:
                        v = json.loads(text)
                    except json.JSONDecodeError:
                        v = text  # the model then says the field is "not an object"
                elif text == "" and (nullable or name not in self.schema.get("required", [])):
                    continue  # leave it to the model's default
                else:
                    v = text
            if v is None and not nullable:
                continue
            out[name] = v
        return out

    def validate(self) -> BaseModel | None:
        """Validate with the model; show each problem under its field. None when invalid."""
        self.clear_errors()
        try:
            return self.model.model_validate(self.value())
        except ValidationError as exc:
            self.show_problems(describe_validation_error(exc, self.model))
            return None

    def clear_errors(self) -> None:
        for name, label in self._errors.items():
            label.hide()
            label.setText("")
            self._mark(name, "")
        self.general_error.hide()
        self.general_error.setText("")

    def _mark(self, name: str, problem: str) -> None:
        """Mark a field invalid (red frame, accessible description) or clear the mark."""
        editor = self._editors[name][0]
        editor.setProperty("invalid", bool(problem))
        editor.setStyleSheet("border: 1px solid #c0392b; border-radius: 2px;" if problem else "")
        base = editor.toolTip()
        editor.setAccessibleDescription(f"{problem} {base}".strip() if problem else base)

    def show_problems(self, problems: list[str]) -> bool:
        """Show ``field: problem`` phrases under their fields; True if any found a field.

        Used for the form's own validation and for the engine's ``SettingsError`` (its
        message is "invalid settings for <pattern>: field: problem; field: problem").
        """
        general: list[str] = []
        first: QWidget | None = None
        for problem in problems:
            field, _, text = problem.partition(": ")
            top = field.split(".")[0]
            if text and top in self._errors:
                label = self._errors[top]
                label.setText(text if label.isHidden() else f"{label.text()}; {text}")
                label.show()
                self._mark(top, label.text())
                first = first or self._editors[top][0]
            else:
                general.append(problem)
        if general:
            self.show_general_error("; ".join(general))
        if first is not None:
            first.setFocus()
        return first is not None

    def show_engine_error(self, message: str) -> bool:
        """Place a ``SettingsError`` message's problems on their fields (False: none matched)."""
        _head, sep, body = message.partition(": ")
        if not sep or not message.startswith("invalid settings for "):
            return False
        problems = [p.strip() for p in body.split("; ") if p.strip()]
        self.clear_errors()
        return self.show_problems(problems)

    def show_general_error(self, text: str) -> None:
        self.general_error.setText(text)
        self.general_error.show()

    def error_text(self, name: str) -> str | None:
        label = self._errors[name]
        return None if label.isHidden() else label.text()
