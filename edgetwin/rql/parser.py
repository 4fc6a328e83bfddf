r"""RQL filter text to :mod:`edgetwin.rql.ast` nodes and back, following Ditto's parser exactly.

The grammar is Ditto's ``RqlPredicateParser`` + ``RqlParserBase`` (parboiled2 PEG), see ditto.md §4.4::

    Root        = WhiteSpace Query EOI
    Query       = Comparison | In | Logical | Not | Exists | Empty
    Comparison  = ("eq"|"ne"|"gt"|"ge"|"lt"|"le"|"like"|"ilike") "(" Property "," Literal ")"
    In          = "in" "(" Property ("," Literal)+ ")"
    Logical     = ("and"|"or") "(" Query ("," WhiteSpace Query)* ")"
    Not         = "not" "(" Query ")"
    Exists      = "exists" "(" Property ")"       Empty = "empty" "(" Property ")"
    Property    = (any char but , ) " \  |  "\" Escape)*
    Literal     = (Double | Long | DqString | SqString | "time:" Name | "true" | "false" | "null") WhiteSpace
    Long        = [+-]? ("0" | [1-9][0-9]*), not "-0"      Double = Long-shaped integer "." [0-9]+

Whitespace (`` \n\r\t\f``) is allowed only where Ditto allows it: before the whole expression, after
a literal and after the comma between the children of ``and``/``or``. ``eq(a, 1)`` and a trailing space
after the final ``)`` are syntax errors, as in Ditto.

On top of the grammar this module applies Ditto's field-expression rules
(``ThingsFieldExpressionFactoryImpl``): one leading ``/`` is stripped, an empty segment is rejected and
the property must name a searchable thing field. ``like``/``ilike`` need a string pattern
(``CriteriaFactoryImpl``). In Ditto those checks run after parsing and fail with the same
``rql.expression.invalid`` error, so here they are part of parsing and raise the same
:class:`~edgetwin.errors.RqlSyntaxError`.

Contract: :func:`parse_filter` raises :class:`~edgetwin.errors.RqlSyntaxError` for every bad input and no
other exception type for any ``str``; its message reads ``Invalid RQL at position <n>: <what>`` with the
zero-based character offset, also kept in ``.position``. :func:`format_rql` is its inverse:
``parse_filter(format_rql(node)) == node`` for every node the parser can produce.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Final

from edgetwin.errors import RqlSyntaxError
from edgetwin.rql.ast import (
    And,
    Comparison,
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
    TimeNowEpochMillis,
)

__all__ = [
    "EVENT_PLACEHOLDER_FIELDS",
    "MAX_DEPTH",
    "SIMPLE_FIELDS",
    "format_field",
    "format_rql",
    "format_value",
    "parse_filter",
]

MAX_DEPTH: Final = 100
"""Deepest nesting of ``and``/``or``/``not`` accepted; deeper input is a syntax error, not a crash."""

SIMPLE_FIELDS: Final = frozenset(
    {"thingId", "policyId", "_namespace", "_revision", "_created", "_modified", "definition"}
)
"""Top-level thing fields a filter may name directly (ditto.md §4.4 "Searchable simple fields")."""

EVENT_PLACEHOLDER_FIELDS: Final = frozenset(
    {
        "topic:full",
        "topic:namespace",
        "topic:entityName",
        "topic:group",
        "topic:channel",
        "topic:criterion",
        "topic:action",
        "topic:subject",
        "resource:path",
        "resource:type",
        "entity:id",
        "time:now",
    }
)
"""Property placeholders Ditto accepts in event and message filters (ditto.md §4.4); opt in per call."""

_WHITESPACE: Final = " \n\r\t\f"
_ASCII_LETTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_PROPERTY_STOP: Final = ',)"\\'
_CONTROL_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX_DIGITS: Final = "0123456789abcdefABCDEF"
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
# A Long has at most 19 digits; checking the length first keeps int() away from its 4300-digit guard.
_LONG_MAX_DIGITS: Final = 19
_PLACEHOLDERS: Final[dict[str, TimeNow | TimeNowEpochMillis]] = {
    TimeNow.text: TimeNow(),
    TimeNowEpochMillis.text: TimeNowEpochMillis(),
}

_SingleOp = Callable[[str, RqlValue], Node]
_SINGLE_OPS: Final[dict[str, _SingleOp]] = {"eq": Eq, "ne": Ne, "gt": Gt, "ge": Ge, "lt": Lt, "le": Le}
_FIELD_OPS: Final[dict[str, Callable[[str], Node]]] = {"exists": Exists, "empty": Empty}
_OPERATORS: Final = "eq, ne, gt, ge, lt, le, like, ilike, in, and, or, not, exists, empty"


class _ParseFailure(Exception):
    """Internal: where and why parsing stopped; each entry point turns it into its public error."""

    def __init__(self, position: int, detail: str) -> None:
        super().__init__(detail)
        self.position = position
        self.detail = detail


class _Scanner:
    """A cursor over the input with the lexical rules shared by the filter and the option parser."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, detail: str, position: int | None = None) -> _ParseFailure:
        return _ParseFailure(self.pos if position is None else position, detail)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def found(self) -> str:
        return f"found {self.text[self.pos]!r}" if self.pos < len(self.text) else "reached the end"

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(f"expected {char!r} but {self.found()}")
        self.pos += 1

    def word(self) -> str:
        """Read a run of ASCII letters (an operator or option name)."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _ASCII_LETTERS:
            self.pos += 1
        return self.text[start : self.pos]

    def escape(self, quote: str) -> str:
        """Decode the escape after a backslash; ``quote`` is the quote character escapable here."""
        start = self.pos - 1
        char = self.peek()
        if char and char in quote + "\\/":
            self.pos += 1
            return char
        if char in _CONTROL_ESCAPES:
            self.pos += 1
            return _CONTROL_ESCAPES[char]
        if char == "u":
            unit = self._hex4(self.pos + 1)
            if unit is None:
                raise self.fail("invalid unicode escape, expected 4 hex digits after '\\u'", start)
            self.pos += 5
            # Java strings are UTF-16: a \\uD83D\\uDE00 pair is one character there, so join it here too.
            if 0xD800 <= unit <= 0xDBFF and self.text.startswith("\\u", self.pos):
                low = self._hex4(self.pos + 2)
                if low is not None and 0xDC00 <= low <= 0xDFFF:
                    self.pos += 6
                    return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
            return chr(unit)
        raise self.fail(
            f"invalid escape sequence '\\{char}'" if char else "unfinished escape sequence", start
        )

    def _hex4(self, at: int) -> int | None:
        digits = self.text[at : at + 4]
        if len(digits) == 4 and all(c in _HEX_DIGITS for c in digits):
            return int(digits, 16)
        return None

    def property(self) -> str:
        """Read a property (or cursor) literal: everything up to an unescaped ``,`` ``)`` ``"`` or ``\\``."""
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 1
                chars.append(self.escape('"'))
            elif char in _PROPERTY_STOP:
                break
            else:
                chars.append(char)
                self.pos += 1
        return "".join(chars)

    def quoted(self) -> str:
        """Read a ``"..."`` or ``'...'`` string starting at the opening quote."""
        start = self.pos
        quote = self.text[self.pos]
        self.pos += 1
        chars: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail(f"unterminated string starting at position {start}")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(chars)
            chars.append(self.escape(quote) if char == "\\" else char)

    def number(self) -> int | float:
        """Read a Long or Double literal (Ditto: no exponent, no leading zeros, no ``-0`` Long)."""
        start = self.pos
        if self.peek() in ("+", "-"):
            self.pos += 1
        if self.peek() == "0":
            self.pos += 1
        elif "1" <= self.peek() <= "9":
            self._digits()
        else:
            raise self.fail(f"expected a digit but {self.found()}")
        if self.peek() == ".":
            self.pos += 1
            if not "0" <= self.peek() <= "9":
                raise self.fail(f"expected a digit after '.' but {self.found()}")
            self._digits()
            value = float(self.text[start : self.pos])
            # Java's Double.valueOf would give Infinity, which no JSON value can equal; refuse it instead.
            if value in (float("inf"), float("-inf")):
                raise self.fail("decimal number out of range", start)
            return value
        text = self.text[start : self.pos]
        if text == "-0":
            raise self.fail("'-0' is not a valid integer", start)
        if len(text.lstrip("+-")) > _LONG_MAX_DIGITS or not _LONG_MIN <= int(text) <= _LONG_MAX:
            raise self.fail("integer out of the 64-bit range", start)
        return int(text)

    def _digits(self) -> None:
        while "0" <= self.peek() <= "9":
            self.pos += 1

    def long(self) -> int:
        """Read a Long literal only (a Double here is an error at its ``.``)."""
        value = self.number()
        if isinstance(value, float):
            raise self.fail("expected an integer")
        return value


