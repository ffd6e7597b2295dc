"""The persisted shapes of accounts and their (non-secret) token metadata.

Kept apart from :mod:`trayapp.auth.accounts` so the token provider and the account manager can
both import them without importing each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from trayapp import DISPLAY_NAME
from trayapp.auth.secrets import SecretStoreKind

# An access token's lifetime when the token endpoint leaves ``expires_in`` out (RFC 6749 makes
# it optional): Google's tokens live an hour. Assuming "never expires" instead would hand out a
# dead token until a 401; assuming "already expired" would refresh on every request.
DEFAULT_TOKEN_LIFETIME_S = 3599.0


_AUTH = "https://www.googleapis.com/auth/"
#: What each scope lets the app do, as the end of "Allow Pattern Sync to ...".
SCOPE_ACTIONS = {
    _AUTH + "gmail.readonly": "read Gmail",
    _AUTH + "gmail.metadata": "read Gmail labels and headers",
    _AUTH + "gmail.modify": "read and change Gmail",
    "https://mail.google.com/": "read and change Gmail",
    _AUTH + "calendar.readonly": "read Google Calendar",
    _AUTH + "calendar.events.readonly": "read Google Calendar events",
    _AUTH + "calendar": "read and change Google Calendar",
    _AUTH + "userinfo.email": "see your email address",
    "openid": "know who you are on Google",
}


def describe_scopes(scopes: Sequence[str]) -> str:
    """``read Gmail and read Google Calendar``: scopes in words, for the GUI and the CLI."""
    words = list(dict.fromkeys(SCOPE_ACTIONS.get(s, f"use {s}") for s in scopes))
    if not words:
        return "use your Google account"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class AccountState(StrEnum):
    """Where an account stands. Values are stable: they appear in ``--json``."""

    SIGNED_IN = "signed_in"
    NEEDS_SIGN_IN = "needs_sign_in"  # the grant is gone: the user must sign in again
    KEYRING_NOT_READY = "keyring_not_ready"  # secrets are locked away for now; retry later
    CLIENT_MISCONFIGURED = "client_misconfigured"  # the OAuth client was rejected
    NEEDS_PERMISSION = "needs_permission"  # a charm needs scopes the user has not granted
    SIGNED_OUT = "signed_out"  # the user signed out on purpose


class Cause(StrEnum):
    """Why an account left ``signed_in``: machine-readable, for tests, status and the tray."""

    INVALID_GRANT = "invalid_grant"  # revoked, expired, password change, token limit...
    TESTING_EXPIRY = "testing_expiry"  # invalid_grant ~7 days after consent (app in Testing)
    REAUTH_REQUIRED = "reauth_required"  # invalid_rapt / rapt_required: admin re-auth policy
    INVALID_CLIENT = "invalid_client"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    SECRET_MISSING = "secret_missing"  # the keyring no longer has the token
    KEYRING_LOCKED = "keyring_locked"
    SIGNED_OUT = "signed_out"
    NEVER_SIGNED_IN = "never_signed_in"
    TOKEN_REJECTED = "token_rejected"  # a service refused the token (a 401 to a plugin's call)
    SERVICE_UNKNOWN = "service_unknown"  # no installed pattern declares the account's service


GOOGLE = "google"


class Account(BaseModel):
    """One account in a profile: Google, or another service a plugin declares (``service``).

    Never deleted because something failed. Records written before other services existed have
    no ``service`` and are Google accounts.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    id: str
    service: str = GOOGLE  # "google", or a plugin credential's service ("github")
    service_title: str = "Google"  # the service's name for the user ("GitHub")
    credential_kind: str = ""  # "" (Google), "api_token" or "oauth2"
    email: str | None = None
    name: str | None = None
    scopes: tuple[str, ...] = ()  # granted scopes
    state: AccountState = AccountState.NEEDS_SIGN_IN
    # For any state but signed_in: ``reason`` says what happened in one sentence (the tray
    # shows it next to its own "Sign in again" button); ``cli_hint`` says how to fix it from
    # the command line (``trayapp accounts ...``), which only the CLI prints.
    reason: str = ""
    cli_hint: str = ""
    cause: Cause | None = None
    missing_scopes: tuple[str, ...] = ()  # for needs_permission
    secret_store: SecretStoreKind | None = None  # where its tokens are
    client_id: str | None = None  # the OAuth client its grant belongs to
    created_at: datetime
    updated_at: datetime
    granted_at: datetime | None = None  # when the current refresh token was obtained

    @property
    def usable(self) -> bool:
        return self.state is AccountState.SIGNED_IN

    @property
    def grant_works(self) -> bool:
        """Its grant hands out tokens: signed in, or in ``needs_permission`` (the grant works for
        the scopes it holds; only the charms that need the missing ones wait)."""
        return self.state in (AccountState.SIGNED_IN, AccountState.NEEDS_PERMISSION)

    @property
    def is_google(self) -> bool:
        return self.service == GOOGLE

    @property
    def label(self) -> str:
        return self.email or (None if self.is_google else self.name) or self.id

    @property
    def cli_text(self) -> str:
        """The reason and the CLI's how-to-fix in one line (CLI output, run messages)."""
        return f"{self.reason}; {self.cli_hint}" if self.reason and self.cli_hint else self.reason

    @property
    def permission_prompt(self) -> str:
        """The menu entry / button for ``needs_permission``, e.g. "Allow Pattern Sync to read
        Gmail for x@example.com"; empty in any other state."""
        if self.state is not AccountState.NEEDS_PERMISSION:
            return ""
        return f"Allow {DISPLAY_NAME} to {describe_scopes(self.missing_scopes)} for {self.label}"

    @property
    def permission_words(self) -> str:
        """What ``needs_permission`` asks for, in words ("read Google Calendar"); else ""."""
        if self.state is not AccountState.NEEDS_PERMISSION:
            return ""
        return describe_scopes(self.missing_scopes)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` / IPC shape. Holds no secrets by construction."""
        return {
            "id": self.id,
            "service": self.service,
            "service_title": self.service_title,
            "credential_kind": self.credential_kind or "google_oauth",
            "label": self.label,
            "email": self.email,
            "name": self.name,
            "state": self.state.value,
            "usable": self.usable,
            "reason": self.reason,
            "hint": self.cli_hint,
            "cause": self.cause.value if self.cause else None,
            "scopes": list(self.scopes),
            "missing_scopes": list(self.missing_scopes),
            "permission_prompt": self.permission_prompt,
            "secret_store": self.secret_store.value if self.secret_store else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "granted_at": self.granted_at.isoformat() if self.granted_at else None,
        }


class AuthMeta(BaseModel):
    """What the account's auth cell ``account:<id>:auth`` holds: token *metadata* only.

    The tokens themselves are in the secret store. ``generation`` counts token changes; the
    secret payload carries the same number, so a crash between writing the secret and the cell
    is detected (the access token is then not trusted, and refreshed).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    generation: int = 0
    expiry: datetime | None = None
    scopes: tuple[str, ...] = ()
    fingerprint: str | None = None  # sha256 prefix of the access token: tells tokens apart
    refreshed_at: datetime | None = None
    granted_at: datetime | None = None
    has_refresh_token: bool = False


class SecretPayload(BaseModel):
    """The one secret per account: JSON in the keyring (or the 0600 file)."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    refresh_token: str | None = None
    access_token: str | None = None
    generation: int = 0

    def __repr__(self) -> str:  # never print tokens, even by accident
        return f"SecretPayload(generation={self.generation}, ...)"

    __str__ = __repr__


def fingerprint(token: str | None) -> str | None:
    """A short, non-reversible tag for a token (12 hex chars of SHA-256)."""
    if not token:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class AccountProblem:
    """Why an account's grant cannot be used: what the token provider reports to its book.

    ``state`` is a stored grant state (never ``needs_permission``, which is computed from the
    scopes the account's charms need); ``message`` is the account's one-sentence ``reason``;
    ``hint`` is how to fix it from the command line (the account's ``cli_hint``).
    """

    state: AccountState
    cause: Cause | None
    message: str
    hint: str = ""
