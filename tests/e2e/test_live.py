"""The live channel and messages as a user tries them: ``curl``-like HTTP callers, a small WebSocket device
script, and an SSE message stream, against the whole appliance on real sockets.

Only :func:`test_silence_is_408_after_10_s_of_wall_clock` waits for a real deadline (the 10 s rule); every
other timeout rule is tested on trio's mock clock in ``tests/api/test_live_http.py``.
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.e2e.test_websocket import _basic, _receive

T = "org.eclipse.ditto:coffee"
URL = f"/api/2/things/{T}"
LIVE = "org.eclipse.ditto/coffee/things/live"


@pytest.fixture
async def coffee(base: str) -> str:
    """The appliance of ``test_websocket`` with the coffee machine's twin in it; its address."""
    async with httpx.AsyncClient(base_url=f"http://{base}", auth=("ditto", "ditto")) as http:
        r = await http.put(URL, json={"attributes": {"manufacturer": "ACME", "useLive": True}})
        assert r.status_code == 201
    return base


def _http(base: str, user: tuple[str, str] = ("ditto", "ditto")) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{base}", auth=user, timeout=30)


@contextlib.asynccontextmanager
async def _device(base: str, *streams: str, user: tuple[str, str] = ("ditto", "ditto")) -> AsyncIterator[Any]:
    """A WebSocket session that asked for ``streams`` (the device, or an app on the live channel)."""
    async with open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic(*user)) as conn:
        for stream in streams:
            await conn.send_message(f"START-SEND-{stream}")
            assert await _receive(conn) == f"START-SEND-{stream}:ACK"
        yield conn


async def _send(ws: WebSocketConnection, obj: dict[str, Any]) -> None:
    await ws.send_message(orjson.dumps(obj).decode())


async def test_live_retrieve_round_trip_through_a_websocket_device(coffee: str) -> None:
    base = coffee
    async with _device(base, "LIVE-COMMANDS") as device, _http(base) as http, trio.open_nursery() as nursery:
        responses: list[httpx.Response] = []

        async def caller() -> None:
            responses.append(
                await http.get(
                    f"{URL}/attributes/manufacturer",
                    params={"live-channel-condition": "eq(attributes/manufacturer,'ACME')"},
                    headers={"timeout": "5s", "live-channel-timeout-strategy": "fail"},
                )
            )

        nursery.start_soon(caller)
        command = await _receive(device)
        assert command["topic"] == f"{LIVE}/commands/retrieve"
        assert command["path"] == "/attributes/manufacturer"
        assert command["headers"]["timeout"] == "5s"
        await _send(
            device,
            {
                "topic": command["topic"],
                "headers": {
                    "correlation-id": command["headers"]["correlation-id"],
                    "content-type": "application/json",
                },
                "path": command["path"],
                "status": 200,
                "value": "live-ACME",
            },
        )
    r = responses[0]
    assert (r.status_code, r.json()) == (200, "live-ACME")
    assert (r.headers["channel"], r.headers["live-channel-condition-matched"]) == ("live", "true")


