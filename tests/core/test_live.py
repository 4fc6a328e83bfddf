"""The live router over the real store and service: routing, permissions, correlation and deadlines.

Deadlines run on trio's ``MockClock(autojump_threshold=0)``: a request that nobody answers ends exactly at
its deadline, however many wait, and the test takes no wall-clock time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from edgetwin import rql
from edgetwin.core.bus import EventBus
from edgetwin.core.commands import (
    AuthContext,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    RetrieveThing,
    SendMessage,
)
from edgetwin.core.live import LiveFilter, LiveRouter
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.errors import (
    Conflict,
    EdgeTwinError,
    InvalidInput,
    NotFound,
    PolicyDenied,
    PreconditionFailed,
    RequestTimeout,
)
from edgetwin.protocol import Envelope, parse_envelope
from edgetwin.protocol.live import live_command_envelope, message_envelope
from edgetwin.store import Store
from edgetwin.twin.pointer import MISSING
from tests.devices import Device

OWNER = AuthContext(("nginx:ditto",))
READER = AuthContext(("nginx:reader",))
PARTIAL = AuthContext(("nginx:partial",))
STRANGER = AuthContext(("nginx:stranger",))
T = "org.eclipse.ditto:lamp"
POLICY: dict[str, Any] = {
    "owner": {
        "subjects": {"nginx:ditto": {"type": "u"}},
        "resources": {
            "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
            "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
            "message:/": {"grant": ["READ", "WRITE"], "revoke": []},
        },
    },
    "reader": {
        "subjects": {"nginx:reader": {"type": "u"}},
        "resources": {
            "thing:/": {"grant": ["READ"], "revoke": []},
            "message:/": {"grant": ["READ"], "revoke": []},
        },
    },
    "partial": {
        "subjects": {"nginx:partial": {"type": "u"}},
        "resources": {
            "thing:/attributes/public": {"grant": ["READ"], "revoke": []},
            "message:/inbox/messages/public": {"grant": ["READ", "WRITE"], "revoke": []},
        },
    },
}


@dataclass
class Env:
    service: TwinService
    router: LiveRouter


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=1024, max_batch=256)
        service = TwinService(store, writer, EventBus())
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            await service.modify_policy(ModifyPolicy(T, (), {"entries": POLICY}), OWNER)
            thing: dict[str, Any] = {
                "policyId": T,
                "attributes": {"public": 1, "secret": 2},
                "features": {"f": {}},
            }
            await service.modify(ModifyThing(T, (), thing), OWNER)
            yield Env(service, LiveRouter(service, max_pending=10_000))
            writer.close()


def _envelope(
    cmd: Any, action: str, cid: str = "c1", *, timeout_s: float = 5.0, required: bool = True
) -> Envelope:
    return live_command_envelope(
        cmd,
        action=action,
        correlation_id=cid,
        response_required=required,
        timeout_s=timeout_s,
        originator="x",
    )


async def _ask(env: Env, cmd: Any, action: str, auth: AuthContext = OWNER, **kw: Any) -> Any:
    return await env.router.command(cmd, _envelope(cmd, action, kw.pop("cid", "c1")), auth, **kw)


async def test_a_live_retrieve_is_answered_by_the_device(env: Env) -> None:
    device = Device(env.router)
    env.router.attach(device, "live-commands")
    cmd = RetrieveThing(T, ("attributes", "public"))
    async with trio.open_nursery() as nursery:
        results: list[Any] = []

        async def ask() -> None:
            results.append(await _ask(env, cmd, "retrieve", timeout_s=5))

        nursery.start_soon(ask)
        signal = await device.next()
        sent = signal.envelope.to_json()
        assert sent["topic"] == "org.eclipse.ditto/lamp/things/live/commands/retrieve"
        assert sent["path"] == "/attributes/public"
        assert sent["headers"]["requested-acks"] == ["live-response"]
        assert sent["headers"]["channel"] == "live"
        assert signal.frame.startswith('{"topic":')
        assert device.answer(signal, 200, "live-ACME", headers={"content-type": "application/json"}) is None
    assert (results[0].status, results[0].value, results[0].content_type) == (
        200,
        "live-ACME",
        "application/json",
    )
    assert env.router.pending == 0
    # The twin is untouched by a live retrieve.
    assert (await env.service.retrieve(cmd, OWNER)).value == 1


async def test_nobody_answers_408_exactly_at_the_deadline(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    start = trio.current_time()
    with pytest.raises(RequestTimeout) as caught:
        await _ask(env, RetrieveThing(T), "retrieve", timeout_s=7.5)
    assert trio.current_time() - start == pytest.approx(7.5)
    assert caught.value.error_code == "command.timeout"
    assert caught.value.message == "Received no appropriate live response within the specified timeout."
    assert env.router.pending == 0
    assert env.router.timeouts == 1


async def test_thousands_pending_each_end_at_its_own_deadline(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    ended: dict[int, float] = {}
    start = trio.current_time()

    async def ask(i: int) -> None:
        with pytest.raises(RequestTimeout):
            await _ask(env, RetrieveThing(T), "retrieve", cid=f"c{i}", timeout_s=1 + (i % 10) * 0.1)
        ended[i] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        for i in range(5000):
            nursery.start_soon(ask, i)
        await trio.testing.wait_all_tasks_blocked()
        assert env.router.pending == 5000
    assert all(ended[i] == pytest.approx(1 + (i % 10) * 0.1) for i in range(5000))
    assert env.router.pending == 0


async def test_first_valid_answer_wins_and_the_rest_are_dropped(env: Env) -> None:
    device = Device(env.router)
    other = Device(env.router)
    outsider = Device(env.router)  # never received the request
    env.router.attach(device, "live-commands")
    env.router.attach(other, "live-commands")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            results.append(
                await _ask(env, ModifyThing(T, ("attributes", "public"), 5), "modify", timeout_s=5)
            )

        nursery.start_soon(ask)
        signal = await device.next()
        await other.next()
        assert outsider.answer(signal, 204) == "This session did not receive the request it answers."
        assert device.answer(signal, 204) is None
        assert "No live request waits" in (other.answer(signal, 204) or "")
        assert "No live request waits" in (device.answer(signal, 204) or "")  # duplicate
    assert results[0].status == 204
    assert env.router.dropped_answers == 3
    # A live modify does not change the twin.
    assert (await env.service.retrieve(RetrieveThing(T, ("attributes", "public")), OWNER)).value == 1


@pytest.mark.parametrize(
    ("overrides", "status", "problem"),
    [
        (
            {"topic": "org.eclipse.ditto/lamp/things/live/commands/modify"},
            204,
            "is not related to type of command",
        ),
        ({"path": "/attributes/secret"}, 200, "is not related to type of command"),
        ({}, 206, "The status 206 is not allowed for a live retrieve response"),
        (
            {"topic": "org.eclipse.ditto/other/things/live/commands/retrieve"},
            200,
            "is for 'org.eclipse.ditto:other'",
        ),
        ({"topic": "org.eclipse.ditto/lamp/things/live/errors"}, 200, "which is not an error status"),
    ],
)
async def test_invalid_answers_are_ignored_and_named_in_the_408(
    env: Env, autojump_clock: trio.testing.MockClock, overrides: dict[str, Any], status: int, problem: str
) -> None:
    device = Device(env.router)
    env.router.attach(device, "live-commands")
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            with pytest.raises(RequestTimeout) as caught:
                await _ask(env, RetrieveThing(T, ("attributes", "public")), "retrieve", timeout_s=3)
            assert "An invalid response was received, though:" in caught.value.message
            assert problem in caught.value.message

        nursery.start_soon(ask)
        signal = await device.next()
        assert problem in (device.answer(signal, status, 1, **overrides) or "")


async def test_a_device_error_reaches_the_caller_with_its_status(env: Env) -> None:
    device = Device(env.router)
    env.router.attach(device, "live-commands")
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            with pytest.raises(EdgeTwinError) as caught:
                await _ask(env, RetrieveThing(T), "retrieve", timeout_s=5)
            assert (caught.value.status, caught.value.error_code) == (429, "too.many.requests")
            assert caught.value.message == "slow down"

        nursery.start_soon(ask)
        signal = await device.next()
        error = {"status": 429, "error": "too.many.requests", "message": "slow down"}
        assert (
            device.answer(signal, 429, error, topic="org.eclipse.ditto/lamp/things/live/errors", path="/")
            is None
        )


async def test_policies_apply_on_the_way_out(env: Env) -> None:
    with pytest.raises(NotFound):
        await _ask(env, RetrieveThing(T), "retrieve", STRANGER, timeout_s=1)
    with pytest.raises(NotFound):
        await _ask(env, RetrieveThing(T, ("attributes", "secret")), "retrieve", PARTIAL, timeout_s=1)
    with pytest.raises(PolicyDenied) as denied:
        await _ask(env, ModifyThing(T, ("attributes", "public"), 1), "modify", READER, timeout_s=1)
    assert denied.value.error_code == "things:attribute.notmodifiable"
    with pytest.raises(PolicyDenied):
        await _ask(env, MergeThing(T, ("attributes",), {"public": 2}), "merge", READER, timeout_s=1)
    with pytest.raises(PolicyDenied) as denied:
        await _ask(env, DeleteThing(T), "delete", READER, timeout_s=1)
    assert denied.value.error_code == "things:thing.notdeletable"
    with pytest.raises(NotFound):
        await _ask(env, RetrieveThing("org.eclipse.ditto:missing"), "retrieve", timeout_s=1)


async def test_receivers_see_only_what_they_may_read_and_asked_for(env: Env) -> None:
    owner, reader, partial, stranger = (
        Device(env.router, auth) for auth in (OWNER, READER, PARTIAL, STRANGER)
    )
    other_ns = Device(env.router, OWNER)
    filtered = Device(env.router, OWNER)
    for device in (owner, reader, partial, stranger):
        env.router.attach(device, "live-commands")
    env.router.attach(other_ns, "live-commands", LiveFilter(namespaces=frozenset({"com.acme"})))
    env.router.attach(
        filtered, "live-commands", LiveFilter(filter=rql.parse_filter("eq(attributes/public,2)"))
    )
    await env.router.command(
        RetrieveThing(T, ("attributes", "secret")),
        _envelope(RetrieveThing(T, ("attributes", "secret")), "retrieve", required=False),
        OWNER,
        timeout_s=1,
        response_required=False,
    )
    assert [len(d.signals) for d in (owner, reader, partial, stranger, other_ns, filtered)] == [
        1,
        1,
        0,
        0,
        0,
        0,
    ]
    env.router.attach(
        filtered, "live-commands", LiveFilter(filter=rql.parse_filter("eq(attributes/public,1)"))
    )
    env.router.detach(reader)
    cmd = RetrieveThing(T, ("attributes", "public"))
    await env.router.command(
        cmd, _envelope(cmd, "retrieve", required=False), OWNER, timeout_s=1, response_required=False
    )
    assert [len(d.signals) for d in (owner, reader, partial, stranger, other_ns, filtered)] == [
        2,
        1,
        1,
        0,
        0,
        1,
    ]
    # The sender itself is not a receiver of its own request.
    await env.router.command(
        cmd,
        _envelope(cmd, "retrieve", required=False),
        OWNER,
        timeout_s=1,
        response_required=False,
        origin=owner,
    )
    assert len(owner.signals) == 2


async def test_a_live_answer_is_filtered_to_what_the_caller_may_read(env: Env) -> None:
    device = Device(env.router)
    env.router.attach(device, "live-commands")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            results.append(await _ask(env, RetrieveThing(T), "retrieve", PARTIAL, timeout_s=5))

        nursery.start_soon(ask)
        signal = await device.next()
        device.answer(signal, 200, {"thingId": T, "attributes": {"public": 9, "secret": 9}})
    assert results[0].value == {"thingId": T, "attributes": {"public": 9}}


async def test_update_twin_writes_a_live_retrieve_into_the_twin(env: Env) -> None:
    device = Device(env.router)
    env.router.attach(device, "live-commands")
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            await _ask(
                env, RetrieveThing(T, ("attributes", "public")), "retrieve", timeout_s=5, update_twin=True
            )

        nursery.start_soon(ask)
        device.answer(await device.next(), 200, 42)
    assert (await env.service.retrieve(RetrieveThing(T, ("attributes", "public")), OWNER)).value == 42


async def test_correlation_conflicts_and_the_pending_limit(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    router = LiveRouter(env.service, max_pending=2)
    cmd = RetrieveThing(T)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(router.command, cmd, _envelope(cmd, "retrieve", "a"), OWNER, timeout_s=60))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Conflict):
            await router.command(cmd, _envelope(cmd, "retrieve", "a"), OWNER, timeout_s=1)
        nursery.start_soon(partial(router.command, cmd, _envelope(cmd, "retrieve", "b"), OWNER, timeout_s=60))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(EdgeTwinError) as caught:
            await router.command(cmd, _envelope(cmd, "retrieve", "c"), OWNER, timeout_s=1)
        assert (caught.value.status, caught.value.error_code) == (429, "too.many.requests")
        nursery.cancel_scope.cancel()
    assert router.pending == 0  # cancelled callers leave nothing behind


async def test_the_condition_is_checked_on_the_twin(env: Env) -> None:
    cmd = RetrieveThing(T, (), preconditions=Preconditions(condition="eq(attributes/public,2)"))
    with pytest.raises(PreconditionFailed):
        await _ask(env, cmd, "retrieve", timeout_s=1)
    assert env.router.condition_holds(T, "eq(attributes/public,1)", OWNER)
    assert not env.router.condition_holds(T, "eq(attributes/public,2)", OWNER)
    with pytest.raises(PreconditionFailed) as caught:
        env.router.condition_holds(T, "eq(attributes/secret,2)", PARTIAL)
    assert "live channel condition" in caught.value.message
    with pytest.raises(InvalidInput) as invalid:
        env.router.condition_holds(T, "eq(attributes/public", OWNER)
    assert invalid.value.error_code == "things:condition.invalid"
    with pytest.raises(NotFound):
        env.router.condition_holds(T, "eq(attributes/public,1)", STRANGER)


def _message(subject: str, value: Any = "hi", **kw: Any) -> SendMessage:
    return SendMessage(T, "inbox", subject, value, "text/plain", **kw)


async def _send(env: Env, message: SendMessage, auth: AuthContext, **kw: Any) -> Any:
    envelope = message_envelope(
        message,
        correlation_id=kw.pop("cid", "m1"),
        response_required=kw.get("response_required", True),
        timeout_s=5,
        originator=auth.originator,
    )
    return await env.router.message(message, envelope, auth, timeout_s=kw.pop("timeout_s", 5), **kw)


async def test_messages_need_write_and_reach_readers(env: Env) -> None:
    receivers = {
        name: Device(env.router, auth) for name, auth in [("r", READER), ("p", PARTIAL), ("s", STRANGER)]
    }
    for device in receivers.values():
        env.router.attach(device, "messages")
    with pytest.raises(PolicyDenied) as denied:
        await _send(env, _message("ask"), READER)
    assert denied.value.error_code == "messages:send.notallowed"
    with pytest.raises(NotFound):
        await _send(env, _message("ask"), STRANGER)
    await _send(env, _message("public"), PARTIAL, response_required=False)
    assert [len(d.signals) for d in receivers.values()] == [1, 1, 0]
    signal = receivers["r"].signals[0]
    sent = signal.envelope.to_json()
    assert sent["topic"] == "org.eclipse.ditto/lamp/things/live/messages/public"
    assert sent["path"] == "/inbox/messages/public"
    assert sent["headers"]["ditto-message-direction"] == "TO"
    assert sent["value"] == "hi"
    # A claim needs no permission at all.
    await _send(env, SendMessage(T, "inbox", "claim", MISSING, claim=True), STRANGER, response_required=False)
    assert len(receivers["r"].signals) == 2


async def test_a_message_is_answered_with_any_status(env: Env) -> None:
    device = Device(env.router, READER)
    env.router.attach(device, "messages", LiveFilter(thing_id=T, path_prefix=("inbox", "messages")))
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def send() -> None:
            results.append(await _send(env, _message("a/b"), OWNER))

        nursery.start_soon(send)
        signal = await device.next()
        assert signal.path == ("inbox", "messages", "a", "b")
        wrong = "org.eclipse.ditto/lamp/things/live/messages/other"
        assert "is not related to the message" in (device.answer(signal, 200, topic=wrong) or "")
        device.answer(
            signal, 418, "teapot", headers={"content-type": "text/plain"}, path="/outbox/messages/a/b"
        )
    assert (results[0].status, results[0].value, results[0].content_type) == (418, "teapot", "text/plain")


async def test_live_events_need_write_and_reach_live_event_receivers(env: Env) -> None:
    receiver = Device(env.router, READER)
    env.router.attach(receiver, "live-events")
    event = parse_envelope(
        {
            "topic": "org.eclipse.ditto/lamp/things/live/events/modified",
            "path": "/attributes/public",
            "value": 3,
        }
    )
    with pytest.raises(PolicyDenied) as denied:
        env.router.event(event, READER)
    assert denied.value.error_code == "things:event.notallowed"
    env.router.event(event, OWNER)
    assert [s.envelope.value for s in receiver.signals] == [3]
