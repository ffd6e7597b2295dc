"""The emulator's in-memory world: virtual clock, accounts, OAuth clients and tokens, request log.

Everything the HTTP handlers and the control API touch lives in one :class:`EmulatorState`,
so ``reset()`` is a single assignment and tests never share state by accident. The state is
only mutated from the event loop thread that serves HTTP (the in-thread server marshals
control calls onto that loop), so no locks are needed.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from trayapp.emulator.calendar_store import CalendarStore
    from trayapp.emulator.faults import FaultSet
    from trayapp.emulator.gmail_store import Mailbox

ACCESS_TOKEN_LIFETIME = 3599
AUTH_CODE_TTL = 600
TESTING_REFRESH_LIFETIME = 7 * 24 * 3600
#: Google's documented cap on live refresh tokens per account and client (oldest dropped).
DEFAULT_REFRESH_TOKEN_CAP = 100
#: Scopes that do not trigger the 7-day expiry of "Testing" apps.
BASIC_SCOPES = frozenset(
    {
        "openid",
        "email",
        "profile",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
    }
)


class Clock:
    """Wall time plus an offset tests can advance: token and quota expiry use this clock."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        self.offset += seconds
        return self.now()


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible tag for a token, so logs can correlate without leaking."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class ConformanceHook(Protocol):
    """A checker of requests and responses against Google's discovery documents.

    The product never sets one; the test harness plugs in ``tests/emulator/conformance.py``
    (it needs test-only dependencies), so a non-conforming emulator response fails the test.
    """

    request_violations: list[str]
    response_violations: list[str]

    def check_request(
        self, api_method: str, method: str, path: str, query: Iterable[tuple[str, str]]
    ) -> None: ...

    def check_response(
        self,
        api_method: str,
        status: int,
        body: bytes,
        content_type: str | None,
        *,
        partial: bool = False,
    ) -> str | None: ...

    def clear(self) -> None: ...


@dataclass
class Account:
    email: str
    name: str
    id: str
    mailbox: Mailbox
    calendars: CalendarStore
    locale: str = "en"

    def userinfo_v2(self) -> dict[str, Any]:
        given, _, family = self.name.partition(" ")
        info: dict[str, Any] = {
            "id": self.id,
            "email": self.email,
            "verified_email": True,
            "name": self.name,
            "given_name": given,
            "picture": f"https://lh3.googleusercontent.com/a/emu-{self.id}=s96-c",
            "locale": self.locale,
        }
        if family:
            info["family_name"] = family
        domain = self.email.partition("@")[2]
        if domain not in ("gmail.com", "googlemail.com"):
            info["hd"] = domain
        return info

    def userinfo_oidc(self) -> dict[str, Any]:
        v2 = self.userinfo_v2()
        out = {"sub": self.id, "email": self.email, "email_verified": True, "name": self.name}
        for key in ("given_name", "family_name", "picture", "locale", "hd"):
            if key in v2:
                out[key] = v2[key]
        return out


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    testing: bool = False
    name: str = "Pattern Sync (emulated)"


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    email: str
    challenge: str | None
    challenge_method: str | None
    expires_at: float
    issue_refresh: bool
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    email: str
    client_id: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    email: str
    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    refresh_token: str | None
    revoked: bool = False


@dataclass
class ConsentSettings:
    """How the consent page behaves: who is signed in, whether it approves by itself."""

    default_account: str | None = None
    auto_approve: bool = False
    deny: bool = False
    #: "allow" or "deny": the page clicks that button by script once loaded (a real browser
    #: still submits the form), so headless browser tests need no automation protocol.
    auto_submit: str | None = None


@dataclass
class QuotaSettings:
    gmail_units_per_minute: int = 15_000
    gmail_concurrency: int = 10
    calendar_requests_per_minute: int = 600
    enabled: bool = True


@dataclass
class LogEntry:
    """One request, as tests assert on it. Authorization is reduced to scheme + fingerprint."""

    seq: int
    timestamp: float
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    api_method: str | None = None
    account: str | None = None
    batch_part: bool = False
    fault: str | None = None

    def query_values(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    @property
    def bearer_present(self) -> bool:
        return self.headers.get("authorization", "").startswith("Bearer ")

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "timestamp": self.timestamp,
            "method": self.method,
            "path": self.path,
            "query": [list(kv) for kv in self.query],
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace")[:4096],
            "status": self.status,
            "api_method": self.api_method,
            "account": self.account,
            "batch_part": self.batch_part,
            "fault": self.fault,
        }


