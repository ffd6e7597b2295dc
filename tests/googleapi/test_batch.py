"""Batch codec and the batched-GET helper (inner retries, per-call results)."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json
import random
from collections.abc import Callable

import httpx
import pytest

from trayapp.core.errors import AuthRequired, Offline, RateLimited
from trayapp.core.retry import RetryPolicy
from trayapp.google.batch import (
    BatchCall,
    PartResponse,
    content_id_number,
    decode_batch,
    encode_batch,
    encode_reply,
    run_batched,
)
from trayapp.google.errors import GoogleRequestError

from .bodies import BODIES
from .helpers import make_api

PartHandler = Callable[[str, int], PartResponse]


def parse_batch_request(request: httpx.Request) -> list[tuple[str, str]]:
    """(Content-ID, request line) per part, read with the stdlib MIME parser like a server."""
    ctype = request.headers["content-type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    raw = f"Content-Type: {ctype}\r\n\r\n".encode() + request.content
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    parts = []
    for part in message.get_payload():
        assert isinstance(part, email.message.Message)
        assert part.get_content_type() == "application/http"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((str(part["Content-ID"]), payload.decode().splitlines()[0]))
    return parts


def json_part(status: int, data: object) -> PartResponse:
    return PartResponse(status, {"content-type": "application/json"}, json.dumps(data).encode())


def canned_part(name: str) -> PartResponse:
    status, headers, body = BODIES[name]
    return PartResponse(status, headers, body)


class BatchServer:
    """Answers batch requests part by part, in shuffled order; records what it saw."""

    def __init__(self, answer: PartHandler, *, drop: set[str] | None = None) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []  # request lines per batch
        self.auth: list[str] = []
        self.drop = drop or set()
        self.rng = random.Random(3)
        self.attempts: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path == "/batch/gmail/v1"
        self.auth.append(request.headers["authorization"])
        parts = parse_batch_request(request)
        self.batches.append([line for _, line in parts])
        replies: dict[str, PartResponse] = {}
        for cid, line in parts:
            target = line.split()[1]
            self.attempts[target] = self.attempts.get(target, 0) + 1
            if target in self.drop and self.attempts[target] == 1:
                continue  # no reply for this part, the first time
            replies[cid] = self.answer(target, self.attempts[target])
        order = list(replies)
        self.rng.shuffle(order)
        boundary = "batch_reply_xyz"
        # Build the reply by hand so each part echoes its own Content-ID as Google does.
        chunks = []
        for cid in order:
            part = replies[cid]
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{cid.strip('<>')}>\r\n\r\n"
                f"HTTP/1.1 {part.status} X\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in part.headers.items())
                + "\r\n"
            )
            chunks.append(part.body.decode() + "\r\n")
        body = ("".join(chunks) + f"--{boundary}--\r\n").encode()
        return httpx.Response(
            200, content=body, headers={"content-type": f"multipart/mixed; boundary={boundary}"}
        )


def calls(n: int) -> list[BatchCall]:
    return [
        BatchCall(
            "gmail.users.messages.get",
            f"gmail/v1/users/me/messages/m{i}",
            [("format", "metadata"), ("metadataHeaders", "From")],
        )
        for i in range(n)
    ]


def message_id(target: str) -> str:
    return target.split("?")[0].rsplit("/", 1)[1]


# ---- codec ---------------------------------------------------------------------------------


def test_encode_batch_wire_format() -> None:
    body = encode_batch(calls(2), origin_path="/", boundary="BB", id_prefix="abc")
    text = body.decode()
    assert text.startswith("--BB\r\nContent-Type: application/http\r\n")
    assert "Content-ID: <abc+1>" in text and "Content-ID: <abc+2>" in text
    assert (
        "GET /gmail/v1/users/me/messages/m0?format=metadata&metadataHeaders=From HTTP/1.1" in text
    )
    assert text.endswith("--BB--\r\n")


def test_encode_batch_keeps_a_base_path_prefix() -> None:
    body = encode_batch(calls(1), origin_path="/google/", boundary="B", id_prefix="p")
    assert "GET /google/gmail/v1/users/me/messages/m0?" in body.decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("<response-abc+3>", 3),
        ("response-abc+3", 3),
        ("<abc+12>", 12),
        ("<response-other+3>", None),
        ("<response-abc+x>", None),
        ("", None),
    ],
)
def test_content_id_matching(header: str, expected: int | None) -> None:
    assert content_id_number(header, "abc") == expected


def test_reply_round_trip_in_any_order_with_a_failing_part() -> None:
    parts = {
        3: json_part(200, {"id": "c"}),
        1: json_part(200, {"id": "a", "snippet": "caf\u00e9 \u2013 ok"}),
        2: canned_part("404-history"),
    }
    body = encode_reply(parts, boundary="R", id_prefix="pfx")
    decoded = decode_batch("multipart/mixed; boundary=R", body, id_prefix="pfx")
    assert set(decoded) == {1, 2, 3}
    assert json.loads(decoded[1].body) == {"id": "a", "snippet": "caf\u00e9 \u2013 ok"}
    assert decoded[2].status == 404
    assert decoded[2].headers["content-type"].startswith("application/json")


def test_decode_tolerates_lf_only_and_ignores_unknown_or_duplicate_ids() -> None:
    body = (
        b"preamble\n--R\nContent-Type: application/http\nContent-ID: <response-p+1>\n\n"
        b'HTTP/1.1 200 OK\nContent-Type: application/json\n\n{"id": "x"}\n'
        b"--R\nContent-Type: application/http\nContent-ID: <response-p+1>\n\n"
        b'HTTP/1.1 200 OK\n\n{"id": "dup"}\n'
        b"--R\nContent-Type: application/http\nContent-ID: <response-zzz+2>\n\n"
        b"HTTP/1.1 200 OK\n\n{}\n--R--\n"
    )
    decoded = decode_batch("multipart/mixed; boundary=R", body, id_prefix="p")
    assert list(decoded) == [1]
    assert json.loads(decoded[1].body) == {"id": "x"}


def test_decode_refuses_a_non_multipart_reply() -> None:
    with pytest.raises(ValueError):
        decode_batch("application/json", b"{}", id_prefix="p")


# ---- run_batched ---------------------------------------------------------------------------


async def test_batches_of_at_most_50_and_results_in_call_order() -> None:
    server = BatchServer(lambda target, _: json_part(200, {"id": message_id(target)}))
    api, _, _, _ = make_api(server)
    async with api:
        results = await run_batched(api, "gmail", calls(120))
    assert [len(b) for b in server.batches] == [50, 50, 20]
    assert [r.data and r.data["id"] for r in results] == [f"m{i}" for i in range(120)]
    assert api.quota.gmail.spent == 120 * 5  # a batch costs the sum of its parts


async def test_failing_part_is_retried_alone() -> None:
    def answer(target: str, attempt: int) -> PartResponse:
        if message_id(target) == "m7" and attempt == 1:
            return canned_part("429-rateLimitExceeded")
        if message_id(target) == "m9" and attempt <= 2:
            return canned_part("503-backendError")
        return json_part(200, {"id": message_id(target)})

    server = BatchServer(answer)
    api, _, clock, _ = make_api(server)
    async with api:
        results = await run_batched(api, "gmail", calls(10))
    assert all(r.ok for r in results)
    assert len(server.batches) == 3
    assert [message_id(line.split()[1]) for line in server.batches[1]] == ["m7", "m9"]
    assert [message_id(line.split()[1]) for line in server.batches[2]] == ["m9"]
    assert len(clock.waits) == 2  # backoff before each retry round


async def test_missing_part_is_retried() -> None:
    server = BatchServer(
        lambda target, _: json_part(200, {"id": message_id(target)}),
        drop={"/gmail/v1/users/me/messages/m1?format=metadata&metadataHeaders=From"},
    )
    api, _, _, _ = make_api(server)
    async with api:
        results = await run_batched(api, "gmail", calls(3))
    assert all(r.ok for r in results)
    assert [len(b) for b in server.batches] == [3, 1]


async def test_not_found_is_a_result_not_an_exception() -> None:
    def answer(target: str, attempt: int) -> PartResponse:
        if message_id(target) == "m1":
            return canned_part("404-history")
        return json_part(200, {"id": message_id(target)})

    server = BatchServer(answer)
    api, _, _, _ = make_api(server)
    async with api:
        results = await run_batched(api, "gmail", calls(3))
        gmail_result = await api.gmail().get_messages(["m0", "m1", "m2"])
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, GoogleRequestError) and results[1].status == 404
    assert len(server.batches) == 2  # no retry of the 404 (one batch per run)
    assert list(gmail_result.messages) == ["m0", "m2"]
    assert gmail_result.not_found == ["m1"]
    assert gmail_result.errors == {}


async def test_part_that_keeps_failing_ends_as_an_error_and_the_rest_is_kept() -> None:
    def answer(target: str, attempt: int) -> PartResponse:
        if message_id(target) == "m0":
            return canned_part("429-rateLimitExceeded")
        return json_part(200, {"id": message_id(target)})

    server = BatchServer(answer)
    api, _, clock, _ = make_api(server, retry=RetryPolicy(max_attempts=3))
    async with api:
        result = await api.gmail().get_messages(["m0", "m1"])
    assert list(result.messages) == ["m1"]
    error = result.errors["m0"]
    assert isinstance(error, RateLimited) and error.retry_after is not None
    assert len(server.batches) == 3 and len(clock.waits) == 2
    with pytest.raises(RateLimited):
        result.raise_first_error()


async def test_inner_401_refreshes_once() -> None:
    def answer(target: str, attempt: int) -> PartResponse:
        return json_part(200, {"id": message_id(target)})

    server = BatchServer(answer)
    rejected: set[str] = {"Bearer tok-1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] in rejected:
            # Every part rejected: the outer POST got through, the inner calls did not.
            parts = parse_batch_request(request)
            body = "".join(
                f"--R\r\nContent-Type: application/http\r\nContent-ID: <response-"
                f"{cid.strip('<>')}>\r\n\r\nHTTP/1.1 401 Unauthorized\r\n\r\n"
                + BODIES["401-authError"][2].decode()
                + "\r\n"
                for cid, _ in parts
            )
            return httpx.Response(
                200,
                content=(body + "--R--\r\n").encode(),
                headers={"content-type": "multipart/mixed; boundary=R"},
            )
        return server(request)

    api, _, clock, tokens = make_api(handler)
    async with api:
        results = await run_batched(api, "gmail", calls(3))
    assert all(r.ok for r in results)
    assert tokens.refreshes == ["tok-1"] and clock.waits == []

    rejected.add("Bearer tok-2")
    api, _, _, tokens = make_api(handler)
    async with api:
        with pytest.raises(AuthRequired):
            await run_batched(api, "gmail", calls(3))
    assert tokens.refreshes == ["tok-1"]


async def test_outer_failure_raises_the_engine_kind_not_an_exception_group() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    api, _, _, _ = make_api(fail)
    async with api:
        with pytest.raises(Offline):
            await run_batched(api, "gmail", calls(120))


async def test_batch_size_is_bounded() -> None:
    api, rec, _, _ = make_api(lambda r: httpx.Response(500))
    async with api:
        with pytest.raises(ValueError):
            await run_batched(api, "gmail", calls(1), batch_size=101)
    assert rec.requests == []
