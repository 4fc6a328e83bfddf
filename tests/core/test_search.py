"""The search executor: planned results equal brute force, paging, cursors, namespaces, counts, visibility."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgetwin.core import search as search_module
from edgetwin.core.search import SearchPage, count, search, search_semantics
from edgetwin.errors import InvalidInput
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
    Limit,
    Lt,
    Ne,
    Node,
    Not,
    Or,
    RqlValue,
    SearchOptions,
    SortKey,
    TimeNow,
    TimeNowEpochMillis,
    compile_filter,
    parse_filter,
    parse_options,
)
from edgetwin.store import Store, WriteTxn
from edgetwin.store.keys import string_as_number
from edgetwin.store.things import decode_thing, put_thing
from edgetwin.twin.pointer import MISSING, get_at

NOW = "2024-05-01T10:00:00Z"
NOW_EPOCH_MILLIS = 1714557600000
OPTION_INVALID = "thing-search:search.option.invalid"

Thing = dict[str, Any]
Visible = Callable[[Thing], Thing | None]


# ---- helpers -----------------------------------------------------------------------------------------


def wipe(store: Store) -> None:
    def op(w: WriteTxn) -> None:
        for db in ("things", "index"):
            for key in [key for key, _ in w.items(db)]:
                w.delete(db, key)

    (outcome,) = store.commit_batch([op])
    assert outcome.error is None


@contextlib.contextmanager
def refilled(store: Store, things: list[Thing]) -> Iterator[Store]:
    """The shared scratch store holding exactly ``things`` (hypothesis examples reuse one environment)."""
    wipe(store)
    fill(store, things)
    yield store


def fill(store: Store, things: list[Thing]) -> None:
    def op(w: WriteTxn) -> None:
        for thing in things:
            put_thing(w, thing, previous=None)

    (outcome,) = store.commit_batch([op])
    assert outcome.error is None


def ids(page: SearchPage) -> list[str]:
    return [item["thingId"] for item in page.items]


def run(
    store: Store,
    filter_text: str | None = None,
    options: str = "",
    namespaces: frozenset[str] | None = None,
    visible: Visible | None = None,
) -> SearchPage:
    with store.read() as r:
        return search(
            r,
            filter=None if filter_text is None else parse_filter(filter_text),
            namespaces=namespaces,
            options=parse_options(options) if options else SearchOptions(),
            now=NOW,
            visible=visible,
        )


def count_of(
    store: Store,
    filter_text: str | None = None,
    namespaces: frozenset[str] | None = None,
    visible: Visible | None = None,
) -> int:
    with store.read() as r:
        return count(
            r,
            filter=None if filter_text is None else parse_filter(filter_text),
            namespaces=namespaces,
            now=NOW,
            visible=visible,
        )


def page_through(
    store: Store,
    filter_node: Node | None,
    namespaces: frozenset[str] | None,
    sort: tuple[SortKey, ...],
    size: int | None,
    visible: Visible | None = None,
    *,
    repeat_query: bool = True,
) -> list[str]:
    """Every thing ID of a search, following cursors until the last page."""
    seen: list[str] = []
    options = SearchOptions(sort=sort, size=size)
    with store.read() as r:
        for _ in range(1000):
            page = search(
                r, filter=filter_node, namespaces=namespaces, options=options, now=NOW, visible=visible
            )
            seen += ids(page)
            if page.cursor is None:
                return seen
            assert re.fullmatch(r"[A-Za-z0-9_-]+", page.cursor)
            assert parse_options(f"cursor({page.cursor})").cursor == page.cursor
            assert page.items, "a cursor is only given when the page has items"
            if repeat_query:
                options = SearchOptions(sort=sort, size=size, cursor=page.cursor)
            else:
                filter_node, namespaces, options = None, None, SearchOptions(size=size, cursor=page.cursor)
    raise AssertionError("paging did not end")


# ---- the reference: brute force over every thing, with the documented order --------------------------


def _rank(value: Any) -> int:
    if value is MISSING or value is None:
        return 0
    if isinstance(value, bool):
        return 5
    if isinstance(value, int | float):
        return 1
    if isinstance(value, str):
        return 2
    return 3 if isinstance(value, dict) else 4


def _compare_values(a: Any, b: Any) -> int:
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return rank_a - rank_b
    if rank_a == 0:
        return 0
    if rank_a in (3, 4):
        a, b = orjson.dumps(a, option=orjson.OPT_SORT_KEYS), orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    return int(a > b) - int(a < b)


def reference(
    things: list[Thing],
    filter_node: Node | None,
    namespaces: frozenset[str] | None,
    sort: tuple[SortKey, ...],
    visible: Visible | None = None,
) -> list[str]:
    predicate = None if filter_node is None else compile_filter(search_semantics(filter_node), now=NOW)
    matches = []
    for thing in things:
        full = {**thing, "_namespace": thing["thingId"].partition(":")[0]}
        if namespaces is not None and full["_namespace"] not in namespaces:
            continue
        view = full if visible is None else visible(full)
        if view is not None and (predicate is None or predicate(view)):
            matches.append(view)

    def compare(x: Thing, y: Thing) -> int:
        for key in SearchOptions(sort=sort).effective_sort:
            pointer = tuple(key.field.split("/"))
            result = _compare_values(get_at(x, pointer), get_at(y, pointer))
            if result:
                return -result if key.descending else result
        return 0

    return [view["thingId"] for view in sorted(matches, key=functools.cmp_to_key(compare))]


def hide_b(thing: Thing) -> Thing | None:
    """A visibility hook: things named ``…b`` are invisible, ``attributes/b`` is unreadable."""
    if thing["thingId"].endswith("b"):
        return None
    view = dict(thing)
    if isinstance(view.get("attributes"), dict):
        view["attributes"] = {k: v for k, v in view["attributes"].items() if k != "b"}
    return view


# ---- strategies --------------------------------------------------------------------------------------

THING_IDS = ["ns1:a", "ns1:b", "ns1:a0", "ns1:\ue000", "ns1:\U0001f600", "ns2:a", "ns2:cb", ":x", "ns3:z"]
STRINGS = [
    "",
    "a",
    "ab",
    "A",
    "b",
    "20",
    "2.5",
    "+3",
    "1e1",
    "true",
    "false",
    "a\x00",
    "\ue000",
    "\U0001f600",
    "x" * 70,
    "x" * 70 + "y",
    NOW,
    str(NOW_EPOCH_MILLIS),
]
NUMBERS: list[int | float] = [
    -1,
    0,
    3,
    20,
    20.0,
    2.5,
    -0.0,
    2**53,
    2**53 + 1,
    2**63 - 1,
    1e300,
    NOW_EPOCH_MILLIS,
]
scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(NUMBERS), st.sampled_from(STRINGS))
values = st.one_of(
    scalars,
    scalars,
    st.lists(scalars | st.dictionaries(st.sampled_from("ab"), scalars, max_size=2), max_size=3),
    st.dictionaries(st.sampled_from("ab"), scalars, max_size=2),
)
features = st.dictionaries(
    st.sampled_from(["lamp", "fan"]),
    st.fixed_dictionaries(
        {"properties": st.dictionaries(st.sampled_from(["on", "a"]), values, max_size=2)},
        optional={"definition": st.lists(st.sampled_from(["ns:lamp:1", "a"]), min_size=1, max_size=2)},
    ),
    max_size=2,
)


def thing_of(thing_id: str) -> st.SearchStrategy[Thing]:
    return st.fixed_dictionaries(
        {
            "thingId": st.just(thing_id),
            "policyId": st.sampled_from(["ns1:p", "ns2:p"]),
            "_revision": st.sampled_from([1, 2, 3, 20]),
            "_created": st.sampled_from(["2024-01-01T00:00:00Z", NOW]),
            "_modified": st.sampled_from(["2024-01-01T00:00:00Z", NOW, "2025-01-01T00:00:00Z"]),
        },
        optional={
            "definition": st.sampled_from([None, "ns:def:1", "a"]),
            "attributes": st.fixed_dictionaries(
                {},
                optional={
                    "a": values,
                    "b": values,
                    "tags": st.lists(scalars, max_size=3),
                    "obj": values,
                    "rooms": st.lists(
                        st.dictionaries(st.sampled_from("ab"), scalars, max_size=2), max_size=2
                    ),
                },
            ),
            "features": features,
        },
    )


THING_STRATEGIES = {thing_id: thing_of(thing_id) for thing_id in THING_IDS}
chosen_ids = st.lists(st.sampled_from(THING_IDS), unique=True, min_size=1, max_size=len(THING_IDS))

FIELDS = [
    "thingId",
    "policyId",
    "definition",
    "_namespace",
    "_revision",
    "_created",
    "_modified",
    "attributes/a",
    "attributes/b",
    "attributes/tags",
    "attributes/obj",
    "attributes/obj/a",
    "attributes/rooms/a",
    "attributes/missing",
    "features/lamp/properties/on",
    "features/lamp/properties/a",
    "features/*/properties/on",
    "features/lamp/definition",
    "_metadata/a",
    "attributes/" + "k" * 130,
]
WHOLE_FIELDS = [*FIELDS, "features/lamp", "features/*", "features/fan/properties", "features/lamp/properties"]
literals: st.SearchStrategy[RqlValue] = st.one_of(
    scalars, st.just(TimeNow()), st.just(TimeNowEpochMillis()), st.sampled_from(THING_IDS)
)
patterns = st.sampled_from(
    [
        "*",
        "a*",
        "*b",
        "a?",
        "?",
        "A*",
        "",
        "2*",
        "20",
        "x" * 70 + "*",
        "\ue000*",
        "\U0001f600*",
        "a\x00*",
        "ns1:*",
    ]
)
COMPARISONS: list[Callable[[str, RqlValue], Node]] = [Eq, Ne, Gt, Ge, Lt, Le]


def _leaves(
    fields: st.SearchStrategy[str], whole_fields: st.SearchStrategy[str], values: st.SearchStrategy[RqlValue]
) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(lambda kind, f, v: kind(f, v), st.sampled_from(COMPARISONS), fields, values),
        st.builds(In, fields, st.lists(values, min_size=1, max_size=3).map(tuple)),
        st.builds(Like, fields, patterns),
        st.builds(ILike, fields, patterns),
        st.builds(Exists, whole_fields),
        st.builds(Empty, whole_fields),
    )


def _trees(leaves: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda kids: And(tuple(kids))),
            st.lists(children, min_size=1, max_size=3).map(lambda kids: Or(tuple(kids))),
            children.map(Not),
        ),
        max_leaves=5,
    )


def _scalars_in(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for child in value.values():
            yield from _scalars_in(child)
    elif isinstance(value, list):
        for child in value:
            yield from _scalars_in(child)
    else:
        yield value


def _paths_in(value: Any, path: str) -> Iterator[str]:
    """RQL fields present in a document: objects add segments, arrays of objects do not."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths_in(child, f"{path}/{key}")
    elif isinstance(value, list):
        for child in value:
            if isinstance(child, dict):
                for key, grandchild in child.items():
                    yield from _paths_in(grandchild, f"{path}/{key}")


