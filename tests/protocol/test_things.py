"""Command mapping, responses, errors and events against the literal examples of ditto.md §7.4."""

from __future__ import annotations

from typing import Any

import pytest

from edgetwin.core.commands import (
    DeletePolicy,
    DeleteThing,
    MergeThing,
    ModifyPolicy,
    ModifyThing,
    Preconditions,
    Retrieved,
    RetrievePolicy,
    RetrieveThing,
    RetrieveThings,
    Written,
)
from edgetwin.core.events import ThingEvent
from edgetwin.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from edgetwin.protocol import (
    Envelope,
    ProtocolCommand,
    error_envelope,
    event_envelope,
    parse_envelope,
    response_envelope,
    to_command,
    translate_error,
    with_correlation_id,
)
from edgetwin.twin.fields import parse_fields
from edgetwin.twin.pointer import Json

THING = "org.eclipse.ditto:fancy-thing"
TOPIC = "org.eclipse.ditto/fancy-thing/things/twin/commands/"
BODY: dict[str, Json] = {
    "thingId": THING,
    "attributes": {"location": "kitchen"},
    "features": {"lamp": {"properties": {"on": False}}},
}


def _map(obj: dict[str, Any]) -> tuple[Envelope, ProtocolCommand]:
    request = parse_envelope(obj)
    return request, to_command(request)


# --- §7.4 literal examples ----------------------------------------------------------------------------


def test_create_example() -> None:
    request, mapped = _map(
        {"topic": TOPIC + "create", "headers": {"correlation-id": "c-1"}, "path": "/", "value": BODY}
    )
    assert mapped.command == ModifyThing(THING, (), BODY, Preconditions(if_none_match="*"))
    assert mapped.must_not_exist
    assert mapped.action == "create"
    assert mapped.correlation_id == "c-1"
    created: dict[str, Json] = {**BODY, "policyId": THING}
    written = Written(201, THING, 1, etag='"rev:1"', value=created)
    assert response_envelope(request, written) == {
        "topic": TOPIC + "create",
        "headers": {
            "correlation-id": "c-1",
            "response-required": False,
            "content-type": "application/json",
            "etag": '"rev:1"',
        },
        "path": "/",
        "status": 201,
        "value": created,
    }


def test_create_of_an_existing_thing_is_409_conflict() -> None:
    request, mapped = _map({"topic": TOPIC + "create", "headers": {"correlation-id": "c-1"}, "value": BODY})
    err = translate_error(mapped, PreconditionFailed("The precondition failed"))
    assert isinstance(err, Conflict)
    assert (err.status, err.error_code) == (409, "things:thing.conflict")
    assert err.message == f"The Thing with ID '{THING}' already exists"
    envelope = error_envelope(request, err)
    assert envelope["topic"] == "org.eclipse.ditto/fancy-thing/things/twin/errors"
    assert envelope["status"] == 409
    assert envelope["value"]["error"] == "things:thing.conflict"


def test_translate_error_keeps_other_errors() -> None:
    _, create = _map({"topic": TOPIC + "create", "value": BODY, "headers": {"if-match": '"rev:1"'}})
    failed = PreconditionFailed("x")
    assert translate_error(create, failed) is failed  # the client's own precondition failed
    _, modify = _map({"topic": TOPIC + "modify", "value": BODY})
    assert translate_error(modify, failed) is failed
    assert not modify.must_not_exist
    missing = NotFound("x")
    _, create = _map({"topic": TOPIC + "create", "value": BODY})
    assert translate_error(create, missing) is missing


