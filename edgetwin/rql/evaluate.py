"""Evaluate an RQL filter against one thing's JSON, with Ditto's in-memory semantics.

This mirrors ``ThingPredicatePredicateVisitor`` (comparisons), ``ExistsThingPredicateVisitor``,
``EmptyThingPredicateVisitor`` and ``LikeHelper``, i.e. what Ditto uses for the ``condition`` header and for
WebSocket/SSE filters (ditto.md §1.9, §4.4). It is *not* the search index: there, ``ne`` only matches
things that have the field; here ``ne`` is ``not eq`` and so holds for an absent field.

Rules, in Ditto's words where they exist:

* A path is looked up in the document. An array met on the way is searched element by element (objects
  inside arrays are addressable), ``*`` as the feature ID in ``features/*/...`` tries every feature, and
  an array at the end of the path offers each of its elements. A comparison holds if *any* value found
  that way satisfies it. Objects, and arrays nested in arrays, never satisfy a comparison.
* Values are compared as Java does after ``mapJsonValueToJava``: numbers as ``BigDecimal`` (so ``1`` equals
  ``1.0`` and ``int``/``float`` compare exactly); a string against a number is parsed as a number when it
  is one (``gt(temp,"20")`` holds for ``20.8``); any other mix of types compares the two values' Java
  ``toString()`` forms, so ``eq(attributes/on,"true")`` holds for ``true``. Strings order by UTF-16 code
  units (``String.compareTo``). ``eq(x,null)`` matches JSON ``null`` only; ``null`` satisfies no ordering.
* ``like``/``ilike``: ``*`` is any run and ``?`` one character, neither crossing a line terminator (Java's
  ``.``); ``ilike`` folds ASCII case only (``Pattern.CASE_INSENSITIVE``). Only JSON strings match.
* ``exists`` holds when the path is present with any value, ``null`` included; ``empty`` when it is absent
  or every value found is ``null``, ``""``, ``[]`` or ``{}``.
* ``time:now`` is the ``now`` string handed in (an ISO-8601 UTC timestamp, compared as a string) and
  ``time:now_epoch_millis`` its milliseconds since the epoch as a string of digits. Nothing here reads a
  clock.
* Property placeholders (``topic:action`` ...) are looked up in ``placeholders`` when the document has
  no such path, as Ditto's additional placeholder resolvers are.

Evaluation never raises for any JSON document; only a malformed ``now`` raises, and only for a filter
that uses ``time:now_epoch_millis``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final, TypeAlias

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
    Node,
    Not,
    Or,
    RqlValue,
    TimeNow,
)

__all__ = ["Predicate", "compile_filter", "evaluate", "java_double_to_string"]

Predicate: TypeAlias = Callable[[Mapping[str, Any]], bool]
"""A compiled filter: takes a thing's JSON, answers whether it matches."""

# A Java value after ``mapJsonValueToJava`` + ``asNumber``: one of the three Comparable kinds, tagged.
_JavaValue: TypeAlias = tuple[str, str | bool | Decimal]
_STRING: Final = "s"
_BOOLEAN: Final = "b"
_NUMBER: Final = "n"
# JSON null is Ditto's NULL_LITERAL: not Comparable, equal only to an RQL null.
_NULL: Final[_JavaValue] = ("null", "null")

_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# java.math.BigDecimal(String): optional sign, digits with an optional fraction, optional exponent.
# \d is deliberate: BigDecimal accepts any Unicode decimal digit (Character.isDigit), as does Decimal.
_BIG_DECIMAL: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?")
# An exponent must fit a Java int; longer digit strings are refused before int() sees them.
_MAX_EXPONENT_DIGITS: Final = 10
_INT_MAX: Final = 2**31 - 1
# Java's regex '.' (no DOTALL) stops at these line terminators, and LikeHelper builds on '.'.
_JAVA_ANY_CHAR: Final = "[^\n\r\u0085\u2028\u2029]"


