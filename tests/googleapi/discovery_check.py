"""Check recorded requests against Google's discovery documents (the request half of conformance).

The documents ship with google-api-python-client (pinned in the test dependencies). The emulator
will grow its own validator (``tests/emulator/conformance.py``); this one is deliberately small
and strict about what *our* client must get right: known parameters only, repeats only where
``repeated``, enum values spelled exactly as discovery spells them (``full``, not ``FULL``),
booleans exactly ``true``/``false``, integers and 64-bit ids as decimal strings, bounds, required
parameters, the HTTP method and the path template.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable
from typing import Any

DOCS = {"gmail": "gmail.v1.json", "calendar": "calendar.v3.json"}


@functools.cache
def _doc(api: str) -> dict[str, Any]:
    path = importlib.resources.files("googleapiclient") / "discovery_cache/documents" / DOCS[api]
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _walk(resources: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _walk(resource.get("resources", {}))


@functools.cache
def methods() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Method id -> (method, document)."""
    out = {}
    for api in DOCS:
        doc = _doc(api)
        for method in _walk(doc["resources"]):
            out[method["id"]] = (method, doc)
    return out


def _path_regex(doc: dict[str, Any], method: dict[str, Any]) -> re.Pattern[str]:
    template = "/" + doc["servicePath"] + method.get("flatPath", method["path"])
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$")


def check(api_method: str, http_method: str, path: str, query: list[tuple[str, str]]) -> list[str]:
    """Problems with one request, as human-readable strings (empty if it conforms)."""
    if api_method not in methods():
        return []  # OAuth, batch envelopes: not discovery methods
    method, doc = methods()[api_method]
    where = f"{api_method} {path}"
    problems = []
    if http_method.upper() != method["httpMethod"]:
        problems.append(f"{where}: HTTP {http_method}, discovery says {method['httpMethod']}")
    if not _path_regex(doc, method).match(path):
        problems.append(f"{where}: path does not match {method.get('flatPath', method['path'])}")
    params = {**doc.get("parameters", {}), **method.get("parameters", {})}
    seen: dict[str, int] = {}
    for name, value in query:
        seen[name] = seen.get(name, 0) + 1
        spec = params.get(name)
        if spec is None or spec.get("location") == "path":
            problems.append(f"{where}: unknown query parameter {name!r}")
            continue
        if seen[name] > 1 and not spec.get("repeated"):
            problems.append(f"{where}: {name!r} repeated but not a repeated parameter")
        problems += [f"{where}: {p}" for p in _value_problems(name, value, spec)]
    for name, spec in params.items():
        if spec.get("required") and spec.get("location") == "query" and name not in seen:
            problems.append(f"{where}: required parameter {name!r} missing")
    return problems


def _value_problems(name: str, value: str, spec: dict[str, Any]) -> list[str]:
    kind, fmt = spec.get("type"), spec.get("format")
    if "enum" in spec and value not in spec["enum"]:
        return [f"{name}={value!r} not one of {spec['enum']}"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"{name}={value!r} is not true/false"]
    if kind == "integer" or fmt in ("int64", "uint64"):
        if not re.fullmatch(r"-?\d+", value):
            return [f"{name}={value!r} is not an integer"]
        number = int(value)
        if "minimum" in spec and number < int(spec["minimum"]):
            return [f"{name}={value} below minimum {spec['minimum']}"]
        if "maximum" in spec and number > int(spec["maximum"]):
            return [f"{name}={value} above maximum {spec['maximum']}"]
    if fmt == "date-time" and not re.search(r"(Z|[+-]\d\d:\d\d)$", value):
        return [f"{name}={value!r} has no UTC offset"]
    return []