def _literal(scanner: _Scanner) -> RqlValue:
    """Read one literal and the whitespace after it."""
    text, start = scanner.text, scanner.pos
    char = scanner.peek()
    value: RqlValue
    if char in ('"', "'"):
        value = scanner.quoted()
    elif char in ("+", "-") or "0" <= char <= "9":
        value = scanner.number()
    elif text.startswith("time:", start):
        end = start
        while end < len(text) and text[end] not in _PROPERTY_STOP:
            end += 1
        name = text[start:end]
        placeholder = _PLACEHOLDERS.get(name)
        # Ditto would accept any time:<name> and resolve an unknown one to null; we refuse it up front.
        if placeholder is None or text.startswith("\\", end):
            raise scanner.fail(f"unknown placeholder {name!r}, expected time:now or time:now_epoch_millis")
        scanner.pos = end
        value = placeholder
    elif text.startswith("true", start):
        scanner.pos += 4
        value = True
    elif text.startswith("false", start):
        scanner.pos += 5
        value = False
    elif text.startswith("null", start):
        scanner.pos += 4
        value = None
    else:
        raise scanner.fail(
            f"expected a literal (number, quoted string, true, false, null or time:now) but {scanner.found()}"
        )
    scanner.skip_whitespace()
    return value


def _field(scanner: _Scanner, *, whole_feature: bool, placeholder_fields: Collection[str]) -> str:
    """Read a property and normalise it as Ditto's field-expression factory does."""
    start = scanner.pos
    raw = scanner.property()
    path = raw.removeprefix("/")
    detail = _field_problem(path, whole_feature=whole_feature, placeholder_fields=placeholder_fields)
    if detail is not None:
        raise scanner.fail(detail, start)
    return path