def compile_filter(node: Node, *, now: str, placeholders: Mapping[str, Any] | None = None) -> Predicate:
    """Turn a filter into a predicate over thing JSON, resolving the placeholders once.

    Args:
        node: the parsed filter.
        now: the evaluation time as an ISO-8601 string (e.g. ``2024-05-01T10:00:00.123Z``); ``time:now``
            stands for exactly this string.
        placeholders: values of property placeholders such as ``topic:action`` or ``resource:path``,
            consulted for a field the document does not have.

    Returns:
        A function from the full thing JSON (hidden fields included) to ``True``/``False``.

    Raises:
        ValueError: ``now`` is not an ISO-8601 timestamp and the filter uses ``time:now_epoch_millis``.
    """
    return _Compiler(now, placeholders or {}).compile(node)


def evaluate(
    node: Node, doc: Mapping[str, Any], *, now: str, placeholders: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``doc`` matches ``node``; the one-shot form of :func:`compile_filter`.

    Args:
        node: the parsed filter.
        doc: the full thing JSON, including ``_revision``, ``_modified``, ``_created``, ``_namespace``.
        now: the evaluation time as an ISO-8601 string.
        placeholders: values of property placeholders, as for :func:`compile_filter`.

    Returns:
        ``True`` when the thing matches.

    Raises:
        ValueError: as for :func:`compile_filter`.
    """
    return compile_filter(node, now=now, placeholders=placeholders)(doc)


class _Compiler:
    """Builds closures once per filter so each document pays only for the lookups."""

    __slots__ = ("_epoch_millis", "_now", "_placeholders")

    def __init__(self, now: str, placeholders: Mapping[str, Any]) -> None:
        self._now = now
        self._placeholders = placeholders
        self._epoch_millis: str | None = None

    def compile(self, node: Node) -> Predicate:
        if isinstance(node, And):
            parts = [self.compile(child) for child in node.children]
            return lambda doc: all(part(doc) for part in parts)
        if isinstance(node, Or):
            parts = [self.compile(child) for child in node.children]
            return lambda doc: any(part(doc) for part in parts)
        if isinstance(node, Not):
            inner = self.compile(node.child)
            return lambda doc: not inner(doc)
        lookup = self._lookup(node.field)
        if isinstance(node, Exists):
            return lambda doc: bool(lookup(doc))
        if isinstance(node, Empty):
            return lambda doc: all(_is_empty(value) for value in lookup(doc))
        if isinstance(node, Like | ILike):
            regex = _like_regex(node.pattern, ignore_case=isinstance(node, ILike))
            return lambda doc: any(
                isinstance(value, str) and regex.fullmatch(value) is not None
                for value in _leaves(lookup(doc))
            )
        if isinstance(node, In):
            # A null among the values never matches: Ditto's compare() would fail on it.
            options = [option for option in map(self._literal, node.values) if option is not _NULL]
            return lambda doc: any(
                any(_compare(option, found) == 0 for option in options) for found in _comparables(lookup(doc))
            )
        literal = self._literal(node.value)
        if isinstance(node, Eq | Ne):
            negate = isinstance(node, Ne)

            def equals(doc: Mapping[str, Any]) -> bool:
                for value in _leaves(lookup(doc)):
                    found = _java_value(value)
                    if found is None:
                        continue
                    if found is _NULL or literal is _NULL:
                        if found is literal:
                            return not negate
                    elif _compare(literal, found) == 0:
                        return not negate
                return negate

            return equals
        if literal is _NULL:
            return lambda doc: False
        holds = _ORDERINGS[type(node)]
        return lambda doc: any(holds(_compare(literal, found)) for found in _comparables(lookup(doc)))

    def _lookup(self, field: str) -> Callable[[Mapping[str, Any]], list[Any]]:
        segments = tuple(field.split("/"))
        placeholders = self._placeholders
        fallback = field in placeholders

        def lookup(doc: Mapping[str, Any]) -> list[Any]:
            found: list[Any] = []
            _walk(doc, segments, 0, found)
            if not found and fallback:
                found.append(placeholders[field])
            return found

        return lookup

    def _literal(self, value: RqlValue) -> _JavaValue:
        if value is None:
            return _NULL
        if isinstance(value, TimeNow):
            return (_STRING, self._now)
        if isinstance(value, bool | int | float | str):
            converted = _java_value(value)
            # The parser only makes finite numbers; a hand-built NaN compares like Ditto's null would.
            return _NULL if converted is None else converted
        if self._epoch_millis is None:
            self._epoch_millis = str(_epoch_millis(self._now))
        return (_STRING, self._epoch_millis)


_ORDERINGS: Final[dict[type[Node], Callable[[int], bool]]] = {
    Gt: lambda sign: sign > 0,
    Ge: lambda sign: sign >= 0,
    Lt: lambda sign: sign < 0,
    Le: lambda sign: sign <= 0,
}


def _walk(value: Any, segments: Sequence[str], index: int, found: list[Any]) -> None:
    """Collect every value at ``segments[index:]`` below ``value``."""
    if index == len(segments):
        found.append(value)
    elif isinstance(value, Mapping):
        segment = segments[index]
        if segment == "*" and index == 1 and segments[0] == "features":
            for feature in value.values():
                _walk(feature, segments, index + 1, found)
        elif segment in value:
            _walk(value[segment], segments, index + 1, found)
    elif isinstance(value, list):
        for element in value:
            if isinstance(element, Mapping):
                _walk(element, segments, index, found)


def _leaves(found: list[Any]) -> Iterator[Any]:
    """The values a comparison looks at: an array at the end of the path offers its elements."""
    for value in found:
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _comparables(found: list[Any]) -> Iterator[_JavaValue]:
    """The leaves that can take part in an ordering or ``in``: not null, not objects or arrays."""
    for value in _leaves(found):
        converted = _java_value(value)
        if converted is not None and converted is not _NULL:
            yield converted


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | Mapping) and len(value) == 0)


def _java_value(value: Any) -> _JavaValue | None:
    """``mapJsonValueToJava`` + ``asNumber``; ``None`` for what Ditto cannot compare."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return (_BOOLEAN, value)
    if isinstance(value, str):
        return (_STRING, value)
    if isinstance(value, int):
        if _LONG_MIN <= value <= _LONG_MAX:
            return (_NUMBER, Decimal(value))
        # Ditto reads an integer beyond Long as a double.
        try:
            value = float(value)
        except OverflowError:
            return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return (_NUMBER, Decimal(java_double_to_string(value)))
    return None


def _compare(literal: _JavaValue, found: _JavaValue) -> int:
    """Ditto's ``compare(value, obj)``: the sign of ``found - literal``."""
    literal_kind, literal_value = literal
    found_kind, found_value = found
    # Best effort, as Ditto: a string facing a number is read as a BigDecimal if it is one.
    if literal_kind == _STRING and found_kind == _NUMBER:
        parsed = _big_decimal(str(literal_value))
        if parsed is not None:
            return _sign(found_value, parsed)
    elif literal_kind == _NUMBER and found_kind == _STRING:
        parsed = _big_decimal(str(found_value))
        if parsed is not None:
            return _sign(parsed, literal_value)
    if literal_kind == found_kind:
        if literal_kind == _STRING:
            return _compare_strings(str(found_value), str(literal_value))
        return _sign(found_value, literal_value)
    # Different types: Ditto falls back to comparing the toString() forms.
    return _compare_strings(_java_to_string(found), _java_to_string(literal))


def _sign(left: Any, right: Any) -> int:
    return int(left > right) - int(left < right)


def _compare_strings(left: str, right: str) -> int:
    """``String.compareTo``: order by UTF-16 code units (differs from code points above U+FFFF)."""
    if left == right:
        return 0
    return _sign(left.encode("utf-16-be", "surrogatepass"), right.encode("utf-16-be", "surrogatepass"))


def _java_to_string(value: _JavaValue) -> str:
    kind, payload = value
    if kind == _BOOLEAN:
        return "true" if payload else "false"
    # Decimal's str() follows the same scientific-notation rule as BigDecimal.toString().
    return str(payload)


def _big_decimal(text: str) -> Decimal | None:
    """``new BigDecimal(text)``, or ``None`` where Java throws ``NumberFormatException``."""
    match = _BIG_DECIMAL.fullmatch(text)
    if match is None:
        return None
    exponent = match.group(1)
    if exponent is not None:
        # Only the significant digits go to int(): a long run of leading zeros would trip its size guard.
        digits = exponent.lstrip("+-").lstrip("0")
        if len(digits) > _MAX_EXPONENT_DIGITS or int(digits or "0") > _INT_MAX:
            return None
    return Decimal(text)


def java_double_to_string(value: float) -> str:
    """Java's ``Double.toString`` for a finite double (what ``BigDecimal`` parses in Ditto's ``asNumber``).

    Both Java (since JDK 19) and Python print the shortest digits that round-trip; only the layout
    differs: Java uses plain notation for ``1e-3 <= |d| < 1e7`` and ``d.dddE<n>`` otherwise, always with a
    fractional digit.

    Args:
        value: a finite float.

    Returns:
        The Java rendering, e.g. ``20.0``, ``0.001``, ``1.0E7``, ``-1.234E-5``.
    """
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    shortest = Decimal(repr(abs(value))).normalize()
    _, digit_tuple, exponent = shortest.as_tuple()
    assert isinstance(exponent, int)  # a finite input never gives the 'n'/'N'/'F' markers
    digits = "".join(map(str, digit_tuple))
    # The power of ten of the first digit.
    scientific = len(digits) + exponent - 1
    if len(digits) == 1:
        digits, scientific = _closest_two_digits(abs(value), digits, scientific)
    if 1e-3 <= abs(value) < 1e7:
        if scientific >= 0:
            whole = digits[: scientific + 1].ljust(scientific + 1, "0")
            fraction = digits[scientific + 1 :] or "0"
        else:
            whole, fraction = "0", "0" * (-scientific - 1) + digits
        return f"{sign}{whole}.{fraction}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{scientific}"


def _closest_two_digits(value: float, digit: str, scientific: int) -> tuple[str, int]:
    """Java also weighs two-digit decimals when one digit suffices and keeps the one closest to the exact
    binary value. That changes the outcome only for subnormals (``Double.MIN_VALUE`` is ``4.9E-324``).
    """
    exact = Decimal(value)
    best = Decimal(f"{digit}E{scientific}")
    for power in (scientific - 1, scientific - 2):
        candidate = exact.quantize(Decimal(1).scaleb(power), rounding=ROUND_HALF_EVEN)
        if (
            float(candidate) == value
            and candidate.adjusted() == power + 1
            and abs(candidate - exact) < abs(best - exact)
        ):
            best = candidate
    best_digits = "".join(map(str, best.as_tuple().digits)).rstrip("0")
    return best_digits, best.adjusted()


@functools.lru_cache(maxsize=512)
def _like_regex(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """``LikeHelper.convertToRegexSyntax``: ``*`` any run, ``?`` one character, the rest literal."""
    parts: list[str] = []
    for char in re.sub(r"\*{2,}", "*", pattern):
        if char == "*":
            parts.append(_JAVA_ANY_CHAR + "*")
        elif char == "?":
            parts.append(_JAVA_ANY_CHAR)
        else:
            parts.append(re.escape(char))
    # re.ASCII restricts IGNORECASE to A-Z/a-z, like Java's CASE_INSENSITIVE without UNICODE_CASE.
    return re.compile("".join(parts), re.IGNORECASE | re.ASCII if ignore_case else 0)


def _epoch_millis(now: str) -> int:
    try:
        moment = datetime.fromisoformat(now)
    except ValueError:
        raise ValueError(f"now must be an ISO-8601 timestamp, got {now!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)
