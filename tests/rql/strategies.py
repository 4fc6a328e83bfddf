"""Hypothesis strategies for RQL trees, thing documents and search options.

Two families:

* ``any_nodes()``: every tree the parser can produce, with hostile field keys and strings, for the
  print/parse round trip.
* ``domain_nodes()`` / ``domain_docs()``: trees and documents over a small value domain chosen so that
  filters actually hit documents and a simple reference evaluator can be obviously right: ASCII
  strings, small integers and quarter-step decimals (whose Java ``Double.toString`` is Python's ``repr``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
)

COMPARISONS = (Eq, Ne, Gt, Ge, Lt, Le)

# ---- any tree ----------------------------------------------------------------------------------------

# Keys may hold anything but '/' (the segment separator), RQL's own punctuation included.
_KEYS = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=6)
_SEGMENTS = st.lists(_KEYS, min_size=1, max_size=3).map("/".join)
_FEATURE_IDS = _KEYS | st.just("*")

ANY_FIELDS: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(
        ["thingId", "policyId", "_namespace", "_revision", "_created", "_modified", "definition"]
    ),
    _SEGMENTS.map("attributes/{}".format),
    _SEGMENTS.map("_metadata/{}".format),
    st.builds("features/{}/properties/{}".format, _FEATURE_IDS, _SEGMENTS),
    st.builds("features/{}/desiredProperties/{}".format, _FEATURE_IDS, _SEGMENTS),
    _FEATURE_IDS.map("features/{}/definition".format),
)
WHOLE_FEATURE_FIELDS: st.SearchStrategy[str] = ANY_FIELDS | st.builds(
    "features/{}{}".format, _FEATURE_IDS, st.sampled_from(["", "/properties", "/desiredProperties"])
)
ANY_VALUES: st.SearchStrategy[RqlValue] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8")),
    st.just(TimeNow()),
    st.just(TimeNowEpochMillis()),
)


def _leaves(
    fields: st.SearchStrategy[str],
    whole_feature_fields: st.SearchStrategy[str],
    values: st.SearchStrategy[RqlValue],
    patterns: st.SearchStrategy[str],
) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(
            lambda kind, field, value: kind(field, value), st.sampled_from(COMPARISONS), fields, values
        ),
        st.builds(Like, fields, patterns),
        st.builds(ILike, fields, patterns),
        st.builds(In, fields, st.lists(values, min_size=1, max_size=3).map(tuple)),
        st.builds(Exists, whole_feature_fields),
        st.builds(Empty, whole_feature_fields),
    )


def _trees(leaves: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, min_size=1, max_size=3).map(lambda kids: And(tuple(kids))),
            st.lists(children, min_size=1, max_size=3).map(lambda kids: Or(tuple(kids))),
            children.map(Not),
        ),
        max_leaves=8,
    )


def any_nodes() -> st.SearchStrategy[Node]:
    """Any tree :func:`edgetwin.rql.parse_filter` can return."""
    patterns = st.text(st.characters(codec="utf-8"))
    return _trees(_leaves(ANY_FIELDS, WHOLE_FEATURE_FIELDS, ANY_VALUES, patterns))


# ---- the evaluation domain ---------------------------------------------------------------------------

NOW = "2024-05-01T10:00:00Z"
NOW_EPOCH_MILLIS = 1714557600000

STRINGS = ["", "a", "ab", "A", "a b", "20", "2.5", "+3", "1e1", "true", NOW, str(NOW_EPOCH_MILLIS)]
INTEGERS = [-1, 0, 3, 20, NOW_EPOCH_MILLIS]
DECIMALS = [0.5, 2.5, 20.0]
_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.sampled_from(INTEGERS), st.sampled_from(DECIMALS), st.sampled_from(STRINGS)
)
DOMAIN_VALUES: st.SearchStrategy[RqlValue] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(INTEGERS),
    st.sampled_from(DECIMALS),
    st.sampled_from(STRINGS),
    st.just(TimeNow()),
    st.just(TimeNowEpochMillis()),
)
DOMAIN_PATTERNS = st.sampled_from(["*", "a*", "*b", "a?", "?", "A*", "a**b", "", "2*", "*a b*", "20"])
DOMAIN_FIELDS = st.sampled_from(
    [
        "thingId",
        "_revision",
        "_modified",
        "attributes/a",
        "attributes/b",
        "attributes/tags",
        "attributes/obj",
        "attributes/obj/a",
        "attributes/rooms/a",
        "attributes/missing",
        "features/lamp/properties/on",
        "features/*/properties/on",
        "features/*/properties/a",
        "features/lamp/definition",
    ]
)
DOMAIN_WHOLE_FEATURE_FIELDS = DOMAIN_FIELDS | st.sampled_from(
    ["features/lamp", "features/*", "features/fan/properties", "features/*/properties"]
)


def _optional(**members: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=members)


# Mostly scalars, sometimes an array or object of them: filters should hit values often.
_VALUES: st.SearchStrategy[Any] = st.one_of(
    _SCALARS,
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.sampled_from("ab"), _SCALARS, max_size=2),
)
_FEATURE = st.fixed_dictionaries(
    {"properties": _optional(on=_VALUES, a=_VALUES) | st.fixed_dictionaries({"on": _VALUES, "a": _VALUES})},
    optional={"definition": st.lists(st.sampled_from(["ns:lamp:1.0.0", "a"]), max_size=2)},
)


def domain_docs() -> st.SearchStrategy[dict[str, Any]]:
    """Thing JSON over the evaluation domain, hidden fields included; most paths usually present."""
    return st.fixed_dictionaries(
        {
            "thingId": st.sampled_from(["ns:a", "ns:b", "20"]),
            "_revision": st.sampled_from(INTEGERS),
            "attributes": st.fixed_dictionaries(
                {"a": _VALUES, "tags": st.lists(_SCALARS, max_size=3)},
                optional={"b": _VALUES, "obj": _VALUES, "rooms": st.lists(_VALUES, max_size=3)},
            ),
            "features": st.dictionaries(st.sampled_from(["lamp", "fan"]), _FEATURE, max_size=2),
        },
        optional={"_modified": st.sampled_from(STRINGS)},
    )


def domain_nodes(values: st.SearchStrategy[RqlValue] = DOMAIN_VALUES) -> st.SearchStrategy[Node]:
    """Trees over the evaluation domain."""
    return _trees(_leaves(DOMAIN_FIELDS, DOMAIN_WHOLE_FEATURE_FIELDS, values, DOMAIN_PATTERNS))


def _scalar_paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(field, scalar)`` for every scalar in a document; arrays add no path segment, as in RQL."""
    if isinstance(value, dict):
        return [
            pair
            for key, child in value.items()
            for pair in _scalar_paths(child, f"{prefix}/{key}".lstrip("/"))
        ]
    if isinstance(value, list):
        return [pair for child in value for pair in _scalar_paths(child, prefix)]
    return [(prefix, value)]


