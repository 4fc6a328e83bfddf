"""MQTT topic names and filters (§4.7): validation, matching, and topic permissions, with the permission
check for subscriptions compared against brute force over a small alphabet.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.mqtt.topics import (
    MAX_TOPIC_BYTES,
    TopicError,
    TopicPermissions,
    is_valid_topic_filter,
    is_valid_topic_name,
    matches,
    validate_topic_filter,
    validate_topic_name,
)

# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "/", "//", "/a", "a/", "a//b", " ", "$SYS/x", "ä/ß", "a" * 65535])
def test_valid_topic_names(name: str) -> None:
    validate_topic_name(name)
    validate_topic_filter(name)  # every topic name is a filter matching only itself


@pytest.mark.parametrize(
    ("name", "clause"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a\x00b", "MQTT-4.7.3-2"),
        ("a/\ud800", "MQTT-1.5.3-1"),
        ("a" * 65536, "MQTT-4.7.3-3"),
        ("é" * 32768, "MQTT-4.7.3-3"),  # 65536 bytes in UTF-8
        ("a/+", "MQTT-4.7.1-1"),
        ("#", "MQTT-4.7.1-1"),
        ("a/b#", "MQTT-4.7.1-1"),
    ],
)
def test_invalid_topic_names(name: str, clause: str) -> None:
    with pytest.raises(TopicError) as info:
        validate_topic_name(name)
    assert info.value.clause == clause
    assert not is_valid_topic_name(name)


@pytest.mark.parametrize(
    "topic_filter", ["#", "+", "+/+", "/+", "+/", "a/#", "/#", "+/#", "a/+/b/#", "$SYS/#", "//#", "+/+/+"]
)
def test_valid_topic_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)
    assert is_valid_topic_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "clause"),
    [
        ("", "MQTT-4.7.3-1"),
        ("a/\x00", "MQTT-4.7.3-2"),
        ("a#", "MQTT-4.7.1-2"),
        ("a/#/b", "MQTT-4.7.1-2"),
        ("#/", "MQTT-4.7.1-2"),
        ("##", "MQTT-4.7.1-2"),
        ("a/b+", "MQTT-4.7.1-3"),
        ("++", "MQTT-4.7.1-3"),
        ("+a/b", "MQTT-4.7.1-3"),
        ("a" * 65534 + "/#", "MQTT-4.7.3-3"),
    ],
)
def test_invalid_topic_filters(topic_filter: str, clause: str) -> None:
    with pytest.raises(TopicError) as info:
        validate_topic_filter(topic_filter)
    assert info.value.clause == clause
    assert clause in str(info.value)


@given(st.text())
def test_validation_raises_only_topic_error(text: str) -> None:
    for check in (validate_topic_name, validate_topic_filter):
        with contextlib.suppress(TopicError):
            check(text)
    if is_valid_topic_name(text):
        assert is_valid_topic_filter(text)


# --- matching -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),  # "#" matches the parent level
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("sport/#", "sports", False),
        ("#", "a/b/c", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),  # "+" matches an empty level
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+/#", "a", True),
        ("#", "$SYS/uptime", False),  # MQTT-4.7.2-1
        ("+/uptime", "$SYS/uptime", False),
        ("$SYS/#", "$SYS/uptime", True),
        ("$SYS/+", "$SYS/uptime", True),
        ("a/+", "a/$x", True),  # the "$" rule applies to the first level only
        ("A", "a", False),  # case-sensitive, no normalisation (MQTT-4.7.3-4)
        ("a/b", "a/b", True),
        ("a/b", "a/b/", False),
    ],
)
def test_matches_examples(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


def _reference_matches(topic_filter: str, topic: str) -> bool:
    """An independent matcher: the filter as a regular expression."""
    levels = topic_filter.split("/")
    if levels[0] in ("+", "#") and topic.startswith("$"):
        return False
    parts = ["[^/]*" if level == "+" else re.escape(level) for level in levels if level != "#"]
    pattern = "/".join(parts)
    if levels[-1] == "#":
        pattern = ".*" if len(levels) == 1 else pattern + "(?:/.*)?"
    return re.fullmatch(pattern, topic, re.DOTALL) is not None


# Small alphabets: "" for empty levels, "$s" for the "$" rule, "z" never appears in filters (a "generic"
# level value, so that "+" cannot be covered by listing literals).
FILTER_LEVELS = ["a", "", "$s", "+"]
TOPIC_LEVELS = ["a", "", "$s", "z"]
MAX_FILTER_LEVELS = 3


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.sampled_from(FILTER_LEVELS), min_size=0, max_size=MAX_FILTER_LEVELS))
    if not levels or draw(st.booleans()):
        levels.append("#")
    text = "/".join(levels)
    return text if text else "#"


topic_names = (
    st.lists(st.sampled_from(TOPIC_LEVELS), min_size=1, max_size=MAX_FILTER_LEVELS + 2)
    .map("/".join)
    .filter(bool)
)


@given(topic_filters(), topic_names)
def test_matches_agrees_with_a_regular_expression(topic_filter: str, topic: str) -> None:
    assert is_valid_topic_filter(topic_filter)
    assert is_valid_topic_name(topic)
    assert matches(topic_filter, topic) is _reference_matches(topic_filter, topic)


# --- permissions ----------------------------------------------------------------------------------------


@cache
def _universe() -> tuple[str, ...]:
    """Every topic name of up to MAX_FILTER_LEVELS + 2 levels over TOPIC_LEVELS: long enough that a filter
    of up to MAX_FILTER_LEVELS + 1 levels (with "#") shows every way it can fail to be covered."""
    names: list[str] = []
    for n in range(1, MAX_FILTER_LEVELS + 3):
        names.extend("/".join(levels) for levels in itertools.product(TOPIC_LEVELS, repeat=n))
    return tuple(name for name in names if name)


def _brute_allows_filter(allowed: list[str], wanted: str) -> bool:
    return all(any(matches(a, topic) for a in allowed) for topic in _universe() if matches(wanted, topic))


@settings(max_examples=400)
@given(st.lists(topic_filters(), max_size=4), topic_filters())
def test_allows_filter_agrees_with_brute_force(allowed: list[str], wanted: str) -> None:
    permissions = TopicPermissions.compile(allowed)
    assert permissions.allows_filter(wanted) is _brute_allows_filter(allowed, wanted)


@settings(max_examples=200)
@given(st.lists(topic_filters(), max_size=4), topic_names)
def test_allows_agrees_with_matches(allowed: list[str], topic: str) -> None:
    permissions = TopicPermissions.compile(allowed)
    assert permissions.allows(topic) is any(matches(a, topic) for a in allowed)
    # A topic name is also a filter that matches only itself.
    assert permissions.allows_filter(topic) is permissions.allows(topic)


def _small_filters() -> list[str]:
    """Every filter of up to two levels over {"a", "+", "$s"}, with and without a trailing "#"."""
    out = ["#"]
    for n in (1, 2):
        for levels in itertools.product(["a", "+", "$s"], repeat=n):
            out.extend(["/".join(levels), "/".join((*levels, "#"))])
    return out


def test_allows_filter_exhaustively_on_small_filters() -> None:
    """Every set of up to three such filters against every such subscription, by set inclusion over all
    topic names of up to four levels over {"a", "$s", "z"}."""
    filters = _small_filters()
    universe = [
        "/".join(levels) for n in range(1, 5) for levels in itertools.product(["a", "$s", "z"], repeat=n)
    ]
    matched = {f: frozenset(t for t in universe if matches(f, t)) for f in filters}
    checked = 0
    for size in range(4):
        for allowed in itertools.combinations(filters, size):
            permissions = TopicPermissions.compile(allowed)
            union = frozenset().union(*(matched[a] for a in allowed))
            for wanted in filters:
                assert permissions.allows_filter(wanted) is (matched[wanted] <= union), (allowed, wanted)
                checked += 1
    assert checked > 50_000


@pytest.mark.parametrize(
    ("allowed", "wanted", "expected"),
    [
        (["a/#"], "a/+/c", True),
        (["a/#"], "a/#", True),
        (["a/#"], "a", True),
        (["a/+"], "a/#", False),  # a/# also matches a and a/b/c
        (["a/+"], "a/+", True),
        (["a/+/#"], "a/#", False),  # ... but not a itself
        (["a", "a/+/#"], "a/#", True),  # together they do
        (["a", "a/+", "a/+/+"], "a/#", False),  # never all depths
        (["#"], "$SYS/#", False),  # MQTT-4.7.2-1: "#" does not match "$" topics
        (["#"], "+/#", True),
        (["#", "$SYS/#"], "$SYS/+", True),
        (["+/b"], "$SYS/b", False),
        (["$SYS/+"], "$SYS/b", True),
        (["/tt/weather/z/+/+/+/#"], "/tt/weather/z/d/e/f/#", True),  # DSH's examples
        (["/tt/weather/z/+/+/+/#"], "/tt/weather/z/a/b/#", False),
        (["/tt/weather/z/+/+/+/#"], "/tt/weather/x/a/b/c", False),
        ([], "a", False),
        (["a/#"], "a/#/b", False),  # invalid filters are never allowed
    ],
)
def test_allows_filter_examples(allowed: list[str], wanted: str, expected: bool) -> None:
    assert TopicPermissions.compile(allowed).allows_filter(wanted) is expected


def test_allows_examples() -> None:
    permissions = TopicPermissions.compile(["/tt/weather/z/+/+/+/#", "house/kitchen"])
    assert permissions.allows("/tt/weather/z/a/b/c")
    assert permissions.allows("/tt/weather/z/d/e/f/g/h")
    assert not permissions.allows("/tt/weather/z/a/b")
    assert not permissions.allows("/tt/weather/x/a/b/c")
    assert permissions.allows("house/kitchen")
    assert not permissions.allows("house/kitchen/")
    # wildcards, invalid names: never allowed as a topic name
    assert not permissions.allows("/tt/weather/z/d/e/f/+/h")
    assert not TopicPermissions.compile(["#"]).allows("a/+")
    assert not TopicPermissions.compile(["#"]).allows("")
    assert not TopicPermissions.compile(["#"]).allows("a\x00")


def test_nothing_is_allowed_without_filters() -> None:
    permissions = TopicPermissions.compile([])
    assert not permissions
    assert not permissions.allows("a")
    assert not permissions.allows_filter("#")


def test_compile_validates_and_dedups() -> None:
    permissions = TopicPermissions.compile(["a/#", "b", "a/#"])
    assert permissions.filters == ("a/#", "b")
    assert permissions
    with pytest.raises(TopicError, match=r"MQTT-4\.7\.1-2"):
        TopicPermissions.compile(["a/#/b"])


def test_long_topics() -> None:
    long_name = "a/" * (MAX_TOPIC_BYTES // 2 - 1) + "b"
    assert len(long_name.encode()) <= MAX_TOPIC_BYTES
    assert TopicPermissions.compile(["#"]).allows(long_name)
    assert TopicPermissions.compile(["a/#"]).allows_filter(long_name)


def test_deep_filters_do_not_recurse() -> None:
    depth = MAX_TOPIC_BYTES // 2 - 1
    permissions = TopicPermissions.compile(["+/" * depth + "#"])
    assert permissions.allows_filter("+/" * depth + "+")
    assert permissions.allows_filter("+/" * (depth - 1) + "+")  # "#" also matches its parent level
    assert not permissions.allows_filter("+/" * (depth - 2) + "+")
    assert permissions.allows("a/" * depth + "b")


def test_a_hash_after_an_empty_first_level_has_no_parent_to_cover() -> None:
    # "/#" matches "/", "/a", ... and its parent would be "", which is no topic name (MQTT-4.7.3-1); found by
    # the brute-force property above.
    assert TopicPermissions.compile(("/+/#",)).allows_filter("/#")
    assert not TopicPermissions.compile(("a/+/#",)).allows_filter("a/#")  # "a" is a topic, and not covered
