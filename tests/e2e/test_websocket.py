"""``/ws/2`` as a client would use it: a real socket, trio-websocket, the whole appliance."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from edgetwin.api.auth import Authenticator
from edgetwin.api.ws import WebSocketApi
from edgetwin.config import AuthSettings, JwtIssuer, hypercorn_config, settings_from_mapping
from tests.api.conftest import DITTO, open_api
from tests.e2e.conftest import ISSUER, JWT_SECRET

T = "org.eclipse.ditto:ws-thing"
TOPIC = "org.eclipse.ditto/ws-thing/things/twin/commands"


def _basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


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


# --------------------------------------------------------------------------------- control messages


def _ws(base: str, user: str = "ditto", password: str = "ditto") -> Any:
    passwords = {"ditto": "ditto", "observer": "o", "stranger": "s"}
    return open_websocket_url(f"ws://{base}/ws/2", extra_headers=_basic(user, passwords.get(user, password)))


async def _silent(ws: WebSocketConnection, seconds: float = 0.3) -> None:
    with trio.move_on_after(seconds):
        extra = await ws.get_message()
        pytest.fail(f"unexpected frame {extra!r}")


async def test_stop_send_events_stops_them(base: str) -> None:
    async with _ws(base) as ws:
        assert (await _command(ws, f"{TOPIC}/create", value={}))["status"] == 201
        await ws.send_message("START-SEND-EVENTS")
        assert await _receive(ws) == "START-SEND-EVENTS:ACK"
        modified = await _command(ws, f"{TOPIC}/modify", path="/attributes/a", value=1)
        event = await _receive(ws)
        # The response and the event may come in either order.
        frames = {modified["topic"].rsplit("/", 2)[-2], event["topic"].rsplit("/", 2)[-2]}
        assert frames == {"commands", "events"}
        await ws.send_message("STOP-SEND-EVENTS")
        assert await _receive(ws) == "STOP-SEND-EVENTS:ACK"
        assert (await _command(ws, f"{TOPIC}/modify", path="/attributes/a", value=2))["status"] == 204
        await _silent(ws)


@pytest.mark.parametrize("stream", ["MESSAGES", "LIVE-COMMANDS", "LIVE-EVENTS"])
async def test_other_streams_are_acknowledged(base: str, stream: str) -> None:
    async with _ws(base) as ws:
        await ws.send_message(f"START-SEND-{stream}?namespaces=org.eclipse.ditto")
        assert await _receive(ws) == f"START-SEND-{stream}:ACK"  # parameters are not echoed
        await ws.send_message(f"STOP-SEND-{stream}")
        assert await _receive(ws) == f"STOP-SEND-{stream}:ACK"


async def test_events_by_namespace(base: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{base}", auth=("ditto", "ditto")) as http, _ws(base) as ws:
        await ws.send_message("START-SEND-EVENTS?namespaces=ns.one,ns.two")
        assert await _receive(ws) == "START-SEND-EVENTS:ACK"
        for thing_id in ("ns.other:x", "ns.one:x", "ns.onex:y", "ns.two:z"):
            assert (await http.put(f"/api/2/things/{thing_id}", json={})).status_code == 201
        first, second = await _receive(ws), await _receive(ws)
        assert [first["topic"], second["topic"]] == [
            "ns.one/x/things/twin/events/created",
            "ns.two/z/things/twin/events/created",
        ]
        await _silent(ws)


async def test_response_required_false_and_generated_correlation_ids(base: str) -> None:
    async with _ws(base) as ws:
        assert (await _command(ws, f"{TOPIC}/create", value={}))["status"] == 201
        quiet = {
            "topic": f"{TOPIC}/modify",
            "path": "/attributes/a",
            "value": 7,
            "headers": {"correlation-id": "quiet", "response-required": False},
        }
        await ws.send_message(orjson.dumps(quiet).decode())
        # No answer to the quiet modify: the next frame is the answer to this retrieve, without a correlation id.
        await ws.send_message(orjson.dumps({"topic": f"{TOPIC}/retrieve", "path": "/attributes/a"}).decode())
        answer = await _receive(ws)
        assert (answer["status"], answer["value"]) == (200, 7)
        generated = answer["headers"]["correlation-id"]
        assert isinstance(generated, str)
        assert generated
        await ws.send_message(orjson.dumps({"topic": f"{TOPIC}/retrieve", "path": "/"}).decode())
        assert (await _receive(ws))["headers"]["correlation-id"] not in ("", generated)
        # An error without a correlation id gets one too.
        await ws.send_message(
            orjson.dumps({"topic": f"{TOPIC}/retrieve", "path": "/attributes/nope"}).decode()
        )
        error = await _receive(ws)
        assert error["status"] == 404
        assert error["headers"]["correlation-id"]


async def test_retrieve_many_and_policy_commands(base: str) -> None:
    policy_topic = "org.eclipse.ditto/ws-policy/policies/commands"
    policy = {
        "entries": {
            "owner": {
                "subjects": {"nginx:ditto": {"type": "u"}},
                "resources": {
                    "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                },
            }
        }
    }
    async with _ws(base) as ws:
        created = await _command(ws, f"{policy_topic}/create", value=policy)
        assert (created["status"], created["topic"]) == (201, f"{policy_topic}/create")
        assert created["value"]["policyId"] == "org.eclipse.ditto:ws-policy"
        retrieved = await _command(ws, f"{policy_topic}/retrieve", path="/entries/owner/subjects")
        assert (retrieved["status"], retrieved["value"]) == (200, {"nginx:ditto": {"type": "u"}})
        assert (await _command(ws, f"{policy_topic}/create", value=policy))["status"] == 409
        for name in ("a", "b"):
            thing = {"policyId": "org.eclipse.ditto:ws-policy", "attributes": {"n": name}}
            answer = await _command(ws, f"org.eclipse.ditto/{name}/things/twin/commands/create", value=thing)
            assert answer["status"] == 201
        many = await _command(
            ws,
            "org.eclipse.ditto/_/things/twin/commands/retrieve",
            value={"thingIds": ["org.eclipse.ditto:b", "org.eclipse.ditto:missing", "org.eclipse.ditto:a"]},
        )
        assert many["status"] == 200
        assert [t["thingId"] for t in many["value"]] == ["org.eclipse.ditto:b", "org.eclipse.ditto:a"]
        for name in ("a", "b"):
            deleted = await _command(ws, f"org.eclipse.ditto/{name}/things/twin/commands/delete")
            assert deleted["status"] == 204
        deleted = await _command(ws, f"{policy_topic}/delete")
        assert (deleted["status"], deleted["topic"]) == (204, f"{policy_topic}/delete")
        missing = await _command(ws, f"{policy_topic}/retrieve")
        assert (missing["status"], missing["topic"]) == (404, "org.eclipse.ditto/ws-policy/policies/errors")


async def test_a_stranger_receives_no_events(base: str) -> None:
    async with (
        httpx.AsyncClient(base_url=f"http://{base}", auth=("ditto", "ditto")) as http,
        _ws(base) as owner,
        _ws(base, "stranger") as stranger,
    ):
        for ws in (owner, stranger):
            await ws.send_message("START-SEND-EVENTS")
            assert await _receive(ws) == "START-SEND-EVENTS:ACK"
        assert (await http.put(f"/api/2/things/{T}", json={"attributes": {"a": 1}})).status_code == 201
        assert (await http.put(f"/api/2/things/{T}/attributes/a", json=2)).status_code == 204
        assert (await _receive(owner))["topic"].endswith("/events/created")
        assert (await _receive(owner))["topic"].endswith("/events/modified")
        await _silent(stranger)
        # ...nor can it read the thing.
        assert (await _command(stranger, f"{TOPIC}/retrieve"))["status"] == 404


# ------------------------------------------------------------------------------------------- JWT


def _token(sub: str = "alice", expires_in: float = 3600) -> str:
    payload = {"iss": ISSUER, "sub": sub, "exp": time.time() + expires_in}
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


async def test_access_token_and_refresh_keep_the_session(base: str) -> None:
    async with open_websocket_url(f"ws://{base}/ws/2?access_token={_token(expires_in=1.5)}") as ws:
        created = await _command(ws, f"{TOPIC}/create", value={})
        assert created["status"] == 201
        await ws.send_message(f"JWT-TOKEN?jwtToken={_token()}")  # no ACK
        await trio.sleep(2)  # past the first token's expiry
        retrieved = await _command(ws, f"{TOPIC}/retrieve", path="/policyId")
        assert (retrieved["status"], retrieved["value"]) == (200, T)
        # An invalid refresh is an error; the session keeps its token.
        await ws.send_message("JWT-TOKEN?jwtToken=not.a.token")
        assert (await _receive(ws))["status"] == 401
        assert (await _command(ws, f"{TOPIC}/retrieve", path="/policyId"))["status"] == 200


# ------------------------------------------------------------------------------- slow consumers


class _FakeSocket:
    """One in-process ASGI WebSocket connection; ``stall()`` makes it stop reading what the server sends."""

    def __init__(self, authorization: str) -> None:
        self.scope = {
            "type": "websocket",
            "path": "/ws/2",
            "raw_path": b"/ws/2",
            "query_string": b"",
            "headers": [(b"authorization", authorization.encode())],
            "client": ("127.0.0.1", 40000),
        }
        self._in_send, self._in_receive = trio.open_memory_channel[dict[str, Any]](16)
        self._in_send.send_nowait({"type": "websocket.connect"})
        self.frames: list[str] = []
        self.closed: int | None = None
        self.got_frame = trio.Event()
        self.stalled = False
        self.resumed = trio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self._in_receive.receive()

    async def send(self, message: dict[str, Any]) -> None:
        if self.stalled:
            await self.resumed.wait()
        if message["type"] == "websocket.send":
            self.frames.append(message["text"])
            self.got_frame.set()
        elif message["type"] == "websocket.close":
            self.closed = message["code"]

    async def say(self, text: str) -> None:
        await self._in_send.send({"type": "websocket.receive", "text": text})

    async def hang_up(self) -> None:
        await self._in_send.send({"type": "websocket.disconnect", "code": 1000})

    async def next_frame(self) -> str:
        with trio.fail_after(5):
            while not self.frames:
                self.got_frame = trio.Event()
                await self.got_frame.wait()
        return self.frames.pop(0)


async def test_a_slow_session_is_closed_and_the_others_get_everything(tmp_path: Path) -> None:
    events = 50
    async with open_api(tmp_path / "data") as api:
        sessions = WebSocketApi(
            api.service, api.authenticator, outgoing_bytes=1000
        )  # about four event frames
        slow, fast = _FakeSocket(DITTO["Authorization"]), _FakeSocket(DITTO["Authorization"])
        slow_done = trio.Event()

        async def run_slow() -> None:
            await sessions(slow.scope, slow.receive, slow.send)
            slow_done.set()

        async with trio.open_nursery() as nursery, api.client() as http:
            nursery.start_soon(run_slow)
            nursery.start_soon(sessions, fast.scope, fast.receive, fast.send)
            for socket in (slow, fast):
                await socket.say("START-SEND-EVENTS")
                assert await socket.next_frame() == "START-SEND-EVENTS:ACK"
            assert (await http.put(f"/api/2/things/{T}", json={"attributes": {"n": 0}})).status_code == 201
            assert orjson.loads(await slow.next_frame())["topic"].endswith("/events/created")
            slow.stalled = True
            with trio.fail_after(10):  # writers are not held up by the stalled session
                for n in range(1, events):
                    response = await http.put(f"/api/2/things/{T}/attributes/n", json=n)
                    assert response.status_code == 204
            slow.resumed.set()  # the peer reads again: it gets the frame it was stuck on, then why it ends
            with trio.fail_after(5):
                await slow_done.wait()
            *_, last = slow.frames
            error = orjson.loads(last)
            assert (error["status"], error["value"]["error"]) == (429, "too.many.requests")
            assert len(slow.frames) <= 2
            assert slow.closed == 1013
            received = [orjson.loads(await fast.next_frame()) for _ in range(events)]
            assert [e["revision"] for e in received] == list(range(1, events + 1))
            await fast.hang_up()
        assert fast.closed == 1000


async def test_a_peer_that_never_reads_again_does_not_keep_the_session(tmp_path: Path) -> None:
    async with open_api(tmp_path / "data") as api:
        sessions = WebSocketApi(api.service, api.authenticator, outgoing_bytes=500)
        peer = _FakeSocket(DITTO["Authorization"])
        done = trio.Event()

        async def run() -> None:
            await sessions(peer.scope, peer.receive, peer.send)
            done.set()

        async with trio.open_nursery() as nursery, api.client() as http:
            nursery.start_soon(run)
            await peer.say("START-SEND-EVENTS")
            assert await peer.next_frame() == "START-SEND-EVENTS:ACK"
            peer.stalled = True  # and never resumed
            with trio.fail_after(10):
                assert (await http.put(f"/api/2/things/{T}", json={})).status_code == 201
                for n in range(10):
                    assert (await http.put(f"/api/2/things/{T}/attributes/n", json=n)).status_code in (
                        201,
                        204,
                    )
            # The session ends by itself (bounded flush and close) although its peer's send never returns.
            with trio.fail_after(5):
                await done.wait()
            assert peer.closed is None  # the close could not be sent either


# A server-initiated close is tested in-process: trio-websocket's client leaks its socket when the server closes.


async def _closed_with_error(tmp_path: Path, authorization: str, *frames: str) -> dict[str, Any]:
    """Run one session over ``authorization`` that sends ``frames`` and is then closed by the server; the
    error envelope it got last."""
    settings = AuthSettings(jwt=(JwtIssuer(prefix="hs", issuer=ISSUER, secret=JWT_SECRET, leeway_s=0),))
    async with open_api(tmp_path / "data") as api:
        sessions = WebSocketApi(api.service, Authenticator(settings))
        peer = _FakeSocket(authorization)
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sessions, peer.scope, peer.receive, peer.send)
                for frame in frames:
                    await peer.say(frame)
        assert peer.closed == 1008
        error = orjson.loads(peer.frames[-1])
        assert error["topic"] == "unknown/unknown/things/twin/errors"
        return dict(error)


async def test_the_session_closes_when_its_token_expires(tmp_path: Path) -> None:
    error = await _closed_with_error(tmp_path, f"Bearer {_token(expires_in=1)}")
    assert (error["status"], error["value"]["error"]) == (401, "gateway:authentication.failed")
    assert "expired" in error["value"]["message"]


async def test_a_refresh_for_another_subject_closes_the_session(tmp_path: Path) -> None:
    error = await _closed_with_error(
        tmp_path, f"Bearer {_token()}", f"JWT-TOKEN?jwtToken={_token('mallory')}"
    )
    assert (error["status"], error["value"]["error"]) == (401, "gateway:authentication.failed")
    assert "another subject" in error["value"]["message"]


def test_websocket_pings_are_configured() -> None:
    default = hypercorn_config(settings_from_mapping({}).http)
    assert default.websocket_ping_interval == 20
    off = hypercorn_config(settings_from_mapping({"http": {"websocket_ping_interval_s": 0}}).http)
    assert off.websocket_ping_interval is None
    assert hypercorn_config(settings_from_mapping({"http": {"websocket_ping_interval_s": 2.5}}).http)
    with pytest.raises(Exception, match=r"http\.websocket_ping_interval_s: must not be negative"):
        settings_from_mapping({"http": {"websocket_ping_interval_s": -1}})
