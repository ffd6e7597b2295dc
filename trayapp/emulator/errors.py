"""Google's error bodies, verbatim, so clients are tested against what Google really sends.

Every body here comes from a captured real response listed in
``/work/shared/reference/google-apis.md`` section 3.2 (and 2.4 for the token endpoint).
Wordings marked "unverified" there are marked the same way here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

AUTH_REALM = 'Bearer realm="https://accounts.google.com/"'
DEVCONSOLE = "See https://developers.google.com/identity/sign-in/web/devconsole-project."
BACKOFF_MESSAGE = (
    "We encountered an internal error. Please try again using truncated exponential backoff."
)

#: Headers Google's front end (ESF) puts on every API error.
ERROR_HEADERS: dict[str, str] = {
    "content-type": "application/json; charset=UTF-8",
    "server": "ESF",
    "cache-control": "no-cache, no-store, max-age=0, must-revalidate",
    "vary": "Origin, X-Origin, Referer",
}


@dataclass
class ApiError(Exception):
    """An error response in Google's envelope; raised by handlers and rendered by the app."""

    code: int
    message: str
    errors: list[dict[str, str]]
    status: str | None = None
    details: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "errors": self.errors}
        if self.status is not None:
            err["status"] = self.status
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}

    def render(self) -> bytes:
        return json.dumps(self.body(), indent=2).encode()


def _one(
    code: int, message: str, domain: str, reason: str, status: str | None, **extra: str
) -> ApiError:
    error = {"message": message, "domain": domain, "reason": reason, **extra}
    return ApiError(code, message, [error], status)


def auth_error() -> ApiError:
    """Bad, expired or revoked access token."""
    err = ApiError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        f"login cookie or other valid authentication credential. {DEVCONSOLE}",
        [
            {
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }
        ],
        "UNAUTHENTICATED",
    )
    err.headers["www-authenticate"] = f'{AUTH_REALM}, error="invalid_token"'
    return err


#: The backend method Google names in ``details[0].metadata.method`` of auth errors, by
#: discovery method id. Gmail's are "caribou.api.proto.MailboxService.<Name>" (captures in
#: public issues and client code: GetProfile, ListHistory, ListMessages, CreateDraft);
#: Calendar's are "calendar.v3.<Resource>.<Verb>" (captures: CalendarList.Get, Events.Insert).
BACKEND_METHODS: dict[str, str] = {
    "gmail.users.getProfile": "caribou.api.proto.MailboxService.GetProfile",
    "gmail.users.labels.list": "caribou.api.proto.MailboxService.ListLabels",
    "gmail.users.labels.get": "caribou.api.proto.MailboxService.GetLabel",
    "gmail.users.messages.list": "caribou.api.proto.MailboxService.ListMessages",
    "gmail.users.messages.get": "caribou.api.proto.MailboxService.GetMessage",
    "gmail.users.messages.attachments.get": "caribou.api.proto.MailboxService.GetAttachment",
    "gmail.users.history.list": "caribou.api.proto.MailboxService.ListHistory",
    "calendar.calendarList.list": "calendar.v3.CalendarList.List",
    "calendar.calendarList.get": "calendar.v3.CalendarList.Get",
    "calendar.events.list": "calendar.v3.Events.List",
    "calendar.events.get": "calendar.v3.Events.Get",
    "calendar.events.instances": "calendar.v3.Events.Instances",
}


def _error_metadata(service: str, method_id: str | None) -> dict[str, str]:
    method = BACKEND_METHODS.get(method_id or "")
    return {"method": method, "service": service} if method else {"service": service}


def login_required(service: str, method_id: str | None = None) -> ApiError:
    """No credentials at all (``details[0].metadata`` names the method, as Google's does:
    ``{"method": "caribou.api.proto.MailboxService.ListHistory", "service": ...}``)."""
    err = ApiError(
        401,
        "Request is missing required authentication credential. Expected OAuth 2 access token, "
        f"login cookie or other valid authentication credential. {DEVCONSOLE}",
        [
            {
                "message": "Login Required.",
                "domain": "global",
                "reason": "required",
                "location": "Authorization",
                "locationType": "header",
            }
        ],
        "UNAUTHENTICATED",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "CREDENTIALS_MISSING",
                "domain": "googleapis.com",
                "metadata": _error_metadata(service, method_id),
            }
        ],
    )
    err.headers["www-authenticate"] = AUTH_REALM
    return err


