"""Kill/restart soak: ``kill -9`` the real headless engine during Gmail and Calendar syncs, with
mail and events changing all the time, then check that the store matches the emulator.

Run: ``PYTHONPATH=. .venv/bin/python bench/soak_kill.py [--trials 20] [--messages 1500]
[--events 300] [--seed 1]``.

Everything is the real thing: the emulator (``python -m trayapp.emulator``) on 127.0.0.1 with a
little latency so syncs take long enough to be interrupted, a profile signed in to it (file
secret store), one Gmail importer (``in:inbox``, text parts) and one Calendar importer (all
calendars) on 2-second intervals, and ``trayapp run --headless`` as a child process. Each trial:

1. churn starts (new mail, archived and deleted mail, label moves; new, changed and cancelled
   events; some new calendars' events) and keeps going while the engine runs;
2. the engine starts and is killed with SIGKILL at a random moment (0.2-6 s after it said it
   was running, so during the first full sync, incremental syncs, or a write);
3. churn stops; ``trayapp sync`` runs once to completion (the recovery a restart does);
4. the store is compared with the emulator: Gmail message ids and their labels against
   ``messages.list(q=in:inbox)`` + ``messages.get``; Calendar event ids and ``updated`` stamps
   against ``events.list`` of every calendar.

Prints one row per trial and a summary; exits 1 if any trial differed. The emulator and the
profile live in a temporary folder (``--keep`` keeps it for a post-mortem).
"""

from __future__ import annotations

import argparse
import asyncio
import email.message
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from trayapp.auth.client_config import parse_client_json
from trayapp.auth.secrets import SecretVault
from trayapp.auth.signin import grant_from_token_response
from trayapp.auth.wiring import attach_accounts
from trayapp.builtins import default_registry
from trayapp.core.engine import Engine
from trayapp.core.profile import Profile
from trayapp.core.store import Store

REPO = Path(__file__).resolve().parents[1]
EMAIL = "soak@example.com"
SCOPES = [
    "https://www.googleapis.com/auth/gmail.readonly",
    "https://www.googleapis.com/auth/calendar.readonly",
]
QUERY = "in:inbox"


# ---- the emulator, over its control API ---------------------------------------------------


