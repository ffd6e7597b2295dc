"""Scrub secrets from text before it reaches a log, a ``--json`` document or a diagnostics dump.

Two complementary tools, because neither alone is enough:

* :func:`redact` removes secrets by *shape*: OAuth bearer headers, ``access_token=...`` style
  form and JSON fields, Google token prefixes (``ya29.``, ``1//``), authorization codes and
  client secrets (``GOCSPX-``). It catches secrets nobody registered, e.g. in an HTTP error body.
* :func:`register_secret` adds exact strings (the tokens this process actually holds) that are
  scrubbed wherever they appear, whatever their shape. The token provider registers every token
  it loads or receives, so even a token from a server that does not look like Google's (the
  emulator's, a proxy's) never leaks through a log line.

:class:`RedactingFilter` applies both to every log record; :func:`install_log_filter` attaches it
to the root handlers once at start-up.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"

# Exact secrets known to this process. A set guarded by a lock: tokens are registered from the
# event loop and from refresh worker threads. Strings shorter than this are never registered: a
# short "secret" would scrub ordinary words out of every message.
_MIN_SECRET_LEN = 8
_known: set[str] = set()
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None

# Field names whose values are secrets, in JSON, forms, query strings and mappings alike.
SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "code_verifier",
    "code",
    "token",
    "assertion",
    "password",
    "rapt",
    "api_key",
)
_KEYS = "|".join(SECRET_FIELDS)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    # JSON fields: "access_token": "xxx"
    (
        re.compile(rf'(?i)("(?:{_KEYS})"\s*:\s*")[^"]*(")'),
        rf"\1{MASK}\2",
    ),
    # Form / query fields: access_token=xxx&... (but not the "--set token=..." of a hint that
    # tells the user what to type: "..." is never a secret)
    (re.compile(rf"(?i)\b((?:{_KEYS})=)(?!\.\.\.(?:[&\s\"']|$))[^&\s\"']+"), rf"\1{MASK}"),
    # Google token shapes wherever they appear: access tokens, refresh tokens, auth codes,
    # client secrets of installed apps.
    (re.compile(r"\bya29\.[A-Za-z0-9._-]+"), MASK),
    (re.compile(r"(?<![\w/])1//[A-Za-z0-9._-]+"), MASK),
    (re.compile(r"(?<![\w/])4/0[A-Za-z0-9._-]+"), MASK),
    (re.compile(r"\bGOCSPX-[A-Za-z0-9._-]+"), MASK),
)


def register_secret(*values: str | None) -> None:
    """Scrub these exact strings from every later :func:`redact` call (and so every log line)."""
    global _known_pattern
    added = False
    with _known_lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_LEN and value not in _known:
                _known.add(value)
                added = True
        if added:
            # Longest first so a secret that contains another is replaced whole.
            ordered = sorted(_known, key=len, reverse=True)
            _known_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secrets() -> None:
    """Drop every registered secret (tests use this to start clean)."""
    global _known_pattern
    with _known_lock:
        _known.clear()
        _known_pattern = None


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and secret-shaped substrings masked."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


def redact_mapping(data: Any, keys: Iterable[str] = ()) -> Any:
    """Deep-copy JSON-like ``data`` with secret-named keys masked and strings scrubbed.

    ``keys`` adds field names to mask besides the usual token and secret names.
    """
    names = {k.lower() for k in keys} | set(SECRET_FIELDS)
    if isinstance(data, dict):
        return {
            k: (MASK if str(k).lower() in names and v else redact_mapping(v, names))
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return [redact_mapping(v, names) for v in data]
    if isinstance(data, str):
        return redact(data)
    return data


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs the formatted message (and traceback) of every record.

    It rewrites ``record.msg`` to the already-interpolated, redacted text and clears ``args``,
    so a handler added later cannot re-interpolate the raw arguments.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging to report
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_installed = False


def install_log_filter(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a :class:`RedactingFilter` to every handler of ``logger`` (default: root).

    Filters on handlers (not loggers) see records propagated from child loggers too, which is
    what we need: a token could be logged by any module, or by a library.
    """
    global _installed
    target = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    if not any(isinstance(f, RedactingFilter) for f in target.filters):
        target.addFilter(flt)
    _installed = True
    return flt
