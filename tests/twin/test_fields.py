"""The ``fields`` selector: parsing (groups, errors, bounds) and applying (structure, wildcard, absence)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput
from edgetwin.twin import (
    MAX_FIELD_NESTING,
    MISSING,
    FieldSelector,
    Json,
    Pointer,
    apply_fields,
    get_at,
    json_equal,
    parse_fields,
    validate_thing_field_roots,
)
from tests.twin.strategies import json_objects, pointers

# The thing of Ditto's httpapi-concepts.md "Field selector examples", plus hidden fields.
THING: dict[str, Json] = {
    "thingId": "ns:x",
    "policyId": "ns:x",
    "definition": "org.eclipse.ditto:SomeModel:1.0.0",
    "attributes": {"manufacturer": "ACME corp", "complex": {"some": False, "serialNo": 4711, "misc": "foo"}},
    "features": {
        "lamp": {"properties": {"on": True, "color": "blue"}},
        "infrared-lamp": {"properties": {"on": False, "color": "red"}},
    },
    "_revision": 5,
    "_modified": "2024-05-01T10:00:00.123456Z",
}


@pytest.mark.parametrize(
    ("text", "pointers"),
    [
        (
            "thingId,attributes/manufacturer,features/lamp/properties/on",
            [("thingId",), ("attributes", "manufacturer"), ("features", "lamp", "properties", "on")],
        ),
        (
            "attributes/complex(some,serialNo)",
            [("attributes", "complex", "some"), ("attributes", "complex", "serialNo")],
        ),
        (
            "features(lamp/properties(on,color))",
            [("features", "lamp", "properties", "on"), ("features", "lamp", "properties", "color")],
        ),
        ("/thingId,/attributes/a/", [("thingId",), ("attributes", "a")]),
        ("thingId,thingId,attributes", [("thingId",), ("attributes",)]),  # de-duplicated, first-seen order
        ("attributes(a(b(c)),d),thingId", [("attributes", "a", "b", "c"), ("attributes", "d"), ("thingId",)]),
        ("(thingId,policyId)", [("thingId",), ("policyId",)]),  # an empty prefix groups at the same level
        ("attributes/with space", [("attributes", "with space")]),  # spaces belong to keys, as in Ditto
        ("features/*/properties/on", [("features", "*", "properties", "on")]),
    ],
)
def test_parse_fields(text: str, pointers: list[Pointer]) -> None:
    assert parse_fields(text) == FieldSelector(text=text, pointers=tuple(pointers))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("attributes(a", "never closed"),
        ("attributes(a(b)", "never closed"),
        ("a)", "no opening"),
        ("a(b))", "no opening"),
        ("a,,b", "empty"),
        ("a,", "empty"),
        (",a", "empty"),
        ("a()", "empty"),
        ("a(,b)", "empty"),
        ("/", "empty"),
        ("a(b)c", "must end its field"),
        ("a(b)(c)", "must end its field"),
    ],
)
def test_invalid_selectors(text: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_fields(text)
    assert info.value.error_code == "json.fieldselector.invalid"
    assert info.value.message == f"The field selector <{text}> is invalid!"
    assert info.value.description is not None
    assert reason in info.value.description


def test_empty_pointer_segment_is_a_pointer_error_as_in_ditto() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_fields("thingId,attributes//a")
    assert info.value.error_code == "json.pointer.invalid"


def test_parenthesis_nesting_is_capped() -> None:
    allowed = "a(" * MAX_FIELD_NESTING + "b" + ")" * MAX_FIELD_NESTING
    assert parse_fields(allowed).pointers == (("a",) * MAX_FIELD_NESTING + ("b",),)
    for depth in (MAX_FIELD_NESTING + 1, 50_000):
        with pytest.raises(InvalidInput) as info:
            parse_fields("a(" * depth + "b" + ")" * depth)
        assert info.value.error_code == "json.fieldselector.invalid"


def test_fields_too_long_for_any_document_are_refused() -> None:
    prefix = "/".join(["a"] * 100)
    with pytest.raises(InvalidInput) as info:
        parse_fields(f"{prefix}({prefix})")
    assert info.value.error_code == "json.fieldselector.invalid"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "attributes",
            {
                "attributes": {
                    "manufacturer": "ACME corp",
                    "complex": {"some": False, "serialNo": 4711, "misc": "foo"},
                }
            },
        ),
        ("attributes/manufacturer", {"attributes": {"manufacturer": "ACME corp"}}),
        ("attributes/complex/serialNo", {"attributes": {"complex": {"serialNo": 4711}}}),
        (
            "attributes/complex/some,attributes/complex/serialNo",
            {"attributes": {"complex": {"some": False, "serialNo": 4711}}},
        ),
        ("attributes/complex(some,serialNo)", {"attributes": {"complex": {"some": False, "serialNo": 4711}}}),
        (
            "attributes/complex/misc,features/lamp/properties/on",
            {"attributes": {"complex": {"misc": "foo"}}, "features": {"lamp": {"properties": {"on": True}}}},
        ),
        (
            "features/*/properties/on",
            {
                "features": {
                    "lamp": {"properties": {"on": True}},
                    "infrared-lamp": {"properties": {"on": False}},
                }
            },
        ),
        (
            "thingId,_revision,_modified",
            {"thingId": "ns:x", "_revision": 5, "_modified": "2024-05-01T10:00:00.123456Z"},
        ),
        (
            "features(lamp/properties(on,color))",
            {"features": {"lamp": {"properties": {"on": True, "color": "blue"}}}},
        ),
    ],
)
def test_apply_fields_examples_from_ditto_docs(text: str, expected: dict[str, Json]) -> None:
    assert apply_fields(THING, parse_fields(text)) == expected


def test_absent_paths_are_simply_absent() -> None:
    assert apply_fields(THING, parse_fields("attributes/nope,features/nope/properties,_policy")) == {}
    assert apply_fields(THING, parse_fields("thingId,attributes/nope")) == {"thingId": "ns:x"}
    assert apply_fields(THING, parse_fields("thingId/deeper,attributes/manufacturer/deeper")) == {}


def test_overlapping_fields_unite() -> None:
    whole = {"attributes": THING["attributes"]}
    assert apply_fields(THING, parse_fields("attributes/complex/some,attributes")) == whole
    assert apply_fields(THING, parse_fields("attributes,attributes/complex/some")) == whole
    assert apply_fields(THING, parse_fields("features/*/properties/on,features/lamp/properties/color")) == {
        "features": {
            "lamp": {"properties": {"on": True, "color": "blue"}},
            "infrared-lamp": {"properties": {"on": False}},
        }
    }


def test_wildcard_means_every_key_of_an_object_at_any_level() -> None:
    assert apply_fields(THING, parse_fields("attributes/*")) == {"attributes": THING["attributes"]}
    assert apply_fields(THING, parse_fields("features/lamp/properties/*")) == {
        "features": {"lamp": {"properties": {"on": True, "color": "blue"}}}
    }
    assert apply_fields(THING, parse_fields("thingId/*,*/manufacturer")) == {
        "attributes": {"manufacturer": "ACME corp"}
    }


def test_selected_null_and_empty_objects_are_kept() -> None:
    doc: dict[str, Json] = {"a": None, "b": {}, "c": {"d": {}}}
    assert apply_fields(doc, parse_fields("a,b,c/d")) == doc


def test_apply_fields_does_not_mutate_and_root_selects_all() -> None:
    before = copy.deepcopy(THING)
    apply_fields(THING, parse_fields("features/*/properties/on,attributes"))
    assert before == THING
    assert apply_fields(THING, FieldSelector(text="", pointers=((),))) == THING


def test_apply_fields_on_a_document_deeper_than_allowed_fails_cleanly() -> None:
    doc: Json = 1
    for _ in range(5_000):
        doc = {"a": doc}
    assert isinstance(doc, dict)
    with pytest.raises(InvalidInput) as info:
        apply_fields(doc, FieldSelector(text="a/...", pointers=(("a",) * 5_000,)))
    assert info.value.error_code == "json.invalid"


def _is_subtree(part: Json, whole: Json) -> bool:
    if json_equal(part, whole):
        return True
    if not (isinstance(part, dict) and isinstance(whole, dict)):
        return False
    return all(key in whole and _is_subtree(value, whole[key]) for key, value in part.items())


@given(doc=json_objects())
@settings(max_examples=100)
def test_selecting_every_top_level_key_returns_the_document(doc: dict[str, Json]) -> None:
    selector = FieldSelector(text=",".join(doc), pointers=tuple((key,) for key in doc))
    assert apply_fields(doc, selector) == doc


@given(doc=json_objects(), selected=st.lists(pointers(), min_size=1, max_size=4))
@settings(max_examples=150)
def test_result_is_a_sub_tree_holding_exactly_the_selected_values(
    doc: dict[str, Json], selected: list[Pointer]
) -> None:
    result = apply_fields(doc, FieldSelector(text="generated", pointers=tuple(selected)))
    assert _is_subtree(result, doc)
    for pointer in selected:
        if "*" not in pointer:
            assert json_equal(get_at(result, pointer), get_at(doc, pointer))
            if get_at(doc, pointer) is MISSING:
                assert get_at(result, pointer) is MISSING


@given(doc=json_objects(), selected=st.lists(pointers(), min_size=1, max_size=4))
@settings(max_examples=100)
def test_formatted_selectors_parse_back(doc: dict[str, Json], selected: list[Pointer]) -> None:
    text = ",".join("/".join(pointer) for pointer in selected)
    parsed = parse_fields(text)
    assert parsed.pointers == tuple(dict.fromkeys(selected))
    assert apply_fields(doc, parsed) == apply_fields(doc, FieldSelector(text=text, pointers=tuple(selected)))


@pytest.mark.parametrize(
    "text",
    [
        "thingId,policyId,definition,_namespace,_revision,_created,_modified,_policy",
        "_metadata,_metadata/features/lamp,_context/topic",
        "features,features/*/properties/on,attributes(a,b/c)",
    ],
)
def test_valid_thing_field_roots(text: str) -> None:
    validate_thing_field_roots(parse_fields(text))


@pytest.mark.parametrize(
    "text", ["foo", "thingId,foo/bar", "thingId/x", "_policy/entries", "__lifecycle", "*"]
)
def test_invalid_thing_field_roots(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_thing_field_roots(parse_fields(text))
    assert info.value.error_code == "things:field.selection.invalid"
    assert info.value.message == f"Thing field selection <{text}> was not valid."