class Emulator:
    def __init__(self, latency_ms: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trayapp.emulator", "--port", "0", "--json",
             "--latency-ms", str(latency_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env(),
            cwd=REPO,
        )  # fmt: skip
        assert self.proc.stdout is not None
        facts = json.loads(self.proc.stdout.readline())
        self.base_url: str = facts["base_url"]
        self.http = httpx.Client(base_url=self.base_url, timeout=60)
        self.token = ""

    def op(self, operation: str, /, **kwargs: Any) -> Any:
        r = self.http.post(f"/__emu__/{operation}", json=kwargs)
        if r.status_code != 200:
            raise RuntimeError(f"emulator {operation}: {r.status_code} {r.text}")
        return r.json()["result"]

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        for _ in range(3):
            r = self.http.get(
                path, params=params, headers={"Authorization": f"Bearer {self.token}"}
            )
            if r.status_code == 401:
                self.refresh_token()
                continue
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data
        raise RuntimeError(f"cannot read {path}")

    def refresh_token(self) -> None:
        tokens = self.op("issue_tokens", email=EMAIL, client_id=self.client_id, scopes=SCOPES)
        self.token = tokens["access_token"]

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(10)

    client_id = ""


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAYAPP_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TRAYAPP_SECRET_STORE"] = "file"  # no keyring needed
    return env


# ---- the source: seeding and churn --------------------------------------------------------


def raw_mail(n: int, rng: random.Random) -> str:
    import base64

    msg = email.message.EmailMessage()
    msg["From"] = f"Sender {n % 17} <s{n % 17}@example.com>"
    msg["To"] = EMAIL
    msg["Subject"] = f"soak message {n} " + "x" * rng.randrange(0, 40)
    msg["Message-ID"] = f"<soak{n}.{time.monotonic_ns()}@example.com>"
    msg.set_content(f"Body of soak message {n}.\n" * rng.randrange(1, 30))
    return base64.b64encode(msg.as_bytes()).decode()


def event_json(n: int, rng: random.Random) -> dict[str, Any]:
    day = 1 + n % 27
    hour = rng.randrange(6, 20)
    return {
        "summary": f"soak event {n}",
        "start": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:00:00Z"},
        "end": {"dateTime": f"2026-12-{day:02d}T{hour:02d}:45:00Z"},
    }


@dataclass
class Source:
    emu: Emulator
    rng: random.Random
    calendars: list[str] = field(default_factory=list)
    mail: list[str] = field(default_factory=list)
    events: dict[str, list[str]] = field(default_factory=dict)
    seq: int = 0
    changes: int = 0

    def add_mail(self, labels: list[str] | None = None) -> None:
        self.seq += 1
        mid = self.emu.op(
            "add_message", email=EMAIL, raw_base64=raw_mail(self.seq, self.rng),
            label_ids=labels or ["INBOX", "UNREAD"],
        )  # fmt: skip
        self.mail.append(str(mid))

    def add_event(self, calendar: str) -> None:
        self.seq += 1
        eid = self.emu.op(
            "add_event", email=EMAIL, calendar_id=calendar, event=event_json(self.seq, self.rng)
        )
        self.events.setdefault(calendar, []).append(str(eid))

    def churn_once(self) -> None:
        """One random change, weighted like a busy mailbox and calendar."""
        r = self.rng.random()
        self.changes += 1
        if r < 0.30 or not self.mail:
            self.add_mail()
        elif r < 0.40:
            self.emu.op("delete_message", email=EMAIL, message_id=self.mail.pop(
                self.rng.randrange(len(self.mail))))  # fmt: skip
        elif r < 0.55:
            mid = self.rng.choice(self.mail)
            add, remove = (["INBOX"], []) if self.rng.random() < 0.5 else ([], ["INBOX"])
            self.emu.op("modify_labels", email=EMAIL, message_id=mid, add=add, remove=remove)
        elif r < 0.60:
            mid = self.rng.choice(self.mail)
            self.emu.op("modify_labels", email=EMAIL, message_id=mid, add=["STARRED"], remove=[])
        else:
            cal = self.rng.choice(self.calendars)
            ids = self.events.get(cal, [])
            e = self.rng.random()
            if e < 0.4 or not ids:
                self.add_event(cal)
            elif e < 0.8:
                self.seq += 1
                self.emu.op(
                    "update_event", email=EMAIL, calendar_id=cal,
                    event_id=self.rng.choice(ids), fields={"summary": f"changed {self.seq}"},
                )  # fmt: skip
            else:
                self.emu.op("cancel_event", email=EMAIL, calendar_id=cal,
                            event_id=ids.pop(self.rng.randrange(len(ids))))  # fmt: skip


class Churner(threading.Thread):
    """Changes the source every few milliseconds until stopped."""

    def __init__(self, source: Source, period: float) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.period = period
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            try:
                self.source.churn_once()
            except Exception as exc:  # a deleted id chosen twice: the source said no
                print(f"  (churn: {exc})", file=sys.stderr)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


# ---- the profile ----------------------------------------------------------------------------


async def make_profile(path: Path, emu: Emulator) -> tuple[str, str]:
    client = emu.op("create_client")
    emu.client_id = client["id"]
    config = {
        "installed": {
            "client_id": client["id"], "client_secret": client["secret"],
            "auth_uri": f"{emu.base_url}/o/oauth2/auth", "token_uri": f"{emu.base_url}/token",
            "redirect_uris": ["http://localhost"],
        }
    }  # fmt: skip
    engine = Engine(Profile.resolve(path), patterns=default_registry())
    manager = attach_accounts(engine, vault=SecretVault(engine.profile.path, mode="file"))
    try:
        manager.clients.set(parse_client_json(json.dumps(config)))
        tokens = emu.op("issue_tokens", email=EMAIL, client_id=client["id"], scopes=SCOPES)
        account = await manager.complete_sign_in(grant_from_token_response(tokens, email=EMAIL))
        two = timedelta_s(2)
        gmail = engine.add_charm(
            "gmail-importer", {"query": QUERY, "parts": "text"}, name="mail",
            account_id=account.id, interval=two,
        ).id  # fmt: skip
        cal = engine.add_charm(
            "gcalendar-importer", {"calendars": "all"}, name="calendar",
            account_id=account.id, interval=two,
        ).id  # fmt: skip
    finally:
        await manager.aclose()
        engine.close()
    return gmail, cal


def timedelta_s(seconds: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=seconds)


# ---- comparing ------------------------------------------------------------------------------


def google_mail(emu: Emulator) -> dict[str, list[str]]:
    ids: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"q": QUERY, "maxResults": 500}
        if token:
            params["pageToken"] = token
        page = emu.api("/gmail/v1/users/me/messages", **params)
        ids += [m["id"] for m in page.get("messages", [])]
        token = page.get("nextPageToken")
        if not token:
            break
    out = {}
    for mid in ids:
        msg = emu.api(f"/gmail/v1/users/me/messages/{mid}", format="minimal")
        out[mid] = sorted(msg.get("labelIds", []))
    return out