def _fields_of(thing: Thing) -> tuple[list[str], list[str]]:
    """(fields a comparison may name, fields only exists/empty may name) present in a thing."""
    compared = [path for key in ("attributes",) if key in thing for path in _paths_in(thing[key], key)][1:]
    whole = []
    for feature_id, feature in thing.get("features", {}).items():
        whole += [f"features/{feature_id}", f"features/{feature_id}/properties"]
        compared += list(_paths_in(feature.get("properties", {}), f"features/{feature_id}/properties"))[1:]
        if "definition" in feature:
            compared.append(f"features/{feature_id}/definition")
    return compared, whole


def _leaf_pairs(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(field, scalar) for every scalar RQL reaches in a document (array elements under the array's path)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaf_pairs(child, f"{path}/{key}")
    elif isinstance(value, list):
        for child in value:
            if not isinstance(child, list):
                yield from _leaf_pairs(child, path)
    else:
        yield path, value


def _twins(value: Any) -> list[Any]:
    """The value and literals Ditto finds equal to it by coercion, so that coercion paths get exercised."""
    if isinstance(value, bool):
        return [value, "true" if value else "false"]
    if isinstance(value, int | float):
        return [
            value,
            str(value),
            f"{value:.1f}" if isinstance(value, int) and abs(value) < 1e6 else str(value),
        ]
    if isinstance(value, str):
        twins: list[Any] = [value, value + "x", value[:-1]]
        number = string_as_number(value)
        if number is not None:
            twins += [number, int(number)] if number.is_integer() else [number]
        if value in ("true", "false"):
            twins.append(value == "true")
        return twins
    return [value]


GENERIC_LEAVES = _leaves(st.sampled_from(FIELDS), st.sampled_from(WHOLE_FIELDS), literals)
_LEAF_KINDS = [*COMPARISONS, In, Like, ILike, Exists, Empty]


@st.composite
def cases(draw: st.DrawFn, *, nested: bool = True) -> tuple[list[Thing], Node]:
    """Things and a filter whose leaves mostly aim at fields and values those things have.

    Drawn by hand rather than with ``st.recursive``/``flatmap`` over per-example strategies: building
    strategies per example costs more than running the search.
    """
    things = [draw(THING_STRATEGIES[thing_id]) for thing_id in draw(chosen_ids)]
    compared = [field for thing in things for field in _fields_of(thing)[0]]
    whole = [field for thing in things for field in _fields_of(thing)[1]]
    pairs = [
        pair
        for thing in things
        for root in ("attributes", "features")
        for pair in _leaf_pairs(thing.get(root, {}), root)
    ]

    def pick(options: list[Any]) -> Any:
        return options[draw(st.integers(0, len(options) - 1))]

    def targeted_leaf() -> Node:
        field, value = pick(pairs)
        twins = _twins(value)
        kind = pick(_LEAF_KINDS)
        if kind is In:
            return In(field, tuple(pick(twins) for _ in range(draw(st.integers(1, 2)))))
        if kind in (Like, ILike):
            text = value if isinstance(value, str) else str(value)
            pattern: str = pick([text[:1] + "*", text.upper(), text, "*" + text[-1:], text[:1] + "?"])
            return kind(field, pattern)  # type: ignore[no-any-return]
        if kind in (Exists, Empty):
            return kind(pick([field, *whole]) if whole else field)  # type: ignore[no-any-return]
        return kind(field, pick([*twins, pick(present)]))  # type: ignore[no-any-return]

    present = [value for _, value in pairs] or [None]
    fields_here = compared + whole

    def leaf() -> Node:
        choice = draw(st.integers(0, 3))
        if choice <= 1 and pairs:
            return targeted_leaf()
        node = draw(GENERIC_LEAVES)
        if choice == 2 and fields_here and not isinstance(node, Exists | Empty):
            # the generic operator and literal on a field this example's things have
            return dataclasses.replace(node, field=pick(compared or ["attributes/a"]))
        return node

    def tree(depth: int) -> Node:
        kind = draw(st.integers(0, 4)) if nested and depth < 3 else 0
        if kind <= 1:
            return leaf()
        if kind == 4:
            return Not(tree(depth + 1))
        children = tuple(tree(depth + 1) for _ in range(draw(st.integers(1, 3))))
        return And(children) if kind == 2 else Or(children)

    return things, tree(0)


SORT_FIELDS = [
    "thingId",
    "attributes/a",
    "attributes/b",
    "attributes/obj",
    "attributes/tags",
    "_revision",
    "_namespace",
    "features/lamp/properties/on",
]
sorts = st.lists(st.builds(SortKey, st.sampled_from(SORT_FIELDS), st.booleans()), max_size=2).map(tuple)
namespace_sets = st.none() | st.frozensets(st.sampled_from(["ns1", "ns2", "", "nope"]), max_size=2)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path, map_size_mb=64, max_map_size_mb=256) as s:
        yield s


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with Store.open(tmp_path_factory.mktemp("scratch"), map_size_mb=8, max_map_size_mb=64) as s:
        yield s


@pytest.fixture
def many(store: Store) -> Store:
    """200 things in two namespaces, attributes/n = 0..199, attributes/kind cycling through 4 values."""
    kinds = ["lamp", "fan", "door", "pump"]
    fill(
        store,
        [
            {
                "thingId": f"ns{i % 2}:t{i:03d}",
                "policyId": "ns0:p",
                "attributes": {"n": i, "kind": kinds[i % 4], "tags": ["x", f"t{i % 10}"]},
                "_revision": 1,
                "_created": NOW,
                "_modified": NOW,
            }
            for i in range(200)
        ],
    )
    return store


# ---- the properties ----------------------------------------------------------------------------------


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=cases(),
    no_filter=st.booleans(),
    namespaces=namespace_sets,
    sort=sorts,
    size=st.none() | st.integers(1, 4),
    budget=st.sampled_from([None, 0, 1, 3]),
    hook=st.sampled_from([None, hide_b]),
    repeat_query=st.booleans(),
)
def test_planned_search_equals_brute_force(
    scratch: Store,
    case: tuple[list[Thing], Node],
    no_filter: bool,
    namespaces: frozenset[str] | None,
    sort: tuple[SortKey, ...],
    size: int | None,
    budget: int | None,
    hook: Visible | None,
    repeat_query: bool,
) -> None:
    things, filter_node = case[0], None if no_filter else case[1]
    expected = reference(things, filter_node, namespaces, sort, hook)
    patches = (
        [
            mock.patch.object(search_module, "_MIN_BUDGET", budget),
            mock.patch.object(search_module, "_FULL_BUDGET_FACTOR", 0),
        ]
        if budget is not None
        else []
    )
    with refilled(scratch, things) as store:
        for patch in patches:
            patch.start()
        try:
            got = page_through(store, filter_node, namespaces, sort, size, hook, repeat_query=repeat_query)
            with store.read() as r:
                counted = count(r, filter=filter_node, namespaces=namespaces, now=NOW, visible=hook)
        finally:
            for patch in patches:
                patch.stop()
    assert got == expected
    assert counted == len(expected)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(nested=False) | cases())
