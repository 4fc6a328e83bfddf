"""``/ws/2`` as a client would use it: a real socket, trio-websocket, the whole appliance."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from edgetwin import app
from tests.conftest import make_settings

USERS = {"users": [{"name": "ditto", "password": "ditto"}, {"name": "observer", "password": "o"}]}
T = "org.eclipse.ditto:ws-thing"


def _basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    settings = make_settings(tmp_path, auth=USERS)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ports = await nursery.start(
            lambda task_status: app.serve(
                settings, environ={}, shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        yield ports.http[0]
        stop.set()


async def _receive(ws: WebSocketConnection) -> Any:
    with trio.fail_after(5):
        text = str(await ws.get_message())
    return text if not text.startswith("{") else orjson.loads(text)


async def _command(
    ws: WebSocketConnection, topic: str, path: str = "/", value: Any = None, **headers: Any
) -> Any:
    envelope: dict[str, Any] = {"topic": topic, "path": path, "headers": {"correlation-id": "c1", **headers}}
    if value is not None:
        envelope["value"] = value
    await ws.send_message(orjson.dumps(envelope).decode())
    return await _receive(ws)


@pytest.mark.parametrize("auth", [b"", b"Authorization: Basic ZGl0dG86d3Jvbmc=\r\n"])
async def test_refused_without_valid_credentials(base: str, auth: bytes) -> None:
    # A raw upgrade request: trio-websocket's client leaks its socket when a handshake is rejected.
    host, port = base.rsplit(":", 1)
    request = (
        b"GET /ws/2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + auth + b"\r\n"
    )
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(request)
        data = b""
        with trio.fail_after(5):
            while b"gateway:authentication.failed" not in data and (chunk := await stream.receive_some()):
                data += chunk
    assert data.startswith(b"HTTP/1.1 401")
    assert b"www-authenticate" in data.lower()


async def test_commands_round_trip(base: str) -> None:
    topic = "org.eclipse.ditto/ws-thing/things/twin/commands"
    async with open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic("ditto", "ditto")) as ws:
        created = await _command(ws, f"{topic}/create", value={"attributes": {"a": 1}})
        assert created["status"] == 201
        assert created["topic"] == f"{topic}/create"
        assert created["headers"]["correlation-id"] == "c1"
        assert created["value"]["thingId"] == T
        again = await _command(ws, f"{topic}/create", value={})
        assert again["status"] == 409
        assert again["value"]["error"] == "things:thing.conflict"
        modified = await _command(ws, f"{topic}/modify", path="/attributes/a", value=2)
        assert modified["status"] == 204
        retrieved = await _command(ws, f"{topic}/retrieve", path="/attributes")
        assert (retrieved["status"], retrieved["value"]) == (200, {"a": 2})
        failed = await _command(
            ws, f"{topic}/modify", path="/attributes/a", value=3, condition="eq(attributes/a,1)"
        )
        assert failed["status"] == 412
        assert failed["value"]["error"] == "things:condition.failed"


async def test_bad_frames_get_error_envelopes_and_the_session_stays(base: str) -> None:
    async with open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic("ditto", "ditto")) as ws:
        await ws.send_message("{not json")
        error = await _receive(ws)
        assert error["status"] == 400
        await ws.send_message(orjson.dumps({"topic": "nonsense", "path": "/"}).decode())
        assert (await _receive(ws))["status"] == 400
        await ws.send_message("START-SEND-NONSENSE")
        assert (await _receive(ws))["status"] == 400
        await ws.send_message("START-SEND-EVENTS?filter=eq(attributes/a")
        invalid = await _receive(ws)
        assert invalid["status"] == 400  # and no ACK
        await ws.send_message("START-SEND-EVENTS")
        assert await _receive(ws) == "START-SEND-EVENTS:ACK"


async def test_events_are_filtered_and_authorised(base: str) -> None:
    owner_auth = ("ditto", "ditto")
    policy = {
        "entries": {
            "owner": {
                "subjects": {"nginx:ditto": {"type": "u"}},
                "resources": {
                    "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                },
            },
            "observer": {
                "subjects": {"nginx:observer": {"type": "u"}},
                "resources": {"thing:/features": {"grant": ["READ"], "revoke": []}},
            },
        }
    }
    async with httpx.AsyncClient(base_url=f"http://{base}", auth=owner_auth) as http:
        assert (await http.put("/api/2/policies/org.eclipse.ditto:p", json=policy)).status_code == 201
        body = {
            "policyId": "org.eclipse.ditto:p",
            "attributes": {"secret": 1},
            "features": {"f": {"properties": {"x": 0}}},
        }
        assert (await http.put(f"/api/2/things/{T}", json=body)).status_code == 201
        async with (
            open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic(*owner_auth)) as owner,
            open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic("observer", "o")) as observer,
        ):
            await owner.send_message(
                "START-SEND-EVENTS?filter=gt(features/f/properties/x,1)&extraFields=thingId"
            )
            assert await _receive(owner) == "START-SEND-EVENTS:ACK"
            await observer.send_message("START-SEND-EVENTS")
            assert await _receive(observer) == "START-SEND-EVENTS:ACK"
            await http.put(
                f"/api/2/things/{T}/features/f/properties/x", json=1, headers={"correlation-id": "h1"}
            )
            await http.put(f"/api/2/things/{T}/attributes/secret", json=2)
            await http.put(
                f"/api/2/things/{T}/features/f/properties/x", json=5, headers={"correlation-id": "h3"}
            )
            # The observer sees both feature changes, never the attribute change.
            first, second = await _receive(observer), await _receive(observer)
            assert first["topic"] == "org.eclipse.ditto/ws-thing/things/twin/events/modified"
            assert (first["path"], first["value"], first["headers"]["correlation-id"]) == (
                "/features/f/properties/x",
                1,
                "h1",
            )
            assert (second["value"], second["revision"]) == (5, 4)
            # The owner's filter lets only x > 1 through.
            only = await _receive(owner)
            assert (only["value"], only["extra"]) == (5, {"thingId": T})
            with trio.move_on_after(0.3):
                extra = await owner.get_message()
                pytest.fail(f"unexpected event {extra!r}")