def google_events(emu: Emulator) -> dict[str, str]:
    out: dict[str, str] = {}
    cals = emu.api("/calendar/v3/users/me/calendarList").get("items", [])
    for cal in cals:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"maxResults": 2500}
            if token:
                params["pageToken"] = token
            page = emu.api(f"/calendar/v3/calendars/{cal['id']}/events", **params)
            for ev in page.get("items", []):
                if ev.get("status") != "cancelled":
                    out[f"{cal['id']}/{ev['id']}"] = ev.get("updated", "")
            token = page.get("nextPageToken")
            if not token:
                break
    return out


def stored(profile: Path, gmail: str, cal: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    store = Store.open(profile / "trayapp.db")
    try:
        mail = {
            k: sorted(v.get("labelIds", []))
            for k, v in store.collection(f"charm:{gmail}:messages").iter_items()
            if isinstance(v, dict)
        }
        events = {
            k: v.get("updated", "")
            for k, v in store.collection(f"charm:{cal}:events").iter_items()
            if isinstance(v, dict) and v.get("status") != "cancelled"
        }
    finally:
        store.close()
    return mail, events


def trio(counts: tuple[int, int, int]) -> str:
    return "/".join(str(c) for c in counts)


def diff(expected: dict[str, Any], got: dict[str, Any]) -> tuple[int, int, int]:
    missing = len(expected.keys() - got.keys())
    extra = len(got.keys() - expected.keys())
    changed = sum(1 for k in expected.keys() & got.keys() if expected[k] != got[k])
    return missing, extra, changed


# ---- one trial ------------------------------------------------------------------------------


def trayapp(profile: Path, *args: str, **kw: Any) -> Any:
    return subprocess.Popen(
        [sys.executable, "-m", "trayapp", "--profile", str(profile), *args],
        env=child_env(), cwd=REPO, **kw,
    )  # fmt: skip


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    """Lines of stderr up to the one containing ``needle`` (the child keeps running)."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise RuntimeError(f"the engine did not say {needle!r}: {''.join(seen[-20:])}")


@dataclass
class Trial:
    n: int
    kill_after: float
    runs_before_kill: int
    changes: int
    recovery_s: float
    mail: tuple[int, int, int]
    events: tuple[int, int, int]
    stored_mail: int
    stored_events: int
    note: str = ""

    @property
    def identical(self) -> bool:
        return self.mail == (0, 0, 0) and self.events == (0, 0, 0) and not self.note


def trial(n: int, profile: Path, source: Source, ids: tuple[str, str], rng: random.Random,
          churn_period: float) -> Trial:  # fmt: skip
    churn = Churner(source, churn_period)
    before = source.changes
    churn.start()
    engine = trayapp(profile, "-v", "run", "--headless", stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)  # fmt: skip
    kill_after = rng.uniform(0.2, 6.0)
    lines: list[str] = []
    try:
        lines = wait_for_line(engine, "running headless", 60)
        # Read its log on a thread until the kill, to count the runs it finished.
        reader = threading.Thread(target=lambda: lines.extend(iter(engine.stderr.readline, "")),  # type: ignore[union-attr]
                                  daemon=True)  # fmt: skip
        reader.start()
        time.sleep(kill_after)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(30)
    churn.stop()
    runs = sum(1 for line in lines if ": ok (" in line)
    note = ""
    if any("Traceback" in line for line in lines):
        note = "traceback in the engine's log"
    start = time.monotonic()
    sync = trayapp(profile, "sync", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = sync.communicate(timeout=600)
    if sync.returncode != 0:
        # One retry: a sync may fail on a change made during it (a message deleted between list
        # and get is fine; the report says which).
        sync = trayapp(profile, "sync", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = sync.communicate(timeout=600)
        if sync.returncode != 0:
            note = f"sync failed: {(out + err).strip()[:120]}"
    recovery = time.monotonic() - start
    if "Traceback" in err:
        note = "traceback in sync"
    mail, events = stored(profile, *ids)
    g_mail, g_events = google_mail(source.emu), google_events(source.emu)
    return Trial(n, kill_after, runs, source.changes - before, recovery, diff(g_mail, mail),
                 diff(g_events, events), len(mail), len(events), note)  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--messages", type=int, default=1500, help="mail in the inbox at the start")
    p.add_argument("--events", type=int, default=300, help="events at the start (3 calendars)")
    p.add_argument("--latency-ms", type=int, default=20)
    p.add_argument("--churn-ms", type=float, default=20, help="one change every N ms")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="trayapp-soak-"))
    emu = Emulator(args.latency_ms)
    try:
        emu.op("create_account", email=EMAIL, name="Soak")
        source = Source(emu, rng)
        source.calendars = [EMAIL] + [
            emu.op("add_calendar", email=EMAIL, summary=f"Soak {i}") for i in range(2)
        ]
        for _ in range(args.messages):
            source.add_mail()
        for i in range(args.events):
            source.add_event(source.calendars[i % len(source.calendars)])
        profile = tmp / "profile"
        ids = asyncio.run(make_profile(profile, emu))
        emu.refresh_token()
        print(
            f"emulator {emu.base_url}; profile {profile}; {args.messages} messages, "
            f"{args.events} events; kill -9 at 0.2-6 s, churn every {args.churn_ms:g} ms"
        )
        print()
        header = (f"{'trial':>5} {'kill@s':>6} {'runs':>4} {'churn':>5} {'recover s':>9} "
                  f"{'mail miss/extra/diff':>20} {'events miss/extra/diff':>22} "
                  f"{'stored':>11}  result")  # fmt: skip
        print(header)
        print("-" * len(header))
        results: list[Trial] = []
        for n in range(1, args.trials + 1):
            t = trial(n, profile, source, ids, rng, args.churn_ms / 1000)
            results.append(t)
            result = "identical" if t.identical else f"DIFFERENT {t.note}"
            print(
                f"{t.n:>5} {t.kill_after:>6.2f} {t.runs_before_kill:>4} {t.changes:>5} "
                f"{t.recovery_s:>9.2f} {trio(t.mail):>20} {trio(t.events):>22} "
                f"{f'{t.stored_mail}+{t.stored_events}':>11}  {result}",
                flush=True,
            )
        same = sum(t.identical for t in results)
        print()
        print(f"{same} of {len(results)} kill -9 trials ended identical to the emulator")
        return 0 if same == len(results) else 1
    finally:
        emu.close()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
