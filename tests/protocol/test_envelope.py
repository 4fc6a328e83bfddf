"""Envelope and topic parsing: the grammar, Ditto's error codes, and the JSON round trip."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgetwin.protocol
from edgetwin.errors import InvalidInput
from edgetwin.protocol import Envelope, Topic, parse_envelope, parse_topic
from edgetwin.twin.pointer import MISSING, format_pointer


def test_all_is_pinned() -> None:
    assert sorted(edgetwin.protocol.__all__) == [
        "COMMAND_ACTIONS",
        "EVENT_ACTIONS",
        "Envelope",
        "MERGE_PATCH_CONTENT_TYPE",
        "PLACEHOLDER",
        "ProtocolCommand",
        "Topic",
        "UNKNOWN_ERROR_TOPIC",
        "error_envelope",
        "event_envelope",
        "parse_envelope",
        "parse_topic",
        "response_envelope",
        "to_command",
        "translate_error",
        "with_correlation_id",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "org.eclipse.ditto/fancy-thing/things/twin/commands/modify",
            Topic("org.eclipse.ditto", "fancy-thing", "things", "twin", "commands", "modify"),
        ),
        ("ns/x/things/live/events/created", Topic("ns", "x", "things", "live", "events", "created")),
        ("ns/x/things/twin/errors", Topic("ns", "x", "things", "twin", "errors")),
        ("ns/x/things/live/messages/a/b", Topic("ns", "x", "things", "live", "messages", "a/b")),
        ("ns/x/things/twin/acks/my:label", Topic("ns", "x", "things", "twin", "acks", "my:label")),
        ("ns/x/things/twin/acks", Topic("ns", "x", "things", "twin", "acks")),
        ("_/_/things/twin/search/subscribe", Topic("_", "_", "things", "twin", "search", "subscribe")),
        ("ns/_/things/twin/commands/retrieve", Topic("ns", "_", "things", "twin", "commands", "retrieve")),
        ("ns/p/policies/commands/create", Topic("ns", "p", "policies", None, "commands", "create")),
        ("ns/p/policies/errors", Topic("ns", "p", "policies", None, "errors")),
        ("unknown/unknown/things/twin/errors", Topic("unknown", "unknown", "things", "twin", "errors")),
        ("ns/a:b/things/twin/commands/delete", Topic("ns", "a:b", "things", "twin", "commands", "delete")),
    ],
)
def test_topic_grammar_round_trips(text: str, expected: Topic) -> None:
    assert parse_topic(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ns/x",
        "ns/x/things",
        "ns/x/things/twin",
        "ns/x/things/shadow/commands/modify",
        "ns/x/things/twin/orders/modify",
        "ns/x/connections/commands/create",
        "ns/x/things/twin/commands",
        "ns/x/things/twin/commands/modify/extra",
        "ns/x/things/twin/errors/extra",
        "ns/x/things/twin/messages",
        "ns/x/policies/twin/commands/create",
        "ns/x/policies/errors/x",
    ],
)
def test_topics_outside_the_grammar(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_topic(text)
    assert info.value.error_code == "protocoladapter:unknown.topicpath"
    assert info.value.status == 400


@pytest.mark.parametrize(
    "text",
    ["ns/x/things/twin/commands/frobnicate", "ns/x/things/twin/events/modify", "_/_/things/twin/search/x"],
)
def test_unknown_actions(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"Action name <.*> is unknown") as info:
        parse_topic(text)
    assert info.value.error_code == "protocoladapter:unknown.topicpath"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("1ns/x/things/twin/commands/modify", "things:id.invalid"),
        ("ns/x\x01/things/twin/commands/modify", "things:id.invalid"),
        ("ns/x\x01/policies/commands/create", "policies:id.invalid"),
        ("bad ns/_/things/twin/commands/retrieve", "things:id.invalid"),
    ],
)
def test_bad_entity_ids(text: str, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_topic(text)
    assert info.value.error_code == code


_TOPIC = "ns/x/things/twin/commands/modify"


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ([], "json.invalid"),
        ("text", "json.invalid"),
        (None, "json.invalid"),
        ({"headers": {}, "path": "/"}, "json.field.missing"),
        ({"topic": 1, "path": "/"}, "json.invalid"),
        ({"topic": "bad"}, "protocoladapter:unknown.topicpath"),
        ({"topic": "ns/x y\x00/things/twin/commands/modify"}, "things:id.invalid"),
        ({"topic": _TOPIC, "headers": []}, "json.invalid"),
        ({"topic": _TOPIC, "path": 5}, "json.invalid"),
        ({"topic": _TOPIC, "path": "/a//b"}, "json.pointer.invalid"),
        ({"topic": _TOPIC, "status": "200"}, "json.invalid"),
        ({"topic": _TOPIC, "status": True}, "json.invalid"),
        ({"topic": _TOPIC, "revision": 1.5}, "json.invalid"),
        ({"topic": _TOPIC, "timestamp": 3}, "json.invalid"),
        ({"topic": _TOPIC, "fields": ["a"]}, "json.invalid"),
        ({"topic": _TOPIC, "extra": "x"}, "json.invalid"),
    ],
)
def test_malformed_envelopes(obj: object, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_envelope(obj)  # type: ignore[arg-type]
    assert info.value.error_code == code
    assert info.value.status == 400


def test_defaults_and_value_presence() -> None:
    env = parse_envelope({"topic": _TOPIC})
    assert env.path == "/"
    assert env.headers == {}
    assert env.value is MISSING
    assert parse_envelope({"topic": _TOPIC, "value": None}).value is None
    assert env.to_json() == {"topic": _TOPIC, "headers": {}, "path": "/"}


def test_headers_are_case_insensitive_and_case_preserving() -> None:
    env = parse_envelope({"topic": _TOPIC, "headers": {"Correlation-ID": "c", "X-Custom": 1}})
    assert env.header("correlation-id") == "c"
    assert env.correlation_id == "c"
    assert env.header("x-custom") == 1
    assert env.header("nope") is MISSING
    assert env.to_json()["headers"] == {"Correlation-ID": "c", "X-Custom": 1}


# --- hypothesis: parse_envelope(e.to_json()) == e --------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
_namespaces = st.from_regex(r"[a-z][a-z0-9]{0,5}(\.[a-z][a-z0-9]{0,5}){0,2}", fullmatch=True)
_keys = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="/"), min_size=1)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


_CHANNELS: tuple[Literal["twin", "live"], ...] = ("twin", "live")


@st.composite
def _topics(draw: st.DrawFn) -> Topic:
    ns, name = draw(_namespaces), draw(_names)
    kind = draw(st.sampled_from(["command", "event", "error", "message", "policy", "policy-error"]))
    channel = draw(st.sampled_from(_CHANNELS))
    if kind == "command":
        action = draw(st.sampled_from(sorted(edgetwin.protocol.COMMAND_ACTIONS)))
        return Topic(ns, name, "things", channel, "commands", action)
    if kind == "event":
        action = draw(st.sampled_from(sorted(edgetwin.protocol.EVENT_ACTIONS)))
        return Topic(ns, name, "things", channel, "events", action)
    if kind == "error":
        return Topic(ns, name, "things", channel, "errors")
    if kind == "message":
        return Topic(
            ns,
            name,
            "things",
            "live",
            "messages",
            draw(st.from_regex(r"[a-z]{1,4}(/[a-z]{1,4})?", fullmatch=True)),
        )
    if kind == "policy":
        return Topic(ns, name, "policies", None, "commands", draw(st.sampled_from(["create", "retrieve"])))
    return Topic(ns, name, "policies", None, "errors")


@st.composite
def _envelopes(draw: st.DrawFn) -> Envelope:
    maybe = st.none()
    return Envelope(
        topic=draw(_topics()),
        path=format_pointer(tuple(draw(st.lists(_keys, max_size=4)))),
        value=draw(st.just(MISSING) | _json),
        headers=draw(st.dictionaries(st.text(min_size=1, max_size=8), _json, max_size=3)),
        status=draw(maybe | st.integers(100, 599)),
        revision=draw(maybe | st.integers(0, 2**53)),
        timestamp=draw(maybe | st.text(max_size=10)),
        fields=draw(maybe | st.text(min_size=1, max_size=10)),
        extra=draw(maybe | st.dictionaries(st.text(max_size=5), _json, max_size=3)),
    )


@given(_envelopes())
def test_envelope_json_round_trip(envelope: Envelope) -> None:
    assert parse_envelope(envelope.to_json()) == envelope