def _field_problem(path: str, *, whole_feature: bool, placeholder_fields: Collection[str]) -> str | None:
    """Why ``path`` is not a valid filter (or sort) field, or ``None`` when it is.

    ``whole_feature`` admits the paths only ``exists``/``empty`` accept: ``features/<id>`` and
    ``features/<id>/properties`` / ``desiredProperties`` without a property below them.
    """
    if path in placeholder_fields:
        return None
    segments = path.split("/")
    if "" in segments:
        return f"empty segment in property path {path!r}"
    root, depth = segments[0], len(segments)
    if depth == 1 and root in SIMPLE_FIELDS:
        return None
    if root in ("attributes", "_metadata") and depth >= 2:
        return None
    if root == "features" and depth >= 2:
        if depth == 2 or (depth == 3 and segments[2] in ("properties", "desiredProperties")):
            if whole_feature:
                return None
            return f"property {path!r} can only be used with exists() or empty()"
        if segments[2] in ("properties", "desiredProperties") or (depth == 3 and segments[2] == "definition"):
            return None
    return f"unknown property {path!r}"


class _FilterParser:
    """Recursive descent over :class:`_Scanner`, one method per grammar rule."""

    __slots__ = ("placeholder_fields", "scanner")

    def __init__(self, text: str, placeholder_fields: Collection[str]) -> None:
        self.scanner = _Scanner(text)
        self.placeholder_fields = placeholder_fields

    def root(self) -> Node:
        scanner = self.scanner
        scanner.skip_whitespace()
        node = self.query(1)
        if not scanner.at_end():
            raise scanner.fail(f"expected the end of the expression but {scanner.found()}")
        return node

    def query(self, depth: int) -> Node:
        scanner = self.scanner
        start = scanner.pos
        name = scanner.word()
        if name in ("and", "or", "not"):
            if depth > MAX_DEPTH:
                raise scanner.fail(f"expression nested deeper than {MAX_DEPTH} levels", start)
            scanner.expect("(")
            if name == "not":
                child = self.query(depth + 1)
                scanner.expect(")")
                return Not(child)
            children = [self.query(depth + 1)]
            while scanner.peek() == ",":
                scanner.pos += 1
                scanner.skip_whitespace()
                children.append(self.query(depth + 1))
            self._close("',' or ')'")
            return And(tuple(children)) if name == "and" else Or(tuple(children))
        if name in _SINGLE_OPS or name in ("like", "ilike"):
            scanner.expect("(")
            field = self.field(whole_feature=False)
            scanner.expect(",")
            literal_start = scanner.pos
            value = _literal(scanner)
            self._close("')'")
            if name in _SINGLE_OPS:
                return _SINGLE_OPS[name](field, value)
            if not isinstance(value, str):
                raise scanner.fail(f"{name}() needs a quoted string pattern", literal_start)
            return Like(field, value) if name == "like" else ILike(field, value)
        if name == "in":
            scanner.expect("(")
            field = self.field(whole_feature=False)
            scanner.expect(",")
            values = [_literal(scanner)]
            while scanner.peek() == ",":
                scanner.pos += 1
                values.append(_literal(scanner))
            self._close("',' or ')'")
            return In(field, tuple(values))
        if name in _FIELD_OPS:
            scanner.expect("(")
            field = self.field(whole_feature=True)
            scanner.expect(")")
            return _FIELD_OPS[name](field)
        if not name:
            raise scanner.fail(f"expected an operator ({_OPERATORS}) but {scanner.found()}")
        raise scanner.fail(f"unknown operator {name!r}, expected one of {_OPERATORS}", start)

    def field(self, *, whole_feature: bool) -> str:
        return _field(self.scanner, whole_feature=whole_feature, placeholder_fields=self.placeholder_fields)

    def _close(self, expected: str) -> None:
        scanner = self.scanner
        if scanner.peek() != ")":
            raise scanner.fail(f"expected {expected} but {scanner.found()}")
        scanner.pos += 1


