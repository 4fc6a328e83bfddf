"""The RQL syntax tree: immutable values that :mod:`edgetwin.rql.parser` builds and the evaluator reads.

Contract:

* Every node is a frozen, slotted dataclass, so nodes hash, compare by value and can be cached or used
  as dictionary keys (a compiled-filter cache keyed by the node is safe).
* ``field`` is the property path as Ditto normalises it (``ThingsFieldExpressionFactoryImpl``): no
  leading ``/``, segments separated by ``/``, never an empty segment, e.g. ``attributes/manufacturer``,
  ``thingId``, ``_revision``, ``features/*/properties/on`` (``*`` as the feature ID is the wildcard).
* Literal values are ``str``, ``int`` (Ditto's ``Long``, always within the signed 64-bit range),
  ``float`` (Ditto's ``Double``, always finite), ``bool``, ``None`` (RQL ``null``) or one of the two
  time placeholders. The placeholders carry no time: the evaluator is handed ``now`` explicitly, which
  keeps this package free of clock reads.
* ``And``/``Or`` have at least one child and ``In`` at least one value, as in Ditto's grammar
  (``oneOrMore``); constructing one without raises ``ValueError`` because such a node has no RQL text.

Nothing here parses or evaluates; :func:`referenced_fields` is the one traversal that lives with the
nodes, because the policy room needs it without pulling in the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

__all__ = [
    "And",
    "Comparison",
    "Empty",
    "Eq",
    "Exists",
    "Ge",
    "Gt",
    "ILike",
    "In",
    "Le",
    "Like",
    "Lt",
    "Ne",
    "Node",
    "Not",
    "Or",
    "RqlValue",
    "TimeNow",
    "TimeNowEpochMillis",
    "referenced_fields",
]


@dataclass(frozen=True, slots=True)
class TimeNow:
    """The ``time:now`` placeholder: the evaluation time as an ISO-8601 UTC string."""

    text: ClassVar[str] = "time:now"


@dataclass(frozen=True, slots=True)
class TimeNowEpochMillis:
    """The ``time:now_epoch_millis`` placeholder: the evaluation time as milliseconds since the epoch.

    Ditto resolves it to a *string* of digits; comparisons against numbers still work numerically
    because a numeric string is parsed as a number when compared with one.
    """

    text: ClassVar[str] = "time:now_epoch_millis"


RqlValue: TypeAlias = str | int | float | bool | TimeNow | TimeNowEpochMillis | None
"""A literal as it appears in a comparison."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """Base of the single-value comparisons ``eq ne gt ge lt le``; never built directly.

    Attributes:
        field: the normalised property path.
        value: the literal compared against.
    """

    field: str
    value: RqlValue
    op: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Eq(Comparison):
    """``eq(field,value)``: some value at ``field`` equals ``value``."""

    op: ClassVar[str] = "eq"


@dataclass(frozen=True, slots=True)
class Ne(Comparison):
    """``ne(field,value)``: no value at ``field`` equals ``value`` (true for an absent field in memory)."""

    op: ClassVar[str] = "ne"


@dataclass(frozen=True, slots=True)
class Gt(Comparison):
    """``gt(field,value)``: some value at ``field`` is greater than ``value``."""

    op: ClassVar[str] = "gt"


@dataclass(frozen=True, slots=True)
class Ge(Comparison):
    """``ge(field,value)``: some value at ``field`` is greater than or equal to ``value``."""

    op: ClassVar[str] = "ge"


@dataclass(frozen=True, slots=True)
class Lt(Comparison):
    """``lt(field,value)``: some value at ``field`` is less than ``value``."""

    op: ClassVar[str] = "lt"


@dataclass(frozen=True, slots=True)
class Le(Comparison):
    """``le(field,value)``: some value at ``field`` is less than or equal to ``value``."""

    op: ClassVar[str] = "le"


@dataclass(frozen=True, slots=True)
class Like:
    """``like(field,"pattern")``: a string at ``field`` matches; ``*`` is any run, ``?`` one character.

    Attributes:
        field: the normalised property path.
        pattern: the wildcard pattern (Ditto allows only a string here).
    """

    field: str
    pattern: str
    op: ClassVar[str] = "like"


@dataclass(frozen=True, slots=True)
class ILike:
    """``ilike(field,"pattern")``: like :class:`Like`, ignoring ASCII case.

    Attributes:
        field: the normalised property path.
        pattern: the wildcard pattern.
    """

    field: str
    pattern: str
    op: ClassVar[str] = "ilike"


@dataclass(frozen=True, slots=True)
class In:
    """``in(field,v1,v2,...)``: some value at ``field`` equals one of ``values``.

    Attributes:
        field: the normalised property path.
        values: one or more literals.
    """

    field: str
    values: tuple[RqlValue, ...]
    op: ClassVar[str] = "in"

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("in() needs at least one value")


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists(field)``: the path is present, whatever its value (``null`` included).

    Attributes:
        field: the normalised property path.
    """

    field: str
    op: ClassVar[str] = "exists"


@dataclass(frozen=True, slots=True)
class Empty:
    """``empty(field)``: the path is absent, or holds ``null``, ``""``, ``[]`` or ``{}``.

    Attributes:
        field: the normalised property path.
    """

    field: str
    op: ClassVar[str] = "empty"


@dataclass(frozen=True, slots=True)
class And:
    """``and(q1,q2,...)``: every child holds.

    Attributes:
        children: one or more sub-queries.
    """

    children: tuple[Node, ...]
    op: ClassVar[str] = "and"

    def __post_init__(self) -> None:
        if not self.children:
            raise ValueError("and() needs at least one child")


@dataclass(frozen=True, slots=True)
class Or:
    """``or(q1,q2,...)``: at least one child holds.

    Attributes:
        children: one or more sub-queries.
    """

    children: tuple[Node, ...]
    op: ClassVar[str] = "or"

    def __post_init__(self) -> None:
        if not self.children:
            raise ValueError("or() needs at least one child")


@dataclass(frozen=True, slots=True)
class Not:
    """``not(q)``: the child does not hold.

    Attributes:
        child: the negated sub-query.
    """

    child: Node
    op: ClassVar[str] = "not"


Node: TypeAlias = Eq | Ne | Gt | Ge | Lt | Le | Like | ILike | In | Exists | Empty | And | Or | Not
"""Any RQL filter node."""


def referenced_fields(node: Node) -> frozenset[str]:
    """The property paths a filter reads, e.g. for a READ-permission check on each of them.

    Args:
        node: a parsed filter.

    Returns:
        Every ``field`` in the tree, as written (a ``features/*/...`` wildcard path stays a wildcard).
    """
    fields: set[str] = set()
    # An explicit stack instead of recursion: the parser caps nesting, but a hand-built tree need not.
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And | Or):
            stack.extend(current.children)
        elif isinstance(current, Not):
            stack.append(current.child)
        else:
            fields.add(current.field)
    return frozenset(fields)
