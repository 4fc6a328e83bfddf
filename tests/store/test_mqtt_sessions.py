"""Persistent MQTT sessions and queues: round trips, isolation between clients, numbering across restarts."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.store import DATABASES, ReadTxn, Store, WriteTxn, lmdb_store
from edgetwin.store.mqtt_sessions import (
    INLINE_CLIENT_ID_BYTES,
    QueuedMessage,
    SessionRecord,
    delete_session,
    dequeue,
    enqueue,
    get_session,
    iter_queue,
    iter_sessions,
    put_session,
    queue_length,
)
from edgetwin.store.retained import RetainedMessage, get_retained, put_retained

T = TypeVar("T")

SUBSCRIPTIONS = {
    "a/+/c": {
        "qos": 1,
        "no_local": False,
        "retain_as_published": True,
        "retain_handling": 0,
        "subscription_id": 7,
    },
    "$share/g/x/#": {"qos": 2, "no_local": False, "retain_as_published": False, "retain_handling": 2},
}
LONG_ID = "ü" * 300  # 600 bytes: beyond the inline limit
MESSAGE = QueuedMessage(
    topic="a/b/c",
    payload=b"\x00\x01\xfe\xff",
    qos=2,
    retain=True,
    properties={"content_type": "text/plain", "user_properties": [["k", "v"]], "correlation_data": "AAE="},
    expires_at=1_700_000_100.25,
)


@contextmanager
def open_store(path: Path | str) -> Iterator[Store]:
    with Store.open(path, map_size_mb=8, max_map_size_mb=32) as store:
        yield store


def write(store: Store, op: Callable[[WriteTxn], T]) -> T:
    (outcome,) = store.commit_batch([op])
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


def read(store: Store, fn: Callable[[ReadTxn], T]) -> T:
    with store.read() as r:
        return fn(r)


def queue(store: Store, client_id: str) -> list[tuple[int, QueuedMessage]]:
    return read(store, lambda r: list(iter_queue(r, client_id)))


@pytest.mark.parametrize("client_id", ["c1", "", "ä-😀", "x" * INLINE_CLIENT_ID_BYTES, LONG_ID, "l" * 65535])
def test_session_round_trip_replace_and_delete(tmp_path: Path, client_id: str) -> None:
    connected = SessionRecord(client_id, 5, 0xFFFFFFFF, SUBSCRIPTIONS)
    away = SessionRecord(client_id, 5, 3600, SUBSCRIPTIONS, disconnected_at=1_700_000_000.5)
    with open_store(tmp_path) as store:
        write(store, lambda w: put_session(w, connected))
        assert read(store, lambda r: get_session(r, client_id)) == connected
        write(store, lambda w: put_session(w, away))
        assert read(store, lambda r: get_session(r, client_id)) == away
        assert read(store, lambda r: list(iter_sessions(r))) == [away]
        write(store, lambda w: delete_session(w, client_id))
        assert read(store, lambda r: get_session(r, client_id)) is None
        assert read(store, lambda r: list(iter_sessions(r))) == []
        write(store, lambda w: delete_session(w, client_id))  # deleting nothing is fine


def test_defaults_and_invalid_input(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        write(store, lambda w: put_session(w, SessionRecord("c", 4, 0)))
        assert read(store, lambda r: get_session(r, "c")) == SessionRecord("c", 4, 0, {}, None)
        with pytest.raises(ValueError, match="expiry_interval"):
            write(store, lambda w: put_session(w, SessionRecord("c", 5, 1 << 32)))
        with pytest.raises(ValueError, match="QoS"):
            write(store, lambda w: enqueue(w, "c", QueuedMessage("t", b"", 3)))
        assert read(store, lambda r: queue_length(r, "c")) == 0
        seq = write(store, lambda w: enqueue(w, "c", QueuedMessage("t", b"", 0)))
        assert queue(store, "c") == [(seq, QueuedMessage("t", b"", 0, False, {}, None))]


def test_queue_round_trip_in_order_and_raw(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:

        def fill(w: WriteTxn) -> list[int]:
            return [enqueue(w, "c", QueuedMessage(f"t/{i}", bytes([i]) * i, 1)) for i in range(5)]

        seqs = write(store, fill)
        last = write(store, lambda w: enqueue(w, "c", MESSAGE))
        assert seqs == sorted(seqs)
        assert last > seqs[-1]
        got = queue(store, "c")
        assert got == [(s, QueuedMessage(f"t/{i}", bytes([i]) * i, 1)) for i, s in enumerate(seqs)] + [
            (last, MESSAGE)
        ]
        assert read(store, lambda r: queue_length(r, "c")) == 6
        # The payload is raw at the end of the value, not base64'd into the metadata.
        raw = read(store, lambda r: [v for _, v in r.items("mqtt_queue")][-1])
        assert raw.endswith(MESSAGE.payload)
        assert b'"t":"a/b/c"' in raw


def test_dequeue(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:

        def fill(w: WriteTxn) -> list[int]:
            return [enqueue(w, "c", QueuedMessage(str(i), b"", 1)) for i in range(3)]

        a, b, c = write(store, fill)
        assert write(store, lambda w: dequeue(w, "c", b)) is True
        assert write(store, lambda w: dequeue(w, "c", b)) is False
        assert write(store, lambda w: dequeue(w, "other", a)) is False  # another client's number
        assert write(store, lambda w: dequeue(w, "c", 0)) is False
        assert write(store, lambda w: dequeue(w, "c", -1)) is False
        assert write(store, lambda w: dequeue(w, "c", 1 << 64)) is False
        assert [s for s, _ in queue(store, "c")] == [a, c]
        assert read(store, lambda r: queue_length(r, "c")) == 2
        assert write(store, lambda w: dequeue(w, "c", a)) is True
        assert write(store, lambda w: dequeue(w, "c", c)) is True
        assert read(store, lambda r: queue_length(r, "c")) == 0
        assert queue(store, "c") == []
        assert read(store, lambda r: r.count("mqtt_queue")) == 0  # no counter left behind


def test_client_ids_never_share_a_queue(tmp_path: Path) -> None:
    """Client IDs that are prefixes of each other, or long ones sharing hundreds of bytes, stay apart."""
    ids = [
        "",
        "a",
        "ab",
        "a\x00",
        "b",
        "x" * INLINE_CLIENT_ID_BYTES,
        "x" * (INLINE_CLIENT_ID_BYTES + 1),
        LONG_ID,
        LONG_ID + "!",
    ]
    with open_store(tmp_path) as store:

        def fill(w: WriteTxn) -> dict[str, list[int]]:
            return {
                cid: [enqueue(w, cid, QueuedMessage(cid or "-", cid.encode(), 1)) for _ in range(2)]
                for cid in ids
            }

        seqs = write(store, fill)
        for cid in ids:
            assert queue(store, cid) == [(s, QueuedMessage(cid or "-", cid.encode(), 1)) for s in seqs[cid]]
            assert read(store, lambda r, c=cid: queue_length(r, c)) == 2  # type: ignore[misc]
        write(store, lambda w: delete_session(w, "a"))
        write(store, lambda w: delete_session(w, LONG_ID))
        for cid in ids:
            expected = 0 if cid in ("a", LONG_ID) else 2
            assert len(queue(store, cid)) == read(store, lambda r, c=cid: queue_length(r, c)) == expected  # type: ignore[misc]
        assert all(len(key) <= 511 for key, _ in read(store, lambda r: list(r.items("mqtt_queue"))))


def test_delete_session_removes_its_queue(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:

        def setup(w: WriteTxn) -> None:
            for cid in ("c", "d"):
                put_session(w, SessionRecord(cid, 5, 60, SUBSCRIPTIONS))
                for i in range(3):
                    enqueue(w, cid, QueuedMessage("t", bytes([i]), 1))

        write(store, setup)
        write(store, lambda w: delete_session(w, "c"))
        assert read(store, lambda r: get_session(r, "c")) is None
        assert queue(store, "c") == []
        assert read(store, lambda r: queue_length(r, "c")) == 0
        assert [m.payload for _, m in queue(store, "d")] == [b"\x00", b"\x01", b"\x02"]
        assert [s.client_id for s in read(store, lambda r: list(iter_sessions(r)))] == ["d"]


def test_sequence_numbers_are_never_reused_across_deletes_and_restarts(tmp_path: Path) -> None:
    seen: list[int] = []
    with open_store(tmp_path) as store:
        seen += [write(store, lambda w: enqueue(w, "c", MESSAGE)) for _ in range(3)]
        write(store, lambda w: delete_session(w, "c"))
        seen.append(write(store, lambda w: enqueue(w, "d", MESSAGE)))
        write(store, lambda w: dequeue(w, "d", seen[-1]))
    with open_store(tmp_path) as store:  # a restart, with every queue empty
        assert read(store, lambda r: r.count("mqtt_queue")) == 0
        seen.append(write(store, lambda w: enqueue(w, "c", MESSAGE)))
        seen.append(write(store, lambda w: enqueue(w, "d", MESSAGE)))
    assert seen == sorted(set(seen))


def test_a_failed_write_rolls_back_the_numbering(tmp_path: Path) -> None:
    def failing(w: WriteTxn) -> None:
        enqueue(w, "c", MESSAGE)
        raise RuntimeError("bug")

    with open_store(tmp_path) as store:
        first = write(store, lambda w: enqueue(w, "c", MESSAGE))
        outcomes = store.commit_batch([failing, lambda w: enqueue(w, "c", MESSAGE)])
        assert isinstance(outcomes[0].error, RuntimeError)
        assert outcomes[1].value == first + 1
        assert read(store, lambda r: queue_length(r, "c")) == 2


def test_a_store_from_before_the_mqtt_databases_opens_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tuple(name for name in DATABASES if not name.startswith("mqtt_"))
    assert len(old) == len(DATABASES) - 2
    with monkeypatch.context() as patch:
        patch.setattr(lmdb_store, "DATABASES", old)
        with open_store(tmp_path) as store:
            write(store, lambda w: put_retained(w, RetainedMessage("r", b"kept", 1)))
            write(store, lambda w: w.put("kv", b"k", b"v"))
            assert "mqtt_queue" not in store._dbs
    with open_store(tmp_path) as store:
        assert read(store, lambda r: get_retained(r, "r")) == RetainedMessage("r", b"kept", 1)
        assert read(store, lambda r: r.get("kv", b"k")) == b"v"
        assert read(store, lambda r: (r.count("mqtt_sessions"), r.count("mqtt_queue"))) == (0, 0)
        write(store, lambda w: put_session(w, SessionRecord("c", 5, 60)))
        assert write(store, lambda w: enqueue(w, "c", MESSAGE)) == 1
    with open_store(tmp_path) as store:
        assert read(store, lambda r: get_session(r, "c")) == SessionRecord("c", 5, 60)
        assert queue(store, "c") == [(1, MESSAGE)]


_client_ids = st.sampled_from(["", "a", "ab", "é", "x" * INLINE_CLIENT_ID_BYTES, LONG_ID, LONG_ID + "!"])
_messages = st.builds(
    QueuedMessage,
    topic=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)
    | st.just("t/" + "z" * 70_000),
    payload=st.binary(max_size=64),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    properties=st.dictionaries(st.sampled_from(["content_type", "response_topic"]), st.text(max_size=5)),
    expires_at=st.none() | st.floats(0, 2e9),
)
_sessions = st.builds(
    SessionRecord,
    client_id=_client_ids,
    protocol_level=st.sampled_from([3, 4, 5]),
    expiry_interval=st.integers(0, 0xFFFFFFFF),
    subscriptions=st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.fixed_dictionaries({"qos": st.integers(0, 2), "no_local": st.booleans()}),
        max_size=3,
    ),
    disconnected_at=st.none() | st.floats(0, 2e9),
)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), _client_ids, _messages),
        st.tuples(st.just("dequeue"), _client_ids, st.integers(0, 30)),
        st.tuples(st.just("put"), _sessions),
        st.tuples(st.just("delete"), _client_ids),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=_operations)
def test_sessions_and_queues_match_a_model(operations: list[tuple[object, ...]]) -> None:
    sessions: dict[str, SessionRecord] = {}
    queues: dict[str, dict[int, QueuedMessage]] = {}
    handed_out: list[int] = []
    with tempfile.TemporaryDirectory() as path, open_store(path) as store:
        for operation in operations:
            match operation:
                case ("enqueue", str(cid), QueuedMessage() as message):
                    seq = write(store, lambda w, c=cid, m=message: enqueue(w, c, m))  # type: ignore[misc]
                    handed_out.append(seq)
                    queues.setdefault(cid, {})[seq] = message
                case ("dequeue", str(cid), int(seq)):
                    was = write(store, lambda w, c=cid, s=seq: dequeue(w, c, s))  # type: ignore[misc]
                    assert was == (seq in queues.get(cid, {}))
                    queues.get(cid, {}).pop(seq, None)
                case ("put", SessionRecord() as record):
                    write(store, lambda w, s=record: put_session(w, s))  # type: ignore[misc]
                    sessions[record.client_id] = record
                case ("delete", str(cid)):
                    write(store, lambda w, c=cid: delete_session(w, c))  # type: ignore[misc]
                    sessions.pop(cid, None)
                    queues.pop(cid, None)
        assert handed_out == sorted(set(handed_out))
        with store.read() as r:
            assert sorted(iter_sessions(r), key=lambda s: s.client_id) == sorted(
                sessions.values(), key=lambda s: s.client_id
            )
            for cid in ["", "a", "ab", "é", "x" * INLINE_CLIENT_ID_BYTES, LONG_ID, LONG_ID + "!"]:
                assert get_session(r, cid) == sessions.get(cid)
                assert list(iter_queue(r, cid)) == sorted(queues.get(cid, {}).items())
                assert queue_length(r, cid) == len(queues.get(cid, {}))
