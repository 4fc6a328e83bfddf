"""Ditto's ``fields`` selector (ditto.md 1.7): parse ``thingId,attributes/complex(some)`` and apply it.

Contract:

* :func:`parse_fields` turns the (already URL-decoded) parameter into a :class:`FieldSelector`: a flat,
  de-duplicated tuple of pointers in first-seen order. Commas separate fields; ``prefix(a,b)`` groups fields
  under a common prefix, recursively, and commas inside parentheses do not split the outer list. A group must
  end its field (``a(b)c`` is refused), parentheses nest at most :data:`MAX_FIELD_NESTING` deep, and no field
  may be empty. Spaces are part of keys, as in Ditto.
* :func:`apply_fields` keeps the JSON structure of the selected paths only; a path that does not exist is
  simply absent (no error, no empty parent object). ``*`` as a key selects every member of the object at that
  level (``features/*/properties/on``). Overlapping fields unite (``attributes,attributes/a`` is
  ``attributes``). The result shares selected sub-trees with the document.
* :func:`validate_thing_field_roots` is the stricter check Ditto's ``ThingFieldSelector`` applies to
  ``extraFields`` and SSE ``fields``.

Not handled here: partial READ permissions (policy filtering runs before or after, elsewhere) and the
``_policy`` exemption from preconditions (the caller inspects the selector's pointers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

from edgetwin.errors import InvalidInput
from edgetwin.twin.pointer import MAX_JSON_DEPTH, MISSING, Json, Missing, Pointer, parse_pointer

__all__ = [
    "MAX_FIELD_NESTING",
    "THING_FIELD_ROOTS",
    "FieldSelector",
    "apply_fields",
    "parse_fields",
    "validate_thing_field_roots",
]

MAX_FIELD_NESTING: Final = 16
"""Deepest parenthesis nesting :func:`parse_fields` accepts; the parser recurses once per level."""

_THING_LEAF_ROOTS: Final = frozenset(
    {"thingId", "policyId", "definition", "_namespace", "_revision", "_created", "_modified", "_policy"}
)
_THING_TREE_ROOTS: Final = frozenset({"_metadata", "_context", "features", "attributes"})

THING_FIELD_ROOTS: Final = (
    "thingId",
    "policyId",
    "definition",
    "_namespace",
    "_revision",
    "_created",
    "_modified",
    "_metadata",
    "_policy",
    "_context",
    "features",
    "attributes",
)
"""The roots :func:`validate_thing_field_roots` accepts; only the last four may have sub-paths."""

_DEFAULT_DESCRIPTION: Final = (
    "Check, for example, if the amount of opening parentheses '(' matches the amount of closing ones ')'."
)

# A selection trie: each key maps to a sub-trie, or to None when everything below it is selected.
_Trie: TypeAlias = "dict[str, _Trie | None]"


@dataclass(frozen=True, slots=True)
class FieldSelector:
    """A parsed ``fields`` selector.

    Attributes:
        text: the selector as the client wrote it (used in error messages).
        pointers: the selected paths, flattened and de-duplicated, in first-seen order.
    """

    text: str
    pointers: tuple[Pointer, ...]


def parse_fields(text: str) -> FieldSelector:
    """Parse a ``fields`` selector.

    ``attributes/complex(some,serialNo)`` is ``attributes/complex/some,attributes/complex/serialNo``;
    ``features(lamp/properties(on,color))`` nests; a leading ``/`` on any field is optional.

    Args:
        text: the URL-decoded parameter value.

    Returns:
        The selector.

    Raises:
        InvalidInput: ``json.fieldselector.invalid`` for an empty selector or field, unbalanced parentheses,
            text after a closing parenthesis, or nesting beyond :data:`MAX_FIELD_NESTING`;
            ``json.pointer.invalid`` for an empty pointer segment (``a//b``), as in Ditto.
    """
    if not text:
        raise _invalid(text, "The field selector is empty.")
    pointers, end = _parse_list(text, 0, 0)
    if end < len(text):
        raise _invalid(text, f"The closing parenthesis at position {end} has no opening one.")
    return FieldSelector(text=text, pointers=tuple(dict.fromkeys(pointers)))


def _parse_list(text: str, pos: int, nesting: int) -> tuple[list[Pointer], int]:
    """Parse ``field(,field)*`` from ``pos``; stop before a ``)`` or at the end; return the end position."""
    pointers: list[Pointer] = []
    while True:
        start = pos
        while pos < len(text) and text[pos] not in ",()":
            pos += 1
        prefix = parse_pointer(text[start:pos])
        if pos < len(text) and text[pos] == "(":
            if nesting >= MAX_FIELD_NESTING:
                raise _invalid(text, f"Parentheses may nest at most {MAX_FIELD_NESTING} levels deep.")
            opened_at = pos
            inner, pos = _parse_list(text, pos + 1, nesting + 1)
            if pos >= len(text):
                raise _invalid(text, f"The parenthesis opened at position {opened_at} is never closed.")
            pos += 1  # the ")"
            if pos < len(text) and text[pos] not in ",)":
                raise _invalid(
                    text, f"Unexpected '{text[pos]}' at position {pos}: a group '(...)' must end its field."
                )
            for sub in inner:
                if len(prefix) + len(sub) > MAX_JSON_DEPTH:
                    raise _invalid(text, f"A field may have at most {MAX_JSON_DEPTH} levels.")
                pointers.append(prefix + sub)
        elif prefix:
            pointers.append(prefix)
        else:
            raise _invalid(text, f"The field at position {start} is empty.")
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        return pointers, pos


def _invalid(text: str, reason: str) -> InvalidInput:
    return InvalidInput(
        f"The field selector <{text}> is invalid!",
        description=f"{reason} {_DEFAULT_DESCRIPTION}",
        error_code="json.fieldselector.invalid",
    )


def apply_fields(doc: dict[str, Json], selector: FieldSelector) -> dict[str, Json]:
    """Keep only the selected parts of a document, in their JSON structure.

    Example (ditto.md 1.7): ``attributes/complex/misc,features/lamp/properties/on`` on a thing gives
    ``{"attributes": {"complex": {"misc": "foo"}}, "features": {"lamp": {"properties": {"on": true}}}}``.

    Args:
        doc: the document (a thing, or the sub-resource the request addressed: ``fields`` is relative to it).
        selector: the selector.

    Returns:
        A new object with the selected members; ``{}`` if nothing matched.

    Raises:
        InvalidInput: ``json.invalid`` if the document nests deeper than
            :data:`~edgetwin.twin.pointer.MAX_JSON_DEPTH` along a selected path (never for stored documents).
    """
    trie = _build_trie(selector.pointers)
    if trie is None:
        return dict(doc)
    selected = _select(doc, [trie], 1)
    return selected if isinstance(selected, dict) else {}


def _build_trie(pointers: tuple[Pointer, ...]) -> _Trie | None:
    root: _Trie = {}
    for pointer in pointers:
        if not pointer:
            return None  # the root pointer selects the whole document
        node = root
        for key in pointer[:-1]:
            if key not in node:
                node[key] = {}
            child = node[key]
            if child is None:
                break  # an ancestor is already selected whole
            node = child
        else:
            node[pointer[-1]] = None
    return root


def _select(value: Json, tries: list[_Trie], depth: int) -> Json | Missing:
    """Select from ``value`` what any of ``tries`` selects; :data:`MISSING` if nothing."""
    if not isinstance(value, dict):
        return MISSING
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(
            f"The JSON value nests deeper than {MAX_JSON_DEPTH} levels.", error_code="json.invalid"
        )
    out: dict[str, Json] = {}
    for key, child in value.items():
        whole = False
        subs: dict[int, _Trie] = {}  # keyed by id(): the same sub-trie can be reached via "*" and via key
        for trie in tries:
            for name in (key, "*"):
                if name in trie:
                    sub = trie[name]
                    if sub is None:
                        whole = True
                    else:
                        subs[id(sub)] = sub
        if whole:
            out[key] = child
        elif subs:
            picked = _select(child, list(subs.values()), depth + 1)
            if picked is not MISSING:
                out[key] = picked
    return out if out else MISSING


def validate_thing_field_roots(selector: FieldSelector) -> None:
    """Check a selector against the fields a thing has (Ditto ``ThingFieldSelector``).

    Every field must start with one of :data:`THING_FIELD_ROOTS`; only ``_metadata``, ``_context``,
    ``features`` and ``attributes`` may continue below their root.

    Args:
        selector: the parsed selector (e.g. of ``extraFields`` or SSE ``fields``).

    Raises:
        InvalidInput: ``things:field.selection.invalid`` naming the selector.
    """
    for pointer in selector.pointers:
        root = pointer[0] if pointer else ""
        if root in _THING_TREE_ROOTS or (root in _THING_LEAF_ROOTS and len(pointer) == 1):
            continue
        raise InvalidInput(
            f"Thing field selection <{selector.text}> was not valid.",
            description=(
                "Please provide a comma separated List of valid Thing fields. Make sure that you did not use "
                f"a space after a comma. Valid Fields are: {', '.join(THING_FIELD_ROOTS)}"
            ),
            error_code="things:field.selection.invalid",
        )
