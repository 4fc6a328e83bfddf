"""ETags, If-Match / If-None-Match as Ditto's ConditionalHeadersValidator, and the if-equal header."""

from __future__ import annotations

import copy
import hashlib

import pytest
from hypothesis import given, settings

from edgetwin.errors import InvalidInput, NotModified, PreconditionFailed
from edgetwin.twin import (
    MISSING,
    Json,
    check_if_equal,
    check_preconditions,
    json_equal,
    merge_patch,
    parse_etag_list,
    thing_etag,
    value_etag,
)
from tests.twin.strategies import json_values

REV1 = '"rev:1"'


def test_thing_etag() -> None:
    assert thing_etag(1) == '"rev:1"'
    assert thing_etag(23) == '"rev:23"'


def test_value_etag_is_pinned_across_processes_and_releases() -> None:
    # SHA-256 of the canonical JSON text {"a":1,"b":[true,null,"x"]}; a change here breaks clients' caches.
    canonical = b'{"a":1,"b":[true,null,"x"]}'
    assert hashlib.sha256(canonical).hexdigest().startswith("eca8cfb31ab74533")
    assert value_etag({"b": [True, None, "x"], "a": 1}) == '"hash:eca8cfb31ab74533"'


def test_value_etag_distinguishes_json_values() -> None:
    values: list[Json] = [
        {"a": 1},
        {"a": True},
        {"a": "1"},
        {"a": 1.5},
        {"a": [1]},
        {"a": None},
        {},
        None,
        "ü",
    ]
    assert len({value_etag(value) for value in values}) == len(values)


@given(value=json_values())
@settings(max_examples=80)
def test_value_etag_ignores_member_order(value: Json) -> None:
    def reversed_members(node: Json) -> Json:
        if isinstance(node, dict):
            return {key: reversed_members(node[key]) for key in reversed(list(node))}
        if isinstance(node, list):
            return [reversed_members(item) for item in node]
        return node

    tag = value_etag(value)
    assert tag == value_etag(reversed_members(value))
    assert tag.startswith('"hash:')
    assert len(tag) == len('"hash:"') + 16


def test_value_etag_of_a_too_deep_value_fails_cleanly() -> None:
    value: Json = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidInput):
        value_etag(value)


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ('"rev:1"', ['"rev:1"']),
        ('"rev:1", "rev:2"', ['"rev:1"', '"rev:2"']),
        ('"rev:1" ,W/"rev:2"', ['"rev:1"', 'W/"rev:2"']),
        ("*", "*"),
        ('"rev:1", *', "*"),
        ('""', ['""']),
        ('"rev:1",', ['"rev:1"']),  # Java's split drops a trailing empty element
        ('  "rev:1"  ', ['"rev:1"']),
    ],
)
def test_parse_etag_list(header: str, parsed: list[str] | str) -> None:
    assert parse_etag_list(header) == parsed


@pytest.mark.parametrize(
    "header", ["", "rev:1", '"rev:1', 'rev:1"', '"a"b', '"a*"', ',"a"', '"a",,"b"', "**", 'w/"a"']
)
def test_malformed_etag_lists_are_header_invalid(header: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_etag_list(header, header_name="if-none-match")
    assert info.value.error_code == "header.invalid"
    assert (
        info.value.message == f"The value '{header}' of the header 'if-none-match' is not a valid entity-tag."
    )


def _check(
    method: str, current: str | None, *, if_match: str | None = None, if_none_match: str | None = None
) -> None:
    check_preconditions(method=method, current_etag=current, if_match=if_match, if_none_match=if_none_match)


def test_no_headers_always_pass() -> None:
    for method in ("GET", "PUT", "PATCH", "DELETE", "POST"):
        _check(method, REV1)
        _check(method, None)


def test_412_body_is_byte_identical_to_dittos() -> None:
    with pytest.raises(PreconditionFailed) as info:
        _check("PUT", REV1, if_match='"rev:23"')
    assert info.value.to_json() == {
        "status": 412,
        "error": "things:precondition.failed",
        "message": "The comparison of precondition header 'if-match' for the requested Thing resource "
        "evaluated to false. Header value: '\"rev:23\"', actual entity-tag: '\"rev:1\"'.",
        "description": "The comparison of the provided precondition header with the current ETag value of "
        "the requested Thing resource evaluated to false. Check the value of your conditional header value.",
    }


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_put_if_none_match_star_creates_only(method: str) -> None:
    _check(method, None, if_none_match="*")  # absent: 201
    with pytest.raises(PreconditionFailed) as info:
        _check(method, REV1, if_none_match="*")  # exists: 412
    assert info.value.message.startswith("The comparison of precondition header 'if-none-match'")
    assert "Header value: '*', actual entity-tag: '\"rev:1\"'." in info.value.message


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_put_if_match_star_modifies_only(method: str) -> None:
    _check(method, REV1, if_match="*")  # exists: 204
    with pytest.raises(PreconditionFailed) as info:
        _check(method, None, if_match="*")  # absent: 412
    assert info.value.message.endswith("Header value: '*', actual entity-tag: 'null'.")


def test_optimistic_locking() -> None:
    _check("PUT", '"rev:2"', if_match='"rev:2"')
    _check("PUT", '"rev:2"', if_match='"rev:1", "rev:2"')
    with pytest.raises(PreconditionFailed) as info:
        _check("PUT", '"rev:3"', if_match='"rev:1",  "rev:2"')
    assert 'Header value: \'"rev:1","rev:2"\'' in info.value.message  # Ditto re-joins with ","


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "get"])
def test_reads_and_deletes_of_absent_resources_skip_preconditions(method: str) -> None:
    _check(method, None, if_match='"rev:1"', if_none_match="*")