def test_candidates_are_a_superset_of_the_matches(scratch: Store, case: tuple[list[Thing], Node]) -> None:
    things, filter_node = case
    exact = search_semantics(filter_node)
    expected = set(reference(things, filter_node, None, ()))
    with refilled(scratch, things) as store, store.read() as r:
        candidates = search_module._Planner(r, NOW, 10**9).candidates(exact)
    if candidates is not None:
        assert expected <= candidates


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=cases(),
    sort=sorts,
    offset=st.integers(0, 4),
    size=st.integers(0, 4),
)
def test_limit_pages_equal_brute_force(
    scratch: Store, case: tuple[list[Thing], Node], sort: tuple[SortKey, ...], offset: int, size: int
) -> None:
    things, filter_node = case
    expected = reference(things, filter_node, None, sort)
    with refilled(scratch, things) as store, store.read() as r:
        page = search(
            r,
            filter=filter_node,
            namespaces=None,
            options=SearchOptions(sort=sort, limit=Limit(offset, size)),
            now=NOW,
        )
    assert ids(page) == expected[offset : offset + size]
    assert (page.cursor is not None) == (len(expected) > offset + size and size > 0)


# ---- every leaf over a value domain (the coercion paths, exhaustively) ---------------------------------

DOMAIN: list[Any] = [
    *[None, True, False, -1, 0, 3, 20, 20.0, 2.5, -0.0, 2**53, 2**53 + 1, 2**63 - 1, 1e300, -1e300],
    *["", "a", "ab", "A", "b", "20", "20.0", "2.5", "+3", "1e1", "true", "false", "True", "abc", "a\x00"],
    *[
        "\ue000",
        "\U0001f600",
        "\U0001f600a",
        "x" * 70,
        "x" * 70 + "y",
        "-5",
        "3",
        "25",
        "-",
        "z",
        "\u0662\u0660",
    ],
    *[NOW, str(NOW_EPOCH_MILLIS), "1e99999"],
]
DOC_ONLY: list[Any] = [[], {}, [1, "x"], {"a": 1}, [[1]], [True, "20"], [{"a": 3}], [None]]


