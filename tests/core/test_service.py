"""The command service over the real LMDB store and single writer: Ditto's twin semantics end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from edgetwin.core.bus import EventBus
from edgetwin.core.commands import (
    AuthContext,
    CountThings,
    CreateThing,
    DeleteThing,
    MergeThing,
    ModifyThing,
    Preconditions,
    RetrieveThing,
    RetrieveThings,
    SearchThings,
    Written,
)
from edgetwin.core.events import ThingEvent
from edgetwin.core.service import TwinService
from edgetwin.core.writer import StoreWriter
from edgetwin.errors import InvalidInput, NotFound, NotModified, PayloadTooLarge, PreconditionFailed
from edgetwin.store import Store
from edgetwin.store.policies import get_policy
from edgetwin.twin.fields import parse_fields

AUTH = AuthContext(("nginx:ditto",), correlation_id="c-1")
T = "org.eclipse.ditto:t1"


@dataclass
class Env:
    service: TwinService
    store: Store
    events: trio.MemoryReceiveChannel[ThingEvent]
    clock: list[float]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    clock = [1_700_000_000.0]
    with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:
        writer = StoreWriter(store, queue_size=1024, max_batch=256)
        bus = EventBus(subscriber_buffer=10_000)
        service = TwinService(store, writer, bus, now=lambda: clock[0])
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.serve)
            with bus.subscribe() as events:
                yield Env(service, store, events, clock)
            writer.close()


async def put(env: Env, path: tuple[str, ...], value: Any, **pre: str) -> Written:
    return await env.service.modify(ModifyThing(T, path, value, Preconditions(**pre)), AUTH)


async def get(env: Env, path: tuple[str, ...] = (), **kw: Any) -> Any:
    return await env.service.retrieve(RetrieveThing(T, path, **kw), AUTH)


async def test_create_then_modify_revisions_timestamps_and_events(env: Env) -> None:
    created = await put(env, (), {"attributes": {"a": 1}})
    assert created.status == 201
    assert created.etag == '"rev:1"'
    assert created.value == {"thingId": T, "policyId": T, "attributes": {"a": 1}}
    env.clock[0] += 5
    modified = await put(env, ("attributes", "a"), 2)
    assert (modified.status, modified.revision) == (204, 2)
    assert modified.etag is not None
    assert modified.etag.startswith('"hash:')
    full = await get(env, fields=parse_fields("thingId,_revision,_created,_modified,_namespace,attributes"))
    assert full.value == {
        "thingId": T,
        "_revision": 2,
        "_created": "2023-11-14T22:13:20.000000Z",
        "_modified": "2023-11-14T22:13:25.000000Z",
        "_namespace": "org.eclipse.ditto",
        "attributes": {"a": 2},
    }
    first, second = env.events.receive_nowait(), env.events.receive_nowait()
    assert (first.action, first.revision, first.path, first.correlation_id) == ("created", 1, (), "c-1")
    assert (second.action, second.revision, second.path, second.value) == (
        "modified",
        2,
        ("attributes", "a"),
        2,
    )


async def test_default_policy_is_created_for_the_originator(env: Env) -> None:
    await put(env, (), {})
    with env.store.read() as r:
        policy = get_policy(r, T)
    assert policy is not None
    assert policy["entries"]["DEFAULT"]["subjects"] == {"nginx:ditto": {"type": "generated"}}
    assert set(policy["entries"]["DEFAULT"]["resources"]) == {"thing:/", "policy:/", "message:/"}


async def test_sixty_four_concurrent_writers_lose_no_update(env: Env) -> None:
    await put(env, (), {"attributes": {}})

    async def write(i: int) -> None:
        await env.service.merge(MergeThing(T, ("attributes",), {f"k{i}": i}), AUTH)

    async with trio.open_nursery() as nursery:
        for i in range(64):
            nursery.start_soon(write, i)
    thing = await get(env, fields=parse_fields("_revision,attributes"))
    assert thing.value["_revision"] == 65
    assert thing.value["attributes"] == {f"k{i}": i for i in range(64)}


async def test_seed_condition_example(env: Env) -> None:
    """shared/seeds/002: update the temperature only if the new reading is newer."""
    await put(
        env,
        (),
        {"features": {"temperature": {"properties": {"value": 10, "lastModified": "2021-08-22T19:45:00Z"}}}},
    )
    cond = 'gt(features/temperature/properties/lastModified,"2021-08-22T19:40:00Z")'
    ok = await put(env, ("features", "temperature", "properties", "value"), 20, condition=cond)
    assert ok.status == 204
    stale = 'gt(features/temperature/properties/lastModified,"2021-08-22T19:50:00Z")'
    with pytest.raises(PreconditionFailed) as info:
        await put(env, ("features", "temperature", "properties", "value"), 30, condition=stale)
    assert info.value.error_code == "things:condition.failed"
    assert (await get(env, ("features", "temperature", "properties", "value"))).value == 20
    events = [env.events.receive_nowait() for _ in range(2)]
    assert [e.action for e in events] == ["created", "modified"]
    with pytest.raises(trio.WouldBlock):
        env.events.receive_nowait()  # the refused write published nothing


async def test_malformed_condition_is_400(env: Env) -> None:
    await put(env, (), {})
    with pytest.raises(InvalidInput) as info:
        await put(env, ("attributes", "x"), 1, condition="eq(attributes/x")
    assert info.value.error_code == "things:condition.invalid"


async def test_condition_on_hidden_fields(env: Env) -> None:
    await put(env, (), {})
    await put(env, ("attributes", "x"), 1, condition="eq(_revision,1)")
    with pytest.raises(PreconditionFailed):
        await put(env, ("attributes", "x"), 2, condition="eq(_revision,1)")


async def test_if_match_and_if_none_match(env: Env) -> None:
    with pytest.raises(PreconditionFailed):
        await put(env, (), {}, if_match="*")  # absent
    await put(env, (), {}, if_none_match="*")
    with pytest.raises(PreconditionFailed) as info:
        await put(env, (), {}, if_none_match="*")
    assert info.value.headers["etag"] == '"rev:1"'
    await put(env, (), {"attributes": {}}, if_match='"rev:1"')
    with pytest.raises(PreconditionFailed) as info:
        await put(env, (), {}, if_match='"rev:1"')
    assert info.value.headers["etag"] == '"rev:2"'
    with pytest.raises(NotModified) as not_modified:
        await get(env, preconditions=Preconditions(if_none_match='"rev:2"'))
    assert not_modified.value.headers["etag"] == '"rev:2"'
    assert (await get(env, preconditions=Preconditions(if_none_match='"rev:1"'))).etag == '"rev:2"'


async def test_preconditions_skipped_for_get_and_delete_of_absent(env: Env) -> None:
    with pytest.raises(NotFound):
        await get(env, preconditions=Preconditions(if_match="*"))
    with pytest.raises(NotFound):
        await env.service.delete(DeleteThing(T, (), Preconditions(if_match="*")), AUTH)


async def test_if_equal_skip(env: Env) -> None:
    await put(env, (), {"attributes": {"a": 1}})
    with pytest.raises(PreconditionFailed):
        await put(env, ("attributes", "a"), 1, if_equal="skip")
    assert (await put(env, ("attributes", "a"), 2, if_equal="skip")).status == 204


async def test_delete_keeps_policy_and_recreate_rules(env: Env) -> None:
    await put(env, (), {"attributes": {"a": 1}})
    await put(env, ("attributes", "a"), 2)
    deleted = await env.service.delete(DeleteThing(T), AUTH)
    assert deleted.status == 204
    with pytest.raises(NotFound):
        await get(env)
    with pytest.raises(InvalidInput) as info:
        await put(env, (), {})  # the implicit policy id is taken by the kept policy
    assert info.value.error_code == "things:thing.notcreatable"
    again = await put(env, (), {"policyId": T})
    assert again.status == 201
    assert again.revision == 4  # continues after the deleted thing's revisions: ETags never repeat


async def test_policy_id_must_exist_and_inline_policies(env: Env) -> None:
    with pytest.raises(InvalidInput) as info:
        await put(env, (), {"policyId": "org.eclipse.ditto:nope"})
    assert info.value.error_code == "things:thing.notcreatable"
    bad: Any = {
        "entries": {
            "x": {
                "subjects": {"nginx:a": {"type": "t"}},
                "resources": {"thing:/": {"grant": ["READ"], "revoke": []}},
            }
        }
    }
    with pytest.raises(InvalidInput) as info:
        await env.service.modify(ModifyThing(T, (), {}, initial_policy=bad), AUTH)
    assert info.value.error_code == "things:policy.invalid"
    with pytest.raises(InvalidInput) as info:
        await env.service.modify(ModifyThing(T, (), {}, initial_policy=bad, copy_policy_from="a:b"), AUTH)
    assert info.value.error_code == "things:policy.conflicting"
    good: Any = {
        "entries": {
            "o": {
                "subjects": {"nginx:ditto": {"type": "t"}},
                "resources": {
                    "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                },
            }
        }
    }
    made = await env.service.modify(
        ModifyThing(T, (), {"policyId": "org.eclipse.ditto:p"}, initial_policy=good), AUTH
    )
    assert made.value["policyId"] == "org.eclipse.ditto:p"
    copied = await env.service.modify(
        ModifyThing("org.eclipse.ditto:t2", (), {}, copy_policy_from=f"{{{{ ref:things/{T}/policyId }}}}"),
        AUTH,
    )
    assert copied.value["policyId"] == "org.eclipse.ditto:t2"
    with env.store.read() as r:
        assert get_policy(r, "org.eclipse.ditto:t2")["entries"] == good["entries"]


async def test_post_generates_ids(env: Env) -> None:
    made = await env.service.create(CreateThing({"attributes": {"x": 1}}, namespace="my.ns"), AUTH)
    assert made.status == 201
    assert made.entity_id.startswith("my.ns:")
    with pytest.raises(InvalidInput) as info:
        await env.service.create(CreateThing({"thingId": "a:b"}), AUTH)
    assert info.value.error_code == "things:id.notsettable"


async def test_too_large_thing_is_413_and_nothing_changes(env: Env) -> None:
    await put(env, (), {})
    with pytest.raises(PayloadTooLarge) as info:
        await put(env, ("attributes", "big"), "x" * 103_000)
    assert info.value.error_code == "things:thing.toolarge"
    assert (await get(env, fields=parse_fields("_revision"))).value == {"_revision": 1}


async def test_retrieve_many_search_and_count(env: Env) -> None:
    for i in range(5):
        await env.service.modify(ModifyThing(f"org.eclipse.ditto:t{i}", (), {"attributes": {"n": i}}), AUTH)
    many = await env.service.retrieve_many(
        RetrieveThings(("org.eclipse.ditto:t3", "org.eclipse.ditto:none", "org.eclipse.ditto:t1")), AUTH
    )
    assert [t["thingId"] for t in many] == ["org.eclipse.ditto:t3", "org.eclipse.ditto:t1"]
    page = await env.service.search(SearchThings(filter="ge(attributes/n,3)"), AUTH)
    assert [t["attributes"]["n"] for t in page.items] == [3, 4]
    assert await env.service.count(CountThings(filter="lt(attributes/n,3)"), AUTH) == 3
    paged = await env.service.search(SearchThings(option="size(2)", fields=parse_fields("thingId")), AUTH)
    assert paged.items == [{"thingId": "org.eclipse.ditto:t0"}, {"thingId": "org.eclipse.ditto:t1"}]
    assert paged.cursor is not None


async def test_state_survives_restart(tmp_path: Path) -> None:
    for attempt in range(2):
        with Store.open(tmp_path, map_size_mb=16, max_map_size_mb=64) as store:
            writer = StoreWriter(store, queue_size=16, max_batch=16)
            service = TwinService(store, writer, EventBus())
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.serve)
                if attempt == 0:
                    await service.modify(ModifyThing(T, (), {"attributes": {"a": 1}}), AUTH)
                    await service.modify(ModifyThing(T, ("attributes", "a"), 2), AUTH)
                else:
                    got = await service.retrieve(
                        RetrieveThing(T, fields=parse_fields("_revision,attributes")), AUTH
                    )
                    assert got.value == {"_revision": 2, "attributes": {"a": 2}}
                writer.close()


async def test_default_policies_of_one_owner_share_one_compiled_enforcer(env: Env) -> None:
    for i in range(20):
        await env.service.modify(ModifyThing(f"org.eclipse.ditto:s{i}", (), {}), AUTH)
    for i in range(20):
        await env.service.retrieve(RetrieveThing(f"org.eclipse.ditto:s{i}"), AUTH)
    # 20 distinct policies with identical entries: compiled once for the reads (and once for the creates).
    assert env.service._enforcers.misses <= 2