def insufficient_scope(
    service: str, method_scopes: list[str], method_id: str | None = None
) -> ApiError:
    err = ApiError(
        403,
        "Request had insufficient authentication scopes.",
        [
            {
                "message": "Insufficient Permission",
                "domain": "global",
                "reason": "insufficientPermissions",  # as in a real capture quoted in public code
            }
        ],
        "PERMISSION_DENIED",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                "domain": "googleapis.com",
                "metadata": _error_metadata(service, method_id),
            }
        ],
    )
    err.headers["www-authenticate"] = (
        f'{AUTH_REALM}, error="insufficient_scope", scope="{" ".join(method_scopes)}"'
    )
    return err


def delegation_denied(email: str) -> ApiError:
    """Another user's mailbox: "Delegation denied for <the signed-in user>", reason forbidden
    (as seen in googleworkspace/cli#528 and google-api-nodejs-client#1751 / #2510)."""
    return _one(403, f"Delegation denied for {email}", "global", "forbidden", "PERMISSION_DENIED")


def gmail_not_found() -> ApiError:
    return _one(404, "Requested entity was not found.", "global", "notFound", "NOT_FOUND")


def calendar_not_found() -> ApiError:
    return _one(404, "Not Found", "global", "notFound", None)


def invalid_argument(message: str) -> ApiError:
    return _one(400, message, "global", "invalidArgument", "INVALID_ARGUMENT")


def bad_start_history_id() -> ApiError:
    return invalid_argument("Missing/invalid parameter: startHistoryId")


def calendar_bad_request(message: str, location: str | None = None) -> ApiError:
    # Calendar's 400 wording for parameter conflicts is unverified; shape follows Calendar errors.
    extra = {"locationType": "parameter", "location": location} if location else {}
    return _one(400, message, "global", "invalid", None, **extra)


def full_sync_required() -> ApiError:
    return _one(
        410,
        "Sync token is no longer valid, a full sync is required.",
        "calendar",
        "fullSyncRequired",
        None,
        locationType="parameter",
        location="syncToken",
    )


def updated_min_too_long_ago() -> ApiError:
    # Reason per Google's Calendar errors guide; message wording unverified.
    return _one(
        410,
        "The requested minimum modification time lies too far in the past.",
        "calendar",
        "updatedMinTooLongAgo",
        None,
        locationType="parameter",
        location="updatedMin",
    )


def time_range_empty() -> ApiError:
    return _one(
        400,
        "The specified time range is empty.",
        "calendar",
        "timeRangeEmpty",
        None,
        locationType="parameter",
        location="timeMax",
    )


def backend_error_500() -> ApiError:
    err = _one(500, BACKOFF_MESSAGE, "global", "internalError", None)
    err.message = "Internal Server Error"
    return err


def backend_error_503() -> ApiError:
    err = _one(503, BACKOFF_MESSAGE, "global", "backendError", None)
    err.message = "Service Unavailable"
    return err


def rate_limit_exceeded(code: int = 429) -> ApiError:
    return _one(
        code,
        "Resource has been exhausted (e.g. check quota).",
        "global",
        "rateLimitExceeded",
        "RESOURCE_EXHAUSTED" if code == 429 else "PERMISSION_DENIED",
    )


def too_many_concurrent() -> ApiError:
    # Gmail's current wording ends with a period (issue 13): live responses quoted in public
    # clients (a Rust Gmail client's tests/fixtures/error/concurrency_exceeded.json, quota trace
    # logs of a Python Gmail tool) read "Too many concurrent requests for user.".
    return _one(
        429,
        "Too many concurrent requests for user.",
        "global",
        "rateLimitExceeded",
        "RESOURCE_EXHAUSTED",
    )


def user_rate_retry_after(retry_at_iso: str, code: int = 429) -> ApiError:
    # Two spaces before "Retry after", exactly as Google sends it.
    msg = f"User-rate limit exceeded.  Retry after {retry_at_iso}"
    status = "RESOURCE_EXHAUSTED" if code == 429 else "PERMISSION_DENIED"
    return _one(code, msg, "global", "rateLimitExceeded", status)