@pytest.fixture(scope="module")
def domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, list[Thing]]]:
    things: list[Thing] = [{"thingId": "ns:absent", "attributes": {}}]
    things += [
        {"thingId": f"ns:v{i:02d}", "attributes": {"v": value}} for i, value in enumerate(DOMAIN + DOC_ONLY)
    ]
    with Store.open(tmp_path_factory.mktemp("domain"), map_size_mb=8, max_map_size_mb=64) as store:
        fill(store, things)
        yield store, things


def _domain_leaves() -> Iterator[Node]:
    field = "attributes/v"
    for literal in [*DOMAIN, TimeNow(), TimeNowEpochMillis()]:
        for kind in COMPARISONS:
            yield kind(field, literal)
        yield In(field, (literal,))
        yield In(field, (literal, "20", None))
        if isinstance(literal, str):
            for pattern in {
                literal,
                literal[:1] + "*",
                "*" + literal[-1:],
                literal + "?",
                literal.upper() + "*",
            }:
                yield Like(field, pattern)
                yield ILike(field, pattern)
    for path in (field, "attributes/v/a", "attributes"):
        yield Exists(path)
        yield Empty(path)


@pytest.mark.parametrize("node", list(_domain_leaves()), ids=repr)
def test_every_leaf_over_a_value_domain(domain: tuple[Store, list[Thing]], node: Node) -> None:
    store, things = domain
    expected = reference(things, node, None, ())
    with store.read() as r:
        candidates = search_module._Planner(r, NOW, 10**9).candidates(search_semantics(node))
        page = search(r, filter=node, namespaces=None, options=SearchOptions(size=200), now=NOW)
    if candidates is not None:
        assert set(expected) <= candidates
    assert ids(page) == expected