def test_modify_property_example() -> None:
    request, mapped = _map(
        {
            "topic": TOPIC + "modify",
            "headers": {"correlation-id": "c-2", "if-match": '"rev:1"'},
            "path": "/features/lamp/properties/on",
            "value": True,
        }
    )
    assert mapped.command == ModifyThing(
        THING, ("features", "lamp", "properties", "on"), True, Preconditions(if_match='"rev:1"')
    )
    assert response_envelope(request, Written(204, THING, 2, etag='"hash:x"')) == {
        "topic": TOPIC + "modify",
        "headers": {"correlation-id": "c-2", "response-required": False},
        "path": "/features/lamp/properties/on",
        "status": 204,
    }
    event = ThingEvent(
        "modified",
        THING,
        ("features", "lamp", "properties", "on"),
        True,
        2,
        "2024-05-01T10:00:00.123Z",
        thing={},
        correlation_id="c-2",
    )
    assert event_envelope(event, extra_headers={"ditto-originator": "nginx:ditto"}) == {
        "topic": "org.eclipse.ditto/fancy-thing/things/twin/events/modified",
        "headers": {
            "correlation-id": "c-2",
            "ditto-originator": "nginx:ditto",
            "requested-acks": [],
            "response-required": False,
        },
        "path": "/features/lamp/properties/on",
        "value": True,
        "revision": 2,
        "timestamp": "2024-05-01T10:00:00.123Z",
    }


def test_modify_creating_a_property_answers_201_with_value() -> None:
    request, _ = _map({"topic": TOPIC + "modify", "path": "/attributes/new", "value": 1, "headers": {}})
    reply = response_envelope(request, Written(201, THING, 3, value=1))
    assert (reply["status"], reply["value"], reply["path"]) == (201, 1, "/attributes/new")


def test_merge_example() -> None:
    patch: dict[str, Json] = {"attributes": {"location": None, "floor": 2}}
    request, mapped = _map(
        {"topic": TOPIC + "merge", "headers": {"correlation-id": "c-3"}, "path": "/", "value": patch}
    )
    assert mapped.command == MergeThing(THING, (), patch)
    assert response_envelope(request, Written(204, THING, 3))["status"] == 204
    event = ThingEvent("merged", THING, (), patch, 3, "2024-05-01T10:00:01Z", thing={}, correlation_id="c-3")
    assert event_envelope(event) == {
        "topic": "org.eclipse.ditto/fancy-thing/things/twin/events/merged",
        "headers": {
            "correlation-id": "c-3",
            "response-required": False,
            "requested-acks": [],
            "content-type": "application/merge-patch+json",
        },
        "path": "/",
        "value": patch,
        "revision": 3,
        "timestamp": "2024-05-01T10:00:01Z",
    }


def test_retrieve_with_fields_and_condition_example() -> None:
    request, mapped = _map(
        {
            "topic": TOPIC + "retrieve",
            "headers": {"correlation-id": "c-4", "condition": "eq(attributes/floor,2)"},
            "path": "/",
            "fields": "thingId,attributes",
        }
    )
    assert mapped.command == RetrieveThing(
        THING, (), parse_fields("thingId,attributes"), Preconditions(condition="eq(attributes/floor,2)")
    )
    value: dict[str, Json] = {"thingId": THING, "attributes": {"floor": 2}}
    assert response_envelope(request, Retrieved(value, etag='"rev:3"')) == {
        "topic": TOPIC + "retrieve",
        "headers": {"correlation-id": "c-4"},
        "path": "/",
        "status": 200,
        "value": value,
    }


def test_retrieve_many_example() -> None:
    ids = ["org.eclipse.ditto:a", "org.eclipse.ditto:b"]
    obj = {
        "topic": "org.eclipse.ditto/_/things/twin/commands/retrieve",
        "headers": {"correlation-id": "c-5"},
        "path": "/",
        "value": {"thingIds": ids},
    }
    request, mapped = _map(obj)
    assert mapped.command == RetrieveThings(tuple(ids))
    things: list[Json] = [{"thingId": ids[0]}, {"thingId": ids[1]}]
    assert response_envelope(request, things) == {
        "topic": "org.eclipse.ditto/_/things/twin/commands/retrieve",
        "headers": {"correlation-id": "c-5"},
        "path": "/",
        "status": 200,
        "value": things,
    }
    _, both = _map({**obj, "topic": "_/_/things/twin/commands/retrieve", "fields": "thingId"})
    assert both.command == RetrieveThings(tuple(ids), parse_fields("thingId"))


