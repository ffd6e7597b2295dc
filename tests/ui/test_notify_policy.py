"""Notification policy: state changes only, merged, quiet periods, mute until the error changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.ui.test_model import GMAIL, NEWS, Charm, failing, ok
from trayapp.core.outcomes import OutcomeKind
from trayapp.core.status import CharmStatus, Counts, RunRecord
from trayapp.ui.model import AccountState, AccountView, Snapshot, make_snapshot
from trayapp.ui.notify_policy import NotificationPolicy, RecentNotices

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GRACE_OVER = T0 + timedelta(seconds=16)
BLOG = Charm("blog", "Blog")


def snap(at: datetime, statuses: dict[str, CharmStatus], accounts=(), charms=None) -> Snapshot:  # type: ignore[no-untyped-def]
    return make_snapshot(at, charms or [GMAIL, NEWS, BLOG], statuses, list(accounts))


def started_policy() -> NotificationPolicy:
    p = NotificationPolicy()
    p.started(T0)
    return p


def test_nothing_during_the_startup_quiet_period_and_transient_blip_never_shown() -> None:
    p = started_policy()
    blip = {"news": failing("news", OutcomeKind.OFFLINE, "network down")}
    assert p.observe(snap(T0 + timedelta(seconds=3), blip)) == []
    # Recovered before the quiet period ended: the user is never told.
    assert p.observe(snap(GRACE_OVER, {"news": ok("news")})) == []


def test_problem_still_there_after_quiet_period_is_shown_once() -> None:
    p = started_policy()
    bad = {"news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")}
    assert p.observe(snap(T0 + timedelta(seconds=5), bad)) == []
    first = p.observe(snap(GRACE_OVER, bad))
    assert [n.title for n in first] == ["News stopped syncing"]
    assert first[0].body == "HTTP 503. Pattern Sync keeps retrying."
    # Same state again (every refresh): merged, never repeated.
    for k in range(5):
        assert p.observe(snap(GRACE_OVER + timedelta(minutes=k), bad)) == []


def test_transient_failure_needs_to_repeat_but_a_bug_is_shown_at_once() -> None:
    p = started_policy()
    once = {"news": failing("news", OutcomeKind.OFFLINE, "timeout", n=1)}
    assert p.observe(snap(GRACE_OVER, once)) == []
    twice = {"news": failing("news", OutcomeKind.OFFLINE, "timeout", n=2)}
    assert len(p.observe(snap(GRACE_OVER, twice))) == 1
    p2 = started_policy()
    bug = {"blog": failing("blog", OutcomeKind.BUG, "KeyError: 'title'", n=1)}
    assert [n.kind for n in p2.observe(snap(GRACE_OVER, bug))] == ["failing"]


def test_a_problem_only_the_user_can_fix_is_shown_at_once() -> None:
    for kind in (OutcomeKind.CONFIG_ERROR, OutcomeKind.STORAGE):
        p = started_policy()
        once = {"news": failing("news", kind, "the feed was not found (HTTP 404)", n=1)}
        out = p.observe(snap(GRACE_OVER, once))
        assert [n.kind for n in out] == ["failing"], kind
        assert "HTTP 404" in out[0].body


def test_failures_at_the_same_time_are_merged_into_one() -> None:
    p = started_policy()
    both = {
        "news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 502"),
        "blog": failing("blog", OutcomeKind.SERVER_ERROR, "HTTP 502"),
    }
    out = p.observe(snap(GRACE_OVER, both))
    assert len(out) == 1
    assert out[0].title == "2 charms stopped syncing: News, Blog"
    assert out[0].body == "HTTP 502. Pattern Sync keeps retrying."  # said once, for both


def test_recovery_is_told_only_after_a_failure_was_told() -> None:
    p = started_policy()
    bad = {"news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")}
    p.observe(snap(GRACE_OVER, bad))
    out = p.observe(snap(GRACE_OVER + timedelta(minutes=5), {"news": ok("news")}))
    assert [(n.kind, n.title) for n in out] == [("recovered", "News is syncing again")]
    assert p.observe(snap(GRACE_OVER + timedelta(minutes=6), {"news": ok("news")})) == []


def test_one_notification_per_account_however_many_charms_it_parks() -> None:
    p = started_policy()
    acct = AccountView(
        "acct1",
        "ada@example.com",
        AccountState.NEEDS_SIGN_IN,
        reason="Google ended the sign-in after 7 days, as it does for OAuth clients in Testing.",
        hint="Publish the client in Google Cloud Console to stop the weekly sign-ins.",
    )
    cal = Charm("cal", "Calendar", "gcal", "acct1")
    parked = CharmStatus(
        "x", parked=True, last_outcome=OutcomeKind.AUTH_REQUIRED, consecutive_failures=1
    )
    statuses = {"gmail": parked.with_(charm_id="gmail"), "cal": parked.with_(charm_id="cal")}
    out = p.observe(snap(GRACE_OVER, statuses, [acct], [GMAIL, cal]))
    assert len(out) == 1
    n = out[0]
    assert n.kind == "sign_in" and n.title == "Sign in again to ada@example.com"
    assert n.body == (
        "Google ended the sign-in after 7 days, as it does for OAuth clients in Testing. "
        "Publish the client in Google Cloud Console to stop the weekly sign-ins."
    )
    assert n.action == "signin:acct1" and n.action_label == "Sign in again"
    assert p.observe(snap(GRACE_OVER + timedelta(minutes=1), statuses, [acct], [GMAIL, cal])) == []
    # Signed in again: one "recovered", and a later expiry notifies again.
    fine = AccountView("acct1", "ada@example.com", AccountState.SIGNED_IN)
    out = p.observe(snap(GRACE_OVER + timedelta(minutes=2), {}, [fine], [GMAIL, cal]))
    assert [n.kind for n in out] == ["recovered"]
    out = p.observe(snap(GRACE_OVER + timedelta(days=7), statuses, [acct], [GMAIL, cal]))
    assert [n.kind for n in out] == ["sign_in"]


def test_mute_holds_until_the_error_changes() -> None:
    p = started_policy()
    e1 = {"news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 503")}
    s1 = snap(GRACE_OVER, e1)
    p.mute("news", s1)
    assert p.observe(s1) == []
    assert p.observe(snap(GRACE_OVER + timedelta(hours=1), e1)) == []
    e2 = {"news": failing("news", OutcomeKind.SERVER_ERROR, "HTTP 404: feed moved")}
    out = p.observe(snap(GRACE_OVER + timedelta(hours=2), e2))
    assert [n.title for n in out] == ["News stopped syncing"] and "moved" in out[0].body
    assert not p.is_muted("news")


def test_resume_from_sleep_starts_a_new_quiet_period() -> None:
    p = started_policy()
    wake = T0 + timedelta(hours=3)
    p.resumed_from_sleep(wake)
    bad = {"news": failing("news", OutcomeKind.OFFLINE, "no network", n=3)}
    assert p.observe(snap(wake + timedelta(seconds=5), bad)) == []
    assert len(p.observe(snap(wake + timedelta(seconds=16), bad))) == 1


def test_no_sync_complete_spam_and_optional_new_items_summary() -> None:
    rec = RunRecord("news", T0, T0, OutcomeKind.OK, Counts(added=4))
    p = started_policy()
    assert p.observe_run(rec, "News") is None  # off by default
    p.new_items_summary = True
    n = p.observe_run(rec, "News")
    assert n is not None and n.title == "News: 4 new items"
    assert p.observe_run(RunRecord("news", T0, T0, OutcomeKind.OK), "News") is None


def test_errors_can_be_turned_off() -> None:
    p = started_policy()
    p.errors_enabled = False
    bad = {"news": failing("news", OutcomeKind.BUG, "boom")}
    assert p.observe(snap(GRACE_OVER, bad)) == []


def test_recent_keeps_what_could_not_be_shown() -> None:
    p = started_policy()
    out = p.observe(snap(GRACE_OVER, {"news": failing("news", OutcomeKind.BUG, "boom")}))
    recent = RecentNotices(limit=3)
    entry = recent.add(out[0], GRACE_OVER, "none")
    assert recent.get(entry.id) is entry and recent.items()[0].shown_by == "none"
    for _ in range(5):
        recent.add(out[0], GRACE_OVER, "desktop")
    assert len(recent.items()) == 3 and recent.get(entry.id) is None


def test_account_reason_loses_the_cli_hint_in_the_tray() -> None:
    from trayapp.ui.accounts import short_reason

    reason = (
        "Google no longer accepts the sign-in of a@x (access was revoked or expired: Token has "
        "been expired or revoked.); sign in again with `trayapp accounts signin a@x` or from "
        "the tray menu"
    )
    assert short_reason(reason) == (
        "Google no longer accepts the sign-in of a@x (access was revoked or expired: Token has "
        "been expired or revoked.)."
    )
    assert short_reason("Keychain locked") == "Keychain locked."
    assert short_reason("") == ""


def test_tray_words_a_revoked_sign_in_once_without_the_cli_text() -> None:
    """The reported notification said the same thing three times; the tray's words say it once."""
    from trayapp.auth.models import Account, Cause
    from trayapp.auth.models import AccountState as AuthState
    from trayapp.ui.accounts import describe

    revoked = Account(
        id="a1",
        email="demo@example.com",
        state=AuthState.NEEDS_SIGN_IN,
        cause=Cause.INVALID_GRANT,
        reason=(
            "Google no longer accepts the sign-in of demo@example.com (access was revoked or "
            "expired: Token has been expired or revoked.); sign in again with `trayapp accounts "
            "signin demo@example.com` or from the tray menu"
        ),
        created_at=T0,
        updated_at=T0,
    )
    reason, hint = describe(revoked)
    assert reason == "Google no longer accepts the saved sign-in: it was revoked or expired."
    assert hint == ""
    weekly = revoked.model_copy(update={"cause": Cause.TESTING_EXPIRY})
    reason, hint = describe(weekly)
    assert "7 days" in reason and "Testing" in reason and hint.startswith("Publish")
    # A cause the tray does not know keeps auth's sentence, minus the CLI's command line.
    odd = revoked.model_copy(update={"cause": None, "reason": "Odd; sign in again with x"})
    assert describe(odd) == ("Odd.", "")
    assert describe(revoked.model_copy(update={"state": AuthState.SIGNED_IN})) == ("", "")
    # A client problem keeps auth's sentence (missing or rejected?) with the tray's fix.
    no_client = revoked.model_copy(
        update={
            "state": AuthState.CLIENT_MISCONFIGURED,
            "cause": Cause.INVALID_CLIENT,
            "reason": "No OAuth client is configured.",
        }
    )
    assert describe(no_client) == (
        "No OAuth client is configured.",
        "Import a valid Desktop-app client JSON in Settings.",
    )


