"""Parsing: the options every command shares and the values users type (durations, settings).

Global options (``--profile``, ``-v``, ``-q``, and ``--json`` for commands that print JSON)
are accepted before or after the command: each command's parser repeats them with
``default=SUPPRESS``, so a value given before the command is not reset by the subparser.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from trayapp.core.errors import ConfigError, SettingsError

Handler = Callable[[argparse.Namespace], int]

# Settings are a handful of values; a settings document larger or deeper than this is a
# mistake (or an attack), refused with a sentence before it reaches the JSON parser's recursion.
MAX_SETTINGS_BYTES = 256 * 1024
MAX_SETTINGS_DEPTH = 32


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler | None,
) -> argparse.ArgumentParser:
    """A command (or command group) parser that also accepts the global options."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_common(p, top=False)
    if handler is not None:
        p.set_defaults(handler=handler)
    return p


def add_common(p: argparse.ArgumentParser, *, top: bool) -> None:
    default: Any = None if top else argparse.SUPPRESS
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=default,
        help="profile directory (default: $TRAYAPP_PROFILE, else the user data dir)",
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
        help="more log output (-vv: debug)",
    )  # fmt: skip
    p.add_argument(
        "-q", "--quiet", action="count", default=0 if top else argparse.SUPPRESS,
        help="less log output",
    )  # fmt: skip
    if top:
        p.add_argument(
            "--json", action="store_true", help="machine-readable output, for commands with one"
        )


def add_json(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help=help_text or "machine-readable output (docs/cli.md)",
    )


# ----------------------------------------------------------------------------------- values


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(sec|min|s|m|h|d)", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, what: str = "duration") -> timedelta:
    """``90s``, ``15m``, ``1h30m``, ``2d`` -> timedelta; a ConfigError saying how otherwise."""
    compact = text.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(compact):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2).lower()]
        pos = m.end()
    if not compact or pos != len(compact) or total <= 0:
        raise ConfigError(
            f"invalid {what} {text!r}: use a number and a unit, e.g. 90s, 15m, 1h30m or 1d"
        )
    from trayapp.core.scheduler import MAX_INTERVAL

    if total > MAX_INTERVAL.total_seconds():
        raise ConfigError(
            f"the {what} {text!r} is too long: it can be at most {MAX_INTERVAL.days} days"
        )
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def load_json_value(text: str, what: str) -> Any:
    """Parse user-typed JSON, refusing documents too large or too deeply nested (one sentence).

    The depth is measured on the text before parsing, so a 30,000-deep ``[[[[...`` never
    reaches the recursive parser; brackets inside strings are skipped.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SETTINGS_BYTES:
        raise SettingsError(
            f"{what} is too large ({len(text):,} characters; at most "
            f"{MAX_SETTINGS_BYTES // 1024} KiB): settings are a few values, not data"
        )
    if _json_depth(text) > MAX_SETTINGS_DEPTH:
        raise SettingsError(
            f"{what} is nested too deeply (more than {MAX_SETTINGS_DEPTH} levels of lists or "
            "objects); give the settings as a flat object"
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:  # pragma: no cover - the depth check above comes first
        raise SettingsError(f"{what} is nested too deeply") from None


def _json_depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def settings_from_args(settings_json: str | None, pairs: Sequence[str]) -> dict[str, Any]:
    """``--settings-json JSON|@FILE`` and ``--set KEY=VALUE`` / ``KEY:=JSON``, merged."""
    settings: dict[str, Any] = {}
    if settings_json:
        text = settings_json
        if text.startswith("@"):
            try:
                with Path(text[1:]).expanduser().open(encoding="utf-8") as fh:
                    text = fh.read(MAX_SETTINGS_BYTES + 1)
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise ConfigError(f"cannot read settings file {text[1:]!r}: {reason}") from None
        loaded = load_json_value(text, "--settings-json")
        if not isinstance(loaded, dict):
            raise SettingsError('--settings-json must be a JSON object, like {"url": "..."}')
        settings.update(loaded)
    for item in pairs:
        if ":=" in item and ("=" not in item or item.index(":=") < item.index("=")):
            key, raw = item.split(":=", 1)
            try:
                settings[key.strip()] = load_json_value(raw, f"--set {key.strip()}:=")
            except SettingsError as exc:
                if "not valid JSON" not in str(exc):
                    raise
                raise SettingsError(
                    f"--set {key.strip()}:= needs a JSON value, got {raw!r}"
                ) from None
        elif "=" in item:
            key, value = item.split("=", 1)
            settings[key.strip()] = value
        else:
            raise SettingsError(f"--set needs KEY=VALUE (or KEY:=JSON), got {item!r}")
        if not key.strip():
            raise SettingsError(f"--set {item!r} has an empty setting name")
    return settings


def pairs(items: Sequence[str], flag: str, shape: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{flag} needs {shape}, got {item!r}")
        out[key.strip()] = value.strip()
    return out