def test_delete_example() -> None:
    request, mapped = _map({"topic": TOPIC + "delete", "headers": {"correlation-id": "c-6"}, "path": "/"})
    assert mapped.command == DeleteThing(THING, ())
    assert response_envelope(request, Written(204, THING, 4)) == {
        "topic": TOPIC + "delete",
        "headers": {"correlation-id": "c-6", "response-required": False},
        "path": "/",
        "status": 204,
    }
    event = ThingEvent(
        "deleted", THING, (), None, 4, "2024-05-01T10:00:02Z", thing=None, correlation_id="c-6"
    )
    assert event_envelope(event) == {
        "topic": "org.eclipse.ditto/fancy-thing/things/twin/events/deleted",
        "headers": {"correlation-id": "c-6", "response-required": False, "requested-acks": []},
        "path": "/",
        "revision": 4,
        "timestamp": "2024-05-01T10:00:02Z",
    }


def test_error_example() -> None:
    request = parse_envelope({"topic": TOPIC + "retrieve", "headers": {"correlation-id": "c-7"}, "path": "/"})
    err = NotFound(
        f"The Thing with ID '{THING}' could not be found or requester had insufficient permissions to access it.",
        description="Check if the ID of your requested Thing was correct and you have sufficient permissions.",
    )
    assert error_envelope(request, err) == {
        "topic": "org.eclipse.ditto/fancy-thing/things/twin/errors",
        "headers": {"correlation-id": "c-7"},
        "path": "/",
        "value": {
            "status": 404,
            "error": "things:thing.notfound",
            "message": f"The Thing with ID '{THING}' could not be found or requester had insufficient "
            "permissions to access it.",
            "description": "Check if the ID of your requested Thing was correct and you have sufficient permissions.",
        },
        "status": 404,
    }


def test_error_for_an_unparsable_message() -> None:
    err = InvalidInput("bad", error_code="json.invalid")
    assert error_envelope(None, err, correlation_id="x") == {
        "topic": "unknown/unknown/things/twin/errors",
        "headers": {"correlation-id": "x"},
        "path": "/",
        "value": {"status": 400, "error": "json.invalid", "message": "bad"},
        "status": 400,
    }
    assert error_envelope(None, err)["headers"] == {}


def test_error_headers_and_policy_errors_topic() -> None:
    request = parse_envelope({"topic": "ns/p/policies/commands/modify", "path": "/entries/a", "value": {}})
    err = PreconditionFailed("x", error_code="policies:precondition.failed", headers={"etag": '"rev:2"'})
    reply = error_envelope(request, err)
    assert reply["topic"] == "ns/p/policies/errors"
    assert reply["headers"] == {"etag": '"rev:2"'}
    live = parse_envelope({"topic": "ns/x/things/live/commands/retrieve"})
    assert error_envelope(live, err)["topic"] == "ns/x/things/live/errors"


def test_policy_create_example() -> None:
    value: dict[str, Json] = {"policyId": "org.eclipse.ditto:the_policy_id", "entries": {}}
    request, mapped = _map(
        {
            "topic": "org.eclipse.ditto/the_policy_id/policies/commands/create",
            "headers": {"correlation-id": "p-1"},
            "path": "/",
            "value": value,
        }
    )
    assert mapped.command == ModifyPolicy(
        "org.eclipse.ditto:the_policy_id", (), value, Preconditions(if_none_match="*")
    )
    reply = response_envelope(request, Written(201, "org.eclipse.ditto:the_policy_id", 1, value=value))
    assert reply["topic"] == "org.eclipse.ditto/the_policy_id/policies/commands/create"
    assert reply["status"] == 201
    conflict = translate_error(mapped, PreconditionFailed("x"))
    assert (conflict.status, conflict.error_code) == (409, "policies:policy.conflict")