# ---- planning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "indexable"),
    [
        ('eq(attributes/kind,"fan")', True),
        ("in(attributes/n,1,2,3)", True),
        ("gt(attributes/n,10)", True),
        ('like(attributes/kind,"f*")', True),
        ('ilike(attributes/kind,"F*")', True),
        ("exists(attributes/tags)", True),
        ("exists(features/lamp)", True),
        ('ne(attributes/kind,"fan")', True),  # as exists(attributes/kind) + re-check
        ('and(eq(attributes/kind,"fan"),not(eq(attributes/n,1)))', True),
        ('or(eq(attributes/kind,"fan"),gt(_revision,3))', True),
        ('or(eq(attributes/kind,"fan"),not(eq(attributes/n,1)))', False),
        ('not(eq(attributes/kind,"fan"))', False),
        ("empty(attributes/kind)", False),
        ("eq(features/*/properties/on,true)", False),
        ("eq(_metadata/a,1)", False),
        ("lt(_modified,time:now)", True),
        ("lt(_modified,time:now_epoch_millis)", True),
    ],
)
def test_what_the_planner_can_index(many: Store, text: str, indexable: bool) -> None:
    with many.read() as r:
        candidates = search_module._Planner(r, NOW, 10**9).candidates(search_semantics(parse_filter(text)))
    assert (candidates is not None) == indexable


class _Decodes:
    def __init__(self) -> None:
        self.calls = 0
        self._decode = decode_thing

    def __call__(self, raw: bytes) -> dict[str, Any]:
        self.calls += 1
        return self._decode(raw)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> _Decodes:
    counter = _Decodes()
    monkeypatch.setattr(search_module, "decode_thing", counter)
    return counter