def test_a_failure_says_once_that_it_is_retried() -> None:
    p = started_policy()
    err = "127.0.0.1 had a server error (HTTP 503); will retry later"
    out = p.observe(snap(GRACE_OVER, {"news": failing("news", OutcomeKind.SERVER_ERROR, err, n=3)}))
    assert [n.body for n in out] == [err]


def test_one_outage_on_one_account_is_one_notification_and_one_recovery() -> None:
    """Charms of one account failing one after the other for one cause: one problem."""
    p = started_policy()
    cal = Charm("cal", "Calendar", "gcal", "acct1")
    fine = AccountView("acct1", "ada@example.com", AccountState.SIGNED_IN)
    charms = [GMAIL, cal, NEWS]
    reset = "cannot reach gmail.googleapis.com (connection reset); the sync will be retried"
    t = GRACE_OVER
    gmail_down = {"gmail": failing("gmail", OutcomeKind.OFFLINE, reset), "news": ok("news")}
    out = p.observe(snap(t, gmail_down, [fine], charms))
    assert [(n.kind, n.title, n.body, n.icon) for n in out] == [
        ("failing", "Gmail stopped syncing", reset, "offline")  # once: no "keeps retrying" too
    ]
    both_down = {**gmail_down, "cal": failing("cal", OutcomeKind.TIMEOUT, "timed out", n=3)}
    assert p.observe(snap(t + timedelta(minutes=1), both_down, [fine], charms)) == []
    # Gmail is back but Calendar is not: the problem is not over yet.
    half = {**both_down, "gmail": ok("gmail")}
    assert p.observe(snap(t + timedelta(minutes=2), half, [fine], charms)) == []
    back = {"gmail": ok("gmail"), "cal": ok("cal"), "news": ok("news")}
    out = p.observe(snap(t + timedelta(minutes=3), back, [fine], charms))
    assert [(n.kind, n.title, n.icon) for n in out] == [
        ("recovered", "Gmail and Calendar are syncing again", "ok")
    ]
    assert p.observe(snap(t + timedelta(minutes=4), back, [fine], charms)) == []


