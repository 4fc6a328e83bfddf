"""Ditto's thing resources: classification, validation, and PUT / merge / delete at any path."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput, MethodNotAllowed, NotFound
from edgetwin.twin.things import (
    Resource,
    apply_delete,
    apply_merge,
    apply_put,
    lookup,
    not_found,
    resource_of,
)

T = "org.eclipse.ditto:t1"
THING: dict[str, Any] = {
    "thingId": T,
    "policyId": T,
    "attributes": {"location": {"lat": 1, "lon": 2}, "model": "X"},
    "features": {"lamp": {"properties": {"on": True, "color": {"r": 1}}}},
}


@pytest.mark.parametrize(
    ("path", "resource"),
    [
        ((), Resource("thing")),
        (("policyId",), Resource("policyId")),
        (("definition",), Resource("definition")),
        (("attributes",), Resource("attributes")),
        (("attributes", "a", "b"), Resource("attribute", key="a/b")),
        (("features",), Resource("features")),
        (("features", "lamp"), Resource("feature", "lamp")),
        (("features", "lamp", "definition"), Resource("featureDefinition", "lamp")),
        (("features", "lamp", "properties"), Resource("properties", "lamp")),
        (("features", "lamp", "properties", "on"), Resource("property", "lamp", "on")),
        (("features", "lamp", "desiredProperties"), Resource("desiredProperties", "lamp")),
        (("features", "lamp", "desiredProperties", "x", "y"), Resource("desiredProperty", "lamp", "x/y")),
    ],
)
def test_resource_of_routable_paths(path: tuple[str, ...], resource: Resource) -> None:
    assert resource_of(path) == resource


@pytest.mark.parametrize(
    "path", [("thingId",), ("policyId", "x"), ("nope",), ("features", "lamp", "other"), ("definition", "x")]
)
def test_unroutable_paths_are_404(path: tuple[str, ...]) -> None:
    with pytest.raises(NotFound):
        resource_of(path)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (("attributes", "nope"), "things:attribute.notfound"),
        (("features", "nope"), "things:feature.notfound"),
        (("features", "nope", "properties", "x"), "things:feature.notfound"),
        (("features", "lamp", "properties", "nope"), "things:feature.property.notfound"),
        (("features", "lamp", "desiredProperties"), "things:feature.desiredProperties.notfound"),
        (("features", "lamp", "definition"), "things:feature.definition.notfound"),
        (("definition",), "things:definition.notfound"),
    ],
)
def test_lookup_misses_use_dittos_codes(path: tuple[str, ...], code: str) -> None:
    with pytest.raises(NotFound) as info:
        lookup(THING, T, path)
    assert info.value.error_code == code
    assert T in info.value.message


def test_not_found_message_for_attribute() -> None:
    err = not_found(T, ("attributes", "a", "b"))
    assert err.message.startswith(
        f"The Attribute with key 'a/b' on the Thing with ID '{T}' could not be found"
    )


def test_put_whole_thing_creates_and_replaces_keeping_policy() -> None:
    created, was_created = apply_put(None, T, (), {"attributes": {"a": 1}, "_revision": 9, "junk": 1})
    assert was_created
    assert created == {"thingId": T, "attributes": {"a": 1}}
    replaced, was_created = apply_put(THING, T, (), {"features": {}})
    assert not was_created
    assert replaced == {"thingId": T, "policyId": T, "features": {}}


def test_put_thing_with_other_id_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        apply_put(None, T, (), {"thingId": "org.eclipse.ditto:other"})
    assert info.value.error_code == "things:id.notsettable"


def test_put_attribute_creates_intermediates() -> None:
    new, created = apply_put(THING, T, ("attributes", "x", "y"), 5)
    assert created
    assert new["attributes"]["x"] == {"y": 5}
    new, created = apply_put(THING, T, ("attributes", "model"), "Y")
    assert not created


def test_put_below_missing_feature_is_feature_notfound() -> None:
    with pytest.raises(NotFound) as info:
        apply_put(THING, T, ("features", "nope", "properties", "x"), 1)
    assert info.value.error_code == "things:feature.notfound"


def test_put_on_missing_thing_below_root_is_thing_notfound() -> None:
    with pytest.raises(NotFound) as info:
        apply_put(None, T, ("attributes", "x"), 1)
    assert info.value.error_code == "things:thing.notfound"


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("features", "lamp", "definition"), [], "things:feature.definition.empty"),
        (("features", "lamp", "definition"), ["not an id"], "things:definition.identifier.invalid"),
        (("definition",), "nope", "things:definition.identifier.invalid"),
        (("attributes",), [1], "json.format.invalid"),
        (("features", "lamp", "properties"), "x", "json.format.invalid"),
        (("policyId",), "no id", "policies:id.invalid"),
        (("attributes", "x"), {"a/b": 1}, "json.key.invalid"),
    ],
)
def test_put_validates_values(path: tuple[str, ...], value: Any, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        apply_put(THING, T, path, value)
    assert info.value.error_code == code


def test_definitions_accept_identifiers_and_urls() -> None:
    new, _ = apply_put(THING, T, ("definition",), "org.eclipse.ditto:SomeModel:1.0.0")
    assert new["definition"] == "org.eclipse.ditto:SomeModel:1.0.0"
    new, _ = apply_put(
        THING, T, ("features", "lamp", "definition"), ["https://models.example/lamp-1.0.0.tm.jsonld"]
    )
    assert new["features"]["lamp"]["definition"] == ["https://models.example/lamp-1.0.0.tm.jsonld"]


def test_merge_root_creates_missing_thing_without_nulls() -> None:
    new, created = apply_merge(None, T, (), {"attributes": {"a": 1, "b": None}})
    assert created
    assert new == {"thingId": T, "attributes": {"a": 1}}


def test_merge_below_root_of_missing_thing_is_404() -> None:
    with pytest.raises(NotFound):
        apply_merge(None, T, ("attributes",), {"a": 1})


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        (None, "things:merge.invalid"),
        ({"thingId": None}, "things:id.notdeletable"),
        ({"policyId": None}, "things:policyId.notdeletable"),
        ({"thingId": "org.eclipse.ditto:other"}, "things:id.notsettable"),
    ],
)
def test_merge_root_refusals(patch: Any, code: str) -> None:
    with pytest.raises(InvalidInput) as info:
        apply_merge(THING, T, (), patch)
    assert info.value.error_code == code


def test_merge_at_path_deletes_with_null_and_adds() -> None:
    new, created = apply_merge(THING, T, ("features", "lamp", "properties"), {"on": None, "level": 3})
    assert not created
    assert new["features"]["lamp"]["properties"] == {"color": {"r": 1}, "level": 3}


def test_delete_paths() -> None:
    new = apply_delete(THING, T, ("attributes", "location", "lat"))
    assert new["attributes"]["location"] == {"lon": 2}
    with pytest.raises(NotFound) as info:
        apply_delete(THING, T, ("attributes", "nope"))
    assert info.value.error_code == "things:attribute.notfound"
    with pytest.raises(MethodNotAllowed):
        apply_delete(THING, T, ("policyId",))


@given(
    key=st.text(alphabet="abcxyz", min_size=1, max_size=4),
    value=st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()),
)
def test_put_then_lookup_and_delete_round_trip(key: str, value: Any) -> None:
    path = ("features", "lamp", "properties", key)
    new, _ = apply_put(THING, T, path, value)
    assert lookup(new, T, path) == value
    back = apply_delete(new, T, path)
    assert lookup(back, T, ("features", "lamp", "properties", "on")) is True
    assert THING["features"]["lamp"]["properties"] == {"on": True, "color": {"r": 1}}  # input never mutated
