"""The search ``option`` parameter against Ditto's RqlOptionParser and search rules (ditto.md §4.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput
from edgetwin.rql import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Limit,
    SearchOptions,
    SortKey,
    format_options,
    parse_options,
)
from tests.rql.strategies import search_options


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sort(+thingId,-attributes/manufacturer)",
            SearchOptions(sort=(SortKey("thingId"), SortKey("attributes/manufacturer", descending=True))),
        ),
        ("size(10)", SearchOptions(size=10)),
        ("size(010)", SearchOptions(size=10)),  # Ditto reads size as plain digits
        ("size(0)", SearchOptions(size=0)),
        ("size(200)", SearchOptions(size=200)),
        ("cursor(LS0tLS1CRUdJTiBDVVJTT1ItLS0tLQ)", SearchOptions(cursor="LS0tLS1CRUdJTiBDVVJTT1ItLS0tLQ")),
        ("limit(0,25)", SearchOptions(limit=Limit(0, 25))),
        ("limit(+5 ,200\t)", SearchOptions(limit=Limit(5, 200))),  # Long literals take trailing spaces
        (
            "size(10),sort(+thingId),cursor(abc)",
            SearchOptions(sort=(SortKey("thingId"),), size=10, cursor="abc"),
        ),
        ("sort(-/_revision)", SearchOptions(sort=(SortKey("_revision", descending=True),))),
        ("sort(+features/lamp/properties/on)", SearchOptions(sort=(SortKey("features/lamp/properties/on"),))),
        ("  sort(+_modified)", SearchOptions(sort=(SortKey("_modified"),))),
    ],
)
def test_ditto_options(text: str, expected: SearchOptions) -> None:
    options = parse_options(text)
    assert options == expected
    assert parse_options(format_options(options)) == options


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("", "expected sort, size, cursor or limit"),
        ("size(201)", "less than or equal to 200"),
        ("size(99999999999999999999)", "less than or equal to 200"),
        ("size(-1)", "expected the page size digits"),
        ("size(+5)", "expected the page size digits"),
        ("size()", "expected the page size digits"),
        ("size(10 )", "expected ')'"),
        ("limit(0,201)", "between 0 and 200"),
        ("limit(-1,5)", "offset must be between 0"),
        ("limit(2147483648,5)", "offset must be between 0"),
        ("limit(0.5,5)", "expected an integer"),
        ("limit(0)", "expected ','"),
        ("limit(-0,5)", "'-0' is not a valid integer"),
        ("cursor(a),limit(0,5)", "The options 'cursor' and 'limit' must not be used together."),
        ("limit(0,5),size(5)", "The options 'size' and 'limit' must not be used together."),
        ("cursor()", "cursor must not be empty"),
        ("sort(thingId)", "expected '+' or '-'"),
        ("sort( thingId)", "expected '+' or '-'"),  # an unencoded '+' arrives as a space
        ("sort(+thingId, -_revision)", "expected '+' or '-'"),
        ("sort(+foo)", "unknown property 'foo'"),
        ("sort(+attributes//x)", "empty segment"),
        ("sort()", "expected '+' or '-'"),
        ("size(10), sort(+thingId)", "expected sort, size, cursor or limit"),
        ("size(10),size(5)", "option 'size' given more than once"),
        ("size(10),", "expected sort, size, cursor or limit"),
        ("size(10) ", "expected ','"),
        ("SIZE(10)", "expected sort, size, cursor or limit"),
        ("page(1)", "expected sort, size, cursor or limit"),
    ],
)
def test_invalid_options(text: str, detail: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(text)
    error = caught.value
    assert detail in error.message
    assert error.error_code == "thing-search:search.option.invalid"
    assert error.status == 400


@pytest.mark.parametrize(
    ("text", "position"),
    [("size(201)", 5), ("sort(+thingId),limit(0,500)", 23), ("sort(+foo)", 6), ("size(1),x", 8)],
)
def test_syntax_errors_name_the_position(text: str, position: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_options(text)
    assert caught.value.message.startswith(f"Invalid option at position {position}: ")


def test_page_size() -> None:
    assert SearchOptions().page_size == DEFAULT_PAGE_SIZE == 25
    assert parse_options("size(7)").page_size == 7
    assert parse_options("limit(10,30)").page_size == 30
    assert MAX_PAGE_SIZE == 200


def test_effective_sort_is_total() -> None:
    assert SearchOptions().effective_sort == (SortKey("thingId"),)
    assert parse_options("sort(-_revision)").effective_sort == (
        SortKey("_revision", descending=True),
        SortKey("thingId"),
    )
    assert parse_options("sort(-thingId,+_revision)").effective_sort == (SortKey("thingId", descending=True),)


def test_format_options() -> None:
    assert format_options(SearchOptions()) == ""
    options = SearchOptions(
        sort=(SortKey("attributes/a,b"), SortKey("_revision", True)), size=5, cursor="x)y"
    )
    assert format_options(options) == "sort(+attributes/a\\u002cb,-_revision),size(5),cursor(x\\u0029y)"


@settings(max_examples=200, deadline=None)
@given(search_options())
def test_format_parse_round_trip(options: SearchOptions) -> None:
    text = format_options(options)
    if text:
        assert parse_options(text) == options


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(st.sampled_from(list('sortizecuml(),+-_/01289 \\"')), max_size=30).map("".join))
def test_any_string_parses_or_raises_invalid_input(text: str) -> None:
    codes: list[str] = []
    try:
        parse_options(text)
    except InvalidInput as error:
        codes.append(error.error_code)
    assert codes in ([], ["thing-search:search.option.invalid"])
