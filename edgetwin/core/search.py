"""The thing search: plan a filter over the index, re-check exactly, sort, page with opaque cursors.

Contract:

* Synchronous, called inside ``with store.read() as r:`` (no awaits); memory is bounded by the page and
  the candidate budget, never by the number of things.
  :func:`search` returns one page (:class:`SearchPage`), :func:`count` a number; both see one consistent
  snapshot: the read transaction's.
* **Semantics** are Ditto's in-memory RQL (:func:`edgetwin.rql.compile_filter`) except where ditto.md §4.4
  says the search differs: ``ne(p,v)`` only matches things that *have* ``p`` (Ditto docs), i.e. it is
  evaluated as ``and(exists(p),ne(p,v))``, also under ``not`` (``not(ne(p,v))`` = absent or equal).
  Everything else, including Ditto's number/string coercion (``eq(attributes/x,"20")`` finds ``20``) and
  "any array element" matching, is the in-memory rule, so a ``condition`` and a search agree.
* **Filtering is exact**: the index only proposes candidates (:mod:`edgetwin.store.keys` and
  :mod:`edgetwin.store.things` for what is indexed); every candidate is decoded and checked with the
  compiled predicate. A plan may propose too many things, never too few.
* **Planning.** Leaves on an indexed path become index scans: ``eq``/``in`` point scans (plus the
  coerced forms of the literal: ``"20"`` also scans the number 20, ``"true"`` the boolean), ``gt/ge/lt/le``
  range scans per value class, ``like`` a prefix scan of the pattern's literal start, ``ilike`` the path's
  strings, ``exists`` the path and everything below it. ``and`` intersects its indexable children (most
  selective kinds first, stopping once few candidates remain); ``or`` unites, if every child is
  indexable. ``not``, ``empty``, ``features/*/…``, ``_metadata/…`` and over-long paths are not
  indexable (``ne`` becomes ``exists`` + re-check). Index scans are bounded by a budget of entries per
  leaf: an eighth of the things for a ``+thingId`` page (a broad filter is cheaper to check while walking
  the things in ID order, which stops after one more than the page), twice the things otherwise, and at
  least 256. Over budget, or with nothing indexable, the things are scanned in ID order, skipping foreign
  namespaces by ID before decoding. Namespaces are an exact index scan of ``_namespace``.
* **Order** is the effective sort (``sort`` cut after ``thingId``, or ``+thingId`` appended). Values are
  compared as MongoDB (Ditto's search store) sorts them: absent = ``null`` < numbers < strings <
  objects < arrays < booleans; numbers numerically, strings by code point, objects and arrays by their
  canonical JSON text (a simplification of BSON order), ``false < true``. ``-`` reverses all of it, so
  absent values come first ascending and last descending. Sort fields are plain JSON pointers into the
  thing (an array is one value; ``*`` is a literal key).
* **Paging.** ``size(n)`` (default 25, at most 200) and the deprecated ``limit(offset,count)``. A
  page carries a cursor exactly when more results exist. The cursor is URL-safe base64 of a checksummed,
  deflated JSON object holding, like Ditto's, the filter text, the namespaces, the effective sort and the
  last item's sort values; the next page continues strictly after those values. A request with a cursor
  may omit filter, sort and namespaces (the cursor's apply); if it repeats them they must be the same
  (sort: the same effective sort), otherwise, and for any undecodable or altered cursor, it is refused
  with 400 ``thing-search:search.option.invalid`` ("The option 'cursor' is not valid for the search
  request."). With ``limit`` the cursor only signals that more exist (``nextPageOffset``).
* **Visibility.** ``visible(thing)`` is the policy hook: it gets the full thing (hidden fields and
  ``_namespace`` included) and returns the caller's readable view of it, or ``None``. The filter and the
  sort see only that view, and the items are the views. The view must be a restriction of the thing
  (fields removed, none added or changed), which keeps index candidates a superset.
* Items are full thing dicts with ``_revision``, ``_created``, ``_modified`` and ``_namespace``; the
  ``fields`` selection is the HTTP layer's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import orjson

from edgetwin.errors import InvalidInput, RqlSyntaxError
from edgetwin.rql import (
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
    Predicate,
    RqlValue,
    SearchOptions,
    SortKey,
    TimeNow,
    compile_filter,
    format_rql,
    parse_filter,
)
from edgetwin.rql.evaluate import java_double_to_string
from edgetwin.rql.options import OPTION_INVALID
from edgetwin.store.keys import (
    ValueClass,
    class_prefix,
    index_thing_id,
    path_is_indexable,
    path_prefix,
    string_as_number,
    string_prefix,
    subtree_prefix,
    value_prefix,
)
from edgetwin.store.things import (
    INDEXED_SIMPLE_FIELDS,
    INDEXED_TREES,
    count_things,
    decode_thing,
    get_thing_bytes,
    iter_index,
    iter_thing_entries,
)
from edgetwin.twin.ids import namespace_of
from edgetwin.twin.pointer import MISSING, Json, Missing, get_at

if TYPE_CHECKING:
    from edgetwin.store import ReadTxn

__all__ = ["SearchPage", "Visible", "count", "search", "search_semantics"]

Visible: TypeAlias = Callable[[dict[str, Any]], dict[str, Any] | None]
"""The visibility hook: the full thing in, the caller's readable view (or ``None``) out."""

