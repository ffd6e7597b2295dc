"""The OAuth client the app signs in with: the user's own installed-app client JSON.

Google gives each developer a "Desktop app" OAuth client as a JSON file shaped
``{"installed": {"client_id", "client_secret", "auth_uri", "token_uri", "redirect_uris", ...}}``.
The user imports theirs with ``trayapp accounts client import FILE``; demo mode imports the
emulator's. Every endpoint comes from this config, so pointing the app at the emulator needs no
code switch: the emulator's JSON simply names 127.0.0.1 URLs.

The client secret of an installed app is not truly secret (Google says so: it ships inside every
copy of a desktop app), so it is kept in the profile's store. It is still kept out of logs and
reprs (:class:`pydantic.SecretStr`), because users paste logs into bug reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_serializer

from trayapp.core.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from trayapp.core.store import Store

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_REVOKE_URI = "https://oauth2.googleapis.com/revoke"
GOOGLE_USERINFO_URI = "https://www.googleapis.com/oauth2/v2/userinfo"
GOOGLE_GMAIL_BASE = "https://gmail.googleapis.com"

CLIENT_CELL = "app:oauth_client"

_REQUIRED = ("client_id", "client_secret", "auth_uri", "token_uri")


class ClientConfig(BaseModel):
    """A validated installed-app OAuth client and the endpoints it talks to."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    client_id: str
    client_secret: SecretStr
    auth_uri: str
    token_uri: str
    revoke_uri: str
    userinfo_uri: str
    gmail_base: str
    project_id: str | None = None
    # Where the JSON came from, for `accounts status` ("imported from ~/Downloads/client.json").
    source: str | None = None

    @field_serializer("client_secret", when_used="json")
    def _dump_secret(self, value: SecretStr) -> str:
        # Persisting needs the real value; repr()/str() and model_dump() (python mode) keep
        # SecretStr's mask, so logging the model never shows it.
        return value.get_secret_value()

    @property
    def secret(self) -> str:
        return self.client_secret.get_secret_value()

    @property
    def is_google(self) -> bool:
        return urlsplit(self.token_uri).hostname == "oauth2.googleapis.com"

    def public_summary(self) -> dict[str, Any]:
        """What `accounts status --json` shows: everything but the secret."""
        return {
            "client_id": self.client_id,
            "project_id": self.project_id,
            "auth_uri": self.auth_uri,
            "token_uri": self.token_uri,
            "revoke_uri": self.revoke_uri,
            "userinfo_uri": self.userinfo_uri,
            "source": self.source,
        }


def parse_client_json(text: str, *, source: str | None = None) -> ClientConfig:
    """Validate an installed-app client JSON document; raise ConfigError saying what to fix."""
    where = f" in {source}" if source else ""
    if not text.strip():
        raise ConfigError(
            f"the OAuth client file{where} is empty; download the client JSON again from "
            "Google Cloud Console > APIs & Services > Credentials"
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        cut_off = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        if cut_off:
            raise ConfigError(
                f"the OAuth client file{where} is cut off (its JSON ends too early); download "
                "it again from Google Cloud Console > APIs & Services > Credentials, or copy "
                "all of it"
            ) from None
        raise ConfigError(
            f"the OAuth client file{where} is not JSON ({exc.msg} at line {exc.lineno}); "
            "download it again from Google Cloud Console > APIs & Services > Credentials"
        ) from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"the OAuth client file{where} must be a JSON object; import the JSON of a "
            "'Desktop app' OAuth client"
        )
    if doc.get("type") == "service_account":
        raise ConfigError(
            f"the file{where} is a service account key, not an OAuth client; Pattern Sync needs "
            "a 'Desktop app' OAuth client: create one in Google Cloud Console > Credentials > "
            "Create credentials > OAuth client ID > Desktop app, and import its JSON"
        )
    if "web" in doc and "installed" not in doc:
        raise ConfigError(
            f"the OAuth client{where} is a 'Web application' client; Pattern Sync needs a "
            "'Desktop app' client: create one in Google Cloud Console > Credentials > "
            "Create credentials > OAuth client ID > Desktop app, and import its JSON"
        )
    body = doc.get("installed")
    if not isinstance(body, dict):
        kinds = ", ".join(sorted(map(str, doc))) or "nothing"
        raise ConfigError(
            f"the OAuth client file{where} has no 'installed' section (found: {kinds}); "
            "import the JSON of a 'Desktop app' OAuth client"
        )
    missing = [k for k in _REQUIRED if not isinstance(body.get(k), str) or not body.get(k)]
    if missing:
        raise ConfigError(
            f"the OAuth client file{where} is missing {', '.join(missing)}; "
            "download the client JSON again from Google Cloud Console"
        )
    for key in ("auth_uri", "token_uri", "revoke_uri", "userinfo_uri", "gmail_base"):
        value = body.get(key)
        if value is None:
            continue
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the OAuth client file{where} has an invalid {key}: {value!r}")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"the OAuth client file{where} has a plain-http {key} on a non-local host; "
                "only the local emulator may use http"
            )
    token_uri = str(body["token_uri"])
    base = _base_of(token_uri)
    google = urlsplit(token_uri).hostname == "oauth2.googleapis.com"
    return ClientConfig(
        client_id=str(body["client_id"]),
        client_secret=SecretStr(str(body["client_secret"])),
        auth_uri=str(body["auth_uri"]),
        token_uri=token_uri,
        # Google's downloaded JSON names only auth and token URIs; the others are fixed for
        # Google and, for any other issuer (the emulator), sit beside its token endpoint.
        revoke_uri=str(
            body.get("revoke_uri") or (GOOGLE_REVOKE_URI if google else base + "/revoke")
        ),
        userinfo_uri=str(
            body.get("userinfo_uri")
            or (GOOGLE_USERINFO_URI if google else base + "/oauth2/v2/userinfo")
        ),
        gmail_base=str(body.get("gmail_base") or (GOOGLE_GMAIL_BASE if google else base)),
        project_id=body.get("project_id") if isinstance(body.get("project_id"), str) else None,
        source=source,
    )


def _base_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def load_client_file(path: Path) -> ClientConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {type(exc).__name__}") from None
    return parse_client_json(text, source=str(path))


class ClientConfigRepo:
    """The profile's OAuth client, kept in one store cell."""

    def __init__(self, store: Store) -> None:
        self._cell = store.cell(CLIENT_CELL, ClientConfig | None, default=None)

    def get(self) -> ClientConfig | None:
        config: ClientConfig | None = self._cell.get()
        return config

    def require(self) -> ClientConfig:
        config: ClientConfig | None = self._cell.get()
        if config is None:
            raise NotFoundError(
                "no OAuth client is configured; import your Desktop-app client JSON with "
                "`trayapp accounts client import FILE` (or use demo mode)"
            )
        return config

    def set(self, config: ClientConfig) -> None:
        self._cell.set(config)

    def clear(self) -> None:
        """Forget the client (Settings' "Remove client"); accounts keep their records."""
        self._cell.set(None)
