"""The URL map: Google's paths (names are discovery method ids) plus the control plane."""

from __future__ import annotations

from starlette.routing import Route

from trayapp.emulator import oauth


def build_routes() -> list[Route]:
    from trayapp.emulator import batch, calendar_api, control_http, gmail_api

    return [
        Route(
            "/o/oauth2/v2/auth", oauth.authorize_endpoint, methods=["GET"], name="oauth.authorize"
        ),
        Route("/o/oauth2/auth", oauth.authorize_endpoint, methods=["GET"], name="oauth.authorize"),
        Route(
            "/o/oauth2/v2/auth/consent",
            oauth.consent_submit,
            methods=["POST"],
            name="oauth.consent",
        ),
        Route("/token", oauth.token_endpoint, methods=["POST"], name="oauth.token"),
        Route("/o/oauth2/token", oauth.token_endpoint, methods=["POST"], name="oauth.token"),
        Route("/revoke", oauth.revoke_endpoint, methods=["POST", "GET"], name="oauth.revoke"),
        Route(
            "/o/oauth2/revoke", oauth.revoke_endpoint, methods=["POST", "GET"], name="oauth.revoke"
        ),
        Route(
            "/oauth2/v2/userinfo", oauth.userinfo_v2, methods=["GET"], name="oauth2.userinfo.get"
        ),
        Route("/v1/userinfo", oauth.userinfo_v1, methods=["GET"], name="oauth2.userinfo.v1"),
        Route("/oauth2/v3/userinfo", oauth.userinfo_v1, methods=["GET"], name="oauth2.userinfo.v1"),
        *gmail_api.routes(),
        *calendar_api.routes(),
        Route("/batch/gmail/v1", batch.gmail_batch, methods=["POST"], name="gmail.batch"),
        Route("/batch", batch.gmail_batch, methods=["POST"], name="gmail.batch"),
        Route("/batch/calendar/v3", batch.calendar_batch, methods=["POST"], name="calendar.batch"),
        *control_http.routes(),
    ]
