"""The RQL parser against Ditto's grammar (ditto.md §4.4): examples, whitespace and literal rules, field
normalisation, error positions, the nesting cap, and two properties: printing round-trips and no input
string raises anything but RqlSyntaxError.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.errors import InvalidInput, RqlSyntaxError
from edgetwin.rql import (
    EVENT_PLACEHOLDER_FIELDS,
    MAX_DEPTH,
    And,
    Empty,
    Eq,
    Exists,
    Ge,
    Gt,
    ILike,
    In,
    Le,
    Like,
    Lt,
    Ne,
    Node,
    Not,
    Or,
    TimeNow,
    TimeNowEpochMillis,
    format_rql,
    parse_filter,
    referenced_fields,
)
from tests.rql.strategies import any_nodes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ditto.md and basic-rql.md examples
        (
            'and(eq(attributes/manufacturer,"ACME"),gt(_revision,3))',
            And((Eq("attributes/manufacturer", "ACME"), Gt("_revision", 3))),
        ),
        ('like(attributes/model,"Speaking*")', Like("attributes/model", "Speaking*")),
        ('ilike(attributes/model,"speaking*")', ILike("attributes/model", "speaking*")),
        (
            'in(attributes/location,"kitchen","living-room")',
            In("attributes/location", ("kitchen", "living-room")),
        ),
        ("exists(features/lamp)", Exists("features/lamp")),
        ("empty(attributes/tags)", Empty("attributes/tags")),
        (
            'gt(attributes/temperature/lastModified,"2021-08-22T19:45:00Z")',
            Gt("attributes/temperature/lastModified", "2021-08-22T19:45:00Z"),
        ),
        ("eq(features/*/properties/on,true)", Eq("features/*/properties/on", True)),
        ("not(exists(attributes/a))", Not(Exists("attributes/a"))),
        (
            'or(eq(thingId,"ns:a"),ne(policyId,"ns:p"),lt(_modified,time:now))',
            Or((Eq("thingId", "ns:a"), Ne("policyId", "ns:p"), Lt("_modified", TimeNow()))),
        ),
        ("ge(_revision,1)", Ge("_revision", 1)),
        ("le(attributes/x,2.5)", Le("attributes/x", 2.5)),
        ("eq(attributes/x,null)", Eq("attributes/x", None)),
        ("eq(attributes/x,false)", Eq("attributes/x", False)),
        ("gt(attributes/ts,time:now_epoch_millis)", Gt("attributes/ts", TimeNowEpochMillis())),
        ("and(exists(thingId))", And((Exists("thingId"),))),
        (
            "eq(_metadata/features/lamp/properties/on/issuedAt,1)",
            Eq("_metadata/features/lamp/properties/on/issuedAt", 1),
        ),
        ('eq(features/lamp/definition,"ns:lamp:1.0.0")', Eq("features/lamp/definition", "ns:lamp:1.0.0")),
        ("exists(features/lamp/properties)", Exists("features/lamp/properties")),
        ("empty(features/lamp/desiredProperties)", Empty("features/lamp/desiredProperties")),
        ('eq(definition,"ns:model:1")', Eq("definition", "ns:model:1")),
        ('eq(_namespace,"ns")', Eq("_namespace", "ns")),
        ("lt(_created,time:now)", Lt("_created", TimeNow())),
    ],
)
def test_ditto_examples_parse(text: str, expected: Node) -> None:
    assert parse_filter(text) == expected
    assert parse_filter(format_rql(expected)) == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("exists(/attributes/a)", "attributes/a"),
        ("exists(/thingId)", "thingId"),
        # only one leading slash is Ditto's optional JSON-pointer slash
        ("exists(attributes/a b)", "attributes/a b"),
        ("exists(attributes/a'b)", "attributes/a'b"),
        ("exists(attributes/f(x)", "attributes/f(x"),
        ("exists(attributes/a\\u002cb)", "attributes/a,b"),
        ('exists(attributes/a\\"b\\\\c)', 'attributes/a"b\\c'),
        ("exists(attributes\\/a)", "attributes/a"),
    ],
)
def test_field_normalisation(text: str, field: str) -> None:
    node = parse_filter(text)
    assert node == Exists(field)
    assert parse_filter(format_rql(node)) == node


@pytest.mark.parametrize(
    "text",
    [
        " \t\n\r\feq(thingId,1)",  # leading whitespace of the whole expression
        "eq(thingId,1 )",  # after a literal
        'eq(thingId,"a" )',
        "in(thingId,1 ,2\t)",
        "and(eq(thingId,1),  \neq(thingId,2))",  # after the comma between children
    ],
)
def test_whitespace_where_ditto_allows_it(text: str) -> None:
    parse_filter(text)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("eq(thingId, 1)", 11),  # never before a literal (ditto.md §4.4)
        ("eq(thingId,1) ", 13),  # nor after the final ')'
        ("eq (thingId,1)", 2),
        ("and(eq(thingId,1) ,eq(thingId,2))", 17),
        ("and( eq(thingId,1))", 4),
        ("eq( thingId,1)", 3),  # a space belongs to the property, which is then unknown
    ],
)
def test_whitespace_where_ditto_does_not(text: str, position: int) -> None:
    with pytest.raises(RqlSyntaxError) as caught:
        parse_filter(text)
    assert caught.value.position == position


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0", 0),
        ("+0", 0),
        ("1", 1),
        ("+7", 7),
        ("-42", -42),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("1.5", 1.5),
        ("-0.5", -0.5),
        ("0.0", 0.0),
        ("-0.0", -0.0),
        ("+10.25", 10.25),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"a"', "a"),
        ("'a'", "a"),
        ('""', ""),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        ("'it\\'s'", "it's"),
        ('"\\"\\\\\\/\\b\\f\\n\\r\\t"', '"\\/\b\f\n\r\t'),
        ('"\\u00e4\\u00C4"', "äÄ"),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a UTF-16 surrogate pair is one character
        ('"a,b)c(d"', "a,b)c(d"),
        ("time:now", TimeNow()),
        ("time:now_epoch_millis", TimeNowEpochMillis()),
    ],
)
def test_literals(literal: str, value: object) -> None:
    node = parse_filter(f"eq(attributes/x,{literal})")
    assert isinstance(node, Eq)
    assert node.value == value
    assert type(node.value) is type(value)


def test_integers_and_decimals_keep_their_type() -> None:
    assert parse_filter("eq(attributes/x,1)") == Eq("attributes/x", 1)
    node = parse_filter("eq(attributes/x,1.0)")
    assert isinstance(node, Eq)
    assert isinstance(node.value, float)


@pytest.mark.parametrize(
    ("literal", "offset"),
    [
        ("-0", 0),  # Ditto's LongLiteral refuses "-0"
        ("01", 1),  # no leading zeros: "0" parses, then '1' is unexpected
        ("1.", 2),
        (".5", 0),
        ("1e5", 1),  # no exponent in RQL
        ("1E5", 1),
        ("9223372036854775808", 0),
        ("-9223372036854775809", 0),
        ("1" * 400, 0),
        ("2021-08-10T15:10:02.592Z", 4),  # unquoted timestamp [DOC≠CODE]
        ("ACME", 0),
        ('"abc', 5),  # the closing ')' is swallowed by the string, which then never ends
        ("'abc\"", 6),
        ('"a\\x"', 2),
        ('"a\\\'"', 2),  # \' is no escape inside double quotes
        ("'a\\\"'", 2),  # nor \" inside single quotes
        ('"\\u12"', 1),
        ("time:later", 0),
        ("time:now ", 0),  # the placeholder name runs to ',' or ')', spaces included
        ("truex", 4),
        ("TRUE", 0),
        ("nul", 0),
    ],
)
def test_bad_literals(literal: str, offset: int) -> None:
    prefix = "eq(attributes/x,"
    with pytest.raises(RqlSyntaxError) as caught:
        parse_filter(f"{prefix}{literal})")
    assert caught.value.position == len(prefix) + offset


@pytest.mark.parametrize(
    ("text", "position", "detail"),
    [
        ("", 0, "expected an operator"),
        ("   ", 3, "expected an operator"),
        ("sort(+thingId)", 0, "unknown operator 'sort'"),
        ("EQ(thingId,1)", 0, "unknown operator 'EQ'"),
        ("eqx(thingId,1)", 0, "unknown operator 'eqx'"),
        ("eq", 2, "expected '(' but reached the end"),
        ("eq(thingId", 10, "expected ','"),
        ("eq(thingId,1", 12, "expected ')' but reached the end"),
        ('and(eq(attributes/manufacturer,"ACME"),gt(_revision,3)', 54, "expected ',' or ')'"),
        ("and()", 4, "expected an operator"),
        ("not(eq(thingId,1),eq(thingId,2))", 17, "expected ')'"),
        ("in(thingId)", 10, "expected ','"),
        ("in(thingId,)", 11, "expected a literal"),
        ("exists(thingId,1)", 14, "expected ')'"),
        ("eq(attributes//x,1)", 3, "empty segment"),
        ("eq(attributes/x/,1)", 3, "empty segment"),
        ("eq(//attributes/x,1)", 3, "empty segment"),
        ("eq(,1)", 3, "empty segment"),
        ("exists(/)", 7, "empty segment"),
        ("eq(foo,1)", 3, "unknown property 'foo'"),
        ("eq(attributes,1)", 3, "unknown property 'attributes'"),
        ("exists(features)", 7, "unknown property 'features'"),
        ("eq(features/lamp/foo,1)", 3, "unknown property"),
        ("eq(features/lamp,1)", 3, "only be used with exists() or empty()"),
        ("eq(features/lamp/properties,1)", 3, "only be used with exists() or empty()"),
        ('eq(topic:action,"created")', 3, "unknown property 'topic:action'"),
        ("like(attributes/a,1)", 18, "like() needs a quoted string pattern"),
        ("ilike(attributes/a,null)", 19, "ilike() needs a quoted string pattern"),
        ("like(attributes/a,time:now)", 18, "like() needs a quoted string pattern"),
        ("eq(attributes/a\\q,1)", 15, "invalid escape sequence"),
        ("eq(attributes/a\\", 15, "unfinished escape sequence"),
    ],
)
def test_error_positions(text: str, position: int, detail: str) -> None:
    with pytest.raises(RqlSyntaxError) as caught:
        parse_filter(text)
    error = caught.value
    assert error.position == position
    assert error.message.startswith(f"Invalid RQL at position {position}: ")
    assert detail in error.message
    assert error.error_code == "rql.expression.invalid"
    assert error.status == 400
    assert isinstance(error, InvalidInput)


def test_placeholder_fields_are_opt_in() -> None:
    node = parse_filter(
        'and(in(topic:action,"created","deleted"),eq(resource:path,"/"))',
        placeholder_fields=EVENT_PLACEHOLDER_FIELDS,
    )
    assert node == And((In("topic:action", ("created", "deleted")), Eq("resource:path", "/")))
    assert parse_filter("exists(entity:id)", placeholder_fields={"entity:id"}) == Exists("entity:id")


def _nested(depth: int) -> str:
    return "not(" * (depth - 1) + "exists(thingId)" + ")" * (depth - 1)


def test_nesting_up_to_the_cap_parses() -> None:
    node = parse_filter(_nested(MAX_DEPTH + 1))  # MAX_DEPTH logical levels around one leaf
    depth = 0
    while isinstance(node, Not):
        node, depth = node.child, depth + 1
    assert depth == MAX_DEPTH


@pytest.mark.parametrize("opening", ["not(", "and(", "or("])
def test_nesting_beyond_the_cap_is_a_syntax_error(opening: str) -> None:
    text = opening * (MAX_DEPTH + 1) + "exists(thingId)" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(RqlSyntaxError) as caught:
        parse_filter(text)
    assert caught.value.position == len(opening) * MAX_DEPTH
    assert "nested deeper than 100" in caught.value.message


def test_deep_garbage_does_not_overflow_the_stack() -> None:
    with pytest.raises(RqlSyntaxError):
        parse_filter("and(" * 100_000)


def test_ast_refuses_empty_children() -> None:
    with pytest.raises(ValueError, match="at least one"):
        And(())
    with pytest.raises(ValueError, match="at least one"):
        Or(())
    with pytest.raises(ValueError, match="at least one"):
        In("thingId", ())


def test_nodes_are_values() -> None:
    assert parse_filter("eq(thingId,1)") != parse_filter("ne(thingId,1)")
    assert hash(parse_filter("eq(thingId,1)")) == hash(Eq("thingId", 1))
    assert {parse_filter("exists(/thingId)"), Exists("thingId")} == {Exists("thingId")}


def test_referenced_fields() -> None:
    node = parse_filter(
        "and(eq(attributes/a,1),or(not(exists(features/lamp)),in(features/*/properties/on,true)),"
        'like(thingId,"ns:*"),empty(attributes/a),gt(_revision,time:now))'
    )
    assert referenced_fields(node) == {
        "attributes/a",
        "features/lamp",
        "features/*/properties/on",
        "thingId",
        "_revision",
    }


def test_format_is_compact_and_canonical() -> None:
    node = parse_filter("  and(eq(/attributes/a,'x' ),  in(thingId,1 ,2.50))")
    assert format_rql(node) == 'and(eq(attributes/a,"x"),in(thingId,1,2.5))'
    assert format_rql(Eq("attributes/x", 1e20)) == "eq(attributes/x,100000000000000000000.0)"
    assert format_rql(Eq("attributes/x", 1e-7)) == "eq(attributes/x,0.0000001)"
    assert format_rql(Eq("attributes/x", "a\nb\x01")) == 'eq(attributes/x,"a\\nb\\u0001")'
    assert format_rql(Exists("attributes/a,b)c")) == "exists(attributes/a\\u002cb\\u0029c)"


@settings(max_examples=300, deadline=None)
@given(any_nodes())
def test_print_parse_round_trip(node: Node) -> None:
    text = format_rql(node)
    assert parse_filter(text) == node
    assert format_rql(parse_filter(text)) == text


_RQL_ALPHABET = st.sampled_from([*"eqnotadilkmpyrsuxf(),\"'\\/ \t019.-+:*_", "time:now", "attributes/"])


@settings(max_examples=300, deadline=None)
@given(st.text() | st.lists(_RQL_ALPHABET, max_size=40).map("".join))
def test_any_string_parses_or_raises_rql_syntax_error(text: str) -> None:
    error: RqlSyntaxError | None = None
    try:
        node = parse_filter(text)
    except RqlSyntaxError as raised:
        error = raised
    if error is None:
        assert parse_filter(format_rql(node)) == node
    else:
        assert 0 <= error.position <= len(text)
        assert error.message.startswith(f"Invalid RQL at position {error.position}: ")


@settings(max_examples=200, deadline=None)
@given(any_nodes(), st.data())
def test_damaged_filters_fail_cleanly(node: Node, data: st.DataObject) -> None:
    text = format_rql(node)
    cut = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    damaged = text[:cut] + data.draw(st.sampled_from(["", " ", ",", ")", "(", '"', "\\"])) + text[cut + 1 :]
    positions: list[int] = []
    try:
        parse_filter(damaged)
    except RqlSyntaxError as error:
        positions.append(error.position)
    assert all(0 <= position <= len(damaged) for position in positions)
