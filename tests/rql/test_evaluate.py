"""In-memory evaluation against Ditto's ThingPredicatePredicateVisitor rules (ditto.md §1.9, §4.4).

Example tables pin each rule on one thing document; a hypothesis property checks the evaluator against
``reference_matches``, a deliberately plain re-statement of the same rules over a small value domain.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings

from edgetwin.rql import EVENT_PLACEHOLDER_FIELDS, Node, compile_filter, evaluate, format_rql, parse_filter
from edgetwin.rql.ast import (
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
    Not,
    Or,
    RqlValue,
    TimeNow,
    TimeNowEpochMillis,
)
from edgetwin.rql.evaluate import java_double_to_string
from tests.rql.strategies import NOW, NOW_EPOCH_MILLIS, domain_cases

THING: dict[str, Any] = {
    "thingId": "org.eclipse.ditto:fancy-thing",
    "policyId": "org.eclipse.ditto:fancy-thing",
    "definition": "org.eclipse.ditto:SomeModel:1.0.0",
    "_namespace": "org.eclipse.ditto",
    "_revision": 5,
    "_created": "2024-04-01T08:00:00Z",
    "_modified": "2024-05-01T10:00:00.123456Z",
    "attributes": {
        "manufacturer": "ACME",
        "model": "Speaking Coffee Machine",
        "location": {"latitude": 44.67, "longitude": 8.26},
        "temperature": {"lastModified": "2021-08-22T19:50:00Z", "value": 20.8},
        "count": 20,
        "on": True,
        "nothing": None,
        "emptyString": "",
        "emptyList": [],
        "emptyObject": {},
        "tags": ["kitchen", "coffee", 3],
        "rooms": [{"room": "kitchen"}, {"room": "hall", "floor": 1}],
        "matrix": [[1, 2], [3]],
        "multiline": "a\nb",
        "umlaut": "Ä",
        "bmpMax": "\uffff",
        "bigLong": 9007199254740993,
        "bigDouble": 9007199254740992.0,
        "tenth": 0.1,
        "huge": 1e20,
        "epochMillis": NOW_EPOCH_MILLIS,
    },
    "features": {
        "lamp": {
            "definition": ["org.eclipse.ditto:lamp:1.0.0"],
            "properties": {"on": True, "color": "red"},
            "desiredProperties": {"on": False},
        },
        "sensor": {"properties": {"on": False, "value": 3.5}},
        "bare": {},
    },
}


def matches(text: str, doc: dict[str, Any] = THING, **kwargs: Any) -> bool:
    return evaluate(parse_filter(text), doc, now=kwargs.pop("now", NOW), **kwargs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ditto.md literal examples
        ('and(eq(attributes/manufacturer,"ACME"),gt(_revision,3))', True),
        ('and(eq(attributes/manufacturer,"ACME"),gt(_revision,5))', False),
        ('like(attributes/model,"Speaking*")', True),
        ('like(attributes/model,"speaking*")', False),
        ('ilike(attributes/model,"speaking*")', True),
        ('in(attributes/manufacturer,"Foo","ACME")', True),
        ('in(attributes/manufacturer,"Foo","Bar")', False),
        ("exists(features/lamp)", True),
        ("exists(features/fan)", False),
        ('gt(attributes/temperature/lastModified,"2021-08-22T19:45:00Z")', True),
        ('lt(attributes/temperature/lastModified,"2021-08-22T19:45:00Z")', False),
        # hidden fields are part of the evaluated document
        ('eq(_namespace,"org.eclipse.ditto")', True),
        ('eq(thingId,"org.eclipse.ditto:fancy-thing")', True),
        ('like(policyId,"org.eclipse.ditto:*")', True),
        ('gt(_modified,"2024-05-01T09:59:59Z")', True),
        # ISO timestamps compare as plain strings: ".123456Z" sorts before "Z" ('.' < 'Z')
        ('gt(_modified,"2024-05-01T10:00:00Z")', False),
        ('lt(_created,"2024-04-01T08:00:01Z")', True),
        ('eq(definition,"org.eclipse.ditto:SomeModel:1.0.0")', True),
        ("ge(_revision,5)", True),
        ("le(_revision,4)", False),
    ],
)
def test_ditto_examples(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # numbers compare numerically, int against float exactly (BigDecimal)
        ("eq(attributes/count,20)", True),
        ("eq(attributes/count,20.0)", True),
        ("gt(attributes/temperature/value,20)", True),
        ("lt(attributes/temperature/value,20.81)", True),
        ("eq(attributes/tenth,0.1)", True),
        ("gt(attributes/tenth,0.1)", False),
        ("eq(attributes/bigLong,9007199254740993)", True),
        ("eq(attributes/bigDouble,9007199254740993)", False),
        ("lt(attributes/bigDouble,9007199254740993)", True),
        ("eq(attributes/huge,100000000000000000000.0)", True),
        # a string facing a number is read as a number when it is one (ditto.md: gt(temp,"20") with 20.8)
        ('gt(attributes/temperature/value,"20")', True),
        ('eq(attributes/count,"20")', True),
        ('eq(attributes/count,"20.000")', True),
        ('eq(attributes/count,"2e1")', True),
        ('eq(attributes/count,"+20")', True),
        ('eq(attributes/count," 20")', False),  # BigDecimal refuses spaces: falls back to text
        ('eq(attributes/count,"2E+1")', True),
        ('eq(attributes/count,"20.")', True),
        ('eq(attributes/tenth,".1")', True),
        ('eq(attributes/count,"0x14")', False),
        ('eq(attributes/count,"1_0")', False),
        ('gt(attributes/count,"Infinity")', False),  # not a BigDecimal: "20" < "Infinity" as text
        ('eq(attributes/model,"Speaking Coffee Machine")', True),
        # other type mixes compare Java toString() forms
        ('eq(attributes/on,"true")', True),
        ('eq(attributes/on,"TRUE")', False),
        ("eq(attributes/on,1)", False),
        ('gt(attributes/count,"abc")', False),  # "20" < "abc"
        ('lt(attributes/count,"abc")', True),
        ('lt(attributes/huge,"1.0E+20z")', True),  # BigDecimal("1.0E20").toString() is "1.0E+20"
        ("eq(attributes/manufacturer,true)", False),
        # booleans compare with booleans
        ("eq(attributes/on,true)", True),
        ("gt(attributes/on,false)", True),
        ("ne(attributes/on,false)", True),
        # null matches JSON null only and satisfies no ordering
        ("eq(attributes/nothing,null)", True),
        ('eq(attributes/nothing,"null")', False),
        ("ne(attributes/nothing,null)", False),
        ("eq(attributes/manufacturer,null)", False),
        ("ne(attributes/manufacturer,null)", True),
        ("ge(attributes/nothing,null)", False),
        ("gt(attributes/count,null)", False),
        ("in(attributes/nothing,null,1)", False),
        ("in(attributes/count,null,20)", True),
        # ne in memory is NOT(eq): true for an absent field, unlike search
        ('ne(attributes/absent,"x")', True),
        ('eq(attributes/absent,"x")', False),
        ("ne(attributes/count,20)", False),
        ("ne(attributes/count,21)", True),
        # arrays: any element; objects inside arrays are addressable
        ('eq(attributes/tags,"kitchen")', True),
        ("eq(attributes/tags,3)", True),
        ('ne(attributes/tags,"kitchen")', False),
        ('ne(attributes/tags,"garage")', True),
        ('gt(attributes/tags,"d")', True),
        ('like(attributes/tags,"cof*")', True),
        ('eq(attributes/rooms/room,"hall")', True),
        ("eq(attributes/rooms/floor,1)", True),
        ('eq(attributes/rooms/room,"garage")', False),
        ("in(attributes/tags,1,2,3)", True),
        ("eq(attributes/matrix,1)", False),  # an array inside an array is not searched
        # objects never match a comparison
        ('eq(attributes/temperature,"x")', False),
        ('ne(attributes/temperature,"x")', True),
        ("gt(attributes/location,0)", False),
        ("eq(attributes/emptyObject,null)", False),
        # the * feature wildcard
        ("eq(features/*/properties/on,false)", True),
        ('eq(features/*/properties/color,"red")', True),
        ("ne(features/*/properties/on,false)", False),
        ("gt(features/*/properties/value,3)", True),
        ("eq(features/*/desiredProperties/on,false)", True),
        ('eq(features/*/definition,"org.eclipse.ditto:lamp:1.0.0")', True),
        ("exists(features/*/properties/value)", True),
        ("exists(features/*/properties/missing)", False),
        # like: * any run, ? one character, the rest literal, anchored
        ('like(attributes/model,"*Coffee*")', True),
        ('like(attributes/model,"Coffee*")', False),
        ('like(attributes/model,"*Machine")', True),
        ('like(attributes/model,"Speaking?Coffee?Machine")', True),
        ('like(attributes/model,"Speaking?Machine")', False),
        ('like(attributes/model,"S**g*")', True),
        ('like(attributes/manufacturer,"A.ME")', False),  # regex metacharacters are literal
        ('like(attributes/manufacturer,"AC[M]E")', False),
        ('like(attributes/count,"2*")', False),  # only JSON strings match like
        ('like(attributes/multiline,"a*b")', False),  # Java's '.' stops at line terminators
        ('like(attributes/multiline,"a?b")', False),
        ('ilike(attributes/manufacturer,"acme")', True),
        ('ilike(attributes/umlaut,"ä")', False),  # Java CASE_INSENSITIVE folds ASCII only
        ('like(attributes/umlaut,"Ä")', True),
        # exists: present with any value, null included
        ("exists(attributes/nothing)", True),
        ("exists(attributes/absent)", False),
        ("exists(features/lamp/properties)", True),
        ("exists(features/bare/properties)", False),
        ("exists(features/lamp/definition)", True),
        ("exists(_revision)", True),
        # empty: absent, null, "", [] or {}
        ("empty(attributes/absent)", True),
        ("empty(attributes/nothing)", True),
        ("empty(attributes/emptyString)", True),
        ("empty(attributes/emptyList)", True),
        ("empty(attributes/emptyObject)", True),
        ("empty(attributes/manufacturer)", False),
        ("empty(attributes/count)", False),
        ("empty(attributes/on)", False),
        ("empty(features/bare)", True),
        ("empty(features/lamp)", False),
        ("empty(features/fan)", True),
        ("empty(features/bare/properties)", True),
        # logic
        ('not(eq(attributes/manufacturer,"ACME"))', False),
        ('or(eq(attributes/manufacturer,"X"),exists(features/lamp))', True),
        ("and(exists(features/lamp),not(exists(features/fan)),ne(attributes/count,3))", True),
        # Java orders strings by UTF-16 code units: U+FFFF sorts after U+1F600 there
        ('gt(attributes/bmpMax,"\\ud83d\\ude00")', True),
    ],
)
def test_ditto_comparison_rules(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_time_now_is_the_given_timestamp() -> None:
    assert matches("lt(_modified,time:now)", now="2024-06-01T00:00:00Z")
    assert not matches("lt(_modified,time:now)", now="2024-05-01T00:00:00Z")
    assert matches("eq(attributes/stamp,time:now)", {"attributes": {"stamp": NOW}})
    assert matches("in(attributes/stamp,1,time:now)", {"attributes": {"stamp": NOW}})


def test_time_now_epoch_millis_compares_numerically() -> None:
    assert matches("eq(attributes/epochMillis,time:now_epoch_millis)")
    assert matches("lt(attributes/epochMillis,time:now_epoch_millis)", now="2024-05-01T10:00:00.001Z")
    assert matches(
        "eq(attributes/ms,time:now_epoch_millis)",
        {"attributes": {"ms": 1500}},
        now="1970-01-01T00:00:01.5+00:00",
    )
    assert matches(
        "eq(attributes/ms,time:now_epoch_millis)",
        {"attributes": {"ms": "1500"}},
        now="1970-01-01T00:00:01.5Z",
    )


def test_now_is_only_parsed_when_needed() -> None:
    assert matches("gt(_modified,time:now)", now="not a timestamp") is False  # "2024..." < "not..."
    with pytest.raises(ValueError, match="ISO-8601"):
        matches("lt(_revision,time:now_epoch_millis)", now="not a timestamp")


def test_placeholders_resolve_fields_the_document_lacks() -> None:
    node = parse_filter(
        'and(in(topic:action,"created","deleted"),eq(resource:path,"/"))',
        placeholder_fields=EVENT_PLACEHOLDER_FIELDS,
    )
    assert evaluate(node, THING, now=NOW, placeholders={"topic:action": "created", "resource:path": "/"})
    assert not evaluate(node, THING, now=NOW, placeholders={"topic:action": "modified", "resource:path": "/"})
    assert not evaluate(node, THING, now=NOW)


def test_compiled_filter_is_reusable() -> None:
    predicate = compile_filter(parse_filter("gt(_revision,3)"), now=NOW)
    assert predicate({"_revision": 4})
    assert not predicate({"_revision": 3})
    assert not predicate({})


def test_hand_built_nodes_with_odd_values_do_not_crash() -> None:
    assert not evaluate(Eq("attributes/x", float("nan")), {"attributes": {"x": 1}}, now=NOW)
    assert not evaluate(Gt("attributes/x", 1), {"attributes": {"x": float("inf")}}, now=NOW)
    assert evaluate(Eq("attributes/x", 10**30), {"attributes": {"x": 10**30}}, now=NOW)
    assert not evaluate(Eq("attributes/x", 1), {"attributes": {"x": 10**400}}, now=NOW)
    assert not evaluate(Eq("attributes/x", "1e99999999999"), {"attributes": {"x": 1}}, now=NOW)
    # BigDecimal reads an exponent with any number of leading zeros
    assert evaluate(Eq("attributes/x", "2e" + "0" * 5000 + "1"), {"attributes": {"x": 20}}, now=NOW)
    assert evaluate(Gt("attributes/x", 1), {"attributes": {"x": "9" * 5000 + "z"}}, now=NOW)  # "9…z" > "1"


@pytest.mark.parametrize(
    ("value", "java"),
    [
        (20.0, "20.0"),
        (0.001, "0.001"),
        (9999999.0, "9999999.0"),
        (1e7, "1.0E7"),
        (12345678.9, "1.23456789E7"),
        (1e20, "1.0E20"),
        (-1.234e-5, "-1.234E-5"),
        (0.000999, "9.99E-4"),
        (-0.0, "-0.0"),
        (5e-324, "4.9E-324"),  # Double.MIN_VALUE
        (1.7976931348623157e308, "1.7976931348623157E308"),
    ],
)
def test_java_double_to_string(value: float, java: str) -> None:
    assert java_double_to_string(value) == java


# ---- the reference evaluator ------------------------------------------------------------------------

# The numeric strings of the domain and their values (what java.math.BigDecimal would read).
_NUMERIC_STRINGS = {"20": 20, "2.5": Fraction(5, 2), "-1": -1, "+3": 3, ".5": Fraction(1, 2), "1e1": 10}
_NUMERIC_STRINGS[str(NOW_EPOCH_MILLIS)] = NOW_EPOCH_MILLIS
_LINE_TERMINATORS = "\n\r\u0085\u2028\u2029"


def _values_at(doc: dict[str, Any], field: str) -> list[Any]:
    """Every value at ``field``: arrays met on the way are searched, ``features/*`` tries each feature."""
    parts = field.split("/")
    current: list[Any] = [doc]
    for index, part in enumerate(parts):
        following: list[Any] = []
        for value in current:
            objects = (
                [value]
                if isinstance(value, dict)
                else [v for v in value if isinstance(v, dict)]
                if isinstance(value, list)
                else []
            )
            for obj in objects:
                if index == 1 and parts[0] == "features" and part == "*":
                    following.extend(obj.values())
                elif part in obj:
                    following.append(obj[part])
        current = following
    return current


def _leaves(values: list[Any]) -> list[Any]:
    return [element for value in values for element in (value if isinstance(value, list) else [value])]


def _literal(value: RqlValue) -> Any:
    if isinstance(value, TimeNow):
        return NOW
    if isinstance(value, TimeNowEpochMillis):
        return str(NOW_EPOCH_MILLIS)
    return value


def _kind(value: Any) -> str:
    return "bool" if isinstance(value, bool) else "num" if isinstance(value, int | float) else "str"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)  # the domain's floats print like Java's


def _sign(left: Any, right: Any) -> int:
    return int(left > right) - int(left < right)


def _compare(literal: Any, found: Any) -> int:
    """Sign of ``found - literal`` under Ditto's rules, for the scalar domain."""
    if _kind(literal) == "str" and _kind(found) == "num" and literal in _NUMERIC_STRINGS:
        return _sign(Fraction(found), _NUMERIC_STRINGS[literal])
    if _kind(literal) == "num" and _kind(found) == "str" and found in _NUMERIC_STRINGS:
        return _sign(_NUMERIC_STRINGS[found], Fraction(literal))
    if _kind(literal) == _kind(found):
        return _sign(found, literal)
    return _sign(_text(found), _text(literal))


def _like(pattern: str, text: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        pattern, text = pattern.lower(), text.lower()  # the domain is ASCII

    @functools.cache
    def match(p: int, t: int) -> bool:
        if p == len(pattern):
            return t == len(text)
        if pattern[p] == "*":
            return match(p + 1, t) or (t < len(text) and text[t] not in _LINE_TERMINATORS and match(p, t + 1))
        if t == len(text):
            return False
        if pattern[p] == "?":
            return text[t] not in _LINE_TERMINATORS and match(p + 1, t + 1)
        return pattern[p] == text[t] and match(p + 1, t + 1)

    return match(0, 0)


def _scalar(value: Any) -> bool:
    return value is not None and not isinstance(value, dict | list)


def reference_matches(node: Node, doc: dict[str, Any]) -> bool:
    """Ditto's in-memory rules, written out plainly for the strategies' value domain."""
    if isinstance(node, And):
        return all(reference_matches(child, doc) for child in node.children)
    if isinstance(node, Or):
        return any(reference_matches(child, doc) for child in node.children)
    if isinstance(node, Not):
        return not reference_matches(node.child, doc)
    values = _values_at(doc, node.field)
    if isinstance(node, Exists):
        return len(values) > 0
    if isinstance(node, Empty):
        return all(value is None or value == "" or value == [] or value == {} for value in values)
    leaves = _leaves(values)
    if isinstance(node, Like | ILike):
        return any(
            isinstance(leaf, str) and _like(node.pattern, leaf, ignore_case=isinstance(node, ILike))
            for leaf in leaves
        )
    if isinstance(node, In):
        literals = [_literal(value) for value in node.values if value is not None]
        return any(_scalar(leaf) and any(_compare(lit, leaf) == 0 for lit in literals) for leaf in leaves)
    literal = _literal(node.value)
    if isinstance(node, Eq | Ne):
        equal = any(
            (leaf is None and literal is None)
            or (_scalar(leaf) and literal is not None and _compare(literal, leaf) == 0)
            for leaf in leaves
        )
        return equal if isinstance(node, Eq) else not equal
    if literal is None:
        return False
    wanted = {Gt: (1,), Ge: (0, 1), Lt: (-1,), Le: (-1, 0)}[type(node)]
    return any(_scalar(leaf) and _compare(literal, leaf) in wanted for leaf in leaves)


@settings(max_examples=250, deadline=None)
@given(domain_cases())
def test_evaluation_agrees_with_the_reference(case: tuple[Node, dict[str, Any]]) -> None:
    node, doc = case
    assert evaluate(node, doc, now=NOW) is reference_matches(node, doc)


@settings(max_examples=300, deadline=None)
@given(domain_cases(nested=False))
def test_each_operator_agrees_with_the_reference(case: tuple[Node, dict[str, Any]]) -> None:
    node, doc = case
    assert evaluate(node, doc, now=NOW) is reference_matches(node, doc)


@settings(max_examples=100, deadline=None)
@given(domain_cases())
def test_evaluation_survives_printing(case: tuple[Node, dict[str, Any]]) -> None:
    node, doc = case
    reparsed = parse_filter(format_rql(node))
    assert compile_filter(reparsed, now=NOW)(doc) is evaluate(node, doc, now=NOW)
