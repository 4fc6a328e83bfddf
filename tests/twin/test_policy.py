"""Ditto policies: validation codes, the lock-out rule, the weighted evaluation, views, merges and conditions.

The hypothesis properties compare the compiled tries against literal transcriptions of Ditto's visitors
(``CheckUnrestrictedPermissionsVisitor``, ``CheckPartialPermissionsVisitor``, ``TreeBasedPolicyEnforcer
.buildJsonView``) and check the algebra: revokes only narrow, grants only widen, views are idempotent sub-trees.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput, PolicyDenied
from edgetwin.twin.pointer import MISSING, Json, Missing, Pointer
from edgetwin.twin.policy import (
    Enforcer,
    check_policy_manageable,
    default_policy,
    parse_entries,
    parse_entry,
    parse_policy,
    parse_resource,
    parse_resources,
    parse_subject,
    parse_subjects,
)
from tests.twin.strategies import json_objects, leaves

NOW = "2024-05-01T10:00:00.000000Z"
PID = "my.namespace:policy-a"


def _grant(*permissions: str) -> dict[str, Any]:
    return {"grant": list(permissions), "revoke": []}


def _revoke(*permissions: str) -> dict[str, Any]:
    return {"grant": [], "revoke": list(permissions)}


def _entry(subjects: dict[str, Any], resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"subjects": {s: {"type": "t", **v} for s, v in subjects.items()}, "resources": resources, **extra}


OWNER = _entry(
    {"nginx:ditto": {}},
    {
        "thing:/": _grant("READ", "WRITE"),
        "policy:/": _grant("READ", "WRITE"),
        "message:/": _grant("READ", "WRITE"),
    },
)

# ditto.md §3.2, literally.
POLICY_3_2: dict[str, Any] = {
    "policyId": PID,
    "entries": {
        "owner": {
            "subjects": {"nginx:ditto": {"type": "nginx basic auth user"}},
            "resources": {
                "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                "message:/": {"grant": ["READ", "WRITE"], "revoke": []},
            },
        },
        "observer": {
            "subjects": {"nginx:observer-client": {"type": "technical client"}},
            "resources": {
                "thing:/features/featureX": {"grant": ["READ"], "revoke": []},
                "thing:/features/featureX/properties/location/city": {"grant": [], "revoke": ["READ"]},
            },
        },
    },
}

THING: dict[str, Any] = {
    "thingId": "my.namespace:x",
    "policyId": PID,
    "attributes": {"manufacturer": "ACME", "serialNo": "42"},
    "features": {
        "featureX": {
            "properties": {"location": {"city": "Berlin", "street": "Main"}, "temperature": 21.5},
            "desiredProperties": {"temperature": 22},
        },
        "featureY": {"properties": {"location": {"city": "Rome", "zip": "00100"}, "on": True}},
    },
}


def _build(
    policy: dict[str, Any], *subjects: str, namespace: str | None = "my.namespace", now: str = NOW
) -> Enforcer:
    return Enforcer.build(policy, subjects, namespace=namespace, now=now)


def _code(err: pytest.ExceptionInfo[InvalidInput] | pytest.ExceptionInfo[PolicyDenied]) -> str:
    return err.value.error_code


# ---------------------------------------------------------------------------------------------------------------
# Ditto's examples


def test_owner_and_observer_of_the_policy_json_example() -> None:
    owner = _build(POLICY_3_2, "nginx:ditto")
    assert owner.readable_view(THING) is THING
    assert owner.unrestricted("thing", (), "WRITE")
    assert owner.unrestricted("policy", (), "WRITE")
    assert owner.unrestricted("message", ("inbox", "messages", "hello"), "WRITE")

    observer = _build(POLICY_3_2, "nginx:observer-client")
    assert observer.readable_view(THING) == {
        "features": {
            "featureX": {
                "properties": {"location": {"street": "Main"}, "temperature": 21.5},
                "desiredProperties": {"temperature": 22},
            }
        }
    }
    assert observer.partial("thing", (), "READ")
    assert not observer.unrestricted("thing", (), "READ")
    assert not observer.unrestricted("thing", ("features", "featureX"), "READ")  # the city is revoked below
    assert observer.unrestricted("thing", ("features", "featureX", "properties", "temperature"), "READ")
    assert not observer.partial("thing", ("attributes",), "READ")
    assert not observer.partial("thing", (), "WRITE")
    assert not observer.partial("policy", (), "READ")


def test_partial_visibility_example() -> None:
    # ditto.md §3.3 "partial visibility": some-users read featureY except its location's city.
    policy = {
        "policyId": PID,
        "entries": {
            "owner": OWNER,
            "some": _entry(
                {"nginx:some-users": {}},
                {
                    "thing:/features/featureY": _grant("READ"),
                    "thing:/features/featureY/properties/location/city": _revoke("READ"),
                },
            ),
        },
    }
    some = _build(policy, "nginx:some-users")
    assert some.readable_view(THING) == {
        "features": {"featureY": {"properties": {"location": {"zip": "00100"}, "on": True}}}
    }
    # GET /things/x/attributes → 404 things:attributes.notfound: not even partial READ there.
    assert not some.partial("thing", ("attributes",), "READ")
    assert some.readable_view(THING["attributes"], at=("attributes",)) is MISSING
    # GET /things/x/features/featureY/properties/location → the location without the city.
    location = THING["features"]["featureY"]["properties"]["location"]
    assert some.readable_view(location, at=("features", "featureY", "properties", "location")) == {
        "zip": "00100"
    }
    assert (
        some.readable_view("Rome", at=("features", "featureY", "properties", "location", "city")) is MISSING
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation


def test_parse_policy_normalises() -> None:
    body: Any = {
        "policyId": PID,
        "_revision": 3,
        "_created": "2024-01-01T00:00:00Z",
        "unknown": 1,
        "entries": {
            "owner": {
                "subjects": {"nginx:ditto": {"type": "user", "expiry": "2030-01-01T01:00:00+01:00", "x": 1}},
                "resources": {
                    "thing:features/lamp/": {"grant": ["READ", "READ", "WRITE"], "revoke": None},
                    "policy:": {"grant": ["WRITE"], "revoke": []},
                },
                "namespaces": ["com.acme", "com.acme.*"],
                "importable": "never",
                "unknown": True,
            },
            "empty": {},
        },
    }
    assert parse_policy(body, policy_id=PID) == {
        "policyId": PID,
        "entries": {
            "owner": {
                "subjects": {"nginx:ditto": {"type": "user", "expiry": "2030-01-01T00:00:00Z"}},
                "resources": {
                    "thing:/features/lamp": {"grant": ["READ", "WRITE"], "revoke": []},
                    "policy:/": {"grant": ["WRITE"], "revoke": []},
                },
                "namespaces": ["com.acme", "com.acme.*"],
                "importable": "never",
            },
            "empty": {"subjects": {}, "resources": {}},
        },
    }
    assert parse_policy({}, policy_id=PID) == {"policyId": PID, "entries": {}}
    assert parse_policy(POLICY_3_2, policy_id=PID) == POLICY_3_2


def test_sub_resource_parsers_return_their_normalised_members() -> None:
    assert parse_subject("nginx:ditto", {"type": "t"}) == {"nginx:ditto": {"type": "t"}}
    assert parse_subjects({"a:b": {"type": "t"}, "c:d": {"type": "u"}}) == {
        "a:b": {"type": "t"},
        "c:d": {"type": "u"},
    }
    assert parse_resource("thing:attributes", {"grant": ["READ"], "revoke": ["WRITE"]}) == {
        "thing:/attributes": {"grant": ["READ"], "revoke": ["WRITE"]}
    }
    assert parse_resources({"message:/inbox": _grant("WRITE")}) == {"message:/inbox": _grant("WRITE")}
    assert parse_entry("label", {"subjects": {}, "resources": {"policy:/": _revoke("EXECUTE")}}) == {
        "subjects": {},
        "resources": {"policy:/": _revoke("EXECUTE")},
    }
    assert parse_entries({"a": {}, "b": {}}) == {
        "a": {"subjects": {}, "resources": {}},
        "b": {"subjects": {}, "resources": {}},
    }


@pytest.mark.parametrize(
    ("expiry", "normalised"),
    [
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
        ("2030-01-01T00:00:00.5Z", "2030-01-01T00:00:00.500Z"),
        ("2030-01-01T00:00:00.123456789Z", "2030-01-01T00:00:00.123456Z"),
        ("2030-01-01T02:30:00+02:30", "2030-01-01T00:00:00Z"),
    ],
)
def test_subject_expiry_is_normalised_to_utc(expiry: str, normalised: str) -> None:
    assert parse_subject("a:b", {"type": "t", "expiry": expiry}) == {
        "a:b": {"type": "t", "expiry": normalised}
    }


def test_subject_announcement_is_normalised() -> None:
    subject: Any = {"type": "t", "announcement": {"beforeExpiry": "5m", "requestedAcks": {"labels": []}}}
    assert parse_subject("a:b", subject)["a:b"]["announcement"] == {
        "beforeExpiry": "5m",
        "whenDeleted": False,
        "requestedAcks": {"labels": []},
    }


@pytest.mark.parametrize(
    "subject_id",
    [
        "nginx:ditto",
        "google:1234567890",
        "http://issuer.example:user",
        "a:b:c",
        "{{ request:subjectId }}",
        ":x",
    ],
)
def test_valid_subject_ids(subject_id: str) -> None:
    assert subject_id in parse_subject(subject_id, {"type": "t"})


INVALID: list[tuple[str, Any, str]] = [
    # (parser, argument(s), Ditto error code)
    ("policy", ["not an object"], "json.invalid"),
    ("policy", [{"policyId": "other:id", "entries": {}}], "policies:id.notsettable"),
    ("policy", [{"policyId": 5, "entries": {}}], "policies:id.notsettable"),
    ("policy", [{"imports": {"a:b": {}}, "entries": {}}], "policies:import.invalid"),
    ("policy", [{"entries": []}], "json.invalid"),
    ("entries", [{"label": 5}], "json.invalid"),
    ("entry", ["", {}], "policies:entry.invalid"),
    ("entry", ["a/b", {}], "policies:entry.invalid"),
    ("entry", ["a\tb", {}], "policies:entry.invalid"),
    ("entry", ["x" * 257, {}], "policies:entry.invalid"),
    ("entry", ["imported-owner", {}], "policies:label.invalid"),
    ("entry", ["l", {"subjects": []}], "json.invalid"),
    ("entry", ["l", {"resources": "thing:/"}], "json.invalid"),
    ("entry", ["l", {"namespaces": "com.acme"}], "json.invalid"),
    ("entry", ["l", {"namespaces": ["*"]}], "policies:entry.invalid"),
    ("entry", ["l", {"namespaces": [""]}], "policies:entry.invalid"),
    ("entry", ["l", {"namespaces": ["com..acme"]}], "policies:entry.invalid"),
    ("entry", ["l", {"namespaces": [5]}], "policies:entry.invalid"),
    ("entry", ["l", {"importable": "sometimes"}], "policies:entry.invalid"),
    ("entry", ["l", {"allowedAdditions": ["everything"]}], "policies:entry.invalid"),
    ("entry", ["l", {"references": [{"entry": "owner"}]}], "policies:entry.invalid"),
    ("subjects", [{"a:b": "t"}], "json.invalid"),
    ("subject", ["nocolon", {"type": "t"}], "policies:subjectid.invalid"),
    ("subject", ["issuer:", {"type": "t"}], "policies:subjectid.invalid"),
    ("subject", ["http://issuer", {"type": "t"}], "policies:subjectid.invalid"),
    ("subject", ["a:b\n", {"type": "t"}], "policies:subjectid.invalid"),
    ("subject", ["a:" + "b" * 300, {"type": "t"}], "policies:subjectid.invalid"),
    ("subject", ["a:b", {}], "json.field.missing"),
    ("subject", ["a:b", {"type": 5}], "json.invalid"),
    ("subject", ["a:b", {"type": "t", "expiry": "tomorrow"}], "policies:subjectexpiry.invalid"),
    ("subject", ["a:b", {"type": "t", "expiry": "2030-01-01T00:00:00"}], "policies:subjectexpiry.invalid"),
    ("subject", ["a:b", {"type": "t", "expiry": "2030-13-01T00:00:00Z"}], "policies:subjectexpiry.invalid"),
    ("subject", ["a:b", {"type": "t", "expiry": 5}], "json.invalid"),
    ("subject", ["a:b", {"type": "t", "announcement": []}], "json.invalid"),
    (
        "subject",
        ["a:b", {"type": "t", "announcement": {"beforeExpiry": "5d"}}],
        "policies:subjectannouncement.invalid",
    ),
    (
        "subject",
        ["a:b", {"type": "t", "announcement": {"beforeExpiry": 5}}],
        "policies:subjectannouncement.invalid",
    ),
    ("subject", ["a:b", {"type": "t", "announcement": {"whenDeleted": "yes"}}], "json.invalid"),
    ("resources", [{"thing:/a": _grant("READ"), "thing:a": _grant("WRITE")}], "policies:entry.invalid"),
    ("resources", ["thing:/"], "json.invalid"),
    ("resource", ["nocolon", _grant("READ")], "json.invalid"),
    ("resource", [":/", _grant("READ")], "json.invalid"),
    ("resource", ["feature:/lamp", _grant("READ")], "policies:entry.invalid"),
    ("resource", ["Thing:/", _grant("READ")], "policies:entry.invalid"),
    ("resource", ["thing:/a//b", _grant("READ")], "json.pointer.invalid"),
    ("resource", ["thing:/a\x01", _grant("READ")], "policies:entry.invalid"),
    ("resource", ["thing:/", ["READ"]], "json.invalid"),
    ("resource", ["thing:/", {"grant": ["READ"]}], "json.field.missing"),
    ("resource", ["thing:/", {"revoke": []}], "json.field.missing"),
    ("resource", ["thing:/", {"grant": "READ", "revoke": []}], "json.invalid"),
    ("resource", ["thing:/", {"grant": ["DELETE"], "revoke": []}], "policies:entry.invalid"),
    ("resource", ["thing:/", {"grant": ["read"], "revoke": []}], "policies:entry.invalid"),
    ("resource", ["thing:/", {"grant": [], "revoke": [1]}], "policies:entry.invalid"),
]

PARSERS: dict[str, Any] = {
    "policy": lambda value: parse_policy(value, policy_id=PID),
    "entries": parse_entries,
    "entry": parse_entry,
    "subjects": parse_subjects,
    "subject": parse_subject,
    "resources": parse_resources,
    "resource": parse_resource,
}


@pytest.mark.parametrize(("parser", "args", "code"), INVALID)
def test_validation_error_codes(parser: str, args: list[Any], code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        PARSERS[parser](*args)
    assert _code(err) == code
    assert err.value.status == 400


def test_invalid_policy_id_in_the_path() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_policy({"entries": {}}, policy_id="no id")
    assert _code(err) == "policies:id.invalid"


def test_errors_nested_in_a_policy_keep_their_codes() -> None:
    body: Any = {"entries": {"owner": {"subjects": {"nocolon": {"type": "t"}}}}}
    with pytest.raises(InvalidInput) as err:
        parse_policy(body, policy_id=PID)
    assert _code(err) == "policies:subjectid.invalid"


def test_a_past_expiry_is_refused_only_when_now_is_given() -> None:
    subject: Any = {"type": "t", "expiry": "2020-01-01T00:00:00Z"}
    assert parse_subject("a:b", subject) == {"a:b": {"type": "t", "expiry": "2020-01-01T00:00:00Z"}}
    with pytest.raises(InvalidInput) as err:
        parse_subject("a:b", subject, now=NOW)
    assert _code(err) == "policies:subjectexpiry.invalid"
    with pytest.raises(InvalidInput):
        parse_policy({"entries": {"e": {"subjects": {"a:b": subject}}}}, policy_id=PID, now=NOW)
    assert parse_subject("a:b", {"type": "t", "expiry": "2030-01-01T00:00:00Z"}, now=NOW)


def test_validation_never_mutates_its_input() -> None:
    body = copy.deepcopy(POLICY_3_2)
    body["entries"]["owner"]["resources"]["thing:"] = body["entries"]["owner"]["resources"].pop("thing:/")
    snapshot = copy.deepcopy(body)
    parse_policy(body, policy_id=PID)
    assert body == snapshot


# ---------------------------------------------------------------------------------------------------------------
# The lock-out rule and the default policy


def test_default_policy_is_dittos() -> None:
    assert default_policy("ns:thing", "nginx:ditto") == {
        "policyId": "ns:thing",
        "entries": {
            "DEFAULT": {
                "subjects": {"nginx:ditto": {"type": "generated"}},
                "resources": {
                    "thing:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "policy:/": {"grant": ["READ", "WRITE"], "revoke": []},
                    "message:/": {"grant": ["READ", "WRITE"], "revoke": []},
                },
            }
        },
    }
    policy = default_policy("ns:thing", "nginx:ditto")
    assert parse_policy(policy, policy_id="ns:thing") == policy
    check_policy_manageable(policy, now=NOW)
    assert default_policy("ns:thing", "a:b") is not default_policy("ns:thing", "a:b")


LATER = "2030-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("entries", "manageable"),
    [
        ({"owner": OWNER}, True),
        ({}, False),
        ({"reader": _entry({"a:b": {}}, {"policy:/": _grant("READ")})}, False),
        ({"deep": _entry({"a:b": {}}, {"policy:/entries": _grant("WRITE")})}, False),
        ({"nobody": _entry({}, {"policy:/": _grant("WRITE")})}, False),
        # Only expiring subjects: they will be deleted, and the policy with them becomes unmanageable.
        ({"temp": _entry({"a:b": {"expiry": LATER}}, {"policy:/": _grant("WRITE")})}, False),
        ({"mixed": _entry({"a:b": {"expiry": LATER}, "c:d": {}}, {"policy:/": _grant("WRITE")})}, True),
        # The same subject loses WRITE on policy:/ through another entry.
        (
            {
                "owner": _entry({"a:b": {}}, {"policy:/": _grant("WRITE")}),
                "deny": _entry({"a:b": {}}, {"policy:/": _revoke("WRITE")}),
            },
            False,
        ),
        # ... but another permanent subject keeps it.
        (
            {
                "owner": _entry({"a:b": {}, "c:d": {}}, {"policy:/": _grant("WRITE")}),
                "deny": _entry({"a:b": {}}, {"policy:/": _revoke("WRITE")}),
            },
            True,
        ),
        # Revoked in the very entry that grants it.
        ({"odd": _entry({"a:b": {}}, {"policy:/": {"grant": ["WRITE"], "revoke": ["WRITE"]}})}, False),
        # Ditto's rule looks at policy:/ only: protecting one entry from its own subjects is allowed.
        (
            {
                "owner": _entry(
                    {"a:b": {}}, {"policy:/": _grant("WRITE"), "policy:/entries/owner": _revoke("WRITE")}
                )
            },
            True,
        ),
        # Namespaces do not matter to the rule.
        ({"ns": _entry({"a:b": {}}, {"policy:/": _grant("WRITE")}, namespaces=["com.acme"])}, True),
    ],
)
def test_lock_out_rule(entries: dict[str, Any], manageable: bool) -> None:
    policy = {"policyId": PID, "entries": entries}
    if manageable:
        check_policy_manageable(policy, now=NOW)
        return
    with pytest.raises(PolicyDenied) as err:
        check_policy_manageable(policy, now=NOW)
    assert err.value.status == 403
    assert _code(err) == "policies:policy.modificationinvalid"
    assert err.value.message == (
        f"The Policy with ID '{PID}' could not be modified as the resulting Policy would be invalid."
    )
    assert err.value.description == (
        "There must always be at least one PolicyEntry with 'WRITE' permissions on resource 'policy:/'."
    )


def test_lock_out_rule_on_an_entry_command() -> None:
    with pytest.raises(PolicyDenied) as err:
        check_policy_manageable({"policyId": PID, "entries": {}}, now=NOW, label="owner")
    assert _code(err) == "policies:entry.modificationinvalid"
    assert err.value.status == 403
    assert "Label 'owner'" in err.value.message


# ---------------------------------------------------------------------------------------------------------------
# Which entries apply: subjects, expiry, namespaces


def _reader(**extra: Any) -> dict[str, Any]:
    return {
        "policyId": PID,
        "entries": {"owner": OWNER, "reader": _entry({"s:r": {}}, {"thing:/": _grant("READ")}, **extra)},
    }


def test_only_entries_naming_a_subject_apply() -> None:
    policy = _reader()
    assert _build(policy, "s:r").unrestricted("thing", (), "READ")
    assert not _build(policy, "s:r").partial("thing", (), "WRITE")
    assert not _build(policy, "s:other").partial("thing", (), "READ")
    assert not _build(policy).partial("thing", (), "READ")
    # Several subjects combine their entries.
    both = _build(policy, "s:r", "nginx:ditto")
    assert both.unrestricted("thing", (), "WRITE")


@pytest.mark.parametrize(
    ("expiry", "applies"),
    [
        ("2024-05-01T10:00:01Z", True),
        ("2024-05-01T10:00:00Z", True),  # Ditto: expired only once the expiry lies *before* now
        ("2024-05-01T09:59:59.999Z", False),
        ("2024-05-01T12:00:00+02:00", True),
        ("garbage", False),
    ],
)
def test_expired_subjects_do_not_apply(expiry: str, applies: bool) -> None:
    policy = {
        "policyId": PID,
        "entries": {"e": _entry({"s:r": {"expiry": expiry}}, {"thing:/": _grant("READ")})},
    }
    assert _build(policy, "s:r").partial("thing", (), "READ") is applies


def test_an_expired_subject_does_not_hide_a_live_one() -> None:
    entry = _entry({"s:old": {"expiry": "2020-01-01T00:00:00Z"}, "s:new": {}}, {"thing:/": _grant("READ")})
    policy = {"policyId": PID, "entries": {"e": entry}}
    assert _build(policy, "s:old", "s:new").unrestricted("thing", (), "READ")
    assert not _build(policy, "s:old").partial("thing", (), "READ")


@pytest.mark.parametrize(
    ("namespaces", "namespace", "applies"),
    [
        (["com.acme", "com.acme.*"], "com.acme", True),
        (["com.acme", "com.acme.*"], "com.acme.vehicles.trucks", True),
        (["com.acme.*"], "com.acme", False),
        (["com.acme.*"], "com.acme.x", True),
        (["com.acme"], "com.acme.x", False),
        (["com.acme.*"], "com.acmex", False),
        (["com.acme"], "org.example", False),
        (["com.acme"], None, False),
        ([], None, True),
        ([], "anything", True),
    ],
)
def test_namespaces_restrict_entries(namespaces: list[str], namespace: str | None, applies: bool) -> None:
    enforcer = _build(_reader(namespaces=namespaces), "s:r", namespace=namespace)
    assert enforcer.partial("thing", (), "READ") is applies


# ---------------------------------------------------------------------------------------------------------------
# The weighted algorithm


def _policy(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"policyId": PID, "entries": {f"e{i}": entry for i, entry in enumerate(entries)}}


def test_equal_weight_revoke_wins_within_an_entry_and_across_entries_and_subjects() -> None:
    same = _build(_policy(_entry({"s:a": {}}, {"thing:/x": {"grant": ["READ"], "revoke": ["READ"]}})), "s:a")
    assert not same.partial("thing", ("x",), "READ")
    across = _policy(
        _entry({"s:a": {}}, {"thing:/x": _grant("READ")}),
        _entry({"s:b": {}}, {"thing:/x": _revoke("READ")}),
    )
    assert _build(across, "s:a").unrestricted("thing", ("x",), "READ")
    assert not _build(across, "s:a", "s:b").partial("thing", ("x",), "READ")
    assert not _build(across, "s:a", "s:b").unrestricted("thing", ("x", "y"), "READ")


def test_deeper_grant_beats_shallower_revoke() -> None:
    enforcer = _build(
        _policy(_entry({"s:a": {}}, {"thing:/": _revoke("READ"), "thing:/features/lamp": _grant("READ")})),
        "s:a",
    )
    assert enforcer.unrestricted("thing", ("features", "lamp"), "READ")
    assert enforcer.unrestricted("thing", ("features", "lamp", "properties", "on"), "READ")
    assert not enforcer.partial("thing", ("attributes",), "READ")
    assert enforcer.partial("thing", (), "READ")  # via the grant below
    assert not enforcer.unrestricted("thing", (), "READ")
    assert enforcer.readable_view(THING) is MISSING  # no feature "lamp" in THING


def test_revoke_below_denies_unrestricted_but_not_partial() -> None:
    enforcer = _build(
        _policy(
            _entry(
                {"s:a": {}},
                {"thing:/": _grant("READ", "WRITE"), "thing:/attributes/secret": _revoke("WRITE")},
            )
        ),
        "s:a",
    )
    assert not enforcer.unrestricted("thing", (), "WRITE")
    assert not enforcer.unrestricted("thing", ("attributes",), "WRITE")
    assert enforcer.partial("thing", (), "WRITE")
    assert enforcer.partial("thing", ("attributes",), "WRITE")
    assert not enforcer.partial("thing", ("attributes", "secret"), "WRITE")
    assert not enforcer.partial("thing", ("attributes", "secret", "deeper"), "WRITE")
    assert enforcer.unrestricted("thing", ("attributes", "public"), "WRITE")
    assert enforcer.unrestricted("thing", (), "READ")  # other permissions are untouched


def test_permissions_and_resource_types_are_independent() -> None:
    enforcer = _build(_policy(_entry({"s:a": {}}, {"policy:/": _grant("EXECUTE")})), "s:a")
    assert enforcer.unrestricted("policy", (), "EXECUTE")
    assert not enforcer.partial("policy", (), "READ")
    assert not enforcer.partial("thing", (), "EXECUTE")
    assert not enforcer.partial("nonsense", (), "READ")
    with pytest.raises(ValueError, match="unknown permission"):
        enforcer.partial("policy", (), "DELETE")


def test_message_inbox_does_not_cover_feature_messages() -> None:
    # ditto.md §3.2: ``message:/inbox`` does not cover feature messages.
    enforcer = _build(_policy(_entry({"s:a": {}}, {"message:/inbox": _grant("WRITE")})), "s:a")
    assert enforcer.unrestricted("message", ("inbox", "messages", "hello"), "WRITE")
    assert not enforcer.partial("message", ("features", "lamp", "inbox", "messages", "hello"), "WRITE")
    assert not enforcer.partial("message", ("outbox", "messages", "hello"), "WRITE")


def test_malformed_stored_parts_are_skipped() -> None:
    policy: dict[str, Any] = {
        "policyId": PID,
        "entries": {
            "bad1": "x",
            "bad2": {"subjects": [], "resources": {}},
            "bad3": {
                "subjects": {"s:a": {"type": "t"}},
                "resources": {"nocolon": _grant("READ"), "thing:/a//b": []},
            },
            "good": _entry({"s:a": {}}, {"thing:/ok": {"grant": ["READ", "BOGUS", 5], "revoke": None}}),
        },
    }
    enforcer = _build(policy, "s:a")
    assert enforcer.unrestricted("thing", ("ok",), "READ")
    assert not enforcer.partial("thing", ("a",), "READ")
    assert not _build({"entries": None}, "s:a").partial("thing", (), "READ")


# ---------------------------------------------------------------------------------------------------------------
# Views, merges and conditions


def test_view_keeps_readable_empty_objects_and_drops_emptied_ones() -> None:
    enforcer = _build(
        _policy(_entry({"s:a": {}}, {"thing:/a": _grant("READ"), "thing:/a/hidden": _revoke("READ")})), "s:a"
    )
    assert enforcer.readable_view({"a": {"empty": {}, "hidden": {"x": 1}}, "b": {}}) == {"a": {"empty": {}}}
    assert enforcer.readable_view({"a": {"hidden": {"x": 1}}}) is MISSING
    assert enforcer.readable_view({"b": 1}) is MISSING
    assert enforcer.readable_view([1, 2], at=("a",)) == [1, 2]


def test_a_leaf_is_not_readable_through_a_grant_below_it() -> None:
    enforcer = _build(_policy(_entry({"s:a": {}}, {"thing:/attributes/a/b": _grant("READ")})), "s:a")
    assert enforcer.partial("thing", ("attributes", "a"), "READ")
    assert enforcer.readable_view({"attributes": {"a": 5}}) is MISSING
    assert enforcer.readable_view({"attributes": {"a": {"b": 1, "c": 2}}}) == {"attributes": {"a": {"b": 1}}}


def test_the_owner_fast_path_returns_the_value_itself() -> None:
    owner = _build(_policy(OWNER), "nginx:ditto")
    features = THING["features"]
    assert owner.readable_view(features, at=("features",)) is features
    assert owner.readable_view(None, at=("attributes", "x")) is None
    assert owner.readable_view(THING, resource_type="policy") is THING
    assert _build(_policy(OWNER), "s:nobody").readable_view(THING) is MISSING


def test_unchanged_sub_trees_are_shared() -> None:
    enforcer = _build(POLICY_3_2, "nginx:observer-client")
    view = enforcer.readable_view(THING)
    assert isinstance(view, dict)
    assert (
        view["features"]["featureX"]["desiredProperties"]
        is THING["features"]["featureX"]["desiredProperties"]
    )


PARTIAL_WRITER = _policy(
    _entry(
        {"s:w": {}},
        {
            "thing:/attributes": _grant("WRITE"),
            "thing:/attributes/secret": _revoke("WRITE"),
            "thing:/features/lamp/properties": _grant("WRITE"),
        },
    )
)


@pytest.mark.parametrize(
    ("path", "patch", "allowed"),
    [
        ((), {"attributes": {"a": 1, "b": None}}, True),
        ((), {"attributes": {"a": 1, "secret": 2}}, False),
        ((), {"attributes": {"secret": None}}, False),
        ((), {"attributes": {"secret": {"deeper": 1}}}, False),
        ((), {"attributes": {"a": {}}}, True),
        ((), {"attributes": {}}, False),  # an empty object is a leaf: replacing attributes needs all of it
        ((), {"features": {"lamp": {"properties": {"on": True}}}}, True),
        ((), {"features": {"lamp": {"definition": ["x:y:1"]}}}, False),
        ((), {"features": {"lamp": {"properties": {"{{ ~.*~ }}": None, "on": True}}}}, True),
        # A regex deletion at attributes could delete the secret: it needs WRITE on all of attributes.
        ((), {"attributes": {"{{ ~s.*~ }}": None}}, False),
        ((), {"attributes": {"{{ ~s.*~ }}": 5}}, True),  # with a value it is an ordinary key
        ((), None, False),
        ((), {"policyId": "a:b"}, False),
        (("attributes",), {"a": 1}, True),
        (("attributes",), {"secret": 1}, False),
        (("attributes",), 5, False),
        (("attributes", "a"), 5, True),
        (("attributes", "secret"), {"x": 1}, False),
        (("features",), {"lamp": {"properties": {"x": 1}}}, True),
        (("features", "other"), {"properties": {"x": 1}}, False),
    ],
)
def test_may_merge(path: Pointer, patch: Json, allowed: bool) -> None:
    assert _build(PARTIAL_WRITER, "s:w").may_merge(path, patch) is allowed


def test_an_unrestricted_writer_may_merge_anything() -> None:
    owner = _build(_policy(OWNER), "nginx:ditto")
    assert owner.may_merge((), {"attributes": {"{{ ~.*~ }}": None}, "policyId": "a:b"})
    assert owner.may_merge(("attributes",), None)
    assert not _build(_policy(OWNER), "s:nobody").may_merge(("attributes",), {"a": 1})


CONDITION_READER = _policy(
    _entry(
        {"s:c": {}},
        {
            "thing:/attributes": _grant("READ"),
            "thing:/attributes/secret": _revoke("READ"),
            "thing:/features": _grant("READ"),
            "thing:/features/private/properties/pin": _revoke("READ"),
        },
    )
)


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ([], True),
        (["attributes/location"], True),
        (["/attributes/location/lat"], True),
        (["attributes/secret"], False),
        (["attributes/secret/x"], False),
        (["attributes"], False),  # unrestricted READ is needed: the secret is below
        (["attributes/location", "attributes/secret"], False),
        (["thingId", "_revision", "_modified", "_created", "_namespace"], True),
        (["policyId"], False),
        (["_metadata/attributes/location"], False),
        (["features/lamp/properties/on"], True),
        (["features/private/properties/pin"], False),
        # The feature wildcard must not probe the revoked feature.
        (["features/*/properties/on"], True),
        (["features/*/properties/pin"], False),
        (["features/*/properties"], False),
    ],
)
def test_may_read_fields(fields: list[str], allowed: bool) -> None:
    assert _build(CONDITION_READER, "s:c").may_read_fields(fields) is allowed


def test_may_read_fields_refuses_a_bad_pointer() -> None:
    with pytest.raises(InvalidInput) as err:
        _build(CONDITION_READER, "s:c").may_read_fields(["attributes//x"])
    assert _code(err) == "things:condition.invalid"


def test_the_owner_may_read_any_field() -> None:
    owner = _build(_policy(OWNER), "nginx:ditto")
    assert owner.may_read_fields(["attributes/a", "features/*/properties/x", "policyId", "_metadata/x"])


# ---------------------------------------------------------------------------------------------------------------
# Properties against literal transcriptions of Ditto's visitors

SUBJECTS = ("s:a", "s:b")
SEGMENTS = st.sampled_from(["a", "b", "lamp"])
PATHS: st.SearchStrategy[Pointer] = st.lists(SEGMENTS, max_size=3).map(tuple)
# Documents over the policies' own key alphabet, nested enough to meet their grants and revokes.
_TREES: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.integers(-3, 3) | st.just({}),
    lambda children: st.dictionaries(SEGMENTS, children, max_size=3),
    max_leaves=10,
)
DOCUMENTS: st.SearchStrategy[dict[str, Json]] = st.dictionaries(SEGMENTS, _TREES, max_size=3) | json_objects()


@st.composite
def _effects(draw: st.DrawFn) -> dict[str, Any]:
    # Grants outnumber revokes, so that views are more often partial than empty.
    grant = draw(st.sampled_from([["READ"], ["READ", "WRITE"], ["WRITE"], []]))
    return {"grant": grant, "revoke": draw(st.lists(st.sampled_from(["READ", "WRITE"]), max_size=1))}


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for index in range(draw(st.integers(min_value=1, max_value=3))):
        subjects = draw(
            st.lists(st.sampled_from([*SUBJECTS, "s:other"]), min_size=1, max_size=2, unique=True)
        )
        keys = st.lists(SEGMENTS, max_size=2).map(lambda p: "thing:/" + "/".join(p))
        resources = draw(st.dictionaries(keys, _effects(), min_size=1, max_size=4))
        entries[f"e{index}"] = _entry({s: {} for s in subjects}, resources)
    return {"policyId": PID, "entries": entries}


def _nodes(policy: dict[str, Any], subjects: tuple[str, ...]) -> list[tuple[Pointer, set[str], set[str]]]:
    """Every (path, granted, revoked) of the thing resources of the entries naming one of ``subjects``."""
    found = []
    for entry in policy["entries"].values():
        if set(entry["subjects"]) & set(subjects):
            for key, effects in entry["resources"].items():
                path = tuple(segment for segment in key.removeprefix("thing:/").split("/") if segment)
                found.append((path, set(effects["grant"]), set(effects["revoke"])))
    return found


def _ditto_check(
    policy: dict[str, Any], subjects: tuple[str, ...], target: Pointer, permission: str, *, partial: bool
) -> bool:
    """``CheckPermissionsVisitor.determineResult`` with the unrestricted or the partial aggregation."""
    grants: list[int] = []
    revokes: list[int] = []
    for path, granted, revoked in _nodes(policy, subjects):
        weight = len(path)
        at_or_above = target[: len(path)] == path
        below = len(path) > len(target) and path[: len(target)] == target
        if (at_or_above or (partial and below)) and permission in granted:
            grants.append(weight)
        if (at_or_above or (not partial and below)) and permission in revoked:
            revokes.append(weight)
    return bool(grants) and (not revokes or max(revokes) < max(grants))


def _ditto_view(
    policy: dict[str, Any], subjects: tuple[str, ...], value: Json, at: Pointer
) -> Json | Missing:
    """``TreeBasedPolicyEnforcer.buildJsonView`` for READ: flatten, decide each leaf by its prefixes, rebuild."""
    granted = {path for path, g, _ in _nodes(policy, subjects) if "READ" in g}
    revoked = {path for path, _, r in _nodes(policy, subjects) if "READ" in r}
    result: dict[str, Any] = {}
    kept = False
    for relative, leaf in leaves(value):
        pointer = at + relative
        accessible = () in granted and () not in revoked
        for level in range(1, len(pointer) + 1):
            if pointer[:level] in granted:
                accessible = True
            if pointer[:level] in revoked:
                accessible = False
        if accessible:
            kept = True
            if not relative:
                return leaf
            node = result
            for key in relative[:-1]:
                node = node.setdefault(key, {})
            node[relative[-1]] = leaf
    return result if kept else MISSING


def _is_sub_tree(view: Json | Missing, value: Json) -> bool:
    if view is MISSING or view is value:
        return True
    if isinstance(view, dict) and isinstance(value, dict) and view:
        return all(key in value and _is_sub_tree(member, value[key]) for key, member in view.items())
    return view == value


@given(policy=policies(), target=PATHS, permission=st.sampled_from(["READ", "WRITE"]))
@settings(max_examples=300)
def test_checks_agree_with_dittos_visitors(policy: dict[str, Any], target: Pointer, permission: str) -> None:
    enforcer = _build(policy, *SUBJECTS)
    unrestricted = enforcer.unrestricted("thing", target, permission)
    partial = enforcer.partial("thing", target, permission)
    assert unrestricted is _ditto_check(policy, SUBJECTS, target, permission, partial=False)
    assert partial is _ditto_check(policy, SUBJECTS, target, permission, partial=True)
    assert not unrestricted or partial


@given(policy=policies(), value=DOCUMENTS, at=st.just(()) | PATHS)
@settings(max_examples=300)
def test_view_agrees_with_dittos_build_json_view(
    policy: dict[str, Any], value: dict[str, Json], at: Pointer
) -> None:
    enforcer = _build(policy, *SUBJECTS)
    view = enforcer.readable_view(value, at=at)
    assert view == _ditto_view(policy, SUBJECTS, value, at)
    assert _is_sub_tree(view, value)
    if view is not MISSING:
        assert enforcer.readable_view(view, at=at) == view  # idempotent
    if enforcer.unrestricted("thing", at, "READ"):
        assert view is value
    if view is not MISSING:
        assert enforcer.partial("thing", at, "READ")


@given(policy=policies(), extra_path=PATHS, subject=st.sampled_from(SUBJECTS), data=st.data())
@settings(max_examples=150)
def test_a_revoke_never_widens_and_a_grant_never_narrows(
    policy: dict[str, Any], extra_path: Pointer, subject: str, data: st.DataObject
) -> None:
    permission = data.draw(st.sampled_from(["READ", "WRITE"]))
    key = "thing:/" + "/".join(extra_path)
    revoked = copy.deepcopy(policy)
    revoked["entries"]["extra"] = _entry({subject: {}}, {key: _revoke(permission)})
    granted = copy.deepcopy(policy)
    granted["entries"]["extra"] = _entry({subject: {}}, {key: _grant(permission)})
    base, narrower, wider = (_build(p, *SUBJECTS) for p in (policy, revoked, granted))
    value = data.draw(DOCUMENTS)
    for target in [(), ("a",), ("a", "b"), ("lamp",), extra_path, extra_path[:-1], (*extra_path, "a")]:
        for check in ("unrestricted", "partial"):
            before = getattr(base, check)("thing", target, permission)
            assert getattr(narrower, check)("thing", target, permission) <= before
            assert getattr(wider, check)("thing", target, permission) >= before
    if permission == "READ":
        view = base.readable_view(value)
        assert _is_sub_tree(narrower.readable_view(value), view if view is not MISSING else {})
        wide = wider.readable_view(value)
        assert view is MISSING or _is_sub_tree(view, wide if wide is not MISSING else {})


@given(value=json_objects(), at=PATHS)
@settings(max_examples=100)
def test_an_owner_sees_everything_unchanged(value: dict[str, Json], at: Pointer) -> None:
    owner = _build(_policy(OWNER), "nginx:ditto")
    assert owner.readable_view(value) is value
    assert owner.readable_view(value, at=at) is value
    assert owner.may_merge(at, value)