def test_selective_filters_decode_only_candidates(many: Store, decodes: _Decodes) -> None:
    assert ids(run(many, "eq(attributes/n,42)")) == ["ns0:t042"]
    assert decodes.calls == 1
    decodes.calls = 0
    assert ids(run(many, 'and(eq(attributes/kind,"fan"),in(attributes/n,1,2,5))')) == ["ns1:t001", "ns1:t005"]
    assert decodes.calls <= 3
    decodes.calls = 0
    assert ids(run(many, "and(ge(attributes/n,100),lt(attributes/n,103))")) == [
        "ns0:t100",
        "ns0:t102",
        "ns1:t101",
    ]
    # range bounds are inclusive in the index (other decimals share 103's double), the re-check is exact
    assert decodes.calls == 4
    decodes.calls = 0
    assert count_of(many, 'like(attributes/tags,"t7*")') == 20
    assert decodes.calls == 20


def test_match_all_page_stops_after_one_more_than_the_page(many: Store, decodes: _Decodes) -> None:
    page = run(many, options="size(25)")
    assert ids(page) == sorted(f"ns{i % 2}:t{i:03d}" for i in range(200))[:25]
    assert page.cursor is not None
    assert decodes.calls == 26


def test_broad_filters_scan_in_id_order_and_stop_early(many: Store, decodes: _Decodes) -> None:
    page = run(many, "exists(attributes/n)", "size(5)")
    assert len(page.items) == 5
    assert decodes.calls == 6


def test_counting_everything_decodes_nothing(many: Store, decodes: _Decodes) -> None:
    assert count_of(many) == 200
    assert count_of(many, namespaces=frozenset({"ns1"})) == 100
    assert count_of(many, namespaces=frozenset({"ns1", "ns0", "x"})) == 200
    assert decodes.calls == 0


# ---- semantics ---------------------------------------------------------------------------------------


def test_ne_matches_only_things_that_have_the_field(store: Store) -> None:
    fill(
        store,
        [
            {"thingId": "ns:absent", "attributes": {}},
            {"thingId": "ns:one", "attributes": {"x": 1}},
            {"thingId": "ns:two", "attributes": {"x": 2}},
            {"thingId": "ns:null", "attributes": {"x": None}},
        ],
    )
    assert ids(run(store, "ne(attributes/x,1)")) == ["ns:null", "ns:two"]
    assert ids(run(store, "not(ne(attributes/x,1))")) == ["ns:absent", "ns:one"]
    # the in-memory evaluator would also match the absent field
    assert compile_filter(parse_filter("ne(attributes/x,1)"), now=NOW)({"attributes": {}})


def test_ditto_coercions_are_kept(store: Store) -> None:
    fill(
        store,
        [
            {"thingId": "ns:num", "attributes": {"v": 20}},
            {"thingId": "ns:numstr", "attributes": {"v": "20.0"}},
            {"thingId": "ns:word", "attributes": {"v": "abc"}},
            {"thingId": "ns:bool", "attributes": {"v": True}},
            {"thingId": "ns:list", "attributes": {"v": [1, "x", 30]}},
        ],
    )
    # a string literal meets a number numerically, but another string as text
    assert ids(run(store, 'eq(attributes/v,"20")')) == ["ns:num"]
    assert ids(run(store, "eq(attributes/v,20)")) == ["ns:num", "ns:numstr"]
    assert ids(run(store, 'eq(attributes/v,"true")')) == ["ns:bool"]
    # mixed types compare as text: "abc" > "25" and "true" > "25"; 30 in the list is > 25 numerically
    assert ids(run(store, "gt(attributes/v,25)")) == ["ns:bool", "ns:list", "ns:word"]
    assert ids(run(store, 'eq(attributes/v,"x")')) == ["ns:list"]


def test_strings_compare_in_java_utf16_order(store: Store) -> None:
    # U+E000 is below U+1F600 in code points but above its surrogates in UTF-16 (Java's compareTo).
    fill(
        store,
        [
            {"thingId": "ns:private", "attributes": {"s": "\ue000"}},
            {"thingId": "ns:emoji", "attributes": {"s": "\U0001f600"}},
        ],
    )
    assert ids(run(store, 'gt(attributes/s,"\U0001f600")')) == ["ns:private"]
    assert ids(run(store, 'lt(attributes/s,"\ue000")')) == ["ns:emoji"]


