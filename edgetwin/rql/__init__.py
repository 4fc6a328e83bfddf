"""Ditto's RQL, pure: filter text to a syntax tree, the tree to a predicate, and the search options.

Room contract:

* Standard library only: no trio, lmdb, quart or orjson, and no clock reads (``time:now`` is resolved from
  the ``now`` the caller passes to the evaluator).
* :func:`parse_filter` is Ditto's grammar exactly (ditto.md §4.4) plus Ditto's field rules, and raises only
  :class:`~edgetwin.errors.RqlSyntaxError` (``rql.expression.invalid``, ``.position`` set). Callers that
  need another Ditto code re-label it at their edge, e.g. the ``condition`` header as
  ``things:condition.invalid``.
* :func:`format_rql` prints a node back; ``parse_filter(format_rql(node)) == node``.
* :func:`evaluate` / :func:`compile_filter` apply Ditto's **in-memory** semantics (``condition`` header,
  WebSocket/SSE filters), not the search index's; see :mod:`edgetwin.rql.evaluate`.
* :func:`parse_options` reads the search ``option`` parameter and raises
  :class:`~edgetwin.errors.InvalidInput` with ``thing-search:search.option.invalid``.
* :func:`referenced_fields` lists the paths a filter reads, for READ-permission checks.
"""

from __future__ import annotations

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
    referenced_fields,
)
from edgetwin.rql.evaluate import Predicate, compile_filter, evaluate
from edgetwin.rql.options import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Limit,
    SearchOptions,
    SortKey,
    format_options,
    parse_options,
)
from edgetwin.rql.parser import EVENT_PLACEHOLDER_FIELDS, MAX_DEPTH, format_rql, parse_filter

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "EVENT_PLACEHOLDER_FIELDS",
    "MAX_DEPTH",
    "MAX_PAGE_SIZE",
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
    "Limit",
    "Lt",
    "Ne",
    "Node",
    "Not",
    "Or",
    "Predicate",
    "RqlValue",
    "SearchOptions",
    "SortKey",
    "TimeNow",
    "TimeNowEpochMillis",
    "compile_filter",
    "evaluate",
    "format_options",
    "format_rql",
    "parse_filter",
    "parse_options",
    "referenced_fields",
]
