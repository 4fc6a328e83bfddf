"""The twin room's public surface is pinned, and the room imports nothing but the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import edgetwin.twin

ROOM = Path(edgetwin.twin.__file__).parent

PUBLIC = [
    "IF_EQUAL_MODES",
    "MAX_FIELD_NESTING",
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_KEY_LENGTH",
    "MISSING",
    "THING_FIELD_ROOTS",
    "THING_KEYS",
    "Enforcer",
    "FieldSelector",
    "Json",
    "Missing",
    "Pointer",
    "PolicyId",
    "PolicyResource",
    "Resource",
    "ThingId",
    "apply_delete",
    "apply_fields",
    "apply_merge",
    "apply_policy_delete",
    "apply_policy_put",
    "apply_put",
    "check_if_equal",
    "check_key",
    "check_keys",
    "check_policy_manageable",
    "check_preconditions",
    "default_policy",
    "delete_at",
    "diff_merge_patch",
    "format_pointer",
    "generate_thing_id",
    "get_at",
    "is_valid_namespace",
    "json_equal",
    "lift_policy_specials",
    "lookup",
    "lookup_policy",
    "merge_patch",
    "name_of",
    "namespace_of",
    "not_found",
    "parse_entries",
    "parse_entry",
    "parse_etag_list",
    "parse_feature_id",
    "parse_fields",
    "parse_pointer",
    "parse_policy",
    "parse_policy_id",
    "parse_resource",
    "parse_resources",
    "parse_subject",
    "parse_subjects",
    "parse_thing_id",
    "policy_resource_of",
    "public_view",
    "put_at",
    "resource_of",
    "strip_nulls",
    "thing_etag",
    "validate_thing",
    "validate_thing_field_roots",
    "value_etag",
]


def test_public_names_are_pinned() -> None:
    assert edgetwin.twin.__all__ == PUBLIC
    for name in PUBLIC:
        assert hasattr(edgetwin.twin, name), name


def test_every_module_re_exports_only_what_it_defines() -> None:
    for path in sorted(ROOM.glob("*.py")):
        if path.name == "__init__.py":
            continue
        module = sys.modules[f"edgetwin.twin.{path.stem}"]
        for name in module.__all__:
            assert name in PUBLIC, f"{path.name} exports {name} but the room does not"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_room_is_pure() -> None:
    for path in sorted(ROOM.glob("*.py")):
        for module in _imported_modules(path):
            top = module.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or module == "edgetwin.errors"
                or module.startswith("edgetwin.twin")
            )
            assert allowed, f"{path.name} imports {module}"
            assert top not in {"socket", "asyncio", "threading", "time", "os"}, (
                f"{path.name} imports {module}"
            )