def test_exists_finds_objects_empty_containers_and_null(store: Store) -> None:
    fill(
        store,
        [
            {"thingId": "ns:obj", "attributes": {"o": {"deep": {"x": 1}}}},
            {"thingId": "ns:emptyobj", "attributes": {"o": {}}},
            {"thingId": "ns:emptylist", "attributes": {"o": []}},
            {"thingId": "ns:null", "attributes": {"o": None}},
            {"thingId": "ns:nested", "attributes": {"o": [[1]]}},
            {"thingId": "ns:none", "attributes": {"other": 1}},
            {"thingId": "ns:longkey", "attributes": {"o": {"k" * 200: 1}}},
        ],
    )
    assert ids(run(store, "exists(attributes/o)")) == [
        "ns:emptylist",
        "ns:emptyobj",
        "ns:longkey",
        "ns:nested",
        "ns:null",
        "ns:obj",
    ]
    assert ids(run(store, "exists(attributes/o/deep)")) == ["ns:obj"]
    assert ids(run(store, f"exists(attributes/o/{'k' * 200})")) == ["ns:longkey"]


def test_sort_order_of_mixed_and_missing_values(store: Store) -> None:
    values = {
        "null": None,
        "num": 3,
        "str": "a",
        "obj": {"a": 1},
        "arr": [1],
        "bool": False,
        "big": 2**53 + 1,
    }
    fill(store, [{"thingId": f"ns:{name}", "attributes": {"v": value}} for name, value in values.items()])
    fill(
        store,
        [{"thingId": "ns:missing", "attributes": {}}, {"thingId": "ns:small", "attributes": {"v": 2**53}}],
    )
    ascending = [
        "ns:missing",
        "ns:null",
        "ns:num",
        "ns:small",
        "ns:big",
        "ns:str",
        "ns:obj",
        "ns:arr",
        "ns:bool",
    ]
    assert ids(run(store, options="sort(+attributes/v)")) == ascending
    assert ids(run(store, options="sort(-attributes/v)")) == [
        "ns:bool",
        "ns:arr",
        "ns:obj",
        "ns:str",
        "ns:big",
        "ns:small",
        "ns:num",
        "ns:missing",  # absent and null tie; the appended +thingId decides
        "ns:null",
    ]
    assert ids(run(store, options="sort(-thingId)")) == sorted(ascending, reverse=True)


def test_time_placeholders(store: Store) -> None:
    fill(
        store,
        [
            {"thingId": "ns:old", "_modified": "2020-01-01T00:00:00Z", "attributes": {"ms": 1}},
            {
                "thingId": "ns:new",
                "_modified": "2030-01-01T00:00:00Z",
                "attributes": {"ms": NOW_EPOCH_MILLIS + 1},
            },
        ],
    )
    assert ids(run(store, "lt(_modified,time:now)")) == ["ns:old"]
    assert ids(run(store, "gt(attributes/ms,time:now_epoch_millis)")) == ["ns:new"]


# ---- paging and cursors ------------------------------------------------------------------------------


def test_pages_follow_cursors_to_the_end(many: Store) -> None:
    expected = sorted((f"ns{i % 2}:t{i:03d}" for i in range(200) if i % 4 == 1), reverse=True)
    got = page_through(many, parse_filter('eq(attributes/kind,"fan")'), None, (SortKey("thingId", True),), 7)
    assert got == expected
    by_n = page_through(many, parse_filter("lt(attributes/n,50)"), None, (SortKey("attributes/n", True),), 6)
    assert by_n == [f"ns{i % 2}:t{i:03d}" for i in range(49, -1, -1)]


def test_default_and_maximum_page_size(many: Store) -> None:
    assert len(run(many).items) == 25
    assert len(run(many, options="size(200)").items) == 200
    assert run(many, options="size(200)").cursor is None
    assert run(many, options="size(199)").cursor is not None


def test_last_page_and_empty_results_have_no_cursor(many: Store) -> None:
    assert run(many, "lt(attributes/n,3)", "size(3)").cursor is None
    assert run(many, "lt(attributes/n,-3)") == SearchPage(items=[], cursor=None)


def test_items_are_full_things_with_hidden_fields(many: Store) -> None:
    (item,) = run(many, "eq(attributes/n,7)").items
    assert item == {
        "thingId": "ns1:t007",
        "policyId": "ns0:p",
        "attributes": {"n": 7, "kind": "pump", "tags": ["x", "t7"]},
        "_revision": 1,
        "_created": NOW,
        "_modified": NOW,
        "_namespace": "ns1",
    }


def _cursor(store: Store, filter_text: str = "gt(attributes/n,10)", options: str = "size(5)") -> str:
    cursor = run(store, filter_text, options).cursor
    assert cursor is not None
    return cursor


def test_cursor_may_omit_or_repeat_the_query(many: Store) -> None:
    fans = 'eq(attributes/kind,"fan")'
    cursor = _cursor(many, fans, "sort(-attributes/n),size(5)")
    repeated = run(many, fans, f"sort(-attributes/n),size(5),cursor({cursor})")
    omitted = run(many, None, f"size(5),cursor({cursor})")
    assert ids(repeated) == ids(omitted) == [f"ns1:t{i:03d}" for i in range(177, 157, -4)]
    explicit_default = run(many, None, f"sort(-attributes/n,+thingId),cursor({cursor})")
    assert ids(explicit_default)[:5] == ids(repeated)


