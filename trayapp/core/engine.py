"""The Engine: the one facade the CLI, the tray and the tests call.

It opens the profile's store, knows the patterns, owns the charms, the scheduler and the shared
HTTP client, and turns a scheduled run into a call of the right pattern's ``bg_updater`` with a
fresh :class:`~trayapp.core.patterns.UpdateContext`. Observers subscribe to
:data:`~trayapp.core.events.EngineEvent` and read snapshots; nothing outside reaches into the
store or the scheduler to change state ("one way in for each action").

Two ways to drive it:

* **Long-running** (the tray, ``trayapp run --headless``): ``await engine.start()`` starts the
  scheduler with every charm; commands act on the live loop; ``await engine.stop()``.
* **One-shot** (``trayapp sync``): ``await engine.sync(ids)`` on an engine that was not started
  schedules *only* those charms, runs each once, and shuts the loop down again. Other charms that
  happen to be overdue are left alone instead of being started and then cancelled at exit.

An engine always holds a :class:`~trayapp.core.scheduler.Scheduler`, loaded with every charm
and its saved status; :meth:`start` only starts its loop. So every command has one path: the
scheduler is the one writer of charm status, loop started or not. Not started, its commands
save what they change (pause, resume, "due now", unpark) for the next start, and its reads
re-read the store first (another process may be running the profile), so quick CLI commands
never start a loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from trayapp import __version__
from trayapp.auth.secrets import KeyringNotReady, SecretVault
from trayapp.core.cells import Cell
from trayapp.core.charms import (
    CharmInfo,
    CharmRepo,
    charm_prefix,
    damaged_message,
    default_binding,
    resolve_bindings,
)
from trayapp.core.clock import Clock, SystemClock
from trayapp.core.credentials import Credential, CredentialFactory
from trayapp.core.errors import (
    AuthRequired,
    ConfigError,
    DamagedRecordError,
    ExportError,
    ExportIncomplete,
    NotFoundError,
    SettingsError,
)
from trayapp.core.events import (
    CharmsChanged,
    EngineEvent,
    RunFinished,
    RunProgress,
    RunStarted,
)
from trayapp.core.httptransport import LazyTLSTransport
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.core.patterns import (
    SECRET_PLACEHOLDER,
    Pattern,
    PatternLoadError,
    PatternRegistry,
    UpdateContext,
)
from trayapp.core.profile import Profile
from trayapp.core.redact import register_secret
from trayapp.core.scheduler import (
    MAX_INTERVAL,
    MAX_PAUSE,
    SHUTDOWN_GRACE,
    WAKE_NETWORK,
    WAKE_RESUMED,
    BackoffPolicy,
    ScheduleEntry,
    Scheduler,
)
from trayapp.core.status import CharmState, CharmStatus, Progress, RunRecord
from trayapp.core.statusrepo import HISTORY_KEEP, StoreStatusRepo
from trayapp.google.services import GoogleServices

log = logging.getLogger(__name__)

USER_AGENT = f"PatternSync/{__version__}"
# Feeds and APIs answer in seconds; a minute-long read means the server is stuck. Patterns that
# need more (a large download) pass their own timeout per request. The run's own deadline
# (Pattern.timeout) bounds the whole run regardless.
HTTP_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
MIN_INTERVAL = timedelta(seconds=1)
# The cell holding the version of a charm's stored state (Pattern.state_version). Slot names
# start with a letter, so it cannot clash with a pattern's own cells; it is under the charm's
# prefix, so removing or resetting the charm drops it with the rest.
STATE_VERSION_CELL = "charm:{charm_id}:_state_version"
# A random id of the profile, in the names of its charms' keyring entries (see _secret_keys).
SECRET_NAMESPACE_CELL = "engine:secret_namespace"

GoogleFactory = Callable[[str], GoogleServices]
"""``google_factory(account_id)`` -> the per-account Google services given to ``ctx.google``."""

PermissionCheck = Callable[[str, tuple[str, ...]], str]
"""``permission_check(account_id, scopes)`` -> "" when the account's grant holds ``scopes`` (or
the account has a problem of its own, which its token provider reports), else one sentence
saying which permission is missing. Set by the accounts wiring."""

AccountService = Callable[[str], str | None]
"""``account_service(account_id)`` -> the service an account belongs to ("google", "github"),
None for an unknown account. Set by the accounts wiring; lets add_charm refuse an account of
another service up front."""


class SharedHttpClient(httpx.AsyncClient):
    """The one HTTP client every charm's ``ctx.http`` is: a pattern cannot close it.

    A plugin calling ``ctx.http.aclose()`` (or ``async with ctx.http:``) would otherwise break
    every later run of every charm until restart; here that is logged and ignored. The engine
    closes it with :meth:`close_for_real` at stop.
    """

    async def aclose(self) -> None:
        log.warning(
            "a pattern tried to close the shared HTTP client (ctx.http); ignored: it is the "
            "engine's, shared by every charm"
        )

    async def __aenter__(self) -> Self:
        # httpx refuses to "open" a client twice; the shared one is already open: a pattern's
        # ``async with ctx.http:`` must neither fail nor close it.
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def close_for_real(self) -> None:
        await super().aclose()


EventCallback = Callable[[EngineEvent], None]
Unsubscribe = Callable[[], None]


class Engine:
    """See the module docstring. Construct on the thread that runs the event loop."""

    def __init__(
        self,
        profile: Profile | str | Path,
        *,
        clock: Clock | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        patterns: PatternRegistry,
        google_factory: GoogleFactory | None = None,
        max_concurrency: int = 4,
        per_account_concurrency: int = 2,
        backoff: BackoffPolicy | None = None,
        jitter: float = 0.1,
        rng: random.Random | None = None,
        loop_lag_threshold: float = 1.0,
        secrets: SecretVault | None = None,
    ) -> None:
        self._vault = secrets
        self._secret_ns: str | None = None  # see _secret_namespace
        self.profile = profile if isinstance(profile, Profile) else Profile.resolve(profile)
        self.clock: Clock = clock or SystemClock()
        self.patterns = patterns
        self.google_factory = google_factory
        # A charm whose pattern needs scopes its account has not granted waits alone for them
        # (AuthRequired charm_only) without a request to Google; its siblings keep syncing.
        self.permission_check: PermissionCheck | None = None
        # Non-Google services (Pattern.credential): the run's ctx.credential (whose rejected()
        # marks its account when a run ends in AuthRequired), and which service an account is.
        self.credential_factory: CredentialFactory | None = None
        self.account_service: AccountService | None = None
        self.store = self.profile.open_store()  # an emptied database is damage, not new
        self._status_repo = StoreStatusRepo(self.store)
        self._charms = CharmRepo(self.store)
        self._http_transport = http_transport
        self._http: SharedHttpClient | None = None
        self._subscribers: list[EventCallback] = []
        self._progress: dict[str, Progress] = {}  # running charms' last ctx.progress report
        # The status with its progress, as last handed out: the same object while neither
        # changed, so observers that keep views by identity (the tray) reuse them.
        self._shown_progress: dict[str, tuple[CharmStatus, Progress, CharmStatus]] = {}
        # (charm id, state version) pairs whose stored state is known to be at that version.
        self._state_current: set[tuple[str, int]] = set()
        self._scheduler_options: dict[str, Any] = {
            "max_concurrency": max_concurrency,
            "per_account_concurrency": per_account_concurrency,
            "backoff": backoff,
            "rng": rng,
            "loop_lag_threshold": loop_lag_threshold,
        }
        self._jitter = jitter
        self._scheduler = self._make_scheduler()
        self._started = False  # long-running mode: the scheduler's loop runs
        self._one_shot = False  # a one-shot sync() runs the loop for its charms only
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the scheduler with every charm. Overdue charms run once, staggered."""
        if self._started:
            return
        if self._one_shot:
            raise RuntimeError("a one-shot sync is in progress; await it before start()")
        self._refresh()
        self._started = True
        await self._scheduler.start()
        log.info(
            "engine started with %d charm(s), profile %s", len(self.charms()), self.profile.path
        )

    async def stop(self) -> None:
        """Graceful: runs in progress are cancelled and recorded as ``cancelled``.

        Bounded: returns within about twice ``scheduler.SHUTDOWN_GRACE`` even if an updater
        swallows cancellation (its run is recorded and abandoned).
        """
        if self._started:
            self._started = False
            await self._fresh_scheduler()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=SHUTDOWN_GRACE)
        if self._http is not None:
            client, self._http = self._http, None
            try:  # bounded too: a connection a pattern left stuck must not hold the exit
                await asyncio.wait_for(client.close_for_real(), SHUTDOWN_GRACE)
            except TimeoutError:
                log.warning("the shared HTTP client did not close in %g s", SHUTDOWN_GRACE)

    def close(self) -> None:
        """Close the store. Call after :meth:`stop` (or on an engine that never started)."""
        if self._started or self._one_shot:
            raise RuntimeError("stop the engine before closing it")
        self.store.close()

    async def aclose(self) -> None:
        await self.stop()
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (not during a one-shot :meth:`sync`)."""
        return self._started

    # ------------------------------------------------------------------------------ charms

    def charms(self) -> list[CharmInfo]:
        """Every charm, oldest first."""
        return self._charms.all()

    def charm(self, charm_id: str) -> CharmInfo:
        """Raises NotFoundError naming the existing charms."""
        return self._charms.get(charm_id)

    def add_charm(
        self,
        pattern_id: str,
        settings: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        account_id: str | None = None,
        interval: timedelta | None = None,
        bindings: Mapping[str, str] | None = None,
    ) -> CharmInfo:
        """Validate and create a charm; it runs as soon as the engine is running.

        Raises NotFoundError (unknown pattern), SettingsError (each bad field named),
        ConfigError (missing account, bad interval or name) or BindingError (a written slot
        bound to a read-only cell), all before anything is stored.
        """
        pattern = self.patterns.get(pattern_id)
        if account_id is not None and not account_id.strip():
            account_id = None
        if pattern.needs_account and account_id is None:
            if pattern.credential is not None:
                what = f"a {pattern.credential.title} account"
                how = f"add one with 'trayapp accounts add --service {pattern.credential.service}'"
            else:
                what = (
                    f"Google access ({', '.join(pattern.scopes)})"
                    if pattern.scopes
                    else "an account"
                )
                how = "see 'trayapp accounts list'"
            raise ConfigError(
                f"pattern {pattern.id!r} needs {what}; add the charm with an account "
                f"(--account ACCOUNT; {how})"
            )
        self._check_account_service(pattern, account_id)
        validated = pattern.validate_settings(settings or {})
        for field in pattern.secret_settings():
            if (settings or {}).get(field) == SECRET_PLACEHOLDER:
                raise SettingsError(f"{field}: enter the secret itself")
        new_secrets = self._secret_values(pattern, settings or {}, validated)
        interval = self._check_interval(
            interval if interval is not None else pattern.default_interval
        )
        display = (name if name is not None else pattern.title).strip()
        if not display:
            raise ConfigError("the charm name is empty; give it a name (--name NAME)")
        charm_id = self._charms.new_id(display, fallback=pattern.id)
        resolved = resolve_bindings(pattern, charm_id, account_id, bindings, self.store)
        info = CharmInfo(
            id=charm_id,
            pattern_id=pattern.id,
            name=display,
            settings=pattern.dump_settings(validated),
            account_id=account_id,
            interval=interval,
            bindings=resolved,
            created_at=self.clock.now(),
        )
        self._store_secrets(charm_id, new_secrets)  # first: a locked keyring stores nothing
        with self.store.transaction():
            # Anything left under this id by an earlier charm of the same name is not ours.
            self.store.drop_prefix(info.prefix())
            self._status_repo.delete(charm_id)
            self._charms.save(info)
            self._state_version(charm_id).set(pattern.state_version)
        if charm_id in self._scheduler:  # a charm of that id another process removed
            self._scheduler.remove(charm_id)
        self._scheduler.add(self._entry(info))
        log.info("added charm %s (%s)", charm_id, pattern.id)
        self.publish(CharmsChanged())
        return info

    def update_charm(
        self,
        charm_id: str,
        *,
        settings: Mapping[str, Any] | None = None,
        name: str | None = None,
        interval: timedelta | None = None,
    ) -> CharmInfo:
        """Change a charm. ``settings`` replaces the settings as a whole (validated).

        If the pattern says the change invalidates what was synced (``needs_reset``), the charm's
        cells and collections are cleared and it resyncs now.
        """
        info = self._charms.get(charm_id)
        pattern = self.patterns.get(info.pattern_id)
        changes: dict[str, Any] = {}
        reset = False
        new_secrets: dict[str, str | None] = {}
        if settings is not None:
            given = dict(settings)
            for field in pattern.secret_settings():  # "keep the stored secret"
                if given.get(field) == SECRET_PLACEHOLDER:
                    given[field] = self._stored_secret(info.id, field, required=True)
            new = pattern.validate_settings(given)
            new_secrets = self._secret_values(pattern, settings, new)
            try:
                old = pattern.validate_settings(self._reveal(info, pattern))
            except (SettingsError, AuthRequired):
                reset = True  # the old settings no longer even validate: start clean
            else:
                reset = pattern.needs_reset(old, new)
            changes["settings"] = pattern.dump_settings(new)
        if name is not None:
            if not name.strip():
                raise ConfigError("the charm name is empty; give it a name")
            changes["name"] = name.strip()
        if interval is not None:
            changes["interval"] = self._check_interval(interval)
        if not changes:
            return info
        updated = dataclasses.replace(info, **changes)
        self._store_secrets(updated.id, new_secrets)
        self._charms.save(updated)
        if "interval" in changes and updated.id in self._scheduler:
            self._scheduler.update(self._entry(updated))
        if "settings" in changes and updated.id in self._scheduler:
            # A charm without an account parked on refused credentials: the user just changed
            # its settings (a new token), which is the fix; try again now.
            self._scheduler.unpark(updated.id)
        self.publish(CharmsChanged())
        if reset:
            self.reset_charm(charm_id)
        return updated

    def remove_charm(self, charm_id: str) -> None:
        """Delete a charm with its cells, collections, status and history."""
        secret_fields: tuple[str, ...] = ()
        try:
            info = self._charms.get(charm_id)
            prefix = info.prefix()
            pattern = self._pattern_or_none(info.pattern_id)
            # The placeholders in the stored settings name the secrets too: a charm whose
            # plugin was uninstalled must not leave its token in the keyring for good.
            secret_fields = tuple(
                dict.fromkeys(
                    (
                        *(pattern.secret_settings() if pattern is not None else ()),
                        *(k for k, v in info.settings.items() if v == SECRET_PLACEHOLDER),
                    )
                )
            )
        except DamagedRecordError:
            prefix = charm_prefix(charm_id)  # a damaged charm can still be removed
        if charm_id in self._scheduler:
            self._scheduler.remove(charm_id)  # cancels a running run; deletes its status
        with self.store.transaction():
            self.store.drop_prefix(prefix)
            self._status_repo.delete(charm_id)
            self._charms.delete(charm_id)
        for field in secret_fields:
            self._forget_secret(charm_id, field)
        log.info("removed charm %s", charm_id)
        self.publish(CharmsChanged())

    def reset_charm(self, charm_id: str) -> None:
        """Forget what the charm synced (its cursor and data), then resync it now.

        A run in progress is cancelled first, so it cannot write into the cleared state.
        """
        info = self._charms.get(charm_id)
        self._hold([charm_id])
        scheduler = self._scheduler
        busy = scheduler.busy(charm_id)
        if busy:
            previous = scheduler.run_now(charm_id)  # the running run's future
            scheduler.cancel(charm_id)
        with self.store.transaction():
            self.store.drop_prefix(info.prefix())
            pattern = self._pattern_or_none(info.pattern_id)
            if pattern is not None:  # an empty state is the current version's
                self._state_version(charm_id).set(pattern.state_version)
        log.info("reset charm %s", charm_id)
        if busy:
            self._spawn(self._rerun_after(previous, charm_id))
        else:
            scheduler.run_soon(charm_id)

    async def _rerun_after(self, previous: asyncio.Future[RunOutcome], charm_id: str) -> None:
        await asyncio.wait({previous})
        if charm_id in self._scheduler:
            self._scheduler.run_soon(charm_id)

    def reload_charms(self) -> None:
        """Pick up charm definitions another process changed in the store (``trayapp charms``
        while the tray runs): new charms are scheduled, removed ones dropped, intervals updated.
        """
        self._sync_charms()
        self.publish(CharmsChanged())

    # ------------------------------------------------------------------------------ commands

    def sync_now(self, charm_id: str | None = None) -> None:
        """Run one charm (or all) as soon as possible; coalesces with a run in progress.

        On an engine that is not running, marks them due now so the next start runs them.
        """
        ids = self._target_ids(charm_id)
        with self.store.transaction():  # every charm's change commits at once
            for cid in ids:
                self._scheduler.run_soon(cid)

    async def sync(self, charm_ids: Iterable[str] | None = None) -> dict[str, RunOutcome]:
        """Run the given charms (default: all) once each and wait for every outcome.

        Unknown ids raise NotFoundError before anything runs. Paused charms run once and stay
        paused. On an engine that is not running, the loop runs for this pass only: other
        charms that happen to be due are left alone.
        """
        ids = list(dict.fromkeys(charm_ids)) if charm_ids is not None else self._ids()
        for cid in ids:
            self._charms.get(cid)
        if not ids:
            return {}
        self._hold(ids)
        if self._started:
            futures = {cid: self._scheduler.run_now(cid) for cid in ids}
            return {cid: await fut for cid, fut in futures.items()}
        if self._one_shot:
            raise RuntimeError("another one-shot sync is in progress")
        self._one_shot = True
        try:
            self._refresh()
            await self._scheduler.start(schedule=False)
            futures = {cid: self._scheduler.run_now(cid) for cid in ids}
            await asyncio.wait(set(futures.values()))
            return {cid: fut.result() for cid, fut in futures.items()}
        finally:
            await self._fresh_scheduler()
            self._one_shot = False

    def pause(self, charm_id: str | None = None, until: datetime | None = None) -> None:
        """Pause one charm (or all) until resumed, or until ``until`` (aware datetime).

        ``until`` may be at most :data:`~trayapp.core.scheduler.MAX_PAUSE` ahead.
        """
        if until is not None and until.tzinfo is None:
            raise ConfigError("a pause end time needs a time zone")
        if until is not None and until - self.clock.now() > MAX_PAUSE:
            raise ConfigError(
                f"a pause can last at most {MAX_PAUSE.days} days; pause without an end time "
                "to pause until you resume it"
            )
        ids = self._target_ids(charm_id)
        with self.store.transaction():  # all or none
            for cid in ids:
                self._scheduler.pause(cid, until)

    def resume(self, charm_id: str | None = None) -> None:
        ids = self._target_ids(charm_id)
        with self.store.transaction():
            for cid in ids:
                self._scheduler.resume(cid)

    def account_usable(self, account_id: str) -> None:
        """The account works again (signed in, or a permission granted): its parked charms run
        now (one still lacking a permission of its own parks again alone, without a request).

        The seam for the accounts module. On an engine that is not running they are unparked
        and made due now, so the next start runs them first.
        """
        self._sync_charms()
        with self.store.transaction():
            self._scheduler.account_usable(account_id)

    def notify_resumed_from_sleep(self) -> None:
        self._scheduler.wake(WAKE_RESUMED)

    def notify_network_changed(self, online: bool) -> None:
        if online:
            self._scheduler.wake(WAKE_NETWORK)

    # --------------------------------------------------------------------------------- state

    def statuses(self) -> dict[str, CharmStatus]:
        """Every charm's status, by charm id, in charm order."""
        ids = self._ids()
        if not self._started:
            self._refresh()
        else:
            self._hold(ids)
        statuses = self._scheduler.statuses()
        return {cid: self._with_progress(statuses[cid]) for cid in ids if cid in statuses}

    def stored_items(self, charm_id: str) -> int:
        """How many items the charm's collections hold: what a reset deletes (read from the
        store's per-collection counters, not by counting rows)."""
        info = self._charms.get(charm_id)
        store = self.store
        return sum(len(store.collection(name)) for name in store.collection_names(info.prefix()))

    def runs_in_progress(self) -> int:
        """How many runs execute now (0 on an engine that is not running)."""
        return self._scheduler.running

    def status(self, charm_id: str) -> CharmStatus:
        self._charms.get(charm_id)
        if not self._started:
            self._refresh()
        else:
            self._hold([charm_id])
        return self._with_progress(self._scheduler.status(charm_id))

    def _with_progress(self, status: CharmStatus) -> CharmStatus:
        progress = self._progress.get(status.charm_id)
        if progress is None or status.state is not CharmState.RUNNING:
            return status
        shown = self._shown_progress.get(status.charm_id)
        if shown is not None and shown[0] is status and shown[1] is progress:
            return shown[2]
        with_progress = status.with_(progress=progress)
        self._shown_progress[status.charm_id] = (status, progress, with_progress)
        return with_progress

    def _report_progress(self, charm_id: str, done: int, total: int | None, unit: str) -> None:
        """An updater's ``ctx.progress``: kept until its run ends, and told to observers."""
        progress = Progress(done, total, unit)
        if self._progress.get(charm_id) == progress:
            return
        self._progress[charm_id] = progress
        self.publish(RunProgress(charm_id, progress))

    def history(self, charm_id: str, limit: int = HISTORY_KEEP) -> list[RunRecord]:
        """The charm's last runs, newest first."""
        self._charms.get(charm_id)
        self._scheduler.flush()  # the runs that ended in this loop iteration too
        return self._status_repo.history(charm_id, limit)

    def damaged(self) -> dict[str, str]:
        """Charms with a damaged stored record, by id: one line each saying what happened and
        what to do. Damaged charms are left out of :meth:`charms` and never run; a damaged
        saved status is replaced by a fresh one (the charm keeps working)."""
        self._charms.all()
        out = {cid: damaged_message(cid, why) for cid, why in self._charms.damaged.items()}
        for cid, why in self._status_repo.damaged.items():
            out.setdefault(
                cid,
                f"the saved status of charm {cid!r} was damaged ({why}); it starts afresh "
                "and is saved again after its next run",
            )
        return out

    def subscribe(self, callback: EventCallback) -> Unsubscribe:
        """Call ``callback(event)`` for every engine event, on the loop thread.

        Callbacks must not block; an exception in one is logged and never reaches the engine.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: EngineEvent) -> None:
        """Deliver an event to every subscriber (other engine parts, e.g. accounts, use it)."""
        if isinstance(event, RunStarted):
            self._progress.pop(event.charm_id, None)
            self._shown_progress.pop(event.charm_id, None)
        elif isinstance(event, RunFinished):
            self._progress.pop(event.record.charm_id, None)
            self._shown_progress.pop(event.record.charm_id, None)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("an engine event subscriber failed on %s", type(event).__name__)

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client (created on first use, inside the event loop)."""
        if self._http is None:
            self._http = SharedHttpClient(
                timeout=HTTP_TIMEOUT,
                headers={"User-Agent": USER_AGENT},
                # The CA store loads at the first https request, once per process.
                transport=self._http_transport or LazyTLSTransport(),
            )
        return self._http

    # ------------------------------------------------------------------------------ the runner

    async def _run_charm(self, charm_id: str, trigger: str) -> RunReport | RunOutcome:
        """The scheduler's runner: one call of the charm's ``bg_updater``."""
        info = self._charms.find(charm_id)
        if info is None:
            return RunOutcome(OutcomeKind.CANCELLED, message="the charm was removed")
        try:
            pattern = self.patterns.get(info.pattern_id)
        except PatternLoadError as exc:
            # A damaged installation: its message says so and what to do; retried slowly.
            return RunOutcome(OutcomeKind.CONFIG_ERROR, message=str(exc))
        except NotFoundError:
            # Only the user can fix this (reinstall the plugin or remove the charm): it needs
            # attention and is retried slowly; it is no bug in any pattern's code.
            return RunOutcome(
                OutcomeKind.CONFIG_ERROR,
                message=f"pattern {info.pattern_id!r} is not installed (was its plugin "
                "uninstalled?); reinstall it or remove the charm",
            )
        settings: dict[str, Any] | None = None
        if pattern.secret_settings():
            try:  # keyring round trips block: off the loop
                self._secret_namespace()  # from the store, on this thread
                settings = await asyncio.to_thread(self._reveal, info, pattern)
            except KeyringNotReady as exc:
                return RunOutcome(OutcomeKind.OFFLINE, message=str(exc))
        try:
            ctx = self._context(info, pattern, online=True, settings=settings)
        except SettingsError as exc:
            # Only the user can fix stored settings that no longer validate (a newer pattern
            # version, a program the settings name that was removed): needs their attention.
            return RunOutcome(OutcomeKind.CONFIG_ERROR, message=f"{exc}; fix the charm's settings")
        problem = self._migrate_state(info, pattern, ctx)
        if problem is not None:
            return problem
        log.debug("running charm %s (%s, trigger %s)", info.id, pattern.id, trigger)
        if ctx.credential is None:
            return await pattern.bg_updater(ctx)
        try:
            return await pattern.bg_updater(ctx)
        except AuthRequired as exc:
            # The service refused the account's token (a 401 through raise_for_status, or the
            # pattern's own AuthRequired): the account needs sign-in, and every charm of it
            # waits (the error names the account), as for a Google grant that stopped working.
            if not exc.charm_only:
                ctx.credential.rejected(str(exc))
            if exc.account_id is None and not exc.charm_only:
                raise AuthRequired(str(exc), account_id=ctx.credential.account_id) from exc
            raise

    def _check_account_service(self, pattern: Pattern[Any], account_id: str | None) -> None:
        """Refuse a charm whose account belongs to another service than its pattern's."""
        if account_id is None or self.account_service is None or not pattern.needs_account:
            return
        service = self.account_service(account_id)
        if service is None or service == pattern.service:
            return
        raise ConfigError(
            f"pattern {pattern.id!r} needs a {pattern.service_title} account, but account "
            f"{account_id!r} is for {service}; choose a {pattern.service_title} account "
            "(see 'trayapp accounts list')"
        )

    # ---------------------------------------------------------------------- secret settings

    @property
    def secrets(self) -> SecretVault:
        """Where secret settings live: the keyring, or the accounts' flagged 0600 file."""
        if self._vault is None:
            self._vault = SecretVault(self.profile.path)
        return self._vault

    def _secret_namespace(self) -> str:
        """This profile's random id, made once and kept in its database.

        The keyring is shared by every profile of the user (another ``--profile``, a test
        profile) and charm ids come from names, so the profile's id goes into each entry's name:
        one profile's "status" charm never reads, replaces or deletes another's secret. Read on
        the loop thread (the store is not for worker threads), then cached.
        """
        if self._secret_ns is None:
            with self.store.transaction():  # BEGIN IMMEDIATE: two processes agree on one id
                cell = self.store.cell(SECRET_NAMESPACE_CELL, str, default="")
                value = cell.get()
                if not value:
                    value = uuid.uuid4().hex[:16]
                    cell.set(value)
            self._secret_ns = value
        return self._secret_ns

    def _secret_keys(self, charm_id: str, field: str) -> tuple[str, str]:
        """The entry name of a secret setting, and the name it had before profiles had ids
        (still read, so secrets stored by an older version are found)."""
        legacy = f"charm:{charm_id}:setting:{field}"
        return f"profile:{self._secret_namespace()}:{legacy}", legacy

    def _secret_values(
        self, pattern: Pattern[Any], given: Mapping[str, Any], validated: Any
    ) -> dict[str, str | None]:
        """The secret settings to store: field -> new value (None: clear it). Fields given as
        the placeholder keep their stored secret and are left out."""
        out: dict[str, str | None] = {}
        for field in pattern.secret_settings():
            if field in given and given[field] == SECRET_PLACEHOLDER:
                continue
            value = getattr(validated, field, None)
            out[field] = None if value is None else value.get_secret_value()
        return out

    def _store_secrets(self, charm_id: str, values: Mapping[str, str | None]) -> None:
        target = None
        for field, value in values.items():
            if value is None:
                self._forget_secret(charm_id, field)
                continue
            target = target or self.secrets.store_for_new_secret()  # raises KeyringNotReady
            key, legacy = self._secret_keys(charm_id, field)
            target.set(key, value)
            register_secret(value)
            if target is self.secrets.keyring and self.secrets.file.get(key) is not None:
                self.secrets.file.delete(key)  # moved to the keyring: no stale copy in the file
            if self.secrets.file.get(legacy) is not None:
                self.secrets.file.delete(legacy)  # the profile's own file: replaced, not kept

    def _stored_secret(self, charm_id: str, field: str, *, required: bool) -> str | None:
        """A secret setting's value (the 0600 file first: no D-Bus round trip), or None."""
        value = None
        for key in self._secret_keys(charm_id, field):
            value = self.secrets.file.get(key)
            if value is None and self.secrets.mode != "file":
                value = self.secrets.keyring.get(key)
            if value is not None:
                break
        if value is None and required:
            raise AuthRequired(
                f"the secret setting {field!r} of charm {charm_id!r} is no longer stored (was "
                f"the keyring reset?); enter it again: trayapp charms edit {charm_id} --set "
                f"{field}=..."
            )
        if value is not None:
            register_secret(value)
        return value

    def _forget_secret(self, charm_id: str, field: str) -> None:
        stores = [self.secrets.file]
        if self.secrets.mode != "file":
            stores.append(self.secrets.keyring)  # type: ignore[arg-type]
        for key in self._secret_keys(charm_id, field):
            for store in stores:
                try:
                    store.delete(key)
                except Exception as exc:  # best effort: the charm is gone either way
                    log.warning("could not delete a secret setting of charm %s: %s", charm_id, exc)

    def _reveal(self, info: CharmInfo, pattern: Pattern[Any]) -> dict[str, Any]:
        """The charm's settings with each secret placeholder replaced by the stored value."""
        settings = dict(info.settings)
        for field in pattern.secret_settings():
            if settings.get(field) == SECRET_PLACEHOLDER:
                settings[field] = self._stored_secret(info.id, field, required=True)
        return settings

    def _state_version(self, charm_id: str) -> Cell[int]:
        return self.store.cell(STATE_VERSION_CELL.format(charm_id=charm_id), int, default=1)

    def _migrate_state(
        self, info: CharmInfo, pattern: Pattern[Any], ctx: UpdateContext[Any]
    ) -> RunOutcome | None:
        """Run the pattern's ``migrate_state`` when the stored state is older; None if fine."""
        current = pattern.state_version
        if (info.id, current) in self._state_current:
            return None  # checked before: a version only moves forward (reset: to current)
        version_cell = self._state_version(info.id)
        stored = version_cell.get()
        if stored == current:
            self._state_current.add((info.id, current))
            return None
        if stored > current:
            return RunOutcome(
                OutcomeKind.BUG,
                message=f"the data of this charm was stored by a newer version of the "
                f"{pattern.title} pattern (state version {stored}, this one knows {current}); "
                "update the plugin, or reset the charm to sync again",
            )
        try:
            with self.store.transaction():
                pattern.migrate_state(ctx, stored)
                version_cell.set(current)
        except Exception as exc:
            return RunOutcome(
                OutcomeKind.BUG,
                message=f"could not bring the charm's stored data from version {stored} to "
                f"{current}: {type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
        self._state_current.add((info.id, current))
        log.info("charm %s: stored state migrated from version %d to %d", info.id, stored, current)
        return None

    def _context(
        self,
        info: CharmInfo,
        pattern: Pattern[Any],
        *,
        online: bool,
        settings: Mapping[str, Any] | None = None,
    ) -> UpdateContext[Any]:
        """The context a run (``online``) or an export of ``info`` sees.

        An export reads only stored data, so it gets no Google clients: it keeps working for a
        charm whose account was signed out or removed.
        """
        validated = pattern.validate_settings(info.settings if settings is None else settings)
        bindings = dict(info.bindings)
        for spec in pattern.cells:  # a slot added by a newer version of the pattern
            if spec.name not in bindings:
                bindings[spec.name] = default_binding(pattern, spec.name, info.id, info.account_id)
        google = None
        credential: Credential | None = None
        if online and pattern.credential is not None and info.account_id is not None:
            if self.credential_factory is None:
                raise AuthRequired(
                    f"this app runs without accounts, so the {pattern.credential.title} "
                    "account of this charm cannot be used",
                    account_id=info.account_id,
                )
            credential = self.credential_factory(info.account_id, pattern.credential)
        elif online and self.google_factory is not None and info.account_id is not None:
            missing = (
                self.permission_check(info.account_id, tuple(pattern.scopes))
                if self.permission_check is not None
                else ""
            )
            if missing:
                raise AuthRequired(missing, account_id=info.account_id, charm_only=True)
            try:
                google = self.google_factory(info.account_id)
            except NotFoundError:
                # The account was removed from the profile. Retrying cannot help and it is no
                # bug in the pattern: park the charm (no retries, shown as needing the user)
                # with a message that says what to do.
                raise AuthRequired(
                    f"account {info.account_id!r} is no longer in this profile; remove this "
                    "charm and add it again with a signed-in account (see 'trayapp accounts "
                    "list')",
                    account_id=info.account_id,
                ) from None
        return UpdateContext(
            charm_id=info.id,
            settings=validated,
            account_id=info.account_id,
            store=self.store,
            specs={spec.name: spec for spec in pattern.cells},
            bindings=bindings,
            collections=tuple(pattern.collections),
            http=self.http,
            google=google,
            credential=credential,
            log=logging.LoggerAdapter(
                logging.getLogger(f"trayapp.charm.{info.id}"), {"charm_id": info.id}
            ),
            now=self.clock.now,
            on_progress=(lambda d, t, u: self._report_progress(info.id, d, t, u))
            if online
            else None,
        )

    def export(self, charm_id: str, fmt: str, dest: Path) -> int:
        """Write a charm's data to ``dest`` in ``fmt``; returns how many items were written.

        Raises :class:`ExportError` when the pattern cannot export as asked (the message lists
        the formats it offers, or says which setting to change), and :class:`ExportIncomplete`
        after writing when stored rows could not be read (they are named, and missing).
        """
        info = self.charm(charm_id)
        pattern = self.patterns.get(info.pattern_id)
        if fmt not in pattern.export_formats:
            offered = ", ".join(pattern.export_formats) or "nothing"
            raise ExportError(
                f"charm {charm_id!r} ({pattern.title}) cannot export {fmt!r}; it offers: {offered}"
            )
        with self.store.collect_damaged() as unreadable:
            count = pattern.export(self._context(info, pattern, online=False), fmt, dest)
        if unreadable:  # written without them: say so, never a silently shorter file
            raise ExportIncomplete(count, list(unreadable), dest)
        return count

    # ------------------------------------------------------------------------------ helpers

    def _make_scheduler(self) -> Scheduler:
        """A scheduler loaded with every charm and its saved status; its loop not started."""
        scheduler = Scheduler(
            self._run_charm,
            self._status_repo,
            self.clock,
            on_event=self.publish,
            **self._scheduler_options,
        )
        for info in self._charms.all():
            scheduler.add(self._entry(info))
        return scheduler

    async def _fresh_scheduler(self) -> None:
        """Shut the scheduler's loop down (bounded) and hold a fresh, loaded one instead."""
        try:
            await self._scheduler.shutdown()
        finally:
            self._scheduler = self._make_scheduler()  # loads what the old one saved

    def _entry(self, info: CharmInfo) -> ScheduleEntry:
        # From the pattern's descriptor: loading the scheduler imports no pattern module.
        try:
            timeout = self.patterns.meta(info.pattern_id).timeout
        except NotFoundError:
            timeout = timedelta(minutes=5)
        return ScheduleEntry(
            charm_id=info.id,
            interval=info.interval,
            account_id=info.account_id,
            timeout=timeout,
            jitter=self._jitter,
        )

    def _pattern_or_none(self, pattern_id: str) -> Pattern[Any] | None:
        try:
            return self.patterns.get(pattern_id)
        except NotFoundError:
            return None

    def _sync_charms(self) -> None:
        """Make the scheduler hold exactly the stored charms (another process may have added,
        edited or removed some): new ones are added, gone ones dropped, entries updated."""
        scheduler = self._scheduler
        current = {info.id: info for info in self._charms.all()}
        entries = scheduler.entries()
        for cid in entries.keys() - current.keys():
            scheduler.remove(cid)
        for cid, info in current.items():
            entry = self._entry(info)
            if cid not in entries:
                scheduler.add(entry)
            elif entries[cid] != entry:
                scheduler.update(entry)

    def _hold(self, ids: Iterable[str]) -> None:
        """Charms another process (the CLI) added since this engine loaded get held first."""
        if any(cid not in self._scheduler for cid in ids):
            self._sync_charms()

    def _refresh(self) -> None:
        """Not running: catch up with the store (charms and saved statuses) before reading."""
        self._sync_charms()
        self._scheduler.refresh()

    def _ids(self) -> list[str]:
        return [c.id for c in self._charms.all()]

    def _target_ids(self, charm_id: str | None) -> list[str]:
        """``[charm_id]`` (NotFoundError naming the charms if unknown), or every charm; all of
        them held by the scheduler (one another process added is picked up first)."""
        ids = [self._charms.get(charm_id).id] if charm_id is not None else self._ids()
        self._hold(ids)
        return ids

    def _check_interval(self, interval: timedelta) -> timedelta:
        if not isinstance(interval, timedelta) or interval < MIN_INTERVAL:
            raise ConfigError(
                f"the interval must be at least {MIN_INTERVAL.total_seconds():g} second(s)"
            )
        if interval > MAX_INTERVAL:
            raise ConfigError(
                f"the interval can be at most {MAX_INTERVAL.days} days; choose a shorter one"
            )
        return interval

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
