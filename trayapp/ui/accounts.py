"""The account-state interface the tray is written against.

The tray needs very little from ``trayapp.auth``: the accounts with their state, a callback when
one changes, and a cancellable sign-in that yields the URL to open (and to copy, for users whose
default browser is the wrong profile). Keeping that as a small protocol here lets the menu and
notification logic be tested alone, and lets the app run with no accounts at all (feed charms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from trayapp.ui.model import AccountState, AccountView

log = logging.getLogger(__name__)


class AccountsSource(Protocol):
    def accounts(self) -> list[AccountView]: ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop thread) whenever an account's state changes."""
        ...

    async def begin_sign_in(self, account_id: str | None) -> str:
        """Start a browser sign-in (None = a new account); return the URL to open.

        The flow keeps waiting for the browser in the background; ``cancel_sign_in`` stops it.
        Never called by the loop on its own: only from a user's click.
        """
        ...

    def cancel_sign_in(self, account_id: str | None) -> None: ...

    def sign_in_url(self, account_id: str | None) -> str | None: ...


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


def _state(value: Any) -> AccountState:
    try:
        return AccountState(str(getattr(value, "value", value)))
    except ValueError:
        return AccountState.NEEDS_SIGN_IN


class AuthAccounts:
    """Adapter over ``trayapp.auth``'s account manager, duck-typed so it follows that module.

    Expected of ``manager``: ``accounts()`` returning objects with ``id``, ``email``, ``state``
    (and optionally ``reason``/``cause``), ``subscribe(callback)``, and ``sign_in(account_id)``
    returning a flow with an awaitable ``url()`` (or a ``url`` attribute), ``wait()`` and
    ``cancel()``. Missing pieces degrade to "no accounts" instead of breaking the tray.
    """

    def __init__(self, manager: Any) -> None:
        self._m = manager
        self._flows: dict[str | None, Any] = {}
        self._urls: dict[str | None, str] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def accounts(self) -> list[AccountView]:
        try:
            raw = list(self._m.accounts())
        except Exception:
            log.exception("could not list accounts")
            return []
        out = []
        for a in raw:
            st = getattr(a, "state", AccountState.SIGNED_IN)
            out.append(
                AccountView(
                    id=str(a.id),
                    email=str(getattr(a, "email", a.id)),
                    state=_state(getattr(st, "kind", st)),
                    reason=str(getattr(a, "reason", "") or getattr(st, "reason", "") or ""),
                    cause=str(getattr(a, "cause", "") or getattr(st, "cause", "") or ""),
                    signing_in=str(a.id) in self._flows,
                )
            )
        return out

    def _changed(self) -> None:
        for cb in list(self._callbacks):
            cb()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        unsub = getattr(self._m, "subscribe", None)
        inner = unsub(lambda *_a: callback()) if callable(unsub) else None

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
            if callable(inner):
                inner()

        return remove

    async def begin_sign_in(self, account_id: str | None) -> str:
        self.cancel_sign_in(account_id)
        flow = self._m.sign_in(account_id)
        if asyncio.iscoroutine(flow):
            flow = await flow
        url_attr = getattr(flow, "url", None)
        url = url_attr() if callable(url_attr) else url_attr
        if asyncio.iscoroutine(url):
            url = await url
        self._flows[account_id] = flow
        self._urls[account_id] = str(url)
        self._changed()
        task = asyncio.get_running_loop().create_task(self._wait(account_id, flow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return str(url)

    async def _wait(self, account_id: str | None, flow: Any) -> None:
        try:
            waiter = getattr(flow, "wait", None)
            if callable(waiter):
                await waiter()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.info("sign-in did not complete", exc_info=True)
        finally:
            if self._flows.get(account_id) is flow:
                del self._flows[account_id]
                self._urls.pop(account_id, None)
            self._changed()

    def cancel_sign_in(self, account_id: str | None) -> None:
        flow = self._flows.pop(account_id, None)
        self._urls.pop(account_id, None)
        if flow is not None:
            cancel = getattr(flow, "cancel", None)
            if callable(cancel):
                res = cancel()
                if asyncio.iscoroutine(res):
                    task = asyncio.get_running_loop().create_task(res)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            self._changed()

    def sign_in_url(self, account_id: str | None) -> str | None:
        return self._urls.get(account_id)