def test_malformed_headers_fail_even_when_the_check_is_skipped() -> None:
    with pytest.raises(InvalidInput) as info:
        _check("GET", None, if_match="rev:1")
    assert info.value.error_code == "header.invalid"
    with pytest.raises(InvalidInput):
        _check("PUT", REV1, if_none_match="nope")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_on_a_read_is_304(method: str) -> None:
    with pytest.raises(NotModified) as info:
        _check(method, REV1, if_none_match='"rev:0", "rev:1"')
    assert info.value.status == 304
    assert info.value.error_code == "things:precondition.notmodified"
    assert info.value.message == (
        "The comparison of precondition header 'if-none-match' for the requested Thing resource evaluated to "
        'false. Expected: \'"rev:0","rev:1"\' not to match actual: \'"rev:1"\'.'
    )
    _check(method, '"rev:2"', if_none_match='"rev:1"')


def test_if_none_match_on_a_delete_is_412() -> None:
    with pytest.raises(PreconditionFailed):
        _check("DELETE", REV1, if_none_match="*")


def test_if_match_is_evaluated_before_if_none_match() -> None:
    with pytest.raises(PreconditionFailed) as info:
        _check("GET", REV1, if_match='"rev:2"', if_none_match=REV1)
    assert "'if-match'" in info.value.message


def test_comparison_is_strong() -> None:
    with pytest.raises(PreconditionFailed):
        _check("PUT", REV1, if_match='W/"rev:1"')
    _check("GET", REV1, if_none_match='W/"rev:1"')  # a weak tag never strongly matches: no 304
    # Ditto falls back to weak comparison only when the current tag itself is weak.
    _check("PUT", 'W/"rev:1"', if_match=REV1)


def test_policy_resources_use_policy_codes_and_wording() -> None:
    kwargs = {"resource_kind": "Policy", "code_prefix": "policies"}
    with pytest.raises(PreconditionFailed) as failed:
        check_preconditions(method="PUT", current_etag=REV1, if_match='"rev:2"', if_none_match=None, **kwargs)
    assert failed.value.error_code == "policies:precondition.failed"
    assert "for the requested Policy resource" in failed.value.message
    with pytest.raises(NotModified) as not_modified:
        check_preconditions(method="GET", current_etag=REV1, if_match=None, if_none_match="*", **kwargs)
    assert not_modified.value.error_code == "policies:precondition.notmodified"


def test_if_equal_update_always_writes() -> None:
    assert check_if_equal(None, 42, 42) == 42
    assert check_if_equal("update", {"a": 1}, {"a": 1}) == {"a": 1}


@pytest.mark.parametrize("mode", ["skip", "skip-minimizing-merge"])
def test_if_equal_skip_refuses_a_no_op_put(mode: str) -> None:
    with pytest.raises(PreconditionFailed) as info:
        check_if_equal(mode, {"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1.0})
    assert info.value.to_json() == {
        "status": 412,
        "error": "things:precondition.failed",
        "message": "The previous value was equal to the new value and the 'if-equal' header was set to "
        "'skip'.",
        "description": "Your changes were not applied, which is probably the expected outcome.",
    }
    assert check_if_equal(mode, {"a": 1}, {"a": 2}) == {"a": 2}
    assert check_if_equal(mode, True, 1) == 1  # JSON equality: true is not 1
    assert check_if_equal(mode, MISSING, {"a": 1}) == {"a": 1}  # creating never counts as equal


def test_if_equal_skip_on_a_merge_compares_the_patched_value() -> None:
    current: Json = {"a": 1, "b": {"c": 2}}
    with pytest.raises(PreconditionFailed):
        check_if_equal("skip", current, {"b": {"c": 2}, "gone": None}, merge=True)
    assert check_if_equal("skip", current, {"b": {"c": 3}}, merge=True) == {"b": {"c": 3}}
    with pytest.raises(PreconditionFailed):
        check_if_equal("skip", "same", "same", merge=True)


def test_if_equal_skip_minimizing_merge_keeps_only_changes() -> None:
    current: Json = {"a": 1, "b": {"c": 2, "d": 3}, "x": True}
    patch: Json = {"a": 1, "b": {"c": 2, "d": 4}, "x": None, "y": None, "z": [1]}
    assert check_if_equal("skip-minimizing-merge", current, patch, merge=True) == {
        "x": None,
        "b": {"d": 4},
        "z": [1],
    }
    assert check_if_equal("skip", current, patch, merge=True) == patch  # plain skip leaves the patch alone
    with pytest.raises(PreconditionFailed):
        check_if_equal("skip-minimizing-merge", current, {"a": 1, "y": None}, merge=True)


@given(current=json_values(), patch=json_values())
@settings(max_examples=100)
def test_minimized_merge_has_the_same_effect(current: Json, patch: Json) -> None:
    before = copy.deepcopy(current), copy.deepcopy(patch)
    try:
        minimized = check_if_equal("skip-minimizing-merge", current, patch, merge=True)
    except PreconditionFailed:
        assert json_equal(merge_patch(current, patch), current)
    else:
        assert json_equal(merge_patch(current, minimized), merge_patch(current, patch))
    assert (current, patch) == before


@pytest.mark.parametrize("mode", ["", "SKIP", "never", "skip "])
def test_invalid_if_equal_is_header_invalid(mode: str) -> None:
    with pytest.raises(InvalidInput) as info:
        check_if_equal(mode, 1, 2)
    assert info.value.error_code == "header.invalid"
    assert "'if-equal'" in info.value.message
