"""Sentences for the GUI: what went wrong and what to do, without the CLI's vocabulary.

The engine and ``trayapp.auth`` write messages for every front end, and many carry a command
line hint (`trayapp accounts signin x`, ``--account ACCOUNT``), an exception class name
("(ReadError)", "InitError: ...") or an errno ("[Errno -2]"). The CLI prints those as they are;
windows and notifications show :func:`for_gui` of them instead: known situations get a sentence
written for a window, anything else is cleaned of the CLI parts and shown as one sentence.

Qt-free on purpose (plain functions, unit-tested alone); the sentences go through
:func:`trayapp.ui.i18n.tr`.
"""

from __future__ import annotations

import re
from datetime import datetime

from trayapp.ui.i18n import QT_TR_NOOP, tr

# Situations with a sentence of their own: (pattern on the raw message, GUI sentence).
_KNOWN: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"no OAuth client is configured", re.I),
        QT_TR_NOOP("Pattern Sync is not connected to Google yet: set up your OAuth client first."),
    ),
    (
        re.compile(r"needs (?:Google access|an account)", re.I),
        QT_TR_NOOP("Choose a Google account for this charm, or connect one."),
    ),
    (
        re.compile(r"Failed to create the collection|no login collection", re.I),
        QT_TR_NOOP(
            "The system keychain has no place for passwords yet: create or unlock it and try again."
        ),
    ),
    (
        re.compile(r"Prompt dismissed|keyring is locked|collection.*locked", re.I),
        QT_TR_NOOP("The system keychain is locked: unlock it and try again."),
    ),
    (
        re.compile(r"access_denied|denied access|SignInDenied", re.I),
        QT_TR_NOOP("Google did not give Pattern Sync access: you chose not to allow it."),
    ),
    (
        re.compile(r"timed out waiting for the browser|sign-in timed out", re.I),
        QT_TR_NOOP("The sign-in page was not answered in time: try again."),
    ),
    (
        re.compile(r"name or service not known|Errno -[23]|getaddrinfo|ConnectError", re.I),
        QT_TR_NOOP("Google could not be reached: check the network connection and try again."),
    ),
    (
        re.compile(r"charm name is empty", re.I),
        QT_TR_NOOP("Give the charm a name."),
    ),
)

_CLI_BITS = (
    # "(--account ACCOUNT; see 'trayapp accounts list')" and the like.
    re.compile(r"\s*\([^()]*(?:--[a-z]|trayapp )[^()]*\)"),
    # "; sign in again with `trayapp ...`", ": run `trayapp ...`", "see 'trayapp ...'".
    re.compile(r"[;,:]?\s*(?:[a-z ]*)?(?:with|run|see|use)?\s*[`'\"]trayapp [^`'\"]*[`'\"][^.;]*"),
    re.compile(r"[;,]?\s*\(?--[a-z][\w-]*(?: [A-Z_]+)?\)?"),
    re.compile(r"\s*\[Errno -?\d+\]"),
    re.compile(r"\s*\((?:[A-Z][A-Za-z]+(?:Error|Exception|Timeout))\)"),
    re.compile(r"^(?:[A-Z][A-Za-z]+(?:Error|Exception)):\s*"),
    re.compile(r"\b[a-z_.]+\.[A-Z][A-Za-z]+(?:Error|Exception)\b:?\s*"),
)


def _one_sentence(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ;,:-")
    if not text:
        return ""
    # Cut at the first sentence end (keeping URLs and decimals intact).
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text, maxsplit=1)[0]
    first = first.rstrip(" ;,:")
    first = re.sub(r"([.!?])[.!?]+$", r"\1", first)  # "..", "!." -> one mark
    if not first.endswith((".", "!", "?")):
        first += "."
    return first[0].upper() + first[1:]


# Low-level words a person should not have to read, with what they mean.
_PLAIN_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\[Errno -?\d+\]\s*Name or service not known", re.I), "the name is unknown"),
    (re.compile(r"\[Errno -?\d+\]\s*Temporary failure in name resolution", re.I), "no network"),
    (re.compile(r"\[Errno -?\d+\]\s*Connection refused", re.I), "the connection was refused"),
    (re.compile(r"\[Errno -?\d+\]\s*Network is unreachable", re.I), "no network"),
    (
        re.compile(
            r"\(\s*(?:ReadError|ReadTimeout|ConnectError|ConnectTimeout|WriteError|"
            r"RemoteProtocolError|PoolTimeout)\s*\)",
            re.I,
        ),
        "",
    ),
)


def detail_for_gui(text: str | None) -> str | None:
    """An engine message (a run's error) for a window: CLI hints, errno and class names out.

    Unlike :func:`for_gui` it keeps every sentence and the specifics (host names, HTTP
    statuses): the menu, notifications and Activity show what happened in detail.
    """
    if text is None:
        return None
    for pattern, plain in _PLAIN_WORDS:
        text = pattern.sub(plain, text)
    for pattern in _CLI_BITS:
        text = pattern.sub("", text)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+([.,;:)])", r"\1", re.sub(r"[ \t]+", " ", text)).strip()
    return re.sub(r"([.!?])[.!?]+", r"\1", text)


def clean(text: str) -> str:
    """``text`` without CLI flags, commands, class names or errno, as one sentence."""
    for pattern in _CLI_BITS:
        text = pattern.sub("", text)
    return _one_sentence(text)


def for_gui(error: BaseException | str) -> str:
    """One sentence for a window or notification about ``error``."""
    raw = error if isinstance(error, str) else (str(error) or type(error).__name__)
    for pattern, sentence in _KNOWN:
        if pattern.search(raw):
            return tr(sentence)
    if not isinstance(error, str) and not str(error):
        return tr("Something went wrong: the details are in the log.")
    cleaned = clean(raw)
    return cleaned or tr("Something went wrong: the details are in the log.")


def clock_time(when: datetime, now: datetime) -> str:
    """``when`` as the user's clock shows it: "14:05", or "Tue 14:05" on another day."""
    local, today = when.astimezone(), now.astimezone().date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%a %H:%M")


def server_wait(until: datetime | None, now: datetime) -> str:
    """Why a rate-limited charm is not syncing, in the user's words (a wait, not a failure)."""
    if until is None:
        return tr("the server asked to slow down")
    return tr("the server asked to wait until {time}").format(time=clock_time(until, now))
