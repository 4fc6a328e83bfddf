"""Thing persistence: round trips, what is indexed, and index maintenance without stale entries."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput
from edgetwin.store import Store, WriteTxn
from edgetwin.store.keys import MAX_ID_BYTES, MAX_PATH_BYTES, ValueClass, decode_index_key, value_prefix
from edgetwin.store.things import (
    count_things,
    delete_thing,
    get_thing,
    index_keys,
    iter_index,
    iter_thing_entries,
    iter_things,
    put_thing,
)

THING: dict[str, Any] = {
    "thingId": "org.example:lamp-1",
    "policyId": "org.example:policy",
    "definition": "org.example:Lamp:1.0.0",
    "attributes": {"location": {"lat": 48.1, "room": "hall"}, "tags": ["a", "b"], "serial": "0042"},
    "features": {"lamp": {"definition": ["org.example:lamp:1"], "properties": {"on": True}}},
    "_revision": 1,
    "_created": "2024-05-01T10:00:00Z",
    "_modified": "2024-05-01T10:00:00Z",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path, map_size_mb=64, max_map_size_mb=256) as s:
        yield s


def write(store: Store, op: Any) -> None:
    (outcome,) = store.commit_batch([op])
    if outcome.error is not None:
        raise outcome.error


def put(store: Store, thing: dict[str, Any]) -> None:
    def op(w: WriteTxn) -> None:
        put_thing(w, thing, previous=get_thing(w, thing["thingId"]))

    write(store, op)


def delete(store: Store, thing_id: str) -> None:
    def op(w: WriteTxn) -> None:
        previous = get_thing(w, thing_id)
        assert previous is not None
        delete_thing(w, thing_id, previous=previous)

    write(store, op)


def all_index_keys(store: Store) -> set[bytes]:
    with store.read() as r:
        return set(iter_index(r, prefix=b""))


def entries(thing: dict[str, Any]) -> set[tuple[str, ValueClass]]:
    return {decode_index_key(key)[:2] for key in index_keys(thing)}


def test_round_trip_without_namespace(store: Store) -> None:
    put(store, {**THING, "_namespace": "ignored"})
    with store.read() as r:
        assert get_thing(r, THING["thingId"]) == THING
        assert get_thing(r, "org.example:other") is None
        assert count_things(r) == 1


def test_indexes_simple_fields_and_every_leaf() -> None:
    assert entries(THING) == {
        ("thingId", ValueClass.STRING),
        ("policyId", ValueClass.STRING),
        ("definition", ValueClass.STRING),
        ("_namespace", ValueClass.STRING),
        ("_revision", ValueClass.NUMBER),
        ("_created", ValueClass.STRING),
        ("_modified", ValueClass.STRING),
        ("attributes/location/lat", ValueClass.NUMBER),
        ("attributes/location/room", ValueClass.STRING),
        ("attributes/tags", ValueClass.STRING),
        ("attributes/serial", ValueClass.STRING),
        ("attributes/serial", ValueClass.NUMBER),  # "0042" is also the number 42 to Ditto
        ("features/lamp/definition", ValueClass.STRING),
        ("features/lamp/properties/on", ValueClass.BOOL),
    }
    keys = index_keys(THING)
    assert any(key.startswith(value_prefix("attributes/tags", "a")) for key in keys)
    assert any(key.startswith(value_prefix("attributes/tags", "b")) for key in keys)
    assert any(key.startswith(value_prefix("attributes/serial", 42)) for key in keys)
    assert any(key.startswith(value_prefix("_namespace", "org.example")) for key in keys)


def test_arrays_and_empty_containers() -> None:
    thing = {
        "thingId": "ns:t",
        "attributes": {
            "rooms": [{"name": "hall"}, {"name": "kitchen", "size": 3}, 7, [1, 2]],
            "nested": [[1], []],
            "empty": {},
            "none": [],
            "null": None,
        },
    }
    assert entries(thing) - {("thingId", ValueClass.STRING), ("_namespace", ValueClass.STRING)} == {
        ("attributes/rooms/name", ValueClass.STRING),
        ("attributes/rooms/size", ValueClass.NUMBER),
        ("attributes/rooms", ValueClass.NUMBER),
        ("attributes/nested", ValueClass.PRESENT),
        ("attributes/empty", ValueClass.PRESENT),
        ("attributes/none", ValueClass.PRESENT),
        ("attributes/null", ValueClass.NULL),
    }


def test_too_long_paths_leave_a_marker_on_the_longest_indexable_ancestor() -> None:
    long_key = "k" * MAX_PATH_BYTES
    thing = {"thingId": "ns:t", "attributes": {"a": {long_key: {"deeper": 1}, "short": 2}}}
    assert ("attributes/a", ValueClass.PRESENT) in entries(thing)
    assert ("attributes/a/short", ValueClass.NUMBER) in entries(thing)
    assert not any(path.startswith(f"attributes/a/{long_key}") for path, _ in entries(thing))


def test_too_long_ids_are_refused(store: Store) -> None:
    thing_id = "ns:" + "é" * MAX_ID_BYTES
    with pytest.raises(InvalidInput, match="too long") as caught:
        put(store, {"thingId": thing_id})
    assert caught.value.error_code == "things:id.invalid"


class _CountingTxn:
    """A write view that counts what it is asked to write (put_thing only needs put/delete)."""

    def __init__(self) -> None:
        self.puts: list[tuple[str, bytes]] = []
        self.deletes: list[tuple[str, bytes]] = []

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.puts.append((db, key))

    def delete(self, db: str, key: bytes) -> bool:
        self.deletes.append((db, key))
        return True


def test_a_one_property_update_touches_few_keys() -> None:
    changed = {**THING, "attributes": {**THING["attributes"], "location": {"lat": 48.2, "room": "hall"}}}
    txn = _CountingTxn()
    put_thing(txn, changed, previous=THING)  # type: ignore[arg-type]
    assert [db for db, _ in txn.puts] == ["things", "index"]
    assert [db for db, _ in txn.deletes] == ["index"]
    assert decode_index_key(txn.deletes[0][1])[0] == "attributes/location/lat"


def test_put_refuses_a_previous_of_another_thing() -> None:
    with pytest.raises(ValueError, match="previous"):
        put_thing(_CountingTxn(), THING, previous={**THING, "thingId": "ns:other"})  # type: ignore[arg-type]


def test_update_and_delete_leave_no_stale_entries(store: Store) -> None:
    put(store, THING)
    moved = {**THING, "attributes": {"location": {"room": "attic"}, "tags": ["b", "c"]}, "_revision": 2}
    put(store, moved)
    assert all_index_keys(store) == set(index_keys(moved))
    with store.read() as r:
        assert list(iter_index(r, prefix=value_prefix("attributes/location/room", "hall"))) == []
        assert len(list(iter_index(r, prefix=value_prefix("attributes/location/room", "attic")))) == 1
        assert list(iter_index(r, prefix=value_prefix("attributes/tags", "a"))) == []
    delete(store, THING["thingId"])
    assert all_index_keys(store) == set()
    with store.read() as r:
        assert count_things(r) == 0


def test_iteration_in_id_order(store: Store) -> None:
    ids = ["b:1", "a:2", "a:10", "ns:\U0001f600", "ns:\ue000", ":x"]
    for thing_id in ids:
        put(store, {"thingId": thing_id, "policyId": thing_id})
    with store.read() as r:
        assert [t["thingId"] for t in iter_things(r)] == sorted(ids)
        assert [t["thingId"] for t in iter_things(r, start_after="a:2")] == sorted(ids)[3:]
        assert [t["thingId"] for t in iter_things(r, start_after="a:1")] == sorted(ids)[1:]
        assert [i for i, _ in iter_thing_entries(r, start_after="zzz")] == []
        assert count_things(r) == len(ids)


# ---- property: the index is always exactly the index of what is stored -------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 2**60, "20", "a", "", "x" * 70, "\x00"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3)
    ),
    max_leaves=6,
)
_things = st.fixed_dictionaries(
    {"thingId": st.sampled_from(["ns:a", "ns:b", "other:c"])},
    optional={
        "policyId": st.sampled_from(["ns:p", "ns:q"]),
        "definition": st.sampled_from([None, "ns:def:1"]),
        "attributes": st.dictionaries(st.sampled_from(["a", "b", "tags"]), _values, max_size=3),
        "features": st.dictionaries(
            st.sampled_from(["lamp", "fan"]),
            st.fixed_dictionaries(
                {}, optional={"properties": st.dictionaries(st.sampled_from("xy"), _values)}
            ),
            max_size=2,
        ),
        "_revision": st.integers(1, 5),
    },
)
_operations = st.lists(st.one_of(_things, st.sampled_from(["ns:a", "ns:b", "other:c"])), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_operations)
def test_index_always_matches_the_stored_things(operations: list[dict[str, Any] | str]) -> None:
    with tempfile.TemporaryDirectory() as path, Store.open(path, map_size_mb=8, max_map_size_mb=16) as store:
        expected: dict[str, dict[str, Any]] = {}
        for operation in operations:
            if isinstance(operation, str):
                if operation in expected:
                    delete(store, operation)
                    del expected[operation]
            else:
                put(store, operation)
                expected[operation["thingId"]] = operation
        wanted = set().union(*(index_keys(thing) for thing in expected.values()))
        assert all_index_keys(store) == wanted
        with store.read() as r:
            assert {t["thingId"]: t for t in iter_things(r)} == expected
