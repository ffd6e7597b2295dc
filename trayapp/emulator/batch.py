from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response


async def gmail_batch(request: Request) -> Response:
    return Response(status_code=501)


async def calendar_batch(request: Request) -> Response:
    return Response(status_code=501)
