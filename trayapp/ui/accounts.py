"""The account-state interface the tray is written against.

The tray needs very little from ``trayapp.auth``: the accounts with their state, a callback when
one changes, and a cancellable sign-in that yields the URL to open (and to copy, for users whose
default browser is the wrong profile). Keeping that as a small protocol here lets the menu and
notification logic be tested alone, and lets the app run with no accounts at all (feed charms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from trayapp.core.errors import NotFoundError
from trayapp.ui.model import AccountState, AccountView

log = logging.getLogger(__name__)


class AccountsSource(Protocol):
    def accounts(self) -> list[AccountView]: ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop thread) whenever an account's state changes."""
        ...

    async def begin_sign_in(self, account_id: str | None) -> str:
        """Start a browser sign-in (None = a new account) and open the browser; return its URL.

        The flow keeps waiting for the browser in the background; ``cancel_sign_in`` stops it.
        Never called by the loop on its own: only from a user's click.
        """
        ...

    def cancel_sign_in(self, account_id: str | None) -> None: ...

    def sign_in_url(self, account_id: str | None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ClientSummary:
    """The OAuth client as Settings shows it (never the secret)."""

    client_id: str
    project_id: str | None
    source: str | None
    is_google: bool


@dataclass(frozen=True, slots=True)
class ServiceChoice:
    """A non-Google service an installed pattern needs an account of (its ``credential``)."""

    service: str
    title: str
    token: bool  # True: the user pastes an API token; False: the provider's browser sign-in
    help_url: str


@runtime_checkable
class AccountActions(Protocol):
    """What Settings and the Connect Google wizard do with accounts (beyond the tray's needs).

    Every method takes effect at once and is announced through ``subscribe`` callbacks, so every
    open window follows it (never a stale list).
    """

    def client_summary(self) -> ClientSummary | None: ...

    def check_client(self, text: str, source: str | None = None) -> ClientSummary:
        """Validate a client JSON; raise ``ConfigError`` with the problem. Stores nothing."""
        ...

    def import_client(self, text: str, source: str | None = None) -> ClientSummary: ...

    def remove_client(self) -> None: ...

    async def sign_in_and_wait(self, account_id: str | None, scopes: Sequence[str] = ()) -> str:
        """Sign in (None: a new account) asking for ``scopes`` too; return the account id."""
        ...

    async def sign_out(self, account_id: str) -> str:
        """Revoke the grant and forget the tokens; return the sentence to show."""
        ...

    async def remove(self, account_id: str) -> None:
        """Sign out (revoking) if signed in, then forget the account."""
        ...

    def missing_scopes(self, account_id: str) -> tuple[str, ...]: ...


class NoAccounts:
    """Used when no account module is available: feed charms need no account."""

    def accounts(self) -> list[AccountView]:
        return []

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return lambda: None

    async def begin_sign_in(self, account_id: str | None) -> str:
        raise RuntimeError("accounts are not available in this build")

    def cancel_sign_in(self, account_id: str | None) -> None:
        return None

    def sign_in_url(self, account_id: str | None) -> str | None:
        return None


# What happened, per cause, in one short sentence each: (reason, hint). The reason names the
# likely cause; the hint is a lasting fix beyond the "Sign in again" button, when there is one.
_CAUSES: dict[str, tuple[str, str]] = {
    "testing_expiry": (
        "Google ended the sign-in after 7 days, as it does for OAuth clients in Testing.",
        "Publish the client in Google Cloud Console to stop the weekly sign-ins.",
    ),
    "invalid_grant": ("Google no longer accepts the saved sign-in: it was revoked or expired.", ""),
    "reauth_required": ("Your organisation asks you to sign in again from time to time.", ""),
    # No sentence of its own: auth's says whether the client is missing or Google rejected it.
    "invalid_client": ("", "Import a valid Desktop-app client JSON in Settings."),
    "insufficient_scope": ("A charm needs access that was not granted.", ""),
    "secret_missing": ("The saved sign-in is missing.", ""),
    "keyring_locked": ("The keychain is locked; syncing resumes when it is unlocked.", ""),
    "signed_out": ("Signed out.", ""),
    "never_signed_in": ("Not signed in yet.", ""),
}


def _state(value: Any) -> AccountState:
    try:
        return AccountState(str(getattr(value, "value", value)))
    except ValueError:
        return AccountState.NEEDS_SIGN_IN


def short_reason(reason: str) -> str:
    """The reason without the CLI's "what to do" clause: the tray offers the fix as a button.

    trayapp.auth writes reasons for every front end ("...; sign in again with `trayapp accounts
    signin x` or from the tray menu"); a notification with a Sign-in button needs only the what.
    """
    head, sep, _tail = reason.partition("; sign in again")
    text = head.strip() if sep else reason.strip()
    return text if not text or text.endswith(".") else text + "."


def describe(account: Any) -> tuple[str, str]:
    """``(reason, hint)`` for one ``trayapp.auth`` account, short enough for a notification.

    Known causes get the tray's own words: auth's ``reason`` names the account (already in the
    notice's title) and quotes Google's ``error_description``, and its ``cli_hint`` is a command
    line, which the tray never shows (its fix is a button). Other causes keep auth's sentence,
    trimmed of the "; sign in again with `trayapp ...`" clause older reasons carry.
    """
    if _state(account.state) is AccountState.SIGNED_IN:
        return "", ""
    if not getattr(account, "is_google", True):
        # Another service's account: the table below speaks of Google; auth's sentence names
        # the service ("GitHub refused the token of work.") and its hint is a command line.
        return short_reason(str(account.reason or "")), ""
    cause = account.cause
    known = _CAUSES.get(str(getattr(cause, "value", cause))) if cause is not None else None
    reason, hint = known or ("", "")
    return reason or short_reason(str(account.reason or "")), hint


class AuthAccounts:
    """Adapter over ``trayapp.auth.accounts.AccountManager``.

    ``manager.sign_in`` runs the whole browser flow (it opens the browser through its default
    opener, which honours ``$BROWSER``) and returns the signed-in account; the URL arrives
    through ``on_url``. The adapter runs it as a task so the menu can offer "Cancel sign-in" and
    "Copy sign-in link" while it waits. ``on_result(account_id, error)`` reports how it ended.
    """

    def __init__(self, manager: Any, *, opener: Callable[[str], Any] | None = None) -> None:
        self._m = manager
        self._opener = opener  # None: trayapp.auth's default (the system browser, $BROWSER)
        self._flows: dict[str | None, asyncio.Task[Any]] = {}
        self._urls: dict[str | None, str] = {}
        self._callbacks: list[Callable[[], None]] = []
        self.on_result: Callable[[str | None, BaseException | None], None] = lambda _a, _e: None
        self._scopes: dict[str | None, tuple[str, ...]] = {}

    def accounts(self) -> list[AccountView]:
        out = []
        for a in self._m.accounts():
            reason, hint = describe(a)
            out.append(
                AccountView(
                    id=str(a.id),
                    email=str(getattr(a, "label", None) or a.email or a.id),
                    state=_state(a.state),
                    reason=reason,
                    hint=hint,
                    signing_in=str(a.id) in self._flows,
                    permission_prompt=str(a.permission_prompt),
                    permission_words=str(a.permission_words),
                    service_title="" if a.is_google else str(a.service_title),
                    token=a.credential_kind == "api_token",
                    service=str(a.service),
                )
            )
        return out

    def _changed(self) -> None:
        for cb in list(self._callbacks):
            cb()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        inner = self._m.subscribe(lambda _account: callback())

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            inner()

        return remove

    async def begin_sign_in(self, account_id: str | None) -> str:
        self.cancel_sign_in(account_id)
        loop = asyncio.get_running_loop()
        url: asyncio.Future[str] = loop.create_future()

        def got_url(u: str) -> None:
            self._urls[account_id] = u
            if not url.done():
                url.set_result(u)

        kwargs: dict[str, Any] = {"on_url": got_url}
        if self._opener is not None:
            kwargs["opener"] = self._opener
        scopes = self._scopes.pop(account_id, ())
        if scopes:
            kwargs["scopes"] = scopes
        task = loop.create_task(self._m.sign_in(account_id, **kwargs))
        self._flows[account_id] = task
        task.add_done_callback(lambda t: self._finished(account_id, t))
        self._changed()
        await asyncio.wait({url, task}, return_when=asyncio.FIRST_COMPLETED)
        if url.done():
            return url.result()
        task.result()  # raised before a URL existed (e.g. no OAuth client configured)
        raise RuntimeError("the sign-in ended before it produced a URL")

    def _finished(self, account_id: str | None, task: asyncio.Task[Any]) -> None:
        if self._flows.get(account_id) is task:
            del self._flows[account_id]
            self._urls.pop(account_id, None)
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, asyncio.CancelledError):
            log.info("sign-in did not complete: %s", error)
        self.on_result(account_id, error)
        self._changed()

    def cancel_sign_in(self, account_id: str | None) -> None:
        task = self._flows.get(account_id)
        if task is not None and not task.done():
            task.cancel()

    def sign_in_url(self, account_id: str | None) -> str | None:
        return self._urls.get(account_id)

    # -- the GUI's account actions (AccountActions) ---------------------------------------------

    @staticmethod
    def _summary(config: Any) -> ClientSummary:
        return ClientSummary(
            client_id=str(config.client_id),
            project_id=config.project_id,
            source=config.source,
            is_google=bool(config.is_google),
        )

    def client_summary(self) -> ClientSummary | None:
        config = self._m.clients.get()
        return None if config is None else self._summary(config)

    def check_client(self, text: str, source: str | None = None) -> ClientSummary:
        from trayapp.auth.client_config import parse_client_json

        return self._summary(parse_client_json(text, source=source))

    def import_client(self, text: str, source: str | None = None) -> ClientSummary:
        from trayapp.auth.client_config import parse_client_json

        config = parse_client_json(text, source=source)
        self._m.import_client(config)
        self._changed()
        return self._summary(config)

    def remove_client(self) -> None:
        self._m.remove_client()  # accounts keep their records and must sign in again later
        self._changed()

    async def sign_in_and_wait(self, account_id: str | None, scopes: Sequence[str] = ()) -> str:
        self._scopes[account_id] = tuple(scopes)
        await self.begin_sign_in(account_id)
        task = self._flows.get(account_id)
        if task is None:  # finished already (or failed) before we looked
            raise RuntimeError("the sign-in ended before it could be followed")
        account = await asyncio.shield(task)
        return str(account.id)

    async def sign_out(self, account_id: str) -> str:
        result = await self._m.sign_out(account_id)
        self._changed()
        return str(result.message)

    async def remove(self, account_id: str) -> None:
        account = self._m.get(account_id)
        if account.secret_store is not None:
            await self._m.sign_out(account_id)
        self._m.remove(account_id)
        self._changed()

    def missing_scopes(self, account_id: str) -> tuple[str, ...]:
        try:
            return tuple(self._m.missing_scopes(account_id))
        except NotFoundError:
            return ()

    # -- other services' accounts (a plugin's ApiToken / OAuth2Provider) -----------------------

    def services(self) -> dict[str, ServiceChoice]:
        return {
            service: ServiceChoice(
                service, spec.title, spec.kind == "api_token", str(spec.help_url or "")
            )
            for service, spec in self._m.service_specs().items()
        }

    async def add_token(
        self, service: str, token: str, name: str | None = None, account_id: str | None = None
    ) -> str:
        """Store an API token (a new account, or a new token for ``account_id``); its id."""
        account = await self._m.add_token(service, token, name=name, account_id=account_id)
        self._changed()
        return str(account.id)

    async def connect_service(self, service: str) -> str:
        """A new account of an OAuth provider through its browser sign-in; its id."""
        kwargs: dict[str, Any] = {}
        if self._opener is not None:
            kwargs["opener"] = self._opener
        account = await self._m.sign_in_service(service, **kwargs)
        self._changed()
        return str(account.id)

    async def store_pending(self, pending_id: str, use_file: bool) -> str:
        """Finish a sign-in the keychain could not keep (the user's choice); the account id."""
        account = await self._m.store_pending_grant(pending_id, use_file=use_file)
        self._changed()
        return str(account.id)
