"""The built-in patterns are registered by descriptor and imported when first needed (issue 17).

A profile of feed charms must not import the Gmail, Calendar or script importers (and their
stacks) to start, list its charms, load its scheduler or answer the accounts' questions; a
pattern whose module is broken must say so, clearly, when it is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trayapp.builtins import BUILTIN_PATTERNS, default_registry
from trayapp.core.engine import Engine
from trayapp.core.errors import NotFoundError
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.patterns import (
    PatternDeclarationError,
    PatternLoadError,
    PatternMeta,
    PatternRegistry,
)

REPO = Path(__file__).resolve().parents[2]

# What a built-in's module brings with it; none of it is needed by a profile of feed charms.
NOT_FOR_FEEDS = (
    "trayapp.patterns.gmail",
    "trayapp.patterns.gmail_message",
    "trayapp.patterns.gcalendar",
    "trayapp.patterns.gcalendar_recurrence",
    "trayapp.patterns.exec_importer",
    "trayapp.google.gmail",
    "trayapp.google.calendar",
    "trayapp.google.batch",
    "trayapp.google.client",
)


@pytest.mark.parametrize("meta", BUILTIN_PATTERNS, ids=lambda m: m.id)
def test_every_builtin_descriptor_matches_its_class(meta: PatternMeta) -> None:
    registry = PatternRegistry()
    registry.register_meta(meta)
    assert not registry.is_loaded(meta.id)
    pattern = registry.get(meta.id)
    assert registry.is_loaded(meta.id)
    assert PatternMeta.of(pattern) == meta
    assert registry.problems == []


def test_the_descriptors_are_the_registry_s_builtins() -> None:
    registry = default_registry(plugins=False)
    assert [m.id for m in registry.metas()] == sorted(m.id for m in BUILTIN_PATTERNS)
    assert all(registry.source(m.id) == "built-in" for m in BUILTIN_PATTERNS)


_FEEDS_ONLY = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from trayapp.builtins import default_registry
    from trayapp.core.engine import Engine
    from trayapp.auth.wiring import attach_accounts, charm_scope_needs, registry_services

    profile = Path(sys.argv[1])
    engine = Engine(profile, patterns=default_registry())
    for n in range(3):
        engine.add_charm("feed-importer", {"url": f"http://127.0.0.1:9/f{n}.xml"})
    engine.close()

    async def main():
        # As the app host does: the registry, the engine (its scheduler loaded with every
        # charm), the accounts wired to it; then what the tray and CLI ask at start.
        engine = Engine(profile, patterns=default_registry())
        attach_accounts(engine)
        await engine.start()
        engine.statuses()
        engine.charms()
        charm_scope_needs(engine.charms, engine.patterns)("acc")
        registry_services(engine.patterns)()
        [m.title for m in engine.patterns.metas()]
        await engine.stop()
        engine.close()

    asyncio.run(main())
    print(json.dumps(sorted(sys.modules)))
    """
)


def test_a_feeds_profile_imports_no_other_builtin(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FEEDS_ONLY, str(tmp_path / "profile")],
        capture_output=True, text=True, timeout=120, check=True, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
             "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    )  # fmt: skip
    modules = set(json.loads(out.stdout.splitlines()[-1]))
    assert "trayapp.patterns.feed" in modules  # its charms were added (validated)
    loaded = sorted(m for m in NOT_FOR_FEEDS if m in modules)
    assert loaded == [], f"a feeds profile imported {loaded}"


_BROKEN = PatternMeta(
    id="broken-importer",
    title="Broken Importer",
    target="tp_lazy_missing_module:Broken",
)


def test_a_builtin_whose_module_fails_says_so_when_needed() -> None:
    registry = PatternRegistry()
    registry.register_meta(_BROKEN)  # registering imports nothing: no error yet
    assert "broken-importer" in registry and registry.problems == []
    with pytest.raises(PatternLoadError) as caught:
        registry.get("broken-importer")
    message = str(caught.value)
    assert "Broken Importer" in message and "could not be loaded" in message
    assert "No module named 'tp_lazy_missing_module'" in message
    assert "reinstall Pattern Sync" in message
    assert isinstance(caught.value, NotFoundError)  # the CLI shows it as a clear error
    # Reported once, as a broken plugin is; asked again, the same error without a new problem.
    with pytest.raises(PatternLoadError):
        registry.get("broken-importer")
    assert [p.entry_point for p in registry.problems] == [
        "broken-importer = tp_lazy_missing_module:Broken"
    ]
    assert list(registry) == []  # iterating leaves it out; its descriptor stays
    assert registry.meta("broken-importer") == _BROKEN


def test_a_descriptor_that_does_not_match_its_class_is_refused_at_load() -> None:
    registry = PatternRegistry()
    wrong = PatternMeta(
        id="feed-importer", title="Feed Importer", target="trayapp.patterns.feed:FeedImporter"
    )  # the feed importer's timeout is 2 minutes, not the default 5
    registry.register_meta(wrong)
    with pytest.raises(PatternLoadError, match="does not match its registration"):
        registry.get("feed-importer")


def test_bad_descriptors_are_refused_at_registration() -> None:
    registry = PatternRegistry()
    with pytest.raises(PatternDeclarationError, match="lower-case slug"):
        registry.register_meta(PatternMeta(id="Bad Id", title="x", target="m:C"))
    with pytest.raises(PatternDeclarationError, match=r"package\.module:Class"):
        registry.register_meta(PatternMeta(id="no-class", title="x", target="module.only"))
    registry.register_meta(_BROKEN)
    with pytest.raises(PatternDeclarationError, match="already registered"):
        registry.register_meta(_BROKEN)


GOOD = """
from datetime import timedelta
from trayapp.api import Pattern, RunReport, UpdateContext, NoSettings

class Counted(Pattern[NoSettings]):
    id = "counted"
    title = "Counted"
    Settings = NoSettings

    async def bg_updater(self, ctx: UpdateContext[NoSettings]) -> RunReport:
        return RunReport(updated=1)
"""


async def test_a_charm_of_a_pattern_that_cannot_load_ends_as_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "tp_lazy_counted.py").write_text(GOOD)
    monkeypatch.syspath_prepend(str(site))
    meta = PatternMeta(id="counted", title="Counted", target="tp_lazy_counted:Counted")
    try:
        good = PatternRegistry()
        good.register_meta(meta)
        async with Engine(tmp_path / "profile", patterns=good) as engine:
            engine.add_charm("counted", name="c")
            assert (await engine.sync())["c"].ok
    finally:
        sys.modules.pop("tp_lazy_counted", None)
    # The same charm in an app whose module for it is gone (a damaged installation).
    broken = PatternRegistry()
    broken.register_meta(
        PatternMeta(id="counted", title="Counted", target="tp_lazy_gone_module:Counted")
    )
    async with Engine(tmp_path / "profile", patterns=broken) as engine:
        outcome = (await engine.sync())["c"]
    assert outcome.kind is OutcomeKind.CONFIG_ERROR
    assert "Counted pattern ('counted') could not be loaded" in outcome.message
    assert "reinstall Pattern Sync" in outcome.message
