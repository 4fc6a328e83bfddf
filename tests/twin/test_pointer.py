"""JSON pointers, reads and copy-on-write updates of documents, key validation and JSON equality."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput, NotFound
from edgetwin.twin import (
    MAX_JSON_DEPTH,
    MISSING,
    Json,
    Pointer,
    check_key,
    check_keys,
    delete_at,
    format_pointer,
    get_at,
    json_equal,
    parse_pointer,
    put_at,
)
from tests.twin.strategies import KEYS, json_objects, json_values

THING: dict[str, Json] = {
    "thingId": "org.eclipse.ditto:fancy-thing",
    "policyId": "org.eclipse.ditto:fancy-thing",
    "attributes": {"location": {"latitude": 44.67, "longitude": 8.26}, "nothing": None, "list": [{"a": 1}]},
    "features": {"accelerometer": {"properties": {"x": 3.141, "unit": "g"}}},
}


def _nested(depth: int) -> Json:
    """``{"a": {"a": ... 1}}`` with ``depth`` objects, built without recursion."""
    value: Json = 1
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ("attributes/a/b", ("attributes", "a", "b")),
        ("/attributes/a/b", ("attributes", "a", "b")),
        ("attributes/a/b/", ("attributes", "a", "b")),
        ("", ()),
        ("/", ()),
        ("features/lamp", ("features", "lamp")),
        ("a~0b", ("a~b",)),  # Ditto decodes ~0 only: keys never contain '/'
        ("a~1b", ("a~1b",)),
        ("with space/ä", ("with space", "ä")),
    ],
)
def test_parse_pointer(text: str, pointer: Pointer) -> None:
    assert parse_pointer(text) == pointer


@pytest.mark.parametrize("text", ["attributes//x", "//", "a///b", "//a"])
def test_empty_segments_are_invalid(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_pointer(text)
    assert info.value.error_code == "json.pointer.invalid"
    assert info.value.message == f"The JSON pointer is invalid: '{text}'!"
    assert info.value.description == "Consecutive slashes in JSON pointers are not supported."


def test_pointer_depth_is_bounded() -> None:
    assert len(parse_pointer("/".join(["a"] * MAX_JSON_DEPTH))) == MAX_JSON_DEPTH
    with pytest.raises(InvalidInput) as info:
        parse_pointer("/".join(["a"] * (MAX_JSON_DEPTH + 1)))
    assert info.value.error_code == "json.pointer.invalid"


def test_format_pointer() -> None:
    assert format_pointer(()) == "/"
    assert format_pointer(("attributes", "a~b")) == "/attributes/a~0b"


@given(
    pointer=st.lists(
        st.text(alphabet=st.characters(exclude_characters="/", exclude_categories=["Cs"]), min_size=1),
        max_size=5,
    ).map(tuple)
)
@settings(max_examples=80)
def test_format_then_parse_round_trips(pointer: Pointer) -> None:
    assert parse_pointer(format_pointer(pointer)) == pointer


def test_get_at_reads_values_and_reports_absence() -> None:
    assert get_at(THING, ("attributes", "location", "latitude")) == 44.67
    assert get_at(THING, ()) is THING
    assert get_at(THING, ("attributes", "nothing")) is None  # JSON null is a value
    assert get_at(THING, ("attributes", "missing")) is MISSING
    assert get_at(THING, ("thingId", "x")) is MISSING  # through a string
    assert get_at(THING, ("attributes", "list", "0")) is MISSING  # Ditto pointers do not index arrays
    assert repr(MISSING) == "MISSING"


def test_put_at_adds_replaces_and_creates_parents() -> None:
    before = copy.deepcopy(THING)
    added = put_at(THING, ("attributes", "foo", "bar"), 42, create_parents=True)
    assert get_at(added, ("attributes", "foo", "bar")) == 42
    assert get_at(added, ("attributes", "location")) == {"latitude": 44.67, "longitude": 8.26}
    replaced = put_at(THING, ("attributes", "location"), "kitchen", create_parents=False)
    assert get_at(replaced, ("attributes", "location")) == "kitchen"
    assert before == THING


def test_put_at_creates_the_attributes_object_itself() -> None:
    assert put_at({"thingId": "x:y"}, ("attributes", "a", "b"), True, create_parents=True) == {
        "thingId": "x:y",
        "attributes": {"a": {"b": True}},
    }


def test_put_at_replaces_a_non_object_parent_when_creating() -> None:
    # Ditto JsonObject.setValue: a scalar on the way is replaced by an object.
    assert put_at({"a": 5}, ("a", "b"), 1, create_parents=True) == {"a": {"b": 1}}


def test_put_at_root_returns_the_value() -> None:
    assert put_at(THING, (), {"new": 1}, create_parents=False) == {"new": 1}


@pytest.mark.parametrize("pointer", [("features", "lamp", "properties"), ("thingId", "x")])
def test_put_at_without_parents_raises_not_found(pointer: Pointer) -> None:
    with pytest.raises(NotFound) as info:
        put_at(THING, pointer, 1, create_parents=False)
    assert info.value.error_code == "edgetwin:pointer.notfound"
    assert info.value.status == 404


def test_put_at_on_a_non_object_document() -> None:
    assert put_at("text", ("a",), 1, create_parents=True) == {"a": 1}
    with pytest.raises(NotFound):
        put_at("text", ("a",), 1, create_parents=False)


def test_delete_at_removes_one_member() -> None:
    before = copy.deepcopy(THING)
    deleted = delete_at(THING, ("attributes", "location", "latitude"))
    assert get_at(deleted, ("attributes", "location")) == {"longitude": 8.26}
    assert get_at(delete_at(THING, ("attributes", "nothing")), ("attributes", "nothing")) is MISSING
    assert before == THING


def test_delete_at_missing_or_root() -> None:
    with pytest.raises(NotFound) as not_found:
        delete_at(THING, ("attributes", "missing"))
    assert not_found.value.error_code == "edgetwin:pointer.notfound"
    with pytest.raises(InvalidInput) as invalid:
        delete_at(THING, ())
    assert invalid.value.error_code == "json.pointer.invalid"


@given(doc=json_objects(), pointer=st.lists(KEYS, min_size=1, max_size=4).map(tuple), value=json_values())
@settings(max_examples=80)
def test_put_then_get_and_delete(doc: dict[str, Json], pointer: Pointer, value: Json) -> None:
    before = copy.deepcopy(doc)
    updated = put_at(doc, pointer, value, create_parents=True)
    assert get_at(updated, pointer) == value
    removed = delete_at(updated, pointer)
    assert get_at(removed, pointer) is MISSING
    assert doc == before  # inputs are never mutated
    # Members beside the path are untouched.
    for key in doc:
        if key != pointer[0]:
            assert get_at(updated, (key,)) is get_at(doc, (key,))


@pytest.mark.parametrize("key", ["a", "日本", "with space", "x" * 256, "*", "{{ ~.*~ }}", "a:b"])
def test_valid_keys(key: str) -> None:
    check_key(key)


@pytest.mark.parametrize("key", ["", "a/b", "tab\t", "\x7f", "°C", "ü", "x" * 257])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_key(key)
    assert info.value.error_code == "json.key.invalid"
    assert info.value.message == f"The JSON key <{key}> is invalid!"


def test_check_keys_walks_nested_objects() -> None:
    check_keys(THING)
    with pytest.raises(InvalidInput) as info:
        check_keys({"attributes": {"ok": {"bad/key": 1}}})
    assert info.value.to_json() == {
        "status": 400,
        "error": "json.key.invalid",
        "message": "The JSON key <bad/key> is invalid!",
        "description": "Neither slashes nor any control characters are allowed.",
    }


def test_check_keys_skips_objects_inside_arrays_like_ditto() -> None:
    check_keys({"list": [{"a/b": 1}]})
    check_keys("scalar")


def test_check_keys_bounds_depth_without_recursion() -> None:
    check_keys(_nested(MAX_JSON_DEPTH))
    check_keys(_nested(MAX_JSON_DEPTH - 3), at_depth=3)
    for too_deep, at_depth in [(_nested(MAX_JSON_DEPTH + 1), 0), (_nested(MAX_JSON_DEPTH), 1)]:
        with pytest.raises(InvalidInput) as info:
            check_keys(too_deep, at_depth=at_depth)
        assert info.value.error_code == "json.invalid"
    deep_list: Json = []
    for _ in range(100_000):
        deep_list = [deep_list]
    with pytest.raises(InvalidInput):
        check_keys(_nested(100_000))
    with pytest.raises(InvalidInput):
        check_keys(deep_list)


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": True}, {"a": 1}, False),
        ([1, 2], [2, 1], False),
        ([1, [True]], [1, [True]], True),
        (None, None, True),
        (None, MISSING, False),
        (MISSING, MISSING, True),
        ("1", 1, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1], [1, 1], False),
    ],
)
def test_json_equal(left: Json, right: Json, equal: bool) -> None:
    assert json_equal(left, right) is equal
    assert json_equal(right, left) is equal


@given(value=json_values())
@settings(max_examples=50)
def test_json_equal_is_reflexive(value: Json) -> None:
    assert json_equal(value, copy.deepcopy(value))


def test_json_equal_handles_deep_values() -> None:
    assert json_equal(_nested(50_000), _nested(50_000))
