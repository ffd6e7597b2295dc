"""Discovery conformance checking (filled in step 5)."""

from __future__ import annotations

from typing import Any


class Conformance:
    def __init__(self) -> None:
        self.request_violations: list[str] = []
        self.response_violations: list[str] = []

    @classmethod
    def load(cls, strict: bool = True) -> Conformance:
        return cls()

    def clear(self) -> None:
        self.request_violations.clear()
        self.response_violations.clear()

    def check_request(
        self, api_method: str, method: str, path: str, query: Any, entry: Any
    ) -> None:
        return None

    def check_response(
        self, api_method: str, status: int, body: bytes, content_type: str | None
    ) -> str | None:
        return None
