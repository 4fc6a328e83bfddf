"""The search ``option`` parameter: ``sort(...)``, ``size(n)``, ``cursor(x)``, deprecated ``limit(o,c)``.

The grammar is Ditto's ``RqlOptionParser`` (ditto.md §4.2)::

    Root    = WhiteSpace Option ("," Option)* EOI
    Option  = "sort" "(" ("+"|"-") Property ("," ("+"|"-") Property)* ")"
            | "limit" "(" Long WhiteSpace "," Long WhiteSpace ")"
            | "cursor" "(" Property ")"
            | "size" "(" [0-9]+ ")"

Property and Long are the filter grammar's (:mod:`edgetwin.rql.parser`); sort properties are checked
like filter fields. In a URL ``+`` must be sent as ``%2B``, otherwise it arrives as a space and the
option does not parse, as in Ditto.

The value rules come from Ditto's search service: ``size`` and the ``limit`` count are between 0 and
:data:`MAX_PAGE_SIZE` (``Validator``), the ``limit`` offset is a non-negative Java ``int``, and ``cursor``
and ``limit`` must not be combined (``ThingsSearchCursor``). Every violation, syntax included, raises
:class:`~edgetwin.errors.InvalidInput` with Ditto's code ``thing-search:search.option.invalid``.

Decisions beyond Ditto, because Ditto's outcome there depends on the order of the options: an option
given twice, and ``size`` together with ``limit``, are rejected too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edgetwin.errors import InvalidInput
from edgetwin.rql.parser import _field_problem, _ParseFailure, _Scanner, format_field

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SORT",
    "MAX_PAGE_SIZE",
    "OPTION_INVALID",
    "Limit",
    "SearchOptions",
    "SortKey",
    "format_options",
    "parse_options",
]

DEFAULT_PAGE_SIZE: Final = 25
MAX_PAGE_SIZE: Final = 200
OPTION_INVALID: Final = "thing-search:search.option.invalid"
_INT_MAX: Final = 2**31 - 1
_NAMES: Final = "sort, size, cursor or limit"


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``+field`` / ``-field`` entry of ``sort(...)``.

    Attributes:
        field: the normalised property path, as for filters.
        descending: ``True`` for ``-field``.
    """

    field: str
    descending: bool = False


DEFAULT_SORT: Final = (SortKey("thingId"),)
"""Ditto's order when no ``sort`` is given: ``sort(+thingId)``."""


@dataclass(frozen=True, slots=True)
class Limit:
    """The deprecated ``limit(offset,count)`` page.

    Attributes:
        offset: how many results to skip.
        count: how many to return.
    """

    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """The parsed ``option`` parameter; an absent option is ``None`` (or ``()`` for ``sort``).

    Attributes:
        sort: the requested sort keys, in order.
        size: the page size of ``size(n)``.
        cursor: the opaque cursor of ``cursor(x)``.
        limit: the page of ``limit(offset,count)``.
    """

    sort: tuple[SortKey, ...] = ()
    size: int | None = None
    cursor: str | None = None
    limit: Limit | None = None

    @property
    def page_size(self) -> int:
        """How many items one page holds: ``size``, else the ``limit`` count, else 25."""
        if self.size is not None:
            return self.size
        if self.limit is not None:
            return self.limit.count
        return DEFAULT_PAGE_SIZE

    @property
    def effective_sort(self) -> tuple[SortKey, ...]:
        """The order the search applies, as Ditto's query builder makes it total.

        The keys are cut after the first ``thingId`` key (it is unique, so later keys never decide),
        or ``+thingId`` is appended when there is none.
        """
        for index, key in enumerate(self.sort):
            if key.field == "thingId":
                return self.sort[: index + 1]
        return self.sort + DEFAULT_SORT


