"""The twin room: pure domain functions over Ditto things, as plain JSON values.

Contract:

* **Pure.** Standard library only (no trio, lmdb, quart, orjson, httpx, sockets, clock or store). Every
  function takes values and returns new values; it never mutates an argument. Results may share unchanged
  sub-trees with the arguments, so every JSON value is treated as immutable once built.
* **JSON is plain Python** (:data:`Json`); absence is the :data:`MISSING` sentinel, because ``None`` is JSON
  ``null``. Equality between JSON values is :func:`json_equal` (``True`` is not ``1``).
* **Errors** are raised from :mod:`edgetwin.errors` with Ditto's error codes and message texts
  (``things:id.invalid``, ``json.pointer.invalid``, ``json.key.invalid``, ``json.fieldselector.invalid``,
  ``things:field.selection.invalid``, ``header.invalid``, ``things:precondition.failed``,
  ``things:precondition.notmodified`` ...); the adapters map them to HTTP/WS/MQTT once, at their edge.
* **Bounded.** Documents nest at most :data:`MAX_JSON_DEPTH` levels and field selectors
  :data:`MAX_FIELD_NESTING` parentheses, so deeply nested input fails with a 400, never a ``RecursionError``.

Modules: ``ids`` (thing/policy/feature IDs), ``pointer`` (JSON values and pointers), ``patch`` (RFC 7396 merge
patch with Ditto's regex deletions), ``fields`` (the ``fields`` selector), ``preconditions`` (ETags,
``If-Match``/``If-None-Match``, ``if-equal``). The names below are the room's whole public surface.
"""

from __future__ import annotations

from edgetwin.twin.fields import (
    MAX_FIELD_NESTING,
    THING_FIELD_ROOTS,
    FieldSelector,
    apply_fields,
    parse_fields,
    validate_thing_field_roots,
)
from edgetwin.twin.ids import (
    MAX_ID_LENGTH,
    PolicyId,
    ThingId,
    generate_thing_id,
    is_valid_namespace,
    name_of,
    namespace_of,
    parse_feature_id,
    parse_policy_id,
    parse_thing_id,
)
from edgetwin.twin.patch import diff_merge_patch, merge_patch, strip_nulls
from edgetwin.twin.pointer import (
    MAX_JSON_DEPTH,
    MAX_KEY_LENGTH,
    MISSING,
    Json,
    Missing,
    Pointer,
    check_key,
    check_keys,
    delete_at,
    format_pointer,
    get_at,
    json_equal,
    parse_pointer,
    put_at,
)
from edgetwin.twin.policy import (
    Enforcer,
    check_policy_manageable,
    default_policy,
    parse_entries,
    parse_entry,
    parse_policy,
    parse_resource,
    parse_resources,
    parse_subject,
    parse_subjects,
)
from edgetwin.twin.policy_resources import (
    PolicyResource,
    apply_policy_delete,
    apply_policy_put,
    lookup_policy,
    policy_resource_of,
)
from edgetwin.twin.preconditions import (
    IF_EQUAL_MODES,
    check_if_equal,
    check_preconditions,
    parse_etag_list,
    thing_etag,
    value_etag,
)
from edgetwin.twin.things import (
    THING_KEYS,
    Resource,
    apply_delete,
    apply_merge,
    apply_put,
    lift_policy_specials,
    lookup,
    not_found,
    public_view,
    resource_of,
    validate_thing,
)

__all__ = [
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