# --- more mapping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "path", "expected"),
    [
        ("retrieve", "/", RetrievePolicy("ns:p", ())),
        ("retrieve", "/entries", RetrievePolicy("ns:p", ("entries",))),
        ("delete", "/entries/owner", DeletePolicy("ns:p", ("entries", "owner"))),
        (
            "delete",
            "/entries/owner/subjects/nginx:ditto",
            DeletePolicy("ns:p", ("entries", "owner", "subjects", "nginx:ditto")),
        ),
        (
            "retrieve",
            "/entries/owner/resources/thing:/",
            RetrievePolicy("ns:p", ("entries", "owner", "resources", "thing:/")),
        ),
        (
            "retrieve",
            "/entries/owner/resources/thing:/features/lamp",
            RetrievePolicy("ns:p", ("entries", "owner", "resources", "thing:/features/lamp")),
        ),
        ("retrieve", "/entries/owner/", RetrievePolicy("ns:p", ("entries", "owner"))),
    ],
)
def test_policy_paths(action: str, path: str, expected: object) -> None:
    assert (
        to_command(parse_envelope({"topic": f"ns/p/policies/commands/{action}", "path": path})).command
        == expected
    )


def test_modify_policy_with_lockout_header() -> None:
    env = parse_envelope(
        {"topic": "ns/p/policies/commands/modify", "headers": {"allow-policy-lockout": "true"}, "value": {}}
    )
    assert to_command(env).command == ModifyPolicy("ns:p", (), {}, allow_lockout=True)


def test_modify_thing_lifts_inline_policy() -> None:
    body: dict[str, Json] = {"attributes": {}, "_policy": {"entries": {}}, "_copyPolicyFrom": None}
    mapped = to_command(parse_envelope({"topic": TOPIC + "modify", "value": body}))
    assert mapped.command == ModifyThing(THING, (), {"attributes": {}}, initial_policy={"entries": {}})


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("/policyId", ("policyId",)),
        ("/definition", ("definition",)),
        ("/attributes", ("attributes",)),
        ("/attributes/a/b", ("attributes", "a", "b")),
        ("/features", ("features",)),
        ("/features/f", ("features", "f")),
        ("/features/f/definition", ("features", "f", "definition")),
        ("/features/f/desiredProperties/x", ("features", "f", "desiredProperties", "x")),
        ("attributes/a~0b/", ("attributes", "a~b")),
    ],
)
def test_thing_paths(path: str, pointer: tuple[str, ...]) -> None:
    mapped = to_command(parse_envelope({"topic": TOPIC + "modify", "path": path, "value": 1}))
    assert mapped.command == ModifyThing(THING, pointer, 1)


@pytest.mark.parametrize(
    ("action", "path", "code"),
    [
        ("modify", "/thingId", "protocoladapter:unknown.path"),
        ("modify", "/features/f/other", "protocoladapter:unknown.path"),
        ("modify", "/features/f/definition/x", "protocoladapter:unknown.path"),
        ("delete", "/policyId", "protocoladapter:unknown.path"),
        ("create", "/attributes", "protocoladapter:unknown.path"),
        ("modify", "/features/*", "json.key.invalid"),
        ("merge", "/policyId/x", "protocoladapter:unknown.path"),
    ],
)
def test_unknown_thing_paths(action: str, path: str, code: str) -> None:
    env = parse_envelope({"topic": TOPIC + action, "path": path, "value": 1})
    with pytest.raises(InvalidInput) as info:
        to_command(env)
    assert info.value.error_code == code


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ({"topic": TOPIC + "modify", "path": "/attributes/a"}, "json.field.missing"),
        ({"topic": TOPIC + "merge"}, "json.field.missing"),
        ({"topic": TOPIC + "create"}, "json.field.missing"),
        ({"topic": "ns/_/things/twin/commands/retrieve", "value": {}}, "json.field.missing"),
        ({"topic": "ns/_/things/twin/commands/retrieve"}, "json.field.missing"),
        ({"topic": "ns/_/things/twin/commands/retrieve", "value": {"thingIds": "ns:a"}}, "json.invalid"),
        ({"topic": "ns/_/things/twin/commands/retrieve", "value": {"thingIds": [1]}}, "json.invalid"),
        (
            {"topic": "ns/_/things/twin/commands/retrieve", "value": {"thingIds": ["bad"]}},
            "things:id.invalid",
        ),
        ({"topic": "ns/_/things/twin/commands/modify", "value": 1}, "protocoladapter:unknown.topicpath"),
        ({"topic": TOPIC + "migrate", "value": 1}, "protocoladapter:unknown.topicpath"),
        ({"topic": "ns/x/things/live/commands/retrieve"}, "protocoladapter:unknown.topicpath"),
        ({"topic": "ns/x/things/twin/events/modified", "value": 1}, "protocoladapter:unknown.topicpath"),
        ({"topic": "ns/x/things/live/messages/ask", "value": 1}, "protocoladapter:unknown.topicpath"),
        ({"topic": "_/_/things/twin/search/subscribe", "value": {}}, "protocoladapter:unknown.topicpath"),
        ({"topic": "ns/p/policies/commands/merge", "value": {}}, "protocoladapter:unknown.path"),
        (
            {"topic": "ns/p/policies/commands/create", "path": "/entries", "value": {}},
            "protocoladapter:unknown.path",
        ),
        ({"topic": "ns/p/policies/commands/retrieve", "path": "/imports"}, "protocoladapter:unknown.path"),
        (
            {"topic": "ns/p/policies/commands/retrieve", "path": "/entries/a/other"},
            "protocoladapter:unknown.path",
        ),
        (
            {"topic": "ns/p/policies/commands/retrieve", "path": "/entries/a/subjects/b/c"},
            "protocoladapter:unknown.path",
        ),
        ({"topic": TOPIC + "retrieve", "fields": "a(b"}, "json.fieldselector.invalid"),
        ({"topic": TOPIC + "retrieve", "headers": {"if-match": 1}}, "header.invalid"),
        ({"topic": TOPIC + "retrieve", "headers": {"response-required": "maybe"}}, "header.invalid"),
        ({"topic": TOPIC + "modify", "value": {"_copyPolicyFrom": 3}}, "json.format.invalid"),
    ],
)
def test_commands_that_do_not_map(obj: dict[str, Any], code: str) -> None:
    env = parse_envelope(obj)
    with pytest.raises(InvalidInput) as info:
        to_command(env)
    assert info.value.error_code == code


