"""Demo seed (deterministic, fast, realistic, conforming) and the command line."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.emulator.harness import EmulatorServer, start_emulator_process
from trayapp.emulator.app import EmulatorApp
from trayapp.emulator.control import Control
from trayapp.emulator.seed import DEMO_CLIENT_ID, DEMO_EMAIL, seed_demo

from .conftest import REPO, bearer

ANCHOR = datetime(2026, 11, 2, 12, tzinfo=UTC)


def fingerprint(control: Control) -> tuple[Any, ...]:
    acct = control.state.account(DEMO_EMAIL)
    msgs = [(m.raw, tuple(m.label_ids), m.internal_date) for m in acct.mailbox.sorted_messages()]
    events = sorted(
        (
            cid,
            eid,
            json.dumps(
                {k: v for k, v in ev.items() if k not in ("created", "updated", "etag")},
                sort_keys=True,
            ),
        )
        for cid, cal in acct.calendars.calendars.items()
        for eid, ev in cal.events.items()
    )
    return tuple(msgs), tuple(events)


def test_seed_is_deterministic() -> None:
    # How fast seeding is belongs in bench/emulator.py: a wall-clock limit here failed under load.
    a, b = Control(EmulatorApp()), Control(EmulatorApp())
    info = seed_demo(a, anchor=ANCHOR)
    seed_demo(b, anchor=ANCHOR)
    assert info.message_count == 3000
    assert fingerprint(a) == fingerprint(b)
    c = Control(EmulatorApp())
    seed_demo(c, anchor=ANCHOR, seed=1)
    assert fingerprint(c) != fingerprint(a)


def test_seed_content_is_realistic() -> None:
    control = Control(EmulatorApp())
    info = seed_demo(control, anchor=ANCHOR)
    box = control.state.account(info.email).mailbox
    msgs = list(box.messages.values())
    threads: dict[str, int] = {}
    for m in msgs:
        threads[m.thread_id] = threads.get(m.thread_id, 0) + 1
    assert sum(1 for n in threads.values() if n > 1) > 300
    assert sum(1 for m in msgs if b"Content-Disposition: attachment" in m.raw) > 200
    subjects = [m.parsed.header_index["subject"][0] for m in msgs[:400]]
    assert any("会議" in s for s in subjects) and any("Zürich" in s for s in subjects)
    assert any(
        "=?utf-8?" in m.raw.decode() for m in msgs
    )  # encoded on the wire, decoded in the API
    user_labels = [lbl for lbl in box.labels.values() if lbl.type == "user"]
    assert {lbl.name for lbl in user_labels} >= {"Work", "Travel/2026"}
    assert any("SPAM" in m.label_ids for m in msgs) and any("SENT" in m.label_ids for m in msgs)
    cals = control.state.account(info.email).calendars
    assert len(info.calendar_ids) == 5
    work = cals.calendars[info.calendar_ids[1]]
    assert any(ev.get("recurrence") for ev in work.events.values())
    exceptions = [ev for ev in work.events.values() if "recurringEventId" in ev]
    assert {ev["status"] for ev in exceptions} == {"confirmed", "cancelled"}


async def test_demo_world_conforms_end_to_end() -> None:
    """Read a large part of the demo world through HTTP; strict conformance is on throughout."""
    async with EmulatorServer(demo=True) as emu:
        client = next(
            c for c in emu.control.state.clients.values() if c.client_id == DEMO_CLIENT_ID
        )
        tokens = emu.control.issue_tokens(
            DEMO_EMAIL,
            client.client_id,
            [
                "https://www.googleapis.com/auth/gmail.readonly",
                "https://www.googleapis.com/auth/calendar.readonly",
            ],
        )
        h = bearer(tokens["access_token"])
        async with httpx.AsyncClient(base_url=emu.base_url, headers=h, timeout=60) as http:
            ids: list[str] = []
            params: dict[str, Any] = {"maxResults": 500, "includeSpamTrash": "true"}
            while True:
                page = (await http.get("/gmail/v1/users/me/messages", params=params)).json()
                ids += [m["id"] for m in page["messages"]]
                if "nextPageToken" not in page:
                    break
                params["pageToken"] = page["nextPageToken"]
            assert len(ids) == 3000
            sample = ids[::15]
            for fmt in ("full", "metadata", "raw", "minimal"):
                for chunk in range(0, len(sample), 100):
                    parts = "".join(
                        f"--b\r\nContent-Type: application/http\r\nContent-ID: <{mid}>\r\n\r\n"
                        f"GET /gmail/v1/users/me/messages/{mid}?format={fmt} HTTP/1.1\r\n\r\n\r\n"
                        for mid in sample[chunk : chunk + 100]
                    )
                    resp = await http.post(
                        "/batch/gmail/v1",
                        content=(parts + "--b--\r\n").encode(),
                        headers={"content-type": "multipart/mixed; boundary=b"},
                    )
                    assert resp.status_code == 200 and resp.text.count("HTTP/1.1 200 OK") == len(
                        sample[chunk : chunk + 100]
                    )
            start = str(int(emu.control.history_id(DEMO_EMAIL)) - 10_000)
            emu.control.set_history_floor(DEMO_EMAIL, 0)
            hist = (
                await http.get(
                    "/gmail/v1/users/me/history",
                    params={"startHistoryId": start, "maxResults": 500},
                )
            ).json()
            assert "historyId" in hist
            cal_list = (await http.get("/calendar/v3/users/me/calendarList")).json()
            assert len(cal_list["items"]) == 5
            for entry in cal_list["items"]:
                path = f"/calendar/v3/calendars/{quote(entry['id'], safe='')}/events"
                for single in ("true", "false"):
                    page = await http.get(path, params={"singleEvents": single, "maxResults": 2500})
                    assert page.status_code == 200 and page.json()["items"]
        assert emu.control.request_violations() == []
        assert emu.control.response_violations() == []


def test_cli_runs_seeds_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "client_secret.json"
    proc = asyncio.run(_cli_roundtrip(config))
    assert proc == 0
    installed = json.loads(config.read_text())["installed"]
    assert installed["client_id"] == DEMO_CLIENT_ID
    assert installed["token_uri"].startswith("http://127.0.0.1:") and installed[
        "token_uri"
    ].endswith("/token")


async def _cli_roundtrip(config: Path) -> int:
    proc, facts = await start_emulator_process(
        "--seed", "demo", "--client-config", str(config), stderr=asyncio.subprocess.PIPE
    )
    try:
        assert facts["account"] == DEMO_EMAIL and facts["client_id"] == DEMO_CLIENT_ID
        assert facts["base_url"].startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=facts["base_url"]) as http:
            client = (
                await http.post(
                    "/__emu__/issue_tokens",
                    json={
                        "email": DEMO_EMAIL,
                        "client_id": DEMO_CLIENT_ID,
                        "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
                    },
                )
            ).json()["result"]
            prof = (
                await http.get("/gmail/v1/users/me/profile", headers=bearer(client["access_token"]))
            ).json()
            assert prof["messagesTotal"] == 3000
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    return code


def test_cli_main_reports_a_busy_port() -> None:
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "trayapp.emulator", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port 0" in out.stderr


def test_cli_stops_when_its_standard_input_closes() -> None:
    """``--until-stdin-closes``: the demo tray's emulator ends with the tray, even a killed one."""
    asyncio.run(_stdin_roundtrip())


async def _stdin_roundtrip() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trayapp.emulator", "--port", "0", "--json", "--until-stdin-closes",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        facts = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        async with httpx.AsyncClient(base_url=facts["base_url"]) as http:
            assert (await http.get("/__emu__/")).status_code == 200  # serving while stdin is open
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
