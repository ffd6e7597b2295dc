"""The pure view model: icon state, summary line, menu description, relative times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmStatus, Counts
from trayapp.ui.model import (
    AccountState,
    AccountView,
    IconState,
    LoopBlock,
    RecentEntry,
    Snapshot,
    build_menu,
    icon_state,
    make_snapshot,
    parse_command,
    pause_until,
    relative_future,
    relative_past,
    summary,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Charm:
    id: str
    name: str
    pattern_id: str = "feed-importer"
    account_id: str | None = None


def ok(cid: str, ago: timedelta = timedelta(minutes=2), **kw: object) -> CharmStatus:
    return CharmStatus(
        cid,
        last_success_at=NOW - ago,
        last_run_at=NOW - ago,
        last_outcome=OutcomeKind.OK,
        next_due_at=NOW + timedelta(minutes=3),
        **kw,  # type: ignore[arg-type]
    )


def failing(cid: str, kind: OutcomeKind, msg: str, n: int = 2) -> CharmStatus:
    return CharmStatus(
        cid,
        last_outcome=kind,
        last_error_kind=kind,
        last_error=msg,
        consecutive_failures=n,
        last_success_at=NOW - timedelta(hours=3),
        next_due_at=NOW + timedelta(minutes=4),
    )


GMAIL = Charm("gmail", "Gmail", "gmail-importer", "acct1")
NEWS = Charm("news", "News")


def test_relative_times() -> None:
    assert relative_past(NOW - timedelta(seconds=10), NOW) == "just now"
    assert relative_past(NOW - timedelta(minutes=2), NOW) == "2 min ago"
    assert relative_past(NOW - timedelta(hours=1), NOW) == "1 hour ago"
    assert relative_past(NOW - timedelta(hours=5), NOW) == "5 hours ago"
    assert relative_past(NOW - timedelta(days=1), NOW) == "yesterday"
    assert relative_past(None, NOW) == "never"
    assert relative_future(NOW + timedelta(seconds=30), NOW) == "in 30 s"
    assert relative_future(NOW + timedelta(minutes=3), NOW) == "in 3 min"
    assert relative_future(NOW - timedelta(seconds=1), NOW) == "now"


def test_all_good_header_and_icon() -> None:
    snap = make_snapshot(NOW, [GMAIL, NEWS], {"gmail": ok("gmail"), "news": ok("news")})
    assert icon_state(snap) is IconState.OK
    assert summary(snap) == "All synced 2 min ago"
    menu = build_menu(snap)
    assert menu.items[0].text == "All synced 2 min ago"
    # "Sync all now" and "Pause all" come first, right under the header.
    keys = [i.key for i in menu.items if not i.separator and i.visible]
    assert keys[:3] == ["header", "sync_all", "pause_all"]
    entry = menu.find("charm:gmail")
    assert entry is not None and entry.text == "Gmail — synced 2 min ago" and entry.icon == "ok"
    assert menu.find("charm:gmail:signin").visible is False  # type: ignore[union-attr]


def test_summary_uses_oldest_success_so_it_never_overstates() -> None:
    snap = make_snapshot(
        NOW, [GMAIL, NEWS], {"gmail": ok("gmail"), "news": ok("news", timedelta(hours=2))}
    )
    assert summary(snap) == "All synced 2 hours ago"


def test_account_needing_sign_in_is_attention_with_one_click_fix() -> None:
    acct = AccountView(
        "acct1", "ada@example.com", AccountState.NEEDS_SIGN_IN, "Google refused the saved sign-in."
    )
    parked = CharmStatus("gmail", parked=True, last_outcome=OutcomeKind.AUTH_REQUIRED)
    snap = make_snapshot(NOW, [GMAIL, NEWS], {"gmail": parked, "news": ok("news")}, [acct])
    assert icon_state(snap) is IconState.ATTENTION
    assert summary(snap) == "ada@example.com needs you to sign in"
    menu = build_menu(snap)
    item = menu.find("charm:gmail:signin")
    assert item is not None and item.visible and item.command == "signin:acct1"
    assert item.text == "Sign in again as ada@example.com…"
    top = menu.find("account:acct1:signin")
    assert top is not None and top.visible and top.command == "signin:acct1"
    assert menu.find("charm:gmail:next").text == "Next run: after sign-in"  # type: ignore[union-attr]
    # The charm says why in the account's short words, not the engine's CLI error text.
    why = menu.find("charm:gmail:error")
    assert why is not None and why.visible and why.text == "Google refused the saved sign-in."
    # The healthy charm is unaffected.
    assert menu.find("charm:news:signin").visible is False  # type: ignore[union-attr]


def test_sign_in_in_progress_offers_cancel_and_copy_link() -> None:
    acct = AccountView("acct1", "ada@example.com", AccountState.NEEDS_SIGN_IN, signing_in=True)
    snap = make_snapshot(NOW, [GMAIL], {"gmail": CharmStatus("gmail")}, [acct])
    menu = build_menu(snap)
    assert menu.find("account:acct1:signin").visible is False  # type: ignore[union-attr]
    assert menu.find("account:acct1:cancel").visible is True  # type: ignore[union-attr]
    assert menu.find("account:acct1:copylink").visible is True  # type: ignore[union-attr]
    assert menu.find("charm:gmail:cancel_signin").visible is True  # type: ignore[union-attr]


def test_locked_keychain_is_not_sign_in() -> None:
    acct = AccountView("acct1", "ada@example.com", AccountState.KEYRING_NOT_READY)
    snap = make_snapshot(NOW, [GMAIL], {"gmail": ok("gmail")}, [acct])
    assert icon_state(snap) is IconState.OK
    assert "keychain locked" in build_menu(snap).find("account:acct1").text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ({"news": CharmStatus("news", running=True)}, IconState.SYNCING),
        ({"news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")}, IconState.ERROR),
        ({"news": failing("news", OutcomeKind.OFFLINE, "no route")}, IconState.OFFLINE),
        ({"news": ok("news", paused=True)}, IconState.PAUSED),
        ({"news": failing("news", OutcomeKind.BUG, "KeyError", 1)}, IconState.ERROR),
    ],
)
def test_state_to_icon(statuses: dict[str, CharmStatus], expected: IconState) -> None:
    assert icon_state(make_snapshot(NOW, [NEWS], statuses)) is expected


def test_attention_beats_syncing_and_syncing_beats_error() -> None:
    acct = AccountView("acct1", "a@x", AccountState.NEEDS_SIGN_IN)
    running = CharmStatus("news", running=True)
    snap = make_snapshot(NOW, [GMAIL, NEWS], {"news": running}, [acct])
    assert icon_state(snap) is IconState.ATTENTION
    snap = make_snapshot(
        NOW,
        [GMAIL, NEWS],
        {"gmail": failing("gmail", OutcomeKind.SERVER_ERROR, "x"), "news": running},
    )
    assert icon_state(snap) is IconState.SYNCING


def test_error_summary_and_charm_details() -> None:
    st = failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503 from feed.example\ntrace")
    st = st.with_(last_counts=Counts(3, 1, 0), totals=Counts(40, 2, 1))
    snap = make_snapshot(NOW, [NEWS], {"news": st})
    assert summary(snap) == "News is failing: HTTP 503 from feed.example"
    menu = build_menu(snap)
    assert menu.find("charm:news").text == "News — server error, retry in 4 min"  # type: ignore[union-attr]
    err = menu.find("charm:news:error")
    assert err is not None and err.visible and err.text == "Error: HTTP 503 from feed.example"
    assert menu.find("charm:news:success").text == "Last success: 3 hours ago"  # type: ignore[union-attr]
    assert menu.find("charm:news:counts").text == "Last run: +3 ~1 −0 · total 40 added"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "message", "detail"),
    [
        (OutcomeKind.CONFIG_ERROR, "the feed was not found (HTTP 404)", "check its settings"),
        (OutcomeKind.STORAGE, "the disk holding the profile is full", "disk full"),
    ],
)
def test_a_problem_only_the_user_can_fix_needs_attention(
    kind: OutcomeKind, message: str, detail: str
) -> None:
    # One failure is enough: retrying cannot fix it, so it is not waited out like a 503.
    st = failing("news", kind, message, n=1)
    snap = make_snapshot(NOW, [GMAIL, NEWS], {"gmail": ok("gmail"), "news": st})
    assert icon_state(snap) is IconState.ATTENTION
    assert summary(snap).startswith("News needs your attention: ")
    menu = build_menu(snap)
    assert menu.find("charm:news").text == f"News — {detail}"  # type: ignore[union-attr]
    assert menu.find("charm:news").icon == "attention"  # type: ignore[union-attr]
    err = menu.find("charm:news:error")
    assert err is not None and err.visible and message in err.text
    # Paused by the user: not nagging.
    paused = make_snapshot(NOW, [NEWS], {"news": st.with_(paused=True)})
    assert icon_state(paused) is not IconState.ATTENTION


def test_pause_all_menu() -> None:
    until = NOW + timedelta(hours=1)
    snap = make_snapshot(NOW, [NEWS], {"news": ok("news", paused=True, paused_until=until)})
    menu = build_menu(snap)
    pause = menu.find("pause_all")
    assert pause is not None and pause.text.startswith("Paused, resumes")
    assert menu.find("resume_all").visible is True  # type: ignore[union-attr]
    assert menu.find("charm:news:pause").command == "resume:news"  # type: ignore[union-attr]
    snap = make_snapshot(NOW, [NEWS], {"news": ok("news")})
    assert build_menu(snap).find("resume_all").visible is False  # type: ignore[union-attr]
    assert pause_until("1h", NOW) == NOW + timedelta(hours=1)
    assert pause_until("8h", NOW) == NOW + timedelta(hours=8)
    assert pause_until("forever", NOW) is None
    tomorrow = pause_until("tomorrow", NOW)
    assert tomorrow is not None and tomorrow > NOW and tomorrow.astimezone().hour == 8


def test_loop_block_and_recent_notifications_show_in_menu() -> None:
    snap = make_snapshot(
        NOW,
        [NEWS],
        {"news": ok("news")},
        loop_block=LoopBlock("news", 2.5, NOW - timedelta(minutes=1)),
        recent=[RecentEntry(7, "Sign in again to a@x", NOW, shown=False, action_label="Sign in")],
    )
    menu = build_menu(snap)
    blocked = menu.find("blocked")
    assert blocked is not None and blocked.visible
    assert blocked.text == "News froze the app for 2.5 s (1 min ago)"
    assert blocked.icon == "error"  # a drawn icon, not a glyph some fonts lack
    entry = menu.find("recent:7")
    assert entry is not None and entry.command == "recent:7" and "(not shown)" in entry.text


def test_menu_keys_are_stable_across_state_changes() -> None:
    a = build_menu(make_snapshot(NOW, [NEWS], {"news": ok("news")}))
    b = build_menu(make_snapshot(NOW, [NEWS], {"news": failing("news", OutcomeKind.BUG, "x")}))
    assert a.keys() == b.keys()


def test_parse_command() -> None:
    assert parse_command("sync:abc").arg == "abc"
    assert parse_command("sync_all").arg is None
    assert parse_command("pause_all:1h").name == "pause_all"


def test_progress_shows_in_the_charm_line_and_the_tooltip() -> None:
    from trayapp.core.status import Progress
    from trayapp.ui.model import SyncBatch, tooltip

    running = CharmStatus("gmail", running=True, progress=Progress(1200, 5000, "messages"))
    snap = make_snapshot(
        NOW, [GMAIL, NEWS], {"gmail": running, "news": ok("news")}, batch=SyncBatch(1, 2)
    )
    assert icon_state(snap) is IconState.SYNCING
    assert tooltip(snap) == "Syncing 2 of 2…\nGmail: 1,200 of 5,000 messages"
    line = build_menu(snap).find("charm:gmail")
    assert line is not None and line.text == "Gmail — syncing 1,200 of 5,000 messages…"
    assert line.icon == "syncing"
    unknown = running.with_(progress=Progress(300, None, "messages"))
    snap = make_snapshot(NOW, [GMAIL], {"gmail": unknown})
    assert tooltip(snap) == "Syncing Gmail…\nGmail: 300 messages"
    # A click's batch shows "syncing" before any run has started.
    idle = make_snapshot(NOW, [NEWS], {"news": ok("news")}, batch=SyncBatch(0, 1))
    assert icon_state(idle) is IconState.SYNCING and summary(idle) == "Syncing…"


FROZE_ONCE = "stopped: it blocked Pattern Sync for 12 s; the plugin must not call blocking code"
FROZE_PARKED = (
    f"{FROZE_ONCE}; it did so 3 times in a row, so it will not try again until you resume it"
)


def test_a_charm_that_froze_once_is_failing_and_retried() -> None:
    st = failing("news", OutcomeKind.FROZE, FROZE_ONCE, n=1).with_(freezes=1)
    snap = make_snapshot(NOW, [NEWS], {"news": st})
    assert icon_state(snap) is IconState.ERROR
    menu = build_menu(snap)
    assert menu.find("charm:news").text == "News — froze, retry in 4 min"  # type: ignore[union-attr]
    assert menu.find("charm:news:pause").text == "Pause"  # type: ignore[union-attr]


def test_a_charm_parked_for_freezing_asks_for_resume_not_for_sign_in() -> None:
    # It has an account that is fine: the charm alone waits, for the user's Resume.
    st = failing("gmail", OutcomeKind.FROZE, FROZE_PARKED, n=3).with_(
        freezes=3, parked=True, parked_alone=True, parked_frozen=True, next_due_at=None
    )
    snap = make_snapshot(NOW, [GMAIL, NEWS], {"gmail": st, "news": ok("news")})
    assert icon_state(snap) is IconState.ATTENTION
    assert summary(snap).startswith("Gmail needs your attention: stopped: it blocked")
    menu = build_menu(snap)
    assert menu.find("charm:gmail").text == "Gmail — stopped: it froze the app"  # type: ignore[union-attr]
    assert menu.find("charm:gmail:next").text == "Next run: when resumed"  # type: ignore[union-attr]
    resume = menu.find("charm:gmail:pause")
    assert resume is not None and resume.text == "Resume" and resume.command == "resume:gmail"
    signin = menu.find("charm:gmail:signin")
    assert signin is not None and not signin.visible
    err = menu.find("charm:gmail:error")
    assert err is not None and err.visible and "blocked Pattern Sync" in err.text
    assert "Froze" not in err.text and "UpdaterFroze" not in err.text


def test_the_menu_builder_rebuilds_only_changed_entries_and_equals_build_menu() -> None:
    """Issue 17.6: MenuBuilder keeps each charm's entry until what it shows changes. Over a
    random walk of statuses, accounts and clock ticks its menu always equals build_menu's,
    and it builds one entry per changed charm, not one per charm."""
    import random

    from trayapp.core.status import Progress
    from trayapp.ui.model import MenuBuilder, ViewCache

    rng = random.Random(17)
    charms = [
        Charm(f"c{i}", f"Charm {i}", account_id="acct1" if i % 3 == 0 else None) for i in range(12)
    ]
    acct_ok = AccountView("acct1", "me@example.com")
    acct_bad = AccountView("acct1", "me@example.com", AccountState.NEEDS_SIGN_IN, reason="x")

    def random_status(cid: str, now: datetime) -> CharmStatus:
        pick = rng.randrange(6)
        if pick == 0:
            return ok(cid, timedelta(seconds=rng.choice([5, 50, 100, 3000, 7200, 90000])))
        if pick == 1:
            return failing(cid, rng.choice(list(OutcomeKind)), "HTTP 503 from example.org")
        if pick == 2:
            return CharmStatus(
                cid, running=True, progress=Progress(rng.randrange(50), 100, "items")
            )
        if pick == 3:
            return CharmStatus(
                cid, paused=True, paused_until=now + timedelta(minutes=rng.choice([1, 61, 600]))
            )
        if pick == 4:
            return CharmStatus(
                cid, next_due_at=now + timedelta(seconds=rng.choice([3, 30, 59, 61, 95, 4000]))
            )
        return CharmStatus(cid)

    now = NOW
    statuses = {c.id: random_status(c.id, now) for c in charms}
    builder, views = MenuBuilder(), ViewCache()
    accounts = [acct_ok]
    for step in range(300):
        changed = 0
        what = rng.randrange(10)
        if what < 6:  # one charm's status changes (a new status object, as the engine does)
            cid = rng.choice(charms).id
            statuses[cid] = random_status(cid, now)
            changed = 1
        elif what < 8:  # the clock moves: seconds (a refresh) or minutes (a tick, a wake)
            now += timedelta(seconds=rng.choice([0.05, 0.4, 1, 7, 15, 45, 600, 3600, 40000]))
        elif what == 8:
            accounts = [acct_bad if accounts[0] is acct_ok else acct_ok]
        snap = make_snapshot(now, charms, statuses, accounts, views=views)
        before = builder.rows_built
        assert builder.build(snap) == build_menu(snap), step
        built = builder.rows_built - before
        if what < 6 and step:
            assert built <= changed, step  # never more than the charm that changed
        if what == 8:
            assert built <= 4  # only the account's charms (c0, c3, c6, c9)
    # A tick that moves no relative text rebuilds nothing, and the views are reused; inside
    # every entry's window not even the texts are worked out again.
    statuses = {c.id: ok(c.id, timedelta(minutes=10)) for c in charms}
    snap = make_snapshot(now, charms, statuses, accounts, views=views)
    builder.build(snap)
    again = make_snapshot(
        now + timedelta(milliseconds=200), charms, statuses, accounts, views=views
    )
    before, compared = builder.rows_built, builder.texts_compared
    assert builder.build(again) == build_menu(again)
    assert builder.rows_built == before and builder.texts_compared == compared
    assert all(a is b for a, b in zip(snap.charms, again.charms, strict=True))
    # A charm removed: its entry is gone, the others stay.
    snap = make_snapshot(now, charms[1:], statuses, accounts, views=views)
    assert builder.build(snap) == build_menu(snap) and "c0" not in views


def test_relative_texts_hold_until_the_time_their_window_says() -> None:
    """MenuBuilder skips working out an entry's relative times while the clock is inside the
    window these give: at any instant in [now, until) the text must be the one at now."""
    import random

    from trayapp.ui.model import future_text_until, past_text_until

    rng = random.Random(6)
    spans = [0, 1, 4.9, 5, 5.1, 30, 44.9, 45, 59.9, 60, 89, 90, 91, 150, 3569, 3570, 3571,
             5400, 7000, 86399, 86400, 86401, 200000]  # fmt: skip
    for _ in range(3000):
        now = NOW + timedelta(seconds=rng.uniform(0, 3 * 86400))
        span = timedelta(seconds=rng.choice(spans) + rng.uniform(-2, 2))
        local = now.astimezone()
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        for when, text, until in (
            (now - span, relative_past, past_text_until(now - span, now)),
            (now + span, relative_future, future_text_until(now + span, now, midnight)),
        ):
            at_now = text(when, now)  # type: ignore[operator]
            if until is None:
                later = [now + timedelta(seconds=s) for s in (1, 60, 3600, 90000)]
            else:
                assert until >= now - timedelta(microseconds=1), (when, now, until)
                width = (until - now).total_seconds()
                later = [now + timedelta(seconds=width * f) for f in (0.25, 0.5, 0.9)]
                later.append(until - timedelta(microseconds=1))
            for t in later:
                if t >= now:
                    assert text(when, t) == at_now, (when, now, t, until)  # type: ignore[operator]


def rate_limited(cid: str, until: datetime | None, n: int = 1) -> CharmStatus:
    st = failing(cid, OutcomeKind.RATE_LIMITED, "the feed is limiting requests (HTTP 429)", n)
    return st.with_(retry_after=until, next_due_at=until or NOW + timedelta(minutes=4))


def test_a_rate_limited_charm_is_waiting_not_failing() -> None:
    until = NOW + timedelta(minutes=20)
    at = until.astimezone().strftime("%H:%M")
    snap = make_snapshot(
        NOW, [GMAIL, NEWS], {"gmail": ok("gmail"), "news": rate_limited("news", until)}
    )
    # No error icon: the tray says all is well, and why News waits.
    assert icon_state(snap) is IconState.OK
    assert "failing" not in summary(snap)
    assert summary(snap).endswith(f"News is waiting: the server asked to wait until {at}")
    menu = build_menu(snap)
    row = menu.find("charm:news")
    assert row is not None
    assert row.text == f"News — waiting: the server asked to wait until {at}"
    assert row.icon == IconState.OK.value
    err = menu.find("charm:news:error")
    assert err is not None and not err.visible
    # Every refresh: the rate limit stays a wait however often it repeated.
    again = make_snapshot(NOW, [NEWS], {"news": rate_limited("news", until, n=4)})
    assert icon_state(again) is IconState.OK
    # Without a Retry-After it still waits (for its backoff), in the user's words.
    vague = make_snapshot(NOW, [NEWS], {"news": rate_limited("news", None)})
    assert icon_state(vague) is IconState.OK
    assert menu_text(vague, "charm:news") == "News — waiting: the server asked to slow down"
    # A real failure next to it still shows as one.
    both = make_snapshot(
        NOW,
        [GMAIL, NEWS],
        {
            "gmail": failing("gmail", OutcomeKind.SERVER_ERROR, "HTTP 503"),
            "news": rate_limited("news", until),
        },
    )
    assert icon_state(both) is IconState.ERROR
    assert summary(both) == "Gmail is failing: HTTP 503"


def menu_text(snap: Snapshot, key: str) -> str:
    item = build_menu(snap).find(key)
    assert item is not None
    return item.text


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Havana"])
def test_the_day_ends_at_the_next_local_midnight_even_in_its_last_hour(
    zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "at 18:00" turns into "Sun 18:00" at local midnight. The builder's bound for that was
    "midnight - 1 h", which lies in the past from 23:00 on: every refresh in the last hour of
    the day worked out every entry's texts again (and test_menu_refresh failed then). Havana
    moves its clocks at midnight (2026-03-08 00:00 -> 01:00)."""
    import time as _time

    from trayapp.ui.model import MenuBuilder

    monkeypatch.setenv("TZ", zone)
    _time.tzset()
    try:
        for local in ("2026-03-07 23:30", "2026-03-07 22:59", "2026-07-01 12:00"):
            now = datetime.fromisoformat(local).astimezone()  # naive -> that local time
            end = MenuBuilder()._day_end(now.astimezone(UTC))
            assert end > now
            assert end.astimezone().date() > now.date()  # the day has changed by then
            assert (end - timedelta(seconds=1)).astimezone().date() == now.date()  # not before
    finally:
        monkeypatch.undo()
        _time.tzset()
