"""The control API: how tests and the demo seed drive the emulator.

The same operations are served over HTTP as ``POST /__emu__/<operation>`` with the keyword
arguments as a JSON object (see docs/emulator.md). When the server runs in another thread, every
call is marshalled onto the server's event loop, so tests never race the HTTP handlers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from trayapp.emulator.faults import FaultRule
from trayapp.emulator.scopes import normalize_scopes
from trayapp.emulator.state import EmulatorState, LogEntry

if TYPE_CHECKING:
    from trayapp.emulator.app import EmulatorApp

P = ParamSpec("P")
R = TypeVar("R")

#: Operations available over HTTP at ``POST /__emu__/<name>``.
HTTP_OPERATIONS: set[str] = set()


def _op(fn: Callable[P, R]) -> Callable[P, R]:
    """Run the operation on the server's loop thread (state is single-threaded)."""
    HTTP_OPERATIONS.add(fn.__name__)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        self: Control = args[0]  # type: ignore[assignment]
        loop = self.app.loop
        if loop is None or not loop.is_running():
            return fn(*args, **kwargs)
        try:
            if asyncio.get_running_loop() is loop:
                return fn(*args, **kwargs)
        except RuntimeError:
            pass
        fut: concurrent.futures.Future[R] = concurrent.futures.Future()

        def call() -> None:
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed back to the calling thread
                fut.set_exception(exc)

        loop.call_soon_threadsafe(call)
        return fut.result(timeout=60)

    return wrapper


@dataclass(frozen=True)
class ClientInfo:
    """An emulated OAuth client ("Desktop app" type)."""

    id: str
    secret: str
    testing: bool = False

    @property
    def client_id(self) -> str:
        return self.id

    @property
    def client_secret(self) -> str:
        return self.secret

    def client_config(self, base_url: str) -> dict[str, Any]:
        """The ``client_secret.json`` shape Google's console downloads, pointed at the emulator."""
        return {
            "installed": {
                "client_id": self.id,
                "client_secret": self.secret,
                "auth_uri": f"{base_url}/o/oauth2/auth",
                "token_uri": f"{base_url}/token",
                "project_id": "trayapp-emulator",
                "redirect_uris": ["http://localhost"],
            }
        }

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "secret": self.secret, "testing": self.testing}


