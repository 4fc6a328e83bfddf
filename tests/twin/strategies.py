"""Hypothesis strategies for JSON documents, patches and pointers used by the twin tests.

Keys come from a small alphabet so that generated patches and selectors actually hit generated documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import strategies as st

if TYPE_CHECKING:
    from edgetwin.twin import Json, Pointer

KEYS = st.sampled_from(["a", "b", "c", "lamp", "on"])
SCALARS: st.SearchStrategy[Json] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-5, max_value=5)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=3)
)


def json_values(*, null_members: bool = True) -> st.SearchStrategy[Json]:
    """Any JSON value; with ``null_members=False`` it contains no ``null`` at all."""
    leaves = SCALARS if null_members else SCALARS.filter(lambda value: value is not None)
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
        max_leaves=12,
    )


def json_objects(*, null_members: bool = True) -> st.SearchStrategy[dict[str, Json]]:
    """A JSON object of JSON values."""
    return st.dictionaries(KEYS, json_values(null_members=null_members), max_size=5)


def patches() -> st.SearchStrategy[dict[str, Json]]:
    """Merge patches, sometimes carrying Ditto ``{{ ~regex~ }}`` deletions at any level."""
    regex_key = st.sampled_from(["{{ ~[ab]~ }}", "{{ ~.*~ }}", "{{~l.*~}}"])
    keys = KEYS | regex_key
    values = st.recursive(
        SCALARS, lambda children: st.lists(SCALARS, max_size=3) | st.dictionaries(keys, children, max_size=4)
    )
    return st.dictionaries(keys, values, max_size=5)


def pointers() -> st.SearchStrategy[Pointer]:
    """Pointers over the key alphabet, the ``*`` wildcard included."""
    return st.lists(KEYS | st.just("*"), min_size=1, max_size=4).map(tuple)


def leaves(value: Json, prefix: Pointer = ()) -> list[tuple[Pointer, Json]]:
    """Every ``(pointer, value)`` below ``value`` that is not itself an object (empty objects included)."""
    if not isinstance(value, dict) or not value:
        return [(prefix, value)]
    found: list[tuple[Pointer, Json]] = []
    for key, child in value.items():
        found.extend(leaves(child, (*prefix, key)))
    return found
