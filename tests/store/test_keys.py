"""Index key encodings: order within a class, class order, exact prefixes, round trips, size limits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.rql.evaluate import _big_decimal
from edgetwin.store.keys import (
    MAX_ID_BYTES,
    MAX_KEY_BYTES,
    MAX_PATH_BYTES,
    MAX_STRING_BYTES,
    PRESENT,
    ValueClass,
    class_prefix,
    decode_index_key,
    encode_index_key,
    encode_number,
    index_thing_id,
    path_is_indexable,
    path_prefix,
    string_as_number,
    string_prefix,
    subtree_prefix,
    thing_id_from_key,
    thing_key,
    value_prefix,
    value_range,
)

PATH = "attributes/x"
ID = "ns:thing"

# Every code point Python can encode, NUL and lone surrogates included (RQL literals may carry them).
any_text = st.text(st.characters(codec=None, min_codepoint=0), max_size=20)
short_text = any_text.filter(lambda s: len(s.encode("utf-8", "surrogatepass")) * 2 <= MAX_STRING_BYTES)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.sampled_from([0, -0.0, 0.0, 2**53, 2**53 + 1, -(2**63), 2**63 - 1, 5e-324, -5e-324]),
)
ids = st.text(
    st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="/\x7f"), min_size=1, max_size=30
).map("ns:{}".format)
paths = st.lists(st.text(st.characters(min_codepoint=0), min_size=1, max_size=8), min_size=1, max_size=4).map(
    lambda parts: "attributes/" + "/".join(parts)
)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)


def key(value: object, thing_id: str = ID, path: str = PATH) -> bytes:
    return encode_index_key(path, value, thing_id)  # type: ignore[arg-type]


@given(a=numbers, b=numbers)
def test_numbers_keep_numeric_order(a: float, b: float) -> None:
    # Doubles order exactly; integers beyond 2**53 may tie with their neighbours, never invert.
    if float(a) < float(b):
        assert key(a) < key(b)
    elif float(a) == float(b):
        assert key(a) == key(b)
    if a < b:
        assert key(a) <= key(b)


def test_number_edges() -> None:
    assert encode_number(-0.0) == encode_number(0.0)
    assert (
        key(-math.inf) < key(-1e308) < key(-1) < key(-5e-324) < key(0) < key(5e-324) < key(1) < key(math.inf)
    )
    assert key(1) == key(1.0)
    assert key(2**53) == key(2**53 + 1)  # the documented precision limit


@given(a=short_text, b=short_text)
def test_short_strings_keep_code_point_order(a: str, b: str) -> None:
    assert (key(a) < key(b)) == (a < b)
    assert (key(a) == key(b)) == (a == b)


@given(a=st.text(max_size=200), b=st.text(max_size=200))
def test_long_strings_are_cut_monotonically(a: str, b: str) -> None:
    if a < b:
        assert key(a, "ns:z") <= key(b, "ns:z") or value_prefix(PATH, a) == value_prefix(PATH, b)
    assert len(key(a)) <= MAX_KEY_BYTES


@given(a=st.booleans(), b=st.booleans())
def test_booleans_keep_order(a: bool, b: bool) -> None:
    assert (key(a) < key(b)) == (a < b)


def test_class_order_is_null_bool_number_string_present() -> None:
    ordered = [
        key(None),
        key(True),
        key(-math.inf),
        key(math.inf),
        key(""),
        key("\U0010ffff" * 20),
        key(PRESENT),
    ]
    assert ordered == sorted(ordered)
    assert [decode_index_key(k)[1] for k in ordered] == [
        ValueClass.NULL,
        ValueClass.BOOL,
        ValueClass.NUMBER,
        ValueClass.NUMBER,
        ValueClass.STRING,
        ValueClass.STRING,
        ValueClass.PRESENT,
    ]


def test_uncomparable_numbers_are_present_markers() -> None:
    assert decode_index_key(key(math.nan))[1] is ValueClass.PRESENT
    assert decode_index_key(key(10**400))[1] is ValueClass.PRESENT
    assert decode_index_key(key(math.inf))[1] is ValueClass.NUMBER
    assert decode_index_key(key(2**70))[1] is ValueClass.NUMBER


@given(path=paths, value=scalars, thing_id=ids)
def test_decode_round_trip(path: str, value: object, thing_id: str) -> None:
    encoded = key(value, thing_id, path)
    decoded_path, _, decoded_id = decode_index_key(encoded)
    assert (decoded_path, decoded_id) == (path, thing_id)
    assert index_thing_id(encoded) == thing_id
    assert encoded.startswith(value_prefix(path, value))  # type: ignore[arg-type]
    assert encoded[len(value_prefix(path, value)) :].decode() == thing_id  # type: ignore[arg-type]


@given(thing_id=ids)
def test_thing_key_round_trip(thing_id: str) -> None:
    assert thing_id_from_key(thing_key(thing_id)) == thing_id


@given(a=paths, b=paths, va=scalars, vb=scalars)
def test_path_prefixes_are_exact(a: str, b: str, va: object, vb: object) -> None:
    key_b = key(vb, ID, b)
    assert key_b.startswith(path_prefix(a)) == (a == b)
    assert key_b.startswith(subtree_prefix(a)) == b.startswith(a + "/")


def test_sibling_paths_do_not_share_prefixes() -> None:
    assert not key(1, ID, "attributes/ab").startswith(path_prefix("attributes/a"))
    assert not key(1, ID, "attributes/ab").startswith(subtree_prefix("attributes/a"))
    assert key(1, ID, "attributes/a/b").startswith(subtree_prefix("attributes/a"))
    assert not key(1, ID, "attributes/a\x00").startswith(path_prefix("attributes/a"))


@given(a=short_text, b=short_text)
def test_point_prefixes_are_exact(a: str, b: str) -> None:
    assert key(b).startswith(value_prefix(PATH, a)) == (a == b)


def test_embedded_nul_cannot_forge_a_separator() -> None:
    assert not key("a\x00", "ns:x").startswith(value_prefix(PATH, "a"))
    assert index_thing_id(key("a\x00\x01b", "ns:x")) == "ns:x"
    assert key("a") < key("a\x00") < key("a\x00\x00") < key("a\x01") < key("b")


@given(low=short_text, high=short_text, value=short_text, thing_id=ids)
def test_string_ranges_are_half_open(low: str, high: str, value: str, thing_id: str) -> None:
    start, stop = value_range(PATH, low, high)
    assert (start <= key(value, thing_id) < stop) == (low <= value < high)


@given(low=numbers, high=numbers, value=numbers)
def test_number_ranges_are_half_open(low: float, high: float, value: float) -> None:
    start, stop = value_range(PATH, low, high)
    assert (start <= key(value) < stop) == (float(low) <= float(value) < float(high))


def test_ranges_need_one_class() -> None:
    with pytest.raises(ValueError, match="one value class"):
        value_range(PATH, 1, "a")


@given(prefix=st.text(max_size=80), rest=st.text(max_size=80), other=st.text(max_size=80))
def test_string_prefix_scans_and_bounds(prefix: str, rest: str, other: str) -> None:
    bound = string_prefix(PATH, prefix)
    assert key(prefix + rest).startswith(bound)
    if other >= prefix:
        assert key(other) >= bound
    if other <= prefix or other.startswith(prefix):
        assert key(other) < bound + b"\xff"
    assert bound.startswith(class_prefix(PATH, ValueClass.STRING))


def test_long_strings_share_a_cut_and_never_split_an_escape() -> None:
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert value_prefix(PATH, long_a) == value_prefix(PATH, long_b)
    assert value_prefix(PATH, "x" * 10) != value_prefix(PATH, long_a)
    for filler in range(MAX_STRING_BYTES - 3, MAX_STRING_BYTES + 3):
        text = "y" * filler + "\x00" * 10
        assert index_thing_id(key(text, "ns:q")) == "ns:q"


def test_size_limits() -> None:
    assert path_is_indexable("attributes/" + "a" * (MAX_PATH_BYTES - len("attributes/")))
    assert not path_is_indexable("attributes/" + "a" * MAX_PATH_BYTES)
    longest_id = "ns:" + "i" * (MAX_ID_BYTES - 3)
    worst = encode_index_key("p" * MAX_PATH_BYTES, "\x00" * 500, longest_id)
    assert len(worst) <= MAX_KEY_BYTES


@given(text=st.one_of(st.text(max_size=12), st.from_regex(r"[+-]?\d{0,4}(\.\d{0,3})?([eE][+-]?\d{1,12})?")))
def test_string_as_number_agrees_with_the_rql_evaluator(text: str) -> None:
    parsed = _big_decimal(text)
    number = string_as_number(text)
    if parsed is None:
        assert number is None
    else:
        assert number == float(parsed)


@pytest.mark.parametrize(
    ("text", "number"),
    [("20", 20.0), ("+3", 3.0), ("1e1", 10.0), (".5", 0.5), ("5.", 5.0), ("١٢", 12.0), ("1e99999", math.inf)],
)
def test_numeric_strings(text: str, number: float) -> None:
    assert string_as_number(text) == number


@pytest.mark.parametrize("text", ["", "a", "1 ", "0x10", "1e", "NaN", "Infinity", "1e99999999999"])
def test_non_numeric_strings(text: str) -> None:
    assert string_as_number(text) is None
