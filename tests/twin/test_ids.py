"""Thing, policy and feature IDs against Ditto's rules (ditto.md 1.1, 1.2, 1.5)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput
from edgetwin.twin import (
    generate_thing_id,
    is_valid_namespace,
    name_of,
    namespace_of,
    parse_feature_id,
    parse_policy_id,
    parse_thing_id,
)

VALID_IDS = [
    "org.eclipse.ditto:fancy-thing",
    ":empty-namespace",  # the namespace may be empty
    "ns:name:with:colons",  # only the first colon separates
    "a-b.c_d9:x",
    "ns:foo bar",  # spaces are allowed in the name (URL-encoded as foo%20bar)
    "ns:%3A",
    "ns:$dollar",
    "ns:日本",  # above U+00FF is allowed
    "ns:" + "x" * 253,  # exactly 256
]

INVALID_IDS = [
    "invalid id",  # ditto.md 1.1's example: no colon
    "nocolon",
    "ns:",  # empty name
    "",
    "ns:a/b",  # slash in the name
    "1ns:x",  # namespace segment must start with a letter
    "ns.:x",
    ".ns:x",
    "ns..a:x",
    "ns-:x",
    "n s:x",
    "ns_ä:x",  # Java's \w is ASCII
    "nß:x",
    "ns:\x00",
    "ns:a\x1fb",
    "ns:\x7f",
    "ns:é",  # U+00E9 falls in Ditto's \x7F-\xFF class
    "ns:" + "x" * 254,  # 257
    "ns:" + "😀" * 127,  # 130 code points but 257 UTF-16 units, as Java counts
]


@pytest.mark.parametrize("thing_id", VALID_IDS)
def test_valid_thing_ids_are_returned_unchanged(thing_id: str) -> None:
    assert parse_thing_id(thing_id) == thing_id
    assert parse_policy_id(thing_id) == thing_id


@pytest.mark.parametrize("thing_id", INVALID_IDS)
def test_invalid_thing_ids_raise_things_id_invalid(thing_id: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_thing_id(thing_id)
    assert info.value.error_code == "things:id.invalid"
    assert info.value.status == 400


def test_thing_id_error_matches_dittos_json() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_thing_id("invalid id")
    assert info.value.to_json() == {
        "status": 400,
        "error": "things:id.invalid",
        "message": "Thing ID 'invalid id' is not valid!",
        "description": "It must conform to the namespaced entity ID notation (see Ditto documentation)",
    }


@pytest.mark.parametrize("policy_id", INVALID_IDS)
def test_invalid_policy_ids_raise_policies_id_invalid(policy_id: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_policy_id(policy_id)
    assert info.value.error_code == "policies:id.invalid"
    assert info.value.message == f"Policy ID '{policy_id}' is not valid!"


def test_namespace_is_before_the_first_colon() -> None:
    assert namespace_of("org.eclipse.ditto:a:b") == "org.eclipse.ditto"
    assert name_of("org.eclipse.ditto:a:b") == "a:b"
    assert namespace_of(":x") == ""
    assert name_of(":x") == "x"


def test_namespace_of_an_unvalidated_string_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a namespaced entity ID"):
        namespace_of("nocolon")
    with pytest.raises(ValueError, match="not a namespaced entity ID"):
        name_of("nocolon")


@pytest.mark.parametrize(("namespace", "valid"), [("", True), ("org.eclipse.ditto", True), ("a.1", False)])
def test_is_valid_namespace(namespace: str, valid: bool) -> None:
    assert is_valid_namespace(namespace) is valid


def test_generated_thing_id_is_namespace_and_uuid4() -> None:
    thing_id = generate_thing_id("org.eclipse.ditto")
    assert re.fullmatch(
        r"org\.eclipse\.ditto:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", thing_id
    )
    assert generate_thing_id("org.eclipse.ditto") != thing_id
    assert namespace_of(generate_thing_id("")) == ""


def test_generated_thing_id_refuses_a_bad_namespace() -> None:
    with pytest.raises(InvalidInput) as info:
        generate_thing_id("bad namespace")
    assert info.value.error_code == "things:id.invalid"


@given(
    namespace=st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,5}(\.[a-zA-Z][a-zA-Z0-9_]{0,5}){0,3}", fullmatch=True),
    name=st.text(
        alphabet=st.characters(exclude_characters="/", exclude_categories=["Cs"], min_codepoint=0x100),
        min_size=1,
        max_size=20,
    )
    | st.from_regex(r"[a-zA-Z0-9:_\-. ]{1,20}", fullmatch=True),
)
@settings(max_examples=60)
def test_generated_shapes_of_valid_ids_parse(namespace: str, name: str) -> None:
    thing_id = f"{namespace}:{name}"
    assert parse_thing_id(thing_id) == thing_id
    assert namespace_of(thing_id) == namespace
    assert name_of(thing_id) == name


@pytest.mark.parametrize("feature_id", ["lamp", "infrared-lamp", "with space", "日本", "a:b"])
def test_valid_feature_ids(feature_id: str) -> None:
    assert parse_feature_id(feature_id) == feature_id


@pytest.mark.parametrize("feature_id", ["", "a/b", "/", "bad\x00", "ü", "x" * 257])
def test_invalid_feature_ids_raise_json_key_invalid(feature_id: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_feature_id(feature_id)
    assert info.value.error_code == "json.key.invalid"
    assert info.value.message == f"The JSON key <{feature_id}> is invalid!"


def test_star_feature_id_is_reserved_for_writes_only() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_feature_id("*")
    assert info.value.error_code == "json.key.invalid"
    assert info.value.description is not None
    assert "wildcard" in info.value.description
    assert parse_feature_id("*", for_write=False) == "*"