class Control:
    """In-process control of one emulator instance."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    @property
    def state(self) -> EmulatorState:
        return self.app.state

    # ---- lifecycle ----

    @_op
    def reset(self, seed: int | None = None) -> None:
        """Forget everything: accounts, clients, tokens, mail, calendars, faults, log, clock."""
        from trayapp.emulator.state import EmulatorState

        conformance = self.state.conformance
        self.app.state = EmulatorState(seed)
        self.app.state.conformance = conformance
        if conformance is not None:
            conformance.clear()

    # ---- accounts, clients, tokens ----

    @_op
    def create_account(self, email: str, name: str | None = None) -> dict[str, str]:
        acct = self.state.create_account(email, name)
        return {"email": acct.email, "name": acct.name, "id": acct.id}

    @_op
    def create_client(
        self, client_id: str | None = None, client_secret: str | None = None, testing: bool = False
    ) -> ClientInfo:
        c = self.state.create_client(client_id, client_secret, testing)
        return ClientInfo(c.client_id, c.client_secret, c.testing)

    @_op
    def issue_tokens(
        self, email: str, client_id: str, scopes: Iterable[str] | str
    ) -> dict[str, Any]:
        """Mint a refresh + access token pair as if the user had consented (skips the browser)."""
        state = self.state
        acct = state.account(email)
        if client_id not in state.clients:
            raise KeyError(f"no emulated OAuth client {client_id!r}; create it with create_client")
        scope_t = normalize_scopes(scopes if isinstance(scopes, str) else " ".join(scopes))
        state.grants.setdefault((acct.email.lower(), client_id), set()).update(scope_t)
        refresh = state.issue_refresh_token(acct.email, client_id, scope_t)
        access = state.issue_access_token(acct.email, client_id, scope_t, refresh.token)
        return state.token_response(access, refresh, include_refresh=True)

    @_op
    def revoke_refresh_token(self, email_or_token: str) -> int:
        """Revoke one refresh token, or every refresh token of an account; returns how many."""
        state = self.state
        targets = [
            t
            for t in state.refresh_tokens.values()
            if not t.revoked and (t.token == email_or_token or t.email == email_or_token.lower())
        ]
        for t in targets:
            state.revoke_refresh(t)
        return len(targets)

    @_op
    def expire_access_tokens(self, email: str) -> int:
        """Make the account's access tokens expired now (next API call gets 401 authError)."""
        state = self.state
        now = state.clock.now()
        n = 0
        for t in state.access_tokens.values():
            if t.email == email.lower() and t.expires_at > now:
                t.expires_at = now
                n += 1
        return n

    @_op
    def set_consent(
        self,
        *,
        default_account: str | None = None,
        auto_approve: bool | None = None,
        deny: bool | None = None,
        auto_submit: str | None = None,
    ) -> dict[str, Any]:
        """Configure the consent page. ``auto_submit`` is "allow", "deny" or "" (off)."""
        c = self.state.consent
        if auto_submit is not None:
            if auto_submit not in ("allow", "deny", ""):
                raise ValueError("auto_submit must be 'allow', 'deny' or '' (off)")
            c.auto_submit = auto_submit or None
        if default_account is not None:
            c.default_account = default_account
        if auto_approve is not None:
            c.auto_approve = auto_approve
        if deny is not None:
            c.deny = deny
        return {
            "default_account": c.default_account,
            "auto_approve": c.auto_approve,
            "deny": c.deny,
            "auto_submit": c.auto_submit,
        }

    @_op
    def set_refresh_token_cap(self, cap: int) -> None:
        self.state.refresh_token_cap = cap

    @_op
    def set_emit_refresh_token_expires_in(self, enabled: bool) -> None:
        self.state.emit_refresh_token_expires_in = enabled

    # ---- clock ----

    @_op
    def advance_clock(self, seconds: float) -> float:
        """Move the virtual clock forward (token lifetimes, code TTL, quota windows)."""
        return self.state.clock.advance(seconds)

    @_op
    def now(self) -> float:
        return self.state.clock.now()

    # ---- Gmail ----

    @_op
    def add_message(
        self,
        email: str,
        raw: bytes | str,
        label_ids: Iterable[str] | None = None,
        internal_date: int | None = None,
        thread_id: str | None = None,
    ) -> str:
        """Store an RFC 822 message; returns its Gmail id. ``internal_date`` is epoch ms."""
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        labels = list(label_ids) if label_ids is not None else ["INBOX", "UNREAD"]
        return self.state.account(email).mailbox.add_message(
            data, labels, internal_date=internal_date, thread_id=thread_id
        )

    @_op
    def set_search_lag(self, email: str, seconds: float) -> None:
        """Fault: messages added from now on reach ``messages.list?q=`` ``seconds`` (emulator
        clock) after they appear in the history, as when Gmail's search index lags behind.
        Lists without ``q`` are not delayed. 0 turns it off for later messages."""
        if seconds < 0:
            raise ValueError("the search lag is a number of seconds, 0 or more")
        self.state.account(email).mailbox.search_lag = float(seconds)

    @_op
    def modify_labels(
        self, email: str, message_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        return self.state.account(email).mailbox.modify_labels(message_id, list(add), list(remove))

    @_op
    def delete_message(self, email: str, message_id: str) -> None:
        self.state.account(email).mailbox.delete_message(message_id)

    @_op
    def create_label(self, email: str, name: str, label_id: str | None = None) -> str:
        return self.state.account(email).mailbox.create_label(name, label_id)

    @_op
    def delete_label(self, email: str, label_id: str) -> None:
        self.state.account(email).mailbox.delete_label(label_id)

    @_op
    def labels(self, email: str) -> list[dict[str, Any]]:
        return [lbl.to_json() for lbl in self.state.account(email).mailbox.labels.values()]

    @_op
    def message_ids(self, email: str) -> list[str]:
        return list(self.state.account(email).mailbox.messages)

    @_op
    def history_id(self, email: str) -> str:
        return str(self.state.account(email).mailbox.history_id)

    @_op
    def set_history_floor(self, email: str, history_id: int | str | None = None) -> str:
        """startHistoryId below the floor answers 404; None puts the floor at the current id."""
        return str(
            self.state.account(email).mailbox.set_floor(
                None if history_id is None else int(history_id)
            )
        )

    @_op
    def set_history_retention(self, seconds: float | None) -> None:
        """Gmail keeps history this long (virtual clock); older startHistoryIds answer 404."""
        self.state.history_retention = seconds

    # ---- Calendar ----

    @_op
    def add_calendar(self, email: str, calendar_id: str | None = None, **fields: Any) -> str:
        return self.state.account(email).calendars.add_calendar(calendar_id, fields)

    @_op
    def update_calendar(self, email: str, calendar_id: str, **fields: Any) -> None:
        self.state.account(email).calendars.update_calendar(calendar_id, fields)

    @_op
    def remove_calendar(self, email: str, calendar_id: str) -> None:
        self.state.account(email).calendars.remove_calendar(calendar_id)

    @_op
    def add_event(self, email: str, calendar_id: str, event: dict[str, Any]) -> str:
        """Insert an event (Google's Event JSON shape); returns its id."""
        return self.state.account(email).calendars.add_event(calendar_id, event)

    @_op
    def update_event(
        self, email: str, calendar_id: str, event_id: str, fields: dict[str, Any]
    ) -> None:
        """Patch an event; for an instance id of a recurring series this creates an exception."""
        self.state.account(email).calendars.update_event(calendar_id, event_id, fields)

    @_op
    def cancel_event(self, email: str, calendar_id: str, event_id: str) -> None:
        """Delete an event (it becomes ``cancelled``); an instance id cancels one occurrence."""
        self.state.account(email).calendars.cancel_event(calendar_id, event_id)

    @_op
    def invalidate_sync_tokens(self, email: str, calendar_id: str | None = None) -> None:
        """Every sync token issued so far (for one calendar or all) now answers 410."""
        self.state.account(email).calendars.invalidate(calendar_id)

    @_op
    def set_sync_token_ttl(self, seconds: float | None) -> None:
        """Calendar sync tokens older than ``seconds`` (virtual clock) answer 410; None: never."""
        self.state.sync_token_ttl = seconds

    @_op
    def set_cancelled_event_ttl(self, seconds: float | None) -> None:
        """Forget cancelled Calendar events ``seconds`` after their deletion (virtual clock);
        a sync token from before a forgotten deletion then answers 410. None: keep them."""
        self.state.cancelled_event_ttl = seconds

    @_op
    def set_updated_min_limit(self, seconds: float | None) -> None:
        """events.list with updatedMin older than ``seconds`` answers 410 updatedMinTooLongAgo."""
        self.state.updated_min_limit = seconds

    @_op
    def event(self, email: str, calendar_id: str, event_id: str) -> dict[str, Any]:
        return self.state.account(email).calendars.event_json(calendar_id, event_id)

    # ---- faults, quota, batch ----

    @_op
    def add_fault(self, rule: FaultRule | None = None, **fields: Any) -> str:
        """Add a fault rule (or build one from keyword fields); returns its id."""
        r = rule if rule is not None else FaultRule(**fields)
        self.state.faults.add(r)
        return r.id

    @_op
    def clear_faults(self, rule_id: str | None = None) -> None:
        self.state.faults.clear(rule_id)

    @_op
    def faults(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.state.faults.rules]

    @_op
    def set_quota(
        self,
        *,
        gmail_units_per_minute: int | None = None,
        gmail_concurrency: int | None = None,
        calendar_requests_per_minute: int | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        q = self.state.quota
        if gmail_units_per_minute is not None:
            q.gmail_units_per_minute = gmail_units_per_minute
        if gmail_concurrency is not None:
            q.gmail_concurrency = gmail_concurrency
        if calendar_requests_per_minute is not None:
            q.calendar_requests_per_minute = calendar_requests_per_minute
        if enabled is not None:
            q.enabled = enabled
        return dict(vars(q))

    @_op
    def set_batch_shuffle(self, enabled: bool) -> None:
        """Reply to batch parts in random order (clients must match by Content-ID)."""
        self.state.batch_shuffle = enabled

    @_op
    def set_batch_duplicate(self, enabled: bool) -> None:
        """Fault: every batch reply carries one part twice (same Content-ID)."""
        self.state.batch_duplicate = enabled

    # ---- request log and conformance ----

    @_op
    def requests(self, *, path: str | None = None, api_method: str | None = None) -> list[LogEntry]:
        """Logged API/OAuth requests (control-plane calls are not logged), oldest first."""
        import fnmatch

        out = list(self.state.log)
        if path is not None:
            out = [e for e in out if fnmatch.fnmatchcase(e.path, path)]
        if api_method is not None:
            out = [e for e in out if fnmatch.fnmatchcase(e.api_method or "", api_method)]
        return out

    def wait_for_requests(
        self,
        *,
        api_method: str | None = None,
        path: str | None = None,
        count: int = 1,
        answered: bool = True,
        timeout: float = 30.0,
    ) -> list[LogEntry]:
        """Block until ``count`` logged requests match (globs; ``answered``: with a status).

        For tests whose emulator runs in another thread (``EmulatorServer.in_thread``); from a
        coroutine in the server's own loop use :meth:`await_requests`. Raises TimeoutError
        naming what it waited for.
        """
        if self.app.loop is not None and _running_loop() is self.app.loop:
            raise RuntimeError(
                "in the emulator's own loop, use 'await control.await_requests(...)'"
            )
        deadline = time.monotonic() + timeout
        cond = self.app.log_condition
        with cond:
            while True:
                found = self._matching(api_method, path, answered)
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(_waited(api_method, path, count, len(found), timeout))
                cond.wait(remaining)

    async def await_requests(
        self,
        *,
        api_method: str | None = None,
        path: str | None = None,
        count: int = 1,
        answered: bool = True,
    ) -> list[LogEntry]:
        """:meth:`wait_for_requests` for coroutines in the emulator's own loop.

        Bound it with ``async with asyncio.timeout(...)`` (pytest-timeout also applies).
        """
        event = asyncio.Event()
        self.app.log_waiters.add(event)
        try:
            while True:
                event.clear()
                found = self._matching(api_method, path, answered)
                if len(found) >= count:
                    return found
                await event.wait()
        finally:
            self.app.log_waiters.discard(event)

    def _matching(self, api_method: str | None, path: str | None, answered: bool) -> list[LogEntry]:
        import fnmatch

        out = []
        for e in list(self.state.log):
            if answered and e.status is None:
                continue
            if path is not None and not fnmatch.fnmatchcase(e.path, path):
                continue
            if api_method is not None and not fnmatch.fnmatchcase(e.api_method or "", api_method):
                continue
            out.append(e)
        return out

    @_op
    def clear_log(self) -> None:
        self.state.log.clear()

    @_op
    def request_violations(self) -> list[str]:
        """Requests that did not conform to discovery (only when conformance checking is on)."""
        conf = self.state.conformance
        return list(conf.request_violations) if conf is not None else []

    @_op
    def take_request_violations(self) -> list[str]:
        """Return and forget the request violations (for tests sending bad requests on purpose)."""
        conf = self.state.conformance
        if conf is None:
            return []
        out = list(conf.request_violations)
        conf.request_violations.clear()
        return out

    @_op
    def response_violations(self) -> list[str]:
        conf = self.state.conformance
        return list(conf.response_violations) if conf is not None else []


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _waited(api_method: str | None, path: str | None, count: int, seen: int, timeout: float) -> str:
    what = ", ".join(f"{k}={v!r}" for k, v in (("api_method", api_method), ("path", path)) if v)
    return f"waited {timeout:g} s for {count} request(s) matching {what or 'anything'}; saw {seen}"