def parse_filter(text: str, *, placeholder_fields: Collection[str] = frozenset()) -> Node:
    """Parse a Ditto RQL filter (search ``filter``, ``condition``, WS/SSE ``filter``).

    Args:
        text: the RQL expression, already URL-decoded.
        placeholder_fields: extra property names accepted verbatim, e.g. :data:`EVENT_PLACEHOLDER_FIELDS`
            for event and message filters. Thing filters and conditions leave it empty.

    Returns:
        The root node.

    Raises:
        RqlSyntaxError: the text is not valid RQL, names an unknown or malformed property, nests deeper
            than :data:`MAX_DEPTH`, or gives ``like``/``ilike`` a non-string pattern.
    """
    parser = _FilterParser(text, placeholder_fields)
    try:
        return parser.root()
    except _ParseFailure as failure:
        raise RqlSyntaxError(
            f"Invalid RQL at position {failure.position}: {failure.detail}", position=failure.position
        ) from None


def format_rql(node: Node) -> str:
    """Print a node as RQL text that :func:`parse_filter` reads back to an equal node.

    Args:
        node: any node the parser can produce.

    Returns:
        Compact RQL: no optional whitespace, strings in double quotes, decimals without exponent.
    """
    if isinstance(node, Comparison):
        return f"{node.op}({format_field(node.field)},{format_value(node.value)})"
    if isinstance(node, Like | ILike):
        return f"{node.op}({format_field(node.field)},{format_value(node.pattern)})"
    if isinstance(node, In):
        values = ",".join(format_value(value) for value in node.values)
        return f"in({format_field(node.field)},{values})"
    if isinstance(node, Exists | Empty):
        return f"{node.op}({format_field(node.field)})"
    if isinstance(node, Not):
        return f"not({format_rql(node.child)})"
    return f"{node.op}({','.join(format_rql(child) for child in node.children)})"


def format_field(field: str) -> str:
    """Print a property so the RQL property rule reads it back unchanged.

    ``,`` and ``)`` have no escape of their own in Ditto's grammar, so they go out as ``\\u`` escapes.

    Args:
        field: a normalised property path (or a search cursor).

    Returns:
        The property text, escaped where the grammar requires.
    """
    return field.replace("\\", "\\\\").replace('"', '\\"').replace(",", "\\u002c").replace(")", "\\u0029")


def format_value(value: RqlValue) -> str:
    """Print one literal in the form :func:`parse_filter` reads back to an equal value.

    Args:
        value: a literal of a node.

    Returns:
        ``null``/``true``/``false``, an integer, a decimal without exponent (RQL has none), a
        double-quoted string, or the placeholder's name.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Every digit of the shortest round-tripping repr(), laid out without an exponent.
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else f"{text}.0"
    if isinstance(value, str):
        return '"' + "".join(_escape_char(char) for char in value) + '"'
    return value.text


def _escape_char(char: str) -> str:
    if char in ('"', "\\"):
        return "\\" + char
    if char < " ":
        for letter, control in _CONTROL_ESCAPES.items():
            if control == char:
                return "\\" + letter
        return f"\\u{ord(char):04x}"
    return char
