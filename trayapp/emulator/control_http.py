"""The control API over HTTP: ``POST /__emu__/<operation>`` with JSON keyword arguments."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from trayapp.emulator.control import HTTP_OPERATIONS, Control
from trayapp.emulator.state import LogEntry


def _jsonable(value: Any) -> Any:
    if isinstance(value, LogEntry):
        return value.to_json()
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def control_call(request: Request) -> Response:
    op = request.path_params["op"].replace("-", "_")
    if op not in HTTP_OPERATIONS:
        return JSONResponse(
            {"error": f"unknown control operation {op!r}", "operations": sorted(HTTP_OPERATIONS)},
            404,
        )
    raw = await request.body()
    try:
        kwargs: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        if not isinstance(kwargs, dict):
            raise ValueError("the body must be a JSON object of keyword arguments")
    except ValueError as exc:
        return JSONResponse({"error": f"bad JSON body: {exc}"}, 400)
    if op == "add_message" and "raw_base64" in kwargs:
        kwargs["raw"] = base64.b64decode(kwargs.pop("raw_base64"))
    control = Control(request.scope["emu"])
    try:
        result = getattr(control, op)(**kwargs)
    except (KeyError, ValueError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return JSONResponse({"error": str(message)}, 400)
    return JSONResponse({"result": _jsonable(result)})


async def list_operations(request: Request) -> Response:
    return JSONResponse({"operations": sorted(HTTP_OPERATIONS)})


def routes() -> list[Route]:
    return [
        Route("/__emu__/", list_operations, methods=["GET"], name="emu.operations"),
        Route("/__emu__/{op}", control_call, methods=["POST"], name="emu.control"),
    ]
