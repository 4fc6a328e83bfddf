"""Thing SSE streams: Ditto's data shape, READ filtering, parameters, resume from the journal, backpressure.

Most tests drive :class:`SseApi` as an ASGI app with an in-memory ``send`` (deterministic, and time can be
mocked); one goes through a real socket with ``serve_http`` and httpx streaming.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio

from edgetwin.api.app_factory import create_app
from edgetwin.api.auth import Authenticator
from edgetwin.api.server import serve_http
from edgetwin.api.sse import SseApi, handles
from edgetwin.config import HttpSettings, SseSettings
from edgetwin.core.bus import EventBus
from edgetwin.core.commands import AuthContext, DeleteThing, MergeThing, ModifyThing, Preconditions
from edgetwin.core.events import ThingEvent
from edgetwin.core.health import Health
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.store import Store
from tests.api.conftest import AUTH_SETTINGS, DITTO

T = "org.eclipse.ditto:t1"
DITTO_AUTH = AuthContext(("nginx:ditto",))
PROXY = ("10.0.0.1", 40000)  # a trusted proxy in AUTH_SETTINGS: x-ditto-pre-authenticated is honoured
POLICY: dict[str, Any] = {
    "entries": {
        "owner": {
            "subjects": {"nginx:ditto": {"type": "test"}},
            "resources": {
                "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
            },
        },
        "observer": {
            "subjects": {"nginx:observer": {"type": "test"}},
            "resources": {"thing:/attributes": {"grant": ["READ"], "revoke": []}},
        },
    }
}


@dataclass
class Env:
    service: TwinService
    bus: EventBus
    sse: SseApi
    asgi: Any


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with _open(tmp_path, SseSettings(heartbeat_s=1.0, subscriber_buffer=64, send_timeout_s=10)) as e:
        yield e


class _Open:
    def __init__(self, path: Path, settings: SseSettings) -> None:
        self.path, self.settings = path, settings

    async def __aenter__(self) -> Env:
        self._store_cm = Store.open(self.path, map_size_mb=16, max_map_size_mb=64)
        store = self._store_cm.__enter__()
        self._writer = StoreWriter(store, queue_size=256, max_batch=64)
        bus = EventBus(subscriber_buffer=self.settings.subscriber_buffer)
        service = TwinService(store, self._writer, bus)
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        await nursery.start(self._writer.serve)
        sse = SseApi(service, Authenticator(AUTH_SETTINGS), self.settings)
        asgi = create_app(health=Health(), service=service, auth=AUTH_SETTINGS, sse=self.settings)
        return Env(service, bus, sse, asgi)

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()
        await self._nursery_cm.__aexit__(None, None, None)
        self._store_cm.__exit__(None, None, None)


def _open(path: Path, settings: SseSettings) -> _Open:
    return _Open(path, settings)


class Stream:
    """One SSE request driven through the ASGI interface."""

    def __init__(self) -> None:
        self.out, self._in = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.gone = trio.Event()
        self.done = trio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.out.send(message)

    async def start(self) -> dict[str, Any]:
        with trio.fail_after(5):
            return await self._in.receive()

    async def chunk(self) -> bytes:
        message = await self.message()
        assert message["type"] == "http.response.body"
        return bytes(message["body"])

    async def message(self) -> dict[str, Any]:
        with trio.fail_after(5):
            return await self._in.receive()

    async def event(self) -> tuple[Any, int]:
        """The next event (comments are skipped): its data and id."""
        while True:
            chunk = await self.chunk()
            if not chunk.startswith(b":"):
                return _parse(chunk)


def _parse(chunk: bytes) -> tuple[Any, int]:
    lines = chunk.decode().split("\n")
    assert lines[0].startswith("data:"), chunk
    assert lines[1].startswith("id:"), chunk
    assert lines[2:] == ["", ""], chunk
    return orjson.loads(lines[0][5:]), int(lines[1][3:])


async def _stream(
    nursery: trio.Nursery,
    app: Any,
    path: str = "/api/2/things",
    query: str = "",
    *,
    subject: str | None = "nginx:ditto",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Stream:
    stream = Stream()
    all_headers = [(b"accept", b"text/event-stream"), *(headers or [])]
    if subject is not None:
        all_headers.append((b"x-ditto-pre-authenticated", subject.encode()))
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": all_headers,
        "client": PROXY,
    }

    async def run() -> None:
        try:
            await app(scope, stream.receive, stream.send)
        finally:
            stream.done.set()

    nursery.start_soon(run)
    return stream


async def _put(service: TwinService, path: tuple[str, ...], value: Any, thing: str = T) -> None:
    await service.modify(ModifyThing(thing, path, value, Preconditions()), DITTO_AUTH)


async def _started(stream: Stream) -> None:
    start = await stream.start()
    assert start["status"] == 200, start
    assert (b"content-type", b"text/event-stream") in start["headers"]
    assert await stream.chunk() == b":\n\n"  # the opening comment puts the head on the wire at once


def test_handles_only_event_streams() -> None:
    sse = [(b"accept", b"text/event-stream")]
    assert handles("GET", "/api/2/things", sse)
    assert handles("GET", f"/api/2/things/{T}/attributes/a", sse)
    assert not handles("GET", "/api/2/things", [(b"accept", b"*/*")])
    assert not handles("PUT", "/api/2/things", sse)
    assert handles("GET", f"/api/2/things/{T}/inbox/messages/x", sse)  # message streams (issue 6)
    assert handles("GET", f"/api/2/things/{T}/features/f/outbox/messages/x", sse)
    assert not handles("GET", "/api/2/thingsx", sse)


async def test_events_carry_the_partial_thing_and_the_journal_seq(env: Env) -> None:
    async with trio.open_nursery() as nursery:
        stream = await _stream(nursery, env.sse)
        await _started(stream)
        await _put(
            env.service, (), {"attributes": {"a": 1}, "features": {"lamp": {"properties": {"on": True}}}}
        )
        await _put(env.service, ("features", "lamp", "properties", "on"), False)
        await env.service.merge(MergeThing(T, ("attributes",), {"b": None}, Preconditions()), DITTO_AUTH)
        await env.service.delete(DeleteThing(T, (), Preconditions()), DITTO_AUTH)
        created, seq1 = await stream.event()
        assert created == {
            "thingId": T,
            "policyId": T,
            "attributes": {"a": 1},
            "features": {"lamp": {"properties": {"on": True}}},
        }
        assert await stream.event() == (
            {"thingId": T, "features": {"lamp": {"properties": {"on": False}}}},
            seq1 + 1,
        )
        assert await stream.event() == ({"thingId": T, "attributes": {"b": None}}, seq1 + 2)
        assert await stream.event() == ({"thingId": T}, seq1 + 3)
        stream.gone.set()
    assert env.bus.subscribers == 0


async def test_auth_and_parameters_are_checked_before_the_stream_starts(env: Env) -> None:
    async with trio.open_nursery() as nursery:
        for query, headers, subject, status in [
            ("", [], None, 401),
            ("filter=eq(attributes", [], "nginx:ditto", 400),
            ("fields=a(", [], "nginx:ditto", 400),
            ("ids=nonamespace", [], "nginx:ditto", 400),
            ("", [(b"last-event-id", b"abc")], "nginx:ditto", 400),
        ]:
            stream = await _stream(nursery, env.sse, query=query, subject=subject, headers=headers)
            assert (await stream.start())["status"] == status, query


async def test_events_are_filtered_by_read_at_delivery(env: Env) -> None:
    async with trio.open_nursery() as nursery:
        observer = await _stream(nursery, env.sse, subject="nginx:observer")
        stranger = await _stream(nursery, env.sse, subject="nginx:stranger")
        await _started(observer)
        await _started(stranger)
        created = ModifyThing(T, (), {"attributes": {"a": 1}, "features": {"f": {}}}, Preconditions(), POLICY)
        await env.service.modify(created, DITTO_AUTH)
        await _put(env.service, ("features", "f", "properties"), {"secret": 1})  # unreadable: skipped
        await _put(env.service, ("attributes", "a"), 2)
        # Only the readable part of the created thing, then the attribute change, nothing of the feature.
        assert (await observer.event())[0] == {"thingId": T, "attributes": {"a": 1}}
        assert (await observer.event())[0] == {"thingId": T, "attributes": {"a": 2}}
        # The stranger sees nothing of T: its first event is of a thing it owns.
        stranger_auth = AuthContext(("nginx:stranger",))
        await env.service.modify(ModifyThing("org.eclipse.ditto:own", (), {}, Preconditions()), stranger_auth)
        assert (await stranger.event())[0]["thingId"] == "org.eclipse.ditto:own"
        nursery.cancel_scope.cancel()


async def test_filter_fields_extra_fields_ids_and_namespaces(env: Env) -> None:
    lamp: dict[str, Any] = {"lamp": {"properties": {}}}
    await _put(env.service, (), {"attributes": {"location": "kitchen"}, "features": lamp})
    await _put(env.service, (), {"attributes": {"location": "hall"}, "features": lamp}, thing="other.ns:t2")
    async with trio.open_nursery() as nursery:
        # Ditto: the filter sees the event's partial thing plus extraFields.
        filtered = await _stream(
            nursery,
            env.sse,
            query="filter=eq(attributes/location,%22kitchen%22)&extraFields=attributes/location",
        )
        selected = await _stream(
            nursery, env.sse, query="fields=thingId,_revision,_context/topic,_context/path"
        )
        by_ns = await _stream(nursery, env.sse, query="namespaces=other.ns")
        by_id = await _stream(nursery, env.sse, path=f"/api/2/things/{T}")
        pointer = await _stream(nursery, env.sse, path=f"/api/2/things/{T}/features/lamp")
        for s in (filtered, selected, by_ns, by_id, pointer):
            await _started(s)
        await _put(env.service, ("features", "lamp", "properties", "on"), True, thing="other.ns:t2")
        await _put(env.service, ("features", "lamp", "properties", "on"), True)
        data, _ = await filtered.event()
        assert data == {
            "thingId": T,
            "attributes": {"location": "kitchen"},
            "features": {"lamp": {"properties": {"on": True}}},
        }
        assert (await selected.event())[0] == {
            "thingId": "other.ns:t2",
            "_revision": 2,
            "_context": {
                "topic": "other.ns/t2/things/twin/events/created",
                "path": "/features/lamp/properties/on",
            },
        }
        assert (await by_ns.event())[0]["thingId"] == "other.ns:t2"
        assert (await by_id.event())[0]["thingId"] == T
        assert (await pointer.event())[0] == {"properties": {"on": True}}  # the raw value at the pointer
        # A later change the filter excludes is skipped, a matching one arrives.
        await _put(env.service, ("attributes", "location"), "hall")
        await _put(env.service, ("attributes", "location"), "kitchen")
        assert (await filtered.event())[0] == {"thingId": T, "attributes": {"location": "kitchen"}}
        nursery.cancel_scope.cancel()


async def test_heartbeat_when_idle(env: Env, autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        stream = await _stream(nursery, env.sse)
        await _started(stream)
        t0 = trio.current_time()
        assert await stream.chunk() == b":\n\n"
        assert trio.current_time() - t0 == pytest.approx(1.0)
        assert await stream.chunk() == b":\n\n"
        nursery.cancel_scope.cancel()


async def test_a_stream_that_falls_behind_is_told_why_and_closed(tmp_path: Path) -> None:
    async with _open(tmp_path, SseSettings(subscriber_buffer=4)) as env, trio.open_nursery() as nursery:
        await _put(env.service, (), {"attributes": {"a": 0}})
        stream = await _stream(nursery, env.sse)
        await _started(stream)
        for i in range(10):  # faster than any consumer: the bus drops the stream, publishing never waits
            env.bus.publish_nowait(
                ThingEvent("modified", T, ("attributes", "a"), i, i + 2, "t", None, seq=100 + i, policy_id=T)
            )
        while True:
            message = await stream._in.receive()
            if message["body"].startswith(b": closed"):
                break
        assert b"fell more than 4 events behind" in message["body"]
        assert message["more_body"] is False
        with trio.fail_after(5):
            await stream.done.wait()
    assert env.bus.dropped == 1


async def test_a_client_that_takes_nothing_is_disconnected(env: Env, autojump_clock: trio.abc.Clock) -> None:
    stuck = trio.Event()
    started: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if started:
            await stuck.wait()  # the client stopped reading
        started.append(message)

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/2/things",
        "raw_path": b"/api/2/things",
        "query_string": b"",
        "headers": [(b"accept", b"text/event-stream"), (b"x-ditto-pre-authenticated", b"nginx:ditto")],
        "client": PROXY,
    }
    t0 = trio.current_time()
    with trio.fail_after(60):
        await env.sse(scope, receive, send)
    assert trio.current_time() - t0 == pytest.approx(10.0)  # the opening comment waits send_timeout_s
    assert env.bus.subscribers == 0


async def test_pruned_events_are_announced_on_resume(tmp_path: Path) -> None:
    async with _open(tmp_path, SseSettings()) as env:
        env.service._journal_max_events = 2  # the retention of a small box
        await _put(env.service, (), {"attributes": {"a": 0}})
        for i in range(1, 5):
            await _put(env.service, ("attributes", "a"), i)
        async with trio.open_nursery() as nursery:
            stream = await _stream(nursery, env.sse, headers=[(b"last-event-id", b"1")])
            await _started(stream)
            assert await stream.chunk() == b": events 2 to 3 are no longer retained\n\n"
            assert [await stream.event() for _ in range(2)] == [
                ({"thingId": T, "attributes": {"a": 3}}, 4),
                ({"thingId": T, "attributes": {"a": 4}}, 5),
            ]
            nursery.cancel_scope.cancel()


class RawSse:
    """An SSE client over a raw socket (HTTP/1.0, so the body is the bare stream until the server closes)."""

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    async def open(cls, address: str, path: str, headers: dict[str, str]) -> tuple[RawSse, bytes]:
        host, port = address.rsplit(":", 1)
        sock = await trio.open_tcp_stream(host, int(port))
        head = f"GET {path} HTTP/1.0\r\nhost: {address}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        await sock.send_all(head.encode() + b"\r\n")
        client = cls(sock)
        response_head = await client._until(b"\r\n\r\n")
        return client, response_head

    async def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = await self.sock.receive_some(65536)
            if not data:
                raise AssertionError("the stream ended")
            self.buffer += data
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    async def event(self) -> tuple[Any, int]:
        while True:
            block = await self._until(b"\n\n")
            if not block.startswith(b":"):
                return _parse(block + b"\n\n")


async def test_resume_over_a_real_socket_misses_nothing_and_repeats_nothing(env: Env) -> None:
    stop = trio.Event()
    sse_headers = {**DITTO, "accept": "text/event-stream"}
    path = f"/api/2/things/{T}"
    received: list[tuple[Any, int]] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve_http(
                    env.asgi,
                    HttpSettings(bind="127.0.0.1:0"),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            await _put(env.service, (), {"attributes": {"n": 0}})
            client, head = await RawSse.open(binds[0], path, sse_headers)
            assert head.startswith(b"HTTP/1.1 200")
            assert b"content-type: text/event-stream" in head.lower()
            await _put(env.service, ("attributes", "n"), 1)
            await _put(env.service, ("attributes", "n"), 2)
            received += [await client.event(), await client.event()]
            await client.sock.aclose()
            # Disconnected: these happen while nobody listens.
            for n in range(3, 6):
                await _put(env.service, ("attributes", "n"), n)
            client, head = await RawSse.open(
                binds[0], path, {**sse_headers, "last-event-id": str(received[-1][1])}
            )
            for _ in range(3):
                received.append(await client.event())
            await _put(env.service, ("attributes", "n"), 6)  # live, after the replay
            received.append(await client.event())
            await client.sock.aclose()
            stop.set()
    assert [data["attributes"]["n"] for data, _ in received] == [1, 2, 3, 4, 5, 6]
    ids = [seq for _, seq in received]
    assert ids == list(range(ids[0], ids[0] + 6))


# ------------------------------------------------------------------------------------------ search stream

SEARCH = "/api/2/search/things"


async def _search(env: Env, query: str = "", *, subject: str = "nginx:ditto", last: str | None = None) -> Any:
    """The ``(thingId, data)`` of a search stream until it ends, or its error response."""
    headers = [(b"last-event-id", last.encode())] if last is not None else []
    async with trio.open_nursery() as nursery:
        stream = await _stream(nursery, env.sse, SEARCH, query, subject=subject, headers=headers)
        start = await stream.start()
        if start["status"] != 200:
            body = await stream.start()
            stream.gone.set()
            return start["status"], orjson.loads(body["body"])
        assert (b"content-type", b"text/event-stream") in start["headers"]
        events: list[tuple[str, Any]] = []
        while True:
            message = await stream.message()
            chunk = bytes(message["body"])
            if chunk and not chunk.startswith(b":"):  # comments (the opening one) are not events
                lines = chunk.decode().split("\n")
                if lines[1].startswith("id:"):
                    assert lines[2:] == ["", ""], chunk
                    events.append((lines[1][3:], orjson.loads(lines[0][5:])))
                else:
                    events.append(("error", orjson.loads(lines[0][5:])))
            if not message["more_body"]:
                break
        stream.gone.set()
    await stream.done.wait()
    return events


async def _things(env: Env, count: int) -> list[str]:
    ids = [f"org.eclipse.ditto:s{n:02d}" for n in range(count)]
    for n, thing_id in enumerate(ids):
        await _put(env.service, (), {"attributes": {"n": n, "even": n % 2 == 0}}, thing=thing_id)
    return ids


def test_handles_the_search_stream() -> None:
    sse = [(b"accept", b"text/event-stream")]
    assert handles("GET", SEARCH, sse)
    assert handles("GET", SEARCH + "/", sse)
    assert not handles("GET", SEARCH, [(b"accept", b"application/json")])
    assert not handles("POST", SEARCH, sse)
    assert not handles("GET", SEARCH + "/count", sse)


async def test_search_stream_sends_each_thing_and_ends(env: Env) -> None:
    ids = await _things(env, 7)
    events = await _search(env, "option=sort(%2BthingId),size(2)&fields=thingId,attributes/n")
    assert events == [
        (thing_id, {"thingId": thing_id, "attributes": {"n": n}}) for n, thing_id in enumerate(ids)
    ]
    # fields without thingId: the id still names each event, the data has only what was selected
    evens = await _search(env, "filter=eq(attributes/even,true)&fields=attributes/n&option=sort(-thingId)")
    assert evens == [(ids[n], {"attributes": {"n": n}}) for n in (6, 4, 2, 0)]
    default = await _search(env, "namespaces=org.eclipse.ditto&option=size(3)")
    assert [thing_id for thing_id, _ in default] == ids
    assert default[0][1] == {"thingId": ids[0], "policyId": ids[0], "attributes": {"n": 0, "even": True}}
    assert await _search(env, "namespaces=other") == []
    assert await _search(env, subject="nginx:stranger") == []  # nothing readable


async def test_search_stream_resumes_after_last_event_id(env: Env) -> None:
    ids = await _things(env, 6)
    query = "option=sort(%2BthingId),size(2)&fields=thingId"
    assert [i for i, _ in await _search(env, query, last=ids[2])] == ids[3:]
    # by comparison: the thing need not exist any more
    assert [i for i, _ in await _search(env, query, last="org.eclipse.ditto:s02x")] == ids[3:]
    descending = "option=sort(-thingId),size(2)&fields=thingId"
    assert [i for i, _ in await _search(env, descending, last=ids[2])] == [ids[1], ids[0]]
    # another sort: after the thing's position in the results
    by_value = "option=sort(-attributes/n),size(4)&fields=thingId"
    assert [i for i, _ in await _search(env, by_value, last=ids[4])] == [ids[3], ids[2], ids[1], ids[0]]
    assert await _search(env, query, last=ids[5]) == []


async def test_search_stream_refuses_bad_parameters_before_it_starts(env: Env) -> None:
    for query, last in [
        ("filter=eq(attributes", None),
        ("option=sort(", None),
        ("option=limit(0,2)", None),
        ("option=cursor(abc)", None),
        ("fields=a(", None),
        ("", "not a thing id"),
    ]:
        status, body = await _search(env, query, last=last)
        assert status == 400, (query, body)
    status, _ = await _search(env, subject="")
    assert status == 401
