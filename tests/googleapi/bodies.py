"""Google error responses as captured from the real API (reference google-apis.md, section 3.2).

Each entry: name -> (status, headers, body bytes). Wording is Google's, not ours.
"""

from __future__ import annotations

import json
from typing import Any

ESF = {"content-type": "application/json; charset=UTF-8", "server": "ESF"}


def _body(code: int, message: str, errors: list[dict[str, str]], **top: Any) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": message, "errors": errors, **top}}
    ).encode()


BODIES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "401-authError": (
        401,
        {
            **ESF,
            "www-authenticate": 'Bearer realm="https://accounts.google.com/", '
            'error="invalid_token"',
        },
        _body(
            401,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
            "cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
            [
                {
                    "message": "Invalid Credentials",
                    "domain": "global",
                    "reason": "authError",
                    "location": "Authorization",
                    "locationType": "header",
                }
            ],
            status="UNAUTHENTICATED",
        ),
    ),
    "403-insufficientScope": (
        403,
        {
            **ESF,
            "www-authenticate": 'Bearer realm="https://accounts.google.com/", '
            'error="insufficient_scope", scope="https://www.googleapis.com/auth/gmail.readonly"',
        },
        _body(
            403,
            "Request had insufficient authentication scopes.",
            [
                {
                    "message": "Insufficient Permission",
                    "domain": "global",
                    "reason": "insufficientPermissions",
                }
            ],
            status="PERMISSION_DENIED",
            details=[
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                }
            ],
        ),
    ),
    "404-history": (
        404,
        ESF,
        _body(
            404,
            "Requested entity was not found.",
            [
                {
                    "message": "Requested entity was not found.",
                    "domain": "global",
                    "reason": "notFound",
                }
            ],
            status="NOT_FOUND",
        ),
    ),
    "400-startHistoryId": (
        400,
        ESF,
        _body(
            400,
            "Missing/invalid parameter: startHistoryId",
            [
                {
                    "message": "Missing/invalid parameter: startHistoryId",
                    "domain": "global",
                    "reason": "invalidArgument",
                }
            ],
        ),
    ),
    "429-rateLimitExceeded": (
        429,
        ESF,
        _body(
            429,
            "Resource has been exhausted (e.g. check quota).",
            [
                {
                    "message": "Resource has been exhausted (e.g. check quota).",
                    "domain": "global",
                    "reason": "rateLimitExceeded",
                }
            ],
            status="RESOURCE_EXHAUSTED",
        ),
    ),
    "429-concurrent": (
        429,
        ESF,
        _body(
            429,
            "Too many concurrent requests for user.",
            [
                {
                    "message": "Too many concurrent requests for user.",
                    "domain": "global",
                    "reason": "rateLimitExceeded",
                }
            ],
        ),
    ),
    "403-userRate-retry-after": (
        403,
        ESF,
        _body(
            403,
            "User-rate limit exceeded.  Retry after 2026-11-26T12:15:42.247Z",
            [
                {
                    "message": "User-rate limit exceeded.  Retry after 2026-11-26T12:15:42.247Z",
                    "domain": "global",
                    "reason": "rateLimitExceeded",
                }
            ],
        ),
    ),
    "403-quota-per-user": (
        403,
        ESF,
        _body(
            403,
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of "
            "service 'gmail.googleapis.com' for consumer 'project_number:123'.",
            [
                {
                    "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per "
                    "minute per user' of service 'gmail.googleapis.com' for consumer "
                    "'project_number:123'.",
                    "domain": "usageLimits",
                    "reason": "rateLimitExceeded",
                }
            ],
        ),
    ),
    "403-userRateLimitExceeded": (
        403,
        ESF,
        _body(
            403,
            "User Rate Limit Exceeded",
            [
                {
                    "message": "User Rate Limit Exceeded",
                    "domain": "usageLimits",
                    "reason": "userRateLimitExceeded",
                }
            ],
        ),
    ),
    "410-fullSyncRequired": (
        410,
        {**ESF, "cache-control": "no-cache, no-store, max-age=0, must-revalidate"},
        _body(
            410,
            "Sync token is no longer valid, a full sync is required.",
            [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid, a full sync is required.",
                    "locationType": "parameter",
                    "location": "syncToken",
                }
            ],
        ),
    ),
    "400-timeRangeEmpty": (
        400,
        ESF,
        _body(
            400,
            "The specified time range is empty.",
            [
                {
                    "domain": "calendar",
                    "reason": "timeRangeEmpty",
                    "message": "The specified time range is empty.",
                    "locationType": "parameter",
                    "location": "timeMax",
                }
            ],
        ),
    ),
    "500-internalError": (
        500,
        ESF,
        _body(
            500,
            "Internal Server Error",
            [
                {
                    "domain": "global",
                    "reason": "internalError",
                    "message": "We encountered an internal error. Please try again using "
                    "truncated exponential backoff.",
                }
            ],
        ),
    ),
    "503-backendError": (
        503,
        ESF,
        _body(
            503,
            "Service Unavailable",
            [
                {
                    "domain": "global",
                    "reason": "backendError",
                    "message": "We encountered an internal error. Please try again using "
                    "truncated exponential backoff.",
                }
            ],
        ),
    ),
    "502-html": (
        502,
        {"content-type": "text/html; charset=UTF-8"},
        b"<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 502 (Server "
        b"Error)!!1</title>\n  <p><b>502.</b> <ins>That\xe2\x80\x99s an error.</ins>\n",
    ),
    "503-empty": (503, {}, b""),
}
