"""Retained messages: round trips, exact prefix scans in topic order, long topics, delete semantics."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.store import ReadTxn, Store, WriteTxn
from edgetwin.store.retained import (
    INLINE_TOPIC_BYTES,
    RetainedMessage,
    count_retained,
    delete_retained,
    get_retained,
    iter_retained,
    put_retained,
)

T = TypeVar("T")


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


def put_all(store: Store, messages: list[RetainedMessage]) -> None:
    def op(w: WriteTxn) -> None:
        for message in messages:
            put_retained(w, message)

    write(store, op)


def topics_of(messages: Iterator[RetainedMessage]) -> list[str]:
    return [m.topic for m in messages]


def test_round_trip_with_every_field(tmp_path: Path) -> None:
    message = RetainedMessage(
        topic="plant/ä/temp",
        payload=b"\x00\xff raw \x80",
        qos=1,
        properties={
            "content_type": "application/json",
            "payload_format_indicator": 1,
            "response_topic": "r/1",
            "correlation_data": "AAE=",
            "user_properties": [["k", "v"], ["k", "w"]],
        },
        stored_at=1_700_000_000.123456,
        expires_at=1_700_000_060.5,
    )
    with open_store(tmp_path) as store:
        put_all(store, [message])
        assert read(store, lambda r: get_retained(r, message.topic)) == message
        assert read(store, count_retained) == 1
        # The payload is stored raw, after the metadata: never base64'd or copied into the JSON.
        raw = read(store, lambda r: r.get("retained", message.topic.encode()))
        assert raw is not None
        assert raw.endswith(message.payload)
        assert b"AAE=" in raw  # the properties are in the metadata, as given


def test_defaults_round_trip_and_replace(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        put_all(store, [RetainedMessage("a", b"1", 0)])
        put_all(store, [RetainedMessage("a", b"", 2, stored_at=5.0)])
        assert read(store, lambda r: get_retained(r, "a")) == RetainedMessage("a", b"", 2, stored_at=5.0)
        assert read(store, count_retained) == 1


def test_delete_reports_whether_there_was_one(tmp_path: Path) -> None:
    long_topic = "x" * 600
    with open_store(tmp_path) as store:
        put_all(store, [RetainedMessage("a", b"1", 0), RetainedMessage(long_topic, b"2", 0)])
        assert write(store, lambda w: delete_retained(w, "a")) is True
        assert write(store, lambda w: delete_retained(w, "a")) is False
        assert write(store, lambda w: delete_retained(w, "b")) is False
        # A long topic that shares the stored one's key stem but is not it deletes nothing.
        assert write(store, lambda w: delete_retained(w, long_topic + "y")) is False
        assert write(store, lambda w: delete_retained(w, long_topic)) is True
        assert read(store, count_retained) == 0
        assert read(store, lambda r: get_retained(r, "a")) is None


def test_invalid_messages_are_refused(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        with pytest.raises(ValueError, match="topic"):
            write(store, lambda w: put_retained(w, RetainedMessage("", b"", 0)))
        with pytest.raises(ValueError, match="QoS"):
            write(store, lambda w: put_retained(w, RetainedMessage("a", b"", 3)))
        with pytest.raises(TypeError):
            write(store, lambda w: put_retained(w, RetainedMessage("a", b"", 0, {"x": object()})))
        assert read(store, count_retained) == 0
        assert read(store, lambda r: get_retained(r, "")) is None


def test_topics_beyond_the_key_limit(tmp_path: Path) -> None:
    stem = "s" * INLINE_TOPIC_BYTES
    topics = [
        stem,  # exactly the inline limit: its own key, and the stem of the digest keys below
        stem + "b",
        stem + "a",
        stem + "a/é" * 100,
        "é" * 40_000,  # 80,000 bytes would be too long for MQTT, but storage does not care
        "t/" + "z" * 65_533,  # the MQTT maximum, 65535 bytes
        "t/",
    ]
    with open_store(tmp_path) as store:
        put_all(
            store, [RetainedMessage(t, t.encode()[-7:], 1, stored_at=float(i)) for i, t in enumerate(topics)]
        )
        assert read(store, count_retained) == len(topics)
        for i, topic in enumerate(topics):
            got = read(store, lambda r, t=topic: get_retained(r, t))  # type: ignore[misc]
            assert got == RetainedMessage(topic, topic.encode()[-7:], 1, stored_at=float(i))
        assert read(store, lambda r: get_retained(r, stem + "c")) is None
        # In topic byte order, though the digest keys of one stem are in digest order.
        ordered = sorted(topics, key=str.encode)
        assert read(store, lambda r: topics_of(iter_retained(r))) == ordered
        assert read(store, lambda r: topics_of(iter_retained(r, stem))) == [
            t for t in ordered if t.startswith(stem)
        ]
        assert read(store, lambda r: topics_of(iter_retained(r, stem + "a"))) == [
            stem + "a",
            stem + "a/é" * 100,
        ]
        assert read(store, lambda r: topics_of(iter_retained(r, stem + "a/é"))) == [stem + "a/é" * 100]
        assert read(store, lambda r: topics_of(iter_retained(r, "t/z"))) == ["t/" + "z" * 65_533]
        assert read(store, lambda r: topics_of(iter_retained(r, "t/" + "z" * 65_534))) == []


def test_long_topics_are_not_stored_under_their_own_bytes(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        put_all(store, [RetainedMessage("l" * 70_000, b"p", 0)])
        keys = read(store, lambda r: [k for k, _ in r.items("retained")])
    assert [len(k) for k in keys] == [511]


# Topics built around one long stem so that inline keys, the stem itself and digest runs all mix.
_STEM = "p/" + "q" * (INLINE_TOPIC_BYTES - 3)  # one byte short of the limit
_bases = st.sampled_from(["", "a", "a/", "é/", _STEM, _STEM + "é", _STEM + "/x"])
_tails = st.text(alphabet=st.sampled_from("ab/é\U0001f600"), max_size=6)
_topics = st.builds(lambda base, tail: base + tail, _bases, _tails).filter(bool)
_other = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)
_messages = st.builds(
    RetainedMessage,
    topic=st.one_of(_topics, _other),
    payload=st.binary(max_size=64),
    qos=st.integers(0, 2),
    properties=st.dictionaries(st.sampled_from(["content_type", "response_topic"]), st.text(max_size=5)),
    stored_at=st.floats(0, 2e9),
    expires_at=st.none() | st.floats(0, 2e9),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(_messages, max_size=25),
    deletes=st.lists(st.one_of(_topics, _other), max_size=5),
    cuts=st.lists(st.integers(0, 600), max_size=5),
    extra_prefixes=st.lists(st.one_of(_topics, _other), max_size=3),
)
def test_store_matches_a_dict_and_scans_match_brute_force(
    messages: list[RetainedMessage], deletes: list[str], cuts: list[int], extra_prefixes: list[str]
) -> None:
    expected: dict[str, RetainedMessage] = {}
    for message in messages:
        expected[message.topic] = message
    with tempfile.TemporaryDirectory() as path, open_store(path) as store:
        put_all(store, messages)

        def delete_some(w: WriteTxn) -> list[bool]:
            return [delete_retained(w, topic) for topic in deletes]

        deleted = write(store, delete_some)
        for topic, was in zip(deletes, deleted, strict=True):
            assert was == (topic in expected)
            expected.pop(topic, None)
        # Prefixes: cuts of stored topics (at any code point), other topics, and the empty prefix.
        topics = sorted(expected, key=str.encode)
        prefixes = ["", *extra_prefixes]
        prefixes += [t[: cut % (len(t) + 1)] for t in topics for cut in cuts]

        with store.read() as r:
            assert count_retained(r) == len(expected)
            for topic, message in expected.items():
                assert get_retained(r, topic) == message
            assert list(iter_retained(r)) == [expected[t] for t in topics]
            for prefix in prefixes:
                wanted = [t for t in topics if t.encode().startswith(prefix.encode())]
                assert topics_of(iter_retained(r, prefix)) == wanted, prefix


def test_reads_never_see_a_half_batch(tmp_path: Path) -> None:
    """put and delete run inside the caller's nested transaction: a failing write leaves nothing."""

    def failing(w: WriteTxn) -> Any:
        put_retained(w, RetainedMessage("a", b"1", 0))
        raise RuntimeError("bug")

    with open_store(tmp_path) as store:
        (outcome,) = store.commit_batch([failing])
        assert isinstance(outcome.error, RuntimeError)
        assert read(store, count_retained) == 0
