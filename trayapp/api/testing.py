"""Test a pattern in a few lines: run its updater in a temporary profile, read what it stored.

:func:`run_pattern` runs the pattern through the app's real engine (the same validation,
context, cells, transactions, timeout and outcome classification as in the app) against a
profile folder you give it (pytest's ``tmp_path``), with either an ``httpx.MockTransport`` or
a real local server whose URL is in the settings::

    import httpx
    from trayapp.api.testing import run_pattern

    async def test_imports_two_items(tmp_path):
        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=[{"id": "1"}, {"id": "2"}], headers={"ETag": '"v1"'})

        run = await run_pattern(
            Notifications, {"url": "https://example.test/n.json"},
            transport=httpx.MockTransport(answer), profile=tmp_path,
        )
        assert run.kind == "ok" and run.report.added == 2
        assert sorted(run.items["items"]) == ["1", "2"]

Call it again with the same ``profile`` to run the same charm a second time (a conditional
GET, a cursor); ``run.cells`` holds each cell slot's stored value and ``run.logs`` the lines the
updater logged with ``ctx.log`` (secrets shown as ``[redacted]``, as in the app's log file).
:func:`run_pattern_sync` is the same for a plain (not async) test. Secret settings (``SecretStr``)
are kept in a 0600 file in ``profile``, never in the keyring of the machine running the tests
(where they would replace the app's own secret of a charm with the same id).

A pattern with a ``credential`` (:class:`~trayapp.api.ApiToken`, or an OAuth provider's access
token) runs with an account holding ``token=``; give a different ``token`` in a later call to
"enter a new token" for that account. ``run.account`` is the account as ``trayapp accounts list
--json`` shows it, so a test can check that a refused token makes it ``needs_sign_in``::

    run = await run_pattern(Issues, {}, token="wrong", transport=..., profile=tmp_path)
    assert run.kind == "auth_required" and run.account["state"] == "needs_sign_in"
    run = await run_pattern(Issues, {}, token="good", transport=..., profile=tmp_path)
    assert run.kind == "ok" and run.account["state"] == "signed_in"
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from trayapp.auth.accounts import AccountManager
from trayapp.auth.secrets import SecretVault
from trayapp.core.engine import Engine
from trayapp.core.errors import NotFoundError, SettingsError
from trayapp.core.outcomes import OutcomeKind, RunOutcome, RunReport
from trayapp.core.patterns import Pattern, PatternRegistry
from trayapp.core.redact import redact

__all__ = ["PatternRun", "SettingsError", "run_pattern", "run_pattern_sync"]


@dataclass(frozen=True)
class PatternRun:
    """What one run of a pattern did."""

    outcome: RunOutcome
    charm_id: str
    profile: Path
    # collection name -> {key: stored JSON value}, after the run
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    # cell slot -> stored value (the slot's default when the run did not write it)
    cells: dict[str, Any] = field(default_factory=dict)
    # the updater's ctx.log lines, formatted ("INFO fetched 2 items")
    logs: list[str] = field(default_factory=list)
    # a pattern with a credential: its account as `trayapp accounts list --json` shows it
    account: dict[str, Any] | None = None

    @property
    def kind(self) -> OutcomeKind:
        """``ok``, ``rate_limited``, ``bug``...: compares equal to its string value."""
        return self.outcome.kind

    @property
    def report(self) -> RunReport:
        return self.outcome.report


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Redacted as the log file is: a test's output must not show a secret either.
        self.lines.append(redact(f"{record.levelname} {record.getMessage()}"))


async def run_pattern(
    pattern: type[Pattern[Any]] | Pattern[Any],
    settings: Mapping[str, Any] | None = None,
    *,
    profile: str | Path,
    transport: httpx.AsyncBaseTransport | None = None,
    name: str | None = None,
    run_timeout: timedelta | None = None,
    token: str | None = None,
) -> PatternRun:
    """Run ``pattern``'s updater once as a charm in ``profile`` and return what happened.

    The first call with a profile adds the charm (settings validated as ``trayapp charms add``
    does: a bad setting raises :class:`SettingsError` naming the field, importable from here);
    later calls with the same profile and ``name`` run that same charm again, with the settings
    it was created with. ``transport`` replaces the network for ``ctx.http`` (say
    ``httpx.MockTransport(handler)``); without it requests go to the real URLs, so point the
    settings at a local server. ``run_timeout`` overrides the pattern's run timeout (to test a hang
    quickly). ``token``: the token of the account a pattern with a ``credential`` runs with (the
    first call needs it; a later one replaces it). Patterns that need a Google account cannot
    run here.
    """
    registry = PatternRegistry()
    instance = pattern() if isinstance(pattern, type) else pattern
    if run_timeout is not None:
        # Set on the instance before it is registered (the registry's descriptor, which the
        # scheduler reads the run's deadline from, is taken then): this run only.
        object.__setattr__(instance, "timeout", run_timeout)
    registry.register(instance, source="test")
    if instance.needs_account and instance.credential is None:
        raise ValueError(
            f"pattern {instance.id!r} needs a Google account; run_pattern runs patterns without "
            "one (or with a credential: pass token=)"
        )
    vault = SecretVault(Path(profile), mode="file")
    engine = Engine(Path(profile), patterns=registry, http_transport=transport, secrets=vault)
    accounts: AccountManager | None = None
    try:
        display = name or instance.title
        existing = [c for c in engine.charms() if c.pattern_id == instance.id and c.name == display]
        account_id = existing[0].account_id if existing else None
        if instance.credential is not None:
            from trayapp.auth.wiring import attach_accounts

            accounts = attach_accounts(engine, vault=vault)
            if token is not None:
                stored = await accounts.add_token(
                    instance.credential.service,
                    token,
                    name="test",
                    account_id=account_id,
                    check=False,
                )
                account_id = stored.id
            elif account_id is None:
                raise ValueError(
                    f"pattern {instance.id!r} needs a {instance.credential.title} account: "
                    "pass token= (the token it signs in with)"
                )
        if existing:
            info = existing[0]
        else:
            info = engine.add_charm(
                instance.id, settings or {}, name=display, account_id=account_id
            )
        logger = logging.getLogger(f"trayapp.charm.{info.id}")
        lines = _Lines()
        old_level = logger.level
        logger.addHandler(lines)
        logger.setLevel(logging.DEBUG)
        try:
            outcome = (await engine.sync([info.id]))[info.id]
        finally:
            logger.removeHandler(lines)
            logger.setLevel(old_level)
        items = {
            coll: dict(engine.store.collection(f"charm:{info.id}:{coll}").items())
            for coll in instance.collections
        }
        cells: dict[str, Any] = {}
        for spec in instance.cells:
            cell_name = info.bindings.get(spec.name, f"charm:{info.id}:{spec.name}")
            try:
                cells[spec.name] = engine.store.lookup(cell_name).get()
            except NotFoundError:
                cells[spec.name] = spec.default
        return PatternRun(
            outcome=outcome,
            charm_id=info.id,
            profile=engine.profile.path,
            items=items,
            cells=cells,
            logs=lines.lines,
            account=accounts.get(account_id).to_json() if accounts and account_id else None,
        )
    finally:
        await engine.aclose()
        if accounts is not None:
            await accounts.aclose()


def run_pattern_sync(
    pattern: type[Pattern[Any]] | Pattern[Any],
    settings: Mapping[str, Any] | None = None,
    *,
    profile: str | Path,
    transport: httpx.AsyncBaseTransport | None = None,
    name: str | None = None,
    run_timeout: timedelta | None = None,
    token: str | None = None,
) -> PatternRun:
    """:func:`run_pattern` for a test that is not async (it runs its own event loop)."""
    return asyncio.run(
        run_pattern(
            pattern,
            settings,
            profile=profile,
            transport=transport,
            name=name,
            run_timeout=run_timeout,
            token=token,
        )
    )
