"""One round trip through a real socket: serve_http (Hypercorn's trio worker) in front of ThingsApi."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from edgetwin.api.app_factory import create_app
from edgetwin.api.server import _with_host, serve_http
from edgetwin.api.things import handles
from edgetwin.config import HttpSettings
from edgetwin.core.health import Health
from tests.api.conftest import DITTO, Api


async def test_things_api_over_a_real_socket(api: Api) -> None:
    quart = create_app(health=Health())

    # What EdgeAsgi will do once wired: the Things API first, everything else (lifespan too) to the rest.
    async def front(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and handles(scope["path"], scope["headers"]):
            await api.app(scope, receive, send)
        else:
            await quart(scope, receive, send)

    stop = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve_http(
                    front,
                    HttpSettings(bind="127.0.0.1:0"),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            async with httpx.AsyncClient(base_url=f"http://{binds[0]}", headers=DITTO) as client:
                url = "/api/2/things/org.eclipse.ditto:sock/attributes/a%2Fb%20c"
                r = await client.put("/api/2/things/org.eclipse.ditto:sock", json={"attributes": {"x": 1}})
                assert r.status_code == 201
                assert r.headers["location"] == f"http://{binds[0]}/api/2/things/org.eclipse.ditto:sock"
                r = await client.get(
                    "/api/2/things/org.eclipse.ditto:sock/attributes/x",
                    headers={"x-correlation-id": "sock-1"},
                )
                assert (r.status_code, r.json(), r.headers["correlation-id"]) == (200, 1, "sock-1")
                etag = r.headers["etag"]
                r = await client.head("/api/2/things/org.eclipse.ditto:sock/attributes/x")
                assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "1")
                r = await client.get(
                    "/api/2/things/org.eclipse.ditto:sock/attributes/x", headers={"if-none-match": etag}
                )
                assert (r.status_code, r.content, r.headers["etag"]) == (304, b"", etag)
                r = await client.put("/api/2/things/org.eclipse.ditto:sock/attributes/x", json=2)
                assert (r.status_code, r.content, "content-length" in r.headers) == (204, b"", False)
                r = await client.put(url, json=1)  # the encoded "/" reaches the service inside one key
                assert (r.status_code, r.json()["error"]) == (400, "json.key.invalid")
                r = await client.get("/api/2/search/things/count")
                assert (r.status_code, r.text) == (200, "1")
                r = await client.get("/api/2/things/org.eclipse.ditto:sock", headers={"authorization": ""})
                assert r.status_code == 401
                r = await client.get("/health")  # not ours: still EdgeAsgi's health front
                assert "services" in r.json()
                r = await client.get("/api/2/things/org.eclipse.ditto:sock/migrateDefinition")
                assert (r.status_code, r.json()["error"]) == (404, "resource.notfound")  # Quart's 404
            stop.set()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"POST /x HTTP/1.1\r\nA: b\r\n\r\nbody", b"POST /x HTTP/1.1\r\nHost: \r\nA: b\r\n\r\nbody"),
        (b"GET /x HTTP/1.1\r\nhOsT: h\r\n\r\n", b"GET /x HTTP/1.1\r\nhOsT: h\r\n\r\n"),
        (b"GET /x HTTP/1.0\r\n\r\n", b"GET /x HTTP/1.0\r\n\r\n"),  # 1.0 needs no Host (and gets 505 later)
        (b"GET /x HTTP/1.1\r\nA: b", b"GET /x HTTP/1.1\r\nA: b"),  # not a whole head: left to Hypercorn
    ],
)
def test_an_http11_head_without_host_gets_an_empty_one(head: bytes, expected: bytes) -> None:
    assert _with_host(head) == expected