@pytest.mark.parametrize(
    ("raw", "expected"), [(False, False), ("false", False), ("TRUE", True), (True, True)]
)
def test_response_required(raw: Json, expected: bool) -> None:
    env = parse_envelope({"topic": TOPIC + "delete", "headers": {"Response-Required": raw}})
    assert to_command(env).response_required is expected
    assert to_command(parse_envelope({"topic": TOPIC + "delete"})).response_required is True


def test_with_correlation_id() -> None:
    env = parse_envelope({"topic": TOPIC + "delete"})
    generated = with_correlation_id(env, "gen-1")
    assert generated.correlation_id == "gen-1"
    assert response_envelope(generated, Written(204, THING, 1))["headers"]["correlation-id"] == "gen-1"
    kept = parse_envelope({"topic": TOPIC + "delete", "headers": {"correlation-id": "mine"}})
    assert with_correlation_id(kept, "gen-2") is kept


@pytest.mark.parametrize("action", ["created", "modified", "merged", "deleted"])
def test_event_envelope_for_every_action(action: str) -> None:
    value = None if action == "deleted" else {"on": True}
    event = ThingEvent(action, "ns:a:b", ("features", "lamp"), value, 7, "t", thing=None)  # type: ignore[arg-type]
    reply = event_envelope(event, extra={"attributes": {"x": 1}}, extra_headers={"response-required": True})
    assert reply["topic"] == f"ns/a:b/things/twin/events/{action}"
    assert reply["path"] == "/features/lamp"
    assert (reply["revision"], reply["timestamp"]) == (7, "t")
    assert reply["extra"] == {"attributes": {"x": 1}}
    headers = reply["headers"]
    assert isinstance(headers, dict)
    assert "correlation-id" not in headers
    assert reply["headers"]["response-required"] is True
    assert ("value" in reply) is (action != "deleted")
    assert (headers.get("content-type") == "application/merge-patch+json") is (action == "merged")
    # an event envelope is a valid envelope
    assert parse_envelope(reply).to_json() == reply


def test_created_event_keeps_a_null_value() -> None:
    event = ThingEvent("created", "ns:x", ("attributes", "a"), None, 1, "t", thing={})
    assert event_envelope(event)["value"] is None
