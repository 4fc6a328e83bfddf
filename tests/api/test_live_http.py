"""The live channel, the smart channel and messages over HTTP, in-process on trio's mock clock: every rule
of ditto.md §1.10, §1.11 and §5.1 with a device that answers (or does not) through the live router."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from edgetwin.api.ws import WebSocketApi
from edgetwin.core.commands import AuthContext
from edgetwin.core.live import LiveSignal
from edgetwin.twin.pointer import MISSING
from tests.api.conftest import DITTO, Api
from tests.devices import Device
from tests.e2e.test_websocket import _FakeSocket

T = "org.eclipse.ditto:lamp"
URL = f"/api/2/things/{T}"


@pytest.fixture
async def device(api: Api, client: httpx.AsyncClient) -> Device:
    r = await client.put(URL, json={"attributes": {"manufacturer": "ACME", "useLive": True}})
    assert r.status_code == 201
    dev = Device(api.live, AuthContext(("nginx:ditto",)))
    api.live.attach(dev, "live-commands")
    api.live.attach(dev, "messages")
    return dev


async def _with_device(
    request: Callable[[], Awaitable[httpx.Response]],
    answer: Callable[[LiveSignal], object] | None,
    dev: Device,
) -> tuple[httpx.Response, LiveSignal | None]:
    """Send ``request``; the device answers the signal it gets with ``answer`` (or stays silent)."""
    out: list[httpx.Response] = []
    signal = None
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            out.append(await request())

        nursery.start_soon(call)
        if answer is not None or dev is not None:
            with trio.move_on_after(0.5 if answer is None else 60):
                signal = await dev.next()
            if signal is not None and answer is not None:
                answer(signal)
    return out[0], signal


async def test_live_retrieve_answered_by_the_device(client: httpx.AsyncClient, device: Device) -> None:
    r, signal = await _with_device(
        lambda: client.get(
            f"{URL}/attributes/manufacturer", params={"channel": "live"}, headers={"x-correlation-id": "h-9"}
        ),
        lambda s: device.answer(s, 200, "live-ACME", headers={"content-type": "application/json"}),
        device,
    )
    assert (r.status_code, r.json()) == (200, "live-ACME")
    assert r.headers["channel"] == "live"
    assert r.headers["response-required"] == "false"
    assert r.headers["correlation-id"] == "h-9"
    assert signal is not None
    sent = signal.envelope.to_json()
    assert sent["headers"]["correlation-id"] == "h-9"
    assert sent["headers"]["timeout"] == "10s"
    assert sent["headers"]["ditto-originator"] == "nginx:ditto"


async def test_live_modify_is_answered_and_leaves_the_twin(client: httpx.AsyncClient, device: Device) -> None:
    r, signal = await _with_device(
        lambda: client.put(f"{URL}/attributes/manufacturer", json="X", headers={"channel": "live"}),
        lambda s: device.answer(s, 204),
        device,
    )
    assert (r.status_code, r.content) == (204, b"")
    assert signal is not None
    assert signal.envelope.topic.action == "modify"
    assert signal.envelope.value == "X"
    assert (await client.get(f"{URL}/attributes/manufacturer")).json() == "ACME"


async def test_a_device_error_propagates(client: httpx.AsyncClient, device: Device) -> None:
    error = {"status": 429, "error": "too.many.requests", "message": "busy"}
    r, _ = await _with_device(
        lambda: client.get(URL, params={"channel": "live"}),
        lambda s: device.answer(s, 429, error, topic="org.eclipse.ditto/lamp/things/live/errors", path="/"),
        device,
    )
    assert (r.status_code, r.json()["error"], r.headers["channel"]) == (429, "too.many.requests", "live")


async def test_silence_is_408_after_the_default_10_s(
    client: httpx.AsyncClient, device: Device, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    r, _ = await _with_device(lambda: client.get(URL, params={"channel": "live"}), None, device)
    assert trio.current_time() - start == pytest.approx(10, abs=0.01)
    assert (r.status_code, r.json()["error"]) == (408, "command.timeout")
    assert r.headers["channel"] == "live"


@pytest.mark.parametrize(("duration", "seconds"), [("500ms", 0.5), ("5s", 5), ("1m", 60), ("3", 3)])
async def test_the_timeout_header_sets_the_deadline(
    client: httpx.AsyncClient,
    device: Device,
    autojump_clock: trio.testing.MockClock,
    duration: str,
    seconds: float,
) -> None:
    start = trio.current_time()
    r, _ = await _with_device(
        lambda: client.get(URL, params={"channel": "live"}, headers={"timeout": duration}), None, device
    )
    assert r.status_code == 408
    assert trio.current_time() - start == pytest.approx(seconds, abs=0.01)


async def test_timeout_limits_and_fire_and_forget(client: httpx.AsyncClient, device: Device) -> None:
    r = await client.get(URL, params={"channel": "live", "timeout": "61s"})
    assert (r.status_code, r.json()["error"]) == (400, "gateway:timeout.invalid")
    r = await client.get(URL, params={"channel": "live", "timeout": "soon"})
    assert (r.status_code, r.json()["error"]) == (400, "header.invalid")
    r = await client.put(f"{URL}/attributes/a", json=1, params={"channel": "live", "timeout": "0"})
    assert (r.status_code, r.headers["channel"]) == (202, "live")
    r = await client.put(
        f"{URL}/attributes/a", json=2, params={"channel": "live", "response-required": "false"}
    )
    assert r.status_code == 202
    sent = [s.envelope.to_json() for s in device.signals]
    assert [
        (s["value"], s["headers"]["response-required"], s["headers"]["requested-acks"]) for s in sent
    ] == [
        (1, False, []),
        (2, False, []),
    ]
    r = await client.get(URL, params={"channel": "live", "timeout": "0", "response-required": "true"})
    assert (r.status_code, r.json()["error"]) == (400, "header.invalid")


async def test_live_create_and_conditions_on_modifies_are_405(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/2/things", json={}, params={"channel": "live"})
    assert (r.status_code, r.json()["error"]) == (405, "things:thing.notcreatable")
    r = await client.put(
        f"{URL}/attributes/a", json=1, params={"live-channel-condition": "eq(attributes/a,1)"}
    )
    assert (r.status_code, r.json()["error"]) == (405, "things:live.channelcondition.notallowed")
    r = await client.get("/api/2/things", params={"channel": "live"})
    assert (r.status_code, r.json()["error"]) == (400, "header.invalid")


async def test_smart_channel_false_answers_from_the_twin(client: httpx.AsyncClient, device: Device) -> None:
    r = await client.get(
        f"{URL}/attributes/manufacturer", params={"live-channel-condition": "eq(attributes/useLive,false)"}
    )
    assert (r.status_code, r.json()) == (200, "ACME")
    assert (r.headers["live-channel-condition-matched"], r.headers["channel"]) == ("false", "twin")
    assert device.signals == []
    r = await client.get(URL, params={"live-channel-condition": "eq(attributes/useLive"})
    assert (r.status_code, r.json()["error"]) == (400, "things:condition.invalid")


async def test_smart_channel_true_asks_the_device(client: httpx.AsyncClient, device: Device) -> None:
    r, _ = await _with_device(
        lambda: client.get(
            f"{URL}/attributes/manufacturer",
            params={"live-channel-condition": "eq(attributes/manufacturer,'ACME')"},
            headers={"timeout": "5s", "live-channel-timeout-strategy": "fail"},
        ),
        lambda s: device.answer(s, 200, "live-ACME"),
        device,
    )
    assert (r.status_code, r.json()) == (200, "live-ACME")
    assert (r.headers["live-channel-condition-matched"], r.headers["channel"]) == ("true", "live")


async def test_smart_channel_timeout_fails_or_uses_the_twin(
    client: httpx.AsyncClient, device: Device, autojump_clock: trio.testing.MockClock
) -> None:
    params = {"live-channel-condition": "eq(attributes/useLive,true)", "timeout": "2s"}
    r, _ = await _with_device(
        lambda: client.get(f"{URL}/attributes/manufacturer", params=params), None, device
    )
    assert (r.status_code, r.headers["channel"], r.headers["live-channel-condition-matched"]) == (
        408,
        "live",
        "true",
    )
    headers = {"live-channel-timeout-strategy": "use-twin"}
    r, _ = await _with_device(
        lambda: client.get(f"{URL}/attributes/manufacturer", params=params, headers=headers), None, device
    )
    assert (r.status_code, r.json(), r.headers["channel"]) == (200, "ACME", "twin")
    assert r.headers["live-channel-condition-matched"] == "true"
    # use-twin applies to plain channel=live retrieves too, and not to modifies.
    r, _ = await _with_device(
        lambda: client.get(URL, params={"channel": "live", "timeout": "1s"}, headers=headers), None, device
    )
    assert (r.status_code, r.headers["channel"]) == (200, "twin")
    r, _ = await _with_device(
        lambda: client.put(
            f"{URL}/attributes/a", json=1, params={"channel": "live", "timeout": "1s"}, headers=headers
        ),
        None,
        device,
    )
    assert r.status_code == 408
    r = await client.get(URL, params={"channel": "live"}, headers={"live-channel-timeout-strategy": "maybe"})
    assert (r.status_code, r.json()["error"]) == (400, "header.invalid")


async def test_update_twin_with_live_response_header(client: httpx.AsyncClient, device: Device) -> None:
    r, _ = await _with_device(
        lambda: client.get(
            f"{URL}/attributes/manufacturer",
            params={"channel": "live"},
            headers={"update-twin-with-live-response": "true"},
        ),
        lambda s: device.answer(s, 200, "FRESH"),
        device,
    )
    assert r.json() == "FRESH"
    assert (await client.get(f"{URL}/attributes/manufacturer")).json() == "FRESH"


# ------------------------------------------------------------------ messages


async def test_a_message_round_trips_with_the_devices_status_and_type(
    client: httpx.AsyncClient, device: Device
) -> None:
    r, signal = await _with_device(
        lambda: client.post(
            f"{URL}/inbox/messages/ask",
            content=b"Hey, how are you?",
            headers={"content-type": "text/plain", "x-correlation-id": "demo-1"},
        ),
        lambda s: device.answer(
            s, 418, "I do not know, since I am only a coffee machine.", headers={"content-type": "text/plain"}
        ),
        device,
    )
    assert (r.status_code, r.headers["content-type"], r.text) == (
        418,
        "text/plain",
        "I do not know, since I am only a coffee machine.",
    )
    assert signal is not None
    sent = signal.envelope.to_json()
    assert sent["topic"] == "org.eclipse.ditto/lamp/things/live/messages/ask"
    assert sent["path"] == "/inbox/messages/ask"
    assert sent["value"] == "Hey, how are you?"
    assert sent["headers"]["content-type"] == "text/plain"
    assert sent["headers"]["ditto-message-subject"] == "ask"
    assert sent["headers"]["ditto-message-thing-id"] == T
    assert sent["headers"]["correlation-id"] == "demo-1"


@pytest.mark.parametrize(
    ("content_type", "body", "value"),
    [
        ("application/json", b'{"a":[1,2]}', {"a": [1, 2]}),
        ("application/vnd.x+json", b"3", 3),
        ("text/plain; charset=latin-1", "caf\u00e9".encode("latin-1"), "caf\u00e9"),
        ("application/octet-stream", b"\x00\x01\xff", base64.b64encode(b"\x00\x01\xff").decode()),
        (None, b"", MISSING),
    ],
)
async def test_payloads_travel_by_content_type(
    client: httpx.AsyncClient, device: Device, content_type: str | None, body: bytes, value: Any
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer_type = content_type or "application/json"

    def answer(s: LiveSignal) -> None:
        device.answer(
            s, 200, s.envelope.value if value is not MISSING else None, headers={"content-type": answer_type}
        )

    r, signal = await _with_device(
        lambda: client.post(f"{URL}/outbox/messages/echo", content=body, headers=headers), answer, device
    )
    assert signal is not None
    assert signal.envelope.value == value
    assert signal.envelope.to_json()["headers"]["ditto-message-direction"] == "FROM"
    assert r.status_code == 200
    if value is MISSING:
        assert r.json() is None
    elif content_type is not None and content_type.startswith("text/"):
        assert r.text == value
    else:
        assert r.content == body if body else True


async def test_feature_messages_subjects_with_slashes_and_claims(
    client: httpx.AsyncClient, device: Device
) -> None:
    r, signal = await _with_device(
        lambda: client.post(
            f"{URL}/features/f/inbox/messages/a/b/c", content=b"x", headers={"content-type": "text/plain"}
        ),
        lambda s: device.answer(s, 204),
        device,
    )
    assert (r.status_code, r.content) == (204, b"")
    assert signal is not None
    sent = signal.envelope.to_json()
    assert (sent["topic"], sent["path"]) == (
        "org.eclipse.ditto/lamp/things/live/messages/a/b/c",
        "/features/f/inbox/messages/a/b/c",
    )
    assert sent["headers"]["ditto-message-feature-id"] == "f"
    r, signal = await _with_device(
        lambda: client.post(f"{URL}/inbox/claim"), lambda s: device.answer(s, 204), device
    )
    assert r.status_code == 204
    assert signal is not None
    assert signal.envelope.to_json()["path"] == "/inbox/messages/claim"


async def test_fire_and_forget_messages_are_202(client: httpx.AsyncClient, device: Device) -> None:
    r = await client.post(f"{URL}/inbox/messages/a", content=b"1", params={"timeout": "0"})
    assert (r.status_code, r.content) == (202, b"")
    r = await client.post(f"{URL}/inbox/messages/b", content=b"2", headers={"response-required": "false"})
    assert r.status_code == 202
    assert [s.envelope.topic.action for s in device.signals] == ["a", "b"]


async def test_message_errors(client: httpx.AsyncClient, device: Device) -> None:
    r = await client.post(f"{URL}/inbox/messages/", content=b"x")
    assert (r.status_code, r.json()["error"]) == (400, "messages:subject.invalid")
    r = await client.post(f"{URL}/inbox/messages/big", content=b"x" * (250 * 1024 + 1))
    assert (r.status_code, r.json()["error"]) == (413, "messages:payload.toolarge")
    r = await client.post(f"{URL}/inbox/messages/x", content=b"x", params={"timeout": "61"})
    assert (r.status_code, r.json()["error"]) == (400, "timeout.invalid")
    r = await client.post(
        f"{URL}/inbox/messages/x", content=b"{", headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]) == (400, "json.invalid")
    r = await client.get(f"{URL}/inbox/messages/x")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    r = await client.post("/api/2/things/org.eclipse.ditto:nope/inbox/messages/x", content=b"x")
    assert (r.status_code, r.json()["error"]) == (404, "things:thing.notfound")
    r = await client.post(
        f"{URL}/inbox/messages/x", content=b"x", params={"condition": "eq(attributes/useLive,false)"}
    )
    assert (r.status_code, r.json()["error"]) == (412, "things:condition.failed")
    assert device.signals == []


async def test_an_unanswered_message_is_408_at_its_timeout(
    client: httpx.AsyncClient, device: Device, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    r, _ = await _with_device(lambda: client.post(f"{URL}/inbox/messages/q", content=b"?"), None, device)
    assert r.status_code == 408
    assert trio.current_time() - start == pytest.approx(10, abs=0.01)
    start = trio.current_time()
    r, _ = await _with_device(
        lambda: client.post(f"{URL}/inbox/claim", params={"timeout": "9m"}), None, device
    )
    assert r.status_code == 408
    assert trio.current_time() - start == pytest.approx(540, abs=0.01)


# ------------------------------------------------------- WebSocket senders


async def test_websocket_live_requests_expire_at_their_own_deadlines(
    api: Api, device: Device, autojump_clock: trio.testing.MockClock
) -> None:
    sessions = WebSocketApi(api.service, api.authenticator, live=api.live)
    app = _FakeSocket(DITTO["Authorization"])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sessions, app.scope, app.receive, app.send)
        start = trio.current_time()
        for cid, timeout in (("slow", "3s"), ("fast", "1s"), ("answered", "2s")):
            frame = {
                "topic": "org.eclipse.ditto/lamp/things/live/commands/retrieve",
                "path": "/attributes/manufacturer",
                "headers": {"correlation-id": cid, "timeout": timeout},
            }
            await app.say(orjson.dumps(frame).decode())
        for _ in range(3):
            signal = await device.next()
            if signal.envelope.correlation_id == "answered":
                device.answer(signal, 200, "live")
        answered = orjson.loads(await app.next_frame())
        assert (answered["headers"]["correlation-id"], answered["status"], answered["value"]) == (
            "answered",
            200,
            "live",
        )
        seen = []
        for _ in range(2):
            error = orjson.loads(await app.next_frame())
            seen.append(
                (error["headers"]["correlation-id"], error["status"], round(trio.current_time() - start, 3))
            )
        assert seen == [("fast", 408, 1.0), ("slow", 408, 3.0)]
        assert api.live.pending == 0
        await trio.sleep(10)
        assert app.frames == []  # the answered request never gets a 408
        # A session that ends with requests pending leaves nothing behind in the router.
        frame = {
            "topic": "org.eclipse.ditto/lamp/things/live/commands/retrieve",
            "path": "/",
            "headers": {"correlation-id": "x"},
        }
        await app.say(orjson.dumps(frame).decode())
        await device.next()
        assert api.live.pending == 1
        await app.hang_up()
    assert api.live.pending == 0