async def test_message_round_trip_fire_and_forget_and_a_message_stream(coffee: str) -> None:
    base = coffee
    async with _device(base, "MESSAGES") as device, _http(base) as http, trio.open_nursery() as nursery:
        chunks: list[bytes] = []
        stream_open = trio.Event()

        async def listen() -> None:
            # As `curl -N`: a raw socket, so nothing is buffered or left behind when the test stops reading.
            host, port = base.rsplit(":", 1)
            auth = base64.b64encode(b"ditto:ditto").decode()
            head = (
                f"GET {URL}/inbox/messages HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                f"Authorization: Basic {auth}\r\n\r\n"
            )
            async with await trio.open_tcp_stream(host, int(port)) as stream:
                await stream.send_all(head.encode())
                while b"event:ask" not in b"".join(chunks):
                    chunk = await stream.receive_some()
                    if not chunk:
                        return
                    chunks.append(chunk)
                    if b"HTTP/1.1 200 " in b"".join(chunks):
                        stream_open.set()

        nursery.start_soon(listen)
        with trio.fail_after(5):
            await stream_open.wait()
        responses: list[httpx.Response] = []

        async def caller() -> None:
            body = b"Hey, how are you?"
            headers = {"content-type": "text/plain"}
            responses.append(await http.post(f"{URL}/inbox/messages/ask", content=body, headers=headers))

        nursery.start_soon(caller)
        message = await _receive(device)
        assert (message["topic"], message["path"], message["value"]) == (
            f"{LIVE}/messages/ask",
            "/inbox/messages/ask",
            "Hey, how are you?",
        )
        reply = "I do not know, since I am only a coffee machine."
        await _send(
            device,
            {
                "topic": message["topic"],
                "headers": {
                    "content-type": "text/plain",
                    "correlation-id": message["headers"]["correlation-id"],
                },
                "path": "/outbox/messages/ask",
                "status": 418,
                "value": reply,
            },
        )
    r = responses[0]
    assert (r.status_code, r.headers["content-type"], r.text) == (418, "text/plain", reply)
    assert b"data:Hey, how are you?\nevent:ask\n\n" in b"".join(chunks)
    async with _http(base) as http, _device(base, "MESSAGES") as device:
        r = await http.post(
            f"{URL}/inbox/messages/ping",
            content=b"1",
            params={"timeout": "0"},
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 202
        fired = await _receive(device)
        assert (fired["value"], fired["headers"]["response-required"]) == ("1", False)


async def test_a_websocket_client_sends_live_commands_and_messages_to_a_device(coffee: str) -> None:
    base = coffee
    async with _device(base, "LIVE-COMMANDS", "MESSAGES", "LIVE-EVENTS") as device:
        async with _device(base, user=("observer", "o")) as observer:
            # The observer may not read the thing: its live command reaches nobody; it gets a 404.
            await _send(
                observer,
                {"topic": f"{LIVE}/commands/retrieve", "path": "/", "headers": {"correlation-id": "o"}},
            )
            denied = await _receive(observer)
            assert (denied["topic"], denied["status"]) == (f"{LIVE}/errors", 404)
        async with _device(base, "LIVE-EVENTS") as client:
            await _send(client, _frame("commands/retrieve", "/attributes", "a1"))
            command = await _receive(device)
            assert command["headers"]["correlation-id"] == "a1"
            # An answer from a session the request was not sent to is not taken.
            await _send(
                client, _frame("commands/retrieve", "/attributes", "a1", status=200, value=0, ask=True)
            )
            assert (await _receive(client))["value"]["error"] == "protocoladapter:illegal.adaptable"
            await _send(device, _frame("commands/retrieve", "/attributes", "a1", status=200, value={"x": 1}))
            answer = await _receive(client)
            assert (answer["status"], answer["value"], answer["headers"]["correlation-id"]) == (
                200,
                {"x": 1},
                "a1",
            )
            # A duplicate answer is dropped; the device asked for a response, so it is told why.
            await _send(
                device, _frame("commands/retrieve", "/attributes", "a1", status=200, value={}, ask=True)
            )
            assert (await _receive(device))["value"]["error"] == "protocoladapter:illegal.adaptable"
            # A message from the WebSocket client, answered by the device.
            await _send(client, _frame("messages/hello", "/inbox/messages/hello", "m1", value="hi"))
            message = await _receive(device)
            assert message["value"] == "hi"
            await _send(
                device, _frame("messages/hello", "/outbox/messages/hello", "m1", status=200, value="back")
            )
            answer = await _receive(client)
            assert (answer["status"], answer["value"]) == (200, "back")
            # A live event from the device reaches live-event subscribers and is not persisted.
            await _send(device, _frame("events/modified", "/attributes/temp", "e1", value=93))
            event = await _receive(client)
            assert (event["topic"], event["value"]) == (f"{LIVE}/events/modified", 93)
    async with _http(base) as http:
        assert (await http.get(f"{URL}/attributes/temp")).status_code == 404


def _frame(
    what: str,
    path: str,
    correlation_id: str,
    *,
    status: int | None = None,
    value: Any = None,
    ask: bool = False,
) -> dict[str, Any]:
    headers: dict[str, Any] = {"correlation-id": correlation_id, "content-type": "application/json"}
    if ask:
        headers["response-required"] = True
    frame: dict[str, Any] = {"topic": f"{LIVE}/{what}", "path": path, "headers": headers}
    if status is not None:
        frame["status"] = status
    if value is not None:
        frame["value"] = value
    return frame


async def test_silence_is_408_after_10_s_of_wall_clock(coffee: str) -> None:
    base = coffee
    # As Ditto: the caller waits for the timeout even when no device is connected.
    async with _http(base) as http:
        start = time.monotonic()
        r = await http.get(URL, params={"channel": "live"})
        elapsed = time.monotonic() - start
    assert (r.status_code, r.json()["error"]) == (408, "command.timeout")
    assert 10.0 <= elapsed < 10.5
