"""The feed importer against a real HTTP server on 127.0.0.1 serving real-world-shaped feeds.

The pattern runs with a real Store and a real httpx client; only the engine around it is left
out (the engine's own tests run it end to end). The server is a stdlib ThreadingHTTPServer whose
routes each test configures, and which records every request it receives.
"""

from __future__ import annotations

import email.utils
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from trayapp.core.errors import ConfigProblem, Offline, RateLimited, ServerError, SyncError
from trayapp.core.patterns import UpdateContext
from trayapp.core.store import Store
from trayapp.patterns import feed as feed_module
from trayapp.patterns.feed import FeedImporter, FeedState, entry_key, parse_retry_after

FEEDS = Path(__file__).resolve().parents[1] / "data" / "feeds"
NOW = datetime(2024, 6, 5, 12, 0, tzinfo=UTC)


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # hold the request until the server stops (timeouts)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(
                    Seen(self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.hang:
                    server.release.wait(30)
                    return
                if route.status == 200 and self._not_modified(route):
                    self.send_response(304)
                    self._validators(route)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                self._validators(route)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(route.body)

            def _not_modified(self, route: Route) -> bool:
                inm = self.headers.get("If-None-Match")
                if route.etag is not None and inm is not None:
                    return inm == route.etag
                ims = self.headers.get("If-Modified-Since")
                return route.last_modified is not None and ims == route.last_modified

            def _validators(self, route: Route) -> None:
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.last_modified:
                    self.send_header("Last-Modified", route.last_modified)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve_file(self, path: str, name: str, **kw: Any) -> Route:
        route = Route(body=(FEEDS / name).read_bytes(), **kw)
        self.routes[path] = route
        return route

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer()
    srv.thread.start()
    yield srv
    srv.release.set()
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path / "store.db")
    yield s
    s.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        yield client


PATTERN = FeedImporter()


def make_ctx(
    store: Store, http: httpx.AsyncClient, url: str, charm_id: str = "news", **settings: Any
) -> UpdateContext[Any]:
    return UpdateContext(
        charm_id=charm_id,
        settings=PATTERN.validate_settings({"url": url, **settings}),
        account_id=None,
        store=store,
        specs={s.name: s for s in PATTERN.cells},
        bindings={s.name: f"charm:{charm_id}:{s.name}" for s in PATTERN.cells},
        collections=PATTERN.collections,
        http=http,
        now=lambda: NOW,
    )


def items(store: Store, charm_id: str = "news") -> dict[str, Any]:
    return dict(store.collection(f"charm:{charm_id}:items").items())