def _all_paths(value: Any, prefix: str = "") -> list[str]:
    """Every field present in a document, containers included."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        found += [
            path for key, child in value.items() for path in _all_paths(child, f"{prefix}/{key}".lstrip("/"))
        ]
    elif isinstance(value, list):
        found += [
            path for child in value if isinstance(child, dict) for path in _all_paths(child, prefix)[1:]
        ]
    return found


def _wildcarded(field: str) -> st.SearchStrategy[str]:
    parts = field.split("/")
    if parts[0] == "features":
        return st.sampled_from([field, "/".join(["features", "*", *parts[2:]])])
    return st.just(field)


@st.composite
def domain_cases(draw: st.DrawFn, *, nested: bool = True) -> tuple[Node, dict[str, Any]]:
    """A document and a tree whose leaves often aim at that document's fields and values, so they hit.

    With ``nested=False`` the tree is a single leaf, so no ``and``/``or`` can mask a wrong answer.
    """
    doc = draw(domain_docs())
    pairs = _scalar_paths(doc)
    fields = DOMAIN_FIELDS | st.sampled_from([field for field, _ in pairs]).flatmap(_wildcarded)
    values = DOMAIN_VALUES | st.sampled_from([value for _, value in pairs])
    patterns = DOMAIN_PATTERNS | st.sampled_from([v for _, v in pairs if isinstance(v, str)] or [""])
    targeted = st.sampled_from(pairs).flatmap(
        lambda pair: _wildcarded(pair[0]).flatmap(
            lambda field: st.builds(
                lambda kind, value: kind(field, value),
                st.sampled_from(COMPARISONS),
                st.just(pair[1]) | values,
            )
        )
    )
    present = st.sampled_from(
        [path for path in _all_paths(doc) if path not in ("attributes", "features")]
    ).flatmap(_wildcarded)
    targeted |= st.builds(Empty, present) | st.builds(Exists, present)
    leaves = targeted | _leaves(fields, DOMAIN_WHOLE_FEATURE_FIELDS | fields, values, patterns)
    return draw(_trees(leaves) if nested else leaves), doc


# ---- search options ----------------------------------------------------------------------------------


def search_options() -> st.SearchStrategy[SearchOptions]:
    """Any options :func:`edgetwin.rql.parse_options` can return (never cursor or size with limit)."""
    sort = st.lists(st.builds(SortKey, ANY_FIELDS, st.booleans()), max_size=3).map(tuple)
    sizes = st.none() | st.integers(min_value=0, max_value=200)
    cursors = st.none() | st.text(st.characters(codec="utf-8"), min_size=1)
    limits = st.builds(Limit, st.integers(min_value=0, max_value=2**31 - 1), st.integers(0, 200))
    with_limit = st.builds(SearchOptions, sort=sort, limit=limits)
    without_limit = st.builds(SearchOptions, sort=sort, size=sizes, cursor=cursors)
    return with_limit | without_limit
