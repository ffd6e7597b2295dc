"""Conformance to Google's discovery documents: a reusable oracle for responses and requests.

The discovery documents shipped in ``google-api-python-client`` (a test dependency, pinned to
2.202.0) are converted to JSON Schema as reference section 1.4 describes: ``$ref`` to
``$defs``, int64/uint64 strings to decimal patterns, ``format: byte`` to base64(url), enums
kept, and in strict mode ``additionalProperties: false`` so nothing can invent fields.
Discovery has no required fields and cannot express cross-field rules, so the invariants
Google's docs state in prose (exactly one of nextPageToken/nextSyncToken on events and
calendarList pages; no empty ``history``/``messages`` arrays) are checked by hand.

googleapiclient and jsonschema are imported lazily: the emulator itself (demo mode) never
needs them. Use it directly::

    conf = Conformance.load()
    conf.validate_response("gmail.users.messages.get", message_json)   # -> list of problems
    conf.validate_request("calendar.events.list", "GET", path, query)   # -> list of problems

or through ``EmulatorServer(conformance=True)``, which checks every request and response.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

DISCOVERY_DOCS = ("gmail.v1", "calendar.v3", "oauth2.v2")
INT64_PATTERN = r"^-?\d+$"
BYTES_PATTERN = r"^[A-Za-z0-9+/_-]*={0,2}$"

#: Google's error envelope (reference section 3.1); no discovery schema covers it.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "additionalProperties": False,
            "required": ["code", "message", "errors"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "details": {"type": "array"},
                "errors": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["message", "domain", "reason"],
                        "properties": {
                            "message": {"type": "string"},
                            "domain": {"type": "string"},
                            "reason": {"type": "string"},
                            "location": {"type": "string"},
                            "locationType": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def load_discovery(name: str) -> dict[str, Any]:
    """Load ``gmail.v1`` / ``calendar.v3`` / ``oauth2.v2`` from google-api-python-client."""
    import importlib.resources

    try:
        root = importlib.resources.files("googleapiclient")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "conformance checking needs the test dependency google-api-python-client==2.202.0 "
            "(pip install -e '.[test]'), or start EmulatorServer(conformance=False)"
        ) from exc
    doc: dict[str, Any] = json.loads(
        (root / f"discovery_cache/documents/{name}.json").read_text("utf-8")
    )
    return doc


def to_json_schema(schema: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    """Convert one discovery schema node to JSON Schema (reference section 1.4)."""
    if "$ref" in schema:
        return {"$ref": f"#/$defs/{schema['$ref']}"}
    kind = schema.get("type")
    out: dict[str, Any]
    if kind == "object":
        out = {"type": "object"}
        props = schema.get("properties")
        if props is not None:
            out["properties"] = {k: to_json_schema(v, strict=strict) for k, v in props.items()}
        extra = schema.get("additionalProperties")
        if extra is not None:
            out["additionalProperties"] = to_json_schema(extra, strict=strict)
        elif strict:
            out["additionalProperties"] = False
        return out
    if kind == "array":
        return {"type": "array", "items": to_json_schema(schema.get("items", {}), strict=strict)}
    if kind == "string":
        out = {"type": "string"}
        fmt = schema.get("format")
        if fmt in ("int64", "uint64"):
            out["pattern"] = INT64_PATTERN
        elif fmt == "byte":
            out["pattern"] = BYTES_PATTERN
        if "enum" in schema:
            out["enum"] = list(schema["enum"])
        return out
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    return {}


@dataclass(frozen=True)
class MethodSpec:
    id: str
    http_method: str
    path_regex: re.Pattern[str]
    parameters: dict[str, dict[str, Any]]
    response: str | None
    scopes: frozenset[str]
    api: str


def _walk_methods(resource: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from resource.get("methods", {}).values()
    for sub in resource.get("resources", {}).values():
        yield from _walk_methods(sub)


class Conformance:
    """Checks requests and responses; collects violations when used by the emulator."""

    def __init__(self, docs: dict[str, dict[str, Any]], *, strict: bool = True) -> None:
        import importlib

        # Imported by name: jsonschema is a test dependency without bundled type stubs.
        draft: Any = importlib.import_module("jsonschema").Draft202012Validator
        self.strict = strict
        self.methods: dict[str, MethodSpec] = {}
        self._validators: dict[tuple[str, str], Any] = {}
        self._defs: dict[str, dict[str, Any]] = {}
        self._validator_cls = draft
        self.request_violations: list[str] = []
        self.response_violations: list[str] = []
        for api, doc in docs.items():
            self._defs[api] = {
                name: to_json_schema(s, strict=strict) for name, s in doc.get("schemas", {}).items()
            }
            for m in _walk_methods(doc):
                flat = doc.get("servicePath", "") + m.get("flatPath", m["path"])
                regex = re.compile("^/" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(flat)) + "$")
                params = {**doc.get("parameters", {}), **m.get("parameters", {})}
                resp = m.get("response", {}).get("$ref")
                self.methods[m["id"]] = MethodSpec(
                    m["id"],
                    m["httpMethod"],
                    regex,
                    params,
                    resp,
                    frozenset(m.get("scopes", [])),
                    api,
                )
        self._error_validator = draft(ERROR_SCHEMA)

    @classmethod
    def load(cls, strict: bool = True) -> Conformance:
        return _load_cached(strict).fresh()

    def fresh(self) -> Conformance:
        """A copy sharing the (expensive) compiled schemas but with empty violation lists."""
        clone = object.__new__(Conformance)
        clone.__dict__.update(self.__dict__)
        clone.request_violations = []
        clone.response_violations = []
        return clone

    def clear(self) -> None:
        self.request_violations.clear()
        self.response_violations.clear()

    # ---- responses ----

    def _validator(self, api: str, schema_name: str) -> Any:
        key = (api, schema_name)
        if key not in self._validators:
            root = {"$defs": self._defs[api], "$ref": f"#/$defs/{schema_name}"}
            self._validators[key] = self._validator_cls(root)
        return self._validators[key]

    def validate_response(
        self, method_id: str, body: Any, status: int = 200, *, partial: bool = False
    ) -> list[str]:
        """Problems with one decoded JSON response of ``method_id`` (empty list: conforms).

        ``partial``: the request selected ``fields``, so the hand-written invariants about
        which keys must be present do not apply (the schema still does).
        """
        if status >= 400:
            return [_fmt(e) for e in self._error_validator.iter_errors(body)]
        spec = self.methods.get(method_id)
        if spec is None or spec.response is None:
            return []
        problems = [_fmt(e) for e in self._validator(spec.api, spec.response).iter_errors(body)]
        if not partial:
            problems += invariants(method_id, body)
        return problems

    def check_response(
        self,
        api_method: str,
        status: int,
        body: bytes,
        content_type: str | None,
        *,
        partial: bool = False,
    ) -> str | None:
        """Emulator hook: returns (and records) a problem description, or None."""
        if api_method not in self.methods:
            return None
        problem: str | None = None
        if not (content_type or "").startswith("application/json"):
            problem = f"{api_method}: non-JSON response ({content_type})"
        else:
            try:
                decoded = json.loads(body)
            except ValueError:
                problem = f"{api_method}: response is not valid JSON"
            else:
                problems = self.validate_response(api_method, decoded, status, partial=partial)
                if problems:
                    problem = f"{api_method} ({status}): " + "; ".join(problems[:5])
        if problem is not None:
            self.response_violations.append(problem)
        return problem

    # ---- requests ----

    def validate_request(
        self, method_id: str, http_method: str, path: str, query: Iterable[tuple[str, str]]
    ) -> list[str]:
        spec = self.methods.get(method_id)
        if spec is None:
            return [f"unknown discovery method {method_id!r}"]
        problems: list[str] = []
        if http_method.upper() != spec.http_method:
            problems.append(f"HTTP method {http_method} but discovery says {spec.http_method}")
        if not spec.path_regex.match(path):
            problems.append(f"path {path!r} does not match {spec.path_regex.pattern}")
        counts: dict[str, int] = {}
        for name, value in query:
            counts[name] = counts.get(name, 0) + 1
            param = spec.parameters.get(name)
            if param is None or param.get("location") == "path":
                problems.append(f"unknown query parameter {name!r}")
                continue
            if counts[name] > 1 and not param.get("repeated"):
                problems.append(
                    f"parameter {name!r} is not repeated but appears {counts[name]} times"
                )
            problems += _check_value(name, value, param)
        return problems

    def check_request(
        self, api_method: str, method: str, path: str, query: Iterable[tuple[str, str]]
    ) -> None:
        if api_method not in self.methods:
            return
        q = list(query)
        for problem in self.validate_request(api_method, method, path, q):
            qs = "&".join(f"{k}={v}" for k, v in q if k not in ("access_token", "oauth_token"))
            self.request_violations.append(f"{method} {path}?{qs}: {problem}")


def _check_value(name: str, value: str, param: dict[str, Any]) -> list[str]:
    kind = param.get("type")
    if "enum" in param and value not in param["enum"]:
        return [f"{name}={value!r} is not one of {param['enum']}"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"{name}={value!r} is not a boolean (send true or false)"]
    if kind == "integer" or param.get("format") in ("int64", "uint64"):
        if not re.fullmatch(r"-?\d+", value):
            return [f"{name}={value!r} is not a decimal integer"]
        n = int(value)
        if "minimum" in param and n < int(param["minimum"]):
            return [f"{name}={n} is below the minimum {param['minimum']}"]
        if "maximum" in param and n > int(param["maximum"]):
            return [f"{name}={n} is above the maximum {param['maximum']}"]
    return []


def invariants(method_id: str, body: Any) -> list[str]:
    """Rules Google states in prose that discovery cannot express."""
    if not isinstance(body, dict):
        return []
    problems: list[str] = []
    if method_id in ("calendar.events.list", "calendar.calendarList.list"):
        if ("nextPageToken" in body) == ("nextSyncToken" in body):
            problems.append("exactly one of nextPageToken / nextSyncToken must be present")
        if "items" not in body:
            problems.append("items must be present (possibly empty)")
    if method_id == "gmail.users.history.list":
        if "history" in body and not body["history"]:
            problems.append("an empty history page omits the history key")
        if "historyId" not in body:
            problems.append("history.list always returns the current historyId")
    if method_id == "gmail.users.messages.list":
        if "messages" in body and not body["messages"]:
            problems.append("an empty messages page omits the messages key")
        if "resultSizeEstimate" not in body:
            problems.append("messages.list always returns resultSizeEstimate")
    if method_id == "gmail.users.messages.get":
        fmt_raw, fmt_payload = "raw" in body, "payload" in body
        if fmt_raw and fmt_payload:
            problems.append("raw and payload are never both present")
    return problems


def _fmt(err: Any) -> str:
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    return f"{where}: {err.message}"[:300]


@cache
def _load_cached(strict: bool) -> Conformance:
    return Conformance({name: load_discovery(name) for name in DISCOVERY_DOCS}, strict=strict)
