"""The minimal ASGI request/response layer, with hand-made scopes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from edgetwin.api.http import (
    ClientDisconnected,
    Request,
    Response,
    error_response,
    send_response,
)
from edgetwin.errors import (
    InvalidInput,
    NotModified,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthenticated,
)


def scope(
    path: bytes = b"/api/2/things/x",
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    **extra: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": path.decode(),
        "raw_path": path,
        "query_string": query,
        "headers": headers or [],
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 5000),
    }
    s.update(extra)
    return s


def receiver(*messages: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def _never() -> dict[str, Any]:
    raise AssertionError("the body must not be read")


def test_segments_are_split_before_decoding() -> None:
    r = Request(scope(b"/api/2/things/ns:a%20b/attributes/x%2Fy/%7E0"), _never)
    assert r.segments == ["", "api", "2", "things", "ns:a b", "attributes", "x/y", "~0"]
    assert r.raw_path == "/api/2/things/ns:a%20b/attributes/x%2Fy/%7E0"


def test_segments_decode_only_once() -> None:
    r = Request(scope(b"/api/2/things/a%2525b"), _never)
    assert r.segments[-1] == "a%25b"


def test_utf8_segments_and_invalid_utf8() -> None:
    assert Request(scope(b"/x/k%C3%B6ln"), _never).segments[-1] == "köln"
    with pytest.raises(InvalidInput) as info:
        Request(scope(b"/x/%FF"), _never)
    assert info.value.status == 400


def test_missing_raw_path_falls_back_to_path() -> None:
    s = scope(b"/api/2/things/a%b")
    del s["raw_path"]
    assert Request(s, _never).segments[-1] == "a%b"


def test_absolute_form_target_keeps_the_path() -> None:
    r = Request(scope(b"http://host:8080/api/2/things/x"), _never)
    assert r.segments == ["", "api", "2", "things", "x"]


def test_query_is_a_multimap_keeping_blanks() -> None:
    r = Request(scope(query=b"ids=a,b&ids=c&fields=&x&plus=a%2Bb+c"), _never)
    assert r.query == {"ids": ["a,b", "c"], "fields": [""], "x": [""], "plus": ["a+b c"]}
    assert r.query_one("ids") == "a,b"
    assert r.query_one("nope") is None


def test_headers_are_decoded_on_lookup_and_repeated_ones_joined() -> None:
    r = Request(
        scope(headers=[(b"x-thing", b"1"), (b"x-thing", b"2"), (b"content-type", b"Application/JSON; x=y")]),
        _never,
    )
    assert r.header("x-thing") == "1, 2"
    assert r.header("nope") is None
    assert r.headers == {"x-thing": "1, 2", "content-type": "Application/JSON; x=y"}
    assert r.content_type == "application/json"


def test_header_or_query_prefers_the_header() -> None:
    r = Request(scope(query=b"condition=q&timeout=5", headers=[(b"condition", b"h")]), _never)
    assert r.header_or_query("condition") == "h"
    assert r.header_or_query("timeout") == "5"
    assert r.header_or_query("channel") is None


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([(b"x-correlation-id", b"x1"), (b"correlation-id", b"c1")], b"correlation-id=q1", "x1"),
        ([(b"correlation-id", b"c1")], b"correlation-id=q1", "c1"),
        ([], b"correlation-id=q1", "q1"),
    ],
)
def test_correlation_id_sources(headers: list[tuple[bytes, bytes]], query: bytes, expected: str) -> None:
    assert Request(scope(headers=headers, query=query), _never).correlation_id == expected


def test_correlation_id_is_generated_once() -> None:
    r = Request(scope(), _never)
    first = r.correlation_id
    uuid.UUID(first)
    assert r.correlation_id == first


def test_base_url_from_host_header_or_server() -> None:
    assert Request(scope(headers=[(b"host", b"edge:9000")]), _never).base_url() == "http://edge:9000"
    assert Request(scope(), _never).base_url() == "http://127.0.0.1:8080"
    assert Request(scope(server=("::1", 80), scheme="https"), _never).base_url() == "https://[::1]:80"


def test_client_host() -> None:
    assert Request(scope(client=("10.1.2.3", 1)), _never).client_host == "10.1.2.3"
    assert Request(scope(client=None), _never).client_host is None


async def test_body_joins_chunks() -> None:
    r = Request(
        scope(method="PUT"),
        receiver(
            {"type": "http.request", "body": b"ab", "more_body": True},
            {"type": "http.request", "body": b"", "more_body": True},
            {"type": "http.request", "body": b"cd", "more_body": False},
        ),
    )
    assert await r.body(10) == b"abcd"


async def test_body_limit_from_content_length_reads_nothing() -> None:
    r = Request(scope(method="PUT", headers=[(b"content-length", b"11")]), _never)
    with pytest.raises(PayloadTooLarge) as info:
        await r.body(10)
    assert info.value.status == 413


async def test_body_limit_while_streaming_stops_reading() -> None:
    r = Request(
        scope(method="PUT"),
        receiver(
            {"type": "http.request", "body": b"123456", "more_body": True},
            {"type": "http.request", "body": b"789012", "more_body": True},
        ),
    )
    with pytest.raises(PayloadTooLarge):
        await r.body(10)


async def test_body_limit_custom_error() -> None:
    r = Request(scope(method="PUT"), receiver({"type": "http.request", "body": b"x" * 20}))
    with pytest.raises(PayloadTooLarge) as info:
        await r.body(
            10, too_large=lambda size: PayloadTooLarge(f"{size}", error_code="things:thing.toolarge")
        )
    assert info.value.error_code == "things:thing.toolarge"
    assert info.value.message == "20"


async def test_body_disconnect() -> None:
    r = Request(scope(method="PUT"), receiver({"type": "http.disconnect"}))
    with pytest.raises(ClientDisconnected):
        await r.body(10)


async def test_send_response_adds_content_length() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await send_response(send, Response(204))
    await send_response(send, Response(304))
    assert [m.get("headers") for m in sent[::2]] == [[], []]
    sent.clear()
    await send_response(send, Response(201, [(b"etag", b'"rev:1"')], b"{}"))
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"etag", b'"rev:1"'), (b"content-length", b"2")],
        },
        {"type": "http.response.body", "body": b"{}"},
    ]


def test_error_response_is_ditto_json() -> None:
    r = error_response(InvalidInput("bad", description="fix it", error_code="json.invalid"))
    assert r.status == 400
    assert (b"content-type", b"application/json") in r.headers
    assert r.body == b'{"status":400,"error":"json.invalid","message":"bad","description":"fix it"}'


def test_error_response_304_has_no_body_but_the_etag() -> None:
    r = error_response(NotModified("same", headers={"etag": '"rev:1"'}))
    assert (r.status, r.body, r.headers) == (304, b"", [(b"etag", b'"rev:1"')])


def test_error_response_412_carries_the_etag() -> None:
    r = error_response(PreconditionFailed("no", headers={"etag": '"rev:2"'}))
    assert r.status == 412
    assert (b"etag", b'"rev:2"') in r.headers


def test_error_response_401_challenges() -> None:
    r = error_response(Unauthenticated("who?"))
    assert r.status == 401
    assert (b"www-authenticate", b'Basic realm="edgetwin"') in r.headers