def test_the_same_cause_on_another_account_or_a_bug_is_another_problem() -> None:
    p = started_policy()
    cal = Charm("cal", "Calendar", "gcal", "acct2")
    charms = [GMAIL, cal, NEWS]
    down = {"gmail": failing("gmail", OutcomeKind.OFFLINE, "connection reset")}
    assert len(p.observe(snap(GRACE_OVER, down, (), charms))) == 1
    other = {**down, "cal": failing("cal", OutcomeKind.OFFLINE, "connection reset")}
    out = p.observe(snap(GRACE_OVER + timedelta(minutes=1), other, (), charms))
    assert [n.title for n in out] == ["Calendar stopped syncing"]
    bug = {**other, "news": failing("news", OutcomeKind.BUG, "KeyError: 'title'", n=1)}
    out = p.observe(snap(GRACE_OVER + timedelta(minutes=2), bug, (), charms))
    assert [(n.title, n.icon) for n in out] == [("News stopped syncing", "error")]


def test_a_charm_that_froze_the_app_is_told_at_once_and_again_when_it_stops_trying() -> None:
    p = started_policy()
    once = "stopped: it blocked Pattern Sync for 12 s; the plugin must not call blocking code"
    first = {"news": failing("news", OutcomeKind.FROZE, once, n=1)}
    out = p.observe(snap(GRACE_OVER, first))
    assert [n.title for n in out] == ["News stopped syncing"]
    assert out[0].body == f"{once}. Pattern Sync keeps retrying."
    parked = f"{once}; it did so 3 times in a row, so it will not try again until you resume it"
    third = {
        "news": failing("news", OutcomeKind.FROZE, parked, n=3).with_(
            parked=True, parked_alone=True, parked_frozen=True, freezes=3
        )
    }
    out = p.observe(snap(GRACE_OVER + timedelta(minutes=5), third))
    assert len(out) == 1
    assert out[0].body == parked  # no "keeps retrying": it does not


def test_a_rate_limit_is_quiet_unless_it_persists() -> None:
    p = started_policy()
    until = GRACE_OVER + timedelta(minutes=20)
    once = failing("news", OutcomeKind.RATE_LIMITED, "HTTP 429", n=1).with_(retry_after=until)
    assert p.observe(snap(GRACE_OVER, {"news": once})) == []
    # It repeats: the existing rule for transient failures speaks once.
    twice = once.with_(consecutive_failures=2)
    assert len(p.observe(snap(GRACE_OVER + timedelta(minutes=1), {"news": twice}))) == 1