def parse_options(text: str) -> SearchOptions:
    """Parse Ditto's search ``option`` parameter.

    Args:
        text: the URL-decoded parameter, e.g. ``sort(+thingId,-attributes/x),size(10)``.

    Returns:
        The options; fields not given stay ``None``.

    Raises:
        InvalidInput: with code ``thing-search:search.option.invalid`` for a syntax error (the message
            names the character position), an unknown sort field, ``size`` or a ``limit`` count above
            200, ``cursor`` with ``limit``, ``size`` with ``limit``, or an option given twice.
    """
    scanner = _Scanner(text)
    sort: tuple[SortKey, ...] = ()
    size: int | None = None
    cursor: str | None = None
    limit: Limit | None = None
    seen: set[str] = set()
    try:
        scanner.skip_whitespace()
        while True:
            start = scanner.pos
            name = scanner.word()
            if name not in ("sort", "size", "cursor", "limit"):
                raise scanner.fail(f"expected {_NAMES} but {scanner.found()}", start)
            if name in seen:
                raise scanner.fail(f"option {name!r} given more than once", start)
            seen.add(name)
            scanner.expect("(")
            if name == "sort":
                sort = _read_sort(scanner)
            elif name == "size":
                size = _read_size(scanner)
            elif name == "cursor":
                cursor = _read_cursor(scanner)
            else:
                limit = _read_limit(scanner)
            scanner.expect(")")
            if scanner.at_end():
                break
            scanner.expect(",")
    except _ParseFailure as failure:
        raise InvalidInput(
            f"Invalid option at position {failure.position}: {failure.detail}", error_code=OPTION_INVALID
        ) from None
    options = SearchOptions(sort=sort, size=size, cursor=cursor, limit=limit)
    if options.cursor is not None and options.limit is not None:
        raise InvalidInput(
            "The options 'cursor' and 'limit' must not be used together.", error_code=OPTION_INVALID
        )
    if options.size is not None and options.limit is not None:
        raise InvalidInput(
            "The options 'size' and 'limit' must not be used together.", error_code=OPTION_INVALID
        )
    return options


def format_options(options: SearchOptions) -> str:
    """Print options back as an ``option`` parameter value (``parse_options`` reads it back equal).

    Args:
        options: any options :func:`parse_options` can return.

    Returns:
        The comma-separated options in the order sort, size, limit, cursor; ``""`` when none is set.
    """
    parts: list[str] = []
    if options.sort:
        keys = ",".join(("-" if key.descending else "+") + format_field(key.field) for key in options.sort)
        parts.append(f"sort({keys})")
    if options.size is not None:
        parts.append(f"size({options.size})")
    if options.limit is not None:
        parts.append(f"limit({options.limit.offset},{options.limit.count})")
    if options.cursor is not None:
        parts.append(f"cursor({format_field(options.cursor)})")
    return ",".join(parts)


def _read_sort(scanner: _Scanner) -> tuple[SortKey, ...]:
    keys: list[SortKey] = []
    while True:
        direction = scanner.peek()
        if direction not in ("+", "-"):
            raise scanner.fail(f"expected '+' or '-' before a sort property but {scanner.found()}")
        scanner.pos += 1
        start = scanner.pos
        field = scanner.property().removeprefix("/")
        problem = _field_problem(field, whole_feature=False, placeholder_fields=())
        if problem is not None:
            raise scanner.fail(problem, start)
        keys.append(SortKey(field, descending=direction == "-"))
        if scanner.peek() != ",":
            return tuple(keys)
        scanner.pos += 1


def _read_size(scanner: _Scanner) -> int:
    start = scanner.pos
    while "0" <= scanner.peek() <= "9":
        scanner.pos += 1
    digits = scanner.text[start : scanner.pos]
    if not digits:
        raise scanner.fail(f"expected the page size digits but {scanner.found()}")
    size = int(digits) if len(digits.lstrip("0")) <= len(str(MAX_PAGE_SIZE)) else MAX_PAGE_SIZE + 1
    if size > MAX_PAGE_SIZE:
        raise scanner.fail(f"size must be less than or equal to {MAX_PAGE_SIZE} but it was {digits}", start)
    return size


def _read_cursor(scanner: _Scanner) -> str:
    start = scanner.pos
    cursor = scanner.property()
    if not cursor:
        raise scanner.fail("the cursor must not be empty", start)
    return cursor


def _read_limit(scanner: _Scanner) -> Limit:
    start = scanner.pos
    offset = scanner.long()
    scanner.skip_whitespace()
    scanner.expect(",")
    count_start = scanner.pos
    count = scanner.long()
    scanner.skip_whitespace()
    if not 0 <= offset <= _INT_MAX:
        raise scanner.fail(f"the limit offset must be between 0 and {_INT_MAX} but it was {offset}", start)
    if not 0 <= count <= MAX_PAGE_SIZE:
        raise scanner.fail(
            f"the limit count must be between 0 and {MAX_PAGE_SIZE} but it was {count}", count_start
        )
    return Limit(offset, count)