def quota_exceeded_per_user(code: int = 403, project_number: str = "1234567890") -> ApiError:
    msg = (
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of "
        f"service 'gmail.googleapis.com' for consumer 'project_number:{project_number}'."
    )
    return _one(
        code,
        msg,
        "usageLimits",
        "rateLimitExceeded",
        "PERMISSION_DENIED" if code == 403 else "RESOURCE_EXHAUSTED",
    )


def user_rate_limit_legacy(code: int = 403) -> ApiError:
    return _one(code, "User Rate Limit Exceeded", "usageLimits", "userRateLimitExceeded", None)


def calendar_rate_limit(code: int = 403) -> ApiError:
    return _one(code, "Rate Limit Exceeded", "usageLimits", "rateLimitExceeded", None)


#: Google front end's HTML 502 page (non-JSON body clients must survive).
HTML_502 = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That\u2019s all we know.</ins>\n"
)


# ---- OAuth token endpoint (reference section 2.4) ----

TOKEN_EXPIRED_OR_REVOKED = "Token has been expired or revoked."


@dataclass
class OAuthError(Exception):
    """A token-endpoint error: ``{"error": ..., "error_description": ...}``."""

    status: int
    error: str
    description: str
    extra: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description, **self.extra}


def invalid_grant(description: str = TOKEN_EXPIRED_OR_REVOKED) -> OAuthError:
    return OAuthError(400, "invalid_grant", description)


def invalid_client_not_found() -> OAuthError:
    return OAuthError(401, "invalid_client", "The OAuth client was not found.")


def invalid_client_unauthorized() -> OAuthError:
    return OAuthError(401, "invalid_client", "Unauthorized")  # wording unverified


def invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


def canonical(name: str, *, retry_at_iso: str = "") -> ApiError:
    """Look up a canonical API error by the short names the fault rules use."""
    table = {
        "400-invalidArgument": lambda: invalid_argument("Invalid argument."),
        "401": auth_error,
        "401-authError": auth_error,
        "403-insufficientPermissions": lambda: insufficient_scope(
            "gmail.googleapis.com", ["https://mail.google.com/"]
        ),
        "404": gmail_not_found,
        "404-notFound": gmail_not_found,
        "410": full_sync_required,
        "410-fullSyncRequired": full_sync_required,
        "410-updatedMinTooLongAgo": updated_min_too_long_ago,
        "429": rate_limit_exceeded,
        "429-rateLimitExceeded": rate_limit_exceeded,
        "429-concurrent": too_many_concurrent,
        "429-userRateLimitExceeded-retry-after": lambda: user_rate_retry_after(retry_at_iso, 429),
        "403-userRateLimitExceeded-retry-after": lambda: user_rate_retry_after(retry_at_iso, 403),
        "403-rateLimitExceeded": lambda: rate_limit_exceeded(403),
        "403-quotaExceeded": quota_exceeded_per_user,
        "429-quotaExceeded": lambda: quota_exceeded_per_user(429),
        "403-userRateLimitExceeded": user_rate_limit_legacy,
        "403-calendarRateLimit": calendar_rate_limit,
        "429-calendarRateLimit": lambda: calendar_rate_limit(429),
        "500": backend_error_500,
        "503": backend_error_503,
    }
    try:
        return table[name]()
    except KeyError:
        raise ValueError(
            f"unknown canonical error {name!r}; known: {', '.join(sorted(table))}, 502-html"
        ) from None


CANONICAL_NAMES = [
    "400-invalidArgument",
    "401",
    "403-insufficientPermissions",
    "404",
    "410",
    "410-updatedMinTooLongAgo",
    "429",
    "429-concurrent",
    "429-userRateLimitExceeded-retry-after",
    "403-userRateLimitExceeded-retry-after",
    "403-rateLimitExceeded",
    "403-quotaExceeded",
    "429-quotaExceeded",
    "403-userRateLimitExceeded",
    "403-calendarRateLimit",
    "429-calendarRateLimit",
    "500",
    "503",
    "502-html",
]
