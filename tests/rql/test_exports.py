"""The public surface of ``edgetwin.rql`` is pinned, and the room stays pure (standard library only)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import edgetwin.rql

EXPECTED = [
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


def test_all_is_pinned() -> None:
    assert edgetwin.rql.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(edgetwin.rql, name)


def test_room_imports_only_the_standard_library_and_errors() -> None:
    package = Path(edgetwin.rql.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = (
                    top in sys.stdlib_module_names
                    or name == "edgetwin.errors"
                    or name.startswith("edgetwin.rql")
                )
                assert allowed, f"{module.name} imports {name}"