# Candidate budgets, in index entries scanned by one leaf (see the module docstring).
_MIN_BUDGET: Final = 256
_ID_PAGE_BUDGET_DIVISOR: Final = 8
_FULL_BUDGET_FACTOR: Final = 2
# An "and" stops consulting further children once its candidates are this few: re-checking them is
# cheaper than another scan.
_FEW_CANDIDATES: Final = 16
_THING_ID_ASC: Final = (SortKey("thingId"),)

_CURSOR_VERSION: Final = 1
_CURSOR_DIGEST_BYTES: Final = 8
# A cursor inflates to at most this: it holds a filter and a few values, nothing more.
_CURSOR_MAX_JSON_BYTES: Final = 256 * 1024
_CURSOR_INVALID_MESSAGE: Final = "The option 'cursor' is not valid for the search request."
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

_SortToken: TypeAlias = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of search results.

    Attributes:
        items: the matching things (the caller's views of them), in sort order, hidden fields included.
        cursor: continues after the last item; present only when more results exist.
    """

    items: list[dict[str, Any]]
    cursor: str | None


def search(
    r: ReadTxn,
    *,
    filter: Node | None,
    namespaces: frozenset[str] | None,
    options: SearchOptions,
    now: str,
    visible: Visible | None = None,
) -> SearchPage:
    """Run a search and return one page.

    Args:
        r: an open read transaction; the whole search runs in it.
        filter: the parsed ``filter`` (several filters AND-combined by the caller), ``None`` for all.
        namespaces: only things in these namespaces; ``None`` for all.
        options: the parsed ``option`` parameter.
        now: the evaluation time for ``time:now`` (ISO-8601 UTC).
        visible: the policy hook (see the module docstring); ``None`` when everything is visible.

    Returns:
        The page: at most ``size`` (or the ``limit`` count, default 25) items, and a cursor if more exist.

    Raises:
        InvalidInput: ``thing-search:search.option.invalid`` for a bad, altered or mismatching cursor, or
            ``cursor`` with ``limit``.
    """
    if options.cursor is not None and options.limit is not None:
        raise InvalidInput(
            "The options 'cursor' and 'limit' must not be used together.", error_code=OPTION_INVALID
        )
    sort = options.effective_sort
    after: list[Json] | None = None
    if options.cursor is not None:
        cursor = _Cursor.decode(options.cursor)
        cursor.check_request(filter, namespaces, options)
        filter, namespaces, sort, after = cursor.filter, cursor.namespaces, cursor.sort, cursor.values
    offset = options.limit.offset if options.limit is not None else 0
    size = options.page_size
    wanted = offset + size + 1
    id_page = sort == _THING_ID_ASC
    scan = _Scan(r, filter, namespaces, now, visible, id_page=id_page)

    if id_page:
        start_after = None if after is None else after[0]
        if not (start_after is None or isinstance(start_after, str)):
            raise _invalid_cursor()
        found = list(islice(scan.matches(start_after=start_after), wanted))
    else:
        key = _sort_key(sort)
        keyed: Iterable[tuple[_SortToken, str, dict[str, Any]]] = (
            (key(thing_id, view), thing_id, view) for thing_id, view in scan.matches()
        )
        if after is not None:
            after_key = tuple([_token(value, k.descending) for value, k in zip(after, sort, strict=True)])
            keyed = (entry for entry in keyed if entry[0] > after_key)
        # Keys end with the thing ID, so they are unique and the views are never compared.
        found = [(thing_id, view) for _, thing_id, view in heapq.nsmallest(wanted, keyed)]
    page = found[offset : offset + size]
    items = [view for _, view in page]
    next_cursor = None
    if len(found) > offset + size and page:
        last_id, last = page[-1]
        values = [_sort_value(last, k.field) for k in sort[:-1]] + [last_id]
        next_cursor = _Cursor(filter, namespaces, sort, values).encode()
    return SearchPage(items=items, cursor=next_cursor)


def count(
    r: ReadTxn,
    *,
    filter: Node | None,
    namespaces: frozenset[str] | None,
    now: str,
    visible: Visible | None = None,
) -> int:
    """Count the things a search would return over all pages.

    Args:
        r: an open read transaction.
        filter: the parsed filter, ``None`` for all.
        namespaces: only things in these namespaces; ``None`` for all.
        now: the evaluation time for ``time:now``.
        visible: the policy hook; only things it shows (and whose view matches) count.

    Returns:
        The number of matching, visible things.
    """
    if filter is None and visible is None:
        # Exact without decoding anything: LMDB's entry count, or one index entry per thing and namespace.
        if namespaces is None:
            return count_things(r)
        return sum(
            1 for namespace in namespaces for _ in iter_index(r, prefix=value_prefix("_namespace", namespace))
        )
    scan = _Scan(r, filter, namespaces, now, visible, id_page=False)
    return sum(1 for _ in scan.matches())


# ---- matching ----------------------------------------------------------------------------------------


class _Scan:
    """One query's plan and the matching things it yields, in thing-ID order."""

    __slots__ = ("_candidates", "_namespaces", "_predicate", "_r", "_visible")

    def __init__(
        self,
        r: ReadTxn,
        filter: Node | None,
        namespaces: frozenset[str] | None,
        now: str,
        visible: Visible | None,
        *,
        id_page: bool,
    ) -> None:
        self._r = r
        self._namespaces = namespaces
        self._visible = visible
        exact = None if filter is None else search_semantics(filter)
        self._predicate: Predicate | None = None if exact is None else compile_filter(exact, now=now)
        total = count_things(r)
        if id_page:
            budget = max(_MIN_BUDGET, total // _ID_PAGE_BUDGET_DIVISOR)
        else:
            budget = max(_MIN_BUDGET, total * _FULL_BUDGET_FACTOR)
        planner = _Planner(r, now, budget)
        candidates = None if exact is None else planner.candidates(exact)
        if namespaces is not None and (candidates is None or len(candidates) > _FEW_CANDIDATES):
            in_namespaces = planner.namespaces(namespaces)
            if in_namespaces is not None:
                candidates = in_namespaces if candidates is None else candidates & in_namespaces
        self._candidates = None if candidates is None else sorted(candidates)

    def matches(self, *, start_after: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(thing ID, view)`` of the matching things, in thing-ID order, after ``start_after`` if given."""
        namespaces, visible, predicate = self._namespaces, self._visible, self._predicate
        for thing_id, raw in self._entries(start_after):
            namespace = namespace_of(thing_id)
            if namespaces is not None and namespace not in namespaces:
                continue
            thing = decode_thing(raw)
            thing["_namespace"] = namespace
            view = thing if visible is None else visible(thing)
            if view is not None and (predicate is None or predicate(view)):
                yield thing_id, view

    def _entries(self, start_after: str | None) -> Iterator[tuple[str, bytes]]:
        if self._candidates is None:
            yield from iter_thing_entries(self._r, start_after=start_after)
            return
        first = 0 if start_after is None else bisect_right(self._candidates, start_after)
        for thing_id in islice(self._candidates, first, None):
            raw = get_thing_bytes(self._r, thing_id)
            if raw is not None:
                yield thing_id, raw


def search_semantics(node: Node) -> Node:
    """Rewrite a filter so that in-memory evaluation gives Ditto's *search* result.

    The one documented difference (ditto.md §4.4): ``ne(p,v)`` matches only things that have ``p``, so it
    becomes ``and(exists(p),ne(p,v))`` wherever it occurs.

    Args:
        node: a parsed filter.

    Returns:
        An equivalent filter for :func:`edgetwin.rql.compile_filter`.
    """
    if isinstance(node, Ne):
        return And((Exists(node.field), node))
    if isinstance(node, And):
        return And(tuple(search_semantics(child) for child in node.children))
    if isinstance(node, Or):
        return Or(tuple(search_semantics(child) for child in node.children))
    if isinstance(node, Not):
        return Not(search_semantics(node.child))
    return node


# ---- planning ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Range:
    """Index keys with ``prefix``, from ``start`` (inclusive) to ``stop`` (exclusive).

    ``point`` ranges cover one value, so the thing ID is simply the rest of the key.
    """

    prefix: bytes
    start: bytes | None = None
    stop: bytes | None = None
    point: bool = False


def _point(path: str, value: bool | float | str | None) -> _Range:
    return _Range(value_prefix(path, value), point=True)


# Evaluation order inside an "and": the kinds that usually select least first.
_ORDER: Final[dict[type, int]] = {Eq: 0, In: 0, Like: 1, Gt: 2, Ge: 2, Lt: 2, Le: 2, And: 2, Or: 3}


class _Planner:
    """Turns a filter into a candidate set of thing IDs from index scans, within a budget."""

    __slots__ = ("_budget", "_now", "_r")

    def __init__(self, r: ReadTxn, now: str, budget: int) -> None:
        self._r = r
        self._now = now
        self._budget = budget

    def candidates(self, node: Node, budget: int | None = None) -> set[str] | None:
        """A superset of the IDs ``node`` can match, or ``None`` when the index cannot say (cheaply)."""
        budget = self._budget if budget is None else budget
        if isinstance(node, And):
            best: set[str] | None = None
            for child in sorted(node.children, key=lambda c: _ORDER.get(type(c), 9)):
                found = self.candidates(child, budget)
                if found is None:
                    continue
                best = found if best is None else best & found
                if len(best) <= _FEW_CANDIDATES:
                    break
            return best
        if isinstance(node, Or):
            union: set[str] = set()
            for child in node.children:
                found = self.candidates(child, budget - len(union))
                if found is None:
                    return None
                union |= found
            return union
        ranges = self._ranges(node)
        return None if ranges is None else self._collect(ranges, budget)

    def namespaces(self, namespaces: frozenset[str]) -> set[str] | None:
        """Exactly the IDs in these namespaces (``None`` if over budget)."""
        return self._collect(
            [_point("_namespace", namespace) for namespace in sorted(namespaces)], self._budget
        )

    def _collect(self, ranges: list[_Range], budget: int) -> set[str] | None:
        ids: set[str] = set()
        seen = 0
        for scan in ranges:
            skip = len(scan.prefix)
            for key in iter_index(self._r, prefix=scan.prefix, start=scan.start):
                if scan.stop is not None and key >= scan.stop:
                    break
                seen += 1
                if seen > budget:
                    return None
                ids.add(key[skip:].decode() if scan.point else index_thing_id(key))
        return ids

    def _ranges(self, node: Node) -> list[_Range] | None:
        """The index ranges that hold every thing a leaf can match, or ``None`` if not indexable."""
        if isinstance(node, Not | Ne | Empty | And | Or) or not _indexed_path(node.field):
            return None
        path = node.field
        if isinstance(node, Exists):
            return [_Range(path_prefix(path)), _Range(subtree_prefix(path))]
        if isinstance(node, Like):
            return [_Range(string_prefix(path, _literal_prefix(node.pattern)))]
        if isinstance(node, ILike):
            return [_Range(class_prefix(path, ValueClass.STRING))]
        if isinstance(node, In):
            ranges: list[_Range] = []
            for value in node.values:
                literal = self._literal(value)
                if isinstance(literal, _Unresolved):
                    return None
                # A null among in()'s values never matches (compile_filter drops it, as Ditto).
                if literal is not None:
                    ranges.extend(_equal_ranges(path, literal))
            return ranges
        literal = self._literal(node.value)
        if isinstance(literal, _Unresolved):
            return None
        if isinstance(node, Eq):
            return _equal_ranges(path, literal)
        return _order_ranges(path, literal, upward=isinstance(node, Gt | Ge))

    def _literal(self, value: RqlValue) -> bool | int | float | str | _Unresolved | None:
        if isinstance(value, TimeNow):
            return self._now
        if value is None or isinstance(value, bool | int | float | str):
            return value
        # time:now_epoch_millis: the digits of now in epoch milliseconds, as the evaluator resolves it.
        try:
            moment = datetime.fromisoformat(self._now)
        except ValueError:
            return _UNRESOLVED
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return str((moment - _EPOCH) // timedelta(milliseconds=1))


class _Unresolved:
    """A literal the planner cannot resolve; the leaf is then not indexable (the evaluator decides)."""


_UNRESOLVED: Final = _Unresolved()


def _indexed_path(field: str) -> bool:
    if field in INDEXED_SIMPLE_FIELDS:
        return True
    root, _, rest = field.partition("/")
    if root not in INDEXED_TREES or not rest:
        return False
    if root == "features" and rest.partition("/")[0] == "*":
        return False
    return path_is_indexable(field)


def _literal_prefix(pattern: str) -> str:
    """The literal start of a like pattern: everything before the first ``*`` or ``?``."""
    for index, char in enumerate(pattern):
        if char in "*?":
            return pattern[:index]
    return pattern


def _equal_ranges(path: str, literal: bool | int | float | str | None) -> list[_Range]:
    """Where a value Ditto finds equal to ``literal`` can be (evaluate._compare's coercions)."""
    if literal is None or isinstance(literal, int | float):
        # bool is an int: True/False land here too, and a number equals no string but a numeric one,
        # which is indexed under its number as well.
        ranges = [_point(path, literal)]
        if isinstance(literal, bool):
            # "true" == true: mixed types compare their Java toString() forms.
            ranges.append(_point(path, "true" if literal else "false"))
        return ranges
    ranges = [_point(path, literal)]
    number = string_as_number(literal)
    if number is not None:
        ranges.append(_point(path, number))
    if literal in ("true", "false"):
        ranges.append(_point(path, literal == "true"))
    return ranges


def _order_ranges(path: str, literal: bool | int | float | str | None, *, upward: bool) -> list[_Range]:
    """Where a value Ditto orders above (``upward``) or below ``literal`` can be, bounds inclusive.

    Mixed types compare as in :mod:`edgetwin.rql.evaluate`: a number and a numeric string numerically,
    other strings against the number's Java ``toString()``, booleans as ``"true"``/``"false"`` text.
    Coarse where that is not a range (a whole class), because the re-check is exact anyway.
    """
    if literal is None:
        return []  # null satisfies no ordering
    booleans = _Range(class_prefix(path, ValueClass.BOOL))
    numbers = _Range(class_prefix(path, ValueClass.NUMBER))
    if isinstance(literal, bool):
        return [booleans, numbers, _string_range(path, "true" if literal else "false", upward=upward)]
    if isinstance(literal, int | float):
        text = str(Decimal(literal) if isinstance(literal, int) else Decimal(java_double_to_string(literal)))
        return [
            _number_range(path, float(literal), upward=upward),
            _string_range(path, text, upward=upward),
            booleans,
        ]
    number = string_as_number(literal)
    return [
        _string_range(path, literal, upward=upward),
        numbers if number is None else _number_range(path, number, upward=upward),
        booleans,
    ]


def _number_range(path: str, number: float, *, upward: bool) -> _Range:
    prefix = class_prefix(path, ValueClass.NUMBER)
    bound = value_prefix(path, number)
    # Inclusive either way: distinct decimals may share a double, and the re-check sorts them out.
    return _Range(prefix, start=bound) if upward else _Range(prefix, stop=bound + b"\xff")


def _string_range(path: str, text: str, *, upward: bool) -> _Range:
    """Strings that compare above/below ``text`` in Java's UTF-16 order, as a code-point-ordered range.

    The two orders agree up to the first character at or above U+D800 (surrogates sort below U+E000 in
    UTF-16, above in code points), so the range is bounded by the prefix before that character and
    also takes every string extending that prefix.
    """
    safe = text
    for index, char in enumerate(text):
        if char >= "\ud800":
            safe = text[:index]
            break
    prefix = class_prefix(path, ValueClass.STRING)
    bound = string_prefix(path, safe)
    return _Range(prefix, start=bound) if upward else _Range(prefix, stop=bound + b"\xff")


# ---- sorting -----------------------------------------------------------------------------------------


def _pointer(field: str) -> tuple[str, ...]:
    return tuple(field.split("/"))


def _sort_value(view: dict[str, Any], field: str) -> Json:
    value = get_at(view, _pointer(field))
    return None if value is MISSING else value


def _sort_key(sort: tuple[SortKey, ...]) -> Callable[[str, dict[str, Any]], _SortToken]:
    """The sort key of a thing; the last sort key is always ``thingId`` (the effective sort ends there),
    taken from the stored ID so that it stays unique even if a view were to hide it."""
    keys = [(_pointer(k.field), k.descending) for k in sort[:-1]]
    id_descending = sort[-1].descending

    def key(thing_id: str, view: dict[str, Any]) -> _SortToken:
        tokens = [_token(get_at(view, pointer), descending) for pointer, descending in keys]
        tokens.append(_token(thing_id, id_descending))
        return tuple(tokens)

    return key


def _token(value: Json | Missing, descending: bool) -> _SortToken:
    """A tuple that orders like the value in MongoDB's sort (see the module docstring).

    Descending tokens negate everything so that all comparisons stay plain tuple comparisons (no
    Python-level comparator in the hot loop): strings and JSON texts become negated code sequences
    ending in 1, so a prefix sorts after its extensions.
    """
    if value is MISSING or value is None:
        return (0,)
    if isinstance(value, bool):
        rank, payload = 5, int(value)
        return (-rank, -payload) if descending else (rank, payload)
    if isinstance(value, int | float):
        return (-1, -value) if descending else (1, value)
    if isinstance(value, str):
        return (-2, (*(-ord(char) for char in value), 1)) if descending else (2, value)
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    rank = 3 if isinstance(value, dict) else 4
    return (-rank, (*(-byte for byte in text), 1)) if descending else (rank, text)


# ---- cursors -----------------------------------------------------------------------------------------


class _BadCursor(Exception):
    """Raised inside cursor decoding; always turned into the one public cursor error."""


def _digest(body: bytes) -> bytes:
    # Not a secret: a cursor is no credential (every page re-checks visibility). The checksum only makes
    # any altered cursor fail loudly instead of silently paging from somewhere else.
    return hashlib.blake2b(body, digest_size=_CURSOR_DIGEST_BYTES).digest()


def _invalid_cursor(description: str | None = None) -> InvalidInput:
    return InvalidInput(_CURSOR_INVALID_MESSAGE, description=description, error_code=OPTION_INVALID)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """What a cursor carries: the query it belongs to and where its last page ended."""

    filter: Node | None
    namespaces: frozenset[str] | None
    sort: tuple[SortKey, ...]
    values: list[Json]

    def encode(self) -> str:
        payload: dict[str, Any] = {
            "F": None if self.filter is None else format_rql(self.filter),
            "N": None if self.namespaces is None else sorted(self.namespaces),
            "S": [[key.field, key.descending] for key in self.sort],
            "V": self.values,
        }
        body = zlib.compress(orjson.dumps(payload), 9)
        return (
            base64.urlsafe_b64encode(bytes((_CURSOR_VERSION,)) + _digest(body) + body).rstrip(b"=").decode()
        )

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        """Read a cursor this module encoded; anything else is refused without explanation, as Ditto."""
        try:
            return cls._decode(text)
        except (
            _BadCursor,
            RqlSyntaxError,
            binascii.Error,
            zlib.error,
            orjson.JSONDecodeError,
            IndexError,
            KeyError,
            TypeError,
            ValueError,
        ):
            raise _invalid_cursor() from None

    @classmethod
    def _decode(cls, text: str) -> _Cursor:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        version, digest, body = raw[0], raw[1 : 1 + _CURSOR_DIGEST_BYTES], raw[1 + _CURSOR_DIGEST_BYTES :]
        if version != _CURSOR_VERSION or digest != _digest(body):
            raise _BadCursor
        inflater = zlib.decompressobj()
        data = inflater.decompress(body, _CURSOR_MAX_JSON_BYTES)
        if inflater.unconsumed_tail or not inflater.eof:
            raise _BadCursor
        payload = orjson.loads(data)
        filter_text, namespaces, sort, values = payload["F"], payload["N"], payload["S"], payload["V"]
        keys = tuple(SortKey(field, descending) for field, descending in sort)
        if (
            not (filter_text is None or isinstance(filter_text, str))
            or not (namespaces is None or all(isinstance(n, str) for n in namespaces))
            or not all(isinstance(k.field, str) and isinstance(k.descending, bool) for k in keys)
            or not keys
            or SearchOptions(sort=keys).effective_sort != keys
            or not isinstance(values, list)
            or len(values) != len(keys)
        ):
            raise _BadCursor
        node = None if filter_text is None else parse_filter(filter_text)
        return cls(node, None if namespaces is None else frozenset(namespaces), keys, values)

    def check_request(
        self,
        filter: Node | None,
        namespaces: frozenset[str] | None,
        options: SearchOptions,
    ) -> None:
        """Refuse a request whose filter, sort or namespaces differ from the cursor's (Ditto's
        ``ThingsSearchCursor.checkCursorValidity``); absent ones are taken from the cursor."""
        if filter is not None and (self.filter is None or format_rql(filter) != format_rql(self.filter)):
            raise _invalid_cursor(
                "The parameter 'filter' must not differ from the original query of the cursor."
            )
        if options.sort and options.effective_sort != self.sort:
            raise _invalid_cursor("The option 'sort' must not differ from the original query of the cursor.")
        if namespaces is not None and namespaces != self.namespaces:
            raise _invalid_cursor(
                "The parameter 'namespaces' must not differ from the original query of the cursor."
            )