@pytest.mark.parametrize(
    ("filter_text", "options", "namespaces", "description"),
    [
        ("gt(attributes/n,11)", "", None, "filter"),
        ("gt(attributes/n,10)", "sort(-thingId),", None, "sort"),
        (None, "sort(+attributes/n),", None, "sort"),
        (None, "", frozenset({"ns0"}), "namespaces"),
    ],
)
def test_cursor_with_another_query_is_refused(
    many: Store, filter_text: str | None, options: str, namespaces: frozenset[str] | None, description: str
) -> None:
    cursor = _cursor(many)
    with pytest.raises(InvalidInput) as caught:
        run(many, filter_text, f"{options}cursor({cursor})", namespaces)
    assert caught.value.error_code == OPTION_INVALID
    assert caught.value.status == 400
    assert description in (caught.value.description or "")


def test_cursor_remembers_namespaces(many: Store) -> None:
    cursor = run(many, None, "sort(+attributes/n),size(3)", frozenset({"ns1"})).cursor
    assert cursor is not None
    page = run(many, None, f"size(3),cursor({cursor})")
    assert ids(page) == ["ns1:t007", "ns1:t009", "ns1:t011"]
    assert ids(run(many, None, f"size(3),cursor({cursor})", frozenset({"ns1"}))) == ids(page)


def test_altered_or_foreign_cursors_are_refused(many: Store) -> None:
    cursor = _cursor(many)
    altered = [
        cursor[:-1] + ("A" if cursor[-1] != "A" else "B"),
        cursor[:10] + ("x" if cursor[10] != "x" else "y") + cursor[11:],
        cursor[:-4],
        cursor + "AAAA",
        "garbage",
        "A",
        "_-_-",
    ]
    for text in altered:
        with pytest.raises(InvalidInput) as caught:
            run(many, None, f"cursor({text})")
        assert caught.value.error_code == OPTION_INVALID, text
        assert str(caught.value) == "The option 'cursor' is not valid for the search request."


def test_cursor_and_limit_together_are_refused(many: Store) -> None:
    with many.read() as r, pytest.raises(InvalidInput, match="must not be used together") as caught:
        search(
            r,
            filter=None,
            namespaces=None,
            options=SearchOptions(cursor=_cursor(many), limit=Limit(0, 5)),
            now=NOW,
        )
    assert caught.value.error_code == OPTION_INVALID


def test_limit_pages(many: Store) -> None:
    everything = sorted(f"ns{i % 2}:t{i:03d}" for i in range(200))
    page = run(many, options="limit(10,5)")
    assert ids(page) == everything[10:15]
    assert page.cursor is not None  # more exist: the HTTP layer answers nextPageOffset 15
    assert run(many, options="limit(195,10)").cursor is None
    assert ids(run(many, options="limit(195,10)")) == everything[195:]


# ---- namespaces, counts and visibility ---------------------------------------------------------------


def test_namespaces_restrict(many: Store) -> None:
    page = run(many, "lt(attributes/n,6)", namespaces=frozenset({"ns1"}))
    assert ids(page) == ["ns1:t001", "ns1:t003", "ns1:t005"]
    assert ids(run(many, "lt(attributes/n,6)", namespaces=frozenset())) == []
    assert ids(run(many, namespaces=frozenset({"nope"}))) == []
    assert count_of(many, "lt(attributes/n,6)", frozenset({"ns0"})) == 3


def test_counts(many: Store) -> None:
    assert count_of(many, 'eq(attributes/kind,"fan")') == 50
    assert count_of(many, 'ne(attributes/kind,"fan")') == 150
    assert count_of(many, "exists(attributes/nothing)") == 0
    assert count_of(many, "not(exists(attributes/nothing))") == 200


def test_visible_hides_things_and_fields(many: Store) -> None:
    def visible(thing: Thing) -> Thing | None:
        if thing["attributes"]["n"] % 2:
            return None
        return {key: value for key, value in thing.items() if key != "attributes"} | {
            "attributes": {"n": thing["attributes"]["n"]}
        }

    page = run(many, "lt(attributes/n,5)", visible=visible)
    assert ids(page) == ["ns0:t000", "ns0:t002", "ns0:t004"]
    assert all(set(item["attributes"]) == {"n"} for item in page.items)
    assert count_of(many, visible=visible) == 100
    assert count_of(many, "lt(attributes/n,5)", visible=visible) == 3
    # a filter on a field the caller cannot read matches nothing
    assert count_of(many, 'eq(attributes/kind,"lamp")', visible=visible) == 0
    assert count_of(many, 'eq(attributes/kind,"lamp")') == 50