class WriteSpy:
    """Sees every row the store's connection changes from now on (SQLite's total_changes)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._start = store._db().total_changes

    @property
    def changes(self) -> int:
        return self._store._db().total_changes - self._start


# --- importing ---------------------------------------------------------------------------------


async def test_rss_with_guids_imports_every_item_keyed_by_guid(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/feed.xml", "rss2-guid.xml")
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed.xml")))

    assert (report.added, report.updated, report.removed) == (3, 0, 0)
    got = items(store)
    assert set(got) == {
        "https://blog.example.org/?p=1042",
        "https://blog.example.org/?p=1037",
        "https://blog.example.org/?p=1001",
    }
    post = got["https://blog.example.org/?p=1042"]
    assert post["title"] == "Shipping incremental sync"
    assert post["link"] == "https://blog.example.org/2024/05/14/incremental-sync/"
    assert post["author"] == "Ada Lovelace"
    assert post["published"] == "2024-05-14T09:30:00+00:00"
    assert post["tags"] == ["Engineering", "Sync"]
    assert "<em>what changed</em>" in post["content"]
    # Newest first by publication date.
    newest = store.collection("charm:news:items").items(newest_first=True)
    assert newest[0][1]["title"] == "Shipping incremental sync"
    state = store.cell("charm:news:state", FeedState, FeedState()).get()
    assert state.title == "Example Engineering Blog"
    assert state.url == server.url("/feed.xml")


async def test_rerun_of_an_unchanged_feed_without_validators_changes_nothing(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/feed.xml", "rss2-guid.xml")
    ctx = make_ctx(store, http, server.url("/feed.xml"))
    await PATTERN.bg_updater(ctx)
    spy = WriteSpy(store)

    report = await PATTERN.bg_updater(ctx)

    assert (report.added, report.updated, report.removed) == (0, 0, 0)
    assert spy.changes == 0
    assert server.count("/feed.xml") == 2  # no validators: a full GET each time


async def test_changed_feed_counts_added_and_updated(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    route = server.serve_file("/feed.xml", "rss2-guid.xml")
    ctx = make_ctx(store, http, server.url("/feed.xml"))
    await PATTERN.bg_updater(ctx)
    route.body = (FEEDS / "rss2-guid-updated.xml").read_bytes()

    report = await PATTERN.bg_updater(ctx)

    assert (report.added, report.updated, report.removed) == (1, 1, 0)
    got = items(store)
    assert got["https://blog.example.org/?p=1042"]["title"] == "Shipping incremental sync (updated)"
    assert got["https://blog.example.org/?p=1050"]["title"] == "Timeouts that really stop the work"


async def test_rss_without_guid_keys_by_link_then_by_title_and_date_hash(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/notices.rss", "rss2-noguid.xml", content_type="text/xml")
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/notices.rss")))

    assert report.added == 3
    keys = set(items(store))
    assert "http://council.example.net/notices/2024-051.html" in keys
    assert "http://council.example.net/notices/2024-050.html" in keys
    hashed = [k for k in keys if k.startswith("sha256:")]
    assert len(hashed) == 1
    assert items(store)[hashed[0]]["title"] == "Bin collection moved"
    # The hash is stable: a second run finds the same item.
    again = await PATTERN.bg_updater(make_ctx(store, http, server.url("/notices.rss")))
    assert (again.added, again.updated) == (0, 0)


async def test_atom_feed_with_relative_links(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/releases.atom", "atom.xml", content_type="application/atom+xml")
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/releases.atom")))

    assert report.added == 2
    release = items(store)["tag:releases.example.com,2024:Release/v2.1.0"]
    assert release["link"] == "https://releases.example.com/releases/tag/v2.1.0"
    assert release["published"] == "2024-06-01T09:58:41+00:00"  # normalised to UTC
    assert release["author"] == "release-bot"
    assert "<h2>Features</h2>" in release["content"]
    undated_pub = items(store)["tag:releases.example.com,2024:Release/v2.0.1"]
    assert (
        undated_pub["published"] is None and undated_pub["updated"] == "2024-05-10T08:00:00+00:00"
    )


@pytest.mark.parametrize(
    ("name", "ctype", "titles"),
    [
        (
            "nonascii.xml",
            "application/rss+xml; charset=utf-8",
            {"Ouverture d’été : crêpes & glaces 🍦", "東京の新しい店舗"},
        ),
        # Declared ISO-8859-1 in the prolog, served without a charset.
        ("latin1.xml", "application/xml", {"Schöne Grüße aus Köln"}),
        # text/xml without a charset (a common server default): RFC 3023 says us-ascii, the
        # prolog says otherwise, and the prolog wins. Nothing is wrong with these feeds.
        ("nonascii.xml", "text/xml", {"Ouverture d’été : crêpes & glaces 🍦", "東京の新しい店舗"}),
        ("latin1.xml", "text/xml", {"Schöne Grüße aus Köln"}),
    ],
)
async def test_non_ascii_feeds_decode_correctly(
    server: FeedServer,
    store: Store,
    http: httpx.AsyncClient,
    name: str,
    ctype: str,
    titles: set[str],
) -> None:
    server.serve_file("/f", name, content_type=ctype)
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/f")))
    assert {v["title"] for v in items(store).values()} == titles
    assert report.message == ""  # no "not well-formed" warning for a feed that is fine


async def test_max_items_keeps_only_the_newest(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/feed.xml", "rss2-guid-updated.xml")
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed.xml"), max_items=2))

    assert (report.added, report.removed) == (4, 2)
    assert {v["title"] for v in items(store).values()} == {
        "Timeouts that really stop the work",
        "Shipping incremental sync (updated)",
    }


# --- conditional GET -----------------------------------------------------------------------------


async def test_etag_match_costs_one_request_and_writes_nothing(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/feed.xml", "rss2-guid.xml", etag='W/"v1-abc"')
    ctx = make_ctx(store, http, server.url("/feed.xml"))
    await PATTERN.bg_updater(ctx)
    assert store.cell("charm:news:state", FeedState, FeedState()).get().etag == 'W/"v1-abc"'
    spy = WriteSpy(store)
    before = len(server.requests)

    report = await PATTERN.bg_updater(ctx)

    assert len(server.requests) == before + 1
    assert server.requests[-1].headers["if-none-match"] == 'W/"v1-abc"'
    assert report.changed == 0 and report.message == "not modified"
    assert spy.changes == 0


async def test_last_modified_match_costs_one_request_and_writes_nothing(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    stamp = "Tue, 14 May 2024 09:30:00 GMT"
    server.serve_file("/feed.xml", "rss2-guid.xml", last_modified=stamp)
    ctx = make_ctx(store, http, server.url("/feed.xml"))
    await PATTERN.bg_updater(ctx)
    spy = WriteSpy(store)
    before = len(server.requests)

    report = await PATTERN.bg_updater(ctx)

    assert len(server.requests) == before + 1
    assert server.requests[-1].headers["if-modified-since"] == stamp
    assert "if-none-match" not in server.requests[-1].headers
    assert report.changed == 0
    assert spy.changes == 0


async def test_new_etag_after_a_change_is_stored_with_the_items(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    route = server.serve_file("/feed.xml", "rss2-guid.xml", etag='"v1"')
    ctx = make_ctx(store, http, server.url("/feed.xml"))
    await PATTERN.bg_updater(ctx)
    route.body, route.etag = (FEEDS / "rss2-guid-updated.xml").read_bytes(), '"v2"'

    report = await PATTERN.bg_updater(ctx)

    assert report.added == 1
    assert store.cell("charm:news:state", FeedState, FeedState()).get().etag == '"v2"'


async def test_validators_of_another_url_are_not_sent(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/a.xml", "rss2-guid.xml", etag='"a"')
    server.serve_file("/b.xml", "atom.xml", etag='"a"')
    await PATTERN.bg_updater(make_ctx(store, http, server.url("/a.xml")))

    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/b.xml")))

    assert "if-none-match" not in server.requests[-1].headers
    assert report.added == 2


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ctype", "error"),
    [
        # Damaged XML (here an S3 error document) may be a passing server fault: server_error.
        ("malformed.xml", "application/xml", ServerError),
        # A web page where the feed should be: the URL is wrong, the user must fix it.
        ("not-a-feed.html", "text/html", ConfigProblem),
        ("not-a-feed.html", "application/octet-stream", ConfigProblem),  # sniffed as HTML
    ],
)
async def test_a_body_that_is_not_a_feed_writes_nothing_and_says_what_is_wrong(
    server: FeedServer,
    store: Store,
    http: httpx.AsyncClient,
    name: str,
    ctype: str,
    error: type[SyncError],
) -> None:
    server.serve_file("/feed", name, content_type=ctype, etag='"x"')
    spy = WriteSpy(store)

    with pytest.raises(error, match=r"not an RSS or Atom feed .*check the charm's url") as info:
        await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed")))
    assert type(info.value) is error

    assert spy.changes == 0
    assert items(store) == {}


@pytest.mark.parametrize(
    ("status", "kind", "match"),
    [
        (404, ConfigProblem, r"not found at 127\.0\.0\.1 \(HTTP 404\); check the charm's url"),
        (410, ConfigProblem, r"feed no longer exists .*HTTP 410.*check the charm's url"),
        (403, ConfigProblem, r"refused access .*HTTP 403.*check the charm's url"),
        (400, ConfigProblem, r"HTTP 400 instead of the feed; check the charm's url"),
        (500, ServerError, r"server error \(HTTP 500\)"),
        (503, ServerError, r"server error \(HTTP 503\)"),
    ],
)
async def test_http_errors_map_to_clear_outcomes(
    server: FeedServer,
    store: Store,
    http: httpx.AsyncClient,
    status: int,
    kind: type[SyncError],
    match: str,
) -> None:
    server.routes["/feed"] = Route(status=status, body=b"nope", content_type="text/plain")
    with pytest.raises(kind, match=match) as info:
        await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed")))
    assert type(info.value) is kind


async def test_error_messages_never_carry_the_url_query(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    url = server.url("/private.rss?key=s3cr3t-feed-token")
    with pytest.raises(SyncError) as info:
        await PATTERN.bg_updater(make_ctx(store, http, url))
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        ("Wed, 05 Jun 2024 12:30:00 GMT", datetime(2024, 6, 5, 12, 30, tzinfo=UTC)),
        (None, None),
    ],
)
async def test_429_is_rate_limited_and_honours_retry_after(
    server: FeedServer,
    store: Store,
    http: httpx.AsyncClient,
    retry_after: str | None,
    expected: datetime | None,
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    server.routes["/feed"] = Route(status=429, body=b"slow down", headers=headers)
    with pytest.raises(RateLimited) as info:
        await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed")))
    assert info.value.retry_after == expected


async def test_connection_refused_is_offline(store: Store, http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Offline, match=r"cannot reach 127\.0\.0\.1"):
        await PATTERN.bg_updater(make_ctx(store, http, f"http://127.0.0.1:{port}/feed.xml"))


async def test_a_server_that_never_answers_is_offline_after_the_client_timeout(
    server: FeedServer, store: Store
) -> None:
    server.routes["/feed"] = Route(hang=True)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.5)) as client:
        with pytest.raises(Offline, match="timed out"):
            await PATTERN.bg_updater(make_ctx(store, client, server.url("/feed")))


async def test_redirects_are_followed(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    server.serve_file("/new.xml", "atom.xml", content_type="application/atom+xml")
    server.routes["/old.xml"] = Route(status=301, headers={"Location": "/new.xml"})
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/old.xml")))
    assert report.added == 2


async def test_an_oversized_body_is_refused(
    server: FeedServer, store: Store, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "MAX_FEED_BYTES", 1000)
    server.serve_file("/feed.xml", "rss2-guid.xml")  # ~2 kB
    with pytest.raises(ConfigProblem, match="larger than"):
        await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed.xml")))
    assert items(store) == {}


async def test_a_recoverable_not_well_formed_feed_imports_with_a_warning(
    server: FeedServer, store: Store, http: httpx.AsyncClient
) -> None:
    body = (
        (FEEDS / "rss2-guid.xml")
        .read_bytes()
        .replace(b"<title>Hello, world</title>", b"<title>Hello & world</title>")
    )
    server.routes["/feed"] = Route(body=body)
    report = await PATTERN.bg_updater(make_ctx(store, http, server.url("/feed")))
    assert report.added == 3
    assert "not well-formed" in report.message


# --- small pieces --------------------------------------------------------------------------------


def test_entry_key_prefers_guid_then_link_then_hash() -> None:
    assert entry_key({"id": " g1 ", "link": "l"}) == "g1"
    assert entry_key({"link": "https://x/1"}) == "https://x/1"
    a = entry_key({"title": "T", "published": "Mon, 01 Jan 2024 00:00:00 GMT"})
    b = entry_key({"title": "T", "published": "Tue, 02 Jan 2024 00:00:00 GMT"})
    assert a.startswith("sha256:") and a != b
    assert a == entry_key({"title": "T", "published": "Mon, 01 Jan 2024 00:00:00 GMT"})


def test_parse_retry_after_ignores_garbage_and_past_dates() -> None:
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:00 GMT", NOW) == NOW
    assert parse_retry_after(
        email.utils.format_datetime(NOW + timedelta(hours=1), usegmt=True), NOW
    ) == NOW + timedelta(hours=1)


def test_parse_retry_after_is_capped_at_a_day() -> None:
    assert parse_retry_after("120", NOW) == NOW + timedelta(seconds=120)
    # "Come back in a year" (or in 10**30 s) must not silence the charm for a year.
    assert parse_retry_after(str(10**30), NOW) == NOW + timedelta(days=1)
    year = email.utils.format_datetime(NOW + timedelta(days=365), usegmt=True)
    assert parse_retry_after(year, NOW) == NOW + timedelta(days=1)


def test_needs_reset_only_when_the_url_changes() -> None:
    a = PATTERN.validate_settings({"url": "https://a.example/feed"})
    a2 = PATTERN.validate_settings({"url": "https://a.example/feed", "max_items": 5})
    b = PATTERN.validate_settings({"url": "https://b.example/feed"})
    assert not PATTERN.needs_reset(a, a2)
    assert PATTERN.needs_reset(a, b)