REDACTED_FORM_KEYS = ("client_secret", "refresh_token", "code", "code_verifier", "token")


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    out = dict(headers)
    auth = out.get("authorization")
    if auth:
        scheme, _, cred = auth.partition(" ")
        out["authorization"] = f"{scheme} {fingerprint(cred)}"
    return out


def new_token(prefix: str, nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


@dataclass
class _Window:
    entries: deque[tuple[float, int]]
    total: int = 0


class QuotaUsage:
    """Sliding one-minute windows of cost units per (service, user), on the virtual clock."""

    WINDOW = 60.0

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], _Window] = {}

    def charge(self, key: tuple[str, str], now: float, cost: int, limit: int) -> float | None:
        """Charge ``cost`` and return None; or, over the limit, charge nothing and return the
        time at which enough units will have left the window for this request to fit."""
        window = self.windows.setdefault(key, _Window(deque()))
        while window.entries and window.entries[0][0] <= now - self.WINDOW:
            window.total -= window.entries.popleft()[1]
        if window.total + cost <= limit:
            window.entries.append((now, cost))
            window.total += cost
            return None
        remaining = window.total
        for at, units in window.entries:
            remaining -= units
            if remaining + cost <= limit:
                return at + self.WINDOW
        return now + self.WINDOW


class EmulatorState:
    """All mutable emulator state. Construct a new one to reset."""

    def __init__(self, seed: int | None = None) -> None:
        from trayapp.emulator.faults import FaultSet

        self.clock = Clock()
        self.seed = seed
        self.rng = random.Random(seed)
        self.accounts: dict[str, Account] = {}
        self.clients: dict[str, OAuthClient] = {}
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        #: (email, client_id) -> scopes the user has granted (for include_granted_scopes).
        self.grants: dict[tuple[str, str], set[str]] = {}
        self.refresh_token_cap = DEFAULT_REFRESH_TOKEN_CAP
        self.consent = ConsentSettings()
        self.quota = QuotaSettings()
        self.quota_usage = QuotaUsage()
        self.faults: FaultSet = FaultSet(self.rng)
        self.log: deque[LogEntry] = deque(maxlen=20_000)
        self.log_seq = 0
        self.batch_shuffle = False
        self.batch_duplicate = False
        #: Calendar sync tokens older than this (virtual seconds) answer 410; None: never.
        self.sync_token_ttl: float | None = None
        #: Cancelled Calendar events are forgotten this long (virtual seconds) after their
        #: deletion, and sync tokens from before a forgotten deletion answer 410; None: never.
        self.cancelled_event_ttl: float | None = None
        #: events.list updatedMin further back than this answers 410 updatedMinTooLongAgo.
        self.updated_min_limit: float | None = None
        #: Gmail history older than this (virtual seconds) is gone: older startHistoryIds 404.
        self.history_retention: float | None = None
        self.emit_refresh_token_expires_in = False
        #: Set by the test harness only (tests/emulator/conformance.py).
        self.conformance: ConformanceHook | None = None
        self.next_account_number = 100000000000000000000

    # ---- accounts and clients ----

    def account(self, email: str) -> Account:
        try:
            return self.accounts[email.lower()]
        except KeyError:
            raise KeyError(
                f"no emulated account {email!r}; create it with create_account"
            ) from None

    def create_account(self, email: str, name: str | None = None) -> Account:
        from trayapp.emulator.calendar_store import CalendarStore
        from trayapp.emulator.gmail_store import Mailbox

        key = email.lower()
        if key in self.accounts:
            return self.accounts[key]
        self.next_account_number += self.rng.randrange(1, 10_000_000)
        display = name or email.partition("@")[0].replace(".", " ").title()
        # Each account has its own RNG (seeded from the state's seed and the address), so its
        # ids do not depend on what happened to other accounts.
        acct_rng = random.Random(f"{self.seed}:{key}") if self.seed is not None else random.Random()
        acct = Account(
            email=email,
            name=display,
            id=str(self.next_account_number),
            mailbox=Mailbox(email, self.clock, acct_rng),
            calendars=CalendarStore(email, display, self.clock, acct_rng),
        )
        self.accounts[key] = acct
        if self.consent.default_account is None:
            self.consent.default_account = email
        return acct

    def create_client(
        self, client_id: str | None = None, client_secret: str | None = None, testing: bool = False
    ) -> OAuthClient:
        project = self.rng.randrange(10**11, 10**12)
        cid = client_id or f"{project}-{secrets.token_hex(16)}.apps.googleusercontent.com"
        secret = client_secret or ("GOCSPX-" + secrets.token_urlsafe(21))
        client = OAuthClient(cid, secret, testing)
        self.clients[cid] = client
        return client

    # ---- tokens ----

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        email: str,
        challenge: str | None,
        challenge_method: str | None,
        issue_refresh: bool,
    ) -> AuthCode:
        code = AuthCode(
            code=new_token("4/0Aemu", 36),
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            email=email,
            challenge=challenge,
            challenge_method=challenge_method,
            expires_at=self.clock.now() + AUTH_CODE_TTL,
            issue_refresh=issue_refresh,
        )
        self.codes[code.code] = code
        return code

    def issue_refresh_token(
        self, email: str, client_id: str, scopes: tuple[str, ...]
    ) -> RefreshToken:
        now = self.clock.now()
        client = self.clients.get(client_id)
        expires_at = None
        if client is not None and client.testing and not set(scopes) <= BASIC_SCOPES:
            expires_at = now + TESTING_REFRESH_LIFETIME
        tok = RefreshToken(
            new_token("1//emu-", 48), email.lower(), client_id, scopes, now, expires_at
        )
        self.refresh_tokens[tok.token] = tok
        live = [
            t
            for t in self.refresh_tokens.values()
            if t.email == tok.email and t.client_id == client_id and not t.revoked
        ]
        live.sort(key=lambda t: t.issued_at)
        # Google silently invalidates the oldest token past the per-client cap.
        for old in live[: max(0, len(live) - self.refresh_token_cap)]:
            self.revoke_refresh(old)
        return tok

    def issue_access_token(
        self, email: str, client_id: str, scopes: tuple[str, ...], refresh_token: str | None
    ) -> AccessToken:
        self._prune_access_tokens()
        tok = AccessToken(
            new_token("ya29.emu-", 48),
            email.lower(),
            client_id,
            scopes,
            self.clock.now() + ACCESS_TOKEN_LIFETIME,
            refresh_token,
        )
        self.access_tokens[tok.token] = tok
        return tok

    def _prune_access_tokens(self) -> None:
        # Keeps the table bounded in long demo sessions; dead tokens still answer 401 either way.
        if len(self.access_tokens) < 50_000:
            return
        now = self.clock.now()
        for key in [k for k, t in self.access_tokens.items() if t.expires_at < now - 3600]:
            del self.access_tokens[key]

    def refresh_valid(self, tok: RefreshToken | None) -> bool:
        if tok is None or tok.revoked:
            return False
        return tok.expires_at is None or tok.expires_at > self.clock.now()

    def access_valid(self, tok: AccessToken | None) -> bool:
        if tok is None or tok.revoked or tok.expires_at <= self.clock.now():
            return False
        if tok.refresh_token is not None:
            parent = self.refresh_tokens.get(tok.refresh_token)
            if parent is not None and parent.revoked:
                return False
        return True

    def revoke_refresh(self, tok: RefreshToken) -> None:
        tok.revoked = True
        for at in self.access_tokens.values():
            if at.refresh_token == tok.token:
                at.revoked = True

    def token_response(
        self, access: AccessToken, refresh: RefreshToken | None, include_refresh: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": max(0, round(access.expires_at - self.clock.now())),
            "scope": " ".join(access.scopes),
            "token_type": "Bearer",
        }
        if include_refresh and refresh is not None:
            body["refresh_token"] = refresh.token
            if self.emit_refresh_token_expires_in and refresh.expires_at is not None:
                body["refresh_token_expires_in"] = round(refresh.expires_at - self.clock.now())
        return body

    # ---- request log ----

    def record(self, entry: LogEntry) -> None:
        self.log.append(entry)

    def next_seq(self) -> int:
        self.log_seq += 1
        return self.log_seq
