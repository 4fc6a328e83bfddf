"""Merge patch: RFC 7396's own examples, Ditto's regex deletions, and the algebraic properties."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings

from edgetwin.errors import InvalidInput
from edgetwin.twin import MISSING, Json, diff_merge_patch, get_at, json_equal, merge_patch, strip_nulls
from tests.twin.strategies import json_objects, json_values, leaves, patches

# RFC 7396 Appendix A, every row.
RFC_7396_EXAMPLES: list[tuple[Json, Json, Json]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_rfc_7396_appendix_a(target: Json, patch: Json, result: Json) -> None:
    assert merge_patch(target, patch) == result


def test_ditto_merge_update_example() -> None:
    # Ditto httpapi-concepts.md, "Merge update example".
    thing: Json = {
        "thingId": "{thingId}",
        "policyId": "{policyId}",
        "attributes": {"location": {"longitude": 47.682170, "latitude": 9.386372}, "serialNo": "0000000"},
        "features": {
            "temperature": {"properties": {"value": 25.43, "unit": "°C"}},
            "pressure": {"properties": {"value": 1013.25, "unit": "hPa"}},
        },
    }
    patch: Json = {
        "attributes": {"location": None, "manufacturer": "Bosch", "serialNo": "23091861"},
        "features": {
            "temperature": {"properties": {"value": 26.89}},
            "pressure": {"properties": {"unit": None}},
            "humidity": {"properties": {"value": 55, "unit": "%"}},
        },
    }
    assert merge_patch(thing, patch) == {
        "thingId": "{thingId}",
        "policyId": "{policyId}",
        "attributes": {"serialNo": "23091861", "manufacturer": "Bosch"},
        "features": {
            "temperature": {"properties": {"value": 26.89, "unit": "°C"}},
            "pressure": {
                "properties": {"value": 1013.25}
            },  # the page prints 1015, a typo: nothing patched it
            "humidity": {"properties": {"value": 55, "unit": "%"}},
        },
    }


def test_regex_key_deletes_matching_members_before_the_rest_applies() -> None:
    # Ditto httpapi-concepts.md, "Removing fields in a merge update with a regex" (ditto.md 1.3 spelling).
    thing: Json = {
        "features": {
            "aggregated-history": {
                "properties": {"2022-11": 42.3, "2022-12": 54.3, "2023-01": 80.2, "2023-02": 99.9}
            }
        }
    }
    patch: Json = {
        "features": {"aggregated-history": {"properties": {"{{ ~2022-.*~ }}": None, "2023-03": 105.21}}}
    }
    assert merge_patch(thing, patch) == {
        "features": {
            "aggregated-history": {"properties": {"2023-01": 80.2, "2023-02": 99.9, "2023-03": 105.21}}
        }
    }


def test_regex_matches_the_whole_key_and_spares_keys_the_patch_names() -> None:
    target: Json = {"ab": 1, "xab": 2, "a": 3, "abc": 4}
    assert merge_patch(target, {"{{ ~ab.*~ }}": None, "abc": 5}) == {"xab": 2, "a": 3, "abc": 5}
    assert merge_patch(target, {"{{~.*~}}": None}) == {}
    assert merge_patch(target, {"{{ ~.*~ }}": None, "a": {"new": True}}) == {"a": {"new": True}}


def test_regex_key_with_a_value_is_an_ordinary_key() -> None:
    assert merge_patch({"a": 1}, {"{{ ~a~ }}": 2}) == {"a": 1, "{{ ~a~ }}": 2}
    assert merge_patch({"a": 1, "{{ ~a~ }}": 2}, {"{{ ~b~ }}": None}) == {"a": 1, "{{ ~a~ }}": 2}


def test_slash_delimited_regex_is_not_an_operator() -> None:
    # Ditto's first spelling "{{ /re/ }}" could never pass key validation ("/" in a key); ditto.md uses "~".
    assert merge_patch({"a": 1}, {"{{ /a/ }}": None}) == {"a": 1}


def test_invalid_regex_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as info:
        merge_patch({"a": 1}, {"{{ ~(unclosed~ }}": None})
    assert info.value.error_code == "json.invalid"
    assert "{{ ~(unclosed~ }}" in info.value.message


def test_strip_nulls_drops_null_members_recursively_but_not_array_elements() -> None:
    body: Json = {
        "thingId": "ns:x",
        "attributes": {"a": None, "b": {"c": None, "d": 1}, "list": [None, {"e": None}]},
        "features": None,
    }
    assert strip_nulls(body) == {
        "thingId": "ns:x",
        "attributes": {"b": {"d": 1}, "list": [None, {"e": None}]},
    }
    assert strip_nulls("text") == "text"
    assert strip_nulls(None) is None


def test_deep_patches_fail_cleanly() -> None:
    patch: Json = 1
    for _ in range(20_000):
        patch = {"a": patch}
    with pytest.raises(InvalidInput) as info:
        merge_patch({}, patch)
    assert info.value.error_code == "json.invalid"
    with pytest.raises(InvalidInput):
        strip_nulls(patch)
    with pytest.raises(InvalidInput):
        diff_merge_patch({}, patch)


def _reference_merge_patch(target: Json, patch: Json) -> Json:
    """RFC 7396 §2 pseudo-code, transcribed literally on a deep copy (no regex extension)."""
    if isinstance(patch, dict):
        result = copy.deepcopy(target) if isinstance(target, dict) else {}
        for name, value in patch.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = _reference_merge_patch(result.get(name), value)
        return result
    return patch


@given(target=json_values(), patch=json_values())
@settings(max_examples=150)
def test_agrees_with_the_rfc_pseudo_code(target: Json, patch: Json) -> None:
    assert json_equal(merge_patch(target, patch), _reference_merge_patch(target, patch))


@given(target=json_objects(), patch=patches())
@settings(max_examples=150)
def test_merge_patch_is_idempotent(target: dict[str, Json], patch: dict[str, Json]) -> None:
    once = merge_patch(target, patch)
    assert json_equal(merge_patch(once, patch), once)


@given(target=json_objects(), patch=json_objects(null_members=False))
@settings(max_examples=150)
def test_every_leaf_of_a_null_free_patch_is_readable_at_its_path(
    target: dict[str, Json], patch: dict[str, Json]
) -> None:
    result = merge_patch(target, patch)
    for pointer, leaf in leaves(patch):
        found = get_at(result, pointer)
        if isinstance(leaf, dict):  # an empty object in the patch merges; it does not replace
            assert isinstance(found, dict)
        else:
            assert json_equal(found, leaf)


@given(target=json_objects(), patch=patches())
@settings(max_examples=100)
def test_inputs_are_never_mutated(target: dict[str, Json], patch: dict[str, Json]) -> None:
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    strip_nulls(patch)
    diff_merge_patch(target, patch)
    assert target == target_before
    assert patch == patch_before


@given(target=json_objects(), patch=patches())
@settings(max_examples=100)
def test_strip_nulls_is_merging_into_nothing(target: dict[str, Json], patch: dict[str, Json]) -> None:
    stripped = strip_nulls(patch)
    assert all(value is not None for _, value in leaves(stripped))
    assert json_equal(stripped, merge_patch({}, patch))


@given(old=json_values(), new=json_values(null_members=False))
@settings(max_examples=150)
def test_diff_merge_patch_reproduces_the_new_value(old: Json, new: Json) -> None:
    patch = diff_merge_patch(old, new)
    if patch is MISSING:
        assert json_equal(old, new)
    else:
        assert json_equal(merge_patch(old, patch), new)


def test_diff_merge_patch_keeps_only_changes() -> None:
    old: Json = {"a": 1, "b": {"c": 2, "d": 3}, "gone": True}
    assert diff_merge_patch(old, {"a": 1, "b": {"c": 2, "d": 4}, "new": [1]}) == {
        "gone": None,
        "b": {"d": 4},
        "new": [1],
    }
    assert diff_merge_patch(old, copy.deepcopy(old)) is MISSING
    assert diff_merge_patch({"a": True}, {"a": 1}) == {"a": 1}  # JSON equality, not Python's
